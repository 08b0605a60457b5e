#!/bin/sh
# Builds the go-grpc-prometheus reference Echo server offline from Debian's Go packages: build.sh OUTPUT_BINARY
# With --client, the reference Echo client (client/main.go) instead: build.sh --client OUTPUT_BINARY
set -eu

die() { echo "go_reference/build.sh: $*" >&2; exit 1; }

program=main.go
if [ $# -eq 2 ] && [ "$1" = "--client" ]; then
    program=client/main.go
    shift
fi
[ $# -eq 1 ] || die "usage: build.sh [--client] OUTPUT_BINARY"
case "$1" in /*) out="$1" ;; *) out="$(pwd)/$1" ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
proto_dir="$here/../proto"

command -v go >/dev/null || die "go not found (apt-get install golang-go)"
command -v protoc >/dev/null || die "protoc not found (apt-get install protobuf-compiler)"
command -v protoc-gen-go >/dev/null || die "protoc-gen-go not found (apt-get install golang-goprotobuf-dev)"
for p in github.com/grpc-ecosystem/go-grpc-prometheus google.golang.org/grpc \
         github.com/prometheus/client_golang github.com/prometheus/common github.com/golang/protobuf; do
    [ -d "/usr/share/gocode/src/$p" ] || die "missing /usr/share/gocode/src/$p (install the Debian golang-*-dev package)"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM

mkdir -p "$tmp/src/echo_go"
# protoc-gen-go 1.3.x: go_package "grpcprom/test/echopb" lands in $tmp/src/grpcprom/test/echopb.
protoc -I "$proto_dir" --go_out=plugins=grpc:"$tmp/src" "$proto_dir/echo.proto" \
    || die "protoc --go_out=plugins=grpc failed"
cp "$here/$program" "$tmp/src/echo_go/main.go"

unset GOFLAGS
export GO111MODULE=off GOPROXY=off GOPATH="$tmp:/usr/share/gocode" GOCACHE="${GOCACHE:-$tmp/cache}"
(cd "$tmp/src/echo_go" && go build -o "$out" .) || die "go build failed"
echo "built $out"
