"""Run a command so that it, and all it starts, dies with the observatory.

``shim.py -- COMMAND [ARGS...]``. The process manager starts every
non-built-in command through this shim, which stays as the command's
*supervisor*: a small parent between the observatory and the command.

Why a supervisor, and not only ``PR_SET_PDEATHSIG`` on the command: the
kernel clears that setting in every forked child, so the command's own
children (``sh -c 'sleep 777 & sleep 778'``) never get it, and a background
child is reparented to init as soon as its parent exits. A supervisor that
is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``) keeps every orphan of
the tree as its own child instead, so the whole tree stays findable below
one pid, with no cgroup and no privilege. Then:

* the supervisor has ``PR_SET_PDEATHSIG`` (and also notices its parent
  change): when the observatory dies, even by SIGKILL, it sends SIGTERM to
  the command's process group and to every process below it or in the
  command's session, waits at most :data:`GRACE` seconds, SIGKILLs what is
  left, and exits;
* when the command ends on its own (or is killed by the manager), what it
  left behind (a background child, a daemon that called ``setsid()`` and
  forked again) is stopped the same way, so nothing of it outlives it;
* the supervisor then exits with the command's own status: the same exit
  code, or killed by the same signal, so the manager reports ``exited 3`` or
  ``killed by SIGKILL`` as before.

The command itself is forked by the supervisor into a session and process
group of its own (its pid = its group id = its session id), gets
``PR_SET_PDEATHSIG`` for its own parent (the supervisor), an empty signal
mask, default SIGPIPE/SIGXFSZ, and is ``exec``\\ ed. Its pid (what ``ps`` and
``ss`` show for the program) is written as one line to the descriptor named
by ``OBSERVATORY_PID_FD`` once it runs; that is the pid the manager shows.

The supervisor never reaps the command before the very end: until then the
command's pid, group id and session id cannot be reused, so signalling them
cannot hit a stranger.

Standard library only and nothing imported that is not needed: it runs
before every command, so it must start fast. Works both as
``python -m app.core.shim -- CMD`` and as ``python -I -S .../shim.py -- CMD``.
Off Linux (no subreaper) it simply becomes the command (same pid).
"""

import os
import signal
import sys
import time

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

ENV_PARENT_PID = "OBSERVATORY_PARENT_PID"
ENV_PID_FD = "OBSERVATORY_PID_FD"

GRACE = 1.0  # seconds between SIGTERM and SIGKILL for what is left of a tree
SUPERVISOR_NAME = b"obs-supervisor"  # what ps shows for the supervisor itself

# Signals that ask the supervisor to take its tree down (PR_SET_PDEATHSIG sends SIGTERM).
_STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_WAITED = (signal.SIGCHLD, *_STOP)


def _prctl(option: int, value: int | bytes) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        arg: ctypes.c_char_p | ctypes.c_ulong
        arg = ctypes.c_char_p(value) if isinstance(value, bytes) else ctypes.c_ulong(value)
        zero = ctypes.c_ulong(0)
        return bool(libc.prctl(option, arg, zero, zero, zero) == 0)
    except (OSError, AttributeError):
        return False


# ------------------------------------------------------------------ the command


