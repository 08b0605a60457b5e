# test_reference.py: the shim's page against the real go-grpc-prometheus
# serving the same proto with the same mix, and against Prometheus' own
# tools: promtool's linter and a real scrape.
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from harness import ROOT, Server, echo_client, echo_series, free_port, http_get, nonzero, \
    parse_page, scrape, wait_stable


@pytest.fixture(scope="module")
def go_reference():
    """The Go reference server, built offline from Debian's Go packages."""
    out = os.path.join(tempfile.mkdtemp(prefix="grpcprom-go-"), "echo_go")
    subprocess.run([os.path.join(ROOT, "tests", "go_reference", "build.sh"), out], check=True)
    proc = subprocess.Popen([out, "--port", "0", "--metrics-port", "0"], stdout=subprocess.PIPE, text=True)
    _, port, metrics_port = proc.stdout.readline().split()
    yield "127.0.0.1:" + port, int(metrics_port)
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(os.path.dirname(out))


def grpc_server_series(samples):
    return {k: v for k, v in samples.items() if k[0].startswith("grpc_server_")}


def test_same_numbers_as_go_grpc_prometheus(go_reference):
    go_target, go_metrics = go_reference
    shim = Server("sync")
    try:
        before_go = grpc_server_series(parse_page(scrape(go_metrics)))
        before_shim = grpc_server_series(parse_page(scrape(shim.metrics_port)))
        # Pre-initialised series: the same names and labels, le included.
        assert set(before_shim) == set(before_go)
        echo_client.run_mix(go_target)
        echo_client.run_mix(shim.target)
        go = nonzero(echo_series(wait_stable(go_metrics)))
        ours = nonzero(echo_series(wait_stable(shim.metrics_port)))
    finally:
        shim.stop()
    # grpc-go sees the client's cancel a little before its own deadline
    # timer and usually counts an expired deadline as Canceled; the shim
    # counts it as DeadlineExceeded. Move those between the two codes.
    for key in [k for k in ours if k[0] == "grpc_server_handled_total" and k[3] == "DeadlineExceeded"]:
        canceled = key[:3] + ("Canceled",)
        moved = ours[key] - go.get(key, 0)
        if moved > 0 and go.get(canceled, 0) == ours.get(canceled, 0) + moved:
            go[key] = ours[key]
            go[canceled] -= moved
    go = nonzero(go)
    assert ours == go, "\n".join("%s: shim %s, go %s" % (k, ours.get(k), go.get(k))
                                 for k in sorted(set(ours) | set(go), key=str) if ours.get(k) != go.get(k))


def test_promtool_accepts_the_page():
    s = Server("callback")
    try:
        echo_client.run_mix(s.target)
        page = scrape(s.metrics_port)
    finally:
        s.stop()
    check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def query(prom_port, expr):
    status, _, body = http_get("http://127.0.0.1:%d/api/v1/query?query=%s" % (prom_port, urllib.parse.quote(expr)))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_prometheus_scrapes_the_page():
    s = Server("async")
    prom_port = free_port()
    workdir = tempfile.mkdtemp(prefix="grpcprom-prom-")
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                "  - job_name: grpc\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % s.metrics_port)
    prom = subprocess.Popen(["prometheus", "--config.file=" + config, "--storage.tsdb.path=" + workdir,
                             "--web.listen-address=127.0.0.1:%d" % prom_port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        echo_client.run_mix(s.target)
        up, quantile, started = [], [], []
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(1)
            try:
                up = query(prom_port, 'up{job="grpc"}')
                quantile = query(prom_port, 'histogram_quantile(0.9, grpc_server_handling_seconds_bucket'
                                            '{grpc_method="Unary"})')
                started = query(prom_port, 'sum(grpc_server_started_total{grpc_method="Unary"})')
            except OSError:
                continue
            if up and up[0]["value"][1] == "1" and quantile and started and started[0]["value"][1] == "10":
                break
        assert up and up[0]["value"][1] == "1"
        value = float(quantile[0]["value"][1])
        assert 0 < value <= 10
        assert started[0]["value"][1] == "10"
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        s.stop()
        shutil.rmtree(workdir)
