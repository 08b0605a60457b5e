# test_rules.py: what operators plug the page into. The rules of
# contrib/prometheus/ pass promtool's checks and unit tests, and a real
# Prometheus scraping a shimmed server records every rule into data; every
# query of the Grafana dashboard of contrib/grafana/ returns data there.
import os
import subprocess

import pytest

from harness import ROOT, Server, dashboard_panels_without_data, prom_query, prometheus_with_traffic

RULES = os.path.join(ROOT, "contrib", "prometheus", "grpcprom.rules.yml")
RULE_TESTS = os.path.join(ROOT, "tests", "prometheus", "grpcprom.rules.test.yml")


def test_promtool_checks_the_rules():
    check = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 10 rules found" in check.stdout, check.stdout + check.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    run = subprocess.run(["promtool", "test", "rules", RULE_TESTS], capture_output=True, text=True)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


DASHBOARD = os.path.join(ROOT, "contrib", "grafana", "grpcprom-dashboard.json")


@pytest.fixture(scope="module")
def prometheus():
    """A real Prometheus with the rules, scraping a shimmed async server
    while the mix runs on it."""
    s = Server("async")
    try:
        with prometheus_with_traffic(s, [RULES]) as prom_port:
            yield prom_port
    finally:
        s.stop()


def test_a_real_prometheus_records_every_rule(prometheus):
    for name in ("grpc_server:started:rate5m", "grpc_server:handled:rate5m", "grpc_server:in_flight",
                 "grpc_server:error_ratio:rate5m", "grpc_server:handling_seconds:p99_5m"):
        assert prom_query(prometheus, '%s{job="grpc",grpc_method="Unary"}' % name), name
    assert float(prom_query(prometheus, 'grpc_server:started:rate5m{grpc_method="Unary"}')[0]["value"][1]) > 0


def test_every_dashboard_query_returns_data(prometheus):
    empty, queries = dashboard_panels_without_data(prometheus, DASHBOARD)
    assert queries == 14
    assert not empty, empty


def test_the_readmes_scrape_configs_are_valid(tmp_path):
    """The scrape jobs the README gives: promtool reads the static and
    file_sd ones as a prometheus.yml (Debian's Prometheus is built without
    Kubernetes discovery); the pods job's relabelling turns a pod's address
    and port annotation into the page's address."""
    import re
    import yaml
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = [b.split("\n", 1)[1].split("```", 1)[0] for b in readme.split("```yaml")[1:]]
    configs = [yaml.safe_load(b) for b in blocks if "kubernetes_sd_configs" in b]
    assert len(configs) == 1, blocks
    jobs = {job["job_name"]: job for job in configs[0]["scrape_configs"]}
    assert set(jobs) == {"grpc-static", "grpc-files", "grpc-pods"}
    checked = {"scrape_configs": [jobs["grpc-static"], jobs["grpc-files"]]}
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(checked))
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr

    pods = jobs["grpc-pods"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    address = [r for r in pods["relabel_configs"] if r.get("target_label") == "__address__"][0]
    joined = ";".join(["10.1.2.3:8080", "9091"])  # __address__;the port annotation
    m = re.fullmatch(address["regex"], joined)  # Prometheus anchors its regexes
    assert m and m.expand(address["replacement"].replace("$", "\\")) == "10.1.2.3:9091"
