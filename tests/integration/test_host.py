# test_host.py: the host process comes out unharmed: programs that are not
# gRPC servers see no trace of the shim; servers keep their signals and
# stdout; bad settings print one line and keep the defaults.
import os
import shutil
import subprocess
import time

import pytest

from harness import SHIM, Server, echo_client, echo_series, expected_series, free_port, http_get, \
    nonzero, parse_page, scrape, wait_stable

INSPECT = r"""
import os
threads = len(os.listdir('/proc/self/task'))
fds = sorted(os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd'))
shared = [l.split()[-1] for l in open('/proc/self/maps') if l.split()[1].endswith('s')]
print(threads, [f for f in fds if 'socket' in f or 'shm' in f], shared)
"""


def run(args, preload):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = SHIM
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["/usr/bin/python3", "-c", "pass"],
    ["/usr/bin/python3", "-c", INSPECT],
    ["/usr/bin/python3", "-c", "import grpc; grpc.insecure_channel('127.0.0.1:1').close(); print('client')"],
])
def test_programs_that_serve_no_grpc_see_nothing(args):
    plain, shimmed = run(args, False), run(args, True)
    assert (shimmed.returncode, shimmed.stdout, shimmed.stderr) == \
        (plain.returncode, plain.stdout, plain.stderr)


def test_the_shim_was_really_loaded():
    out = run(["/usr/bin/python3", "-c", "print(open('/proc/self/maps').read())"], True).stdout
    assert "libgrpcprom.so" in out


def mapped_files(args, preload):
    """The files a program maps, read by itself from /proc/self/maps."""
    out = run(args, preload).stdout
    return {l.split()[5] for l in out.splitlines() if len(l.split()) > 5 and l.split()[5].startswith("/")}


def test_a_process_that_serves_no_grpc_maps_only_the_shim_and_libc():
    shared = {f for f in mapped_files(["/bin/cat", "/proc/self/maps"], True) if ".so" in os.path.basename(f)}
    assert {os.path.basename(f) for f in shared} == {"libgrpcprom.so", "libc.so.6", "ld-linux-x86-64.so.2"}
    assert os.path.realpath(SHIM) in {os.path.realpath(f) for f in shared}


@pytest.mark.parametrize("args", [
    ["/bin/cat", "/proc/self/maps"],
    ["sh", "-c", "cat /proc/$$/maps"],
    ["/usr/bin/python3", "-c", "print(open('/proc/self/maps').read())"],
])
def test_the_preload_adds_no_file_but_the_shim(args):
    added = mapped_files(args, True) - mapped_files(args, False)
    assert {os.path.realpath(f) for f in added} == {os.path.realpath(SHIM)}


def declared_types(server):
    samples = parse_page(scrape(server.metrics_port))
    return {dict(l)["grpc_method"]: dict(l)["grpc_type"]
            for (n, l) in samples if n == "grpc_server_started_total"}


def test_a_cxx_server_loads_the_service_reader_for_declared_types():
    s = Server("sync")
    try:
        assert declared_types(s) == {"Unary": "unary", "ServerStream": "server_stream",
                                     "ClientStream": "client_stream", "Bidi": "bidi_stream"}
        maps = open("/proc/%d/maps" % s.proc.pid).read()
        assert os.path.join(os.path.dirname(os.path.realpath(SHIM)), "libgrpcprom-cxx.so") in maps
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def test_without_the_service_reader_a_cxx_server_says_so_once_and_runs_on(tmp_path):
    alone = str(tmp_path / "libgrpcprom.so")  # the shim without libgrpcprom-cxx.so beside it
    shutil.copy(SHIM, alone)
    s = Server("sync", env={"LD_PRELOAD": alone})
    try:
        # Before any call, types are what the C core is told: server streams look unary.
        assert declared_types(s) == {"Unary": "unary", "ServerStream": "unary",
                                     "ClientStream": "client_stream", "Bidi": "client_stream"}
        result = echo_client.run_mix(s.target)
        assert nonzero(echo_series(wait_stable(s.metrics_port))) == expected_series(result)
    finally:
        code, err = s.stop()
    assert code == 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("grpcprom: cannot load libgrpcprom-cxx.so: %s/libgrpcprom-cxx.so: " % tmp_path), err


def proc_status(pid, fields=("SigBlk", "SigIgn", "SigCgt")):
    lines = open("/proc/%d/status" % pid).read().splitlines()
    return {l.split(":")[0]: l.split(":")[1].strip() for l in lines if l.split(":")[0] in fields}


