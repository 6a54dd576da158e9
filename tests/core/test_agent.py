"""The agent in process (issue 14): real HTTP on loopback, real sockets, real lab processes.

Each test serves an :class:`app.core.agent.Agent` on 127.0.0.x port 0 in a thread
and talks to it with http.client or raw sockets: the snapshot's shape, the event
stream, the metrics through prometheus_client's own parser, the token, the
refused methods, malformed and slow clients, and three agents at once.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.core.agent import MAX_CONNECTIONS, Agent, AgentRefused, check_host, load_token
from app.core.agent_events import Subscription
from app.core.model import Snapshot
from app.core.sockets import default_source
from app.core.watch import WatchEvent
from tests.conftest import connect, free_port, listener, wait_for

TOKEN = b"0123456789abcdef-class-token"
SNAPSHOT_KEYS = {"host", "taken_at", "sockets", "processes"}
PROCESS_KEYS = {"pid", "name", "cmdline", "parent_pid"}


@contextlib.contextmanager
def serving(
    host: str = "127.0.0.1", token: bytes | None = None, port: int = 0, **kw: object
) -> Iterator[Agent]:
    log = io.StringIO()
    agent = Agent(host, port, token, log=log, **kw).start()  # type: ignore[arg-type]
    agent.log_text = log  # type: ignore[attr-defined]
    try:
        yield agent
    finally:
        agent.close()
    assert "Traceback" not in log.getvalue(), log.getvalue()


@pytest.fixture
def agent() -> Iterator[Agent]:
    with serving() as a:
        yield a


def request(
    agent: Agent,
    path: str,
    method: str = "GET",
    token: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = agent.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = (
                f"Bearer {token.decode() if isinstance(token, bytes) else token}"
            )
        conn.request(method, path, headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw(agent: Agent, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection; everything the agent answers until it closes."""
    with socket.create_connection(agent.address, timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# ------------------------------------------------------------------ /api/snapshot


def test_snapshot_has_the_contract_shape_and_the_test_listener(
    agent: Agent, sockets: list[socket.socket]
) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    status, headers, body = request(agent, "/api/snapshot")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert set(data) == SNAPSHOT_KEYS
    assert data["host"] == socket.gethostname()
    assert abs(data["taken_at"] - time.time()) < 10
    # The same keys as snapshot --json: Socket.to_json of the same source.
    expected = set(default_source().poll().sockets[0].to_json())
    assert data["sockets"] and all(set(s) == expected for s in data["sockets"])
    mine = [s for s in data["sockets"] if s["local_port"] == port and s["state"] == "LISTEN"]
    assert len(mine) == 1 and mine[0]["pid"] == os.getpid(), mine
    assert isinstance(data["processes"], list)


def test_snapshot_leaves_out_the_agents_own_sockets(agent: Agent) -> None:
    # A second connection held open to the agent while it answers the first.
    with socket.create_connection(agent.address):
        data = json.loads(request(agent, "/api/snapshot")[2])
    port = agent.address[1]
    assert not [s for s in data["sockets"] if s["local_port"] == port], port
    # The clients' ends are the test's, not the agent's: those are shown.
    assert [s for s in data["sockets"] if s["remote_port"] == port]


def test_lab_processes_started_by_the_process_manager_are_listed(agent: Agent) -> None:
    from app.core.procs import ProcessManager

    manager = ProcessManager(register_atexit=False)
    try:
        port = str(free_port())
        info = manager.launch_builtin("srv", "tcp-server", [port, "--bind", "127.0.0.1"])
        assert info.pid is not None

        def listed() -> dict[str, object] | None:
            data = json.loads(request(agent, "/api/snapshot")[2])
            found = [p for p in data["processes"] if p["pid"] == info.pid]
            # Named once the program has set its name (python until then).
            return found[0] if found and found[0]["name"] == "tcp-server" else None

        proc = wait_for(listed, timeout=5, what="the lab process in /api/snapshot")
        assert set(proc) >= PROCESS_KEYS
        assert proc["name"] == "tcp-server" and proc["observatory_pid"] == os.getpid()
        assert proc["parent_pid"] == os.getpid()
        assert "app.labs.tcp_server" in proc["cmdline"]
    finally:
        manager.shutdown()
    time.sleep(0.3)  # older than the 0.2 s the agent serves one scan again
    gone = json.loads(request(agent, "/api/snapshot")[2])["processes"]
    assert all(p["pid"] != info.pid for p in gone)


def test_a_process_marked_with_a_dead_observatory_is_not_a_lab_process(agent: Agent) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    env = dict(os.environ, OBSERVATORY_PARENT_PID=str(dead.pid))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        time.sleep(0.3)
        data = json.loads(request(agent, "/api/snapshot")[2])
        assert all(p["pid"] != child.pid for p in data["processes"])
    finally:
        child.kill()
        child.wait()


def test_concurrent_requests_share_one_poll(sockets: list[socket.socket]) -> None:
    class Counting:
        def __init__(self) -> None:
            self.inner = default_source()
            self.polls = 0

        def poll(self) -> Snapshot:
            self.polls += 1
            time.sleep(0.05)
            return self.inner.poll()

    source = Counting()
    with serving(source=source) as agent:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(request(agent, "/api/snapshot")[0]))
            for _ in range(12)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200] * 12
    assert source.polls <= 2, source.polls


