# harness.py: starts the test servers under the shim and reads their pages.
import contextlib
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("GRPCPROM_BUILD", os.path.join(ROOT, "build"))
# The sanitized run (scripts/test): the servers as built, the shim from a
# build under ASan and UBSan, preloaded after libasan, every report written
# to a file in SANITIZER_LOGS (conftest.py fails the test that made one).
SANITIZER_LOGS = os.environ.get("GRPCPROM_SANITIZER_LOGS")
SHIM = os.path.join(os.environ.get("GRPCPROM_SHIM_BUILD", BUILD), "shim", "libgrpcprom.so")
PRELOAD = SHIM
if SANITIZER_LOGS:
    PRELOAD = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip() + " " + SHIM
    # The host's leaks and fault signals are its own: no leak check, no
    # handlers; a small quarantine keeps the memory bounds of test_page true.
    os.environ["ASAN_OPTIONS"] = ("detect_leaks=0:quarantine_size_mb=16:handle_segv=0:"
                                  "handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0:"
                                  "allow_user_segv_handler=1:"
                                  "log_path=" + os.path.join(SANITIZER_LOGS, "asan"))
    os.environ["UBSAN_OPTIONS"] = ("halt_on_error=1:print_stacktrace=1:"
                                   "log_path=" + os.path.join(SANITIZER_LOGS, "ubsan"))
SERVERS = {kind: os.path.join(BUILD, "tests", "servers", "echo_server_" + kind)
           for kind in ("sync", "async", "callback", "c", "ruby")}
# The test proto's descriptor set, for GRPCPROM_PROTOSET.
PROTOSET = os.path.join(BUILD, "tests", "servers", "echo.protoset")
sys.path.insert(0, os.path.join(ROOT, "tests", "client"))
import echo_client  # noqa: E402

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


GIVEN_PORTS = set()  # by free_port, in this run: never handed out twice


