# test_page.py: the metrics page under slow, idle and hostile clients, a taken
# port and exit: scrapes stay fast, deadlines are totals, the host's threads,
# memory, signals and exit are left alone, and the page stops before the
# host's exit handlers run.
import os
import random
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import threading
import time

import pytest

from harness import PRELOAD, Server, echo_client, echo_series, expected_series, free_port, https_page, \
    make_certificate, nonzero, parse_page, scrape

REQUEST_S, TOTAL_S = 2.0, 10.0   # the page's deadlines, counted from accept
ENDLESS = b"GET /" + b"a" * 100000


@pytest.fixture(autouse=True, scope="module")
def more_files():
    """Room for hundreds of sockets here and in the servers (they inherit the limit)."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(saved[0], 4096)
    if saved[1] != resource.RLIM_INFINITY:
        want = min(want, saved[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, saved[1]))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


class Background:
    """Runs self._run in a thread while in a with block; _run ends once
    self._stop is set."""

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


class SlowClients(Background):
    """n connections from 127.0.0.1 that each send one byte of an endless
    request line a second ("byte") or nothing ("nothing"); whichever the server
    closes is opened again at once. Runs in a thread until stop()."""

    def __init__(self, port, n, mode):
        self.port, self.n, self.mode = port, n, mode
        self.lifetimes = []    # seconds from connect to the server's close
        self.up = 0            # connected now
        self.max_up = 0

    def wait_up(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while self.up < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.up >= n, "only %d of %d slow clients connected" % (self.up, n)

    def _run(self):
        sel = selectors.DefaultSelector()
        conns = {}  # socket -> [connected at or None, next byte due, bytes sent]
        to_open = self.n

        def close(s):
            info = conns.pop(s)
            sel.unregister(s)
            s.close()
            if info[0] is not None:
                self.up -= 1
                self.lifetimes.append(time.monotonic() - info[0])

        while not self._stop.is_set():
            for _ in range(to_open):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", self.port))
                conns[s] = [None, 0.0, 0]
                sel.register(s, selectors.EVENT_WRITE)
            to_open = 0
            for key, _ in sel.select(0.05):
                s = key.fileobj
                info = conns[s]
                if info[0] is None:  # connect finished
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        close(s)
                        to_open += 1
                        continue
                    info[0] = time.monotonic()
                    info[1] = info[0] + random.random()
                    self.up += 1
                    self.max_up = max(self.max_up, self.up)
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    gone = s.recv(4096) == b""
                except OSError:
                    gone = True
                if gone:
                    close(s)
                    to_open += 1
            now = time.monotonic()
            for s, info in list(conns.items()):
                if self.mode == "byte" and info[0] is not None and now >= info[1]:
                    info[1] += 1.0
                    try:
                        s.send(ENDLESS[info[2]:info[2] + 1])
                        info[2] += 1
                    except OSError:
                        close(s)
                        to_open += 1
        for s in list(conns):
            close(s)


def get(port, request=b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5.0):
    """Sends one raw request, reads to the end: (status or None, headers, body, seconds)."""
    start = time.monotonic()
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
            while time.monotonic() - start < timeout:
                chunks.append(s.recv(1 << 16))
                if not chunks[-1]:
                    break
        except OSError:
            pass
    elapsed = time.monotonic() - start
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        return None, {}, data, elapsed
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    return int(lines[0].split()[1]), headers, body, elapsed


def assert_page(port):
    status, headers, body, elapsed = get(port)
    assert status == 200, (status, body[:200])
    assert len(body) == int(headers["Content-Length"]) and body.endswith(b"\n")
    parse_page(body.decode())
    return elapsed


class Sampler(Background):
    """The server's thread count and RSS (kB), every 0.2 s."""

    def __init__(self, pid):
        self.pid, self.threads, self.rss = pid, [], []

    def sample(self):
        self.threads.append(len(os.listdir("/proc/%d/task" % self.pid)))
        status = open("/proc/%d/status" % self.pid).read()
        self.rss.append(int(status.split("VmRSS:")[1].split()[0]))

    def _run(self):
        while not self._stop.wait(0.2):
            self.sample()


