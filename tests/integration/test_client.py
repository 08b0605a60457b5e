# test_client.py: the shim's client series (grpc_client_*) against the real
# go-grpc-prometheus client interceptors, the clients (Go; C++ with its
# blocking, async and callback APIs; Ruby) running one scenario against the
# same servers; and GRPCPROM_CLIENT's auto and off.
#
# The scenario (tests/go_reference/client/main.go, echo_client_cc.cc
# --scenario [--api async|callback], echo_client.rb), and what
# go-grpc-prometheus v1 records for each step with Debian's grpc-go 1.33, as
# observed (GO_OBSERVED is the sum):
# - Unary OK x3: started, 1 sent (at invocation), handled OK, timed; nothing
#   received (v1 counts a unary reply only when the call failed).
# - Unary NotFound: started, 1 sent, 1 received (the v1 quirk), handled
#   NotFound, timed.
# - ServerStream, 3 replies: SendMsg: 1 sent, 1 send observed; 4 RecvMsg: 3
#   received, 4 recv observed (the 4th returns io.EOF: handled OK, timed).
# - ServerStream, 2 replies then Aborted: 1 sent, 1 send; 2 received, 3 recv;
#   handled Aborted.
# - ClientStream, 3 writes, OK: 3 sent, 3 send; CloseAndRecv's one RecvMsg
#   returns nil: 1 received, 1 recv; never handled nor timed (v1 quirk).
# - ClientStream, 2 writes, InvalidArgument: 2 sent, 2 send; its RecvMsg
#   fails: 1 recv, handled InvalidArgument.
# - Bidi OK: 2 sent, 2 send; 3 received, 4 recv (io.EOF); handled OK.
# - Bidi Internal: 1 sent, 1 send; 1 recv (the error); handled Internal.
# - Silent server, Unary with 300 ms: grpc-go uses a connection only once the
#   server's HTTP/2 preface came, so the call waits for one until its
#   deadline: started, 1 sent, 1 received (quirk), handled DeadlineExceeded.
# - Silent server, ServerStream with 300 ms: NewStream itself fails with
#   DeadlineExceeded: started, handled DeadlineExceeded, nothing else.
# - Down server (fail-fast): Unary: started, 1 sent, 1 received (quirk),
#   handled Unavailable; ServerStream, ClientStream, Bidi: NewStream fails
#   with Unavailable: started, handled Unavailable, nothing else.
# - Unary with its deadline 1 s past: started, 1 sent, 1 received (quirk),
#   handled DeadlineExceeded.
# - ServerStream {sleep 2 s} with 300 ms: the stream opens (grpc-go waits for
#   no headers) and SendMsg succeeds: 1 sent, 1 send; the first RecvMsg
#   fails: 1 recv, handled DeadlineExceeded.
# - Bidi {sleep 2 s} with 300 ms: 1 sent, 1 send; 1 recv (fails), handled
#   DeadlineExceeded.
# - Unary cancelled after 100 ms: started, 1 sent, 1 received (quirk),
#   handled Canceled.
# - Bidi cancelled after its first reply: 1 sent, 1 send; 1 received, 2 recv;
#   handled Canceled.
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from harness import (BUILD, PRELOAD, PROTOSET, ROOT, Server, echo_client, family_heads, free_port,
                     parse_page)

GRPCPROM = os.path.join(BUILD, "exporter", "grpcprom")
CC = os.path.join(BUILD, "tests", "client", "echo_client_cc")
# The C++ client once per API: "cc" the blocking stub, "cc-async" the
# completion queue, "cc-callback" the reactors.
CLIENTS = {"cc": [CC, "--scenario"],
           "cc-async": [CC, "--scenario", "--api", "async"],
           "cc-callback": [CC, "--scenario", "--api", "callback"],
           "ruby": [os.path.join(BUILD, "tests", "client", "echo_client_ruby"), "--scenario"]}

