"""The class view's client (app.core.classroom) against real HTTP servers on loopback:
real agents (``python -m app agent``) when that command is there, and a stand-in agent
(http.server serving a real ``observatory snapshot --json``); a dead port, a server
that accepts and never answers, garbage, and tokens right, wrong and missing. Then
``observatory class`` itself: ``--json`` with a machine down, and TARGETs refused."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core import classroom
from app.core.classroom import Classroom, Target, TargetError, parse_target
from tests.conftest import REPO, free_port, observatory, wait_for

AGENT = REPO / "app" / "commands" / "agent.py"
needs_agent = pytest.mark.skipif(not AGENT.exists(), reason="observatory agent is not built yet")


def real_snapshot(held: list[socket.socket]) -> tuple[dict[str, Any], int]:
    """A real /api/snapshot body: ``observatory snapshot --json`` of this machine while it
    holds a listener with one connection waiting in its backlog; and that listener's port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    client = socket.create_connection(server.getsockname())  # never accepted: in the backlog
    held += [server, client]
    done = observatory("snapshot", "--json")
    assert done.returncode == 0, done.stderr
    body = {
        "host": "stand-in",
        "taken_at": time.time(),
        "sockets": json.loads(done.stdout),
        "processes": [{"pid": 1, "name": "server1", "cmdline": ["tcp-server"], "parent_pid": 0}],
    }
    return body, server.getsockname()[1]


class StandIn(http.server.ThreadingHTTPServer):
    """A stand-in agent: answers GET /api/snapshot with ``body`` (bytes, or an object
    made JSON with a fresh taken_at), wanting ``token`` when it is set."""

    daemon_threads = True

    def __init__(
        self,
        address: str,
        body: object,
        token: str | None = None,
        keep_alive: bool = True,
        idle: float | None = None,
    ) -> None:
        handler = type(
            "Handler",
            (_Handler,),
            {"protocol_version": "HTTP/1.1" if keep_alive else "HTTP/1.0", "timeout": idle},
        )
        super().__init__((address, 0), handler)
        self.body = body
        self.token = token
        self.requests = 0
        self.connections = 0
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)
        return f"{host}:{port}"

    def close(self) -> None:
        """Gone as a killed agent is: its listener and every connection it had."""
        self.shutdown()
        self.server_close()
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    """As the real agent's: HTTP/1.1, so a connection serves question after question."""

    server: StandIn

    def setup(self) -> None:
        self.server.connections += 1
        self.server.open.append(self.request)
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests += 1
        token = self.server.token
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.body
        if not isinstance(body, bytes):
            assert isinstance(body, dict)
            body = json.dumps({**body, "taken_at": time.time()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def silent() -> Iterator[str]:
    """A TARGET that accepts connections and never answers (a hung machine)."""
    s = socket.socket()
    s.bind(("127.0.0.3", 0))
    s.listen(8)
    try:
        yield f"127.0.0.3:{s.getsockname()[1]}"
    finally:
        s.close()


def dead_target(addr: str = "127.0.0.4") -> str:
    return f"{addr}:{free_port(addr=addr)}"


def room(*texts: str, token: str | None = None, timeout: float = 1.0) -> Classroom:
    return Classroom([parse_target(t) for t in texts], token, timeout=timeout)


# -- TARGETs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.2:8765", "127.0.0.2", 8765),
        ("pc07:80", "pc07", 80),
        ("[::1]:8765", "::1", 8765),
        ("[fd00::7]:1", "fd00::7", 1),
        (" lab-pc.example.org:65535 ", "lab-pc.example.org", 65535),
    ],
)
def test_targets_accepted(text: str, host: str, port: int) -> None:
    assert parse_target(text) == Target(host, port)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("127.0.0.2", "has no port"),
        ("::1:8765", "in brackets"),
        ("pc07:0", "from 1 to 65535"),
        ("pc07:http", "from 1 to 65535"),
        ("pc07:٨٠", "digits 0-9"),
        ("[::1]8765", "comes ':PORT'"),
        ("10.0.0.0/24:80", "not a network"),
        ("-x:80", "cannot start with '-'"),
        ("300.1.1.1:80", "not a valid IPv4 address"),
        ("", "empty"),
    ],
)
def test_targets_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(TargetError, match=words):
        parse_target(text)


