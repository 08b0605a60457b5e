# test_exactness.py: in every corner (hostile paths, thousands of methods or open calls, failed sends, ...) the page equals the client's own view.
import json
import os
import resource
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest

from harness import BUILD, PRELOAD, Server, echo_client, echo_series, expected_series, \
    nonzero, parse_page, prometheus_up, scrape, wait_stable
from test_host import listening_ports

CLIENT_CC = os.path.join(BUILD, "tests", "client", "echo_client_cc")
CLIENT_C = os.path.join(BUILD, "tests", "client", "echo_client_c")
SERVICE = echo_client.SERVICE
CODES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
         "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
         "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"]
FAMILIES = ("grpc_server_started_total", "grpc_server_msg_received_total",
            "grpc_server_msg_sent_total", "grpc_server_handling_seconds_count")


@pytest.fixture(autouse=True, scope="module")
def more_files():
    """Room for thousands of calls' descriptors in every server and client the tests
    start: they inherit this process's limit. (Not preexec_fn: a fork of this process,
    which runs gRPC's Python threads, sometimes crashes in grpcio's fork handlers.)"""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(saved[0], 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(saved[1], want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (saved[1], saved[1]))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def read_line(stream, timeout=30):
    """The next line a child prints, waiting at most timeout seconds."""
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box, "no line within %d s" % timeout
    return box[0]


def client_env(preload=False, extra=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = PRELOAD
    env.update(extra or {})
    return env


def run_client(args, env=None, timeout=60):
    """Runs echo_client_cc to the end; returns its JSON."""
    run = subprocess.run([CLIENT_CC, *args], capture_output=True, text=True, timeout=timeout,
                         env=env or client_env())
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


class Holder:
    """echo_client_cc --hold: n calls open at once until release()."""

    def __init__(self, target, n, channels=20, env=None):
        self.proc = subprocess.Popen([CLIENT_CC, "--target", target, "--hold", str(n),
                                      "--channels", str(channels)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env or client_env())
        self.held_line = read_line(self.proc.stdout, 60)

    def release(self):
        """Finishes every call; returns (the client's JSON view, its stdout, its stderr)."""
        out, err = self.proc.communicate("\n", timeout=60)
        assert self.proc.returncode == 0, err
        return json.loads(out), self.held_line + out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def stop(server):
    """Stops a server the test has not stopped itself."""
    if server is not None and server.proc.returncode is None:
        server.stop()


def assert_echo_page(samples, result):
    got = nonzero(echo_series(samples))
    want = expected_series(result)
    assert got == want, "\n".join(
        "%s: page %s, client %s" % (k, got.get(k), want.get(k))
        for k in sorted(set(got) | set(want), key=str) if got.get(k) != want.get(k))


def family_total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


def by_method(samples):
    """{(grpc_service, grpc_method): {(family, grpc_type, grpc_code): value}} for the
    counters and the histogram's count."""
    out = {}
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if name in FAMILIES or name == "grpc_server_handled_total":
            out.setdefault((lab["grpc_service"], lab["grpc_method"]), {})[
                (name, lab["grpc_type"], lab.get("grpc_code", ""))] = value
    return out


def series_of(samples, service, method):
    return by_method(samples).get((service, method), {})


def unary_calls_ok(n):
    """What a page shows for n unary calls that ended OK, one message each way."""
    want = {(name, "unary", ""): n for name in FAMILIES}
    want[("grpc_server_handled_total", "unary", "OK")] = n
    return want


def Req(**fields):
    fields.setdefault("text", "x")
    return echo_client.pb.EchoRequest(**fields)


def echo_stub(target):
    channel = echo_client._channel(target)
    return channel, echo_client.pb_grpc.EchoStub(channel)


# --- a. hostile paths -------------------------------------------------------------------------

def raw_page(port):
    """The page as bytes (harness.scrape decodes it, and fails on bytes that are not UTF-8)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read()


def region_bytes(page):
    """The page's bytes but the process_* samples, which move on their own."""
    return b"\n".join(l for l in page.split(b"\n") if not l.startswith(b"process_"))


def stable_raw_page(port, settle=0.3, timeout=10.0):
    """harness.wait_stable on the bytes of the page."""
    deadline = time.time() + timeout
    last = raw_page(port)
    while time.time() < deadline:
        time.sleep(settle)
        now = raw_page(port)
        if region_bytes(now) == region_bytes(last):
            return now
        last = now
    raise AssertionError("the page did not settle within %.0f s" % timeout)


def escaped(value):
    """A label value as the page writes it (and parse_page keeps it)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def test_hostile_paths_get_safe_labels_and_every_call_is_counted():
    long_method = "m" * 990
    calls = [  # (path, calls made, (grpc_service, grpc_method) the page must show)
        (b"/gen.Svc/M\xff", 1, ("_OTHER", "_OTHER")),                       # not UTF-8
        (b"/nul.Svc/a\x00b", 1, ("_OTHER", "_OTHER")),                      # a NUL byte
        (b"/long.Svc/" + long_method.encode(), 3, ("long.Svc", long_method)),  # 1000 bytes
        (b"/huge.Svc/" + b"m" * 1990, 4, ("_OTHER", "_OTHER")),             # 2000 bytes
        (b"/a.b/c/D", 5, ("a.b", "c/D")),                                   # split at the first '/'
        (b"/noslash-after", 7, ("unknown", "unknown")),
        ('/esc.Svc/a"b\\c\nd'.encode(), 2, ("esc.Svc", escaped('a"b\\c\nd'))),
        ("/utf.Svc/\u00e9t\u00e9".encode(), 8, ("utf.Svc", "\u00e9t\u00e9")),
    ]
    assert len(calls[2][0]) == 1000 and len(calls[3][0]) == 2000
    s = Server("c", args=["--generic-ok"])
    try:
        want = {}
        for path, n, labels in calls:
            if b"\0" in path:  # the C++ client takes a C string; Python's sends any bytes
                with echo_client._channel(s.target) as channel:
                    for _ in range(n):
                        channel.unary_unary(path)(b"", timeout=10)
            else:
                view = run_client(["--target", s.target, "--path", path.hex(), "--count", str(n)])
                assert view["codes"] == {"OK": n} and view["received"] == n, (path[:20], view)
            want[labels] = want.get(labels, 0) + n
        body = stable_raw_page(s.metrics_port)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AssertionError("the page is not valid UTF-8: %s" % e)
        samples = parse_page(text)
        methods = by_method(samples)
        for (service, method), n in want.items():
            got = nonzero(methods.get((service, method), {}))
            assert got == unary_calls_ok(n), (service, method[:20], got)
        for (_, labels) in samples:
            for name, value in labels:
                assert len(value.encode()) <= 1024, (name, value[:40])
        assert family_total(samples, "grpc_server_started_total") == sum(n for _, n, _ in calls)
        overflow = {dict(labels).get("reason"): v for (name, labels), v in samples.items()
                    if name == "grpcprom_overflow_calls_total"}
        assert overflow.get("invalid_path") == 2, overflow
        assert overflow.get("path_too_long") == 4, overflow
        assert overflow.get("method_table_full", 0) == 0, overflow
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        assert prometheus_up(s.metrics_port) == "1"
    finally:
        stop(s)


# --- b. thousands of registered methods -------------------------------------------------------

def test_3000_registered_methods_each_called_once():
    n = 3000
    s = Server("c", env={"GRPCPROM_MAX_METHODS": "4000"}, args=["--extra-methods", str(n)])
    try:
        before = by_method(parse_page(scrape(s.metrics_port)))
        not_initialised = [i for i in range(n) if before.get(("grpcprom.test.Many", "M%d" % i), {})
                           .get(("grpc_server_started_total", "unary", "")) != 0]
        assert not not_initialised, "%d methods not pre-initialised, e.g. M%d" % (
            len(not_initialised), not_initialised[0])
        codes = {}
        with echo_client._channel(s.target) as channel:
            for i in range(n):
                try:
                    channel.unary_unary("/grpcprom.test.Many/M%d" % i)(b"", timeout=10)
                    code = "OK"
                except grpc.RpcError as e:
                    code = echo_client.code_name(e.code())
                codes[code] = codes.get(code, 0) + 1
        assert codes == {"OK": n}
        methods = by_method(wait_stable(s.metrics_port))
        wrong = {}
        for i in range(n):
            got = nonzero(methods.get(("grpcprom.test.Many", "M%d" % i), {}))
            if got != unary_calls_ok(1):
                wrong["M%d" % i] = got
        assert not wrong, "%d methods wrong, e.g. %s" % (len(wrong), sorted(wrong.items())[:3])
    finally:
        stop(s)


# --- c. thousands of calls open at once -------------------------------------------------------

def held_page_checks(samples, n):
    """While n Bidi calls are held: all started, none handled."""
    bidi = series_of(samples, SERVICE, "Bidi")
    assert bidi.get(("grpc_server_started_total", "bidi_stream", "")) == n, nonzero(bidi)
    assert family_total(samples, "grpc_server_handled_total") == 0


@pytest.mark.parametrize("kind", ["async", "callback"])
def test_10000_calls_held_open_are_all_counted(kind):
    n = 10000
    s = holder = None
    try:
        s = Server(kind)
        holder = Holder(s.target, n)
        assert holder.held_line == "HELD %d\n" % n
        held_page_checks(wait_stable(s.metrics_port), n)
        view, _, _ = holder.release()
        assert view == {"started": n, "codes": {"OK": n}, "sent": n, "received": n}
        samples = wait_stable(s.metrics_port)
        result = {("bidi_stream", SERVICE, "Bidi"): {"started": n, "handled": {"OK": n},
                                                     "msg_received": view["sent"],
                                                     "msg_sent": view["received"]}}
        assert_echo_page(samples, result)
        assert family_total(samples, "grpc_server_started_total") == n
        assert family_total(samples, "grpc_server_handled_total") == n
        assert samples[("grpcprom_calls_untracked_total", frozenset())] == 0
    finally:
        if holder:
            holder.kill()
        stop(s)


def test_a_call_table_too_small_says_so_once_and_loses_nothing_silently():
    n = 3000
    s = holder = None
    err = ""
    try:
        s = Server("async", env={"GRPCPROM_MAX_CALLS": "1000"})
        holder = Holder(s.target, n)
        assert holder.held_line == "HELD %d\n" % n
        view, _, _ = holder.release()
        assert view == {"started": n, "codes": {"OK": n}, "sent": n, "received": n}
        samples = wait_stable(s.metrics_port)
    finally:
        if holder:
            holder.kill()
        if s:
            _, err = s.stop()
    lines = [line for line in err.splitlines() if "GRPCPROM_MAX_CALLS" in line]
    assert len(lines) == 1, "stderr lines naming GRPCPROM_MAX_CALLS: %r; stderr: %r" % (lines, err)
    started = family_total(samples, "grpc_server_started_total")
    untracked = samples[("grpcprom_calls_untracked_total", frozenset())]
    assert untracked > 0
    assert started + untracked == n, (started, untracked)
    assert family_total(samples, "grpc_server_handled_total") == started
    bidi = series_of(samples, SERVICE, "Bidi")
    assert bidi.get(("grpc_server_handled_total", "bidi_stream", "OK")) == started


# --- d. sends that fail after the deadline ----------------------------------------------------

@pytest.mark.parametrize("kind", ["sync", "async", "callback", "c"])
def test_sends_after_the_deadline_count_nothing(kind):
    s = Server(kind)
    try:
        result = {}
        channel, stub = echo_stub(s.target)
        with channel:
            # One stream that ends OK first: the plain C server's ServerStream is then
            # known to stream (its registration only says how the request is read).
            echo_client.tally(result, "server_stream", "ServerStream",
                  echo_client._server_stream(stub, Req(responses=2)))
            # The client's cancel at its deadline reaches the server a moment before the
            # server's own deadline: the shim counts that as DeadlineExceeded (50 ms slack).
            for _ in range(2):
                outcome = echo_client._unary(stub, Req(sleep_ms=300, ignore_cancel=True), timeout=0.1)
                assert outcome == ("DeadlineExceeded", 1, 0)
                echo_client.tally(result, "unary", "Unary", outcome)
                outcome = echo_client._server_stream(
                    stub, Req(sleep_ms=300, responses=2, ignore_cancel=True), timeout=0.1)
                assert outcome == ("DeadlineExceeded", 1, 0)
                echo_client.tally(result, "server_stream", "ServerStream", outcome)
        time.sleep(0.6)  # the handlers wake up and their sends fail
        samples = wait_stable(s.metrics_port)
        assert_echo_page(samples, result)
        unary = series_of(samples, SERVICE, "Unary")
        assert {t for (_, t, _) in unary} == {"unary"}, unary
        assert ("grpc_server_handled_total", "unary", "OK") in unary  # pre-initialised series stay
    finally:
        stop(s)


def test_a_generic_reply_sent_after_the_deadline_counts_nothing():
    """The plain C server answers an unregistered path with a reply in a batch of its
    own, then the status; after the deadline both fail, and the path stays unary."""
    s = Server("c", args=["--generic-ok"])
    try:
        path = b"/gen.Svc/Slow".hex()
        view = run_client(["--target", s.target, "--path", path])  # gives the path its series
        assert view == {"count": 1, "codes": {"OK": 1}, "received": 1}
        late = Req(sleep_ms=300, ignore_cancel=True).SerializeToString().hex()
        view = run_client(["--target", s.target, "--path", path, "--count", "2", "--request", late,
                           "--deadline-ms", "100"])
        assert view == {"count": 2, "codes": {"DeadlineExceeded": 2}, "received": 0}
        time.sleep(0.6)  # the handlers wake up and their sends fail
        got = nonzero(by_method(wait_stable(s.metrics_port)).get(("gen.Svc", "Slow"), {}))
        want = {("grpc_server_started_total", "unary", ""): 3,
                ("grpc_server_msg_received_total", "unary", ""): 3,
                ("grpc_server_msg_sent_total", "unary", ""): 1,
                ("grpc_server_handling_seconds_count", "unary", ""): 3,
                ("grpc_server_handled_total", "unary", "OK"): 1,
                ("grpc_server_handled_total", "unary", "DeadlineExceeded"): 2}
        assert got == want
    finally:
        stop(s)


# --- e. a message sent with a non-OK status ---------------------------------------------------

@pytest.mark.parametrize("kind", ["sync", "async", "callback", "c"])
def test_a_message_sent_with_a_non_ok_status_counts(kind):
    s = Server(kind)
    try:
        result = {}
        channel, stub = echo_stub(s.target)
        with channel:
            for _ in range(2):
                outcome = echo_client._server_stream(stub, Req(responses=2, last_with_status=True,
                                                               code=14))
                assert outcome == ("Unavailable", 1, 2)
                echo_client.tally(result, "server_stream", "ServerStream", outcome)
            outcome = echo_client._server_stream(stub, Req(responses=2, last_with_status=True))
            assert outcome == ("OK", 1, 2)
            echo_client.tally(result, "server_stream", "ServerStream", outcome)
            # A unary call that ends non-OK counts no message, even when the plain C
            # server sends one with the status; one that ends OK counts its reply.
            outcome = echo_client._unary(stub, Req(last_with_status=True, code=14))
            assert outcome == ("Unavailable", 1, 0)
            echo_client.tally(result, "unary", "Unary", outcome)
            outcome = echo_client._unary(stub, Req(last_with_status=True))
            assert outcome == ("OK", 1, 1)
            echo_client.tally(result, "unary", "Unary", outcome)
            outcome = echo_client._bidi(stub, [Req(responses=1),
                                               Req(responses=2, last_with_status=True, code=10)])
            assert outcome == ("Aborted", 2, 3)
            echo_client.tally(result, "bidi_stream", "Bidi", outcome)
        assert_echo_page(wait_stable(s.metrics_port), result)
    finally:
        stop(s)


# --- f. a second server in the same process ---------------------------------------------------

def test_a_second_server_after_the_first_is_destroyed():
    first_calls = 5
    s = Server("c", args=["--restart-after", str(first_calls)])
    try:
        result = {}
        channel, stub = echo_stub(s.target)
        with channel:
            for req in (Req(), Req(text="b"), Req(code=5)):
                echo_client.tally(result, "unary", "Unary", echo_client._unary(stub, req))
            for _ in range(2):
                echo_client.tally(result, "server_stream", "ServerStream",
                      echo_client._server_stream(stub, Req(responses=2)))
        line = read_line(s.proc.stdout, 20)
        assert line.startswith("READY "), line
        second = "127.0.0.1:%d" % int(line.split()[1])
        assert echo_client.wait_ready(second, 10)
        channel, stub = echo_stub(second)
        with channel:
            for req in (Req(), Req(code=7)):
                echo_client.tally(result, "unary", "Unary", echo_client._unary(stub, req))
            echo_client.tally(result, "server_stream", "ServerStream",
                  echo_client._server_stream(stub, Req(responses=3)))
            echo_client.tally(result, "bidi_stream", "Bidi", echo_client._bidi(stub, [Req(responses=1), Req()]))
        samples = wait_stable(s.metrics_port)
        assert_echo_page(samples, result)
        for method, gtype in (("Unary", "unary"), ("ClientStream", "client_stream")):
            series = series_of(samples, SERVICE, method)
            for code in CODES:
                assert ("grpc_server_handled_total", gtype, code) in series, (method, code)
        assert sum(m["started"] for m in result.values()) == 9
        code, err = s.stop()
        assert code == 0, err
    finally:
        stop(s)


# --- g. a worker forked after start -----------------------------------------------------------

def test_a_worker_forked_after_start_changes_nothing():
    s = Server("c", args=["--fork-worker"])
    try:
        line = read_line(s.proc.stdout, 10)
        assert line.startswith("WORKER "), line
        worker = int(line.split()[1])
        assert s.metrics_port in listening_ports(s.proc.pid)
        worker_ports = listening_ports(worker)  # checked last, after the counts
        result = {}
        channel, stub = echo_stub(s.target)
        with channel:
            for req in (Req(), Req(code=3), Req(sleep_ms=20)):
                echo_client.tally(result, "unary", "Unary", echo_client._unary(stub, req))
            echo_client.tally(result, "server_stream", "ServerStream",
                  echo_client._server_stream(stub, Req(responses=2)))
            assert_echo_page(wait_stable(s.metrics_port), result)
            assert os.path.exists("/proc/%d" % worker), "the worker ended too soon for this test"
            deadline = time.time() + 10
            while os.path.exists("/proc/%d" % worker) and time.time() < deadline:
                time.sleep(0.1)
            assert not os.path.exists("/proc/%d" % worker), "the worker was not reaped"
            for req in (Req(), Req(code=9)):
                echo_client.tally(result, "unary", "Unary", echo_client._unary(stub, req))
            echo_client.tally(result, "client_stream", "ClientStream",
                  echo_client._client_stream(stub, [Req(), Req()]))
        assert_echo_page(wait_stable(s.metrics_port), result)
        assert s.metrics_port not in worker_ports, "the worker holds the page's listening socket"
        code, err = s.stop()
        assert code == 0, err
    finally:
        stop(s)


# --- h. a client-only process under the preload -----------------------------------------------

def shared_mappings(pid):
    """Lines of /proc/PID/maps that are shared memory."""
    lines = open("/proc/%d/maps" % pid).read().splitlines()
    return [l for l in lines if l.split()[1].endswith("s") or "/dev/zero" in l or "SYSV" in l]


# gRPC's own thread pools grow on demand, so their sizes differ from run to run.
GRPC_POOLS = {"grpc_global_tim", "event_engine", "default-executo", "resolver-execut", "timer_manager"}


def threads(pid):
    """The process's thread names, counted except for gRPC's pools (a thread the
    shim started would add a name, or another thread named like the program)."""
    names = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            name = f.read().strip()
        names[name] = 0 if name in GRPC_POOLS else names.get(name, 0) + 1
    return names


def inspect(pid):
    return {"threads": threads(pid), "listening": listening_ports(pid), "shared": shared_mappings(pid)}


def held_client_view(target, preload):
    """Runs echo_client_cc --hold and echo_client_c --wait; returns what /proc shows
    of each while it is open, and their outputs."""
    env = client_env(preload, {"GRPCPROM_LOG": "debug"})
    holder = Holder(target, 20, channels=2, env=env)
    try:
        time.sleep(0.5)  # let gRPC's lazily started threads start
        cc_proc = inspect(holder.proc.pid)
        _, cc_out, cc_err = holder.release()
    finally:
        holder.kill()
    c = subprocess.Popen([CLIENT_C, "--target", target, "--wait"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = read_line(c.stdout, 30)
        time.sleep(0.5)
        c_proc = inspect(c.pid)
        rest, c_err = c.communicate("\n", timeout=30)
    finally:
        if c.poll() is None:
            c.kill()
            c.communicate()
    return {"cc": cc_proc, "c": c_proc}, (cc_out, first + rest), cc_err + c_err


def test_a_client_only_process_sees_nothing():
    s = Server("sync", preload=False)
    try:
        runs = {}
        for preload in (False, True):
            env = client_env(preload, {"GRPCPROM_LOG": "debug"})
            mix = subprocess.run([CLIENT_CC, "--target", s.target, "--mix"], capture_output=True,
                                 text=True, timeout=60, env=env)
            one = subprocess.run([CLIENT_C, "--target", s.target], capture_output=True, text=True,
                                 timeout=60, env=env)
            procs, held_out, held_err = held_client_view(s.target, preload)
            runs[preload] = {"mix": (mix.returncode, mix.stdout), "c": (one.returncode, one.stdout),
                             "held": held_out, "procs": procs,
                             "stderr": mix.stderr + one.stderr + held_err}
        plain, shimmed = runs[False], runs[True]
        assert plain["mix"][0] == 0 and plain["c"] == (0, "status 0 reply 7\n")
        assert json.loads(plain["mix"][1])["unary|%s|Unary" % SERVICE]["started"] == 4
        for what in ("mix", "c", "held"):
            assert shimmed[what] == plain[what], what
        assert not [l for l in shimmed["stderr"].splitlines() if "grpcprom" in l.lower()], shimmed["stderr"]
        for client in ("cc", "c"):
            got, want = shimmed["procs"][client], plain["procs"][client]
            assert got["listening"] == set(), (client, got)
            assert got["shared"] == want["shared"] == [], (client, got["shared"])
            assert got["threads"] == want["threads"], (client, got["threads"], want["threads"])
    finally:
        stop(s)


# --- i. a call the server cancels with a status of its own -------------------------------------

@pytest.mark.parametrize("internals", ["1", "0"])
def test_a_request_the_server_cannot_parse_counts_as_the_client_saw_it(internals):
    """The C++ async API cancels a call whose request does not parse with
    Internal (grpc_call_cancel_with_status): the client gets Internal, and so
    does the page, in either mode."""
    import grpc
    s = Server("async", env={"GRPCPROM_INTERNALS": internals})
    try:
        with grpc.insecure_channel(s.target) as channel:
            unary = channel.unary_unary("/grpcprom.test.Echo/Unary")
            with pytest.raises(grpc.RpcError) as failed:
                unary(b"\xff\xff\xff", timeout=10)
        assert failed.value.code() == grpc.StatusCode.INTERNAL
        series = nonzero(echo_series(wait_stable(s.metrics_port)))
        assert series == {("grpc_server_started_total", "unary", "Unary", ""): 1,
                          ("grpc_server_msg_received_total", "unary", "Unary", ""): 1,
                          ("grpc_server_handled_total", "unary", "Unary", "Internal"): 1,
                          ("grpc_server_handling_seconds_count", "unary", "Unary", ""): 1}, series
    finally:
        code, err = s.stop()
    assert code == 0, err
