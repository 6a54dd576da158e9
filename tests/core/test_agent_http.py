"""The agent's HTTP given bad clients (issue 16): real sockets to 127.0.0.1.

Malformed request lines, huge and many headers, bad query strings, bytes that are not
text: each gets a 4xx with a JSON reason, never a 500 or a traceback in the log. A client
that sends its request a byte at a time (each byte within the read timeout, the request
never done) is cut off after REQUEST_TIMEOUT all told, and never holds another client up.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from app.core import agent as agent_module
from app.core.agent import Agent

TOKEN = b"0123456789abcdef-class-token"


@contextlib.contextmanager
def serving(token: bytes | None = None) -> Iterator[tuple[Agent, io.StringIO]]:
    log = io.StringIO()
    agent = Agent("127.0.0.1", 0, token, log=log).start()
    try:
        yield agent, log
    finally:
        agent.close()
    assert "Traceback" not in log.getvalue(), log.getvalue()


@pytest.fixture
def agent() -> Iterator[tuple[Agent, io.StringIO]]:
    with serving() as served:
        yield served


def raw(agent: Agent, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection; everything the agent answers until it closes."""
    with socket.create_connection(agent.address, timeout=timeout) as s:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            s.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


def reason_of(answer: bytes) -> str:
    body = answer.split(b"\r\n\r\n", 1)[1]
    reason = json.loads(body)["error"]
    assert isinstance(reason, str) and len(reason.split()) >= 2, reason
    return reason


