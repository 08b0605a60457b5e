#!/usr/bin/python3
# Test client: drives a fixed, deterministic mix of Echo calls and reports the metrics go-grpc-prometheus should show.
import argparse
import atexit
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc

SERVICE = "grpcprom.test.Echo"
PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")

# Go's codes.Code.String() names, indexed by the numeric code.
GO_CODE_NAMES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
                 "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
                 "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
                 "Unauthenticated"]


def _load_stubs():
    """Generates echo_pb2/echo_pb2_grpc with protoc (into $GRPCPROM_PY_STUBS or a temp dir) and imports them."""
    out = os.environ.get("GRPCPROM_PY_STUBS")
    if not out:
        out = tempfile.mkdtemp(prefix="grpcprom_py_stubs_")
        atexit.register(shutil.rmtree, out, True)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(dir=out)  # generate privately, then move into place atomically
    subprocess.run(["protoc", "-I", PROTO_DIR, "--python_out=" + work, "--grpc_out=" + work,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", "echo.proto"], check=True)
    for name in ("echo_pb2.py", "echo_pb2_grpc.py"):
        os.replace(os.path.join(work, name), os.path.join(out, name))
    os.rmdir(work)
    sys.path.insert(0, out)
    import echo_pb2
    import echo_pb2_grpc
    return echo_pb2, echo_pb2_grpc


pb, pb_grpc = _load_stubs()


def code_name(code):
    """grpc.StatusCode -> Go's name for it."""
    return GO_CODE_NAMES[code.value[0]]


def _channel(target):
    return grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])


def wait_ready(target, timeout=10.0):
    """True once a connection to target can be made within timeout seconds."""
    with _channel(target) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False


def call_unknown_method(target, n):
    """Calls n distinct unknown methods; returns {path: Go code name} (expected: Unimplemented)."""
    result = {}
    with _channel(target) as ch:
        for i in range(n):
            path = "/%s/Nope%d" % (SERVICE, i) if i % 2 == 0 else "/no.Such/Thing%d" % i
            try:
                ch.unary_unary(path)(b"", timeout=5)
                result[path] = "OK"
            except grpc.RpcError as e:
                result[path] = code_name(e.code())
    return result


def R(code=0, sleep_ms=0, responses=0, text="x"):
    return pb.EchoRequest(code=code, sleep_ms=sleep_ms, responses=responses, text=text)


# --- one function per kind of call; each returns (code name, msgs the server received, msgs it sent) ---

def _unary(stub, req, timeout=None, cancel_after=None):
    if cancel_after is not None:
        fut = stub.Unary.future(req)
        time.sleep(cancel_after)
        fut.cancel()
        try:
            fut.result()
            return "OK", 1, 1
        except grpc.FutureCancelledError:
            return "Canceled", 1, 0
        except grpc.RpcError as e:
            return code_name(e.code()), 1, 0
    try:
        stub.Unary(req, timeout=timeout)
        return "OK", 1, 1
    except grpc.RpcError as e:
        return code_name(e.code()), 1, 0


def _server_stream(stub, req, timeout=None, cancel_after=None):
    call = stub.ServerStream(req, timeout=timeout)
    if cancel_after is not None:
        threading.Timer(cancel_after, call.cancel).start()
    got = 0
    try:
        for _ in call:
            got += 1
        return "OK", 1, got
    except grpc.RpcError as e:
        return code_name(e.code()), 1, got


def _client_stream(stub, reqs):
    try:
        stub.ClientStream(iter(reqs))
        return "OK", len(reqs), 1
    except grpc.RpcError as e:
        return code_name(e.code()), len(reqs), 0


def _bidi(stub, reqs):
    """Lockstep: send a request, read its `responses` replies, then the next; finally half-close."""
    q = queue.Queue()
    call = stub.Bidi(iter(q.get, None))
    sent = got = 0
    try:
        for req in reqs:
            q.put(req)
            sent += 1
            for _ in range(req.responses):
                next(call)
                got += 1
        q.put(None)  # half-close
        for _ in call:  # expect end of stream (or the error of the last request)
            got += 1
        return "OK", sent, got
    except grpc.RpcError as e:
        q.put(None)
        return code_name(e.code()), sent, got


