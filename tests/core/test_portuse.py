"""portuse.bind_conflict: the truth about a port in use, checked against real bind() calls."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from app.core.model import Socket
from app.core.portuse import bind_conflict
from app.core.sockets import default_source
from tests.conftest import observatory, wait_for

pytestmark = pytest.mark.timeout(60)


def sockets_now() -> list[Socket]:
    return list(default_source().poll().sockets)


def bind_errno(address: str, port: int, reuse: bool = False) -> int:
    """0 when bind()+listen() works now, else the errno (the socket is closed again)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            s.listen(1)
        except OSError as exc:
            return exc.errno or -1
    return 0


def test_a_killed_servers_fin_wait2_is_named_with_its_peer(
    killed_server: tuple[int, socket.socket],
) -> None:
    port, client = killed_server
    client_port = client.getsockname()[1]
    assert bind_errno("0.0.0.0", port) == errno.EADDRINUSE  # the lecture's server would fail
    words = bind_conflict(sockets_now(), "0.0.0.0", port, reuseaddr=False)
    assert words is not None
    assert words.startswith(
        f'bind() of 0.0.0.0:{port} fails with "Address already in use" (the new socket has '
        f"no SO_REUSEADDR): 127.0.0.1:{port} → 127.0.0.1:"
    )
    assert "(FIN_WAIT2, held by the kernel: no process)" in words
    assert "waits for the peer's FIN" in words
    # The peer, our client, in CLOSE_WAIT:
    assert f"the peer 127.0.0.1:{client_port} (held by {os.getpid()}/" in words
    assert "has not closed its end yet" in words
    assert "about 60 s" in words
    assert "both set SO_REUSEADDR before bind()" in words
    assert "wait about a minute" in words and "pick another port" in words
    assert "another program is listening" not in words
    assert f"`observatory snapshot --all --port {port}`" in words


def test_the_suggested_snapshot_prints_the_holder(
    killed_server: tuple[int, socket.socket],
) -> None:
    port, _client = killed_server
    done = observatory("snapshot", "--all", "--port", str(port))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert any(f"127.0.0.1:{port}" == r[3] and "FIN_WAIT2" in r for r in rows if len(r) > 5), (
        done.stdout
    )
    assert "(no sockets match)" not in done.stdout


def test_reuseaddr_on_the_new_socket_is_only_a_may(
    killed_server: tuple[int, socket.socket],
) -> None:
    port, _client = killed_server
    # The killed server had no SO_REUSEADDR: ours alone does not help.
    assert bind_errno("0.0.0.0", port, reuse=True) == errno.EADDRINUSE
    words = bind_conflict(sockets_now(), "0.0.0.0", port, reuseaddr=True)
    assert words is not None
    assert words.startswith(f'bind() of 0.0.0.0:{port} may fail with "Address already in use"')
    assert "the kernel does not report whether it did" in words
    assert "set SO_REUSEADDR before bind() (in the old" not in words  # it is set already


def test_time_wait_made_by_a_close_first(sockets: list[socket.socket]) -> None:
    server = socket.socket()
    sockets.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    sockets.append(client)
    accepted, _ = server.accept()
    server.close()
    accepted.close()  # the server's end closes first ...
    time.sleep(0.05)
    client.close()  # ... so it is the one left in TIME_WAIT

    def time_wait() -> list[Socket]:
        return [s for s in sockets_now() if s.local_port == port and s.state == "TIME_WAIT"]

    wait_for(time_wait, what="TIME_WAIT on the server's port")
    assert bind_errno("127.0.0.1", port) == errno.EADDRINUSE
    words = bind_conflict(sockets_now(), "127.0.0.1", port)
    assert words is not None
    assert "(TIME_WAIT, held by the kernel: no process)" in words
    assert "about 60 s after the close so that late packets of the old connection die" in words
    assert "unless both the old socket and the new one set SO_REUSEADDR" in words
    # Another loopback address does not overlap a connection's 127.0.0.1:
    assert bind_errno("127.0.0.2", port) == 0
    assert bind_conflict(sockets_now(), "127.0.0.2", port) is None


def test_a_listener_of_another_process_is_named(sockets: list[socket.socket]) -> None:
    holder = socket.socket()
    sockets.append(holder)
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    for address in ("0.0.0.0", "127.0.0.1", "127.0.0.2", "::"):
        assert bind_errno(address, port, reuse=True) == errno.EADDRINUSE
        words = bind_conflict(sockets_now(), address, port, reuseaddr=True)
        assert words is not None, address
        assert f"0.0.0.0:{port} (LISTEN, held by {os.getpid()}/" in words
        assert "is listening there" in words and "SO_REUSEADDR does not change that" in words
    assert bind_errno("::1", port) == 0
    assert bind_conflict(sockets_now(), "::1", port) is None