def _exec(command: list[str], parent: int) -> int:
    """In the forked child (or in place): become the command. Returns only on failure."""
    os.environ[ENV_PARENT_PID] = str(parent)
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored
    # across exec, so give the command the defaults a shell would. SIGINT has
    # Python's handler: back to the default before anything pending arrives.
    for name in ("SIGPIPE", "SIGXFSZ", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    # A signal sent to us while blocked is delivered here, with its default
    # action: a kill that came before the exec is not lost.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
    program = command[0]
    try:
        os.execvp(program, command)
    except FileNotFoundError:
        if "/" in program:
            sys.stderr.write(f"no such file: {program}\n")
        else:
            sys.stderr.write(f"command not found: {program}\n")
        return 127
    except PermissionError:
        hint = f"is it executable? try: chmod +x {program}"
        sys.stderr.write(f"permission denied: {program} ({hint})\n")
        return 126
    except OSError as exc:
        sys.stderr.write(f"cannot run {program}: {exc.strerror or exc}\n")
        return 126
    return 0  # not reached: execvp does not return


def _child(command: list[str], supervisor: int) -> None:
    """The forked child: own session, parent-death signal, then the command (never returns)."""
    code = 126
    try:
        os.setsid()  # pid = process group id = session id
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # if the supervisor itself is killed
        # 1: the supervisor is already gone, nothing must start.
        code = 1 if os.getppid() != supervisor else _exec(command, supervisor)
    finally:
        sys.stderr.flush()
        os._exit(code)


# ------------------------------------------------------------------ the tree


def _children() -> list[int]:
    """Our own children, zombies included (to reap them)."""
    found: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
        for tid in tasks:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                found += [int(p) for p in f.read().split()]
        return found
    except OSError:  # no CONFIG_PROC_CHILDREN: read every process's parent
        me = os.getpid()
        return [pid for pid, ppid, _, _, _ in _processes() if ppid == me]


def _processes() -> list[tuple[int, int, int, int, bytes]]:
    """(pid, ppid, process group, session, state) of every process in /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and ')'.
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            out.append((int(name), int(fields[1]), int(fields[2]), int(fields[3]), fields[0]))
        except (IndexError, ValueError):
            continue
    return out


def _tree(command: int) -> list[int]:
    """Every live process below us, or in the command's group or session.

    Below us covers everything the command started: orphans come to us, the
    subreaper. The group and session (ids = the command's pid, which we keep
    from reuse by not reaping it) also catch any that got away some other way.
    """
    me = os.getpid()
    procs = [p for p in _processes() if p[4] not in (b"Z", b"X")]  # a zombie cannot be signalled
    kids: dict[int, list[int]] = {}
    for pid, ppid, _, _, _ in procs:
        kids.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [me]
    while todo:
        for pid in kids.get(todo.pop(), ()):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    found.update(pid for pid, _, pgrp, sid, _ in procs if command in (pgrp, sid))
    found.discard(me)
    return sorted(found)


def _command_ended(command: int) -> bool:
    """The command has ended; it stays a zombie (not reaped) so its pid stays ours."""
    try:
        return os.waitid(os.P_PID, command, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _reap_others(command: int) -> None:
    for pid in _children():
        if pid != command:
            try:  # noqa: SIM105 (contextlib would cost this shim 7 ms of imports)
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _send(command: int, sig: int) -> bool:
    """Signal the command's group and every other process of the tree; False when none is left."""
    targets = _tree(command)
    if not targets:
        return False
    try:  # noqa: SIM105
        os.killpg(command, sig)
    except OSError:  # no member left in the group, or not ours to signal
        pass
    for pid in targets:
        try:  # noqa: SIM105
            os.kill(pid, sig)
        except OSError:  # gone meanwhile
            pass
    return True


def _pause(seconds: float) -> int | None:
    """Wait for a signal we block (SIGCHLD or a stop signal); its number, or None."""
    info = signal.sigtimedwait(_WAITED, max(0.0, seconds))
    return None if info is None else info.si_signo


def _take_down(command: int, sig: int) -> None:
    """``sig`` to the whole tree, at most GRACE seconds, then SIGKILL to what is left."""
    if not _send(command, sig):
        _reap_others(command)
        return
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        _pause(min(0.05, deadline - time.monotonic()))
        _reap_others(command)
        if not _tree(command):
            return
    for _ in range(50):  # a tree that keeps forking: sweep until it is empty
        if not _send(command, signal.SIGKILL):
            break
        _pause(0.02)
        _reap_others(command)
    _reap_others(command)


def _exit_like(status: int) -> int:
    """End the way the command ended: its exit code, or killed by the same signal."""
    if not os.WIFSIGNALED(status):
        return os.waitstatus_to_exitcode(status)
    sig = os.WTERMSIG(status)
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        # 1, not 0: the kernel's sign for "no core" also when core_pattern is a pipe.
        resource.setrlimit(resource.RLIMIT_CORE, (0 if hard == 0 else 1, hard))
    except (ImportError, OSError, ValueError):
        pass
    sys.stderr.flush()
    try:  # noqa: SIM105
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):  # SIGKILL cannot be handled: it needs no reset
        pass
    os.kill(os.getpid(), sig)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])  # delivered here, if not at once
    return 128 + sig  # a signal that ends nothing by default (never: the command died of it)


def _report(fd: int | None, pid: int) -> None:
    if fd is None:
        return
    try:
        os.write(fd, f"{pid}\n".encode())
        os.close(fd)
    except OSError:  # the manager is gone: nobody to tell
        pass


def _supervise(command: list[str], parent: int, report: int | None) -> int:
    me = os.getpid()
    _prctl(PR_SET_NAME, SUPERVISOR_NAME)
    # Blocked before the fork: no SIGCHLD or stop signal can be missed, and
    # the child starts with them blocked (it unblocks them just before exec).
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    ready_read, ready_write = os.pipe()  # close-on-exec: EOF once the command runs
    try:
        pid = os.fork()
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror or exc}\n")
        return 126
    if pid == 0:
        os.close(ready_read)  # ready_write is closed by the exec (or the exit)
        _child(command, me)
    os.close(ready_write)
    try:
        os.read(ready_read, 1)  # the command has exec'd (or failed): its pid means it now
    finally:
        os.close(ready_read)
    _report(report, pid)

    stop: int | None = None
    while not _command_ended(pid):
        _reap_others(pid)
        if os.getppid() != parent:  # the observatory is gone (PR_SET_PDEATHSIG's backstop)
            stop = signal.SIGTERM
            break
        got = _pause(1.0)
        if got in _STOP:
            stop = got
            break
    # Now, or once the command has ended: nothing of its tree may stay.
    _take_down(pid, signal.SIGTERM if stop is None else stop)
    _, status = os.waitpid(pid, 0)  # the last act: its pid may be reused from here on
    return _exit_like(status)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--":
        sys.stderr.write("usage: shim -- COMMAND [ARGS...]\n")
        return 2
    command = argv[1:]
    fd_text = os.environ.pop(ENV_PID_FD, "")
    report = int(fd_text) if fd_text.isdigit() else None
    if report is not None:
        try:
            os.set_inheritable(report, False)  # the command must not hold it
        except OSError:
            report = None
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = os.getppid()
    recorded = os.environ.get(ENV_PARENT_PID, "")
    if recorded.isdigit() and parent != int(recorded):
        return 1  # the observatory died before we asked for the signal: do not start
    if not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        # No subreaper (not Linux): at least the command itself gets the
        # parent-death signal, exec'd in place with our pid.
        _report(report, os.getpid())
        return _exec(command, parent)
    return _supervise(command, parent, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
