# test_reference.py: the shim's page against the real go-grpc-prometheus
# serving the same proto with the same mix, and against Prometheus' own
# tools: promtool's linter and a real scrape.
import os
import shutil
import subprocess
import tempfile
import time
from unittest import mock

import pytest

from harness import (PROTOSET, ROOT, Server, build_info, echo_client, family_heads, http_get,
                     parse_page, project_version, prom_query, running_prometheus, scrape,
                     wait_stable)


# Each server style, and the ones that declare too little of themselves
# (the C server's Bidi is unregistered; Ruby registers no method) with the
# proto's descriptor set in GRPCPROM_PROTOSET: then they too must look as Go.
STYLES = ["sync", "async", "callback", "c", "c+protoset", "ruby+protoset"]


def shim_server(style, env=None):
    kind, _, protoset = style.partition("+")
    env = dict(env or {})
    if protoset:
        env["GRPCPROM_PROTOSET"] = PROTOSET
    return Server(kind, env=env)
COMPARED = ("grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total",
            "grpc_server_msg_sent_total", "grpc_server_handling_seconds_bucket",
            "grpc_server_handling_seconds_count")
# Histogram bounds for comparing numbers. Measured call by call on the server (Go and the shim, every
# style), the mix's calls last: without a sleep, 0-2 ms with one message each way, but 1-19 ms (past
# 25 ms now and then) when a stream carries several (ClientStream, Bidi: the handler's time includes
# the Python client's pacing of the stream); with a 30 ms sleep 30-42 ms; cancelled at 125 ms 124-133
# ms; with a 150 ms sleep 150-165 ms; with the 200 ms deadline 193-203 ms. The default bounds .005,
# .01 and .025 cut through the first group, so the two servers' buckets disagreed at random (20 of 40
# comparisons failed in 10 runs). These bounds are at least 23 ms from every duration measured; the
# default ones are compared before any call. None compares the numbers on the default bounds.
NUMBERS_BUCKETS = ".1,.25,.5,1,2.5,5,10"


@pytest.fixture(scope="module")
def go_binary():
    """The Go reference server, built offline from Debian's Go packages, once per module."""
    out = os.path.join(tempfile.mkdtemp(prefix="grpcprom-go-"), "echo_go")
    subprocess.run([os.path.join(ROOT, "tests", "go_reference", "build.sh"), out], check=True)
    yield out
    shutil.rmtree(os.path.dirname(out))


