#!/usr/bin/python3
"""bench.py: the shim's overhead, every figure with and without it from the
same run, printed at the end as markdown tables with the machine they ran on.
Run it through scripts/bench (which installs what is missing and builds).

  scripts/bench [--quick] [--rounds N] [--duration S] [--warmup S] [--cg-rounds N]
                [--only SECTIONS]

Sections (--only takes a comma-separated list of these names):
  callgrind   instructions per unary RPC and per streamed message, counted
              by callgrind: the bare server's, and the shim's own code per
              hook (see shim_cost() for exactly what is counted and why)
  throughput  calls/s, p50 and p99 from h2load at 1, 16 and 128 concurrent
              streams, every server style, and the RSS each server ends with
  exec        what a process that never serves gRPC pays for the preload
  page        render time, page size plain and gzip at 100 and 1,000
              methods, and the RPC latency with scrapes every 100 ms
  peer        go-grpc-prometheus' own Echo server with and without its
              interceptors, through the same h2load harness
Timed figures are the median of alternating rounds (with, without, then
without, with, ...) with the spread (min-max) beside it: the machine's noise
moves both sides alike, so only a difference wider than the spread means
something, and the tables say when it is not.

This is Python, not sh, because it parses callgrind's call graph, h2load's
per-request logs and /proc, and computes medians: in sh that would be awk
scattered over pipelines. It needs Debian's /usr/bin/python3 (python3-grpcio
drives the callgrind runs); nothing here asserts on a timing.
"""
import argparse
import atexit
import collections
import http.client
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build")
SHIM = os.path.join(BUILD, "shim", "libgrpcprom.so")
SERVERS = os.path.join(BUILD, "tests", "servers")
STYLES = ("sync", "async", "callback", "c")
STREAMS = (1, 16, 128)
UNARY = "/grpcprom.test.Echo/Unary"
BIDI = "/grpcprom.test.Echo/Bidi"
# EchoRequest{text: "hello"}, and {responses: 1, text: "hello"} for Bidi
# (one reply per request: one message each way).
UNARY_REQUEST = b"\x22\x05hello"
BIDI_REQUEST = b"\x18\x01\x22\x05hello"

WORK = tempfile.mkdtemp(prefix="grpcprom-bench-")
PROCS = []  # every process this script started and has not reaped


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(WORK, ignore_errors=True)


atexit.register(cleanup)  # also on a usage error or an exception


# ---------------------------------------------------------------- processes

