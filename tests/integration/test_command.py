# test_command.py: the grpcprom command against real servers and against
# regions left by killed processes, damaged or planted.
import os
import signal
import subprocess
import time

import pytest

from harness import (BUILD, SERVERS, Server, echo_client, echo_series, expected_series,
                     free_port, http_get, merge_results, nonzero, parse_page, region_series,
                     wait_stable)

GRPCPROM = os.path.join(BUILD, "exporter", "grpcprom")


def grpcprom(*args, env=None, timeout=30):
    return subprocess.run([GRPCPROM, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def ls_rows():
    """`grpcprom ls` as {name or pid: (pid, alive, methods, calls)}."""
    out = grpcprom("ls")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PID", "ALIVE", "METHODS", "CALLS"]
    rows = {}
    for line in lines[1:]:
        name, pid, alive, methods, calls = line.split()
        rows[name if name != "-" else pid] = (pid, alive, int(methods), int(calls))
    return rows


def test_help_and_usage_errors():
    for args in (["--help"], ["ls", "--help"], ["run", "--help"], ["dump", "-h"]):
        out = grpcprom(*args)
        assert out.returncode == 0 and "usage: grpcprom run" in out.stdout, args
    for args in ([], ["nosuch"], ["ls", "x"], ["run"], ["run", "--listen", "nowhere", "true"],
                 ["run", "--shm", "../etc", "true"], ["dump", "a/b"], ["serve"], ["gc", "x"]):
        out = grpcprom(*args)
        assert out.returncode == 2, (args, out)
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("grpcprom: "), out.stderr


def test_run_preloads_the_shim_and_exits_as_the_command_does():
    env = dict(os.environ, LD_PRELOAD="libz.so.1")
    env.pop("GRPCPROM_LISTEN", None)
    out = grpcprom("run", "--shm", "some-name", "--", "sh", "-c",
                   'echo "$LD_PRELOAD|$GRPCPROM_SHM|${GRPCPROM_LISTEN-unset}"; exit 3', env=env)
    assert out.returncode == 3
    # the shim beside the command (the build's, whichever shim the other tests preload)
    shim = os.path.realpath(os.path.join(BUILD, "shim", "libgrpcprom.so"))
    assert out.stdout == "libz.so.1:%s|some-name|unset\n" % shim
    # The command's own options stay its own.
    out = grpcprom("run", "printf", "%s", "--help")
    assert (out.returncode, out.stdout) == (0, "--help")
    out = grpcprom("run", "--", "no-such-command-anywhere")
    assert out.returncode == 127 and "no-such-command-anywhere" in out.stderr


def test_run_a_server_then_ls_and_dump_it_live_and_killed():
    page_port = free_port()
    proc = subprocess.Popen([GRPCPROM, "run", "--listen", "127.0.0.1:%d" % page_port, "--",
                             SERVERS["c"], "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        target = "127.0.0.1:%s" % line.split()[1]
        echo_client.wait_ready(target, 10)
        result = echo_client.run_mix(target)
        page = wait_stable(page_port)
        assert nonzero(echo_series(page)) == expected_series(result)
        calls = sum(m["started"] for m in result.values())
        assert ls_rows()[str(proc.pid)] == (str(proc.pid), "yes", 4, calls)
        dump = grpcprom("dump", str(proc.pid))
        assert dump.returncode == 0, dump.stderr
        assert parse_page(dump.stdout) == region_series(page)  # a dump is no process
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        # What a killed process counted stays readable until gc.
        assert ls_rows()[str(proc.pid)] == (str(proc.pid), "no", 4, calls)
        dump = grpcprom("dump", str(proc.pid))
        assert dump.returncode == 0 and parse_page(dump.stdout) == region_series(page)
        gc = grpcprom("gc")
        assert gc.returncode == 0
        assert "/dev/shm/grpcprom.pid.%d" % proc.pid in gc.stdout
        assert str(proc.pid) not in ls_rows()
        assert grpcprom("dump", str(proc.pid)).returncode == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_normal_exit_removes_the_process_region():
    s = Server("c")
    path = "/dev/shm/grpcprom.pid.%d" % s.proc.pid
    assert os.path.exists(path)
    code, err = s.stop()
    assert code == 0, err
    assert not os.path.exists(path)


@pytest.mark.parametrize("damage, why", [
    (lambda data: b"XXXXXXXX" + data[8:], "it is not a grpcprom region (no magic)"),
    (lambda data: data[:8] + b"\x63\x00\x00\x00" + data[12:], "made by another version"),
    (lambda data: data[:len(data) // 2], "does not agree with its size"),
    (lambda data: b"", "too small"),
])
def test_damaged_regions_are_refused_in_one_line(damage, why):
    name = "test-damaged-%d" % os.getpid()
    s = Server("c", env={"GRPCPROM_SHM": name, "GRPCPROM_LISTEN": "none"})
    path = "/dev/shm/grpcprom.name." + name
    try:
        echo_client.run_mix(s.target)
        code, err = s.stop()
        assert code == 0, err
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(damage(data))
        for args in (["dump", name], ["serve", "--shm", name, "--listen", "127.0.0.1:%d" % free_port()]):
            out = grpcprom(*args)
            assert out.returncode == 1, (args, out)
            assert out.stderr.count("\n") == 1 and "refused" in out.stderr and why in out.stderr, out.stderr
        out = grpcprom("ls")
        assert out.returncode == 0 and name not in out.stdout
        assert "%s: refused" % path in out.stderr
        # A server started on it counts in memory of its own and says why.
        s = Server("c", env={"GRPCPROM_SHM": name, "GRPCPROM_LISTEN": "none"})
        code, err = s.stop()
        assert code == 0 and "cannot use the region file %s" % path in err, err
        assert grpcprom("gc").returncode == 0
        assert not os.path.exists(path)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
        if os.path.exists(path):
            os.unlink(path)


def test_another_users_region_is_refused():
    name = "test-owner-%d" % os.getpid()
    path = "/dev/shm/grpcprom.name." + name
    s = Server("c", env={"GRPCPROM_SHM": name, "GRPCPROM_LISTEN": "none"})
    s.stop()
    os.chown(path, 65534, 65534)
    try:
        s = Server("c", env={"GRPCPROM_SHM": name, "GRPCPROM_LISTEN": "none"})
        code, err = s.stop()
        assert "it belongs to another user" in err, err
        assert os.stat(path).st_uid == 65534
    finally:
        os.unlink(path)


def test_serve_shows_the_region_of_servers_without_a_page():
    name, page_port = "test-serve-%d" % os.getpid(), free_port()
    path = "/dev/shm/grpcprom.name." + name
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    # Started before any server: it waits for the region.
    serve = subprocess.Popen([GRPCPROM, "serve", "--shm", name, "--listen", "127.0.0.1:%d" % page_port],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    workers = []
    try:
        time.sleep(0.5)
        workers = [Server(kind, env={"GRPCPROM_SHM": name, "GRPCPROM_LISTEN": "none"})
                   for kind in ("c", "c")]
        result = echo_client.run_mix(workers[0].target)
        merge_results(result, echo_client.run_mix(workers[1].target))
        page, deadline = None, time.time() + 10
        while time.time() < deadline:
            try:
                page = wait_stable(page_port)
                break
            except OSError:
                time.sleep(0.3)
        assert nonzero(echo_series(page)) == expected_series(result)
        status, _, _ = http_get("http://127.0.0.1:%d/other" % page_port)
        assert status == 404
        # While it serves the region, gc leaves it, even with no server left.
        for w in workers:
            w.stop()
        assert grpcprom("gc").returncode == 0 and os.path.exists(path)
        assert ls_rows()[name][1] == "yes"
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=10)
        assert serve.returncode == 0
        assert "waiting for region %s" % name in err
        assert grpcprom("gc").returncode == 0 and not os.path.exists(path)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        if serve.poll() is None:
            serve.kill()
        if os.path.exists(path):
            os.unlink(path)