def test_scrapes_stay_fast_under_300_slow_and_300_idle_clients():
    s = Server("sync")
    try:
        echo_client.run_mix(s.target)
        assert_page(s.metrics_port)
        sampler = Sampler(s.proc.pid)
        sampler.sample()
        threads_before, rss_before = sampler.threads[0], sampler.rss[0]
        latencies = []
        with sampler, SlowClients(s.metrics_port, 300, "byte") as slow, \
                SlowClients(s.metrics_port, 300, "nothing") as idle:
            slow.wait_up(300)
            idle.wait_up(300)
            end = time.monotonic() + 10
            while time.monotonic() < end:
                latencies.append(assert_page(s.metrics_port))
                time.sleep(max(0.0, 1 - latencies[-1]))
        print("scrapes: n=%d max=%.4f s p50=%.4f s; threads %d -> max %d; RSS %d -> max %d kB; "
              "slow clients reconnected %d times, idle %d" % (
                  len(latencies), max(latencies), statistics.median(latencies), threads_before,
                  max(sampler.threads), rss_before, max(sampler.rss), len(slow.lifetimes),
                  len(idle.lifetimes)))
        assert len(latencies) >= 9
        assert max(latencies) < 1.0, latencies
        assert max(sampler.threads) <= 64
        assert max(sampler.rss) - rss_before < 64 * 1024
        # The slow clients were really there, and were cut off: none lasted past the request deadline.
        assert slow.max_up >= 300 and idle.max_up >= 300
        assert slow.lifetimes and idle.lifetimes
        assert max(slow.lifetimes + idle.lifetimes) < REQUEST_S + 1.0
        assert_page(s.metrics_port)
    finally:
        code, err = s.stop()
    assert code == 0 and err == "", err