def base_env():
    """This environment without any preload or grpcprom setting: each run sets its own."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("GRPCPROM_")}
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    return env


def free_port():
    """A port nobody listens on now, for the page (which takes no port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A test server started with `argv`, running until stop(); READY gives its port(s)."""

    def __init__(self, argv, env, timeout=20.0):
        self.out = os.path.join(WORK, "server.%d.out" % len(PROCS))
        with open(self.out, "w") as out, open(self.out + ".err", "w") as err:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        PROCS.append(self.proc)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:  # a file, not a pipe: nothing can block the server's stdout
            with open(self.out) as f:
                m = re.search(r"^READY ((?:\d+ ?)+)$", f.read(), re.M)
            if m:
                self.ports = [int(x) for x in m.group(1).split()]
                self.port = self.ports[0]
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.out + ".err") as f:
                    raise RuntimeError("%s did not start: %s" % (argv[0], f.read()[-500:]))
            time.sleep(0.05)

    def died(self):
        """None while the server runs; else how it ended and its last words."""
        rc = self.proc.poll()
        if rc is None:
            return None
        with open(self.out + ".err", errors="replace") as f:
            tail = " | ".join(f.read().strip().splitlines()[-3:])
        how = "signal %d" % -rc if rc < 0 else "status %d" % rc
        return "exited (%s)%s" % (how, ": " + tail if tail else "")

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))

    def shared_anon_kb(self):
        """Size and RSS (kB) of the shared anonymous mappings: the shim's region is one."""
        size = rss = 0
        shared = False
        with open("/proc/%d/smaps" % self.pid) as f:
            for line in f:
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
                if m:
                    name = m.group(4).strip()
                    shared = m.group(3)[3] == "s" and (name == "/dev/zero (deleted)" or name.startswith(
                        ("/memfd:", "[anon_shmem")))
                    if shared:
                        size += (int(m.group(2), 16) - int(m.group(1), 16)) // 1024
                elif shared and line.startswith("Rss:"):
                    rss += int(line.split()[1])
        return size, rss

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc in PROCS:
            PROCS.remove(self.proc)


def grpcprom_server(style, shim, extra_args=(), page=False, wrapper=()):
    """One of tests/servers/, with the shim preloaded or not. The page (when
    asked for) listens on a free port, kept in .page_port."""
    env = base_env()
    page_port = free_port() if page else None
    if shim:
        env["LD_PRELOAD"] = SHIM
        env["GRPCPROM_LISTEN"] = "127.0.0.1:%d" % page_port if page else "none"
    argv = list(wrapper) + [os.path.join(SERVERS, "echo_server_" + style), "--port", "0"] + list(extra_args)
    s = Server(argv, env, timeout=120 if wrapper else 20)
    s.page_port = page_port if shim and page else None
    return s


def go_server(binary, interceptors):
    """The go-grpc-prometheus reference server; its page is always on."""
    argv = [binary, "--port", "0", "--metrics-port", "0"] + ([] if interceptors else ["--no-interceptors"])
    s = Server(argv, base_env())
    s.page_port = s.ports[1]
    return s


def scrape(port, gzip=False, path="/metrics"):
    """One GET of the page; returns the bytes on the wire."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
    body = conn.getresponse().read()
    conn.close()
    return body


# ---------------------------------------------------------------- statistics

def median(values):
    return statistics.median(values) if values else float("nan")


def spread(values):
    return (max(values) - min(values)) if values else float("nan")


def fmt_num(v, digits=0):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "{:,.{}f}".format(v, digits)


def fmt_stat(values, digits=0, scale=1.0):
    """median (min-max) of a list, or the one value."""
    values = [v * scale for v in values]
    if not values:
        return "-"
    if len(values) == 1 or min(values) == max(values):
        return fmt_num(values[0] if len(values) == 1 else median(values), digits)
    return "%s (%s-%s)" % (fmt_num(median(values), digits), fmt_num(min(values), digits),
                           fmt_num(max(values), digits))


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)]


def within_spread(a, b):
    """True when the difference of the medians is no wider than either side's spread."""
    if not a or not b:
        return False
    return abs(median(a) - median(b)) <= max(spread(a), spread(b))


# ---------------------------------------------------------------- h2load

REQ_FILE = os.path.join(WORK, "req")
with open(REQ_FILE, "wb") as _f:  # one gRPC frame: not compressed, 7 bytes, the request
    _f.write(b"\x00" + len(UNARY_REQUEST).to_bytes(4, "big") + UNARY_REQUEST)


def h2load(port, streams, opts, path=UNARY, uri_file=None, requests=None):
    """One closed-loop h2load run of unary calls at `streams` concurrent
    streams: min(streams, 4) connections with streams/connections each;
    opts.duration seconds after opts.warmup, or opts.requests (`requests`)
    calls when not opts.duration_based. Returns {rps, p50, p99 (ms), n}, or
    None when calls failed."""
    conns = min(streams, 4)
    logf = os.path.join(WORK, "h2load.log")
    if os.path.exists(logf):  # h2load appends to it
        os.remove(logf)
    argv = ["h2load", "-c", str(conns), "-m", str(streams // conns), "-t", "1",
            "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", REQ_FILE,
            "--log-file", logf]
    if requests is None and opts.duration_based:
        # h2load takes whole numbers with a unit, not "0.2"
        argv += ["-D", "%dms" % (opts.duration * 1000), "--warm-up-time", "%dms" % (opts.warmup * 1000)]
    else:
        argv += ["-n", str(max(requests or opts.requests, conns))]
    argv += ["-i", uri_file] if uri_file else ["http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    rate = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not rate or not counts or counts.group(3) != counts.group(2) or int(counts.group(3)) == 0:
        log("    h2load failed:", " / ".join(line for line in out.splitlines()
                                            if re.match(r"(finished|requests|status codes):", line)) or out[-300:])
        return None
    with open(logf) as f:  # start (us since epoch), HTTP status, us until the end of the response
        times = sorted(int(line.split("\t")[2]) for line in f if line.count("\t") >= 2)
    return {"rps": float(rate.group(1)), "p50": percentile(times, 50) / 1000.0,
            "p99": percentile(times, 99) / 1000.0, "n": len(times)}


def attempt(fn, *args):
    """Runs one measurement; a failure (a server that did not start, a port
    taken meanwhile) is said and skipped: that run is missing from its
    median, the others stand."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        log("    %s%r failed: %s" % (fn.__name__, args, e))
        return None


def order(round_no):
    """Alternates which side runs first, so a drift of the machine hits both alike."""
    return (False, True) if round_no % 2 == 0 else (True, False)


# ---------------------------------------------------------------- callgrind

def exported_hooks():
    """The hooks are exactly the functions libgrpcprom.so exports (the shim
    exports nothing else), read from the library itself so that a hook added
    or dropped by a rewrite of shim/hooks.c needs no change here. Returns
    {mangled name: short demangled name}."""
    out = subprocess.run(["nm", "-D", "--defined-only", SHIM], capture_output=True, text=True,
                         check=True).stdout
    names = [line.split()[2] for line in out.splitlines() if len(line.split()) == 3
             and line.split()[1] in "TtWi"]
    demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                               check=True).stdout.splitlines()
    return {m: d.split("(")[0] for m, d in zip(names, demangled)}


def parse_callgrind(path):
    """Reads a callgrind dump (format version 1, events Ir). Functions are
    keyed (object, name): the shim's hooks share their names with the libgrpc
    functions they stand in for, only the object tells them apart. Returns
    (total Ir, {fn: self Ir}, {(caller, callee): inclusive Ir of the calls},
    {(caller, callee): calls})."""
    names = {"ob": {}, "fl": {}, "fn": {}}

    def name(kind, text):  # name compression: "(id) name" defines, "(id)" refers
        m = re.match(r"\((\d+)\)(?: (.*))?$", text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind][m.group(1)]

    self_ir = collections.Counter()
    call_ir = collections.Counter()
    calls = collections.Counter()
    ob = cob = fn = cfn = pending = None
    total = None
    with open(path) as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":  # a cost line: "position Ir"
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if pending is not None:  # the line after calls=: the calls' inclusive cost
                    call_ir[(fn, pending)] += ir
                    pending = None
                else:
                    self_ir[fn] += ir
                continue
            key, eq, val = line.rstrip("\n").partition("=")
            if not eq:
                if line.startswith("totals:"):
                    total = int(line.split()[1])
                continue
            if key == "ob":
                ob = name("ob", val)
            elif key == "fn":
                fn = (ob, name("fn", val))
            elif key == "cob":  # holds for the next cfn= only
                cob = name("ob", val)
            elif key == "cfn":
                cfn = (cob or ob, name("fn", val))
                cob = None
            elif key in ("fl", "fi", "fe", "cfi", "cfl", "jfi"):
                name("fl", val)
            elif key == "jfn":
                name("fn", val)
            elif key == "calls":
                pending = cfn
                calls[(fn, cfn)] += int(val.split()[0])
    if total is None:
        total = sum(self_ir.values())
    return total, self_ir, call_ir, calls


def is_shim_object(obj):
    return obj is not None and os.path.basename(obj).startswith("libgrpcprom")


def shim_cost(dump, hooks):
    """The shim's own instructions in one dump, per hook.

    Every instruction executed in libgrpcprom.so counts once, by its self
    cost (exact in callgrind), under the hook it ran for: a function of the
    shim is owned by the hook (an exported function of libgrpcprom.so) that
    calls it, directly or through other shim functions. Calls from shim code
    to other objects (clock_gettime, __tls_get_addr, pthread_once, gpr_now)
    count by their inclusive cost, except a hook's call to the real libgrpc
    function of the same name, which is where it forwards: nothing of
    gRPC's own work counts. Self costs are used rather than the inclusive
    cost of shim functions because callgrind's inclusive costs of code that
    ends in tail jumps (link-time inlining makes many) count callees twice.
    A hook that runs inside another hook's real function (grpc_cq_end_op
    inside grpc_call_start_batch) is counted under its own name. Recursion
    (callgrind's fn'2 names) is folded into the function. Unlike
    subtracting two whole-process totals, this does not move with the
    server's thread and lock slow paths (a few hundred instructions per RPC
    from run to run).

    Shim code that gRPC enters other than through an exported hook (a
    function of the shim's that gRPC calls back through a pointer, such as
    the destructor the shim attaches to a call) is owned by itself, returned
    apart as `callbacks` so the table can say so."""
    total, self_ir, call_ir, _ = parse_callgrind(dump)

    def base(fn):
        return re.sub(r"'\d+$", "", fn[1])

    # Who calls each shim function from inside the shim, and whether gRPC
    # (or any other object) calls it directly.
    shim_callers = collections.defaultdict(set)
    entered_from_outside = set()
    for (caller, callee), ir in call_ir.items():
        if is_shim_object(callee[0]) and base(callee) not in hooks and ir > 0:
            if is_shim_object(caller[0]):
                if base(caller) != base(callee):
                    shim_callers[base(callee)].add(base(caller))
            elif caller[0] is not None:
                entered_from_outside.add(base(callee))

    def owner(name, seen=()):
        """The hook (or callback) a shim function runs for: the first one up
        its callers; the one with the lowest name when several share it."""
        if name in hooks:
            return hooks[name]
        if name in entered_from_outside:
            return name
        found = sorted(o for c in shim_callers.get(name, ()) if c not in seen
                       for o in [owner(c, seen + (name,))] if o)
        return found[0] if found else None

    own = collections.Counter()
    for fn, ir in self_ir.items():
        if is_shim_object(fn[0]):
            o = owner(base(fn))
            if o:
                own[o] += ir
    for (caller, callee), ir in call_ir.items():
        if not is_shim_object(caller[0]) or is_shim_object(callee[0]):
            continue
        if base(caller) in hooks and base(callee) == base(caller):
            continue  # the real function it forwards to
        o = owner(base(caller))
        if o:
            own[o] += ir
    callbacks = collections.Counter({name: own[name] for name in entered_from_outside
                                     if name not in hooks and own[name]})
    return total, own, callbacks


def callgrind_control(*args):
    subprocess.run(["callgrind_control"] + list(args), check=True, capture_output=True, timeout=120)


def callgrind_run(style, shim, opts, hooks):
    """One server under callgrind, driven by python3-grpcio in this process:
    a warm-up (first calls resolve symbols, fill pools and caches), then the
    counters are zeroed, `calls` unary calls run and are dumped, and a Bidi
    call of `messages` round trips (one request, its one echo, then the next)
    runs and is dumped. One connection throughout: its setup is not counted."""
    import grpc  # python3-grpcio: only this section needs it

    out = os.path.join(WORK, "cg.%s.%d" % (style, shim))
    wrapper = ["valgrind", "--tool=callgrind", "--demangle=no", "--callgrind-out-file=" + out + ".%p"]
    server = grpcprom_server(style, shim, wrapper=wrapper)
    dumps = []

    def dump():
        before = set(os.listdir(WORK))
        callgrind_control("-d", str(server.pid))
        new = sorted(f for f in set(os.listdir(WORK)) - before if f.startswith(os.path.basename(out)))
        if len(new) != 1:
            raise RuntimeError("callgrind dump not found: %r" % new)
        dumps.append(os.path.join(WORK, new[0]))

    def bidi(channel, n):
        q = __import__("queue").Queue()

        def requests():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        q.put(BIDI_REQUEST)
        got = 0
        for _ in channel.stream_stream(BIDI)(requests(), timeout=3600):
            got += 1
            q.put(None if got == n else BIDI_REQUEST)
        if got != n:
            raise RuntimeError("Bidi echoed %d of %d" % (got, n))

    try:
        with grpc.insecure_channel("127.0.0.1:%d" % server.port) as channel:
            unary = channel.unary_unary(UNARY)
            for _ in range(opts.cg_warmup):
                unary(UNARY_REQUEST, timeout=600)
            bidi(channel, opts.cg_warmup)
            callgrind_control("-z", str(server.pid))
            for _ in range(opts.cg_calls):
                unary(UNARY_REQUEST, timeout=600)
            dump()
            callgrind_control("-z", str(server.pid))
            bidi(channel, opts.cg_messages)
            dump()
    finally:
        server.stop()
    result = {}
    for kind, dumpfile, n in (("unary", dumps[0], opts.cg_calls), ("bidi", dumps[1], opts.cg_messages)):
        total, own, callbacks = shim_cost(dumpfile, hooks)
        result[kind] = {"total": total / n, "own": {h: ir / n for h, ir in own.items()},
                        "callbacks": set(callbacks)}
    return result


def section_callgrind(opts, results):
    if not shutil.which("valgrind"):
        results["notes"].append("callgrind: valgrind is not installed (apt-get install valgrind): skipped")
        return
    try:
        import grpc  # noqa: F401
    except ImportError:
        results["notes"].append("callgrind: python3-grpcio is missing: skipped")
        return
    hooks = exported_hooks()
    log("callgrind: hooks exported by libgrpcprom.so:", ", ".join(sorted(set(hooks.values()))))
    runs = collections.defaultdict(list)  # (style, shim) -> [result]
    for r in range(opts.cg_rounds):
        for style in opts.cg_styles:
            for shim in order(r):
                t0 = time.monotonic()
                try:
                    res = callgrind_run(style, shim, opts, hooks)
                except Exception as e:  # noqa: BLE001 - one failed run must not lose the others
                    log("  callgrind %s %s: failed: %s" % (style, "shim" if shim else "plain", e))
                    continue
                runs[(style, shim)].append(res)
                log("  callgrind %s %s round %d: %.0f Ir/unary RPC, %.0f Ir/message; shim's own %.0f, %.0f (%.0f s)"
                    % (style, "shim" if shim else "plain", r + 1, res["unary"]["total"], res["bidi"]["total"],
                       sum(res["unary"]["own"].values()), sum(res["bidi"]["own"].values()),
                       time.monotonic() - t0))
    results["callgrind"] = runs


# ---------------------------------------------------------------- throughput

def section_throughput(opts, results, peer_binary=None):
    """Every style (and the Go peer when given) at 1, 16, 128 streams,
    alternating with/without, a fresh server per run. After the 128-stream
    run (the one that makes the most threads and buffers) the server's RSS
    is read, after one scrape of its page when it has one, so that the
    page's own memory counts too."""
    servers = [("grpcprom", s) for s in opts.styles]
    if peer_binary:
        servers.append(("go", "go"))
    runs = collections.defaultdict(list)  # (server, streams, with) -> [h2load result]
    rss = collections.defaultdict(list)   # (server, with) -> [kB]
    region = []                           # [(size kB, rss kB)]

    def one_run(r, kind, style, streams, with_):
        server = go_server(peer_binary, with_) if kind == "go" else grpcprom_server(style, with_, page=True)
        try:
            res = h2load(server.port, streams, opts)
            death = server.died()
            if death:  # worth knowing, with or without the shim
                results["notes"].append("%s %s the shim (or interceptors), %d streams, round %d: the server %s"
                                        % (style, "with" if with_ else "without", streams, r + 1, death))
                return
            if res:
                runs[(style, streams, with_)].append(res)
                log("  %s %s %d streams round %d: %.0f calls/s, p50 %.2f ms, p99 %.2f ms"
                    % (style, "with" if with_ else "without", streams, r + 1, res["rps"], res["p50"], res["p99"]))
            if streams == STREAMS[-1]:
                if server.page_port:
                    scrape(server.page_port)
                rss[(style, with_)].append(server.rss_kb())
                if with_ and kind == "grpcprom":
                    region.append(server.shared_anon_kb())
        finally:
            server.stop()

    for r in range(opts.rounds):
        for kind, style in servers:
            for streams in STREAMS:
                for with_ in order(r):
                    attempt(one_run, r, kind, style, streams, with_)
    results["throughput"] = runs
    results["rss"] = rss
    results["region"] = region


# ---------------------------------------------------------------- exec

def section_exec(opts, results):
    """A shell loop of 200 /bin/true, the shell preloaded too: what every
    process of a service tree pays when the preload is set for all of it.
    Both the wall time and the CPU time (user + system of the loop and its
    children, from getrusage) are kept: on a loaded machine the wall time
    mostly measures the wait for a CPU, the CPU time what the processes
    did. Twice as many rounds as the other figures: they are cheap."""
    loop = "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done"
    wall = collections.defaultdict(list)
    cpu = collections.defaultdict(list)
    for r in range(2 * opts.rounds):
        for with_ in order(r):
            env = base_env()
            if with_:
                env["LD_PRELOAD"] = SHIM
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(["sh", "-c", loop], env=env, check=True)
            wall[with_].append((time.perf_counter() - t0) * 1e6 / 200)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[with_].append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e6 / 200)
        log("  exec round %d: per /bin/true %.0f us (%.0f us CPU) plain, %.0f us (%.0f us CPU) preloaded"
            % (r + 1, wall[False][-1], cpu[False][-1], wall[True][-1], cpu[True][-1]))
    results["exec"] = {"wall": wall, "cpu": cpu}


