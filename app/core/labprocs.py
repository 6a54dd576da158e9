"""The lab processes running on this machine, found by the mark the process manager gives them.

Every child that a dashboard or ``observatory lab up`` starts (a built-in lab
program, or a command and its supervisor, :mod:`app.core.shim`) gets
``OBSERVATORY_PARENT_PID=<the observatory's pid>`` in its environment, and so
does whatever that child starts in turn. ``/proc/PID/environ`` keeps the
environment a process was started with (the built-ins remove the variable from
``os.environ``, not from there), so "a lab process" here is: a process whose
start-up environment names, in that variable, a process that is still running
and started before it; the supervisor itself is left out (its command is
listed). That is "where known": the environment of another user's process is
readable by root only, so an agent that is not root lists its own user's lab
processes; a process started by hand, or by an observatory that has exited, is
not one. Each process's environment is read once (remembered by pid and start
time; a process younger than :data:`YOUNG_SECONDS` without the mark is read again,
as it may not have called exec yet), so a scan costs one ``/proc`` listing and a
stat per process.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psutil

from app.core.procs.launch import ENV_PARENT_PID, SHIM_PATH

__all__ = ["LabProcess", "LabProcessFinder"]

_MARK = ENV_PARENT_PID.encode() + b"="
# Between fork and exec a child shows its parent's environment (the observatory's own,
# without the mark): an unmarked process this young is read again at the next scan.
YOUNG_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class LabProcess:
    """One lab process: who it is, its command line, its parent, and who started it."""

    pid: int
    name: str
    cmdline: tuple[str, ...]
    parent_pid: int | None  # the process's parent (a supervisor's command: the supervisor)
    observatory_pid: int  # the dashboard or `lab up` that started it (or its ancestor)
    user: str | None
    started_at: float  # epoch seconds

    def to_json(self) -> dict[str, object]:
        """The agent's JSON object of one lab process (``/api/snapshot``'s ``processes``)."""
        return {
            "pid": self.pid,
            "name": self.name,
            "cmdline": list(self.cmdline),
            "parent_pid": self.parent_pid,
            "observatory_pid": self.observatory_pid,
            "user": self.user,
            "started_at": self.started_at,
        }


def _marked_parent(pid: int) -> int | None:
    """The pid named by the mark in the start-up environment of ``pid``; None without one."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:  # gone, or another user's (not root)
        return None
    for entry in data.split(b"\0"):
        if entry.startswith(_MARK):
            value = entry[len(_MARK) :]
            return int(value) if value.isdigit() and value.isascii() else None
    return None


def _started(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


class LabProcessFinder:
    """Finds the lab processes; keep one for a long-lived caller (it remembers environments)."""

    def __init__(self) -> None:
        # (pid, start time) -> the marked observatory pid, or None: read once per process.
        self._marks: dict[tuple[int, float], int | None] = {}

    def find(self) -> list[LabProcess]:
        """The lab processes running now, by pid."""
        seen: dict[tuple[int, float], int | None] = {}
        started: dict[int, float] = {}
        young = time.time() - YOUNG_SECONDS
        for pid in psutil.pids():
            at = _started(pid)
            if at is None:
                continue
            started[pid] = at
            key = (pid, at)
            seen[key] = self._marks[key] if key in self._marks else _marked_parent(pid)
        # The gone are forgotten, and so is the young's lack of a mark.
        self._marks = {k: v for k, v in seen.items() if v is not None or k[1] < young}
        found: list[LabProcess] = []
        for (pid, at), parent in seen.items():
            if parent is None or parent == pid:
                continue
            parent_at = started.get(parent)
            if parent_at is None or parent_at > at:  # gone, or its pid reused since
                continue
            proc = self._describe(pid, parent)
            if proc is not None:
                found.append(proc)
        return found

    @staticmethod
    def _describe(pid: int, observatory_pid: int) -> LabProcess | None:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                cmdline = tuple(proc.cmdline())
                if SHIM_PATH in cmdline:
                    return None  # the supervisor: its command is listed
                user = None
                with contextlib.suppress(psutil.Error, KeyError):
                    user = proc.username()
                return LabProcess(
                    pid=pid,
                    name=proc.name(),
                    cmdline=cmdline,
                    parent_pid=proc.ppid() or None,
                    observatory_pid=observatory_pid,
                    user=user,
                    started_at=proc.create_time(),
                )
        except (psutil.Error, OSError):
            return None
