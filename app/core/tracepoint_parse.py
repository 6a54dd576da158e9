"""One line of the tracepoint's text (``trace_pipe``) as a :class:`Transition`.

Pure parsing, no tracefs: :func:`parse_line` reads the task columns
(``comm-tid (tgid) [cpu] flags timestamp``) and the event's ``key=value``
fields, and names the states as the model does. The format, and why a
softirq's line has no owner, are told in :mod:`app.core.tracepoint`, which
reads these lines from its own tracefs instance.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transition:
    """One ``tcp_set_state()`` call, in the model's vocabulary (see app.core.model)."""

    at: float  # epoch seconds
    proto: str  # "tcp" or "tcp6" (the socket's family)
    local_addr: str
    local_port: int  # 0 before connect() picks a port
    remote_addr: str | None  # None when there is no peer (dport 0: a listener)
    remote_port: int | None
    old_state: str
    new_state: str
    pid: int | None  # the process that made the change; None when the kernel did (softirq)
    process: str | None  # its comm; None in softirq, or when nobody knows any more


_LINE = re.compile(
    r"^\s*(?P<comm>.+)-(?P<tid>\d+)\s+"
    r"(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?"  # option record-tgid
    r"\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\d][^\s]*)\s+)?"  # option irq-info: "d.s1." etc.
    r"(?P<ts>\d+\.\d+):\s+inet_sock_set_state:\s+(?P<body>.*?)\s*$"
)
_LOST = re.compile(r"\[LOST (\d+) EVENTS\]")
# The third flag column: h hardirq, s softirq, H hardirq inside softirq, z/Z NMI.
_INTERRUPT_FLAGS = frozenset("hsHzZ")


def _state(kernel_name: str) -> str:
    name = kernel_name.removeprefix("TCP_")
    return "SYN_RECV" if name == "NEW_SYN_RECV" else name


def _v6(text: str) -> str:
    """The address as inet_ntop prints it (what app.core.sockets shows)."""
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
    except (OSError, ValueError):
        return text


def parse_with_lookup(line: str, epoch_offset: float) -> tuple[Transition, int | None, bool] | None:
    """The transition, and the thread id to ask /proc about when the line lacks comm/tgid.

    The third item says the pid is only that thread's id (the tgid column shows dashes):
    once the thread is gone, it is no process's pid.
    """
    match = _LINE.match(line)
    if match is None:
        return None
    sock = _tcp_socket(_key_values(match["body"]))
    if sock is None:
        return None
    proto, local, sport, remote, dport, old_state, new_state = sock
    pid, process, lookup, guessed = _owner(match)
    transition = Transition(
        at=float(match["ts"]) + epoch_offset,
        proto=proto,
        local_addr=local,
        local_port=sport,
        remote_addr=remote if dport else None,
        remote_port=dport or None,
        old_state=old_state,
        new_state=new_state,
        pid=pid,
        process=process,
    )
    return transition, lookup, guessed


def _key_values(body: str) -> dict[str, str]:
    """The event's ``key=value`` words (a word without ``=`` is skipped)."""
    fields: dict[str, str] = {}
    for word in body.split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


def _tcp_socket(fields: dict[str, str]) -> tuple[str, str, int, str, int, str, str] | None:
    """(proto, local address, sport, remote address, dport, old state, new state).

    None for another protocol or family, or when a field is missing or not a number.
    """
    try:
        family = fields["family"]
        if fields.get("protocol", "IPPROTO_TCP") != "IPPROTO_TCP":
            return None
        sport = int(fields["sport"])
        dport = int(fields["dport"])
        old_state = _state(fields["oldstate"])
        new_state = _state(fields["newstate"])
        if family == "AF_INET6":
            proto, local, remote = "tcp6", _v6(fields["saddrv6"]), _v6(fields["daddrv6"])
        elif family == "AF_INET":
            proto, local, remote = "tcp", fields["saddr"], fields["daddr"]
        else:
            return None
    except (KeyError, ValueError):
        return None
    return proto, local, sport, remote, dport, old_state, new_state


def _owner(match: re.Match[str]) -> tuple[int | None, str | None, int | None, bool]:
    """Who changed the state: (pid, comm, thread id to ask /proc about, pid guessed).

    Nobody (None, None, None, False) when the kernel did, in an interrupt: the
    task in the line merely happened to be running.
    """
    flags = match["flags"]
    in_process = flags is not None and len(flags) >= 3 and flags[2] not in _INTERRUPT_FLAGS
    tid = int(match["tid"])
    if not in_process or tid <= 0:
        return None, None, None, False
    tgid = match["tgid"]
    comm = match["comm"].strip()
    known_comm = comm != "<...>"
    # Without the tgid cache a thread's id is not its process's pid: ask /proc.
    guessed = tgid is not None and not tgid.isdigit()
    pid = int(tgid) if tgid is not None and tgid.isdigit() else tid
    lookup = tid if not known_comm or guessed else None
    return pid, comm if known_comm else None, lookup, guessed


def parse_line(line: str, epoch_offset: float) -> Transition | None:
    """One line of ``trace_pipe`` as a :class:`Transition`; None for any other line.

    ``epoch_offset`` turns the line's timestamp (CLOCK_MONOTONIC seconds, the
    instance's ``mono`` clock) into epoch seconds: ``time.time() - time.monotonic()``.
    Pure: a comm shown as ``<...>`` stays None here (``StateTracer.read`` asks /proc).
    """
    parsed = parse_with_lookup(line, epoch_offset)
    return None if parsed is None else parsed[0]


def lost_events(line: str) -> int:
    match = _LOST.search(line)
    return int(match[1]) if match else 0
