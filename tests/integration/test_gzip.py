# test_gzip.py: the page is gzip-compressed for clients that accept it
# (Accept-Encoding negotiated with q-values), byte for byte the plain page once
# decompressed, with the same headers for HEAD, and a real Prometheus (which
# asks for gzip) scrapes it.
import socket
import time
import zlib

import pytest

from harness import Server, echo_client, parse_page, prometheus_up, wait_stable


def request(port, method="GET", accept_encoding=(), timeout=10.0):
    """One raw request with an Accept-Encoding header per item of
    `accept_encoding`, read to the end: (status, headers, body)."""
    head = "%s /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" % method
    head += "".join("Accept-Encoding: %s\r\n" % v for v in accept_encoding) + "\r\n"
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode())
        while True:
            chunks.append(s.recv(1 << 16))
            if not chunks[-1]:
                break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def gunzip(body):
    """The content of exactly one gzip member, nothing after it."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    text = d.decompress(body) + d.flush()
    assert d.eof and not d.unused_data, "not exactly one whole gzip member"
    return text


def same_rendering(port, encodings, methods=("GET", "GET")):
    """Sends one request per Accept-Encoding list in `encodings` at once, so
    that they share one rendering (within 100 ms): [(status, headers, body)]."""
    socks = []
    for values, method in zip(encodings, methods):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(("%s /metrics HTTP/1.1\r\nHost: x\r\n" % method +
                   "".join("Accept-Encoding: %s\r\n" % v for v in values) + "\r\n").encode())
        socks.append(s)
    out = []
    for s in socks:
        with s:
            data = b""
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        out.append((int(lines[0].split()[1]),
                    {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:])}, body))
    return out


@pytest.fixture(scope="module")
def server():
    """An idle C server with 50 more methods, after a mix of calls."""
    s = Server("c", args=["--extra-methods", "50"])
    echo_client.run_mix(s.target)
    wait_stable(s.metrics_port)
    yield s
    code, err = s.stop()
    assert code == 0 and err == "", err


def test_gzip_is_the_plain_page_of_1000_methods():
    """1,000 methods (the 4 of Echo the mix calls, 996 more), after the mix:
    the gzip answer of a rendering decompresses to exactly its plain page."""
    s = Server("c", env={"GRPCPROM_MAX_METHODS": "2000"}, args=["--extra-methods", "996"])
    try:
        echo_client.run_mix(s.target)
        wait_stable(s.metrics_port)
        # Sent at once, the two share a rendering (and the page is settled anyway).
        (ps, ph, plain), (gs, gh, packed) = same_rendering(s.metrics_port, [[], ["gzip"]])
        assert ps == gs == 200
        text = gunzip(packed)
        assert text == plain
        assert len(plain) == int(ph["content-length"]) and len(packed) == int(gh["content-length"])
        assert gh["content-encoding"] == "gzip" and "content-encoding" not in ph
        assert gh["vary"] == ph["vary"] == "Accept-Encoding"
        assert gh["content-type"] == ph["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = parse_page(text.decode())
        methods = {dict(labels)["grpc_method"] for name, labels in samples
                   if name == "grpc_server_started_total" and dict(labels)["grpc_method"] != "_OTHER"}
        assert len(methods) == 1000
        print("\n1,000 methods: plain %d bytes, gzip %d bytes, %.1fx smaller"
              % (len(plain), len(packed), len(plain) / len(packed)))
    finally:
        code, err = s.stop()
    assert code == 0 and err == "", err


# (Accept-Encoding headers of one request, whether the page comes gzipped)
NEGOTIATION = [
    ([], False),
    (["gzip"], True),
    (["GZip"], True),
    (["x-gzip"], True),
    (["deflate, gzip, br"], True),
    (["  gzip  ;  q=0.5 , br"], True),
    (["gzip;Q=1.000"], True),
    (["gzip;q=0.001"], True),
    (["*"], True),
    (["*;q=0.2"], True),
    (["gzip, identity;q=0.5"], True),
    (["br", "gzip"], True),                 # two headers count as one list
    (["gzip;q=0"], False),
    (["gzip;q=0.000"], False),
    (["gzip; q=0"], False),
    (["GZIP;Q=0, deflate"], False),
    (["gzip;q=0, *"], False),               # the named coding beats "*"
    (["*;q=0"], False),
    (["*;q=0, identity"], False),
    (["identity;q=1, gzip;q=0.9"], False),  # the client prefers the plain page
    (["*;q=1, gzip;q=0.5"], False),
    ([""], False),
    (["identity"], False),
    (["deflate, br"], False),
    (["gzip2, xgzip, gzip-x"], False),
    (["gzip;q=2"], False),                  # malformed weights: the entry is not taken
    (["gzip;q=abc"], False),
    (["gzip;q=0.1234"], False),
    (["gzip;q="], False),
    (["gzip garbage"], False),
    (["br", "gzip;q=0"], False),
]


@pytest.mark.parametrize("values,gzipped", NEGOTIATION, ids=[repr(v) for v, _ in NEGOTIATION])
def test_accept_encoding_is_negotiated(server, values, gzipped):
    status, headers, body = request(server.metrics_port, accept_encoding=values)
    assert status == 200
    assert headers["vary"] == "Accept-Encoding"
    assert len(body) == int(headers["content-length"])
    if gzipped:
        assert headers.get("content-encoding") == "gzip"
        body = gunzip(body)
    else:
        assert "content-encoding" not in headers
    parse_page(body.decode())
    assert body.startswith(b"# HELP ")


@pytest.mark.parametrize("values", [[], ["gzip"], ["gzip;q=0"]])
def test_head_has_the_headers_of_get(server, values):
    """HEAD must announce exactly what GET sends, and no body. The process_*
    lines change between renderings, so both requests go at once to share
    one; a slow rendering may still split them, hence up to three tries."""
    for _ in range(3):
        (hs, head, body), (gs, get, _) = same_rendering(
            server.metrics_port, [values, values], ["HEAD", "GET"])
        assert hs == 200 and gs == 200 and body == b""
        head.pop("date", None)
        get.pop("date", None)
        if head == get:
            break
    assert head == get
    assert ("content-encoding" in head) == (values == ["gzip"])


def test_prometheus_scrapes_the_gzip_page():
    """Prometheus sends Accept-Encoding: gzip; a page of 1,000 methods must
    decode on its side."""
    s = Server("c", args=["--extra-methods", "997"])
    try:
        _, headers, _ = request(s.metrics_port, accept_encoding=["gzip"])
        assert headers["content-encoding"] == "gzip"
        assert prometheus_up(s.metrics_port) == "1"
    finally:
        code, err = s.stop()
    assert code == 0 and err == "", err


def test_every_copy_is_released():
    """Scrapes with and without gzip across many renderings: each is answered
    as asked and shows the latest count. A gzip copy never freed would count
    against the renderings kept alive, and after a few the page would freeze
    and gzip stop."""
    s = Server("c")
    try:
        for calls in range(1, 21):
            echo_client.call_unknown_method(s.target, 1)
            time.sleep(0.11)  # past the 100 ms a rendering is shared
            for values in ([], ["gzip"], ["gzip"], ["gzip;q=0"]):
                deadline = time.monotonic() + 2
                while True:  # the server may count the call just after its client saw it end
                    status, headers, body = request(s.metrics_port, accept_encoding=values)
                    assert status == 200
                    assert (headers.get("content-encoding") == "gzip") == (values == ["gzip"])
                    if values == ["gzip"]:
                        body = gunzip(body)
                    seen = parse_page(body.decode())[("grpcprom_unknown_method_calls_total", frozenset())]
                    if seen == calls or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert seen == calls, (values, seen, calls)
    finally:
        code, err = s.stop()
    assert code == 0 and err == "", err


def rss_kb(pid):
    return int(open("/proc/%d/status" % pid).read().split("VmRSS:")[1].split()[0])


def test_readers_that_never_read_share_plain_and_gzip_pages():
    """200 clients, half asking for gzip, ask for a large page (2,000
    methods) and never read it: gzip copies count among the renderings kept
    alive, so the host's memory stays as bounded as with plain clients."""
    s = Server("c", env={"GRPCPROM_MAX_METHODS": "3000"}, args=["--extra-methods", "2000"])
    sockets = []
    try:
        page_bytes = int(request(s.metrics_port)[1]["content-length"])
        before = rss_kb(s.proc.pid)
        for i in range(200):
            c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=5)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" +
                      (b"Accept-Encoding: gzip\r\n" if i % 2 else b"") + b"\r\n")
            sockets.append(c)
            if i % 20 == 0:
                time.sleep(0.15)  # spread over more than one rendering
        time.sleep(0.5)
        grown_kb = rss_kb(s.proc.pid) - before
        assert grown_kb * 1024 < 12 * page_bytes, (grown_kb, page_bytes)
        status, headers, body = request(s.metrics_port, accept_encoding=["gzip"], timeout=5)
        assert status == 200 and len(body) == int(headers["content-length"])
    finally:
        for c in sockets:
            c.close()
        s.stop()
