"""The HTTP server's bounds ([server]), each tested over a raw socket against a real server on
127.0.0.1: what one client sends cannot make the server hold unbounded memory or a connection for
ever. The HTTP layer does not depend on the database, so these run on SQLite only.
"""

from __future__ import annotations

import base64
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import LiveServer, create_account, make_settings, start_live_server

WAIT = 15.0  # seconds any single read may take before the test fails

SMALL = {"max_request_line_bytes": 512, "max_header_bytes": 4096, "max_headers": 20,
         "request_timeout": 0.5, "keep_alive_timeout": 1, "max_connections": 1000}


def live_server(path: Path, **bounds: Any) -> LiveServer:
    return start_live_server(make_settings(f"sqlite:///{path}/omnirelay.db",
                                           server={**SMALL, **bounds}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = live_server(tmp_path_factory.mktemp("limits"))
    yield live
    live.stop()


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("the connection closed within the body")
        body += chunk
    return status, headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server ended the connection (EOF or reset); fails after WAIT seconds."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True


def rss_bytes() -> int:
    # The server runs in this process (a thread), so its memory is ours.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def request(path: str, *headers: str, method: str = "GET") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()


def test_a_normal_request_passes(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(request("/health", *[f"X-H{i}: {'v' * 100}" for i in range(18)]))
        status, _headers, body = read_response(sock)
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})


def test_a_50_mb_header_line_is_refused_early_and_costs_no_memory(server: LiveServer) -> None:
    before = rss_bytes()
    chunk = b"a" * 65536
    sent = 0
    with connect(server) as sock:
        sock.sendall(b"GET /v1/omnimessage/x/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        answered = False
        try:
            while sent < 50 * 1024 * 1024:
                if select.select([sock], [], [], 0)[0]:
                    answered = True
                    break
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 50 * 1024 * 1024, "the server read the whole 50 MB line"
        if not answered:
            assert select.select([sock], [], [], WAIT)[0], "no answer"
        status, headers, body = read_response(sock)
        assert closed_by_server(sock)
    assert status == 431
    assert headers["connection"] == "close"
    assert orjson.loads(body)["errors"][0]["detail"] == "the request's headers are too large"
    # Without the bound httptools kept the whole line (and copies of it).
    assert rss_bytes() - before < 16 * 1024 * 1024


def test_headers_too_large_within_one_read_are_refused_in_twilio_format(server: LiveServer
                                                                        ) -> None:
    with connect(server) as sock:
        sock.sendall(request("/2010-04-01/Accounts/ACx/Messages.json",
                             *[f"X-H{i}: {'v' * 1000}" for i in range(5)]))
        status, _headers, body = read_response(sock)
    assert status == 431
    assert orjson.loads(body)["code"] == 20001


def test_too_many_headers_are_refused(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(request("/health", *[f"X-H{i}: v" for i in range(21)]))
        status, _headers, body = read_response(sock)
        assert closed_by_server(sock)
    assert status == 431
    assert orjson.loads(body)["errors"][0]["detail"] == "the request has too many headers"


def test_a_long_request_line_is_refused(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(request("/v1/omnimessage/" + "x" * 600 + "/status"))
        status, _headers, body = read_response(sock)
    assert status == 414
    assert orjson.loads(body)["errors"][0]["detail"] == "the request's URL is too long"


def test_a_slow_body_times_out(server: LiveServer) -> None:
    account = server.call(create_account(server.runtime, "slow"))
    auth = base64.b64encode(f"{account.api_username}:{account.api_password}".encode()).decode()
    with connect(server) as sock:
        sock.sendall(request("/v1/omnimessage", f"Authorization: Basic {auth}",
                             "Content-Type: application/json", "Content-Length: 100",
                             method="POST") + b'{"to":')
        status, _headers, body = read_response(sock)
        assert closed_by_server(sock)
    assert status == 408
    assert "did not arrive within 0.5 s" in orjson.loads(body)["errors"][0]["detail"]


def test_a_slow_head_times_out(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        status, _headers, _body = read_response(sock)
    assert status == 408


def test_an_idle_keep_alive_connection_is_closed(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(request("/health"))
        status, headers, _body = read_response(sock)
        assert (status, headers.get("connection")) == (200, None)
        assert closed_by_server(sock)


def test_405_names_the_allowed_methods_over_http(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(request("/2010-04-01/Accounts/ACx/Messages/SMx.json", method="PUT"))
        lean = read_response(sock)
        sock.sendall(request("/health/ready", method="POST"))
        fastapi = read_response(sock)
    assert (lean[0], lean[1]["allow"]) == (405, "DELETE, GET, POST")
    assert (fastapi[0], fastapi[1]["allow"]) == (405, "GET")


def test_connections_beyond_the_limit_get_503(tmp_path: Path) -> None:
    live = live_server(tmp_path, max_connections=3, keep_alive_timeout=60)
    try:
        held = [connect(live) for _ in range(3)]
        for sock in held:
            sock.sendall(request("/health"))
            assert read_response(sock)[0] == 200
        with connect(live) as extra:
            extra.sendall(request("/health"))
            assert read_response(extra)[0] == 503
        # The connections within the limit keep being served.
        for sock in held:
            sock.sendall(request("/health"))
            assert read_response(sock)[0] == 200
            sock.close()
    finally:
        live.stop()