# ------------------------------------------------------------------ /api/events


class SSE:
    """A client of /api/events, reading its lines in a thread."""

    def __init__(self, agent: Agent, path: str = "/api/events", token: bytes | None = None) -> None:
        self.sock = socket.create_connection(agent.address, timeout=10)
        auth = f"Authorization: Bearer {token.decode()}\r\n" if token else ""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.status = self.file.readline().decode()
        self.headers: list[str] = []
        while (line := self.file.readline()) not in (b"\r\n", b""):
            self.headers.append(line.decode().strip())
        self.comments: list[str] = []
        self.events: list[dict[str, object]] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self.file:
                text = line.decode().rstrip("\n")
                if text.startswith("data: "):
                    self.events.append(json.loads(text[6:]))
                elif text.startswith(":"):
                    self.comments.append(text)
        self.ended.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_events_stream_a_listener_opened_and_closed(agent: Agent) -> None:
    sse = SSE(agent)
    try:
        assert sse.status.startswith("HTTP/1.1 200"), sse.status
        assert "Content-Type: text/event-stream; charset=utf-8" in sse.headers
        wait_for(lambda: sse.comments, timeout=5, what="the stream's first comment")
        assert "observatory agent on" in sse.comments[0]
        wait_for(lambda: agent.hub.running, timeout=5)
        time.sleep(1.2)  # the first sample (the baseline) is taken
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        time.sleep(1.5)  # seen by the tracepoint at once, by a sample within a second
        srv.close()

        def seen(state: str) -> list[dict[str, object]]:
            return [e for e in sse.events if e["local_port"] == port and e["new_state"] == state]

        opened = wait_for(lambda: seen("LISTEN"), timeout=5, what="LISTEN event")
        wait_for(lambda: seen("CLOSE"), timeout=5, what="CLOSE event")
        sample = WatchEvent(0, "tcp", "127.0.0.1", 1, None, None, None, "LISTEN", 1, "x", "poll")
        assert set(opened[0]) == set(sample.to_json())
        assert opened[0]["pid"] == os.getpid()
        # The agent's own port never shows up in its stream.
        assert all(e["local_port"] != agent.address[1] for e in sse.events)
    finally:
        sse.close()
    # The client went: its subscription is gone, and with the last one the stream.
    wait_for(lambda: agent.hub.subscribers == 0 and not agent.hub.running, timeout=5)


