"""The process manager: one object that starts, watches and stops every child of the lab.

:class:`ProcessManager` owns the children's records (by name, in launch
order) under one lock, and composes the package's parts: the launch steps and
the launcher thread (:mod:`.launch`), each child's record (:mod:`.records`)
with its output buffer (:mod:`.output`), the event hub (:mod:`.events`) and
the foreign kills (:mod:`.foreign`). Its guarantees and thread model are in
the package docstring (:mod:`app.core.procs`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import IO

from app.core.procs.errors import LaunchError, ProcessError
from app.core.procs.events import (
    EventHub,
    OutputLine,
    ProcessEvent,
    Stream,
    Subscriber,
)
from app.core.procs.foreign import ForeignProcess, describe_foreign, kill_foreign
from app.core.procs.launch import (
    ENV_LIFELINE_FD,
    Launcher,
    Lifeline,
    builtin_launch,
    child_descriptors,
    command_launch,
    in_netns,
    new_record,
    start_child,
    supervised,
)
from app.core.procs.output import OutputBuffer
from app.core.procs.records import ProcessInfo, ProcessRecord, Target


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
        self._lifeline = Lifeline()
        self._launcher = Launcher()
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
        netns: str | None = None,
    ) -> ProcessInfo:
        """Start a built-in lab program (``tcp-server``...) as ``python -m app.labs.X ARGS``.

        Its arguments are checked first (the same words the program would
        print). Returns once the child runs. ``netns``: the network namespace of
        a lab host to run it in (``ip netns exec NS``, which keeps the pid).

        Raises:
            LaunchError: unknown program, bad arguments, name in use, or the
                operating system could not start it.
        """
        argv, words, full_env = builtin_launch(program, args, env)
        argv = in_netns(argv, netns)
        return self._launch(name, argv, program, words, full_env, cwd, builtin=True)

    def launch_command(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
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
        real, words, full_env = command_launch(argv, cwd, env)
        real = in_netns(real, netns)
        return self._launch(name, real, None, words, full_env, cwd, builtin=False)

    def _launch(
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
        output = OutputBuffer(self._max_lines, self._max_line_bytes)
        record = new_record(
            name, real_argv, program, args, env, cwd, builtin=builtin, output=output
        )
        with self._lock:
            old = self._reserve(record)
            pass_fds, report = child_descriptors(env, builtin, self._lifeline)
        try:
            popen, pid = start_child(self._launcher, real_argv, env, record.cwd, pass_fds, report)
        except OSError as exc:
            self._unreserve(record, old)
            raise LaunchError(f"could not start {name}: {exc.strerror or exc}") from None
        except BaseException:
            self._unreserve(record, None)
            raise
        self._adopt(record, popen, pid)
        self._events.emit(record.started_event())
        self._watch(record, popen)
        return record.info()

    def _reserve(self, record: ProcessRecord) -> ProcessRecord | None:
        """Give the record its name ("starting") so two launches cannot race for it.

        Called with the lock held. Returns the ended record of that name it
        replaces (its output is dropped: ProcessStarted.replaced says so), if any.
        """
        if self._closed:
            raise LaunchError("the process manager has shut down; nothing more can start")
        name = record.name
        old = self._records.get(name)
        if old is not None and old.returncode is None:
            where = f"pid {old.pid}" if old.pid else "starting"
            raise LaunchError(
                f"a process named {name!r} is already running ({where}); "
                "stop it first or choose another name"
            )
        if old is not None:
            record.replaced = old.state
        self._records.pop(name, None)  # a relaunch goes to the end of the list
        self._records[name] = record
        return old

    def _unreserve(self, record: ProcessRecord, old: ProcessRecord | None) -> None:
        """The launch failed: free the name again (or give it back to ``old``)."""
        with self._lock:
            if self._records.get(record.name) is record:
                del self._records[record.name]
                if old is not None:
                    self._records[record.name] = old
            self._changed.notify_all()

    def _adopt(self, record: ProcessRecord, popen: subprocess.Popen[bytes], pid: int) -> None:
        """The child runs: its record says so (or it is killed if shutdown came first)."""
        with self._lock:
            record.adopt(popen, pid)
            if self._closed:  # shutdown() ran while we were starting: do not leave it behind
                with contextlib.suppress(ProcessError):
                    record.signal_group(signal.SIGKILL)
            self._changed.notify_all()

    def _watch(self, record: ProcessRecord, popen: subprocess.Popen[bytes]) -> None:
        """Start the child's two reader threads (stdout, stderr) and its waiter."""
        assert popen.stdout is not None and popen.stderr is not None
        name = record.name
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
            record.escalate(timeout)
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
        real = list(record.argv) if record.builtin else supervised(record.argv)
        args = record.args if record.builtin else record.argv
        return self._launch(
            record.name, real, record.program, args, env, record.cwd, builtin=record.builtin
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
                    with contextlib.suppress(ProcessError):
                        record.escalate(timeout)
            self.wait_all(2.0)
        self._launcher.stop(1.0)
        with self._lock:
            self._lifeline.close()
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
