"""The netlink sock_diag reader against real loopback sockets, /proc/net and ss."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from app.core import diag
from app.core.model import Socket
from app.core.sockets import DiagSource, ProcNetSource, default_source
from tests.conftest import connect, listener, observatory, wait_for


def known_set(sockets: list[socket.socket]) -> set[int]:
    """LISTEN v4 and v6, an accepted pair, a backlog connection, a TIME_WAIT, UDP v4 and v6.

    Returns the ports that identify them (each appears at one end of each socket).
    """
    ports: set[int] = set()
    srv = listener(sockets)
    ports.add(srv.getsockname()[1])
    connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    waiting = listener(sockets, backlog=1)
    ports.add(waiting.getsockname()[1])
    connect(sockets, waiting)  # never accepted: the kernel holds its server end
    tw = listener(sockets)
    ports.add(tw.getsockname()[1])
    c2 = socket.create_connection(tw.getsockname())
    s2, _ = tw.accept()
    c2.close()  # the client closes first: its end goes to TIME_WAIT
    s2.recv(1)
    s2.close()
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        u = socket.socket(family, socket.SOCK_DGRAM)
        sockets.append(u)
        u.bind((addr, 0))
        ports.add(u.getsockname()[1])
    v6 = listener(sockets, "::1")
    ports.add(v6.getsockname()[1])
    connect(sockets, v6)
    bound = socket.socket()  # bound, never listening nor connected: neither /proc nor ss lists it
    sockets.append(bound)
    bound.bind(("127.0.0.1", 0))
    ports.add(bound.getsockname()[1])
    time.sleep(0.05)
    return ports


def ours(sockets: tuple[Socket, ...], ports: set[int]) -> dict[str, Socket]:
    return {s.key: s for s in sockets if s.local_port in ports or s.remote_port in ports}


def test_sock_diag_equals_proc_net_on_the_same_sockets(sockets: list[socket.socket]) -> None:
    ports = known_set(sockets)
    from_diag = ours(DiagSource().poll().sockets, ports)
    from_proc = ours(ProcNetSource().poll().sockets, ports)
    assert set(from_diag) == set(from_proc)
    states = {s.state for s in from_diag.values()}
    assert {"LISTEN", "ESTABLISHED", "TIME_WAIT", "NONE"} <= states
    assert {s.owner for s in from_diag.values()} == {"process", "kernel"}
    for key, mine in from_diag.items():
        theirs = from_proc[key]
        for name in (
            "proto",
            "state",
            "pid",
            "process",
            "owner",
            "user",
            "uid",
            "inode",
            "recv_q",
            "service",
            "cmdline",
        ):
            assert getattr(mine, name) == getattr(theirs, name), (key, name)
        if mine.state != "LISTEN":  # /proc prints 0 for a listener; sock_diag has no other
            assert mine.send_q == theirs.send_q, key


def test_backlog_is_the_listen_argument_and_ss_send_q(sockets: list[socket.socket]) -> None:
    srv = listener(sockets, backlog=7)
    port = srv.getsockname()[1]
    connect(sockets, srv)
    time.sleep(0.05)
    (row,) = [s for s in DiagSource().poll().listening() if s.local_port == port]
    assert row.backlog == 7 and row.recv_q == 1
    assert row.rtt_ms is None and row.bytes_sent is None  # a listener has no connection
    assert ProcNetSource().poll().by_key[row.key].backlog is None  # /proc does not know it
    if shutil.which("ss"):
        ss = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert ss[1:3] == ["1", "7"]  # Recv-Q waiting, Send-Q the limit
        text = observatory("snapshot", "--listen", "--port", str(port)).stdout
        (line,) = [ln for ln in text.splitlines() if f":{port} " in ln]
        assert line.split()[1:3] == ["1", "7"]


def test_byte_counters_after_a_known_amount(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    cli.sendall(b"hola")  # the lecture's client sends its message
    assert conn.recv(16) == b"hola"
    conn.sendall(b"x" * 100_000)
    got = 0
    while got < 100_000:
        got += len(cli.recv(65536))
    source = DiagSource()
    cport, sport = cli.getsockname()[1], srv.getsockname()[1]

    def ends() -> tuple[Socket, Socket] | None:
        snap = source.poll()
        client = [s for s in snap.sockets if s.local_port == cport and s.remote_port == sport]
        server = [s for s in snap.sockets if s.local_port == sport and s.remote_port == cport]
        if client and server and client[0].bytes_sent == 4 and server[0].bytes_sent == 100_000:
            return client[0], server[0]
        return None

    client, server = wait_for(ends, what="byte counters of both ends")
    assert server.bytes_received == 4 and client.bytes_received == 100_000
    assert client.rtt_ms is not None and 0 < client.rtt_ms < 1000
    assert client.retrans == 0 and client.cwnd and client.cwnd > 0


def test_fields_are_null_where_the_kernel_gives_none(sockets: list[socket.socket]) -> None:
    ports = known_set(sockets)
    for s in ours(DiagSource().poll().sockets, ports).values():
        if s.state in ("TIME_WAIT", "NONE"):
            assert (s.rtt_ms, s.retrans, s.bytes_sent, s.bytes_received, s.backlog) == (
                None,
                None,
                None,
                None,
                None,
            ), s.key
        elif s.state == "ESTABLISHED":
            assert s.bytes_sent is not None and s.backlog is None, s.key


def test_snapshot_json_has_the_new_keys(sockets: list[socket.socket]) -> None:
    srv = listener(sockets, backlog=3)
    port = srv.getsockname()[1]
    out = observatory("snapshot", "--json", "--listen", "--port", str(port))
    assert out.returncode == 0, out.stderr
    # (--port matches either end: on a busy machine a peer may use the same number)
    (row,) = [r for r in json.loads(out.stdout) if r["local_port"] == port]
    assert row["backlog"] == 3
    for key in ("rtt_ms", "retrans", "bytes_sent", "bytes_received"):
        assert key in row and row[key] is None
    proc = observatory(
        "snapshot",
        "--json",
        "--listen",
        "--port",
        str(port),
        env={**os.environ, "OBSERVATORY_SOCKETS": "proc"},
    )
    (row,) = [r for r in json.loads(proc.stdout) if r["local_port"] == port]
    assert row["backlog"] is None  # the fallback has no way to know it


def test_hidden_as_nobody_through_sock_diag(sockets: list[socket.socket], as_nobody) -> None:  # type: ignore[no-untyped-def]
    """Unprivileged, sock_diag lists root's sockets too, and says they are hidden."""
    srv = listener(sockets, backlog=4)
    port = srv.getsockname()[1]
    code = (
        "import json; from app.core.sockets import DiagSource\n"
        f"rows = [s for s in DiagSource().poll().sockets if s.local_port == {port}"
        " and s.state == 'LISTEN']\n"
        "print(json.dumps([s.to_json() for s in rows]))\n"
    )
    out = as_nobody("-c", code)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["owner"] == "hidden" and row["user"] == "root" and row["pid"] is None
    assert row["backlog"] == 4


def test_default_source_is_sock_diag_and_falls_back() -> None:
    assert isinstance(default_source(), DiagSource)
    os.environ["OBSERVATORY_SOCKETS"] = "proc"
    try:
        assert isinstance(default_source(), ProcNetSource)
    finally:
        del os.environ["OBSERVATORY_SOCKETS"]


def test_unchanged_sockets_are_reused_between_polls(sockets: list[socket.socket]) -> None:
    ports = known_set(sockets)
    source = DiagSource()
    first = ours(source.poll().sockets, ports)
    second = ours(source.poll().sockets, ports)
    listeners = [k for k, s in first.items() if s.state == "LISTEN"]
    assert listeners and all(second[k] is first[k] for k in listeners)


def test_a_refused_dump_is_said_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    # A protocol sock_diag has no handler for (250): the kernel ends the dump with -ENOENT.
    monkeypatch.setitem(diag.PROTO_REQUESTS, "proto250", (socket.AF_INET, 250))
    with diag.open_socket() as sock, pytest.raises(diag.DiagUnavailable, match="refused to list"):
        diag.dump_keys(sock, "proto250", set(), [], {}, set())