def free_port():
    """A free port below the kernel's ephemeral range, so that no server
    binding port 0 (as every test server's gRPC port does) can be handed it
    between now and its use."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        if port in GIVEN_PORTS:  # free now, but a test may be about to bind it
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            GIVEN_PORTS.add(port)
            return port


class Server:
    """A test server process, optionally under the shim, with its page port."""

    def __init__(self, kind, preload=True, env=None, metrics_port=None, args=()):
        self.metrics_port = metrics_port or free_port()
        full_env = dict(os.environ)
        full_env["GRPCPROM_LISTEN"] = "127.0.0.1:%d" % self.metrics_port
        if preload:
            full_env["LD_PRELOAD"] = PRELOAD
        full_env.update(env or {})
        self.proc = subprocess.Popen([SERVERS[kind], "--port", "0", *args], env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError("server %s did not start: %r %s" % (kind, line, self.proc.stderr.read()))
        self.port = int(line.split()[1])
        self.target = "127.0.0.1:%d" % self.port
        echo_client.wait_ready(self.target, 10)

    def url(self, path="/metrics"):
        return "http://127.0.0.1:%d%s" % (self.metrics_port, path)

    def stop(self):
        """Stops the server; returns (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.stdout_rest, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stdout_rest, err = self.proc.communicate()
        return self.proc.returncode, err


def http_get(url, method="GET"):
    """Returns (status, headers, body) without any proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, method=method)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def make_certificate(directory, name):
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def https_page(port, cafile, timeout=5):
    """(the certificate the page presented in DER, the page's text) over a
    TLS connection that verifies the page against `cafile`."""
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
            head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            return s.getpeercert(binary_form=True), body.decode()


def parse_page(text):
    """Returns {(name, frozenset(labels.items())): value} for every sample."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE_RE.match(line)
        assert m, "unparsable line: %r" % line
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in samples, "duplicate series: %r" % line
        samples[key] = float(m.group(3))
    return samples


def scrape(port_or_url):
    url = port_or_url if isinstance(port_or_url, str) else "http://127.0.0.1:%d/metrics" % port_or_url
    status, _, body = http_get(url)
    assert status == 200, status
    return body


def echo_series(samples):
    """The comparable counters of the Echo service: (name, type, method, code) -> value."""
    out = {}
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if lab.get("grpc_service") != echo_client.SERVICE:
            continue
        if name in ("grpc_server_started_total", "grpc_server_handled_total",
                    "grpc_server_msg_received_total", "grpc_server_msg_sent_total",
                    "grpc_server_handling_seconds_count"):
            out[(name, lab["grpc_type"], lab["grpc_method"], lab.get("grpc_code", ""))] = value
    return out


def expected_series(result):
    """What a page must show after the client saw `result` (zeros left out)."""
    exp = {}
    for (gtype, _service, method), m in result.items():
        exp[("grpc_server_started_total", gtype, method, "")] = m["started"]
        exp[("grpc_server_msg_received_total", gtype, method, "")] = m["msg_received"]
        exp[("grpc_server_msg_sent_total", gtype, method, "")] = m["msg_sent"]
        exp[("grpc_server_handling_seconds_count", gtype, method, "")] = sum(m["handled"].values())
        for code, n in m["handled"].items():
            exp[("grpc_server_handled_total", gtype, method, code)] = n
    return {k: v for k, v in exp.items() if v}


def h2load_unary(target, n, directory):
    """n unary Echo calls from h2load, 96 at once over 6 connections; all
    must succeed."""
    request = os.path.join(str(directory), "echo-request")
    with open(request, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x07\x22\x05hello")  # EchoRequest{text: "hello"}
    run = subprocess.run(["h2load", "-n", str(n), "-c", "6", "-m", "16", "-t", "2",
                          "-H", "content-type: application/grpc", "-H", "te: trailers",
                          "-d", request, "http://%s/grpcprom.test.Echo/Unary" % target],
                         capture_output=True, text=True, timeout=300)
    assert "%d succeeded" % n in run.stdout, run.stdout


def merge_results(total, result):
    """Adds the calls of one client's `result` (echo_client.run_mix) to `total`."""
    for key, m in result.items():
        t = total.setdefault(key, {"started": 0, "handled": {}, "msg_received": 0, "msg_sent": 0})
        for field in ("started", "msg_received", "msg_sent"):
            t[field] += m[field]
        for code, n in m["handled"].items():
            t["handled"][code] = t["handled"].get(code, 0) + n


def nonzero(series):
    return {k: v for k, v in series.items() if v}


def project_version():
    """The version meson.build gives the project."""
    text = open(os.path.join(ROOT, "meson.build")).read()
    return re.search(r"version\s*:\s*'([^']+)'", text).group(1)


def build_info(samples):
    """The labels of grpcprom_build_info, whose value must be 1."""
    infos = [(dict(labels), v) for (name, labels), v in samples.items() if name == "grpcprom_build_info"]
    assert len(infos) == 1 and infos[0][1] == 1, infos
    return infos[0][0]


def region_series(samples):
    """The series read from the region: all but the process_* families,
    which describe the process serving the page and move on their own."""
    return {k: v for k, v in samples.items() if not k[0].startswith("process_")}


def in_flight(samples):
    """Calls started and not yet handled, over every method."""
    started = sum(v for (name, _), v in samples.items() if name == "grpc_server_started_total")
    handled = sum(v for (name, _), v in samples.items() if name == "grpc_server_handled_total")
    return started - handled


def wait_stable(port, settle=0.3, timeout=10.0, idle=False):
    """Scrapes until two pages in a row agree (calls the client gave up on
    may still be ending on the server), and with `idle` no call is in
    flight (a Ruby handler never sees a cancel: it runs to its end); a page
    that never settles fails."""
    deadline = time.time() + timeout
    last = parse_page(scrape(port))
    while time.time() < deadline:
        time.sleep(settle)
        now = parse_page(scrape(port))
        if region_series(now) == region_series(last) and (not idle or in_flight(now) == 0):
            return now
        last = now
    raise AssertionError("the page did not settle within %.0f s%s"
                         % (timeout, ", %d calls in flight" % in_flight(last) if idle else ""))


def prom_query(prom_port, expr):
    """The result of an instant query on a Prometheus."""
    status, _, body = http_get("http://127.0.0.1:%d/api/v1/query?query=%s"
                               % (prom_port, urllib.parse.quote(expr)))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


@contextlib.contextmanager
def running_prometheus(metrics_port, job_extra="", rule_files=()):
    """A real Prometheus scraping the page every second as job "grpc" (with
    `job_extra`, YAML lines of the scrape job such as credentials), and
    evaluating `rule_files` every second; yields its port."""
    prom_port = free_port()
    workdir = tempfile.mkdtemp(prefix="grpcprom-prom-")
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files: [%s]\n"
                "scrape_configs:\n  - job_name: grpc\n%s"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
                % (", ".join("'%s'" % r for r in rule_files), job_extra, metrics_port))
    prom = subprocess.Popen(["prometheus", "--config.file=" + config, "--storage.tsdb.path=" + workdir,
                             "--web.listen-address=127.0.0.1:%d" % prom_port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield prom_port
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        shutil.rmtree(workdir)


def prometheus_up(metrics_port, job_extra="", timeout=40):
    """Lets a real Prometheus scrape the page every second, with `job_extra`;
    returns the value of its up series for the job ("1", "0"), or None if it
    never had one."""
    with running_prometheus(metrics_port, job_extra) as prom_port:
        deadline = time.time() + timeout
        while time.time() < deadline:
            time.sleep(1)
            try:
                result = prom_query(prom_port, 'up{job="grpc"}')
            except (OSError, AssertionError):
                continue
            if result:
                return result[0]["value"][1]
        return None


@contextlib.contextmanager
def prometheus_with_traffic(server, rule_files):
    """A real Prometheus evaluating `rule_files` and scraping `server`'s page
    every second while the mix runs on it; yields its port once the rates
    recorded over a few scrapes are above 0 (or after a minute)."""
    with running_prometheus(server.metrics_port, rule_files=rule_files) as prom_port:
        deadline = time.time() + 60
        while time.time() < deadline:
            echo_client.run_mix(server.target)
            try:
                if prom_query(prom_port, 'grpc_server:started:rate5m{grpc_method="Unary"} > 0') and \
                        prom_query(prom_port, 'grpc_server:handling_seconds:p99_5m{grpc_method="Unary"} > 0'):
                    break
            except (OSError, AssertionError):
                pass
        yield prom_port


def dashboard_panels_without_data(prom_port, dashboard_file):
    """Runs every query of the Grafana dashboard, with its variables set as
    a user would pick them (the job "grpc", every service), and its
    variables' own queries: returns the (title, query) of those that
    return no data, and the number of queries run."""
    with open(dashboard_file) as f:
        dashboard = json.load(f)
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"]
               for target in panel["targets"]]
    empty = []
    for title, expr in queries:
        promql = (expr.replace("$__rate_interval", "1m").replace("$job", "grpc")
                  .replace("$service", ".*"))
        if not prom_query(prom_port, promql):
            empty.append((title, promql))
    # label_values(grpc_server_started_total, job), then grpc_service
    for label, match in (("job", "grpc_server_started_total"),
                         ("grpc_service", 'grpc_server_started_total{job="grpc"}')):
        status, _, body = http_get("http://127.0.0.1:%d/api/v1/label/%s/values?match[]=%s"
                                   % (prom_port, label, urllib.parse.quote(match)))
        if status != 200 or not json.loads(body)["data"]:
            empty.append(("variable " + label, match))
    return empty, len(queries)


def family_heads(text, prefix):
    """{family: its HELP and TYPE lines} of a page's families named prefix*."""
    heads = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if line.startswith("# ") and len(parts) > 2 and parts[2].startswith(prefix):
            heads.setdefault(parts[2], []).append(line)
    return {k: tuple(v) for k, v in heads.items()}
