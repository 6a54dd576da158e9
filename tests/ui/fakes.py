"""Deterministic stand-ins for layout snapshots only (flows use the real parts)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.core.interfaces import Address, Interface
from app.core.model import Snapshot, Socket
from app.core.procs import ProcessError, ProcessEvent, ProcessInfo
from app.ui.messages import PollResult

T0 = 1_700_000_000.0  # a fixed moment: 2023-11-14 22:13:20 UTC


def sock(
    proto: str,
    local: str,
    lport: int,
    remote: str | None,
    rport: int | None,
    state: str,
    pid: int | None,
    process: str | None,
    owner: str = "process",
    service: str | None = None,
    user: str = "student",
    recv_q: int = 0,
    inode: int = 1,
) -> Socket:
    return Socket(
        proto=proto,
        local_addr=local,
        local_port=lport,
        remote_addr=remote,
        remote_port=rport,
        state=state,
        pid=pid,
        process=process,
        cmdline=(process or "",),
        user=user,
        owner=owner,  # type: ignore[arg-type]
        service=service,
        inode=0 if owner == "kernel" else inode,
        recv_q=recv_q,
    )


def lecture_sockets() -> list[Socket]:
    """The lecture at experiment 6: three servers, a client, a second client in the backlog."""
    return [
        sock(
            "tcp",
            "0.0.0.0",
            6000,
            None,
            None,
            "LISTEN",
            2759,
            "tcp-server",
            service="x11",
            recv_q=1,
        ),
        sock("tcp", "0.0.0.0", 16000, None, None, "LISTEN", 3160, "tcp-server", service="fmsas"),
        sock("tcp", "0.0.0.0", 45321, None, None, "LISTEN", 3170, "tcp-server"),
        sock(
            "tcp6",
            "::1",
            631,
            None,
            None,
            "LISTEN",
            None,
            None,
            owner="hidden",
            service="ipp",
            user="cups",
        ),
        sock(
            "tcp",
            "127.0.0.1",
            6000,
            "127.0.0.1",
            39846,
            "ESTABLISHED",
            2759,
            "tcp-server",
            service="x11",
        ),
        sock(
            "tcp",
            "127.0.0.1",
            39846,
            "127.0.0.1",
            6000,
            "ESTABLISHED",
            3226,
            "tcp-client",
            service="x11",
        ),
        sock(
            "tcp",
            "127.0.0.1",
            6000,
            "127.0.0.1",
            39850,
            "ESTABLISHED",
            None,
            None,
            owner="kernel",
            service="x11",
        ),
        sock(
            "tcp",
            "127.0.0.1",
            39850,
            "127.0.0.1",
            6000,
            "ESTABLISHED",
            3231,
            "tcp-client",
            service="x11",
        ),
        sock(
            "tcp",
            "127.0.0.1",
            41000,
            "127.0.0.1",
            16000,
            "TIME_WAIT",
            None,
            None,
            owner="kernel",
            service="fmsas",
        ),
        sock("udp", "127.0.0.1", 7000, None, None, "NONE", 3300, "udp-server"),
    ]


def snapshot(sockets: list[Socket], at: float = T0) -> Snapshot:
    return Snapshot(taken_at=at, sockets=tuple(sockets))


INTERFACES = [
    Interface("lo", True, 65536, None, (Address(4, "127.0.0.1", 8), Address(6, "::1", 128))),
    Interface("dummy0", True, 1500, None, (Address(4, "192.0.2.1", 32),)),
]


def info(
    name: str,
    pid: int,
    command: tuple[str, ...],
    state: str = "running",
    cpu: float | None = 0.0,
    output: tuple[str, ...] = (),
) -> ProcessInfo:
    program, *args = command
    rc = None if state in ("running", "starting") else (-signal.SIGKILL if "KILL" in state else 0)
    return ProcessInfo(
        name=name,
        pid=pid,
        argv=command,
        program=program,
        args=tuple(args),
        state=state,
        returncode=rc,
        cpu_percent=cpu,
        started_at=T0,
        ended_at=None if rc is None else T0 + 5,
        stop_requested=False,
        output=output,
    )


PROCESSES = [
    info(
        "server1",
        2759,
        ("tcp-server", "6000", "--bind", "0.0.0.0", "--handler", "busy"),
        cpu=49.0,
        output=(
            "Listening on 0.0.0.0:6000 (iterative, backlog 5, handler busy)",
            "Client: 127.0.0.1:39846",
        ),
    ),
    info("server2", 3160, ("tcp-server", "16000", "--bind", "0.0.0.0")),
    info("server3", 3170, ("tcp-server", "45321", "--bind", "0.0.0.0")),
    info("client1", 3226, ("tcp-client", "127.0.0.1", "hello", "6000")),
    info("client2", 3231, ("tcp-client", "127.0.0.1", "hello", "6000")),
    info(
        "client3",
        3240,
        ("tcp-client", "127.0.0.1", "hello", "16000"),
        state="killed by SIGKILL",
        cpu=None,
    ),
]


@dataclass
class FakeSource:
    """Returns the snapshots it was given (a layout snapshot polls nothing)."""

    snaps: list[Snapshot] = field(default_factory=list)

    def poll(self) -> Snapshot:
        return self.snaps.pop(0) if len(self.snaps) > 1 else self.snaps[0]


class FakeManager:
    """A layout snapshot's process manager (app.core.control.ProcessControl): the lab's
    processes with fixed answers; whatever would start or signal one is refused."""

    def __init__(self, processes: list[ProcessInfo]) -> None:
        self._processes = processes

    def processes(self) -> list[ProcessInfo]:
        return list(self._processes)

    def output(self, target: str | int) -> list[str]:
        return next((list(p.output) for p in self._processes if target in (p.name, p.pid)), [])

    def subscribe(self, callback: Callable[[ProcessEvent], None]) -> Callable[[], None]:
        return lambda: None

    def is_managed(self, pid: int) -> bool:
        return any(p.pid == pid for p in self._processes)

    def names(self) -> list[str]:
        return [p.name for p in self._processes]

    def get(self, target: str | int) -> ProcessInfo:
        return next(p for p in self._processes if target in (p.name, p.pid))

    def shutdown(self, timeout: float = 3.0) -> None:
        pass

    @staticmethod
    def _refuse(*args: object, **kwargs: object) -> Any:
        raise ProcessError("a layout snapshot starts and signals nothing")

    launch_builtin = launch_command = kill = kill_all = restart = _refuse
    describe_foreign = kill_foreign = _refuse


def lecture_results() -> list[PollResult]:
    """Two polls: the second adds the 45321 listener's client and drops a TIME_WAIT."""
    from app.core.diff import diff

    first = snapshot(lecture_sockets()[:-2] + lecture_sockets()[-1:], T0)
    second_sockets = lecture_sockets()
    second = snapshot(second_sockets, T0 + 1)
    return [
        PollResult(first, [], list(PROCESSES), INTERFACES),
        PollResult(second, diff(first, second), list(PROCESSES), None),
    ]
