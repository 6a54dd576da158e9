"""The tracepoint reader: lines captured on these machines, then the real kernel as root."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core import tracepoint
from app.core.tracepoint import (
    StateTracer,
    Transition,
    available,
    parse_line,
    remove_stale_instances,
)
from app.core.tracepoint_parse import lost_events
from tests.conftest import REPO, connect, listener, wait_for

# Captured from trace_pipe of an instance (clock mono) on Linux 6.18 while
# python3 made loopback connections; wrapped here only to fit the line length.
FIELDS_V4 = (
    "family=AF_INET protocol=IPPROTO_TCP sport={sport} dport={dport} saddr=127.0.0.1"
    " daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1"
)
# A thread (tid 3998) of process 3997 calls connect(): record-tgid gives the process.
THREAD_CONNECT = (
    "         python3-3998    (   3997) [001] .....   292.940168: inet_sock_set_state: "
    + FIELDS_V4.format(sport=0, dport=40207)
    + " oldstate=TCP_CLOSE newstate=TCP_SYN_SENT"
)
# The kernel in softirq (flags ..s2.): the task shown merely happened to be running.
SOFTIRQ_SYN_RECV = (
    "         python3-3997    (   3997) [001] .Ns2.   292.486959: inet_sock_set_state: "
    + FIELDS_V4.format(sport=40207, dport=47838)
    + " oldstate=TCP_LISTEN newstate=TCP_SYN_RECV"
)
# Read right after the event: tracefs has not cached this task's comm and tgid yet.
UNCACHED_LISTEN = (
    "           <...>-3639    (-------) [001] .....   283.416078: inet_sock_set_state:"
    " family=AF_INET protocol=IPPROTO_TCP sport=52767 dport=0 saddr=127.0.0.1"
    " daddr=0.0.0.0 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:0.0.0.0"
    " oldstate=TCP_CLOSE newstate=TCP_LISTEN"
)
# Without the record-tgid option (no "(tgid)" column).
NO_TGID_FIN_WAIT1 = (
    "         python3-2676    [000] .....   174.239048: inet_sock_set_state: "
    + FIELDS_V4.format(sport=47838, dport=40207)
    + " oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1"
)
# An AF_INET6 socket: its saddr/daddr are meaningless (127.0.0.6), saddrv6 counts.
V6_SOFTIRQ_ESTABLISHED = (
    "         python3-2676    [000] ..s2.   174.239712: inet_sock_set_state:"
    " family=AF_INET6 protocol=IPPROTO_TCP sport=41917 dport=42652 saddr=127.0.0.6"
    " daddr=127.0.0.6 saddrv6=::1 daddrv6=::1 oldstate=TCP_SYN_RECV newstate=TCP_ESTABLISHED"
)
# An AF_INET6 listener on :: accepting an IPv4 client: v4-mapped addresses.
V6_MAPPED_FIN_WAIT2_CLOSE = (
    "         python3-2676    [000] ..s2.   174.261018: inet_sock_set_state:"
    " family=AF_INET6 protocol=IPPROTO_TCP sport=48131 dport=60098 saddr=127.0.0.1"
    " daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1"
    " oldstate=TCP_FIN_WAIT2 newstate=TCP_CLOSE"
)


def test_parse_connect_of_a_thread() -> None:
    t = parse_line(THREAD_CONNECT, 1000.0)
    assert t == Transition(
        at=pytest.approx(1292.940168),  # type: ignore[arg-type]  # compares equal to a float
        proto="tcp",
        local_addr="127.0.0.1",
        local_port=0,
        remote_addr="127.0.0.1",
        remote_port=40207,
        old_state="CLOSE",
        new_state="SYN_SENT",
        pid=3997,
        process="python3",
    )


def test_parse_softirq_has_no_owner() -> None:
    t = parse_line(SOFTIRQ_SYN_RECV, 0.0)
    assert t is not None
    assert (t.old_state, t.new_state, t.local_port, t.remote_port) == (
        "LISTEN",
        "SYN_RECV",
        40207,
        47838,
    )
    assert t.pid is None and t.process is None


def test_parse_uncached_comm_and_listener() -> None:
    t = parse_line(UNCACHED_LISTEN, 0.0)
    assert t is not None
    assert (t.pid, t.process) == (3639, None)  # read() asks /proc for the rest
    assert (t.local_port, t.remote_addr, t.remote_port) == (52767, None, None)
    assert (t.old_state, t.new_state) == ("CLOSE", "LISTEN")


def test_parse_without_tgid_column() -> None:
    t = parse_line(NO_TGID_FIN_WAIT1, 0.0)
    assert t is not None
    assert (t.pid, t.process, t.new_state, t.at) == (2676, "python3", "FIN_WAIT1", 174.239048)


def test_parse_ipv6() -> None:
    t = parse_line(V6_SOFTIRQ_ESTABLISHED, 0.0)
    assert t is not None
    assert (t.proto, t.local_addr, t.local_port, t.remote_addr, t.remote_port) == (
        "tcp6",
        "::1",
        41917,
        "::1",
        42652,
    )
    assert t.pid is None
    mapped = parse_line(V6_MAPPED_FIN_WAIT2_CLOSE, 0.0)
    assert mapped is not None
    assert (mapped.proto, mapped.local_addr, mapped.remote_addr) == (
        "tcp6",
        "::ffff:127.0.0.1",
        "::ffff:127.0.0.1",
    )
    assert (mapped.old_state, mapped.new_state) == ("FIN_WAIT2", "CLOSE")  # into TIME_WAIT


def test_parse_other_lines() -> None:
    new_syn_recv = THREAD_CONNECT.replace("TCP_SYN_SENT", "TCP_NEW_SYN_RECV")
    assert parse_line(new_syn_recv, 0.0).new_state == "SYN_RECV"  # type: ignore[union-attr]
    mptcp = THREAD_CONNECT.replace("IPPROTO_TCP", "IPPROTO_MPTCP")
    for line in ("", "# tracer: nop", "CPU:1 [LOST 12 EVENTS]", mptcp, THREAD_CONNECT[:90]):
        assert parse_line(line, 0.0) is None
    assert lost_events("CPU:1 [LOST 12 EVENTS]") == 12


# --------------------------------------------------------------------------- real kernel

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the tracepoint needs root")
INSTANCES = Path(tracepoint.TRACEFS) / "instances"


def tracefs_mounted() -> bool:
    return tracepoint._tracefs_mount() is not None


@pytest.fixture
def tracefs() -> Iterator[Path]:
    """tracefs mounted while the test looks at instances (they outlive an unmount)."""
    mounted_here = not tracefs_mounted()
    if mounted_here:
        subprocess.run(["mount", "-t", "tracefs", "nodev", tracepoint.TRACEFS], check=True)
    yield INSTANCES
    if mounted_here and not any(INSTANCES.iterdir()):
        subprocess.run(["umount", tracepoint.TRACEFS], check=False)


def ours(root: Path, pid: int) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(f"observatory-{pid}")]


@needs_root
def test_close_removes_instance_and_restores_mount() -> None:
    """First in the file: on these machines tracefs is not mounted before it."""
    before = tracefs_mounted()
    tracer = StateTracer()
    tracer.start()
    assert tracer.instance is not None and os.path.isdir(tracer.instance)
    assert tracefs_mounted()
    tracer.close()
    tracer.close()  # idempotent
    assert tracer.instance is None
    assert tracefs_mounted() == before
    assert tracer.read(1.0) == []  # closed: at once, nothing
    with pytest.raises(ValueError):
        tracer.fileno()


@needs_root
def test_closed_instance_is_gone(tracefs: Path) -> None:
    with StateTracer() as tracer:
        assert tracer.fileno() >= 0
        assert ours(tracefs, os.getpid()) == [os.path.basename(tracer.instance or "")]
    assert ours(tracefs, os.getpid()) == []


@needs_root
@pytest.mark.parametrize(("addr", "proto"), [("127.0.0.1", "tcp"), ("::1", "tcp6")])
def test_every_transition_of_short_connections(
    sockets: list[socket.socket], addr: str, proto: str
) -> None:
    server = listener(sockets, addr)
    port = server.getsockname()[1]
    other = listener(sockets, addr)  # not traced: the filter keeps it out
    began = time.time()
    with StateTracer([port]) as tracer:
        clients = []
        for _ in range(5):
            client = connect(sockets, server)
            conn, _ = server.accept()
            sockets.append(conn)
            client.sendall(b"hello")
            time.sleep(0.02)
            clients.append(client.getsockname()[1])
            client.close()  # the client closes first: FIN_WAIT1 is its
            conn.close()
        other_client = connect(sockets, other)
        other_client.close()

        seen: list[Transition] = []

        def complete() -> bool:
            seen.extend(tracer.read(0.05))
            return all(
                _has(seen, c, "SYN_SENT", "ESTABLISHED") and _has(seen, c, None, "FIN_WAIT1")
                for c in clients
            )

        wait_for(complete, timeout=3, what=f"every client's transitions in {seen}")
    me = os.getpid()
    assert {t.proto for t in seen} == {proto}
    assert all(port in (t.local_port, t.remote_port) for t in seen)
    assert all(began - 1 < t.at < time.time() + 1 for t in seen)
    connects = [t for t in seen if (t.old_state, t.new_state) == ("CLOSE", "SYN_SENT")]
    assert len(connects) == 5
    for t in connects:  # connect() itself: our process, port not chosen yet
        assert (t.pid, t.local_port, t.remote_port, t.remote_addr) == (me, 0, port, addr)
        assert t.process
    for c in clients:
        (established,) = [t for t in seen if _is(t, c, "SYN_SENT", "ESTABLISHED")]
        assert established.local_addr == addr and established.remote_port == port
        # On loopback the SYN-ACK is handled when connect() releases the socket: ours.
        # Were it handled in softirq, the owner would be unknown, never someone else.
        assert established.pid in (me, None)
        (fin,) = [t for t in seen if _is(t, c, None, "FIN_WAIT1")]
        assert fin.pid == me
    # The server side of the handshake is the kernel's (softirq): no owner.
    accepted = [t for t in seen if (t.old_state, t.new_state) == ("LISTEN", "SYN_RECV")]
    assert accepted and all(t.local_port == port and t.pid is None for t in accepted)


def _is(t: Transition, local_port: int, old: str | None, new: str) -> bool:
    return t.local_port == local_port and t.new_state == new and old in (None, t.old_state)


def _has(seen: list[Transition], local_port: int, old: str | None, new: str) -> bool:
    return any(_is(t, local_port, old, new) for t in seen)


CHILD = """
import signal, sys, time
from app.core.tracepoint import StateTracer
tracer = StateTracer([{port}])
def stop(signum, frame):
    tracer.close()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
