"""The main screen's sentences: what a row is, why a key cannot act, how a command
reads. Pure functions of the model, so they are tested without a screen."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Mapping

from rich.text import Text

from app.core.model import Socket, owner_help
from app.core.procs import ProcessStarted
from app.ui.rows import ViewOptions


def kill_refusal(sock: Socket) -> str | None:
    """Why ``k`` cannot kill the owner of ``sock``, in words; None when it can."""
    if sock.owner == "process" and sock.pid is not None:
        return None
    if sock.owner == "hidden" or sock.pid is None and sock.owner != "kernel":
        return f"Cannot kill the owner of {sock.local}: {owner_help('hidden')}."
    why = {
        "TIME_WAIT": "it is in TIME_WAIT; the kernel ends it by itself within about 60 s.",
        "SYN_RECV": "it is a handshake the kernel answers for the listening server.",
    }.get(sock.state)
    if why is None and sock.waiting_in_backlog:
        why = "it waits in a backlog; kill the server that listens instead."
    if why is None and sock.state in ("FIN_WAIT1", "FIN_WAIT2"):
        why = (
            f"its process closed it (or was killed); the kernel finishes the close "
            f"({sock.state}) and drops it about 60 s later, or, if the peer closes "
            "meanwhile, keeps it about 60 s more in TIME_WAIT."
        )
    if why is None and sock.state in ("CLOSING", "LAST_ACK"):
        why = f"both ends have closed ({sock.state}); it goes away within moments."
    return f"No process holds {sock.local}: " + (why or f"{owner_help('kernel')}.")


def short_state(state: str) -> str:
    """A process state short enough for the Lab table: ``stopped by SIGTERM (exit 143)`` is
    ``SIGTERM``, ``killed by SIGKILL`` is ``SIGKILL``, ``exited 1`` is ``exit 1``."""
    if state.startswith(("stopped by ", "killed by ")):
        return state.split(" by ", 1)[1].split(" (")[0]
    if state.startswith("exited "):
        return "exit " + state.split()[1]
    return state


def command_of(event: ProcessStarted) -> str:
    """What a student would type for a started process (not ``python -m ...``)."""
    argv = list(event.argv)
    if event.program is not None and "-m" in argv:  # python -m app.labs.X ARGS
        argv = [event.program, *argv[argv.index("-m") + 2 :]]
    return shlex.join(argv)


def socket_words(sock: Socket) -> str:
    """The highlighted row in one sentence: who holds it, or why nobody does."""
    if sock.owner == "process":
        return (
            f"{sock.local} {sock.state}: pid {sock.pid} {sock.process} ({sock.user}): "
            f"{' '.join(sock.cmdline) or sock.process}"
        )
    if sock.waiting_in_backlog:
        return (
            f"{sock.local} ← {sock.remote}: handshake done, waiting in the listener's "
            "backlog; no process has accept()ed it yet."
        )
    if sock.state == "TIME_WAIT":
        return (
            f"{sock.local} → {sock.remote}: TIME_WAIT. This side closed first; the "
            "kernel keeps it about 60 s so late packets cannot confuse a new connection."
        )
    return f"{sock.local}: {sock.owner}: {owner_help(sock.owner)}."


def owner_hints(socks: Iterable[Socket]) -> str:
    """With no row highlighted: what the owners other than a process mean."""
    kinds = {s.owner for s in socks} - {"process"}
    return "  ".join(f"{k}: {owner_help(k)}." for k in sorted(kinds))


def table_title(name: str, shown: int, total: int, gone: int) -> str:
    """A socket table's title with its count: what is open now, as the status line counts
    it; rows still shown as "- GONE" apart, and how many the view shows."""
    count = f"{total - gone}" + (f" (+{gone} gone)" if gone else "")
    if shown < total:
        count += f" · {shown} shown"
    if name == "listen":
        return f"LISTEN  (like netstat -tulpn) · {count}"
    if name == "established":
        return f"ESTABLISHED  (like ss -n state established) · {count}"
    return f"{count} sockets"


def close_question(sock: Socket, peer: Socket | None) -> str:
    """The close dialog's words: both ends, and what each end's process will see."""
    return (
        f"End this TCP connection, as ss -K does?\n\n"
        f"  this end:  {sock.local}  {sock.state}  {sock.owner_label}\n"
        f"  the peer:  {sock.remote}"
        + (f"  {peer.state}  {peer.owner_label}" if peer is not None else "")
        + "\n\nThe owner's blocked recv() gets ECONNABORTED; the peer gets a reset."
    )


def events_title(seeing: str | None) -> str:
    """The Events box's title, with what the event stream sees (``seeing``): every
    transition (root, the tracepoint), or samples, with who would see more."""
    if seeing is None:
        return "Events (newest first)"
    if seeing.startswith("every transition"):
        return "Events (newest first) · every transition"
    return "Events · sampled (root sees every one)"


def status_line(
    counts: Mapping[str, int] | None,
    options: ViewOptions,
    interval: float,
    slow: float,
    frozen: bool,
    error: str | None,
    stamp: float,
) -> Text:
    """The top line: the counts (None before the first poll), the view, the poll's pace,
    what is wrong, the time, and where every key is."""
    parts = [Text("Observatory", style="bold")]
    if counts is not None:
        for state in ("LISTEN", "ESTABLISHED", "TIME_WAIT"):
            parts.append(Text(f"{counts.get(state, 0)} {state}"))
        if options.lab_pids is not None:
            parts.append(Text("lab only", style="bold"))
        if options.family:
            parts.append(Text(f"IPv{options.family} only", style="bold"))
        if options.text:
            parts.append(Text(f"filter: {options.text}", style="bold"))
    parts.append(Text(f"every {interval:g} s"))
    if slow > max(0.5, interval):
        parts.append(Text(f"slow poll {slow:.1f} s", style="bold reverse"))
    if frozen:
        parts.append(Text("FROZEN (space to resume)", style="bold reverse"))
    if error:
        parts.append(Text(error, style="bold reverse"))
    parts.append(Text(time.strftime("%H:%M:%S", time.localtime(stamp))))
    parts.append(Text("ctrl+p: every key", style="bold"))
    return Text(" · ").join(parts)
