# test_package.py: the Debian package, built from a copy of the source,
# passes lintian, installs, and its installed shim counts a real server,
# preloaded by hand and through the installed grpcprom command, and, set up
# as the README says, fills every panel of the installed dashboard; it is
# removed again at the end. Only in the run with the shim as built (the
# package has no sanitized shim), and only as root on a machine without
# the package already installed. About one to two minutes, most of it the
# package build.
import os
import shutil
import subprocess
import tempfile

import pytest

from harness import (PROTOSET, ROOT, SERVERS, Server, dashboard_panels_without_data, echo_client,
                     echo_series, expected_series, free_port, nonzero, parse_page, project_version,
                     prometheus_with_traffic, scrape, wait_stable)

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("GRPCPROM_SHIM_BUILD")),
                       reason="the package's shim is not the sanitized one"),
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root"),
]


def package_status():
    """dpkg's status of the grpcprom package, "" when dpkg never had it."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "grpcprom"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def copy_source(dest):
    """The source tree without its build directories, VCS data and caches,
    so that the package build never writes into the tree under test."""
    def ignore(directory, names):
        top = os.path.samefile(directory, ROOT)
        return [n for n in names if n in ("__pycache__", ".pytest_cache")
                or (top and (n.startswith("build") or n.startswith(".git") or n.startswith("obj-")))]
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def clean_env():
    """This environment without any preload or grpcprom setting."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("GRPCPROM_")}


@pytest.fixture(scope="module")
def installed():
    """Builds the package in a temporary directory, runs lintian on it and
    installs it; yields (lintian's output, the package's multiarch
    directory); purges the package afterwards."""
    if package_status() not in ("", "un", "pn"):
        pytest.skip("a grpcprom package is already on this machine (%s)" % package_status())
    work = tempfile.mkdtemp(prefix="grpcprom-package-")
    try:
        version = project_version()
        src = os.path.join(work, "grpcprom-" + version)
        copy_source(src)
        changelog = subprocess.run(["dpkg-parsechangelog", "-S", "Version"], cwd=src,
                                   capture_output=True, text=True, check=True).stdout.strip()
        assert changelog == version, "debian/changelog says %s, meson.build %s" % (changelog, version)
        build = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b", "-jauto"], cwd=src,
                               env=clean_env(), capture_output=True, text=True, timeout=1800)
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
        multiarch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True,
                                   text=True, check=True).stdout.strip()
        changes = os.path.join(work, "grpcprom_%s_%s.changes" % (version, arch))
        # The .changes names the .buildinfo and the .debs: lintian checks them all.
        lint = subprocess.run(["lintian", "--pedantic", changes],
                              capture_output=True, text=True, timeout=600)
        deb = os.path.join(work, "grpcprom_%s_%s.deb" % (version, arch))
        if package_status() not in ("", "un", "pn"):  # another run installed it meanwhile
            pytest.skip("a grpcprom package came onto this machine during the build")
        install = subprocess.run(["dpkg", "-i", deb], capture_output=True, text=True, timeout=300)
        try:
            assert install.returncode == 0, install.stdout + install.stderr
            yield lint, "/usr/lib/%s/grpcprom" % multiarch
        finally:
            purge = subprocess.run(["dpkg", "--purge", "grpcprom"], capture_output=True, text=True,
                                   timeout=300)
            assert purge.returncode == 0, purge.stdout + purge.stderr
            assert package_status() in ("", "un", "pn")
    finally:
        shutil.rmtree(work)


def test_lintian_reports_no_errors(installed):
    lint, _ = installed
    errors = [l for l in lint.stdout.splitlines() if l.startswith("E:")]
    assert not errors and lint.returncode == 0, lint.stdout + lint.stderr


def test_package_installs_the_shim_the_command_and_the_examples(installed):
    _, libdir = installed
    files = set(subprocess.run(["dpkg", "-L", "grpcprom"], capture_output=True, text=True,
                               check=True).stdout.split())
    for name in ("libgrpcprom.so", "libgrpcprom-cxx.so", "libgrpcprom-protoset.so"):
        assert os.path.join(libdir, name) in files
    for path in ("/usr/bin/grpcprom", "/usr/share/grpcprom/prometheus/grpcprom.rules.yml",
                 "/usr/share/grpcprom/grafana/grpcprom-dashboard.json", "/usr/share/man/man1/grpcprom.1.gz"):
        assert path in files and os.path.exists(path), path