tracer.start()
print(tracer.instance, flush=True)
time.sleep(30)
"""


def _child(port: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(port=port)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    instance = proc.stdout.readline().strip()
    assert instance.startswith(str(INSTANCES)), instance
    return proc, instance


@needs_root
def test_sigterm_leaves_no_instance(tracefs: Path) -> None:
    proc, instance = _child(7)
    try:
        assert os.path.isdir(instance)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not os.path.exists(instance)
    assert ours(tracefs, proc.pid) == []


@needs_root
def test_sigkill_leaves_instance_that_start_removes(tracefs: Path) -> None:
    proc, instance = _child(7)
    proc.kill()
    proc.wait()
    assert os.path.isdir(instance)  # SIGKILL: no handler ran
    assert remove_stale_instances() == [instance]
    assert not os.path.exists(instance)
    assert remove_stale_instances() == []


@needs_root
def test_start_removes_stale_instances(tracefs: Path) -> None:
    proc, instance = _child(7)
    proc.kill()
    proc.wait()
    with StateTracer() as tracer:
        assert tracer.stale_removed == [instance]
    assert not os.path.exists(instance)


@needs_root
def test_available_as_root() -> None:
    assert available() is None


def test_unprivileged_says_why_in_words(
    as_nobody: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    code = (
        "from app.core.tracepoint import StateTracer, TraceUnavailable, available\n"
        "print(available())\n"
        "try:\n"
        "    StateTracer().start()\n"
        "except TraceUnavailable as exc:\n"
        "    print(exc)\n"
    )
    out = as_nobody("-c", code)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    said = out.stdout.splitlines()
    assert said == [tracepoint.NEEDS_ROOT, tracepoint.NEEDS_ROOT]
    assert "root" in said[0] and "sock:inet_sock_set_state" in said[0]


@needs_root
def test_a_threads_connect_belongs_to_its_process(sockets: list[socket.socket]) -> None:
    """The line shows the thread's id; the transition gives the process's pid."""
    server = listener(sockets)
    port = server.getsockname()[1]
    with StateTracer([port]) as tracer:
        worker = threading.Thread(target=connect, args=(sockets, server))
        worker.start()
        worker.join()
        assert worker.native_id != os.getpid()
        seen: list[Transition] = []

        def connected() -> list[Transition]:
            seen.extend(tracer.read(0.05))
            return [t for t in seen if t.new_state == "SYN_SENT"]

        (t,) = wait_for(connected, timeout=3, what="the thread's connect()")
    assert t.pid == os.getpid()
    assert t.process