def mix_calls():
    """The fixed mix: list of (grpc_type, method, expected Go code, function(stub) -> (code, received, sent))."""
    u, ss, cs, bd = "unary", "server_stream", "client_stream", "bidi_stream"
    return [
        (u, "Unary", "OK", lambda s: _unary(s, R())),
        (u, "Unary", "OK", lambda s: _unary(s, R(text="b"))),
        (u, "Unary", "OK", lambda s: _unary(s, R(text="c"))),
        (u, "Unary", "OK", lambda s: _unary(s, R(sleep_ms=30))),
        (u, "Unary", "OK", lambda s: _unary(s, R(sleep_ms=150))),
        (u, "Unary", "InvalidArgument", lambda s: _unary(s, R(code=3))),
        (u, "Unary", "NotFound", lambda s: _unary(s, R(code=5))),
        (u, "Unary", "Internal", lambda s: _unary(s, R(code=13, sleep_ms=30))),
        (u, "Unary", "Canceled", lambda s: _unary(s, R(sleep_ms=2000), cancel_after=0.125)),
        (u, "Unary", "DeadlineExceeded", lambda s: _unary(s, R(sleep_ms=2000), timeout=0.2)),

        (ss, "ServerStream", "OK", lambda s: _server_stream(s, R(responses=0))),
        (ss, "ServerStream", "OK", lambda s: _server_stream(s, R(responses=1))),
        (ss, "ServerStream", "OK", lambda s: _server_stream(s, R(responses=5))),
        (ss, "ServerStream", "OK", lambda s: _server_stream(s, R(responses=3, sleep_ms=30))),
        (ss, "ServerStream", "OK", lambda s: _server_stream(s, R(responses=2, sleep_ms=150))),
        (ss, "ServerStream", "Unavailable", lambda s: _server_stream(s, R(responses=2, code=14))),
        (ss, "ServerStream", "PermissionDenied", lambda s: _server_stream(s, R(code=7))),
        (ss, "ServerStream", "Canceled",
         lambda s: _server_stream(s, R(responses=3, sleep_ms=2000), cancel_after=0.125)),
        (ss, "ServerStream", "DeadlineExceeded",
         lambda s: _server_stream(s, R(responses=3, sleep_ms=2000), timeout=0.2)),

        (cs, "ClientStream", "OK", lambda s: _client_stream(s, [R()])),
        (cs, "ClientStream", "OK", lambda s: _client_stream(s, [R(), R(), R(), R(text="last")])),
        (cs, "ClientStream", "OK", lambda s: _client_stream(s, [R(code=13), R(), R(sleep_ms=30)])),
        (cs, "ClientStream", "OK", lambda s: _client_stream(s, [R(), R(sleep_ms=150)])),
        (cs, "ClientStream", "OK", lambda s: _client_stream(s, [])),
        (cs, "ClientStream", "FailedPrecondition", lambda s: _client_stream(s, [R(), R(code=9)])),
        (cs, "ClientStream", "ResourceExhausted", lambda s: _client_stream(s, [R(code=8)])),

        (bd, "Bidi", "OK", lambda s: _bidi(s, [R(responses=1), R(responses=2), R(responses=0)])),
        (bd, "Bidi", "OK", lambda s: _bidi(s, [R(responses=1, sleep_ms=30), R(responses=1)])),
        (bd, "Bidi", "OK", lambda s: _bidi(s, [R(responses=1, sleep_ms=150)])),
        (bd, "Bidi", "OK", lambda s: _bidi(s, [])),
        (bd, "Bidi", "Aborted", lambda s: _bidi(s, [R(responses=2), R(responses=1, code=10)])),
        (bd, "Bidi", "OutOfRange", lambda s: _bidi(s, [R(code=11)])),
    ]


def tally(result, gtype, method, outcome):
    """Adds one call to result, as the helpers above report it: (code, received, sent)."""
    code, received, sent = outcome
    m = result.setdefault((gtype, SERVICE, method),
                          {"started": 0, "handled": {}, "msg_received": 0, "msg_sent": 0})
    m["started"] += 1
    m["handled"][code] = m["handled"].get(code, 0) + 1
    m["msg_received"] += received
    m["msg_sent"] += sent


def run_mix(target, seed=0):
    """Runs the mix against target; returns {(type, service, method): {started, handled, msg_received, msg_sent}}.

    seed 0 runs the calls in the order listed; another seed shuffles the order (the counts stay the same).
    """
    calls = mix_calls()
    if seed:
        random.Random(seed).shuffle(calls)
    result = {}
    with _channel(target) as ch:
        stub = pb_grpc.EchoStub(ch)
        for gtype, method, expected, fn in calls:
            outcome = fn(stub)
            if outcome[0] != expected:
                print("echo_client: %s %s ended %s, expected %s" % (gtype, method, outcome[0], expected),
                      file=sys.stderr)
            tally(result, gtype, method, outcome)
    time.sleep(0.3)  # let the server notice the cancelled / timed-out calls before anyone scrapes
    return result


def to_json(result):
    return {"|".join(k): v for k, v in sorted(result.items())}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True, help="host:port of an Echo server")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON (default: one line per method)")
    args = ap.parse_args()
    if not wait_ready(args.target, 10):
        sys.exit("echo_client: %s not reachable" % args.target)
    result = run_mix(args.target, args.seed)
    if args.json:
        print(json.dumps(to_json(result), indent=1, sort_keys=True))
    else:
        for key, m in to_json(result).items():
            print(key, json.dumps(m, sort_keys=True))


if __name__ == "__main__":
    main()