def test_hosts_file(tmp_path: Path) -> None:
    path = tmp_path / "room.txt"
    path.write_text("# room 204\npc01:8765\n\n  pc02:8765  # by the window\npc01:8765\n")
    texts = classroom.read_hosts_file(str(path))
    assert [t.text for t in classroom.parse_targets(texts)] == ["pc01:8765", "pc02:8765"]
    path.write_text("pc01:8765\npc02\n")
    with pytest.raises(TargetError, match=r"line 2: 'pc02' has no port"):
        classroom.read_hosts_file(str(path))
    with pytest.raises(TargetError, match="there is no hosts file"):
        classroom.read_hosts_file(str(tmp_path / "nope.txt"))


# -- the client against real HTTP servers ---------------------------------------------------


def test_a_snapshot_becomes_a_row(servers: list[StandIn], recorded: Any) -> None:
    body, port = recorded
    servers.append(StandIn("127.0.0.2", body))
    (row,) = room(servers[0].target).poll_all()
    assert row.up and row.error is None and row.host == "stand-in"
    assert port in row.listen and list(row.listen) == sorted(set(row.listen))
    listeners = [s for s in body["sockets"] if s["state"] == "LISTEN" and s["proto"][:3] == "tcp"]
    assert row.waiting == sum(s["recv_q"] for s in listeners) >= 1
    assert row.established == sum(1 for s in body["sockets"] if s["state"] == "ESTABLISHED")
    assert row.processes == 1
    assert row.snapshot is not None and len(row.snapshot.sockets) == len(body["sockets"])
    age = row.to_json()["age"]
    assert isinstance(age, float) and 0 <= age < 5


def test_the_newest_change_between_two_answers(servers: list[StandIn], recorded: Any) -> None:
    body, _ = recorded
    server = StandIn("127.0.0.2", body)
    servers.append(server)
    watched = room(server.target)
    first = watched.poll_all()[0]
    assert first.last_event is None  # one answer: no change to tell yet
    opened = {**body["sockets"][0], "local_port": 54321, "state": "LISTEN", "proto": "tcp"}
    opened.update(remote_addr=None, remote_port=None, local_addr="0.0.0.0")
    server.body = {**body, "sockets": [*body["sockets"], opened]}
    second = watched.poll_all()[0]
    assert second.last_event is not None and "+ LISTEN tcp 0.0.0.0:54321" in second.last_event
    assert 54321 in second.listen
    third = watched.poll_all()[0]  # nothing changed since: the last event stays
    assert third.last_event == second.last_event


def test_the_views_own_traffic_is_left_out(servers: list[StandIn], recorded: Any) -> None:
    """On a machine that runs the view or another agent too (a loopback room), the
    connections to the room's agents and their listeners are not the class's work."""
    body, _ = recorded
    server = StandIn("127.0.0.2", body)
    servers.append(server)
    host, port = server.target.rsplit(":", 1)
    template = {**body["sockets"][0], "proto": "tcp", "owner": "process", "pid": 7}
    ours = [
        {**template, "state": "LISTEN", "local_addr": host, "local_port": int(port)},
        {
            **template,
            "state": "ESTABLISHED",
            "local_addr": "127.0.0.1",
            "local_port": 50000,
            "remote_addr": host,
            "remote_port": int(port),
        },
        {
            **template,
            "state": "ESTABLISHED",
            "local_addr": host,
            "local_port": int(port),
            "remote_addr": "127.0.0.1",
            "remote_port": 50000,
        },
    ]
    plain = room(server.target).poll_all()[0]
    server.body = {**body, "sockets": [*body["sockets"], *ours]}
    polled = room(server.target).poll_all()[0]
    assert (polled.listen, polled.established) == (plain.listen, plain.established)
    assert polled.snapshot is not None
    assert len(polled.snapshot.sockets) == len(body["sockets"])


def test_a_change_in_a_few_words(servers: list[StandIn], recorded: Any) -> None:
    body, _ = recorded
    server = StandIn("127.0.0.2", body)
    servers.append(server)
    watched = room(server.target)
    watched.poll_all()
    base = {**body["sockets"][0], "proto": "tcp", "owner": "process", "pid": 9}
    opened = [
        {
            **base,
            "state": "LISTEN",
            "local_addr": "0.0.0.0",
            "local_port": 6001,
            "remote_addr": None,
            "remote_port": None,
            "process": "tcp-server",
        },
        {
            **base,
            "state": "ESTABLISHED",
            "local_addr": "127.0.0.1",
            "local_port": 40000,
            "remote_addr": "127.0.0.1",
            "remote_port": 6001,
            "process": "tcp-client",
        },
    ]
    server.body = {**body, "sockets": [*body["sockets"], *opened]}
    (row,) = watched.poll_all()
    assert row.change is not None
    assert row.change.brief == "+ LISTEN :6001 tcp-server +1"  # the server, before its client
    assert (
        row.change.text.startswith("+ LISTEN tcp 0.0.0.0:6001")
        and "(and 1 more)" in row.change.text
    )
    assert row.to_json()["last_event"] == row.change.text