# The code each step of the scenario ends with, in every client.
EXPECTED_CODES = (
    [["unary ok", "OK"]] * 3 +
    [["unary not found", "NotFound"], ["server stream ok", "OK"], ["server stream aborted", "Aborted"],
     ["client stream ok", "OK"], ["client stream invalid argument", "InvalidArgument"],
     ["bidi ok", "OK"], ["bidi internal", "Internal"],
     ["silent unary", "DeadlineExceeded"], ["silent server stream", "DeadlineExceeded"],
     ["down unary", "Unavailable"], ["down server stream", "Unavailable"],
     ["down client stream", "Unavailable"], ["down bidi", "Unavailable"],
     ["unary past deadline", "DeadlineExceeded"], ["server stream deadline", "DeadlineExceeded"],
     ["bidi deadline", "DeadlineExceeded"], ["unary cancelled", "Canceled"],
     ["bidi cancelled", "Canceled"]])

# What the Go client's page shows after the scenario, per method: started,
# sent, received, send and recv observations, handled by code (the handling
# time's count is the sum of handled).
GO_OBSERVED = {
    ("unary", "Unary"): (8, 8, 5, 0, 0, {"OK": 3, "NotFound": 1, "DeadlineExceeded": 2,
                                         "Unavailable": 1, "Canceled": 1}),
    ("server_stream", "ServerStream"): (5, 3, 5, 3, 8, {"OK": 1, "Aborted": 1, "DeadlineExceeded": 2,
                                                        "Unavailable": 1}),
    ("client_stream", "ClientStream"): (3, 5, 1, 5, 2, {"InvalidArgument": 1, "Unavailable": 1}),
    ("bidi_stream", "Bidi"): (5, 5, 4, 5, 8, {"OK": 1, "Internal": 1, "DeadlineExceeded": 1,
                                              "Unavailable": 1, "Canceled": 1}),
}

# The callback API's page is not Go's, because of its batches
# (grpcpp/support/client_callback.h): StartCall starts {SEND_INITIAL_METADATA,
# RECV_INITIAL_METADATA} (a ServerStream's with SEND_MESSAGE and
# SEND_CLOSE_FROM_CLIENT in it too) and, apart, {RECV_STATUS_ON_CLIENT}; each
# read is {RECV_MESSAGE} alone, each write {SEND_MESSAGE} alone. The client
# reads and writes as Go does; but:
# (1) the status batch completes as soon as the call ends (trailers, a
# Trailers-Only reply, a cancel, the deadline), mostly before the read that
# finds the end: the shim then times a terminal receive for the status (as
# for a C++ Finish without that read), and that read once more: one more
# grpc_client_msg_recv_handling_seconds observation than Go for "server
# stream ok", "server stream aborted", "bidi internal", "bidi cancelled" in
# most runs, "bidi ok" and "bidi deadline" in some;
# (2) "server stream deadline": the server sends no headers before the
# deadline, and in most runs the first batch fails whole (by its
# RECV_INITIAL_METADATA): the shim takes its SEND_MESSAGE as not sent and the
# stream as never opened (Go's NewStream failing): no message sent, no send
# or receive timed, where Go counts 1 sent, 1 send and 1 receive.
# Typically ServerStream shows msg_sent_total and the send count 2 (Go 3) and
# the recv count 9 (Go 8); Bidi the recv count 10 (Go 8).
# The callback API's ServerStream starts with one batch that also waits for
# the server's headers (SEND_INITIAL_METADATA, RECV_INITIAL_METADATA,
# SEND_MESSAGE, SEND_CLOSE_FROM_CLIENT). When no headers come before the
# deadline ("server stream deadline": the server sleeps first), gRPC fails
# that batch whole, so the shim cannot tell that its request went out, and
# takes the stream for one that never opened, as Go's failed NewStream:
# none sent, no send nor receive timed, where Go counts 1, 1 and 1. That
# happens in most runs, not all (the headers race the deadline).
CALLBACK_UNOPENED = frozenset({
    ("grpc_client_msg_sent_total", "server_stream", "ServerStream", ""),
    ("grpc_client_msg_send_handling_seconds_count", "server_stream", "ServerStream", ""),
    ("grpc_client_msg_recv_handling_seconds_count", "server_stream", "ServerStream", "")})

COUNTERS = ("grpc_client_started_total", "grpc_client_handled_total", "grpc_client_msg_received_total",
            "grpc_client_msg_sent_total")
