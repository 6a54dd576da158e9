"""The lecture's TCP experiments with real processes on loopback."""

from __future__ import annotations

import re
import signal
import time

import pytest

from app.core.sockets import ProcNetSource
from tests.conftest import free_port
from tests.labs.procs import Labs, listen_row, listening_line

pytestmark = pytest.mark.timeout(30)

CONNECTED = re.compile(r"^Connected 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)$")


def connected_port(line: str, server_port: int) -> int:
    match = CONNECTED.match(line)
    assert match, line
    assert int(match.group(2)) == server_port
    return int(match.group(1))


def backlog_of(port: int) -> int:
    row = listen_row(port)
    assert row is not None, f"no LISTEN row for 127.0.0.1:{port}"
    return int(row[4].split(":")[1], 16)  # rx_queue of a listener: connections not yet accepted


def test_iterative_server_serves_one_client_the_other_waits_in_the_backlog(lab: Labs) -> None:
    port = free_port()
    server = lab.start("tcp-server", str(port))
    assert server.next_line() == listening_line(port)

    first = lab.start("tcp-client", "127.0.0.1", "hello", str(port))
    first_port = connected_port(first.expect("Connected"), port)
    assert server.expect("Client:") == f"Client: 127.0.0.1:{first_port}"
    assert first.next_line() == "Sent: hello"
    assert first.next_line() == "Holding the connection until stopped"

    second = lab.start("tcp-client", "127.0.0.1", "hello", str(port))
    # The kernel completes the second handshake by itself: the client is connected...
    second_port = connected_port(second.expect("Connected"), port)
    # ...but the iterative server, busy with the first, never accepts it.
    server.no_line_for(0.5)
    assert backlog_of(port) == 1

    snapshot = ProcNetSource(protos=("tcp",)).poll()
    ours = [s for s in snapshot.sockets if s.local_port == port]
    listening = [s for s in ours if s.state == "LISTEN"]
    assert len(listening) == 1
    assert listening[0].recv_q == 1
    assert listening[0].pid == server.pid and listening[0].process == "tcp-server"
    waiting = [s for s in ours if s.remote_port == second_port]
    assert len(waiting) == 1 and waiting[0].state == "ESTABLISHED"
    assert waiting[0].owner == "kernel" and waiting[0].pid is None
    served = [s for s in ours if s.remote_port == first_port]
    assert len(served) == 1 and served[0].owner == "process" and served[0].pid == server.pid

    # When the first client leaves, the server takes the one that waited.
    first.signal(signal.SIGTERM)
    assert first.wait() == 128 + signal.SIGTERM
    assert server.expect("Client gone:") == f"Client gone: 127.0.0.1:{first_port}"
    assert server.expect("Client:") == f"Client: 127.0.0.1:{second_port}"
    assert backlog_of(port) == 0


def test_concurrent_server_accepts_both_clients(lab: Labs) -> None:
    port = free_port()
    server = lab.start("tcp-server", str(port), "--concurrent", "--backlog", "3")
    assert server.next_line() == listening_line(port, mode="concurrent", backlog=3)
    clients = [lab.start("tcp-client", "127.0.0.1", "hi", str(port)) for _ in range(2)]
    ports = {connected_port(c.expect("Connected"), port) for c in clients}
    accepted = {server.expect("Client:", timeout=5) for _ in range(2)}
    assert accepted == {f"Client: 127.0.0.1:{p}" for p in ports}
    assert backlog_of(port) == 0


def test_killing_the_server_ends_the_client_cleanly(lab: Labs) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port))
    client = lab.start("tcp-client", "127.0.0.1", "hello", str(port))
    client.expect("Holding the connection")
    server.expect("Client:")
    server.proc.kill()  # kill -9: the kernel closes its sockets
    assert client.expect("Server closed the connection").startswith("Server closed the connection")
    assert client.wait() == 0
    assert client.stderr_text() == ""


def test_a_waiting_client_sees_the_end_when_the_server_dies(lab: Labs) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port))
    lab.start("tcp-client", "127.0.0.1", "a", str(port)).expect("Holding")
    server.expect("Client:")
    waiting = lab.start("tcp-client", "127.0.0.1", "b", str(port))
    waiting.expect("Holding")
    server.proc.kill()
    # Never accepted: the kernel resets it when the listener goes away.
    assert waiting.expect("Server closed the connection") in (
        "Server closed the connection",
        "Server closed the connection (reset)",
    )
    assert waiting.wait() == 0


def test_echo_handler_sends_the_message_back(lab: Labs) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port), "--handler", "echo")
    client = lab.start("tcp-client", "127.0.0.1", "hello", str(port), "--hold", "5")
    assert client.expect("Received:") == "Received: hello"
    server.expect("Client:")
    client.signal(signal.SIGINT)
    assert client.wait() == 128 + signal.SIGINT
    assert "Traceback" not in client.stderr_text()


def test_client_holds_for_the_given_seconds_then_closes(lab: Labs) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port))
    started = time.monotonic()
    client = lab.start("tcp-client", "127.0.0.1", "x", str(port), "--hold", "0.5", "--count", "3")
    client.expect("Connected")
    assert client.next_line() == "Sent: x (3 times)"
    assert client.next_line() == "Holding the connection for 0.5 s"
    assert client.next_line() == "Closed the connection"
    assert client.wait() == 0
    assert time.monotonic() - started >= 0.5
    server.expect("Client:")
    server.expect("Client gone:")


def test_sigterm_stops_the_server_quietly(lab: Labs) -> None:
    server = lab.server("tcp-server", str(free_port()))
    server.signal(signal.SIGTERM)
    assert server.expect("Stopped by") == "Stopped by SIGTERM"
    assert server.wait() == 128 + signal.SIGTERM
    assert server.stderr_text() == ""


def test_ipv6_loopback_lines(lab: Labs) -> None:
    try:
        port = free_port(addr="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = lab.start("tcp-server", str(port), "--bind", "::1")
    assert server.next_line() == listening_line(port, "::1")
    client = lab.start("tcp-client", "::1", "hi", str(port), "--hold", "2")
    line = client.expect("Connected")
    match = re.fullmatch(r"Connected \[::1\]:(\d+) -> \[::1\]:(\d+)", line)
    assert match and int(match.group(2)) == port
    assert server.expect("Client:") == f"Client: [::1]:{match.group(1)}"
