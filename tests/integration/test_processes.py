# test_processes.py: independent server processes counting in one named
# region (GRPCPROM_SHM): one total under concurrent load, counters that never
# go backwards when a worker is killed and replaced, and a page that moves to
# a surviving process when the one serving it is killed.
import os
import signal
import threading
import time

from harness import (Server, echo_client, echo_series, expected_series, free_port, merge_results,
                     nonzero, parse_page, region_series, scrape, wait_stable)


def region_name(tag):
    return "test-%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns() % 1000000)


def region_path(name):
    return "/dev/shm/grpcprom.name." + name


def run_mixes(workers, rounds=1):
    """The mix against every worker at once, `rounds` times each, from a
    thread per worker; returns the calls all clients saw."""
    results = []

    def drive(w, seed):
        for r in range(rounds):
            results.append(echo_client.run_mix(w.target, seed=seed + r))

    threads = [threading.Thread(target=drive, args=(w, 10 * i + 1)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = {}
    for r in results:
        merge_results(total, r)
    return total


def wait_page(port, timeout):
    """Seconds until the page answers, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            scrape(port)
            return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    return None


def stop_all(workers):
    """Kills the workers still running; returns what each wrote on stderr."""
    errs = []
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
        errs.append(w.proc.communicate()[1] or "")
    return errs


def workers_of(kind, count, name, page_port):
    return [Server(kind, env={"GRPCPROM_SHM": name}, metrics_port=page_port) for _ in range(count)]


def test_workers_of_one_region_show_one_exact_total():
    name, page_port = region_name("total"), free_port()
    workers = workers_of("sync", 3, name, page_port)
    try:
        expected = run_mixes(workers, rounds=2)
        page = wait_stable(page_port)
        assert nonzero(echo_series(page)) == expected_series(expected)
        for w in workers[1:]:  # the first serves the page; the others say nothing
            w.proc.terminate()
            _, err = w.proc.communicate(timeout=20)
            assert err == "", err
    finally:
        stop_all(workers)
        os.unlink(region_path(name))


def spread_unary_calls(port, connections=40, calls=5):
    """Unary calls over `connections` connections of their own, which the
    kernel spreads over the workers listening on the port."""
    import grpc
    for _ in range(connections):
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_http_proxy", 0)]
        with grpc.insecure_channel("127.0.0.1:%d" % port, options=options) as channel:
            unary = channel.unary_unary("/grpcprom.test.Echo/Unary")
            for _ in range(calls):
                unary(b"\x22\x01x", timeout=10)
    return connections * calls


def assert_unary_total(page_port, n):
    page = wait_stable(page_port, idle=True)
    assert echo_series(page)[("grpc_server_started_total", "unary", "Unary", "")] == n
    assert echo_series(page)[("grpc_server_handled_total", "unary", "Unary", "OK")] == n


def test_workers_sharing_one_port_show_one_exact_total():
    """Independent workers on one port (gRPC sets SO_REUSEPORT)."""
    name, page_port, port = region_name("port"), free_port(), free_port()
    workers = [Server("c", env={"GRPCPROM_SHM": name}, metrics_port=page_port,
                      args=["--port", str(port)]) for _ in range(3)]
    try:
        assert_unary_total(page_port, spread_unary_calls(port))
    finally:
        stop_all(workers)
        os.unlink(region_path(name))


def test_a_preforking_server_shows_one_exact_total():
    """The pre-fork model: a parent that never touches gRPC forks three
    workers, each a server on the same port, all with one GRPCPROM_SHM."""
    name, page_port, port = region_name("prefork"), free_port(), free_port()
    s = Server("c", env={"GRPCPROM_SHM": name}, metrics_port=page_port,
               args=["--port", str(port), "--prefork", "3"])
    try:
        children = open("/proc/%d/task/%d/children" % (s.proc.pid, s.proc.pid)).read().split()
        assert len(children) == 3, children
        assert_unary_total(page_port, spread_unary_calls(port))
        code, err = s.stop()
        assert code == 0 and err == "", err
    finally:
        stop_all([s])
        os.unlink(region_path(name))


def sigkill(worker):
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.communicate()


def monotonic(before, after):
    """The series of `before` that went down in `after`."""
    return {k: (v, after.get(k)) for k, v in before.items()
            if k[0].endswith(("_total", "_count", "_bucket", "_sum")) and after.get(k, -1) < v}


def test_counters_survive_a_killed_worker_and_its_replacement():
    name, page_port = region_name("kill"), free_port()
    workers = workers_of("c", 3, name, page_port)
    try:
        expected = run_mixes(workers)
        before = wait_stable(page_port)
        sigkill(workers.pop(1))
        after_kill = parse_page(scrape(page_port))
        assert monotonic(before, after_kill) == {}
        workers.append(Server("c", env={"GRPCPROM_SHM": name}, metrics_port=page_port))
        merge_results(expected, run_mixes(workers))
        final = wait_stable(page_port)
        assert monotonic(after_kill, final) == {}
        assert nonzero(echo_series(final)) == expected_series(expected)
    finally:
        stop_all(workers)
        os.unlink(region_path(name))


def test_the_page_moves_to_a_survivor_when_its_server_is_killed():
    name, page_port = region_name("page"), free_port()
    workers = workers_of("c", 2, name, page_port)
    try:
        expected = run_mixes(workers)
        before = wait_stable(page_port)
        sigkill(workers[0])  # the first one bound the page
        took = wait_page(page_port, 10)
        assert took is not None, "no process took the page over within 10 s"
        assert region_series(parse_page(scrape(page_port))) == region_series(before)
        merge_results(expected, run_mixes(workers[1:]))
        assert nonzero(echo_series(wait_stable(page_port))) == expected_series(expected)
        workers[1].proc.terminate()
        _, err = workers[1].proc.communicate(timeout=20)
        assert err == "", err
    finally:
        stop_all(workers)
        os.unlink(region_path(name))


def test_a_worker_of_its_own_region_says_what_to_set():
    """Two workers without GRPCPROM_SHM on one page address: the second
    cannot show its calls, and says once what would."""
    page_port = free_port()
    first = Server("c", metrics_port=page_port)
    second = Server("c", metrics_port=page_port)
    time.sleep(2.5)  # a retry of the page's bind: still said once
    err = stop_all([second, first])[0]
    lines = [l for l in err.splitlines() if "GRPCPROM_SHM" in l]
    assert len(lines) == 1, err
    assert "process %d serves it for a region of its own" % first.proc.pid in lines[0], lines[0]
