"""The launch in small steps: from a name and a command to a child that runs.

A built-in lab program is checked and given its ``python -m app.labs.X``
command line (:func:`builtin_launch`); any other command is checked and put
under the supervisor of :mod:`app.core.shim` (:func:`command_launch`). Then a
record is made for the name (:func:`new_record`), the child is given the
descriptors it needs (:func:`child_descriptors`: the lifeline a built-in
watches, or the pipe on which the supervisor says its command's pid), and it
is forked on the one :class:`Launcher` thread (:func:`start_child`). What ties
these steps to the manager's state (reserving the name, adopting the child,
starting its readers) is in :class:`ProcessManager`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from app.core.procs.errors import LaunchError
from app.core.procs.output import OutputBuffer
from app.core.procs.records import ProcessRecord

# Environment the built-in lab programs read (app.labs._process.install_parent_guard).
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

# What runs, what is shown as its arguments, and its environment.
Launch = tuple[list[str], tuple[str, ...], dict[str, str]]


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


def builtin_launch(program: str, args: Sequence[str], env: Mapping[str, str] | None) -> Launch:
    """A built-in's ``python -m app.labs.X ARGS``, its arguments checked first.

    Raises:
        LaunchError: unknown program or bad arguments (the program's own words).
    """
    from app.labs import PROGRAMS, LabUsageError, validate

    words = [str(a) for a in args]
    try:
        validate(program, words)
    except LabUsageError as exc:
        raise LaunchError(str(exc)) from None
    except ImportError as exc:
        raise LaunchError(f"the built-in program {program!r} is not available ({exc})") from None
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONUNBUFFERED"] = "1"
    pythonpath = full_env.get("PYTHONPATH")
    full_env["PYTHONPATH"] = (
        _PROJECT_ROOT if not pythonpath else f"{_PROJECT_ROOT}{os.pathsep}{pythonpath}"
    )
    argv = [sys.executable, "-m", PROGRAMS[program], *words]
    return argv, tuple(words), full_env


def supervised(argv: Sequence[str]) -> list[str]:
    """``argv`` run under the supervisor (:mod:`app.core.shim`)."""
    # -I -S: the shim needs only the standard library; isolated mode starts
    # faster and cannot import a student's own "app" folder by accident.
    return [sys.executable, "-I", "-S", SHIM_PATH, "--", *argv]


def in_netns(argv: list[str], netns: str | None) -> list[str]:
    """``argv`` run inside a lab host's network namespace, as a student would type it:
    ``ip netns exec NS ...`` (it execs, so the pid is the program's own)."""
    return argv if netns is None else ["ip", "netns", "exec", netns, *argv]


def command_launch(
    argv: Sequence[str], cwd: str | os.PathLike[str] | None, env: Mapping[str, str] | None
) -> Launch:
    """Any command, checked to be runnable, under the supervisor.

    Raises:
        LaunchError: empty argv, or the program does not exist or is not executable.
    """
    words = [str(a) for a in argv]
    if not words:
        raise LaunchError("the command is empty: give a program and its arguments")
    cwd_text = None if cwd is None else os.fspath(cwd)
    problem = executable_problem(words[0], cwd_text, env)
    if problem:
        raise LaunchError(problem)
    full_env = dict(os.environ if env is None else env)
    return supervised(words), tuple(words), full_env


def new_record(
    name: str,
    real_argv: list[str],
    program: str | None,
    args: tuple[str, ...],
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    *,
    builtin: bool,
    output: OutputBuffer,
) -> ProcessRecord:
    """The record of a child about to start ("starting"), its name and folder checked.

    A built-in shows what actually runs; a command shows its own argv, not the
    supervisor's.

    Raises:
        LaunchError: the name breaks :data:`NAME_RULE`, or the folder does not exist.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise LaunchError(f"{name!r} cannot be a process name: {NAME_RULE}")
    cwd_text = None if cwd is None else os.fspath(cwd)
    if cwd_text is not None and not os.path.isdir(cwd_text):
        raise LaunchError(f"the folder {cwd_text} does not exist")
    return ProcessRecord(
        name=name,
        argv=tuple(real_argv) if builtin else args,
        program=program,
        args=args if builtin else args[1:],
        env=env,
        cwd=cwd_text,
        builtin=builtin,
        output=output,
    )


class Lifeline:
    """The pipe whose read end every built-in inherits and watches.

    The write end never leaves this process (``os.pipe()`` descriptors are
    not inheritable): when the observatory dies, the kernel closes it and
    every built-in reads end-of-file. Used with the manager's lock held.
    """

    def __init__(self) -> None:
        self._pipe: tuple[int, int] | None = None

    def read_end(self) -> int:
        """The read end to pass to a built-in (the pipe is made on first use)."""
        if self._pipe is None:
            self._pipe = os.pipe()
        return self._pipe[0]

    def close(self) -> None:
        """Close both ends (at shutdown); the next read_end() makes a new pipe."""
        if self._pipe is not None:
            for fd in self._pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipe = None


def child_descriptors(
    env: dict[str, str], builtin: bool, lifeline: Lifeline
) -> tuple[tuple[int, ...], tuple[int, int] | None]:
    """Name in ``env`` the descriptors a child inherits; returns them, and the pid report pipe.

    A built-in gets the lifeline's read end; a command's supervisor gets the
    write end of a new pipe (the report) on which it says its command's pid.
    Called with the manager's lock held (the lifeline is shared).
    """
    env[ENV_PARENT_PID] = str(os.getpid())
    if builtin:
        env.setdefault("PYTHONIOENCODING", "utf-8")
        read_end = lifeline.read_end()
        env[ENV_LIFELINE_FD] = str(read_end)
        return (read_end,), None
    report = os.pipe()
    env[ENV_PID_FD] = str(report[1])
    return (report[1],), report


@dataclass(frozen=True, slots=True)
class _LaunchRequest:
    argv: list[str]
    env: dict[str, str] | None
    cwd: str | None
    pass_fds: tuple[int, ...]
    result: Future[subprocess.Popen[bytes]]


class Launcher:
    """The one long-lived thread that forks every child.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends,
    so every ``Popen`` happens here, and this thread lives as long as the
    manager; :meth:`popen` hands it a request and waits for the result.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[_LaunchRequest | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="observatory-launcher", daemon=True)
        self._thread.start()

    def popen(
        self, argv: list[str], env: dict[str, str], cwd: str | None, pass_fds: tuple[int, ...]
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` on the launcher thread; blocks until it has started (or raises)."""
        request = _LaunchRequest(argv, env, cwd, pass_fds, Future())
        self._requests.put(request)
        return request.result.result()

    def stop(self, timeout: float) -> None:
        """End the thread (after the requests already handed to it)."""
        self._requests.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
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


def start_child(
    launcher: Launcher,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    pass_fds: tuple[int, ...],
    report: tuple[int, int] | None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Fork the child on the launcher; returns it and the pid to show.

    That pid is the child's own, or, under a supervisor, the one the supervisor
    reports for its command (the supervisor's when it says none). Both ends of
    the report pipe are closed here.
    """
    try:
        try:
            popen = launcher.popen(argv, env, cwd, pass_fds)
        finally:
            if report is not None:
                os.close(report[1])  # only the supervisor may hold it: EOF if it dies
        pid = popen.pid if report is None else _read_pid(report[0]) or popen.pid
    finally:
        if report is not None:
            os.close(report[0])
    return popen, pid
