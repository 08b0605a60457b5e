# test_servers.py: every server flavour under the shim, driven by a real
# client through a fixed mix; the page must equal what the client saw.
import pytest

from harness import (PROTOSET, echo_client, Server, echo_series, expected_series, h2load_unary, nonzero,
                     parse_page, scrape, wait_stable)

CODES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
         "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
         "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"]
TYPES = {"Unary": "unary", "ServerStream": "server_stream", "ClientStream": "client_stream",
         "Bidi": "bidi_stream"}


@pytest.fixture(params=["sync", "async", "callback", "c", "ruby"])
def server(request):
    s = Server(request.param)
    yield s
    code, err = s.stop()
    assert code == 0, err
    assert "grpcprom" not in err, err


def registered_methods(kind):
    # The plain C server serves Bidi through grpc_server_request_call, unregistered.
    return ["Unary", "ServerStream", "ClientStream"] if kind == "c" else list(TYPES)


@pytest.mark.parametrize("server", ["sync", "async", "callback", "c"], indirect=True)
def test_registered_methods_are_zero_before_the_first_call(server):
    samples = parse_page(scrape(server.metrics_port))
    series = echo_series(samples)
    kind = [k for k in ("sync", "async", "callback", "c") if server.proc.args[0].endswith(k)][0]
    for method in registered_methods(kind):
        gtype = TYPES[method]
        if kind == "c" and method == "ServerStream":
            gtype = "unary"  # declared by payload handling only; seen streaming later
        for code in CODES:
            assert series.get(("grpc_server_handled_total", gtype, method, code)) == 0, (method, code)
        for name in ("grpc_server_started_total", "grpc_server_msg_received_total",
                     "grpc_server_msg_sent_total", "grpc_server_handling_seconds_count"):
            assert series.get((name, gtype, method, "")) == 0, (name, method)
    assert not nonzero(series)


def test_page_equals_what_the_client_saw(server):
    result = echo_client.run_mix(server.target)
    samples = wait_stable(server.metrics_port, idle=True)
    got = nonzero(echo_series(samples))
    want = expected_series(result)
    assert got == want, "\n".join(
        "%s: page %s, client %s" % (k, got.get(k), want.get(k))
        for k in sorted(set(got) | set(want), key=str) if got.get(k) != want.get(k))


def test_histograms_are_cumulative_and_end_at_count(server):
    echo_client.run_mix(server.target)
    samples = wait_stable(server.metrics_port, idle=True)
    by_series = {}
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if name == "grpc_server_handling_seconds_bucket":
            le = lab.pop("le")
            by_series.setdefault(frozenset(lab.items()), []).append((le, value))
    assert by_series
    for labels, buckets in by_series.items():
        bounds = [float(le) for le, _ in buckets]
        assert bounds == sorted(bounds) and buckets[-1][0] == "+Inf"
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), buckets
        assert counts[-1] == samples[("grpc_server_handling_seconds_count", labels)]
    # Sleeping calls land above the first buckets: latency is measured.
    unary = dict(((dict(k[1]).get("le"), v) for k in samples if k[0] == "grpc_server_handling_seconds_bucket"
                  and dict(k[1])["grpc_method"] == "Unary" for v in [samples[k]]))
    assert unary["0.1"] < unary["+Inf"]


@pytest.mark.parametrize("server", ["sync", "callback", "c"], indirect=True)
def test_unknown_paths_add_no_series(server):
    echo_client.call_unknown_method(server.target, 20)
    # The server counts a status when its send completes, which can be just
    # after the client has it.
    samples = wait_stable(server.metrics_port, idle=True)
    paths = {dict(labels).get("grpc_service") for (_, labels) in samples}
    assert "no.Such" not in paths
    methods = {dict(labels).get("grpc_method") for (_, labels) in samples}
    assert not any(m and m.startswith(("Nope", "Thing")) for m in methods)
    assert samples[("grpcprom_unknown_method_calls_total", frozenset())] == 20


@pytest.mark.parametrize("server", ["sync", "c"], indirect=True)
def test_cancelled_calls_to_invented_paths_add_no_series(server):
    import grpc
    with grpc.insecure_channel(server.target) as channel:
        for i in range(40):
            future = channel.unary_unary("/made.Up/Path%d" % i).future(b"", timeout=0.002 if i % 2 else None)
            if i % 2 == 0:
                future.cancel()
            try:
                future.result()
            except (grpc.RpcError, grpc.FutureCancelledError):
                pass
    samples = wait_stable(server.metrics_port, idle=True)
    assert not [k for k in samples if dict(k[1]).get("grpc_service") == "made.Up"]


@pytest.mark.parametrize("server", ["sync", "async", "callback", "c", "ruby"], indirect=True)
def test_every_call_counted_once_under_load(server, tmp_path):
    """h2load drives many concurrent unary calls over several connections."""
    n = 6000
    h2load_unary(server.target, n, tmp_path)
    series = echo_series(wait_stable(server.metrics_port, idle=True))
    for name in ("grpc_server_started_total", "grpc_server_msg_received_total",
                 "grpc_server_msg_sent_total", "grpc_server_handling_seconds_count"):
        assert series[(name, "unary", "Unary", "")] == n, name
    assert series[("grpc_server_handled_total", "unary", "Unary", "OK")] == n


@pytest.mark.parametrize("kind", ["ruby", "c"])
def test_a_descriptor_set_declares_every_method_and_a_bad_one_is_said(kind, tmp_path):
    """Ruby registers no method and the C server's Bidi is unregistered:
    with the proto's descriptor set every method is there from the start,
    typed as declared. Files that are no descriptor set are said in one
    line each, and counting goes on."""
    garbage = tmp_path / "garbage.protoset"
    garbage.write_bytes(b"\xff" * 40)
    s = Server(kind, env={"GRPCPROM_PROTOSET": "%s:/nonexistent.protoset:%s" % (PROTOSET, garbage)})
    try:
        series = echo_series(parse_page(scrape(s.metrics_port)))
        for method, gtype in TYPES.items():
            for code in CODES:
                assert series.get(("grpc_server_handled_total", gtype, method, code)) == 0, (method, code)
        assert not nonzero(series)
        result = echo_client.run_mix(s.target)
        assert nonzero(echo_series(wait_stable(s.metrics_port, idle=True))) == expected_series(result)
    finally:
        code, err = s.stop()
    assert code == 0, err
    lines = [l for l in err.splitlines() if l.startswith("grpcprom:")]
    assert len(lines) == 2, err
    assert "GRPCPROM_PROTOSET: /nonexistent.protoset: No such file or directory" in lines[0]
    assert "%s: not a descriptor set" % garbage in lines[1]
