"""A lab program as a Linux process: its name, its parent guard, its stop signals.

Standard library only, and cheap to import: a tiny exec shim may import
:func:`set_pdeathsig` from here before it execs another program.
:func:`start_program` is what every lab program does first; a stop signal
then raises :class:`Stopped` in the main thread, which
:func:`app.labs._common.run_main` turns into ``Stopped by SIGTERM`` and
exit code 128 + N.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from types import FrameType

from app.labs import whole_number

# The dashboard's process manager sets these for the programs it starts.
PARENT_PID_ENV = "OBSERVATORY_PARENT_PID"
LIFELINE_FD_ENV = "OBSERVATORY_LIFELINE_FD"

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_COMM_LEN = 15  # TASK_COMM_LEN - 1: longer names are cut by the kernel


class Stopped(BaseException):
    """Raised in the main thread by a stop signal.

    A BaseException so that ``except Exception`` around socket calls does
    not swallow the request to stop.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _prctl(option: int, arg: int | bytes) -> bool:
    """Call prctl(2) through libc; False off Linux or when the call fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value: ctypes.c_char_p | ctypes.c_ulong
        value = ctypes.c_char_p(arg) if isinstance(arg, bytes) else ctypes.c_ulong(arg)
        result = libc.prctl(option, value, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (OSError, AttributeError):
        return False
    return bool(result == 0)


def set_process_name(name: str) -> bool:
    """Set this process's name (comm: what ps, ss and psutil ``name()`` show).

    Only the first 15 bytes count. Returns False where that is impossible.
    """
    return _prctl(_PR_SET_NAME, name.encode("utf-8", "replace")[:_COMM_LEN])


def set_pdeathsig(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    Strictly, when the parent *thread* that forked this process exits. The
    setting survives exec (of a program that is not set-user-ID), so an exec
    shim may call it and then exec. Returns False off Linux (a no-op there).
    """
    return _prctl(_PR_SET_PDEATHSIG, int(sig))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _block_stop_signals() -> None:
    """Keep stop signals away from this (helper) thread.

    Python runs signal handlers in the main thread, but the kernel may
    deliver a process-wide signal to any thread; a main thread blocked in
    accept() would then not be interrupted. Blocking them in helper threads
    makes the kernel pick the main thread.
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def start_helper_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread that never receives stop signals."""

    def run() -> None:
        _block_stop_signals()
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _watch_lifeline(fd: int) -> None:
    """Block reading the lifeline pipe; EOF means every writer (the parent) is gone."""
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass
    os._exit(128 + signal.SIGTERM)


def install_parent_guard(sig: int = signal.SIGTERM) -> None:
    """Make this process exit when its parent dies.

    1. ``PR_SET_PDEATHSIG``: the kernel sends ``sig`` when the parent exits.
    2. The standard race fix: if the parent died before step 1, the signal
       will never come, so compare with the parent recorded at start
       (``OBSERVATORY_PARENT_PID`` if set, else ``os.getppid()``) and exit now
       if that parent is gone. (When the variable names an ancestor that is
       still alive, e.g. a shell script sits in between, nothing happens.)
    3. Fallback: if ``OBSERVATORY_LIFELINE_FD=<n>`` names an inherited pipe
       read end, a daemon thread reads it and ``os._exit``\\ s at EOF, that
       is when the parent, which holds the write end, is gone.

    Both variables are removed from the environment so they do not leak.
    """
    parent = os.getppid()
    recorded = whole_number(os.environ.pop(PARENT_PID_ENV, ""))
    if recorded:
        parent = recorded
    set_pdeathsig(sig)
    if os.getppid() != parent and not _pid_alive(parent):
        os._exit(128 + sig)

    fd = whole_number(os.environ.pop(LIFELINE_FD_ENV, ""))
    if fd is not None:
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return  # not an open descriptor: nothing to watch
        # A regular file or a terminal would read EOF (or block) for other reasons.
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            os.set_inheritable(fd, False)
            start_helper_thread(lambda: _watch_lifeline(fd), "lifeline")


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def install_stop_handlers() -> dict[int, object]:
    """SIGTERM/SIGINT/SIGHUP raise :class:`Stopped` in the main thread (no traceback).

    Returns the handlers they replace, for :func:`restore_handlers`.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # signal.signal works only there; the caller handles stopping
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, _raise_stopped)
    return previous


def restore_handlers(previous: dict[int, object]) -> None:
    """Put back what :func:`install_stop_handlers` replaced (for in-process callers)."""
    for sig, handler in previous.items():
        with contextlib.suppress(TypeError, ValueError):
            signal.signal(sig, handler)  # type: ignore[arg-type]


def start_program(name: str) -> dict[int, object]:
    """Everything a lab program does first: output, name, signals, parent guard.

    Returns the signal handlers replaced (see :func:`restore_handlers`).
    """
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    set_process_name(name)
    previous = install_stop_handlers()
    install_parent_guard()
    return previous