def test_dead_slow_and_garbage_are_rows_in_words(
    servers: list[StandIn], silent: str, recorded: Any
) -> None:
    body, _ = recorded
    garbage = StandIn("127.0.0.2", b"<html>It works!</html>")
    shape = StandIn("127.0.0.2", b'{"host": "x", "taken_at": 1, "sockets": [{"proto": 4}]}')
    good = StandIn("127.0.0.2", body)
    servers += [garbage, shape, good]
    dead = dead_target()
    began = time.monotonic()
    rows = room(dead, silent, garbage.target, shape.target, good.target, timeout=1.0).poll_all()
    took = time.monotonic() - began
    assert took < 2.5, f"asked at once, each within the timeout: {took:.1f} s"
    words = {r.target: r.error or "" for r in rows}
    assert [r.target for r in rows] == [dead, silent, garbage.target, shape.target, good.target]
    assert "connection refused" in words[dead] and "is `observatory agent --port" in words[dead]
    assert rows[0].problem == "no agent"
    assert "no answer within 1 s" in words[silent]
    assert "not with JSON" in words[garbage.target]
    assert "not an agent's snapshot" in words[shape.target]
    by = {r.target: r for r in rows}
    assert by[good.target].up and by[good.target].error is None
    for row in rows[:4]:
        assert not row.up and row.listen == () and row.error and row.error.endswith(("?", ".", ")"))
        assert "Traceback" not in row.error
        assert row.to_json()["up"] is False


def test_one_connection_for_many_questions(servers: list[StandIn], recorded: Any) -> None:
    """A connection a second would leave a TIME_WAIT a second on the teacher's laptop."""
    body, _ = recorded
    kept = StandIn("127.0.0.2", body)
    closing = StandIn("127.0.0.2", body, keep_alive=False)
    # Closes a connection idle for 1 s: the three rounds below come well within it, even
    # on a loaded machine, and the pause after them well past it.
    idle = StandIn("127.0.0.2", body, idle=1.0)
    servers += [kept, closing, idle]
    watched = room(kept.target, closing.target, idle.target)
    for _ in range(3):
        assert all(r.up for r in watched.poll_all())
    time.sleep(2.0)
    assert all(r.up for r in watched.poll_all()), "asked again on a new connection"
    watched.close()
    assert (kept.requests, kept.connections) == (4, 1)
    assert (closing.requests, closing.connections) == (4, 4)
    assert (idle.requests, idle.connections) == (4, 2)


