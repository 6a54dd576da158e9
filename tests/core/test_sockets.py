"""The observation core against real sockets on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from app.core.diff import diff
from app.core.model import Snapshot, Socket
from app.core.sockets import DiagSource, ProcNetSource, parse_proc_net
from tests.conftest import REPO, AsNobody, connect, listener, listener_process, wait_for


@pytest.fixture(params=[DiagSource, ProcNetSource], ids=["sock_diag", "proc"])
def source_cls(request: pytest.FixtureRequest) -> type[ProcNetSource | DiagSource]:
    """Each test runs on both readers: they must tell the same truth."""
    return request.param  # type: ignore[no-any-return]


def find(snap: Snapshot, **want: object) -> list[Socket]:
    return [s for s in snap.sockets if all(getattr(s, k) == v for k, v in want.items())]


def poll_until(source: ProcNetSource | DiagSource, **want: object) -> Socket:
    found: list[Socket] = []

    def check() -> bool:
        found[:] = find(source.poll(), **want)
        return bool(found)

    wait_for(check)
    return found[0]


def test_parse_proc_net_line() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        "   0: 0100007F:1770 00000000:0000 0A 00000000:00000002 00:00000000 00000000"
        "  1000        0 4242 1 0000000000000000 100 0 0 10 0\n"
    )
    (raw,) = list(parse_proc_net(text, "tcp"))
    assert (raw.local_addr, raw.local_port) == ("127.0.0.1", 6000)
    assert raw.remote_addr is None and raw.remote_port is None
    assert raw.state == "LISTEN" and raw.uid == 1000 and raw.inode == 4242
    assert raw.recv_q == 2


def test_listener_and_connection_carry_our_pid(
    source_cls: type, sockets: list[socket.socket]
) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    snap = source_cls().poll()
    (listen,) = find(snap, local_port=port, state="LISTEN")
    assert listen.pid == os.getpid() and listen.owner == "process"
    assert listen.process and listen.cmdline and listen.user
    assert listen.remote_addr is None and listen.remote_port is None
    cport = cli.getsockname()[1]
    server_end = find(snap, local_port=port, remote_port=cport)
    client_end = find(snap, local_port=cport, remote_port=port)
    assert len(server_end) == 1 and len(client_end) == 1
    for end in server_end + client_end:
        assert end.state == "ESTABLISHED"
        assert end.pid == os.getpid() and end.owner == "process"


def test_backlog_connection_is_kernel_owned(source_cls: type, sockets: list[socket.socket]) -> None:
    srv = listener(sockets, backlog=1)
    port = srv.getsockname()[1]
    cli = connect(sockets, srv)  # never accepted
    cport = cli.getsockname()[1]
    source = source_cls()
    waiting = poll_until(source, local_port=port, remote_port=cport)
    assert waiting.state == "ESTABLISHED"
    assert waiting.owner == "kernel" and waiting.pid is None
    assert waiting.waiting_in_backlog and waiting.owner_label == "kernel: backlog"
    (listen,) = find(source.poll(), local_port=port, state="LISTEN")
    assert listen.recv_q == 1  # one connection waits to be accepted, as ss -ltn Recv-Q
    # accept() hands it to the process: same key, now owned by us.
    conn, _ = srv.accept()
    sockets.append(conn)
    accepted = poll_until(source, local_port=port, remote_port=cport, owner="process")
    assert accepted.pid == os.getpid()


def test_time_wait_is_kernel_owned(source_cls: type, sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    cport = cli.getsockname()[1]
    conn, _ = srv.accept()
    cli.close()  # the client closes first: the active closer ends in TIME_WAIT
    conn.recv(1)
    conn.close()
    tw = poll_until(source_cls(), local_port=cport, remote_port=port, state="TIME_WAIT")
    assert tw.owner == "kernel" and tw.pid is None and tw.inode == 0
    assert tw.owner_label == "kernel: time-wait"


def test_ipv6_loopback(source_cls: type, sockets: list[socket.socket]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        srv = listener(sockets, "::1")
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    port = srv.getsockname()[1]
    connect(sockets, srv)
    snap = source_cls().poll()
    (listen,) = find(snap, local_port=port, state="LISTEN")
    assert listen.proto == "tcp6" and listen.local_addr == "::1"
    assert listen.local == f"[::1]:{port}"
    peers = find(snap, remote_port=port, state="ESTABLISHED")
    assert peers and peers[0].remote_addr == "::1"


def test_udp_socket_has_no_tcp_state(source_cls: type, sockets: list[socket.socket]) -> None:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(u)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    (row,) = find(source_cls().poll(), proto="udp", local_port=port)
    assert row.state == "NONE" and row.remote_port is None
    assert row.pid == os.getpid()


def test_diff_reports_open_close_and_state_change(
    source_cls: type, sockets: list[socket.socket]
) -> None:
    source = source_cls()
    before = source.poll()
    srv = listener(sockets)
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    cport = cli.getsockname()[1]
    conn, _ = srv.accept()
    opened = source.poll()
    events = diff(before, opened)
    kinds = {(e.kind, e.socket.local_port) for e in events}
    assert ("listener-opened", port) in kinds
    assert ("connection-opened", cport) in kinds
    assert ("connection-opened", port) in kinds
    assert all(e.at == opened.taken_at for e in events)
    client_key = next(e.key for e in events if e.socket.local_port == cport)

    cli.close()
    conn.recv(1)
    conn.close()
    srv.close()
    time.sleep(0.1)
    after = source.poll()
    events = diff(opened, after)
    by_key = {e.key: e for e in events}
    change = by_key[client_key]  # same key: the connection changed state, not a new one
    assert change.kind == "state-changed"
    assert change.old_state == "ESTABLISHED" and change.new_state == "TIME_WAIT"
    assert any(e.kind == "listener-closed" and e.socket.local_port == port for e in events)
    assert any(
        e.kind == "connection-closed"
        and e.socket.local_port == port
        and e.socket.remote_port == cport
        for e in events
    )


def test_owner_cache_follows_new_sockets_and_exits(
    source_cls: type, sockets: list[socket.socket]
) -> None:
    """The inode -> pid map is kept between polls but never goes stale."""
    source = source_cls(rescan_every=3600)
    source.poll()
    walks = source.walks
    source.poll()
    assert source.walks == walks  # nothing new: no /proc walk
    holder, port = listener_process()
    try:
        row = poll_until(source, local_port=port, state="LISTEN")
        assert row.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: not find(source.poll(), local_port=port, state="LISTEN"))


def test_socket_of_another_user_as_root(
    source_cls: type, sockets: list[socket.socket], as_nobody: AsNobody
) -> None:
    """Root sees nobody's listener with its pid; nobody sees root's as hidden."""
    holder, port = listener_process(as_nobody.python, user="nobody", cwd="/")
    try:
        row = poll_until(source_cls(), local_port=port, state="LISTEN")
        assert row.owner == "process" and row.pid == holder.pid and row.user == "nobody"
    finally:
        holder.kill()
        holder.wait()

    ours = listener(sockets)
    port = ours.getsockname()[1]
    out = as_nobody("snapshot", "--json", "--listen", "--port", str(port))
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["owner"] == "hidden" and row["pid"] is None
    assert row["user"] == "root" and row["process"] is None


def test_core_never_imports_textual_or_rich() -> None:
    modules = sorted(p.stem for p in (REPO / "app" / "core").glob("*.py") if p.stem != "__init__")
    assert modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('app.core.' + m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