def mapped(pid):
    """The files process pid maps."""
    with open("/proc/%d/maps" % pid) as f:
        return {l.split()[5] for l in f if len(l.split()) > 5}


def test_installed_shim_preloaded_counts_a_cxx_server(installed):
    _, libdir = installed
    s = Server("sync", preload=False, env={"LD_PRELOAD": os.path.join(libdir, "libgrpcprom.so")})
    try:
        # The C++ helper comes from beside the installed shim.
        assert {os.path.join(libdir, "libgrpcprom.so"),
                os.path.join(libdir, "libgrpcprom-cxx.so")} <= mapped(s.proc.pid)
        result = echo_client.run_mix(s.target)
        series = nonzero(echo_series(wait_stable(s.metrics_port, idle=True)))
        assert series == expected_series(result)
        assert any(k[0] == "grpc_server_started_total" for k in series)
        assert any(k[0] == "grpc_server_handled_total" for k in series)
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "grpcprom" not in err, err


def test_installed_command_runs_a_c_server_with_a_protoset(installed):
    """grpcprom run finds the installed shim, and the shim its descriptor
    set reader: the C server's unregistered Bidi shows at 0 before any call."""
    _, libdir = installed
    env = clean_env()
    env["GRPCPROM_PROTOSET"] = PROTOSET
    page_port = free_port()
    proc = subprocess.Popen(["/usr/bin/grpcprom", "run", "--listen", "127.0.0.1:%d" % page_port, "--",
                             SERVERS["c"], "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line + proc.stderr.read()
        target = "127.0.0.1:%s" % line.split()[1]
        echo_client.wait_ready(target, 10)
        assert {os.path.join(libdir, "libgrpcprom.so"),
                os.path.join(libdir, "libgrpcprom-protoset.so")} <= mapped(proc.pid)
        before = echo_series(parse_page(scrape(page_port)))
        assert before.get(("grpc_server_handled_total", "bidi_stream", "Bidi", "OK")) == 0, before
        assert not nonzero(before)
        result = echo_client.run_mix(target)
        series = nonzero(echo_series(wait_stable(page_port, idle=True)))
        assert series == expected_series(result)
        assert any(k[0] == "grpc_server_handled_total" for k in series)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "grpcprom" not in err, err


def readme_drop_in():
    """The Environment= settings of the README's systemd drop-in."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("### Under systemd", 1)[1]
    block = section.split("```ini\n", 1)[1].split("```", 1)[0]
    env = {}
    for line in block.splitlines():
        if line.startswith("Environment="):
            name, _, value = line[len("Environment="):].partition("=")
            env[name] = value
    return env


def test_the_readmes_walkthrough_fills_every_panel(installed):
    """What the README has a user do: install the package, add the drop-in's
    two lines to a C++ server's unit (here: its environment, as systemd
    would set it; only the port is one free for the test), load the
    installed rules into Prometheus and the installed dashboard into
    Grafana: every panel's query returns data."""
    _, libdir = installed
    env = readme_drop_in()
    assert set(env) == {"LD_PRELOAD", "GRPCPROM_LISTEN"}, env
    assert env["LD_PRELOAD"] == os.path.join(libdir, "libgrpcprom.so")
    port = free_port()
    env["GRPCPROM_LISTEN"] = env["GRPCPROM_LISTEN"].rsplit(":", 1)[0] + ":%d" % port
    s = Server("sync", preload=False, metrics_port=port, env=env)
    try:
        with prometheus_with_traffic(s, ["/usr/share/grpcprom/prometheus/grpcprom.rules.yml"]) as prom:
            empty, queries = dashboard_panels_without_data(
                prom, "/usr/share/grpcprom/grafana/grpcprom-dashboard.json")
            assert queries > 0 and not empty, empty
    finally:
        code, err = s.stop()
    assert code == 0, err
