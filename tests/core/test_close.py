"""``observatory close``: the kernel's SOCK_DESTROY on real loopback connections."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from ipaddress import ip_address

import pytest

from app.commands.close import why_not
from app.core.model import Socket
from tests.conftest import AsNobody, free_port, listener, observatory
from tests.labs.procs import Labs

pytestmark = pytest.mark.timeout(30)

ABORTED = "connection aborted by the kernel"


def needs_root() -> None:
    if os.geteuid() != 0:
        # CI runs as root: there this must run, not skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("SOCK_DESTROY needs root")


def one_line(out: str) -> str:
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert "Traceback" not in out
    return lines[0]


def rows(port: int) -> list[dict[str, object]]:
    out = observatory("snapshot", "--json", "--all", "--port", str(port))
    assert out.returncode == 0, out.stderr
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def test_close_ends_a_lab_connection_held_by_another_process(lab: Labs) -> None:
    needs_root()
    port = free_port()
    server = lab.server("tcp-server", str(port))
    client = lab.start("tcp-client", "127.0.0.1", "hola", str(port))
    cport = int(client.expect("Connected").split()[1].rsplit(":", 1)[1])
    client.expect("Holding the connection")
    server.expect("Client:")

    out = observatory("close", f"127.0.0.1:{port}", f"127.0.0.1:{cport}")
    assert out.returncode == 0, out.stderr
    line = one_line(out.stdout)
    assert line.startswith(f"Closed 127.0.0.1:{port} -> 127.0.0.1:{cport} (ESTABLISHED)"), line
    assert f"{server.pid}/tcp-server" in line and f"{client.pid}/tcp-client" in line, line
    assert out.stderr == ""

    # The server's blocked recv() got ECONNABORTED; the client, a reset.
    assert server.expect("Client gone:") == f"Client gone: 127.0.0.1:{cport} ({ABORTED})"
    assert client.expect("Server closed") == "Server closed the connection (reset)"
    assert client.wait() == 0
    left = [r for r in rows(port) if cport in (r["local_port"], r["remote_port"])]
    assert left == [], left


@pytest.mark.parametrize(
    ("bind", "connect_to", "typed"),
    [
        ("::1", "::1", "[::1]"),
        ("::", "127.0.0.1", "127.0.0.1"),
        ("::", "127.0.0.1", "[::ffff:127.0.0.1]"),
    ],
    ids=["ipv6", "dual-stack-as-ipv4", "dual-stack-as-mapped"],
)
def test_close_ipv6_and_a_dual_stack_socket_holding_ipv4(
    sockets: list[socket.socket], bind: str, connect_to: str, typed: str
) -> None:
    """A :: socket holding an IPv4 connection is listed as ::ffff:a.b.c.d: both spellings work."""
    needs_root()
    try:
        srv = listener(sockets, bind)
    except OSError:
        pytest.skip(f"no {bind} here")
    port = srv.getsockname()[1]
    cli = socket.socket(socket.AF_INET6 if ":" in connect_to else socket.AF_INET)
    sockets.append(cli)
    cli.connect((connect_to, port))
    conn, _ = srv.accept()
    sockets.append(conn)
    got: list[int | None] = []
    reader = threading.Thread(target=lambda: got.append(_recv_errno(conn)), daemon=True)
    reader.start()

    cport = cli.getsockname()[1]
    out = observatory("close", f"{typed}:{port}", f"{typed}:{cport}")
    assert out.returncode == 0, out.stderr
    assert one_line(out.stdout).startswith("Closed "), out.stdout
    reader.join(5)
    assert got == [errno.ECONNABORTED]
    with pytest.raises(ConnectionResetError):
        cli.recv(1)


def _recv_errno(sock: socket.socket) -> int | None:
    try:
        sock.recv(1)
    except OSError as exc:
        return exc.errno
    return None


def test_close_as_nobody_is_refused_and_touches_nothing(
    sockets: list[socket.socket],
    as_nobody: AsNobody,
) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    cli = socket.socket()
    sockets.append(cli)
    cli.connect(("127.0.0.1", port))
    conn, _ = srv.accept()
    sockets.append(conn)
    cport = cli.getsockname()[1]

    out = as_nobody("close", f"127.0.0.1:{port}", f"127.0.0.1:{cport}")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    line = one_line(out.stderr)
    assert line.startswith("observatory close: ") and "needs root" in line, line
    assert "nothing was touched" in line
    # Still connected, both ends: bytes still flow.
    cli.sendall(b"x")
    assert conn.recv(1) == b"x"
    state = {(r["local_port"], r["remote_port"]): r["state"] for r in rows(port)}
    assert state[(port, cport)] == "ESTABLISHED" and state[(cport, port)] == "ESTABLISHED"


@pytest.mark.parametrize(
    "bad",
    [
        "127.0.0.1",
        "localhost:80",
        "1.2.3.4:99999",
        "[::1]6000",
        "::1:6000",
        "0.0.0.0:*",
        "127.0.0.1:port",
        "",
    ],
)
def test_malformed_address_is_one_line_and_exit_2(bad: str) -> None:
    for args in ((bad, "127.0.0.1:6000"), ("127.0.0.1:6000", bad)):
        out = observatory("close", *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stdout == ""
        assert one_line(out.stderr).startswith("observatory close"), out.stderr


def test_a_pair_that_does_not_exist_is_refused_in_one_line(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    out = observatory("close", f"127.0.0.1:{port}", "127.0.0.1:1")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    line = one_line(out.stderr)
    assert f"no TCP connection 127.0.0.1:{port} -> 127.0.0.1:1" in line, line
    # A listener's own port: say that close ends connections only, and why.
    assert "listening socket" in line and "EINVAL" in line, line
    assert "nothing was touched" in line
    srv.settimeout(0)
    with pytest.raises(BlockingIOError):  # the listener is still there
        srv.accept()


def _sock(
    local: str,
    lport: int,
    remote: str | None,
    rport: int | None,
    state: str,
    pid: int | None = 4242,
    proto: str = "tcp",
) -> Socket:
    return Socket(
        proto,
        local,
        lport,
        remote,
        rport,
        state,
        pid=pid,
        process="tcp-client",
        user="root",
        owner="process" if pid else "kernel",
    )


def test_ends_given_the_wrong_way_round_suggest_the_other_order() -> None:
    # A connection to another machine: only this end is here, so its mirror is not.
    held = [_sock("10.0.0.5", 40000, "10.0.0.9", 22, "ESTABLISHED")]
    line = why_not(held, (ip_address("10.0.0.9"), 22), (ip_address("10.0.0.5"), 40000))
    assert "other way round" in line and "4242/tcp-client" in line
    assert "observatory close 10.0.0.5:40000 10.0.0.9:22" in line


def test_a_wrong_peer_names_the_peers_that_end_has() -> None:
    held = [
        _sock("::ffff:127.0.0.1", 6000, "::ffff:127.0.0.1", 5555, "ESTABLISHED", proto="tcp6"),
        _sock("::", 6000, None, None, "LISTEN", proto="tcp6"),
    ]
    line = why_not(held, (ip_address("127.0.0.1"), 6000), (ip_address("127.0.0.1"), 7))
    assert "127.0.0.1:6000 is connected to 127.0.0.1:5555" in line, line
    assert "[::]:6000 is the listening socket" in line and "kill 4242" in line, line
