"""``observatory agent`` as a user runs it (issue 14): real processes, real HTTP on loopback.

Three agents on 127.0.0.2-4 with a token, the snapshot against ``snapshot --json``,
the refusals in words (a token file others may read, another host without a
token, a port in use), a malformed request, and the ways out: SIGTERM, SIGINT
and SIGHUP end it with exit 0, the port released and (as root) no tracefs
instance left. Every agent started here is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import tracepoint
from tests.conftest import REPO, free_port, listener, observatory

TOKEN = "room-101-token-7f3a9c"
INSTANCES = Path(tracepoint.TRACEFS) / "instances"


class AgentProcess:
    """``python -m app agent ARGS`` started and waited for (its one line on stdout)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "agent", *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.line = self.proc.stdout.readline()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, out, err


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def agents(*args: str) -> Iterator[AgentProcess]:
    agent = AgentProcess(*args)
    try:
        yield agent
    finally:
        code, _, err = agent.stop()
        assert "Traceback" not in err, err


def get(host: str, port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_three_agents_on_127_0_0_2_to_4(token_file: Path, sockets: list[socket.socket]) -> None:
    srv = listener(sockets, "127.0.0.1")
    port_of = {f"127.0.0.{n}": free_port(addr=f"127.0.0.{n}") for n in (2, 3, 4)}
    with contextlib.ExitStack() as stack:
        for host, port in port_of.items():
            agent = stack.enter_context(
                agents("--host", host, "--port", str(port), "--token-file", str(token_file))
            )
            assert agent.line == (
                f"observatory agent: listening on http://{host}:{port}/ (/api/snapshot,"
                " /api/events, /metrics); every request needs Authorization: Bearer TOKEN;"
                " Ctrl-C to stop\n"
            ), agent.line
        for host, port in port_of.items():
            assert get(host, port, "/api/snapshot")[0] == 401
            assert get(host, port, "/api/snapshot", "wrong")[0] == 401
            status, body = get(host, port, "/api/snapshot", TOKEN)
            assert status == 200
            data = json.loads(body)
            assert set(data) == {"host", "taken_at", "sockets", "processes"}
            listen = {(s["local_addr"], s["local_port"]) for s in data["sockets"]}
            assert ("127.0.0.1", srv.getsockname()[1]) in listen
            assert (host, port) not in listen  # itself: left out
            assert all(other in listen for other in port_of.items() if other[0] != host)


def test_snapshot_keys_are_those_of_snapshot_json(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = free_port()
    with agents("--port", str(port)) as agent:
        assert "no token" in agent.line
        status, body = get("127.0.0.1", port, "/api/snapshot")
    assert status == 200
    ours = json.loads(body)["sockets"]
    result = observatory("snapshot", "--json", "--listen")
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    assert theirs and ours
    assert {frozenset(s) for s in ours} == {frozenset(s) for s in theirs}
    mine = [s for s in ours if s["local_port"] == srv.getsockname()[1]]
    assert len(mine) == 1 and mine[0]["state"] == "LISTEN" and mine[0]["pid"] == os.getpid()


def test_a_token_file_others_may_read_is_refused_in_words(token_file: Path) -> None:
    token_file.chmod(0o644)
    agent = AgentProcess("--port", str(free_port()), "--token-file", str(token_file))
    code, out, err = agent.stop()
    assert code == 2 and agent.line == "" and out == ""
    assert err == (
        f"observatory agent: the token file {token_file} may be read by others (mode 0644):"
        f" anyone on this machine could read the token. Make it yours alone: chmod 600"
        f" {token_file}\n"
    ), err


def test_another_host_without_a_token_is_refused_in_words() -> None:
    # Refused before anything binds: nothing ever listens on 0.0.0.0 here.
    agent = AgentProcess("--host", "0.0.0.0", "--port", str(free_port()))
    code, out, err = agent.stop()
    assert code == 2 and agent.line == ""
    assert err.startswith(
        "observatory agent: without --token-file the agent serves this machine only"
        " (127.0.0.1 or ::1), not 0.0.0.0"
    ), err
    assert "--token-file FILE" in err and err.count("\n") == 1


def test_a_port_in_use_is_said_in_words(sockets: list[socket.socket]) -> None:
    taken = listener(sockets)
    agent = AgentProcess("--port", str(taken.getsockname()[1]))
    code, _, err = agent.stop()
    assert code == 1 and "the port is in use" in err and "Traceback" not in err, err


def test_malformed_request_gets_400_and_the_agent_stays_up() -> None:
    port = free_port()
    with agents("--port", str(port)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")  # a TLS hello, say
            assert s.recv(100).startswith(b"HTTP/1.1 400 ")
        assert get("127.0.0.1", port, "/api/snapshot")[0] == 200
        status, body = get("127.0.0.1", port, "/metrics")
        assert status == 200 and b"observatory_listeners " in body


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_end_it_cleanly(sig: signal.Signals) -> None:
    port = free_port()
    agent = AgentProcess("--port", str(port))
    try:
        assert agent.line.startswith("observatory agent: listening on"), agent.line
        # An event client: the agent's stream runs (as root: its tracefs instance).
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 200 ")
        if os.geteuid() == 0:
            instance = INSTANCES / f"observatory-{agent.proc.pid}"
            deadline = time.monotonic() + 5
            while not instance.is_dir() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert instance.is_dir()
        started = time.monotonic()
        code, out, err = agent.stop(sig)
        assert time.monotonic() - started < 5
    finally:
        agent.stop(signal.SIGKILL)
    assert code == 0 and err == "", (sig, code, err)
    client.settimeout(5)
    rest = b""
    with contextlib.suppress(OSError):
        while chunk := client.recv(65536):  # the stream ended: EOF
            rest += chunk
    client.close()
    if os.geteuid() == 0:
        assert not list(INSTANCES.glob(f"observatory-{agent.proc.pid}*"))
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