def get(agent: Agent, path: str = "/api/snapshot") -> int:
    conn = http.client.HTTPConnection(*agent.address, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


HOST = b"Host: localhost\r\n"
BAD_REQUESTS = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\r\n\r\n", None),  # blank lines before a request are ignored (RFC 9112): closed
    (b"GET\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra words\r\n\r\n", 400),
    (b"GET / HTTP/1\r\n\r\n", 400),
    (b"GET / HTTP/a.b\r\n\r\n", 400),
    (b"GET / HTTP/1.1.1\r\n\r\n", 400),
    (b"GET / FTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 505),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET /\r\n\r\n", 400),  # HTTP/0.9: no headers, so no token
    (b"\x00\xff\xfe\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", 400),  # TLS
    (b"GET /\x1b[2J HTTP/1.1\r\n" + HOST + b"\r\n", 404),
    (b"GET /" + "٧".encode() + b" HTTP/1.1\r\n" + HOST + b"\r\n", 404),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 403),  # no Host header read
    (b"GET / HTTP/1.1\r\n" + HOST + b"Content-Length: -5\r\n\r\n", 200),  # a GET: not read
    (b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403),
    (b"GET / HTTP/1.1\r\nHost: \x1b[2J\r\n\r\n", 403),
    (b"GET http://[::1/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),  # an IPv6 host never closed
    (b"GET /api/events?port=" + b"9" * 5000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/events?port=%D9%A7 HTTP/1.1\r\n" + HOST + b"\r\n", 400),  # Arabic-Indic 7
    (b"GET /api/events?port=0 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (
        b"GET /api/events?"
        + b"&".join(b"port=%d" % (i + 1) for i in range(500))
        + b" HTTP/1.1\r\n"
        + HOST
        + b"\r\n",
        400,
    ),
    (b"DELETE /api/snapshot HTTP/1.1\r\n" + HOST + b"\r\n", 405),
    (b"\x1b[2J /api/snapshot HTTP/1.1\r\n" + HOST + b"\r\n", 405),
    (b"get /api/snapshot HTTP/1.1\r\n" + HOST + b"\r\n", 405),
]


@pytest.mark.parametrize(
    ("data", "code"), BAD_REQUESTS, ids=[repr(d[:24]) for d, _ in BAD_REQUESTS]
)
def test_malformed_requests_get_4xx_in_words(
    agent: tuple[Agent, io.StringIO], data: bytes, code: int | None
) -> None:
    served, log = agent
    answer = raw(served, data)
    if code is None:
        assert answer == b""
    else:
        assert status_of(answer) == code, answer[:300]
        if code >= 400:
            reason_of(answer)
    assert get(served) == 200  # and it goes on serving
    for line in log.getvalue().splitlines():
        assert len(line) < 400 and "\x1b" not in line, line[:200]


def test_bad_authorization_headers_get_401(tmp_path: object) -> None:
    with serving(TOKEN) as (served, _):
        for header in (
            b"Authorization: Bearer\r\n",
            b"Authorization: Bearer " + b"x" * 60000 + b"\r\n",
            b"Authorization: Bearer \xff\xfe\r\n",
            b"Authorization: Bearer \x00\r\n",
            b"Authorization: Basic " + TOKEN + b"\r\n",
            b"Authorization: Bearer " + TOKEN + b"\r\nAuthorization: Bearer " + TOKEN + b"\r\n",
        ):
            answer = raw(served, b"GET /api/snapshot HTTP/1.1\r\n" + header + b"\r\n")
            assert status_of(answer) == 401, (header[:40], answer[:200])
            reason_of(answer)


def test_a_client_dripping_its_request_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte every 0.3 s keeps each read within the 1 s read timeout: without a limit
    for the whole request head, such a client holds its connection (and thread) forever."""
    monkeypatch.setattr(agent_module.AgentHandler, "timeout", 1.0)
    monkeypatch.setattr(agent_module.AgentHandler, "request_timeout", 2.0)
    with serving() as (served, _):
        drip = socket.create_connection(served.address, timeout=5)
        started = time.monotonic()
        cut_after: float | None = None
        try:
            for byte in b"GET /api/snapshot HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    drip.sendall(bytes([byte]))
                except OSError:  # reset: the agent closed it
                    cut_after = time.monotonic() - started
                    break
                if time.monotonic() - started > 8:
                    break
                # Meanwhile another client is answered at once.
                if byte == ord("X"):
                    t0 = time.monotonic()
                    assert get(served) == 200
                    assert time.monotonic() - t0 < 1.5
                time.sleep(0.3)
            if cut_after is None:  # the agent may have closed it without a reset yet
                drip.settimeout(3)
                with contextlib.suppress(OSError):
                    assert drip.recv(100) == b""
                cut_after = time.monotonic() - started
        finally:
            drip.close()
        assert cut_after < 5, f"a dripping client kept its connection {cut_after:.1f} s"
        assert get(served) == 200


def test_headers_that_never_end_are_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module.AgentHandler, "timeout", 1.0)
    monkeypatch.setattr(agent_module.AgentHandler, "request_timeout", 1.5)
    with serving() as (served, log):
        with socket.create_connection(served.address, timeout=10) as s:
            started = time.monotonic()
            s.sendall(b"GET / HTTP/1.1\r\n")
            with contextlib.suppress(OSError):
                for n in range(40):  # a new header line every 0.2 s, never the blank one
                    s.sendall(b"X-%d: y\r\n" % n)
                    time.sleep(0.2)
            s.settimeout(5)
            with contextlib.suppress(OSError):
                assert s.recv(100) == b""
            assert time.monotonic() - started < 5
        assert "timed out" in log.getvalue()


def test_many_slow_clients_do_not_hold_up_a_quick_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module.AgentHandler, "request_timeout", 3.0)
    with serving() as (served, _):
        slow = [socket.create_connection(served.address) for _ in range(20)]
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(0.2):
                for s in slow:
                    with contextlib.suppress(OSError):
                        s.send(b"G")

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        try:
            for _ in range(5):
                t0 = time.monotonic()
                assert get(served) == 200
                assert time.monotonic() - t0 < 2
        finally:
            stop.set()
            thread.join()
            for s in slow:
                s.close()


def test_a_client_that_closes_mid_request_is_forgotten(agent: tuple[Agent, io.StringIO]) -> None:
    served, log = agent
    for partial in (b"GET", b"GET /api/snapshot HTTP/1.1\r\nHost: local", b"\x00" * 10):
        with socket.create_connection(served.address) as s:
            s.sendall(partial)
        assert get(served) == 200
    # a reset in the middle of a request
    s = socket.create_connection(served.address)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.sendall(b"GET /api/snapshot HTTP/1.1\r\n")
    s.close()
    assert get(served) == 200
    assert "Traceback" not in log.getvalue()
