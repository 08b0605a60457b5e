# test_rules.py: contrib/prometheus/grpcprom.rules.yml passes promtool's
# checks and its unit tests, and a real Prometheus evaluates its recording
# rules on a shimmed server's page into data.
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

from harness import ROOT, Server, echo_client, free_port, http_get

RULES = os.path.join(ROOT, "contrib", "prometheus", "grpcprom.rules.yml")
RULE_TESTS = os.path.join(ROOT, "tests", "prometheus", "grpcprom.rules.test.yml")


def test_promtool_checks_the_rules():
    check = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 10 rules found" in check.stdout, check.stdout + check.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    run = subprocess.run(["promtool", "test", "rules", RULE_TESTS], capture_output=True, text=True)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def query(prom_port, expr):
    status, _, body = http_get("http://127.0.0.1:%d/api/v1/query?query=%s"
                               % (prom_port, urllib.parse.quote(expr)))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_a_real_prometheus_records_the_rules_from_a_shimmed_server():
    s = Server("async")
    prom_port = free_port()
    workdir = tempfile.mkdtemp(prefix="grpcprom-rules-")
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files: ['%s']\n"
                "scrape_configs:\n  - job_name: grpc\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % (RULES, s.metrics_port))
    prom = subprocess.Popen(["prometheus", "--config.file=" + config, "--storage.tsdb.path=" + workdir,
                             "--web.listen-address=127.0.0.1:%d" % prom_port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorded = ("grpc_server:started:rate5m", "grpc_server:handled:rate5m", "grpc_server:in_flight",
                "grpc_server:error_ratio:rate5m", "grpc_server:handling_seconds:p99_5m")
    try:
        deadline = time.time() + 60
        seen = {}
        while time.time() < deadline and len(seen) < len(recorded):
            echo_client.run_mix(s.target)
            for name in recorded:
                try:
                    result = query(prom_port, '%s{job="grpc",grpc_method="Unary"}' % name)
                except OSError:
                    continue
                if result:
                    seen[name] = result
        assert set(seen) == set(recorded), sorted(set(recorded) - set(seen))
        assert float(seen["grpc_server:started:rate5m"][0]["value"][1]) > 0
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        shutil.rmtree(workdir)
        s.stop()