def test_signals_and_stdout_are_the_hosts():
    plain = Server("sync", preload=False)
    shimmed = Server("sync")
    try:
        echo_client.run_mix(shimmed.target)
        assert http_get(shimmed.url())[0] == 200
        assert proc_status(shimmed.proc.pid) == proc_status(plain.proc.pid)
    finally:
        plain.stop()
        code, err = shimmed.stop()
    assert code == 0
    assert shimmed.stdout_rest == ""  # nothing after READY
    assert err == ""


def test_the_page_serves_only_metrics():
    s = Server("sync")
    try:
        status, headers, body = http_get(s.url())
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert headers["Cache-Control"] == "no-store" and headers["Connection"] == "close"
        assert int(headers["Content-Length"]) == len(body.encode())
        assert body.endswith("\n") and "\r" not in body
        status, headers, body = http_get(s.url(), method="HEAD")
        assert status == 200 and body == "" and int(headers["Content-Length"]) > 0
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        for path in ("/", "/metrics/", "/metricsx", "/../../etc/passwd", "/etc/passwd", "/index.html",
                     "/metrics/../../etc/passwd", "/%2e%2e/etc/passwd"):
            status, headers, body = http_get(s.url(path))
            assert status == 404, path
            assert headers["Content-Type"] == "text/plain; charset=utf-8"
            assert "root:" not in body and 0 < len(body) < 100
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            status, headers, _ = http_get(s.url(), method=method)
            assert status == 405, method
            assert headers["Allow"] == "GET, HEAD"
    finally:
        s.stop()


def test_disable_passes_everything_through():
    s = Server("sync", env={"GRPCPROM_DISABLE": "1"})
    try:
        echo_client.run_mix(s.target)
        with pytest.raises(OSError):
            http_get(s.url())
    finally:
        code, err = s.stop()
    assert code == 0


def listening_ports(pid):
    """The TCP ports a process listens on (its sockets' inodes in /proc/net)."""
    fd_dir = "/proc/%d/fd" % pid
    inodes = set()
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_listen_none_opens_no_port():
    s = Server("sync", env={"GRPCPROM_LISTEN": "none"})
    try:
        echo_client.run_mix(s.target)
        assert listening_ports(s.proc.pid) == {s.port}
    finally:
        s.stop()


def test_the_page_is_the_only_port_the_shim_adds():
    s = Server("sync")
    try:
        assert listening_ports(s.proc.pid) == {s.port, s.metrics_port}
    finally:
        s.stop()


@pytest.mark.parametrize("name,value", [
    ("GRPCPROM_BUCKETS", "0.1,abc"),
    ("GRPCPROM_BUCKETS", "2,1"),
    ("GRPCPROM_LOG", "chatty"),
    ("GRPCPROM_DISABLE", "perhaps"),
    ("GRPCPROM_MAX_METHODS", "-5"),
])
def test_a_bad_setting_prints_one_line_and_keeps_the_default(name, value):
    s = Server("sync", env={name: value})
    try:
        echo_client.run_mix(s.target)
        samples = parse_page(scrape(s.metrics_port))
        les = {dict(l).get("le") for (n, l) in samples if n == "grpc_server_handling_seconds_bucket"}
        assert les == {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
    finally:
        code, err = s.stop()
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("grpcprom: %s=\"%s\": " % (name, value)) and "default" in lines[0]


def test_custom_buckets_are_used():
    s = Server("sync", env={"GRPCPROM_BUCKETS": "0.001,0.2,3"})
    try:
        echo_client.run_mix(s.target)
        samples = parse_page(scrape(s.metrics_port))
        les = {dict(l).get("le") for (n, l) in samples if n == "grpc_server_handling_seconds_bucket"}
        assert les == {"0.001", "0.2", "3", "+Inf"}
    finally:
        s.stop()


def test_a_taken_port_leaves_the_server_serving():
    port = free_port()
    first = Server("sync", metrics_port=port)
    second = Server("sync", metrics_port=port)
    try:
        result = echo_client.run_mix(second.target)
        assert http_get(first.url())[0] == 200
        first.stop()
        # The second server binds within one retry (2 s) and shows the calls made meanwhile.
        deadline = time.time() + 5
        while True:
            try:
                page = scrape(port)
                break
            except (AssertionError, OSError):
                assert time.time() < deadline, "no page after the first server exited"
                time.sleep(0.1)
        assert nonzero(echo_series(parse_page(page))) == expected_series(result)
    finally:
        first.stop()
        code, err = second.stop()
    assert code == 0
    assert "cannot serve the metrics page" in err and len(err.splitlines()) == 1, err
