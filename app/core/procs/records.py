"""Each child as the manager knows it (ProcessRecord), and the snapshot it hands out (ProcessInfo).

A :class:`ProcessRecord` is the changing state of one child, from its launch
to its reaping: its pid, its output buffer, the stopping signals sent to it.
It signals its own process group (never a stranger's: it does so only before
the child is reaped), samples its CPU time, and tells itself as a frozen
:class:`ProcessInfo` snapshot or as the :class:`ProcessExited` event of its
end.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

from app.core.procs.errors import ProcessError
from app.core.procs.events import ProcessExited, ProcessStarted
from app.core.procs.exits import explain_failure, state_text
from app.core.procs.output import OutputBuffer

# A managed process, by its name or its pid.
Target = str | int

# Signals that mean "stop": a process that ends after one of these, sent by
# us, ended because we asked (lab up counts that as ending well).
STOPPING_SIGNALS = frozenset(
    {signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of one managed process.

    ``state`` is one of "starting", "running", "exited N", "killed by SIGNAME".
    ``cpu_percent`` is like top's (100 = one core), measured between two calls
    of :meth:`ProcessManager.processes` at least 0.25 s apart (the first call
    measures since the start); None when not running.
    """

    name: str
    pid: int | None
    argv: tuple[str, ...]  # what actually runs (a built-in: python -m app.labs.X ...)
    program: str | None  # built-in name ("tcp-server"), None for a command
    args: tuple[str, ...]  # a built-in's arguments; a command's argv[1:]
    state: str
    returncode: int | None
    cpu_percent: float | None
    started_at: float | None
    ended_at: float | None
    stop_requested: bool
    output: tuple[str, ...] = field(repr=False)  # most recent lines, oldest first

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ended(self) -> bool:
        return self.returncode is not None

    @property
    def ended_well(self) -> bool:
        """Ended with status 0, or after we asked it to stop."""
        return self.returncode is not None and (self.returncode == 0 or self.stop_requested)

    @property
    def command_line(self) -> str:
        """What a student would type: ``tcp-server 6000`` or ``nc -vn 127.0.0.1 7000``."""
        import shlex

        if self.program is not None:
            return shlex.join([self.program, *self.args])
        return shlex.join(self.argv)


