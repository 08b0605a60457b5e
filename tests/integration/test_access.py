# test_access.py: who may read the page: an address list applied before any
# byte is read, Basic auth with bcrypt hashes from a file, a Bearer token
# from a file; each allowing and refusing, and a real Prometheus scraping
# through each kind of credentials.
import base64
import os
import shutil
import socket
import tempfile

import pytest

from harness import Server, echo_client, prometheus_up

SECRET_HASH = "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"  # bcrypt of "secret"


def raw_request(port, source="127.0.0.1", headers=""):
    """Sends a GET /metrics from `source`; returns the raw answer (b"" when
    the server closed the connection without one)."""
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(("GET /metrics HTTP/1.1\r\nHost: x\r\n%s\r\n" % headers).encode())
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except ConnectionResetError:
            return b""
        return b"".join(chunks)


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer else None


@pytest.fixture
def secrets():
    d = tempfile.mkdtemp(prefix="grpcprom-secrets-")
    users, token = os.path.join(d, "users"), os.path.join(d, "token")
    with open(users, "w") as f:
        f.write("# made with htpasswd -B\nalice:%s\n" % SECRET_HASH)
    with open(token, "w") as f:
        f.write("t0ken-%s\n" % os.getpid())
    yield users, token
    shutil.rmtree(d)


def basic(user, password):
    return "Authorization: Basic %s\r\n" % base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def test_the_address_list_refuses_before_reading():
    s = Server("sync", env={"GRPCPROM_ALLOW": "-0.0.0.0/0,+127.0.0.2"})
    try:
        assert raw_request(s.metrics_port, source="127.0.0.1") == b""
        assert status_of(raw_request(s.metrics_port, source="127.0.0.2")) == 200
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def test_a_bad_address_list_refuses_everyone():
    s = Server("sync", env={"GRPCPROM_ALLOW": "+10.0.0.0/40"})
    try:
        assert raw_request(s.metrics_port, source="127.0.0.1") == b""
        echo_client.run_mix(s.target)  # the server serves on
    finally:
        code, err = s.stop()
    assert code == 0
    assert err.count("\n") == 1 and err.startswith('grpcprom: GRPCPROM_ALLOW="+10.0.0.0/40": ')


def test_basic_auth(secrets):
    users, _ = secrets
    s = Server("sync", env={"GRPCPROM_BASIC_AUTH_FILE": users})
    try:
        refused = raw_request(s.metrics_port)
        assert status_of(refused) == 401
        assert b'\r\nWWW-Authenticate: Basic realm="grpcprom"' in refused
        assert b"grpc_server" not in refused
        assert status_of(raw_request(s.metrics_port, headers=basic("alice", "wrong"))) == 401
        assert status_of(raw_request(s.metrics_port, headers=basic("bob", "secret"))) == 401
        assert status_of(raw_request(s.metrics_port, headers="Authorization: Bearer secret\r\n")) == 401
        ok = raw_request(s.metrics_port, headers=basic("alice", "secret"))
        assert status_of(ok) == 200 and b"grpc_server_started_total" in ok
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def test_bearer_token(secrets):
    _, token_file = secrets
    token = open(token_file).read().strip()
    s = Server("sync", env={"GRPCPROM_BEARER_TOKEN_FILE": token_file})
    try:
        refused = raw_request(s.metrics_port)
        assert status_of(refused) == 401 and b"\r\nWWW-Authenticate: Bearer" in refused
        assert status_of(raw_request(s.metrics_port, headers="Authorization: Bearer x%s\r\n" % token)) == 401
        assert status_of(raw_request(s.metrics_port, headers="Authorization: Bearer %s\r\n" % token)) == 200
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""


def test_unreadable_credentials_refuse_every_request(secrets):
    s = Server("sync", env={"GRPCPROM_BASIC_AUTH_FILE": "/nonexistent/users"})
    try:
        assert status_of(raw_request(s.metrics_port, headers=basic("alice", "secret"))) == 401
        echo_client.run_mix(s.target)
    finally:
        code, err = s.stop()
    assert code == 0
    assert err.count("\n") == 1 and "/nonexistent/users" in err


def test_prometheus_scrapes_through_basic_auth_and_bearer(secrets):
    users, token_file = secrets
    s = Server("sync", env={"GRPCPROM_BASIC_AUTH_FILE": users, "GRPCPROM_BEARER_TOKEN_FILE": token_file})
    try:
        assert prometheus_up(s.metrics_port, "    basic_auth:\n      username: alice\n"
                                                    "      password: secret\n") == "1"
        assert prometheus_up(s.metrics_port, "    authorization:\n      credentials_file: %s\n"
                                    % token_file) == "1"
        assert prometheus_up(s.metrics_port, "    basic_auth:\n      username: alice\n"
                                                    "      password: wrong\n") == "0"
    finally:
        code, err = s.stop()
    assert code == 0 and err == ""