# ---------------------------------------------------------------- page

def page_methods(text):
    """How many methods the page has series for (labels in any order)."""
    found = set()
    for labels in re.findall(r"^grpc_server_started_total\{([^}]*)\}", text, re.M):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        found.add((pairs.get("grpc_service"), pairs.get("grpc_method")))
    return len(found)


def curl_page(port, compressed):
    """One scrape by curl: (seconds, bytes on the wire, Content-Encoding)."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %header{content-encoding}",
            "http://127.0.0.1:%d/metrics" % port]
    if compressed:
        argv.insert(1, "--compressed")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split()
    if len(out) >= 3 and out[2].startswith("%header"):  # a curl older than 7.84
        out = out[:2]
    return float(out[0]), int(out[1]), (out[2] if len(out) > 2 else "")


def section_page(opts, results):
    """The C server with enough --extra-methods for 100 and 1,000 methods on
    the page (the Echo service registers 3 of them; Bidi is not registered),
    every method called twice, then scraped by curl plain and with
    --compressed, 150 ms apart so that each scrape renders anew (the page
    reuses a rendering for 100 ms). bench_render times the renderer alone
    on a synthetic region of the same size."""
    page = {}

    def page_row(methods):
        server = grpcprom_server("c", True, extra_args=["--extra-methods", str(methods - 3)], page=True)
        try:
            uris = os.path.join(WORK, "uris")
            with open(uris, "w") as f:
                for i in range(methods - 3):
                    f.write("http://127.0.0.1:%d/grpcprom.test.Many/M%d\n" % (server.port, i))
                f.write("http://127.0.0.1:%d%s\n" % (server.port, UNARY))
            h2load(server.port, 1, opts, uri_file=uris, requests=2 * (methods - 2))
            time.sleep(0.2)
            text = scrape(server.page_port).decode()
            row = {"methods": page_methods(text), "plain": [], "gzip": [], "plain_bytes": 0, "gzip_bytes": 0,
                   "encoding": ""}
            for _ in range(opts.scrapes):
                for compressed in (False, True):
                    time.sleep(0.15)
                    secs, size, enc = curl_page(server.page_port, compressed)
                    row["gzip" if compressed else "plain"].append(secs * 1000)
                    row["gzip_bytes" if compressed else "plain_bytes"] = size
                    if compressed:
                        row["encoding"] = enc
        finally:
            server.stop()
        bench = os.path.join(BUILD, "tests", "bench", "bench_render")
        row["render"] = None
        if os.access(bench, os.X_OK):
            out = subprocess.run([bench, str(methods), str(opts.render_rounds)], capture_output=True,
                                 text=True).stdout
            m = re.search(r"median ([\d.]+) ms", out)
            row["render"] = float(m.group(1)) if m else None
        page[methods] = row
        log("  page %d methods: %d bytes, %d with --compressed (%s), scrape %.2f / %.2f ms, render %s ms"
            % (methods, row["plain_bytes"], row["gzip_bytes"], row["encoding"] or "no Content-Encoding",
               median(row["plain"]), median(row["gzip"]), row["render"]))

    for methods in (100, 1000):
        attempt(page_row, methods)
    results["page"] = page

    # RPC latency while Prometheus scrapes every 100 ms (gzip, as it asks),
    # on the C server with 1,000 methods (the largest page here), against the
    # same server unscraped and the server without the shim.
    variants = ("plain", "shim", "shim+scrapes")
    # Always timed, even --quick: a run must last long enough for scrapes.
    timed = argparse.Namespace(**vars(opts))
    timed.duration_based = True
    runs = collections.defaultdict(list)

    def latency_run(r, v):
        server = grpcprom_server("c", v != "plain", extra_args=["--extra-methods", "997"], page=True)
        stop = threading.Event()
        scrapes = []

        def scraper():
            nxt = time.monotonic()
            while not stop.is_set():
                try:
                    scrape(server.page_port, gzip=True)
                    scrapes.append(1)
                except OSError:
                    pass
                nxt += 0.1
                stop.wait(max(0.0, nxt - time.monotonic()))

        t = threading.Thread(target=scraper) if v == "shim+scrapes" else None
        try:
            if t:
                t.start()
            res = h2load(server.port, 16, timed)
            death = server.died()
            if death:
                results["notes"].append("latency %s round %d: the server %s" % (v, r + 1, death))
                res = None
        finally:
            stop.set()
            if t:
                t.join()
            server.stop()
        if res:
            res["scrapes"] = len(scrapes)
            runs[v].append(res)
            log("  latency %s round %d: %.0f calls/s, p50 %.2f ms, p99 %.2f ms%s"
                % (v, r + 1, res["rps"], res["p50"], res["p99"],
                   ", %d scrapes" % len(scrapes) if t else ""))

    for r in range(opts.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            attempt(latency_run, r, v)
    results["scraped"] = runs


# ---------------------------------------------------------------- peer

def build_peer(opts, results):
    """Builds tests/go_reference once into build/bench/ (Go's cache kept
    beside it, so a change of main.go rebuilds in seconds)."""
    here = os.path.join(ROOT, "tests", "go_reference")
    binary = os.path.join(BUILD, "bench", "echo_go")
    sources = [os.path.join(here, f) for f in ("main.go", "build.sh")] + \
        [os.path.join(ROOT, "tests", "proto", "echo.proto")]
    if os.path.exists(binary) and all(os.path.getmtime(s) <= os.path.getmtime(binary) for s in sources):
        return binary
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    env = dict(os.environ, GOCACHE=os.path.join(BUILD, "bench", "go-cache"))
    log("building the go-grpc-prometheus reference server (first time: about half a minute)")
    p = subprocess.run([os.path.join(here, "build.sh"), binary], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        results["notes"].append("peer: tests/go_reference/build.sh failed: %s" % p.stderr.strip()[-300:])
        return None
    return binary


# ---------------------------------------------------------------- report

def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        if m:
            model = m.group(1).strip()
    return "nproc %d, %s, Linux %s" % (len(os.sched_getaffinity(0)), model, platform.release())


def report(opts, results):
    out = []
    w = out.append
    w("## Overhead (scripts/bench%s)" % (" --quick" if opts.quick else ""))
    w("")
    w("Machine: %s. Commit %s." % (machine(), results["commit"]))
    w("")

    cg = results.get("callgrind")
    if cg:
        w("### Instructions (callgrind; %d unary calls and a Bidi call of %d round trips, after a warm-up)"
          % (opts.cg_calls, opts.cg_messages))
        w("")
        w("| server | per | bare server | with the shim | shim's own code | own / bare | own, per hook |")
        w("|---|---|---|---|---|---|---|")
        for style in opts.cg_styles:
            plain, shim = cg.get((style, False), []), cg.get((style, True), [])
            for kind, per in (("unary", "unary RPC"), ("bidi", "streamed message")):
                bare = [r[kind]["total"] for r in plain]
                with_ = [r[kind]["total"] for r in shim]
                own = [sum(r[kind]["own"].values()) for r in shim]
                hooks = collections.defaultdict(list)
                callbacks = set()
                for r in shim:
                    callbacks |= r[kind]["callbacks"]
                    for h, ir in r[kind]["own"].items():
                        hooks[h].append(ir)
                per_hook = ", ".join("`%s`%s %s" % (h, " (callback)" if h in callbacks else "", fmt_num(median(v)))
                                     for h, v in sorted(hooks.items(), key=lambda kv: -median(kv[1]))
                                     if median(v) >= 0.5)
                share = "%.2f%%" % (100 * median(own) / median(bare)) if own and bare else "-"
                w("| %s | %s | %s | %s | %s | %s | %s |" % (style, per, fmt_stat(bare), fmt_stat(with_),
                                                            fmt_stat(own), share, per_hook or "-"))
        w("")
        w("Bare and with-shim totals are whole-process instructions (they move by a few thousand "
          "from run to run: threads, locks, timers); the shim's own code is counted per hook exported by "
          "libgrpcprom.so: the hook's instructions and everything it calls except the real libgrpc function "
          "it forwards to; a (callback) is shim code gRPC calls through a pointer, counted in full.")
        w("")

    tp = results.get("throughput")
    if tp:
        w("### Throughput and latency (h2load, unary calls, a fresh server per run)")
        w("")
        w("Without/with: the test server without and with the shim preloaded; for `go`, "
          "go-grpc-prometheus' reference server without and with its interceptors. "
          "Median (min-max) of %d rounds%s." % (opts.rounds, ", %ss each after %ss of warm-up"
                                                 % (opts.duration, opts.warmup) if opts.duration_based
                                                 else ", %d calls each" % opts.requests))
        w("")
        w("| server | streams | calls/s without | calls/s with | with/without | p50 ms without | p50 ms with "
          "| p99 ms without | p99 ms with | note |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        names = list(opts.styles) + (["go"] if any(k[0] == "go" for k in tp) else [])
        for style in names:
            for streams in STREAMS:
                a = tp.get((style, streams, False), [])
                b = tp.get((style, streams, True), [])
                ra, rb = [x["rps"] for x in a], [x["rps"] for x in b]
                pa, pb = [x["p99"] for x in a], [x["p99"] for x in b]
                notes = []
                if len(a) > 1 and len(b) > 1:
                    if within_spread(ra, rb):
                        notes.append("calls/s: difference within the spread")
                    if within_spread(pa, pb):
                        notes.append("p99: difference within the spread")
                elif a and b:
                    notes.append("one round: no spread")
                ratio = "%.3f" % (median(rb) / median(ra)) if ra and rb else "-"
                w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    style, streams, fmt_stat(ra), fmt_stat(rb), ratio,
                    fmt_stat([x["p50"] for x in a], 2), fmt_stat([x["p50"] for x in b], 2),
                    fmt_stat(pa, 2), fmt_stat(pb, 2), "; ".join(notes)))
        w("")

    rss = results.get("rss")
    if rss:
        w("### Memory (after the %d-stream run and one scrape of the page)" % STREAMS[-1])
        w("")
        w("| server | RSS without, kB | RSS with, kB | added, kB |")
        w("|---|---|---|---|")
        for style in list(opts.styles) + ["go"]:
            a, b = rss.get((style, False), []), rss.get((style, True), [])
            if a or b:
                w("| %s | %s | %s | %s |" % (style, fmt_stat(a), fmt_stat(b),
                                             fmt_num(median(b) - median(a)) if a and b else "-"))
        region = results.get("region")
        if region:
            w("")
            w("The shim's region (its shared anonymous mapping, default settings): %s kB mapped, "
              "%s kB resident." % (fmt_stat([s for s, _ in region]), fmt_stat([r for _, r in region])))
        w("")

    ex = results.get("exec")
    if ex:
        w("### A process that serves no gRPC (a shell loop of 200 `/bin/true`, the shell preloaded too; "
          "%d rounds)" % len(ex["wall"][False]))
        w("")
        w("| per /bin/true | without | with the preload | with/without | note |")
        w("|---|---|---|---|---|")
        for key, label in (("cpu", "CPU us (user+sys)"), ("wall", "wall us")):
            a, b = ex[key][False], ex[key][True]
            w("| %s | %s | %s | %.2f | %s |" % (label, fmt_stat(a), fmt_stat(b), median(b) / median(a),
                                               "difference within the spread"
                                               if len(a) > 1 and within_spread(a, b) else ""))
        w("")

    page = results.get("page")
    if page:
        w("### The page (C server, every method called twice; %d scrapes each)" % opts.scrapes)
        w("")
        w("| methods | render ms (bench_render) | scrape ms, plain | scrape ms, gzip | bytes plain "
          "| bytes gzip | smaller by |")
        w("|---|---|---|---|---|---|---|")
        for methods, row in sorted(page.items()):
            gz = row["gzip_bytes"] if row["encoding"] == "gzip" or row["gzip_bytes"] < row["plain_bytes"] else None
            w("| %d | %s | %s | %s | %s | %s | %s |" % (
                row["methods"], fmt_num(row["render"], 3) if row["render"] is not None else "-",
                fmt_stat(row["plain"], 2), fmt_stat(row["gzip"], 2), fmt_num(row["plain_bytes"]),
                fmt_num(gz) if gz else "not compressed", "%.1fx" % (row["plain_bytes"] / gz) if gz else "-"))
        w("")
    sc = results.get("scraped")
    if sc:
        w("### RPC latency while scraped every 100 ms (C server, 1,000 methods, 16 streams)")
        w("")
        w("| server | calls/s | p50 ms | p99 ms | scrapes per run |")
        w("|---|---|---|---|---|")
        for v, label in (("plain", "without the shim"), ("shim", "with the shim, not scraped"),
                         ("shim+scrapes", "with the shim, scraped (gzip) every 100 ms")):
            rs = sc.get(v, [])
            w("| %s | %s | %s | %s | %s |" % (label, fmt_stat([x["rps"] for x in rs]),
                                              fmt_stat([x["p50"] for x in rs], 2),
                                              fmt_stat([x["p99"] for x in rs], 2),
                                              fmt_stat([x["scrapes"] for x in rs]) if v == "shim+scrapes" else "-"))
        a, b = [x["p99"] for x in sc.get("shim", [])], [x["p99"] for x in sc.get("shim+scrapes", [])]
        if len(a) > 1 and len(b) > 1 and within_spread(a, b):
            w("")
            w("The p99 difference between scraped and not is within the spread.")
        w("")
    if results["notes"]:
        w("Notes:")
        w("")
        for n in results["notes"]:
            w("- " + n)
        w("")
    print("\n".join(out))


def missing(opts, sections, results):
    """What a section that ran failed to measure: the exit status says the
    script no longer works (scripts/test runs --quick for that). Only
    completeness is checked, never a timing."""
    gaps = []
    if "callgrind" in sections and shutil.which("valgrind"):
        cg = results.get("callgrind", {})
        for style in opts.cg_styles:
            for shim in (False, True):
                if not cg.get((style, shim)):
                    gaps.append("callgrind %s %s" % (style, "shim" if shim else "plain"))
            for r in cg.get((style, True), []):
                if not sum(r["unary"]["own"].values()) or not sum(r["bidi"]["own"].values()):
                    gaps.append("callgrind %s: no instruction counted in any hook" % style)
    tp = results.get("throughput", {})
    expected = (tuple(opts.styles) if "throughput" in sections else ()) + (("go",) if "peer" in sections else ())
    for style in expected:
        for streams in STREAMS:
            for with_ in (False, True):
                if not tp.get((style, streams, with_)):
                    gaps.append("h2load %s %d streams %s" % (style, streams, "with" if with_ else "without"))
    if "exec" in sections and not results.get("exec"):
        gaps.append("exec")
    if "page" in sections:
        if len(results.get("page", {})) != 2:
            gaps.append("page sizes")
        for v in ("plain", "shim", "shim+scrapes"):
            if not results.get("scraped", {}).get(v):
                gaps.append("latency %s" % v)
    return gaps


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="grpcprom's overhead, with and without the shim.")
    ap.add_argument("--quick", action="store_true",
                    help="a small version (one round, few calls) to check that the script works")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of each timed figure")
    ap.add_argument("--duration", type=float, default=3, help="seconds per h2load run (after --warmup)")
    ap.add_argument("--warmup", type=float, default=1, help="h2load warm-up seconds per run")
    ap.add_argument("--cg-rounds", type=int, default=3,
                    help="alternating rounds of the callgrind runs (their counts barely move)")
    ap.add_argument("--only", default="callgrind,throughput,exec,page,peer",
                    help="comma-separated sections: callgrind,throughput,exec,page,peer")
    opts = ap.parse_args()
    # Killed (a CI timeout): stop the servers it started on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sections = set(opts.only.split(","))
    unknown = sections - {"callgrind", "throughput", "exec", "page", "peer"}
    if unknown:
        ap.error("unknown section(s): " + ", ".join(sorted(unknown)))
    opts.styles = STYLES
    opts.duration_based = True
    opts.requests = 0
    opts.cg_styles = STYLES
    opts.cg_warmup, opts.cg_calls, opts.cg_messages = 300, 3000, 2000
    opts.scrapes, opts.render_rounds = 10, 50
    if opts.quick:
        # Every section, shrunk: one round, a few hundred calls per h2load
        # run instead of seconds, callgrind on the sync server only.
        opts.rounds = opts.cg_rounds = 1
        opts.duration_based = False
        opts.requests = 300
        opts.duration, opts.warmup = 1, 0.2  # only the scraped-latency runs are timed
        opts.cg_styles = ("sync",)
        opts.cg_warmup, opts.cg_calls, opts.cg_messages = 20, 100, 100
        opts.scrapes, opts.render_rounds = 2, 5

    for tool in ("h2load", "curl", "nm", "c++filt"):
        if not shutil.which(tool):
            sys.exit("bench: %s not found" % tool)
    if not os.path.exists(SHIM):
        sys.exit("bench: %s not built (scripts/build)" % SHIM)
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    results = {"notes": [], "commit": commit}
    t0 = time.monotonic()
    try:
        if "callgrind" in sections:
            log("callgrind (instructions per RPC, server under valgrind)")
            section_callgrind(opts, results)
        peer = build_peer(opts, results) if "peer" in sections else None
        if "throughput" in sections or peer:
            log("throughput (h2load)")
            if "throughput" not in sections:
                opts.styles = ()
            section_throughput(opts, results, peer)
        if "exec" in sections:
            log("exec (a process that serves no gRPC)")
            section_exec(opts, results)
        if "page" in sections:
            log("page (render, size, latency while scraped)")
            section_page(opts, results)
    finally:
        cleanup()
    log("bench took %.0f s" % (time.monotonic() - t0))
    report(opts, results)
    gaps = missing(opts, sections, results)
    if gaps:
        log("bench: not measured: " + "; ".join(gaps))
        sys.exit(1)


if __name__ == "__main__":
    main()
