# test_public_api.py: counting through gRPC's public C API alone
# (GRPCPROM_INTERNALS=0, as on a libgrpc build the shim does not know):
# exact for the servers whose calls that API shows (C, C++ async, Ruby); the
# C++ sync and callback servers' calls, published through gRPC's internals
# only, counted in grpcprom_calls_untracked_total, with one warning.
import pytest

from harness import (Server, build_info, echo_client, echo_series, expected_series, h2load_unary,
                     nonzero, parse_page, project_version, scrape, wait_stable)

PUBLIC = {"GRPCPROM_INTERNALS": "0", "GRPCPROM_LOG": "info"}
MODE_LINE = "GRPCPROM_INTERNALS=0: counting through gRPC's public C API"


def mix_calls(result):
    return sum(m["started"] for m in result.values())


@pytest.mark.parametrize("kind", ["c", "async", "ruby"])
def test_the_public_api_counts_exactly(kind, tmp_path):
    s = Server(kind, env=PUBLIC)
    try:
        result = echo_client.run_mix(s.target)
        page = wait_stable(s.metrics_port, idle=True)
        assert nonzero(echo_series(page)) == expected_series(result)
        assert build_info(page) == {"grpc_version": "29.0.0", "mode": "public_api",
                                    "version": project_version()}
        # and under load: 96 calls at once over 6 connections
        n = 3000
        h2load_unary(s.target, n, tmp_path)
        after = echo_series(wait_stable(s.metrics_port, idle=True))
        before = echo_series(page)
        for name in ("grpc_server_started_total", "grpc_server_msg_received_total",
                     "grpc_server_msg_sent_total", "grpc_server_handling_seconds_count"):
            key = (name, "unary", "Unary", "")
            assert after[key] - before[key] == n, name
        key = ("grpc_server_handled_total", "unary", "Unary", "OK")
        assert after[key] - before[key] == n
        assert parse_page(scrape(s.metrics_port))[("grpcprom_calls_untracked_total", frozenset())] == 0
    finally:
        code, err = s.stop()
    assert code == 0, err
    # the mode it ran in, said once, and nothing else went untracked
    assert err.count(MODE_LINE) == 1, err
    assert not [l for l in err.splitlines() if "untracked" in l and MODE_LINE not in l], err


@pytest.mark.parametrize("kind", ["sync", "callback"])
def test_calls_the_public_api_cannot_see_are_counted_apart(kind):
    s = Server(kind, env=PUBLIC)
    try:
        result = echo_client.run_mix(s.target)
        echo_client.run_mix(s.target)
        page = wait_stable(s.metrics_port)
        assert nonzero(echo_series(page)) == {}
        assert page[("grpcprom_calls_untracked_total", frozenset())] == 2 * mix_calls(result)
    finally:
        code, err = s.stop()
    assert code == 0, err
    lines = [l for l in err.splitlines() if "counted only in grpcprom_calls_untracked_total" in l
             and MODE_LINE not in l]
    assert len(lines) == 1 and "a server call was answered without its request" in lines[0], err
