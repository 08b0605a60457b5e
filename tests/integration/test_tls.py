# test_tls.py: the page over HTTPS (GRPCPROM_TLS_CERT and GRPCPROM_TLS_KEY):
# a real Prometheus scraping with tls_config, no plain-HTTP fallback, a
# renewed certificate served without a restart, unusable files closing
# every connection until they are fixed. (test_page.py checks that the page
# stops before the host's exit handlers, over HTTP and HTTPS.)
import os
import shutil
import socket
import ssl
import tempfile
import time

import pytest

from harness import Server, echo_client, echo_series, https_page, make_certificate, parse_page, \
    prometheus_up

CERT_CHECK_S = 5.0  # how often the page looks at its certificate files


@pytest.fixture
def certs():
    d = tempfile.mkdtemp(prefix="grpcprom-tls-")
    yield d
    shutil.rmtree(d)


def tls_env(cert, key):
    return {"GRPCPROM_TLS_CERT": cert, "GRPCPROM_TLS_KEY": key}


def plain_answer(port):
    """What a plain-HTTP request to the page gets back (b"" when closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            return s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return b""


def pem_to_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_prometheus_scrapes_over_tls_and_plain_http_gets_nothing(certs):
    cert, key = make_certificate(certs, "page")
    s = Server("sync", env=tls_env(cert, key))
    try:
        result = echo_client.run_mix(s.target)
        presented, page = https_page(s.metrics_port, cert)
        assert presented == pem_to_der(cert)
        assert echo_series(parse_page(page))[
            ("grpc_server_started_total", "unary", "Unary", "")] == result[("unary", echo_client.SERVICE, "Unary")]["started"]
        assert not plain_answer(s.metrics_port).startswith(b"HTTP/")
        assert prometheus_up(s.metrics_port, "    scheme: https\n    tls_config:\n      ca_file: %s\n"
                             % cert) == "1"
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def test_a_renewed_certificate_is_served_without_a_restart(certs):
    cert, key = make_certificate(certs, "first")
    s = Server("sync", env=tls_env(cert, key))
    try:
        assert https_page(s.metrics_port, cert)[0] == pem_to_der(cert)
        # Renewed the way cert-manager or certbot do: new files moved into place.
        new_cert, new_key = make_certificate(certs, "second")
        os.rename(new_key, key)
        os.rename(new_cert, cert)
        deadline = time.monotonic() + 2 * CERT_CHECK_S
        while time.monotonic() < deadline:
            try:
                presented, page = https_page(s.metrics_port, cert)
                break
            except ssl.SSLCertVerificationError:
                time.sleep(0.2)  # still the first certificate
        else:
            raise AssertionError("the renewed certificate was not served within %.0f s" % (2 * CERT_CHECK_S))
        assert presented == pem_to_der(cert)
        assert "grpc_server_started_total" in page
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def test_unusable_tls_files_close_every_connection_until_fixed(certs):
    cert, key = os.path.join(certs, "page.crt"), os.path.join(certs, "page.key")
    s = Server("sync", env=tls_env(cert, key))
    try:
        echo_client.run_mix(s.target)
        assert plain_answer(s.metrics_port) == b""
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            https_page(s.metrics_port, None)
        # A key that is not the certificate's: refused, still closed.
        make_certificate(certs, "page")
        make_certificate(certs, "other")
        shutil.copy(os.path.join(certs, "other.key"), key + ".new")
        os.rename(key + ".new", key)
        time.sleep(CERT_CHECK_S + 1)
        assert plain_answer(s.metrics_port) == b""
        # Fixed: served within one check, with the calls made meanwhile.
        make_certificate(certs, "page")
        deadline = time.monotonic() + 2 * CERT_CHECK_S
        while time.monotonic() < deadline:
            try:
                _, page = https_page(s.metrics_port, cert)
                break
            except (ssl.SSLError, ConnectionResetError):
                time.sleep(0.2)
        else:
            raise AssertionError("the fixed certificate was not served")
        assert echo_series(parse_page(page))[("grpc_server_started_total", "unary", "Unary", "")] > 0
    finally:
        code, err = s.stop()
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 2, err  # the missing files, then the key that did not fit
    assert "GRPCPROM_TLS_CERT" in lines[0] and "closes every connection" in lines[0]
    assert "closes every connection" in lines[1]


@pytest.mark.parametrize("only", ["GRPCPROM_TLS_CERT", "GRPCPROM_TLS_KEY"])
def test_half_a_tls_setting_closes_every_connection(certs, only):
    cert, key = make_certificate(certs, "page")
    s = Server("sync", env={only: cert if only == "GRPCPROM_TLS_CERT" else key})
    try:
        echo_client.run_mix(s.target)
        assert plain_answer(s.metrics_port) == b""
    finally:
        code, err = s.stop()
    assert code == 0
    assert err.count("\n") == 1 and only in err and "closes every connection" in err
