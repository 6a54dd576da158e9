"""Foreign kills: who a process the dashboard did not start is, and signalling it.

The manager signals only its own children, except through these two steps:
:func:`describe_foreign` says who a pid is (user, command line, start time),
for a "really kill it?" question, and :func:`kill_foreign` signals that one
process after the user said yes, refusing pid 1, the observatory itself and a
pid that has become another process since it was described.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass

import psutil

from app.core.procs.errors import ProcessError


@dataclass(frozen=True, slots=True)
class ForeignProcess:
    """Who a pid is, for a "really kill it?" dialog."""

    pid: int
    name: str
    user: str | None
    cmdline: tuple[str, ...]
    managed_name: str | None  # our name for it when we started it
    created: float | None = None  # its start time: a pid reused later is another process

    @property
    def command_line(self) -> str:
        return " ".join(self.cmdline) if self.cmdline else f"[{self.name}]"


def _user_of(pid: int) -> str | None:
    try:
        return str(psutil.Process(pid).username())
    except (psutil.Error, KeyError):
        try:
            return str(os.stat(f"/proc/{pid}").st_uid)
        except OSError:
            return None


def check_pid(pid: int) -> None:
    """Refuse what is not a pid, and the observatory's own pid (in words)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ProcessError(f"{pid!r} is not a process id (a pid is a whole number above 0)")
    if pid == os.getpid():
        raise ProcessError(f"pid {pid} is the observatory itself; quit it instead")


def describe_foreign(pid: int, managed_name: str | None) -> ForeignProcess:
    """Who ``pid`` is; ``managed_name`` is the manager's name for it when it started it.

    Raises:
        ProcessError: no such process, or not a valid pid.
    """
    check_pid(pid)
    try:
        proc = psutil.Process(pid)
        name = str(proc.name())
    except psutil.NoSuchProcess:
        raise ProcessError(f"there is no process with pid {pid} (it may have ended)") from None
    except psutil.AccessDenied:
        name = "?"
    try:
        cmdline = tuple(str(part) for part in proc.cmdline())
    except psutil.Error:
        cmdline = ()
    try:
        created: float | None = proc.create_time()
    except psutil.Error:
        created = None
    return ForeignProcess(pid, name, _user_of(pid), cmdline, managed_name, created)


def kill_foreign(pid: int, sig: int = signal.SIGTERM, *, created: float | None = None) -> None:
    """Signal ``pid`` alone (see :meth:`ProcessManager.kill_foreign`).

    Raises:
        ProcessError: in words.
    """
    check_pid(pid)
    if pid == 1:
        raise ProcessError("pid 1 is the system's init process; the observatory will not signal it")
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 0.01:
            raise ProcessError(f"pid {pid} ended and is now another process; nothing was sent")
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        raise ProcessError(f"there is no process with pid {pid} (it may have ended)") from None
    except psutil.AccessDenied:
        user = _user_of(pid) or "another user"
        raise ProcessError(
            f"the operating system refused: pid {pid} belongs to {user} "
            f"({os.strerror(errno.EPERM)})"
        ) from None