HISTOGRAMS = ("grpc_client_handling_seconds", "grpc_client_msg_recv_handling_seconds",
              "grpc_client_msg_send_handling_seconds")

REGION_NAMES = itertools.count()


def expand(observed):
    """GO_OBSERVED as client_series gives it."""
    out = {}
    for (gtype, method), (started, sent, received, send_n, recv_n, handled) in observed.items():
        for family, value in (("grpc_client_started_total", started), ("grpc_client_msg_sent_total", sent),
                              ("grpc_client_msg_received_total", received),
                              ("grpc_client_msg_send_handling_seconds_count", send_n),
                              ("grpc_client_msg_recv_handling_seconds_count", recv_n),
                              ("grpc_client_handling_seconds_count", sum(handled.values()))):
            out[(family, gtype, method, "")] = value
        for code, n in handled.items():
            out[("grpc_client_handled_total", gtype, method, code)] = n
    return {k: v for k, v in out.items() if v}


def client_series(samples):
    """The Echo service's client counters and histogram counts:
    (family, grpc_type, grpc_method, grpc_code or "") -> value. A series at 0
    is left out: v1's client declares no series ahead of a call."""
    out = {}
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if lab.get("grpc_service") != echo_client.SERVICE or not value:
            continue
        if name in COUNTERS or name in [h + "_count" for h in HISTOGRAMS]:
            out[(name, lab["grpc_type"], lab["grpc_method"], lab.get("grpc_code", ""))] = value
    return out


def go_without_v1_quirks(go):
    """Go's client series as the shim must show them: go-grpc-prometheus v1
    but for two quirks the shim does not copy, corrected from the Go page
    itself. (1) v1 counts a unary reply as received only when the call
    failed (`if err != nil { monitor.ReceivedMessage() }`); the shim counts
    one for each unary call that ended OK and none for a failed one: a unary
    method's msg_received is its handled{OK}. (2) v1 never marks a
    client-streaming call that ended OK as handled nor times it (the
    generated CloseAndRecv's RecvMsg returns nil, never io.EOF); the shim
    does: a client_stream method gains started - sum(handled) in handled{OK}
    and in grpc_client_handling_seconds' count."""
    out = dict(go)
    for (family, gtype, method, _), started in go.items():
        if family != "grpc_client_started_total":
            continue
        if gtype == "unary":
            out[("grpc_client_msg_received_total", gtype, method, "")] = \
                go.get(("grpc_client_handled_total", gtype, method, "OK"), 0)
        if gtype == "client_stream":
            handled = sum(v for k, v in go.items()
                          if k[0] == "grpc_client_handled_total" and k[1:3] == (gtype, method))
            for key in (("grpc_client_handled_total", gtype, method, "OK"),
                        ("grpc_client_handling_seconds_count", gtype, method, "")):
                out[key] = out.get(key, 0) + started - handled
    return {k: v for k, v in out.items() if v}


def differences(ours, go):
    return "\n".join("%s: shim %s, go %s" % (k, ours.get(k), go.get(k))
                     for k in sorted(set(ours) | set(go)) if ours.get(k) != go.get(k))