def test_close_wait_held_by_a_process(sockets: list[socket.socket]) -> None:
    server = socket.socket()
    sockets.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    sockets.append(accepted)
    client.close()
    server.close()
    wait_for(
        lambda: any(s.local_port == port and s.state == "CLOSE_WAIT" for s in sockets_now()),
        what="CLOSE_WAIT",
    )
    assert bind_errno("127.0.0.1", port) == errno.EADDRINUSE
    words = bind_conflict(sockets_now(), "127.0.0.1", port)
    assert words is not None
    assert f"(CLOSE_WAIT, held by {os.getpid()}/" in words
    assert "has not called close() yet" in words
    assert f"stop pid {os.getpid()} or close that socket" in words


def test_a_fin_wait2_a_process_still_holds_is_not_said_to_time_out(
    sockets: list[socket.socket],
) -> None:
    """shutdown(SHUT_WR) sends the FIN but keeps the socket: no timer ends that FIN_WAIT2."""
    server = socket.socket()
    sockets.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    sockets.append(client)
    accepted, _ = server.accept()
    sockets.append(accepted)
    server.close()
    accepted.shutdown(socket.SHUT_WR)
    wait_for(
        lambda: any(
            s.local_port == port and s.state == "FIN_WAIT2" and s.owner == "process"
            for s in sockets_now()
        ),
        what="a FIN_WAIT2 our process holds",
    )
    assert bind_errno("127.0.0.1", port) == errno.EADDRINUSE
    words = bind_conflict(sockets_now(), "127.0.0.1", port)
    assert words is not None
    assert "shutdown()" in words and "still holds" in words, words
    assert "wait about a minute" not in words and "closed it, ended or was killed" not in words
    assert f"stop pid {os.getpid()} or close that socket" in words


def test_nothing_holds_a_free_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert bind_conflict(sockets_now(), "0.0.0.0", port) is None
    assert bind_conflict(sockets_now(), "not an address", port) is None
    assert bind_conflict(sockets_now(), "0.0.0.0", 0) is None


def test_udp(sockets: list[socket.socket]) -> None:
    for _ in range(50):  # a UDP port no TCP socket of this machine uses (other tests' ones)
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sockets.append(holder)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        if not any(s.local_port == port and s.is_tcp for s in sockets_now()):
            break
    assert bind_conflict(sockets_now(), "0.0.0.0", port) is None  # TCP: another protocol
    words = bind_conflict(sockets_now(), "0.0.0.0", port, proto="udp", reuseaddr=False)
    assert words is not None
    assert words.startswith(f"bind() of 0.0.0.0:{port} fails")
    assert f"udp 127.0.0.1:{port} (UDP, held by {os.getpid()}/" in words
    assert f"`observatory snapshot --all --udp --port {port}`" in words


# --- addresses, from the table measured on Linux (no sockets needed) -------------------


def sock(local: str, state: str, proto: str = "tcp", remote: str | None = "127.0.0.1") -> Socket:
    return Socket(
        proto=proto,
        local_addr=local,
        local_port=6000,
        remote_addr=None if state == "LISTEN" else remote,
        remote_port=None if state == "LISTEN" else 40000,
        state=state,
        owner="kernel",
        pid=None,
    )


@pytest.mark.parametrize(
    ("holder", "new", "v6only", "expected"),
    [
        (sock("::", "LISTEN", "tcp6"), "0.0.0.0", False, "may fail"),  # dual-stack unseen
        (sock("::", "LISTEN", "tcp6"), "::1", False, "fails"),
        (sock("::1", "LISTEN", "tcp6"), "0.0.0.0", False, None),
        (sock("127.0.0.1", "LISTEN"), "::", False, "fails"),
        (sock("127.0.0.1", "LISTEN"), "::", True, None),
        (sock("127.0.0.1", "LISTEN"), "::1", False, None),
        (sock("127.0.0.1", "LISTEN"), "::ffff:127.0.0.1", False, "fails"),
        (sock("::ffff:127.0.0.1", "FIN_WAIT2", "tcp6"), "127.0.0.1", False, "fails"),
        (sock("::ffff:127.0.0.1", "FIN_WAIT2", "tcp6"), "::1", False, None),
        (sock("::1", "FIN_WAIT2", "tcp6", "::1"), "0.0.0.0", False, "may fail"),
        (sock("::1", "FIN_WAIT2", "tcp6", "::1"), "127.0.0.1", False, None),
        (sock("127.0.0.1", "TIME_WAIT"), "0.0.0.0", False, "fails"),
        (sock("127.0.0.1", "TIME_WAIT"), "127.0.0.2", False, None),
    ],
)
def test_which_addresses_overlap(
    holder: Socket, new: str, v6only: bool, expected: str | None
) -> None:
    words = bind_conflict([holder], new, 6000, reuseaddr=False, v6only=v6only)
    if expected is None:
        assert words is None
    else:
        assert words is not None
        assert words.split(" with ")[0].endswith(f":6000 {expected}"), words