class GoReference:
    """A fresh Go reference server (so its counters start at 0) with the given histogram bounds."""

    def __init__(self, binary, buckets=None):
        args = [binary, "--port", "0", "--metrics-port", "0"] + (["--buckets", buckets] if buckets else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        ready, port, metrics_port = self.proc.stdout.readline().split()
        assert ready == "READY"
        self.target = "127.0.0.1:" + port
        # /metrics also has Go runtime series that change on every scrape, so
        # wait_stable could never see it settle; /grpc-metrics is the same
        # go-grpc-prometheus collector alone.
        self.url = "http://127.0.0.1:%s/grpc-metrics" % metrics_port
        self.full_url = "http://127.0.0.1:%s/metrics" % metrics_port
        assert echo_client.wait_ready(self.target, 10), self.target

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture
def go_reference(go_binary):
    """Starts Go reference servers: go_reference(buckets=None) -> GoReference; stops them after the test."""
    started = []

    def start(buckets=None):
        started.append(GoReference(go_binary, buckets))
        return started[-1]
    yield start
    for go in started:
        go.stop()


def grpc_server_series(samples):
    return {k: v for k, v in samples.items() if k[0].startswith("grpc_server_")}


def comparable(samples):
    """The Echo service's counters, buckets and histogram counts:
    (name, grpc_type, grpc_method, grpc_code or le) -> value. _sum is left out (durations differ)."""
    out = {}
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if name in COMPARED and lab.get("grpc_service") == echo_client.SERVICE:
            out[(name, lab["grpc_type"], lab["grpc_method"], lab.get("grpc_code", lab.get("le", "")))] = value
    return out


def as_c_server_declares(go_series):
    """What the plain C test server must pre-initialise, given Go's pre-initialised series: its Bidi is
    served unregistered (grpc_server_request_call), so it has no series before its first call; its
    ServerStream is registered with READ_INITIAL_BYTE_BUFFER only, so it is labelled unary until a call
    streams (README: the C API's grpc_type comes from payload handling, then from what calls do)."""
    out = {}
    for (name, labels), value in go_series.items():
        lab = dict(labels)
        if lab.get("grpc_service") == echo_client.SERVICE and lab.get("grpc_method") == "Bidi":
            continue
        if lab.get("grpc_service") == echo_client.SERVICE and lab.get("grpc_method") == "ServerStream":
            assert lab["grpc_type"] == "server_stream"
            lab["grpc_type"] = "unary"
        out[(name, frozenset(lab.items()))] = value
    return out


def deadline_calls():
    """{method: number of calls in echo_client's mix made with a deadline (timeout=...)}. Each call's
    function is run against stand-ins for the client's call helpers that only record their arguments."""
    seen = []

    def record(*_args, **kwargs):
        seen.append(kwargs.get("timeout") is not None)

    counts = {}
    with mock.patch.multiple(echo_client, _unary=record, _server_stream=record, _client_stream=record,
                             _bidi=record):
        for _gtype, method, _code, fn in echo_client.mix_calls():
            del seen[:]
            fn(None)
            assert len(seen) == 1, "a mix call that does not go through one known helper: %s" % method
            counts[method] = counts.get(method, 0) + seen[0]
    return {m: n for m, n in counts.items() if n}


def deadlines_to_go_canceled(go, client_saw, deadlines):
    """grpc-go usually sees the client's RST_STREAM before its own deadline timer fires and counts an
    expired deadline as Canceled; the shim counts it DeadlineExceeded. Per method, the calls that the Go
    server's client saw end DeadlineExceeded but the Go page does not count so are moved from Canceled
    to DeadlineExceeded on the Go side: at most as many as the mix made with a deadline, and only as
    many as Canceled holds. Returns {method: number moved}."""
    moved = {}
    for method, n in sorted(deadlines.items()):
        (gtype, service, _), = [k for k in client_saw if k[2] == method]
        saw = client_saw[(gtype, service, method)]["handled"]
        de = ("grpc_server_handled_total", gtype, method, "DeadlineExceeded")
        canceled = de[:3] + ("Canceled",)
        k = saw.get("DeadlineExceeded", 0) - go.get(de, 0)
        assert 0 <= k <= n and go.get(canceled, 0) - k == saw.get("Canceled", 0), \
            "%s: %d calls with a deadline; the Go server's client saw %s, its page counts %s DeadlineExceeded " \
            "and %s Canceled" % (method, n, saw, go.get(de, 0), go.get(canceled, 0))
        go[de] = go.get(de, 0) + k
        go[canceled] -= k
        moved[method] = int(k)
    return moved


def differences(ours, go):
    return "\n".join("%s: shim %s, go %s" % (k, ours.get(k), go.get(k))
                     for k in sorted(set(ours) | set(go), key=str) if ours.get(k) != go.get(k))


def assert_same_preinitialised_series(kind, go, shim):
    """Before any call: the same names, labels (le included) and zeros; the C server's differences are
    spelled out by as_c_server_declares."""
    before_go = grpc_server_series(parse_page(scrape(go.url)))
    assert grpc_server_series(parse_page(scrape(go.full_url))) == before_go
    before_shim = grpc_server_series(parse_page(scrape(shim.metrics_port)))
    want = as_c_server_declares(before_go) if kind == "c" else before_go  # "c+protoset" as Go
    assert before_shim == want, differences(before_shim, want)


@pytest.mark.parametrize("kind", STYLES)
def test_same_preinitialised_series_as_go_grpc_prometheus(go_reference, kind):
    go = go_reference()
    shim = shim_server(kind)
    try:
        assert_same_preinitialised_series(kind, go, shim)
    finally:
        code, err = shim.stop()
    assert code == 0 and "grpcprom" not in err, err


@pytest.mark.parametrize("kind", STYLES)
def test_same_numbers_as_go_grpc_prometheus(go_reference, kind):
    deadlines = deadline_calls()
    go_server = go_reference(NUMBERS_BUCKETS)
    shim = shim_server(kind, env={"GRPCPROM_BUCKETS": NUMBERS_BUCKETS})
    try:
        assert_same_preinitialised_series(kind, go_server, shim)
        go_client = echo_client.run_mix(go_server.target)
        echo_client.run_mix(shim.target)
        after_go = wait_stable(go_server.url, idle=True)
        after_shim = wait_stable(shim.metrics_port, idle=True)
    finally:
        code, err = shim.stop()
    assert code == 0 and "grpcprom" not in err, err
    go, ours = comparable(after_go), comparable(after_shim)
    # Every series is there after the mix; for the C server, Bidi has only the codes its calls ended with.
    missing = {k for k in go if k[0] == "grpc_server_handled_total" and k[2] == "Bidi" and not go[k]} \
        if kind == "c" else set()
    assert set(ours) == set(go) - missing, differences(ours, go)
    go = {k: v for k, v in go.items() if k not in missing}
    if kind.startswith("ruby"):
        # A Ruby handler never sees a cancel or a deadline (ActiveCall#cancelled?
        # reads a status only clients get): the mix's cancelled calls run their
        # whole 2 s sleep, where Go's handlers return at once. Their count is
        # the same, their duration is not: buckets are left out.
        go = {k: v for k, v in go.items() if k[0] != "grpc_server_handling_seconds_bucket"}
        ours = {k: v for k, v in ours.items() if k[0] != "grpc_server_handling_seconds_bucket"}
    moved = deadlines_to_go_canceled(go, go_client, deadlines)
    assert ours == go, "deadline calls %s; moved from Canceled to DeadlineExceeded on the Go side: %s\n%s" \
        % (deadlines, moved, differences(ours, go))


def test_promtool_accepts_the_page():
    s = Server("callback")
    try:
        echo_client.run_mix(s.target)
        page = scrape(s.metrics_port)
    finally:
        s.stop()
    check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_scrapes_the_page():
    s = Server("async")
    try:
        with running_prometheus(s.metrics_port) as prom_port:
            echo_client.run_mix(s.target)
            up, quantile, started = [], [], []
            deadline = time.time() + 60
            while time.time() < deadline:
                time.sleep(1)
                try:
                    up = prom_query(prom_port, 'up{job="grpc"}')
                    quantile = prom_query(prom_port, 'histogram_quantile(0.9, grpc_server_handling_seconds_bucket'
                                                     '{grpc_method="Unary"})')
                    started = prom_query(prom_port, 'sum(grpc_server_started_total{grpc_method="Unary"})')
                except OSError:
                    continue
                if up and up[0]["value"][1] == "1" and quantile and started and started[0]["value"][1] == "10":
                    break
            assert up and up[0]["value"][1] == "1"
            value = float(quantile[0]["value"][1])
            assert 0 < value <= 10
            assert started[0]["value"][1] == "10"
    finally:
        s.stop()


def test_process_families_are_client_golangs_and_build_info_says_the_mode(go_reference):
    """The page carries the process collector's families of a Go service,
    with the same HELP and TYPE lines, and values that describe the server;
    and grpcprom_build_info, as go_info, names what counts."""
    go = go_reference()
    s = Server("sync")
    try:
        _, _, go_page = http_get(go.full_url)
        page = scrape(s.metrics_port)
        assert family_heads(page, "process_") == family_heads(go_page, "process_")
        samples = {k[0]: v for k, v in parse_page(page).items() if k[0].startswith("process_")}
        pid = s.proc.pid
        fds = len(os.listdir("/proc/%d/fd" % pid))
        assert abs(samples["process_open_fds"] - fds) <= 2, (samples["process_open_fds"], fds)
        limits = open("/proc/%d/limits" % pid).read()
        assert "Max open files            %d" % samples["process_max_fds"] in limits
        rss_kb = int([l for l in open("/proc/%d/status" % pid) if l.startswith("VmRSS")][0].split()[1])
        assert 0.8 < samples["process_resident_memory_bytes"] / (rss_kb * 1024) < 1.25
        started = os.stat("/proc/%d" % pid).st_ctime
        assert abs(samples["process_start_time_seconds"] - started) < 5
        assert samples["process_cpu_seconds_total"] > 0
        assert build_info(parse_page(page)) == {"grpc_version": "29.0.0", "mode": "internals",
                                                "version": project_version()}
    finally:
        s.stop()