def test_a_body_that_trickles_in_is_cut_at_the_timeout() -> None:
    """An agent that answers a byte at a time gets one timeout for the whole answer."""
    server = socket.socket()
    server.bind(("127.0.0.2", 0))
    server.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    conn.sendall(b" ")
                time.sleep(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        began = time.monotonic()
        (row,) = room(f"127.0.0.2:{server.getsockname()[1]}", timeout=0.5).poll_all()
        assert time.monotonic() - began < 1.5
        assert row.problem == "no answer" and not row.up
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_tokens(servers: list[StandIn], recorded: Any) -> None:
    body, _ = recorded
    server = StandIn("127.0.0.2", body, token="s3cret-token")
    servers.append(server)
    (missing,) = room(server.target).poll_all()
    assert not missing.up and missing.error is not None
    assert "the agent wants a token: --token-file" in missing.error
    (wrong,) = room(server.target, token="guess").poll_all()
    assert not wrong.up and "refused the token" in (wrong.error or "")
    (right,) = room(server.target, token="s3cret-token").poll_all()
    assert right.up and right.error is None


def test_a_machine_that_goes_down_keeps_its_last_answer(
    servers: list[StandIn], recorded: Any
) -> None:
    body, _ = recorded
    server = StandIn("127.0.0.2", body)
    watched = room(server.target)
    up = watched.poll_all()[0]
    server.close()
    down = watched.poll_all()[0]
    assert up.up and not down.up and down.problem == "no agent"
    assert down.taken_at == up.taken_at and down.snapshot is up.snapshot  # for the drill-down
    assert down.host == "stand-in" and down.listen == ()


def test_the_watch_threads_ask_every_interval_and_stop(
    servers: list[StandIn], recorded: Any
) -> None:
    body, _ = recorded
    server = StandIn("127.0.0.2", body)
    servers.append(server)
    watched = room(server.target, dead_target())
    seen: list[classroom.MachineRow] = []
    watched.start(seen.append, interval=0.1)
    try:
        wait_for(lambda: server.requests >= 3, what="three questions at 0.1 s")
        wait_for(lambda: any(not r.up for r in seen), what="the dead one's row")
    finally:
        watched.stop()
    time.sleep(1.2)  # past the timeout (1 s): a question asked just before stop() has come
    asked = server.requests
    time.sleep(0.3)
    assert server.requests == asked, "stop() ends the questions"


# -- real agents ----------------------------------------------------------------------------


@contextlib.contextmanager
def agent(address: str, *extra: str) -> Iterator[str]:
    """``python -m app agent`` on ``address``; its TARGET once it listens."""
    port = free_port(addr=address)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "agent", "--host", address, "--port", str(port), *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listening() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with socket.socket() as probe:
                return probe.connect_ex((address, port)) == 0

        wait_for(listening, timeout=20, what=f"the agent on {address}:{port}")
        yield f"{address}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@needs_agent
def test_three_real_agents_and_a_dead_one(tmp_path: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        with agent("127.0.0.2") as a, agent("127.0.0.3") as b, agent("127.0.0.4") as c:
            dead = dead_target("127.0.0.5")
            rows = room(a, b, c, dead, timeout=5.0).poll_all()
            for row in rows[:3]:
                assert row.up, row.error
                assert row.host == socket.gethostname()
                assert port in row.listen  # one machine here: each agent sees this listener
            assert not rows[3].up and "connection refused" in (rows[3].error or "")
    finally:
        held.close()


@needs_agent
def test_a_real_agent_with_a_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("class-204-token\n")
    os.chmod(token, 0o600)
    with agent("127.0.0.2", "--token-file", str(token)) as target:
        (missing,) = room(target, timeout=5.0).poll_all()
        assert "the agent wants a token: --token-file" in (missing.error or "")
        (wrong,) = room(target, token="nope", timeout=5.0).poll_all()
        assert "refused the token" in (wrong.error or "")
        (right,) = room(target, token="class-204-token", timeout=5.0).poll_all()
        assert right.up, right.error


# -- the command ----------------------------------------------------------------------------


def test_json_with_one_machine_down_exits_0(servers: list[StandIn], recorded: Any) -> None:
    body, port = recorded
    servers.append(StandIn("127.0.0.2", body))
    dead = dead_target()
    done = observatory("class", "--json", "--timeout", "2", servers[0].target, dead)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["target"] for r in rows] == [servers[0].target, dead]
    good, down = rows
    assert good["up"] is True and good["error"] is None and port in good["listen"]
    assert isinstance(good["established"], int)
    assert down["up"] is False and down["listen"] == [] and "connection refused" in down["error"]
    for row in rows:
        assert {"target", "up", "listen", "established", "error"} <= set(row)


def test_json_with_a_hosts_file_and_a_token_file(
    servers: list[StandIn], recorded: Any, tmp_path: Path
) -> None:
    body, _ = recorded
    servers.append(StandIn("127.0.0.2", body, token="t0ken"))
    hosts = tmp_path / "room.txt"
    hosts.write_text(f"# the front row\n{servers[0].target}\n")
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    done = observatory("class", "--json", "--hosts-file", str(hosts), "--token-file", str(token))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["up"] is True


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["pc07"], "'pc07' has no port: a TARGET is HOST:PORT"),
        (["127.0.0.2:8765", "fe80::1:80"], "put an IPv6 address in brackets"),
        ([], "name the machines"),
        (["--hosts-file", "/nonexistent/room.txt"], "there is no hosts file"),
        (["127.0.0.2:1", "--token-file", "/nonexistent/token"], "there is no token file"),
        (["127.0.0.2:1", "--interval", "0"], "seconds must be more than 0"),
    ],
)
def test_bad_input_is_refused_in_words_before_asking(args: list[str], words: str) -> None:
    done = observatory("class", "--json", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert words in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("observatory class")


def test_the_view_wants_a_terminal() -> None:
    done = observatory("class", dead_target())
    assert done.returncode == 2
    assert "the class view needs a terminal" in done.stderr
