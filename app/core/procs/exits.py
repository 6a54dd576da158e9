"""How a child ended, in words: its state, and what the observatory knows of why.

:func:`state_text` turns a return code into "exited 1", "killed by SIGKILL" or
"stopped by SIGTERM (exit 143)"; :func:`explain_failure` adds, to a failed
program's last line, what the observatory can tell (who holds the port behind
"Address already in use").
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterable, Sequence


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def state_text(returncode: int, sent: Iterable[int] = ()) -> str:
    """``exited 0`` / ``killed by SIGKILL`` from a Popen return code.

    A program that catches the stop signal we sent and exits with 128 + that
    signal (as the built-ins do: 143 after SIGTERM) is "stopped by SIGTERM
    (exit 143)".
    """
    if returncode < 0:
        return f"killed by {_signal_name(-returncode)}"
    if returncode > 128 and returncode - 128 in sent:
        return f"stopped by {_signal_name(returncode - 128)} (exit {returncode})"
    return f"exited {returncode}"


# perror()'s words for EADDRINUSE (glibc and musl), as a C server prints them.
_IN_USE = os.strerror(errno.EADDRINUSE)


def explain_failure(reason: str, args: Sequence[str]) -> str | None:
    """Words to add to a failed program's last line, when the observatory knows more.

    "Address already in use" (``perror("bind")`` of the lecture's tcp_server1):
    names what holds the port, from one poll of the kernel's sockets. The
    port is the program's only argument from 1 to 65535 (``./tcp_server1
    6000``); a lab program's own line already says it all (None).
    """
    if _IN_USE.lower() not in reason.lower() or "observatory snapshot" in reason:
        return None
    from app.labs import whole_number

    numbers = (whole_number(a) for a in args)
    ports = {n for n in numbers if n is not None and 1 <= n <= 65535}
    if len(ports) != 1:
        return (
            "bind() found the port taken: by a listener, or by a connection's end that "
            "lingers in FIN_WAIT2 or TIME_WAIT after its program was closed or killed; "
            "`observatory snapshot --all` shows which"
        )
    port = ports.pop()
    try:
        from app.core.portuse import holder_summary
        from app.core.sockets import default_source

        summary = holder_summary(default_source().poll().sockets, "0.0.0.0", port)
    except Exception:  # only a hint: never let it hide the exit itself
        summary = None
    see = f"`observatory snapshot --all --port {port}`"
    if summary is None:
        return (
            f"bind() found port {port} taken, though no socket on it is listed now (a "
            f"socket only bound, not listening, is not listed; or the holder has just "
            f"gone): see {see}"
        )
    return f"bind() found port {port} taken: {summary}; see {see}"