def test_events_of_one_port_only(agent: Agent, sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    sse = SSE(agent, f"/api/events?port={port}")
    try:
        wait_for(lambda: agent.hub.running, timeout=5)
        time.sleep(1.2)
        connect(sockets, srv)
        other = listener(sockets)  # another port: not this client's
        time.sleep(1.5)
        wait_for(lambda: sse.events, timeout=5, what="an event of the port")
        ports = other.getsockname()[1]
        assert all(port in (e["local_port"], e["remote_port"]) for e in sse.events), ports
    finally:
        sse.close()
    assert request(agent, "/api/events?port=99999")[0] == 400


def test_a_subscriber_that_does_not_read_is_dropped_and_others_go_on() -> None:
    slow = Subscription(frozenset(), limit=3)
    quick = Subscription(frozenset(), limit=3)
    event = WatchEvent(0, "tcp", "127.0.0.1", 1, None, None, None, "LISTEN", None, None, "poll")
    for sub in (slow, quick):
        sub._offer([event, event])
    assert quick.get(0) == [event, event]
    for sub in (slow, quick):
        sub._offer([event, event])  # slow now holds 4 > 3: dropped
    assert slow.dropped and slow.ended and slow.get(0) == []
    assert not quick.dropped and quick.get(0) == [event, event]


def test_a_stopping_agent_ends_its_event_streams() -> None:
    with serving() as agent:
        sse = SSE(agent)
        wait_for(lambda: agent.hub.running, timeout=5)
        port = agent.address[1]
    assert sse.ended.wait(5), "the stream did not end when the agent closed"
    sse.close()
    with serving(port=port) as again:  # the port is released: another agent can have it
        assert request(again, "/")[0] == 200


# ------------------------------------------------------------------ /metrics


def test_metrics_parse_and_count_the_test_sockets(
    agent: Agent, sockets: list[socket.socket]
) -> None:
    srv = listener(sockets, backlog=8)
    for _ in range(3):
        connect(sockets, srv)  # three connections nobody accepts: waiting in its backlog
    time.sleep(0.3)
    status, headers, body = request(agent, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "observatory_sockets",
        "observatory_listeners",
        "observatory_backlog_waiting",
        "observatory_retransmissions",
        "observatory_lab_processes",
    ):
        assert name in families and families[name].type == "gauge", name
    by_state = {
        (s.labels["state"], s.labels["proto"]): s.value
        for s in families["observatory_sockets"].samples
    }
    assert by_state[("LISTEN", "tcp")] >= 1
    assert by_state[("ESTABLISHED", "tcp")] >= 6  # both ends of the three
    assert ("SYN_SENT", "tcp6") in by_state  # every state, zero or not
    assert {len(s.labels) for s in families["observatory_sockets"].samples} == {2}
    assert families["observatory_listeners"].samples[0].value >= 1
    assert families["observatory_backlog_waiting"].samples[0].value >= 3
    # No per-connection series: the label values are states and protocols only.
    assert len(families["observatory_sockets"].samples) <= 26
    assert "process_resident_memory_bytes" in body.decode()


# ------------------------------------------------------------------ the token


def test_token_right_wrong_and_missing() -> None:
    with serving(token=TOKEN) as agent:
        for path in ("/api/snapshot", "/metrics", "/api/events", "/", "/nope"):
            for token in (None, "wrong", TOKEN[:-1].decode(), TOKEN.decode() + "x"):
                status, headers, body = request(agent, path, token=token)
                assert status == 401, (path, token)
                assert headers["www-authenticate"].startswith("Bearer")
                assert json.loads(body)["error"]
            status, _, _ = request(
                agent, path, headers={"Authorization": "Basic " + TOKEN.decode()}
            )
            assert status == 401
        assert request(agent, "/api/snapshot", token=TOKEN)[0] == 200
        assert request(agent, "/metrics", token=TOKEN)[0] == 200
        assert request(agent, "/nope", token=TOKEN)[0] == 404
        sse = SSE(agent, token=TOKEN)
        try:
            assert sse.status.startswith("HTTP/1.1 200")
        finally:
            sse.close()
        assert "401" in agent.log_text.getvalue()  # type: ignore[attr-defined]


def test_token_file_readable_by_others_or_empty_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    path.chmod(0o644)
    with pytest.raises(AgentRefused, match=r"may be read by others \(mode 0644\).*chmod 600"):
        load_token(str(path))
    path.chmod(0o640)
    with pytest.raises(AgentRefused, match="chmod 600"):
        load_token(str(path))
    path.chmod(0o600)
    assert load_token(str(path)) == b"s3cret-token"
    path.write_text("\n  \n")
    with pytest.raises(AgentRefused, match="is empty"):
        load_token(str(path))
    path.write_text("two words\n")
    with pytest.raises(AgentRefused, match="one word of printable ASCII"):
        load_token(str(path))
    with pytest.raises(AgentRefused, match="cannot read the token file"):
        load_token(str(tmp_path / "none"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(AgentRefused, match="not a regular file"):
        load_token(str(fifo))  # refused at once, not waiting for a writer


def test_without_a_token_only_loopback() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7", "lab-pc-3"):
        with pytest.raises(AgentRefused, match="without --token-file the agent serves this"):
            check_host(host, None)
        check_host(host, TOKEN)  # with a token any address may be served
    for host in ("127.0.0.1", "127.0.0.3", "::1", "localhost"):
        check_host(host, None)
    with pytest.raises(AgentRefused):  # the Agent itself checks before it binds
        Agent("0.0.0.0", 0, None)


# ------------------------------------------------------------------ read-only, robust


def test_every_other_method_is_refused(agent: Agent) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "KILL"):
        status, headers, body = request(agent, "/api/snapshot", method=method)
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"
        assert "read-only" in json.loads(body)["error"]
    with serving(token=TOKEN) as guarded:  # with the right token too
        assert request(guarded, "/api/snapshot", method="POST", token=TOKEN)[0] == 405
    assert request(agent, "/nope")[0] == 404
    status, headers, body = request(agent, "/api/snapshot", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_malformed_and_huge_requests_get_4xx_and_the_agent_stays_up(agent: Agent) -> None:
    assert raw(agent, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(agent, b"GET / HTTP/1.1 extra\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(agent, b"GET / HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert raw(agent, b"GET /\r\n\r\n").startswith(b"HTTP/1.1 400 ")  # HTTP/0.9: no token
    assert raw(agent, b"\x00\xff\xfe\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(agent, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414")
    long_header = b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    assert raw(agent, long_header).startswith(b"HTTP/1.1 431 ")
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert raw(agent, many).startswith(b"HTTP/1.1 431 ")
    body = raw(agent, b"GARBAGE\r\n\r\n").split(b"\r\n\r\n", 1)[1]
    assert "error" in json.loads(body)
    assert request(agent, "/api/snapshot")[0] == 200
    log = agent.log_text.getvalue()  # type: ignore[attr-defined]
    assert "Traceback" not in log and "-> 400" in log
    assert all(len(line) < 400 for line in log.splitlines())


def test_a_slow_client_does_not_block_another(agent: Agent) -> None:
    # Half a request line, never finished; an event client that never reads.
    slow = socket.create_connection(agent.address)
    slow.sendall(b"GET /api/snap")
    stuck = SSE(agent)
    try:
        for _ in range(3):
            started = time.monotonic()
            assert request(agent, "/api/snapshot")[0] == 200
            assert time.monotonic() - started < 2
    finally:
        slow.close()
        stuck.close()


def test_a_connection_idle_past_the_timeout_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core import agent as agent_module

    monkeypatch.setattr(agent_module.AgentHandler, "timeout", 0.5)
    with serving() as agent:
        with socket.create_connection(agent.address, timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")  # and nothing more
            started = time.monotonic()
            assert s.recv(100) == b""  # closed by the agent, not answered
            assert time.monotonic() - started < 3
        assert request(agent, "/")[0] == 200


def test_more_than_the_connection_limit_get_503() -> None:
    with serving() as agent:
        held = [socket.create_connection(agent.address) for _ in range(MAX_CONNECTIONS)]
        try:
            wait_for(lambda: len(agent.server._conns) == MAX_CONNECTIONS, timeout=5)
            assert raw(agent, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        finally:
            for s in held:
                s.close()
        wait_for(lambda: request(agent, "/")[0] == 200, timeout=5)


# ------------------------------------------------------------------ a room of three


def test_three_agents_on_three_loopback_addresses(sockets: list[socket.socket]) -> None:
    with contextlib.ExitStack() as stack:
        agents = [stack.enter_context(serving(f"127.0.0.{n}", TOKEN)) for n in (2, 3, 4)]
        srv = listener(sockets, "127.0.0.3")
        for agent in agents:
            status, _, body = request(agent, "/api/snapshot", token=TOKEN)
            assert status == 200
            data = json.loads(body)
            listen = {(s["local_addr"], s["local_port"]) for s in data["sockets"]}
            assert ("127.0.0.3", srv.getsockname()[1]) in listen
            assert agent.address not in listen  # its own listener is left out
            others = [a.address for a in agents if a is not agent]
            assert all(o in listen for o in others)  # the other agents' are not
            assert request(agent, "/metrics", token=TOKEN)[0] == 200


def test_without_a_token_a_request_for_another_name_is_refused(agent: Agent) -> None:
    """DNS rebinding: a web page whose own name points at 127.0.0.1 must not read a
    loopback agent that has no token (its Host header names the page, not this machine)."""
    for host, code in (
        ("attacker.example:9107", 403),
        ("localhost:9107", 200),
        (f"127.0.0.1:{agent.address[1]}", 200),
        ("[::1]:9107", 200),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", agent.address[1], timeout=10)
        conn.putrequest("GET", "/api/snapshot", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
        assert answer.status == code, (host, body[:200])
        if code == 403:
            assert b"Host: localhost or a loopback address" in body