def watch_until_closed(sock, trickle, timeout):
    """Seconds until the server ends the connection, sending one more byte of a
    request line every 0.2 s when trickle is set; None if it never does."""
    start = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - start < timeout:
        try:
            if trickle:
                sock.send(ENDLESS[sent:sent + 1])
                sent += 1
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def holds(pid, port, peer_port):
    """Whether the process still has its end of the connection port <-> peer_port open."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            inodes.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and int(f[2].split(":")[1], 16) == peer_port:
            return "socket:[%s]" % f[9] in inodes
    return False


def rss_kb(pid):
    return int(open("/proc/%d/status" % pid).read().split("VmRSS:")[1].split()[0])


def test_readers_that_never_read_share_the_page():
    """200 clients ask for a large page (2,000 methods) and never read it: they
    share a few renderings instead of holding one each, so the host's memory
    stays bounded, and a normal scrape still answers."""
    s = Server("c", env={"GRPCPROM_MAX_METHODS": "3000"}, args=["--extra-methods", "2000"])
    sockets = []
    try:
        page_bytes = len(get(s.metrics_port, timeout=10)[2])
        assert page_bytes > 2000 * 4000, page_bytes
        before = rss_kb(s.proc.pid)
        for i in range(200):
            c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=5)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sockets.append(c)
            if i % 20 == 0:
                time.sleep(0.15)  # spread over more than one rendering
        time.sleep(0.5)
        grown_kb = rss_kb(s.proc.pid) - before
        # One copy each would be 200 pages; at most 8 renderings may live.
        assert grown_kb * 1024 < 12 * page_bytes, (grown_kb, page_bytes)
        assert assert_page(s.metrics_port) < 1.0
    finally:
        for c in sockets:
            c.close()
        s.stop()


def test_deadlines_are_totals_not_per_read():
    # A page of about 16 MB, so that an answer read at 500 KB/s is still being sent at the
    # total deadline.
    s = Server("c", env={"GRPCPROM_MAX_METHODS": "5000"}, args=["--extra-methods", "4000"])
    try:
        page_size = len(get(s.metrics_port)[2])
        assert page_size > 15 * 1024 * 1024
        reader_result = {}

        def slow_reader():
            r = socket.socket()
            r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            r.connect(("127.0.0.1", s.metrics_port))
            start = time.monotonic()
            peer = r.getsockname()[1]
            r.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            r.settimeout(0.02)
            got, accepted = 0, False
            # Reads 25 KB every 0.05 s: often enough that the server's writes never
            # pause for its 5 s inactivity timeout, too slowly to be done in time;
            # and watches when the server closes its end.
            while time.monotonic() - start < TOTAL_S + 5:
                due = got + 25000
                try:
                    while got < due:
                        chunk = r.recv(due - got)
                        if not chunk:
                            break
                        got += len(chunk)
                except OSError:
                    pass
                held = holds(s.proc.pid, s.metrics_port, peer)
                if accepted and not held:
                    reader_result["closed"] = time.monotonic() - start
                    break
                accepted = accepted or held
                time.sleep(0.05)
            reader_result["read"] = got
            r.close()

        reader = threading.Thread(target=slow_reader)
        reader.start()
        with socket.create_connection(("127.0.0.1", s.metrics_port)) as idle:
            idle_closed = watch_until_closed(idle, False, 6)
        with socket.create_connection(("127.0.0.1", s.metrics_port)) as trickle:
            trickle_closed = watch_until_closed(trickle, True, 6)
        reader.join(TOTAL_S + 10)
        print("closed after: idle %s s, trickling %s s, slow reader %s s (%s of %d bytes read)" % (
            idle_closed, trickle_closed, reader_result.get("closed"), reader_result.get("read"),
            page_size))
        assert REQUEST_S - 0.1 <= idle_closed <= REQUEST_S + 0.6
        assert REQUEST_S - 0.1 <= trickle_closed <= REQUEST_S + 0.6
        assert TOTAL_S - 0.1 <= reader_result["closed"] <= TOTAL_S + 1.0
        assert reader_result["read"] < page_size
        assert_page(s.metrics_port)
    finally:
        code, err = s.stop()
    assert code == 0 and err == "", err


def test_a_taken_port_is_retried_until_free():
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    s = Server("sync", metrics_port=port)
    try:
        result = echo_client.run_mix(s.target)
        time.sleep(2 * 2 + 0.5)  # two more tries to bind, still taken
        holder.close()
        start = time.monotonic()
        while time.monotonic() - start < 5:
            try:
                page = scrape(port)
                break
            except (AssertionError, OSError):
                time.sleep(0.1)
        else:
            pytest.fail("no page 5 s after the port was freed")
        waited = time.monotonic() - start
        assert waited < 2.5, waited
        assert nonzero(echo_series(parse_page(page))) == expected_series(result)
    finally:
        holder.close()
        code, err = s.stop()
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "cannot serve the metrics page on 127.0.0.1:%d" % port in lines[0]
    assert "Address already in use" in lines[0] and "every 2 s" in lines[0]


def test_hostile_requests_are_answered_or_dropped():
    s = Server("sync")
    port = s.metrics_port
    try:
        cases = [
            # (request, acceptable statuses; None: closed without an answer)
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\x00\xffgarbage\r\n\r\nBREW /pot HTTP/9\r\n\r\n",
             {200}),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", {400, None}),
            (b"GET http://127.0.0.1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", {200, 400, 404}),
            (b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", {400, 404, 405}),
            (b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n0\r\n\r\n", {405}),
            (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc", {405}),
            (b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
             {404}),
            (b"GET /metrics?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414}),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", {431}),
            (b"GET /metrics HTTP/1.1\r\n\r\n", {200, 400}),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", {400}),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 404, 405, 505, None}),
        ]
        for request, statuses in cases:
            status, headers, body, _ = get(port, request)
            assert status in statuses, (request[:60], status, body[:200])
            assert b"root:" not in body
            if status == 200:
                assert int(headers["Content-Length"]) == len(body)
            if status == 405:
                assert headers["Allow"] == "GET, HEAD"
        assert s.proc.poll() is None
        echo_client.run_mix(s.target)
        assert_page(port)
    finally:
        code, err = s.stop()
    assert code == 0 and err == "", err


def exit_seconds(preload):
    """How long the server takes from SIGTERM to gone, with 300 slow clients
    on its page when it has one."""
    s = Server("sync", preload=preload)
    try:
        with SlowClients(s.metrics_port, 300 if preload else 0, "byte") as clients:
            if preload:
                clients.wait_up(300)
                assert_page(s.metrics_port)
            time.sleep(0.5)
            start = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(20)
            return time.monotonic() - start
    finally:
        s.stop()


def test_the_page_does_not_delay_exit():
    plain = min(exit_seconds(False) for _ in range(3))
    shimmed = min(exit_seconds(True) for _ in range(3))
    print("exit after SIGTERM: %.1f ms plain, %.1f ms with the page and 300 slow clients" % (
        plain * 1000, shimmed * 1000))
    assert shimmed - plain < 0.1


def page_answers(port, cafile):
    """True when the page (HTTPS when `cafile` is given) answers within 1 s."""
    try:
        if cafile:
            https_page(port, cafile, timeout=1)
        else:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.recv(16).startswith(b"HTTP/1.1 200")
        return True
    except (OSError, AssertionError):
        return False


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_page_stops_before_the_hosts_exit_handlers(scheme, tmp_path):
    """A host's exit handlers, registered before its server started, run
    after the page has stopped: the page never touches what they tear down,
    nor, over HTTPS, GnuTLS once its destructor runs."""
    cafile, env = None, {}
    if scheme == "https":
        cafile, key = make_certificate(str(tmp_path), "page")
        env = {"GRPCPROM_TLS_CERT": cafile, "GRPCPROM_TLS_KEY": key}
    s = Server("c", env=env, args=("--slow-exit-ms", "3000"))
    try:
        assert page_answers(s.metrics_port, cafile)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.stdout.readline() == "EXITING\n"
        assert not page_answers(s.metrics_port, cafile)
        s.proc.wait(20)
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def signal_masks(pid):
    """SigBlk of every thread of the process."""
    masks = []
    for tid in os.listdir("/proc/%d/task" % pid):
        for line in open("/proc/%d/task/%s/status" % (pid, tid)):
            if line.startswith("SigBlk:"):
                masks.append(int(line.split()[1], 16))
    return masks


def process_signals(pid):
    lines = open("/proc/%d/status" % pid).read().splitlines()
    return {l.split(":")[0]: l.split(":")[1].strip() for l in lines
            if l.split(":")[0] in ("SigBlk", "SigIgn", "SigCgt")}


def test_the_hosts_signals_stay_the_hosts():
    plain = Server("sync", preload=False)
    s = Server("sync")
    try:
        with SlowClients(s.metrics_port, 50, "byte") as slow:
            slow.wait_up(50)
            for _ in range(20):
                assert_page(s.metrics_port)
            # Clients that ask and reset at once: the page writes to dead sockets.
            for _ in range(50):
                r = socket.create_connection(("127.0.0.1", s.metrics_port))
                r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                r.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                r.close()
            time.sleep(REQUEST_S + 0.5)  # the slow clients were cut off once
            assert slow.lifetimes
        assert_page(s.metrics_port)
        assert process_signals(s.proc.pid) == process_signals(plain.proc.pid)
        # One thread more than the host's own kinds of thread: the page's, with every
        # signal blocked but the faults, which must reach the host's handlers.
        extra = set(signal_masks(s.proc.pid)) - set(signal_masks(plain.proc.pid))
        assert len(extra) == 1, extra
        blocked = extra.pop()
        faults = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
                  signal.SIGSYS, signal.SIGABRT)
        for sig in range(1, 32):
            if sig in faults:
                assert not blocked & (1 << (sig - 1)), sig
            elif sig not in (signal.SIGKILL, signal.SIGSTOP):
                assert blocked & (1 << (sig - 1)), sig
    finally:
        plain.stop()
        code, err = s.stop()
    assert code == 0 and err == "", err


def test_only_a_server_loads_the_http_library():
    """libmicrohttpd (with GnuTLS) and zlib are loaded when the page starts."""
    env = dict(os.environ, LD_PRELOAD=PRELOAD)
    sleeper = subprocess.Popen(["sleep", "5"], env=env)
    try:
        deadline = time.monotonic() + 5
        maps = ""
        while "libgrpcprom.so" not in maps and time.monotonic() < deadline:
            time.sleep(0.05)
            maps = open("/proc/%d/maps" % sleeper.pid).read()
        assert "libgrpcprom.so" in maps
        assert "libmicrohttpd" not in maps and "gnutls" not in maps and "libz.so" not in maps
    finally:
        sleeper.kill()
        sleeper.wait()
    s = Server("sync")
    try:
        assert "libmicrohttpd.so.12" in open("/proc/%d/maps" % s.proc.pid).read()
    finally:
        s.stop()