class SilentListener:
    """A TCP listener that accepts connections and never answers (no HTTP/2
    preface): a call to it waits until its deadline."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.held, self.stopped = [], False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    # Accepts and keeps every connection until close().
    def _accept(self):
        while not self.stopped:
            try:
                self.held.append(self.sock.accept()[0])
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stopped = True
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def endpoints():
    """The scenario's three addresses: --target, a plain C echo server (no
    shim: only the client counts); --silent; --down, a port nothing binds."""
    server = Server("c", preload=False)
    silent = SilentListener()
    try:
        yield ["--target", server.target, "--silent", "127.0.0.1:%d" % silent.port,
               "--down", "127.0.0.1:%d" % free_port()]
    finally:
        silent.close()
        server.stop()


@pytest.fixture(scope="module")
def go_page(endpoints):
    """(the codes, the page) of the Go reference client's run of the scenario,
    built offline from Debian's Go packages."""
    workdir = tempfile.mkdtemp(prefix="grpcprom-go-client-")
    try:
        binary, page = os.path.join(workdir, "echo_go_client"), os.path.join(workdir, "page")
        subprocess.run([os.path.join(ROOT, "tests", "go_reference", "build.sh"), "--client", binary],
                       check=True)
        run = subprocess.run([binary, *endpoints, "--page", page], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        with open(page) as f:
            yield json.loads(run.stdout), f.read()
    finally:
        shutil.rmtree(workdir)


def plain_env(extra=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("GRPCPROM_CLIENT", None)
    env.update(extra or {})
    return env


def ruby_or_skip(client):
    if client == "ruby":
        check = subprocess.run(["ruby", "-e", "require 'grpc'"], capture_output=True, text=True)
        if check.returncode != 0:
            pytest.skip("ruby-grpc cannot run here: %s" % check.stderr.strip())


def run_under_shim(args, setting):
    """Runs a client under the shim with GRPCPROM_CLIENT=`setting` (None:
    unset), counting in a region of its own name, which outlives it; returns
    (its codes, `grpcprom dump` of the region, or None if there is none)."""
    name = "test-client-%d-%d" % (os.getpid(), next(REGION_NAMES))
    env = plain_env({"LD_PRELOAD": PRELOAD, "GRPCPROM_SHM": name,
                     "GRPCPROM_LISTEN": "127.0.0.1:%d" % free_port()})
    if setting is not None:
        env["GRPCPROM_CLIENT"] = setting
    path = "/dev/shm/grpcprom.name." + name
    try:
        run = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0, run.stderr
        if not os.path.exists(path):
            return json.loads(run.stdout), None
        dump = subprocess.run([GRPCPROM, "dump", name], capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0, dump.stderr
        return json.loads(run.stdout), dump.stdout
    finally:
        if os.path.exists(path):
            os.unlink(path)


def assert_counts_as_go(page, go_text, unopened=frozenset()):
    """The page's client series are Go's corrected for v1's quirks, with
    Go's HELP and TYPE lines, and durations where there are observations;
    the series of `unopened` may all be one below Go's (a stream the shim
    cannot tell opened), or all equal to it."""
    assert page is not None, "the client left no region: its client calls were not counted"
    samples = parse_page(page)
    assert not [k for k, v in samples.items() if k[0].startswith("grpc_client_") and v
                and dict(k[1]).get("grpc_service") != echo_client.SERVICE]
    ours, go = client_series(samples), go_without_v1_quirks(client_series(parse_page(go_text)))
    if unopened and all(ours.get(k, 0) == go[k] - 1 for k in unopened):
        go = {k: v - 1 if k in unopened else v for k, v in go.items()}
    assert ours == go, differences(ours, go)
    assert family_heads(page, "grpc_client_") == family_heads(go_text, "grpc_client_")
    for (name, labels), value in samples.items():
        if name.startswith("grpc_client_") and name.endswith("_count") and value > 0:
            assert samples[(name[:-len("_count")] + "_sum", labels)] > 0, (name, dict(labels))


def test_go_reference_client_counts_as_observed(go_page):
    codes, page = go_page
    assert codes == EXPECTED_CODES
    go = client_series(parse_page(page))
    assert go == expand(GO_OBSERVED), differences(go, expand(GO_OBSERVED))


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_gets_the_scenarios_codes_without_the_shim(endpoints, client):
    ruby_or_skip(client)
    run = subprocess.run(CLIENTS[client] + endpoints, capture_output=True, text=True, timeout=60,
                         env=plain_env())
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == EXPECTED_CODES


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_shimmed_client_counts_as_go_grpc_prometheus(endpoints, go_page, client):
    ruby_or_skip(client)
    codes, page = run_under_shim(CLIENTS[client] + endpoints, "on")
    assert codes == EXPECTED_CODES
    assert_counts_as_go(page, go_page[1], CALLBACK_UNOPENED if client == "cc-callback" else frozenset())
    assert not [k for k in parse_page(page) if k[0].startswith("grpc_server_")]


def test_a_client_only_process_gets_no_region_nor_page_by_default(endpoints):
    name, page_port = "test-client-auto-%d" % os.getpid(), free_port()
    env = plain_env({"LD_PRELOAD": PRELOAD, "GRPCPROM_SHM": name,
                     "GRPCPROM_LISTEN": "127.0.0.1:%d" % page_port})
    # --hold keeps it running, a call open, until a line on stdin.
    target = endpoints[endpoints.index("--target") + 1]
    proc = subprocess.Popen([CLIENTS["cc"][0], "--target", target, "--hold", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline() == "HELD 1\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", page_port), timeout=5).close()
        mine = [f for f in os.listdir("/dev/shm") if name in f or f == "grpcprom.pid.%d" % proc.pid]
        assert mine == []
        _, err = proc.communicate("\n", timeout=60)
        assert proc.returncode == 0, err
        mine = [f for f in os.listdir("/dev/shm") if name in f or f == "grpcprom.pid.%d" % proc.pid]
        assert mine == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if os.path.exists("/dev/shm/grpcprom.name." + name):
            os.unlink("/dev/shm/grpcprom.name." + name)


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_a_serving_process_counts_its_client_calls_unless_off(endpoints, go_page, setting):
    """A process that serves as well (--serve) has a region either way; by
    default (unset) it counts its client calls as Go would, with off none."""
    codes, page = run_under_shim(CLIENTS["cc"] + endpoints + ["--serve"],
                                 None if setting == "auto" else setting)
    assert codes == EXPECTED_CODES
    assert page is not None, "a serving process left no region"
    if setting == "auto":
        assert_counts_as_go(page, go_page[1])
    else:
        assert not [k for k in parse_page(page) if k[0].startswith("grpc_client_")]


@pytest.mark.parametrize("clock, code", [("realtime", "OK"), ("span", "OK"), ("none", "OK"),
                                         ("past", "DeadlineExceeded")])
def test_a_c_clients_deadline_on_any_clock_counts(endpoints, clock, code):
    """gRPC takes a client's deadline on any clock, a span (GPR_TIMESPAN,
    which gpr_now refuses with an abort) and gpr_inf_past included: the
    process runs on, and its call counts with the code it got."""
    out, page = run_c_client(endpoints, ["--deadline", clock])
    assert out.startswith("status %d " % (0 if code == "OK" else 4)), out
    handled = {dict(k[1]).get("grpc_code"): v for k, v in parse_page(page).items()
               if k[0] == "grpc_client_handled_total"}
    assert handled == {code: 1}, page


def test_a_client_only_process_types_its_calls_from_a_protoset(endpoints):
    """With GRPCPROM_PROTOSET, a process that only calls gets its client
    series typed as declared, and no server series for the methods it does
    not serve; a declared method it never called shows nothing."""
    _, page = run_c_client(endpoints, [], {"GRPCPROM_PROTOSET": PROTOSET})
    samples = parse_page(page)
    assert not [k for k in samples if k[0].startswith("grpc_server_")], page
    started = {(dict(k[1])["grpc_type"], dict(k[1])["grpc_method"]): v for k, v in samples.items()
               if k[0] == "grpc_client_started_total"}
    assert started == {("unary", "Unary"): 1}, page


def run_c_client(endpoints, args, extra_env=None):
    """Runs the C client's one unary call under the shim with
    GRPCPROM_CLIENT=on and no page; returns (its output, `grpcprom dump`
    of its region)."""
    name = "test-client-%d-%d" % (os.getpid(), next(REGION_NAMES))
    env = plain_env({"LD_PRELOAD": PRELOAD, "GRPCPROM_SHM": name, "GRPCPROM_LISTEN": "none",
                     "GRPCPROM_CLIENT": "on", **(extra_env or {})})
    path = "/dev/shm/grpcprom.name." + name
    try:
        run = subprocess.run([os.path.join(BUILD, "tests", "client", "echo_client_c"),
                              endpoints[0], endpoints[1], *args],
                             capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0 and run.stderr == "", run.stderr
        dump = subprocess.run([GRPCPROM, "dump", name], capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0, dump.stderr
        return run.stdout, dump.stdout
    finally:
        if os.path.exists(path):
            os.unlink(path)
