"""The process manager: one object that starts, watches and stops every child of the lab.

:class:`ProcessManager` is described, with its guarantees and thread model, in
the package docstring (:mod:`app.core.procs`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

import psutil

from app.core.procs.errors import LaunchError, ProcessError
from app.core.procs.events import (
    EventHub,
    OutputLine,
    ProcessEvent,
    ProcessStarted,
    Stream,
    Subscriber,
)
from app.core.procs.foreign import ForeignProcess, describe_foreign, kill_foreign
from app.core.procs.output import OutputBuffer
from app.core.procs.records import ProcessInfo, ProcessRecord, Target

# Environment the built-in lab programs read (app.labs._common.install_parent_guard).
ENV_PARENT_PID = "OBSERVATORY_PARENT_PID"
ENV_LIFELINE_FD = "OBSERVATORY_LIFELINE_FD"
# The supervisor (app.core.shim) writes the command's pid to this descriptor.
ENV_PID_FD = "OBSERVATORY_PID_FD"
# How long a supervisor may take to fork and exec its command and say its pid.
_PID_REPORT_SECONDS = 10.0

SHIM_PATH = str(Path(__file__).parent.with_name("shim.py"))
# The folder that holds the ``app`` package: put on PYTHONPATH of built-ins so
# ``python -m app.labs.X`` works even when the project is not installed.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[3])

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
NAME_RULE = "a name is 1 to 40 letters, digits, '-', '_' or '.', starting with a letter or digit"


@dataclass(frozen=True, slots=True)
class _LaunchRequest:
    argv: list[str]
    env: dict[str, str] | None
    cwd: str | None
    pass_fds: tuple[int, ...]
    result: Future[subprocess.Popen[bytes]]


def _read_pid(fd: int, timeout: float = _PID_REPORT_SECONDS) -> int | None:
    """The pid a supervisor writes as one line; None if it ends (or waits) without one."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(int(remaining * 1000) + 1):
            return None
        try:
            chunk = os.read(fd, 64)
        except OSError:
            return None
        if not chunk:
            break
        data += chunk
    text = data.split(b"\n", 1)[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def executable_problem(argv0: str, cwd: str | None, env: Mapping[str, str] | None) -> str | None:
    """Why ``argv0`` cannot be run, in words; None when it can."""
    if not argv0:
        return "the command is empty"
    if "/" in argv0:
        path = Path(cwd or ".", argv0) if not os.path.isabs(argv0) else Path(argv0)
        if not path.exists():
            return f"no such file: {argv0}"
        if path.is_dir():
            return f"{argv0} is a folder, not a program"
        if not os.access(path, os.X_OK):
            return f"{argv0} is not executable (try: chmod +x {argv0})"
        return None
    search = (env or os.environ).get("PATH", os.defpath)
    if shutil.which(argv0, path=search) is None:
        return f"command not found: {argv0}"
    return None


class ProcessManager:
    """Owns the lab's child processes. Thread-safe; usable as a context manager.

    Args:
        max_lines: output lines kept per process (older ones are dropped).
        max_line_bytes: a longer line is cut there (and marked as cut).
        event_backlog: events kept for :meth:`drain_events` (oldest dropped).
        register_atexit: stop every child when the interpreter exits.
    """

    def __init__(
        self,
        *,
        max_lines: int = 1000,
        max_line_bytes: int = 2000,
        event_backlog: int = 1000,
        register_atexit: bool = True,
    ) -> None:
        if max_lines < 1 or max_line_bytes < 16:
            raise ValueError("max_lines must be >= 1 and max_line_bytes >= 16")
        self._max_lines = max_lines
        self._max_line_bytes = max_line_bytes
        self._lock = threading.RLock()  # RLock: a signal handler may re-enter
        self._changed = threading.Condition(self._lock)
        self._records: dict[str, ProcessRecord] = {}
        self._events = EventHub(event_backlog)
        self._closed = False
        self._shut_down = threading.Event()  # set when shutdown() has finished
        self._lifeline: tuple[int, int] | None = None
        self._requests: queue.SimpleQueue[_LaunchRequest | None] = queue.SimpleQueue()
        self._launcher = threading.Thread(
            target=self._launcher_loop, name="observatory-launcher", daemon=True
        )
        self._launcher.start()
        self._atexit = register_atexit
        if register_atexit:
            atexit.register(self.shutdown)

    # ----------------------------------------------------------- context

    def __enter__(self) -> ProcessManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # ------------------------------------------------------------ events

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every future event; returns an unsubscribe function.

        The callback runs on the manager's threads (see the package docstring),
        never on the caller's event loop. Exceptions it raises are logged and
        otherwise ignored.
        """
        return self._events.subscribe(callback)

    def drain_events(self) -> list[ProcessEvent]:
        """The events since the last call (at most ``event_backlog`` of the newest)."""
        return self._events.drain()

    # ------------------------------------------------------------ launch

    def launch_builtin(
        self,
        name: str,
        program: str,
        args: Sequence[str] = (),
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ProcessInfo:
        """Start a built-in lab program (``tcp-server``...) as ``python -m app.labs.X ARGS``.

        Its arguments are checked first (the same words the program would
        print). Returns once the child runs.

        Raises:
            LaunchError: unknown program, bad arguments, name in use, or the
                operating system could not start it.
        """
        from app.labs import PROGRAMS, LabUsageError, validate

        args = [str(a) for a in args]
        try:
            validate(program, args)
        except LabUsageError as exc:
            raise LaunchError(str(exc)) from None
        except ImportError as exc:
            raise LaunchError(
                f"the built-in program {program!r} is not available ({exc})"
            ) from None
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONUNBUFFERED"] = "1"
        pythonpath = full_env.get("PYTHONPATH")
        full_env["PYTHONPATH"] = (
            _PROJECT_ROOT if not pythonpath else f"{_PROJECT_ROOT}{os.pathsep}{pythonpath}"
        )
        argv = [sys.executable, "-m", PROGRAMS[program], *args]
        return self._launch(name, argv, program, tuple(args), full_env, cwd, builtin=True)

    def launch_command(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ProcessInfo:
        """Start any program, e.g. ``["./tcp_server1", "6000"]`` or ``["nc", "-vn", ...]``.

        It runs under the supervisor of :mod:`app.core.shim`, which takes the
        command and everything it starts down when the observatory dies (even
        by SIGKILL) or when the command ends. The pid returned and shown is the
        command's own. A relative path (``./x``) is relative to ``cwd``.

        Raises:
            LaunchError: empty argv, the program does not exist or is not
                executable, name in use, or the system could not start it.
        """
        argv = [str(a) for a in argv]
        if not argv:
            raise LaunchError("the command is empty: give a program and its arguments")
        cwd_text = None if cwd is None else os.fspath(cwd)
        problem = executable_problem(argv[0], cwd_text, env)
        if problem:
            raise LaunchError(problem)
        full_env = dict(os.environ if env is None else env)
        # -I -S: the shim needs only the standard library; isolated mode starts
        # faster and cannot import a student's own "app" folder by accident.
        real = [sys.executable, "-I", "-S", SHIM_PATH, "--", *argv]
        return self._launch(name, real, None, tuple(argv), full_env, cwd, builtin=False)

    def _launch(  # noqa: C901 - one launch, step by step; to be split with procs.py (issue 12)
        self,
        name: str,
        real_argv: list[str],
        program: str | None,
        args: tuple[str, ...],
        env: dict[str, str],
        cwd: str | os.PathLike[str] | None,
        *,
        builtin: bool,
    ) -> ProcessInfo:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise LaunchError(f"{name!r} cannot be a process name: {NAME_RULE}")
        cwd_text = None if cwd is None else os.fspath(cwd)
        if cwd_text is not None and not os.path.isdir(cwd_text):
            raise LaunchError(f"the folder {cwd_text} does not exist")
        shown_argv = tuple(real_argv) if builtin else args
        record = ProcessRecord(
            name=name,
            argv=shown_argv,
            program=program,
            args=args if builtin else args[1:],
            env=env,
            cwd=cwd_text,
            builtin=builtin,
            output=OutputBuffer(self._max_lines, self._max_line_bytes),
        )
        with self._lock:
            if self._closed:
                raise LaunchError("the process manager has shut down; nothing more can start")
            old = self._records.get(name)
            if old is not None and old.returncode is None:
                where = f"pid {old.pid}" if old.pid else "starting"
                raise LaunchError(
                    f"a process named {name!r} is already running ({where}); "
                    "stop it first or choose another name"
                )
            # An ended process's name may be used again: the new process replaces
            # its record, and its output is dropped (ProcessStarted.replaced says so).
            if old is not None:
                record.replaced = old.state
            # Reserve the name ("starting") so two launches cannot race for it.
            self._records.pop(name, None)  # a relaunch goes to the end of the list
            self._records[name] = record
            env[ENV_PARENT_PID] = str(os.getpid())
            pass_fds: tuple[int, ...] = ()
            report: tuple[int, int] | None = None  # the supervisor says the command's pid
            if builtin:
                env.setdefault("PYTHONIOENCODING", "utf-8")
                read_end = self._lifeline_read_end()
                env[ENV_LIFELINE_FD] = str(read_end)
                pass_fds = (read_end,)
            else:
                report = os.pipe()
                env[ENV_PID_FD] = str(report[1])
                pass_fds = (report[1],)
        request = _LaunchRequest(real_argv, env, cwd_text, pass_fds, Future())
        self._requests.put(request)
        try:
            try:
                popen = request.result.result()
            finally:
                if report is not None:
                    os.close(report[1])  # only the supervisor may hold it: EOF if it dies
            pid = popen.pid if report is None else _read_pid(report[0]) or popen.pid
        except OSError as exc:
            with self._lock:
                if self._records.get(name) is record:
                    del self._records[name]
                    if old is not None:
                        self._records[name] = old
                self._changed.notify_all()
            raise LaunchError(f"could not start {name}: {exc.strerror or exc}") from None
        except BaseException:
            with self._lock:
                if self._records.get(name) is record:
                    del self._records[name]
                self._changed.notify_all()
            raise
        finally:
            if report is not None:
                os.close(report[0])
        assert popen.stdout is not None and popen.stderr is not None
        with self._lock:
            record.popen = popen
            record.pid = pid
            record.started_at = time.time()
            try:
                record.ps = psutil.Process(pid)
                times = record.ps.cpu_times()
                record.cpu_last = (time.monotonic(), float(times.user + times.system))
            except psutil.Error:
                record.ps = None
            if self._closed:  # shutdown() ran while we were starting: do not leave it behind
                with contextlib.suppress(ProcessError):
                    record.signal_group(signal.SIGKILL)
            self._changed.notify_all()
        started = record.started_at or time.time()
        self._events.emit(ProcessStarted(name, pid, record.argv, program, started, record.replaced))
        for stream, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            thread = threading.Thread(
                target=self._read_stream,
                args=(record, stream, pipe),
                name=f"observatory-read-{name}-{stream}",
                daemon=True,
            )
            record.threads.append(thread)
            thread.start()
        waiter = threading.Thread(
            target=self._wait_child, args=(record,), name=f"observatory-wait-{name}", daemon=True
        )
        waiter.start()
        return record.info()

    def _lifeline_read_end(self) -> int:
        # Called with the lock held. The write end never leaves this process
        # (os.pipe() descriptors are not inheritable): when the observatory
        # dies, the kernel closes it and every built-in reads end-of-file.
        if self._lifeline is None:
            self._lifeline = os.pipe()
        return self._lifeline[0]

    def _launcher_loop(self) -> None:
        # The one thread that forks: children's PR_SET_PDEATHSIG is tied to it,
        # so it must live as long as the manager.
        while True:
            request = self._requests.get()
            if request is None:
                return
            if not request.result.set_running_or_notify_cancel():
                continue
            try:
                popen = subprocess.Popen(
                    request.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=request.pass_fds,
                    env=request.env,
                    cwd=request.cwd,
                )
            except BaseException as exc:
                request.result.set_exception(exc)
            else:
                request.result.set_result(popen)

    # ------------------------------------------------------- reading output

    def _read_stream(self, record: ProcessRecord, stream: Stream, pipe: IO[bytes]) -> None:
        pid = record.pid or 0

        def line(text: str) -> None:
            self._events.emit(OutputLine(record.name, pid, stream, text, time.time()))

        record.output.read(stream, pipe, line)

    # ------------------------------------------------------------- exits

    def _wait_child(self, record: ProcessRecord) -> None:
        popen = record.popen
        assert popen is not None
        # Wait WITHOUT reaping: until we reap under the lock, the pid and the
        # process group id stay reserved, so kill() can never hit a stranger
        # that reused the number.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
        deadline = time.monotonic() + 0.5
        for thread in record.threads:  # let the last lines arrive before "exited"
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            returncode = popen.wait()
            record.returncode = returncode
            record.ended_at = time.time()
            record.cpu_percent = None
            self._changed.notify_all()
        self._events.emit(record.exit_event())

    # ---------------------------------------------------------- snapshots

    def processes(self) -> list[ProcessInfo]:
        """Every managed process (running and ended), in launch order; samples CPU%."""
        with self._lock:
            records = list(self._records.values())
            for record in records:
                record.sample_cpu()
            return [r.info() for r in records]

    def get(self, target: Target) -> ProcessInfo:
        """The snapshot of one managed process, by name or pid.

        Raises:
            ProcessError: no managed process has that name or pid.
        """
        with self._lock:
            record = self._find(target)
            record.sample_cpu()
            return record.info()

    def output(self, target: Target) -> list[str]:
        """The most recent output lines of a managed process (stdout and stderr)."""
        with self._lock:
            record = self._find(target)
        return list(record.output.lines())

    def names(self) -> list[str]:
        with self._lock:
            return list(self._records)

    def is_managed(self, pid: int) -> bool:
        """True when ``pid`` is a child we started and have not reaped yet."""
        with self._lock:
            return any(r.pid == pid and r.alive for r in self._records.values())

    def _find(self, target: Target) -> ProcessRecord:
        if isinstance(target, bool):
            raise ProcessError(f"{target!r} is neither a process name nor a pid")
        if isinstance(target, int):
            matches = [r for r in self._records.values() if r.pid == target]
            if not matches:
                raise ProcessError(
                    f"pid {target} was not started by the observatory; "
                    "kill it as a foreign process (with confirmation) if you must"
                )
            running = [r for r in matches if r.returncode is None]
            return (running or matches)[-1]
        record = self._records.get(target)
        if record is None:
            raise ProcessError(f"no process named {target!r} was started here")
        return record

    # ------------------------------------------------------------- waiting

    def wait(self, target: Target, timeout: float | None = None) -> ProcessInfo:
        """Block until the process has ended (and been reaped).

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
            ProcessError: unknown name or pid.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            record = self._find(target)
            while record.returncode is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{record.name} is still running after {timeout} s")
                self._changed.wait(remaining)
            return record.info()

    def wait_all(self, timeout: float | None = None) -> bool:
        """Block until every managed process has ended; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while any(r.returncode is None for r in self._records.values()):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # ------------------------------------------------------------- signals

    def kill(self, target: Target, sig: int = signal.SIGTERM) -> ProcessInfo:
        """Send ``sig`` to a managed process's whole group (and descendants that left it).

        Does not wait; see :meth:`stop`.

        Raises:
            ProcessError: unknown, still starting, or already ended (in words).
        """
        with self._lock:
            record = self._find(target)
            if record.returncode is not None:
                raise ProcessError(f"{record.name} has already ended ({record.state})")
            if record.pid is None:
                raise ProcessError(f"{record.name} is still starting; try again in a moment")
            record.signal_group(sig)
            return record.info()

    def kill_all(self, sig: int = signal.SIGTERM) -> list[str]:
        """Signal every running managed process; returns the names signalled."""
        names = []
        with self._lock:
            for record in self._records.values():
                if record.alive:
                    with contextlib.suppress(ProcessError):
                        record.signal_group(sig)
                    names.append(record.name)
        return names

    def stop(self, target: Target, timeout: float = 3.0) -> ProcessInfo:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns once it has ended.

        Blocks: call it from a worker thread, not a UI loop.
        """
        with self._lock:
            record = self._find(target)
            if record.alive:
                record.signal_group(signal.SIGTERM)
        try:
            return self.wait(record.name, timeout)
        except TimeoutError:
            pass
        with self._lock:
            record.signal_group(signal.SIGKILL)
        return self.wait(record.name, 5.0)

    def restart(self, target: Target, timeout: float = 3.0) -> ProcessInfo:
        """Stop the process (if running) and start it again with the same argv; new pid.

        Blocks like :meth:`stop`.
        """
        with self._lock:
            record = self._find(target)
        if record.returncode is None:
            self.stop(record.name, timeout)
        env = dict(record.env or os.environ)
        env.pop(ENV_LIFELINE_FD, None)
        if record.builtin:
            return self._launch(
                record.name,
                list(record.argv),
                record.program,
                record.args,
                env,
                record.cwd,
                builtin=True,
            )
        return self._launch(
            record.name,
            [sys.executable, "-I", "-S", SHIM_PATH, "--", *record.argv],
            None,
            record.argv,
            env,
            record.cwd,
            builtin=False,
        )

    # ------------------------------------------------------ foreign processes

    def describe_foreign(self, pid: int) -> ForeignProcess:
        """Who ``pid`` is (user, command line), to ask "really kill it?".

        Raises:
            ProcessError: no such process, or not a valid pid.
        """
        with self._lock:
            managed = next(
                (r.name for r in self._records.values() if r.pid == pid and r.alive), None
            )
        return describe_foreign(pid, managed)

    def kill_foreign(
        self, pid: int, sig: int = signal.SIGTERM, *, created: float | None = None
    ) -> None:
        """Signal a process the observatory did not start (only that one process).

        The caller must have asked the user first. Pid 1 and the observatory
        itself are refused. ``created`` (from :meth:`describe_foreign`) makes
        sure the pid still is the process the user was asked about.

        Raises:
            ProcessError: in words, e.g. "the operating system refused: pid 1
                belongs to root (Operation not permitted)".
        """
        kill_foreign(pid, sig, created=created)

    # -------------------------------------------------------------- the end

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop everything: SIGTERM every group, wait ``timeout`` s, SIGKILL the rest.

        Idempotent; called by ``atexit`` and ``__exit__``. No launch is
        accepted afterwards. A second call (from another thread) returns only
        once the first has finished: a caller about to exit must not leave a
        child that ignores SIGTERM behind a first call still waiting to SIGKILL it.
        """
        with self._lock:
            first = not self._closed
            if first:
                self._closed = True
                for record in self._records.values():
                    if record.alive:
                        with contextlib.suppress(ProcessError):
                            record.signal_group(signal.SIGTERM)
        if not first:
            self._shut_down.wait(timeout + 5.0)
            return
        try:
            self._finish_shutdown(timeout)
        finally:
            self._shut_down.set()

    def _finish_shutdown(self, timeout: float) -> None:
        if not self.wait_all(timeout):
            with self._lock:
                for record in self._records.values():
                    if record.alive:
                        with contextlib.suppress(ProcessError):
                            record.signal_group(signal.SIGKILL)
            self.wait_all(2.0)
        self._requests.put(None)
        self._launcher.join(1.0)
        with self._lock:
            if self._lifeline is not None:
                for fd in self._lifeline:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._lifeline = None
            threads = [t for r in self._records.values() for t in r.threads]
        deadline = time.monotonic() + 1.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._atexit:
            atexit.unregister(self.shutdown)

    def install_signal_handlers(
        self,
        signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT),
    ) -> dict[int, object]:
        """On these signals: shut down (stop every child), then exit with 128 + signal.

        Optional: a UI may handle signals itself and call :meth:`shutdown`.
        Must be called from the main thread. Returns the previous handlers.

        Raises:
            ProcessError: not called from the main thread.
        """
        if threading.current_thread() is not threading.main_thread():
            raise ProcessError("signal handlers can only be installed from the main thread")

        def handler(signum: int, frame: FrameType | None) -> None:
            self.shutdown()
            raise SystemExit(128 + signum)

        previous: dict[int, object] = {}
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)
        return previous
