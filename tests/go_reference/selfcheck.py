#!/usr/bin/python3
# Self-check: runs the client mix against the Go reference server and compares its /metrics with what the client saw.
# Usage: selfcheck.py [--deadline-may-be-canceled] [ECHO_GO_BINARY]   (no binary: builds one with build.sh)
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "client"))
import echo_client  # noqa: E402

SERIES_RE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')
LABEL_RE = re.compile(r'(\w+)="([^"]*)"')


def scrape(metrics_port):
    """Returns {(name, type, service, method, code or ""): value} for the Echo service's grpc_server_* series."""
    url = "http://127.0.0.1:%d/metrics" % metrics_port
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    text = opener.open(url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = SERIES_RE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(LABEL_RE.findall(m.group(2))), float(m.group(3))
        if name in ("grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total",
                    "grpc_server_msg_sent_total", "grpc_server_handling_seconds_count") \
                and labels.get("grpc_service") == echo_client.SERVICE:
            out[(name, labels["grpc_type"], labels["grpc_service"], labels["grpc_method"],
                 labels.get("grpc_code", ""))] = value
    return out


def expected_series(result):
    """The series values run_mix's result implies."""
    exp = {}
    for (gtype, service, method), m in result.items():
        exp[("grpc_server_started_total", gtype, service, method, "")] = m["started"]
        exp[("grpc_server_msg_received_total", gtype, service, method, "")] = m["msg_received"]
        exp[("grpc_server_msg_sent_total", gtype, service, method, "")] = m["msg_sent"]
        exp[("grpc_server_handling_seconds_count", gtype, service, method, "")] = sum(m["handled"].values())
        for code, n in m["handled"].items():
            exp[("grpc_server_handled_total", gtype, service, method, code)] = n
    return exp


def allow_deadline_as_canceled(exp, got):
    """Accepts the server counting some client-side DeadlineExceeded calls as Canceled (a race in grpc-go); prints notes."""
    for key in list(exp):
        name, gtype, service, method, code = key
        if name != "grpc_server_handled_total" or code != "DeadlineExceeded":
            continue
        ckey = key[:4] + ("Canceled",)
        moved = exp[key] - got.get(key, 0)
        if 0 < moved <= exp[key] and got.get(ckey, 0) == exp.get(ckey, 0) + moved:
            print("NOTE %s %s: %d of %d DeadlineExceeded calls counted as Canceled by the server"
                  % (gtype, method, moved, exp[key]))
            exp[key] -= moved
            exp[ckey] = exp.get(ckey, 0) + moved


def main():
    args = sys.argv[1:]
    lenient = "--deadline-may-be-canceled" in args
    args = [a for a in args if a != "--deadline-may-be-canceled"]
    tmp = None
    if args:
        binary = args[0]
    else:
        tmp = tempfile.TemporaryDirectory()
        binary = os.path.join(tmp.name, "echo_go")
        subprocess.run([os.path.join(HERE, "build.sh"), binary], check=True)
    server = subprocess.Popen([binary, "--port", "0", "--metrics-port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline().split()
        if len(ready) != 3 or ready[0] != "READY":
            sys.exit("selfcheck: server did not print READY (got %r)" % ready)
        port, metrics_port = int(ready[1]), int(ready[2])
        target = "127.0.0.1:%d" % port
        if not echo_client.wait_ready(target, 10):
            sys.exit("selfcheck: server not reachable at " + target)
        result = echo_client.run_mix(target)
        got = scrape(metrics_port)
    finally:
        server.terminate()
        server.wait(10)
    exp = expected_series(result)
    if lenient:
        allow_deadline_as_canceled(exp, got)
    bad = 0
    for key in sorted(set(exp) | set(got)):
        e, g = exp.get(key, 0), got.get(key)
        if g is None and e == 0:
            continue
        if g != e:
            bad += 1
            name, gtype, service, method, code = key
            print("MISMATCH %s{type=%s,method=%s%s}: client expects %s, server has %s"
                  % (name, gtype, method, ",code=" + code if code else "", e, g))
    print("selfcheck: %d series compared, %d mismatches" % (len(set(exp) | set(got)), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
