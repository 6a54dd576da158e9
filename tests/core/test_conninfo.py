"""The words for one connection's counters, on real sockets and on a sample."""

from __future__ import annotations

import socket

from app.core.conninfo import RateMeter, describe, human_bytes
from app.core.model import Socket
from app.core.sockets import DiagSource, ProcNetSource
from tests.conftest import connect, listener, wait_for


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 4, 999, 1000, 1500, 2_000_000)] == [
        "0 B",
        "4 B",
        "999 B",
        "1.0 kB",
        "1.5 kB",
        "2.0 MB",
    ]


def _ends(source: DiagSource, cli: socket.socket, srv: socket.socket) -> tuple[Socket, Socket]:
    snap = source.poll()
    cport, sport = cli.getsockname()[1], srv.getsockname()[1]
    (client,) = [s for s in snap.sockets if s.local_port == cport and s.remote_port == sport]
    (server,) = [s for s in snap.sockets if s.local_port == sport and s.remote_port == cport]
    return client, server


def test_the_lecture_hola_is_four_bytes_at_the_server_end(sockets: list[socket.socket]) -> None:
    srv = listener(sockets, backlog=5)
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    cli.sendall(b"hola")
    conn.recv(16)
    source = DiagSource()
    client, server = wait_for(
        lambda: (e := _ends(source, cli, srv))[0].bytes_sent == 4 and e, what="4 bytes acked"
    )
    assert "received 4 B" in describe(server)
    assert "sent 4 B" in describe(client) and "rtt " in describe(client)
    (listening,) = [s for s in source.poll().listening() if s.local_port == srv.getsockname()[1]]
    assert describe(listening).startswith("0 of 5 waiting")
    # The fallback does not know: it says so, it does not print zeros.
    proc = ProcNetSource().poll().by_key[server.key]
    assert "need the kernel's sock_diag" in describe(proc)


def test_rate_between_two_polls(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    source = DiagSource()
    meter = RateMeter()
    client, _ = _ends(source, cli, srv)
    assert meter.observe(client, 100.0) is None  # a first look has no rate
    cli.sendall(b"x" * 50_000)
    got = 0
    while got < 50_000:
        got += len(conn.recv(65536))
    client = wait_for(lambda: (c := _ends(source, cli, srv)[0]).bytes_sent == 50_000 and c)
    rate = meter.observe(client, 102.0)
    assert rate is not None and rate.sent == 25_000 and rate.received == 0
    assert "(25.0 kB/s)" in describe(client, rate)
    assert meter.observe(client, 102.0) == rate  # the same poll again: the same rate
    # The clock went back an hour: no rate from the jump, and rates again at the next poll.
    assert meter.observe(client, 102.0 - 3600) is None
    cli.sendall(b"y" * 10_000)
    got = 0
    while got < 10_000:
        got += len(conn.recv(65536))
    client = wait_for(lambda: (c := _ends(source, cli, srv)[0]).bytes_sent == 60_000 and c)
    again = meter.observe(client, 104.0 - 3600)
    assert again is not None and again.sent == 5_000


def test_the_peers_fin_is_not_counted_as_a_byte(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    cli.sendall(b"hola")
    assert conn.recv(16) == b"hola"
    cli.shutdown(socket.SHUT_WR)  # the client's FIN: the server end goes to CLOSE_WAIT
    assert conn.recv(16) == b""
    source = DiagSource()
    server = wait_for(lambda: (s := _ends(source, cli, srv)[1]).state == "CLOSE_WAIT" and s)
    assert server.bytes_received == 4
