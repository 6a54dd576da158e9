"""Run a command so that it dies with the observatory: ``shim.py -- COMMAND [ARGS...]``.

The process manager starts every non-built-in command through this shim. It
asks the kernel to send SIGTERM when its parent dies (``PR_SET_PDEATHSIG``,
which survives ``exec`` for ordinary, non-setuid programs), checks that the
parent has not died already, and then *becomes* the command with ``execvp``:
same pid, and ``ps`` shows the command, not the shim.

Standard library only and nothing imported that is not needed: it runs
before every command, so it must start fast. Works both as
``python -m app.core.shim -- CMD`` and as ``python -I -S .../shim.py -- CMD``.
"""

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
ENV_PARENT_PID = "OBSERVATORY_PARENT_PID"


def _set_parent_death_signal(sig: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the manager's shutdown still applies
        pass


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--":
        sys.stderr.write("usage: shim -- COMMAND [ARGS...]\n")
        return 2
    command = argv[1:]
    _set_parent_death_signal(signal.SIGTERM)
    parent = os.environ.get(ENV_PARENT_PID, "")
    if parent.isdigit() and os.getppid() != int(parent):
        return 1  # the observatory died before we asked for the signal: do not start
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored
    # across exec, so give the command the defaults a shell would.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