def _has_exited(pid: int) -> bool:
    """Our child ``pid`` has ended (it may not be reaped yet, and is not reaped here)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


@dataclass(eq=False)
class ProcessRecord:
    """What the manager knows of one child, from its launch to its reaping.

    Changed only with the manager's lock held (its output has a lock of its own).
    """

    name: str
    argv: tuple[str, ...]
    program: str | None
    args: tuple[str, ...]
    env: dict[str, str] | None
    cwd: str | None
    builtin: bool
    output: OutputBuffer
    popen: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    ps: psutil.Process | None = None
    started_at: float | None = None
    ended_at: float | None = None
    returncode: int | None = None
    stop_requested: bool = False
    sent_signals: set[int] = field(default_factory=set)  # stopping signals we sent
    threads: list[threading.Thread] = field(default_factory=list)
    cpu_last: tuple[float, float] | None = None  # (monotonic, cpu seconds)
    cpu_percent: float | None = None
    replaced: str | None = None  # the state of the ended record of this name it replaced
    # The grace time (s) after which a SIGTERM it ignored was followed by our SIGKILL.
    escalated_after: float | None = None

    @property
    def state(self) -> str:
        if self.returncode is not None:
            return state_text(self.returncode, self.sent_signals)
        return "starting" if self.pid is None else "running"

    @property
    def alive(self) -> bool:
        """Started and not reaped yet: its pid (and process group id) is still ours."""
        return self.pid is not None and self.returncode is None

    def adopt(self, popen: subprocess.Popen[bytes], pid: int) -> None:
        """The child has started as ``pid``: running from now (its CPU counted from here)."""
        self.popen = popen
        self.pid = pid
        self.started_at = time.time()
        try:
            self.ps = psutil.Process(pid)
            times = self.ps.cpu_times()
            self.cpu_last = (time.monotonic(), float(times.user + times.system))
        except psutil.Error:
            self.ps = None

    def started_event(self) -> ProcessStarted:
        """The event of its start (once adopted)."""
        assert self.pid is not None
        started = self.started_at or time.time()
        return ProcessStarted(self.name, self.pid, self.argv, self.program, started, self.replaced)

    def info(self) -> ProcessInfo:
        """A snapshot of the child, its output lines included."""
        lines = self.output.lines()
        return ProcessInfo(
            name=self.name,
            pid=self.pid,
            argv=self.argv,
            program=self.program,
            args=self.args,
            state=self.state,
            returncode=self.returncode,
            cpu_percent=self.cpu_percent if self.alive else None,
            started_at=self.started_at,
            ended_at=self.ended_at,
            stop_requested=self.stop_requested,
            output=lines,
        )

    def sample_cpu(self) -> None:
        """Measure its CPU% since the last sample (at least 0.25 s ago), when running.

        Called with the manager's lock held, the child not reaped (pid still ours).
        """
        if self.ps is None or not self.alive:
            return
        now = time.monotonic()
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return
        total = float(times.user + times.system)
        if self.cpu_last is None:
            self.cpu_last = (now, total)
            return
        then, before = self.cpu_last
        if now - then >= 0.25 or self.cpu_percent is None:
            elapsed = max(now - then, 1e-6)
            self.cpu_percent = round(max(0.0, (total - before) / elapsed * 100.0), 1)
            self.cpu_last = (now, total)

    def signal_group(self, sig: int) -> None:
        """Signal the child's process group and any descendant that left it.

        Follows psutil's ``kill_proc_tree`` recipe: list the descendants
        first (once signalled they may be reparented and lost), then signal.
        Called with the manager's lock held, before the leader is reaped, so its pid
        (= the group id) cannot have been reused. A command's leader is reaped
        by its supervisor, as the supervisor's last act before it exits: so
        nothing is sent once the supervisor has exited. The descendants are
        the supervisor's: orphans of the command's tree are its children.
        """
        pid = self.pid
        if pid is None or self.returncode is not None:
            return
        if sig in STOPPING_SIGNALS:
            self.stop_requested = True
            self.sent_signals.add(sig)
        top = self.popen.pid if self.popen is not None else pid
        if top != pid and _has_exited(top):
            return
        try:
            descendants = psutil.Process(top).children(recursive=True)
        except psutil.Error:
            descendants = []
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ProcessError(
                f"the operating system refused to signal {self.name} (pid {pid}): "
                f"{os.strerror(errno.EPERM)}"
            ) from None
        for child in descendants:
            try:
                if os.getpgid(child.pid) != pid:  # left our group (setsid, setpgid)
                    child.send_signal(sig)
            except (psutil.Error, OSError):
                pass

    def escalate(self, grace: float) -> None:
        """It outlived a SIGTERM by ``grace`` seconds: SIGKILL its group, and remember why."""
        if self.alive:
            self.escalated_after = grace
            self.signal_group(signal.SIGKILL)

    def exit_event(self) -> ProcessExited:
        """The event of its end, once reaped: why it failed, when it did not end well."""
        assert self.popen is not None and self.returncode is not None
        assert self.ended_at is not None
        reason: str | None = None
        explanation: str | None = None
        if self.escalated_after is not None and self.returncode == -signal.SIGKILL:
            reason = (
                f"it did not end within {self.escalated_after:g} s of SIGTERM, "
                "so the observatory sent SIGKILL"
            )
        elif self.returncode != 0 and not self.stop_requested:
            reason = self.output.last_stderr
            if reason is not None:
                explanation = explain_failure(reason, self.args)
        return ProcessExited(
            self.name,
            self.pid or self.popen.pid,
            self.returncode,
            state_text(self.returncode, self.sent_signals),
            self.stop_requested,
            self.ended_at,
            reason,
            explanation,
        )
