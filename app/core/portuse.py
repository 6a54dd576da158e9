"""Would bind() of ADDRESS:PORT fail, and why: one sentence a student understands.

Pure: it reads nothing, it judges the sockets it is given (one poll's).

What Linux does (measured on loopback, as root and as nobody, both alike):

* a LISTEN socket on an overlapping address always blocks the bind, with or
  without SO_REUSEADDR on either socket;
* any other socket holding the port (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2,
  TIME_WAIT, ...: e.g. the accepted connection of a server that was killed)
  blocks it unless BOTH the old socket and the new one set SO_REUSEADDR
  before bind(). sock_diag does not report whether the old one did, so with
  SO_REUSEADDR on the new socket the answer is only "may fail";
* addresses overlap when they are equal or either is a wildcard: 0.0.0.0
  covers every IPv4 address, ``::`` every IPv6 address and (dual-stack, the
  Linux default) every IPv4 one too; ``::ffff:127.0.0.1`` is 127.0.0.1.
  A connection of a dual-stack server listed with a plain IPv6 address
  (``[::1]:6000``) still blocks a bind of 0.0.0.0 (not of 127.0.0.1), except
  when its listener was bound to that IPv6 address: a "may" again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from app.core.model import Socket, format_endpoint

# How the kernel keeps an end after close(); Linux: TCP_TIMEWAIT_LEN and the
# default net.ipv4.tcp_fin_timeout, both 60 s.
TIME_WAIT_SECONDS = 60
FIN_TIMEOUT_SECONDS = 60

_V4_ANY = ipaddress.IPv4Address("0.0.0.0")
_V6_ANY = ipaddress.IPv6Address("::")


@dataclass(frozen=True, slots=True)
class _Span:
    """Which addresses a socket's local address covers, per family.

    ``v4``/``v6``: None (none of that family), "any" (the wildcard) or one
    address. ``v4_wildcard_only``: it collides only with an IPv4 wildcard bind
    (a dual-stack server's plain IPv6 connection); ``unsure``: that collision
    depends on what the kernel does not report.
    """

    v4: str | None
    v6: str | None
    v4_wildcard_only: bool = False
    unsure: bool = False


def _span_of_new(address: str, v6only: bool) -> _Span | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return _Span("any" if ip == _V4_ANY else str(ip), None)
    if ip.ipv4_mapped is not None:
        return _Span(str(ip.ipv4_mapped), None)
    if ip == _V6_ANY:
        return _Span(None if v6only else "any", "any")
    return _Span(None, str(ip))


def _span_of_holder(sock: Socket) -> _Span | None:
    span = _span_of_new(sock.local_addr, v6only=False)
    if span is None or span.v6 is None:  # IPv4 (or IPv4-mapped)
        return span
    if span.v6 == "any":
        # IPV6_V6ONLY is not in the model: assume dual-stack (the default), unsure.
        return dataclasses.replace(span, unsure=True)
    if sock.state != "LISTEN" and sock.is_tcp:
        return _Span(None, span.v6, v4_wildcard_only=True, unsure=True)
    return span


def _meet(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and (a == "any" or b == "any" or a == b)


def _overlap(new: _Span, holder: _Span) -> tuple[bool, bool]:
    """(they overlap, only maybe)."""
    if _meet(new.v6, holder.v6):
        return True, False
    if holder.v4_wildcard_only:
        return new.v4 == "any", True
    if _meet(new.v4, holder.v4):
        # A :: holder blocks IPv4 only when dual-stack, which the model does not say.
        return True, holder.unsure
    return False, False


def _owner_words(sock: Socket) -> str:
    if sock.owner == "process":
        user = f", user {sock.user}" if sock.user else ""
        return f"held by {sock.pid}/{sock.process or '?'}{user}"
    if sock.owner == "hidden":
        who = f"user {sock.user}" if sock.user else "another user"
        return f"held by a process of {who} (hidden from you: run as root to see which)"
    return "held by the kernel: no process"


def _describe(sock: Socket) -> str:
    if sock.remote_addr is None or sock.remote_port is None:
        return f"{sock.proto} {sock.local}"
    return f"{sock.local} → {sock.remote}"


def _peer(sock: Socket, sockets: list[Socket]) -> Socket | None:
    """The other end of a loopback connection, when it is on this machine too."""
    for other in sockets:
        if (
            other.local_port == sock.remote_port
            and other.remote_port == sock.local_port
            and other.proto.rstrip("6") == sock.proto.rstrip("6")
            and other is not sock
            and other.state != "LISTEN"
        ):
            return other
    return None


def _rank(sock: Socket) -> tuple[int, int]:
    # What to name first: a listener, then a process's socket, then the kernel's.
    state = 0 if sock.state == "LISTEN" else 1
    owner = {"process": 0, "hidden": 1}.get(sock.owner, 2)
    return (state, owner)


_REUSE_RULE = (
    "Linux lets a new socket bind a port still held by a socket that is not listening only "
    "when both set SO_REUSEADDR before bind()"
)


def _why(sock: Socket, peer: Socket | None) -> str:
    state = sock.state
    if state == "FIN_WAIT2":
        text = (
            "this end closed first (its program closed it, ended or was killed) and waits for "
            "the peer's FIN"
            if sock.owner != "process"
            # shutdown(SHUT_WR), or a forked child still holding the descriptor: no timer
            # ends it (tcp_fin_timeout is for ends no program holds)
            else f"its program (pid {sock.pid}) sent its FIN with shutdown() but still holds the "
            "socket, and waits for the peer's FIN; it stays until one of them closes"
        )
        if peer is not None and peer.state == "CLOSE_WAIT":
            text += f"; the peer {peer.local} ({_owner_words(peer)}) has not closed its end yet"
        if sock.owner == "kernel":
            text += (
                f". The kernel drops it about {FIN_TIMEOUT_SECONDS} s after the close "
                f"(net.ipv4.tcp_fin_timeout) if the peer stays silent; if the peer closes, "
                f"it becomes TIME_WAIT for about {TIME_WAIT_SECONDS} s more, so closing the "
                "peer does not free the port sooner"
            )
        return text
    if state == "TIME_WAIT":
        return (
            "this end closed first; the kernel keeps it about "
            f"{TIME_WAIT_SECONDS} s after the close so that late packets of the old "
            "connection die instead of reaching a new one"
        )
    if state == "FIN_WAIT1":
        return "this end closed first and its FIN is not acknowledged yet"
    if state in ("LAST_ACK", "CLOSING"):
        return "the connection is closing; it goes away within moments"
    if state == "CLOSE_WAIT":
        return (
            "the peer has closed; the program holding this end has not called close() yet "
            "(the port stays in use until it does, or ends)"
        )
    if state in ("ESTABLISHED", "SYN_RECV", "SYN_SENT"):
        return (
            "a connection still open on that port (a server's listener can be gone while a "
            "connection it accepted lives on, e.g. in a child process)"
        )
    return "a socket bound to that port"


def _todo(sock: Socket, reuseaddr: bool | None) -> str:
    options = []
    if sock.owner == "process" and sock.state != "TIME_WAIT":
        options.append(f"stop pid {sock.pid} or close that socket")
    # Only the kernel's own ends go away by themselves (a held FIN_WAIT2 has no timer;
    # a TIME_WAIT is never a process's).
    if sock.owner != "process" and sock.state in (
        "FIN_WAIT2",
        "TIME_WAIT",
        "FIN_WAIT1",
        "LAST_ACK",
        "CLOSING",
    ):
        options.append("wait about a minute")
    if reuseaddr is not True:
        options.append("set SO_REUSEADDR before bind() (in the old program and the new one)")
    options.append("pick another port")
    return "What to do: " + "; or ".join(options) + "."


def _holders(
    sockets: list[Socket], address: str, port: int, proto: str, v6only: bool
) -> list[tuple[Socket, bool]]:
    """The sockets that hold ``port`` on an address overlapping ``address``: (socket, unsure)."""
    if port <= 0:
        return []
    new = _span_of_new(address, v6only)
    if new is None:
        return []
    udp = proto.startswith("udp")
    holders: list[tuple[Socket, bool]] = []
    for sock in sockets:
        if sock.local_port != port or sock.is_tcp == udp or sock.state == "NEW_SYN_RECV":
            continue
        span = _span_of_holder(sock)
        if span is None:
            continue
        overlaps, unsure = _overlap(new, span)
        if overlaps:
            holders.append((sock, unsure))
    holders.sort(key=lambda pair: _rank(pair[0]))
    return holders


def holder_summary(
    sockets: Iterable[Socket], address: str, port: int, *, proto: str = "tcp"
) -> str | None:
    """A short clause naming what holds ``port``, for a line that already says it failed.

    ``0.0.0.0:6000 is listening, held by 2759/tcp_server1`` or ``127.0.0.1:6000 →
    127.0.0.1:39846 is in FIN_WAIT2, held by the kernel: no process (...)``; None
    when nothing overlapping holds it.
    """
    holders = _holders(list(sockets), address, port, proto, False)
    if not holders:
        return None
    first = holders[0][0]
    if first.state == "LISTEN":
        return f"{first.local} is listening, {_owner_words(first)}"
    text = f"{_describe(first)} is in {first.state if first.is_tcp else 'UDP'}, "
    text += _owner_words(first)
    if first.owner == "kernel" and first.state in ("FIN_WAIT2", "TIME_WAIT"):
        text += (
            " (the end of a connection whose program closed first or was killed; the kernel "
            f"keeps it about {TIME_WAIT_SECONDS} s, and a new bind() passes it only when both "
            "programs set SO_REUSEADDR)"
        )
    return text


def bind_conflict(
    sockets: Iterable[Socket],
    address: str,
    port: int,
    *,
    proto: str = "tcp",
    reuseaddr: bool | None = None,
    v6only: bool = False,
) -> str | None:
    """Why a bind() of ``address``:``port`` would (or may) fail with EADDRINUSE; None if not.

    Args:
        sockets: one poll's sockets (``Snapshot.sockets``), every state.
        address: the address to bind: ``0.0.0.0``, ``::``, ``127.0.0.1``, ``::ffff:...``.
        port: 1-65535 (0 asks the kernel for a free port: never a conflict).
        proto: ``"tcp"`` or ``"udp"``.
        reuseaddr: whether the new socket sets SO_REUSEADDR before bind():
            True for the built-in tcp-server, False for the lecture's
            tcp_server1, None when unknown (any command).
        v6only: the new ``::`` socket sets IPV6_V6ONLY (then it does not take IPv4).

    Returns:
        One paragraph naming the socket that holds the port (local → remote,
        state, owner), why it is there, for how long, and what to do; None
        when nothing given holds an overlapping address.
    """
    udp = proto.startswith("udp")
    all_sockets = list(sockets)
    holders = _holders(all_sockets, address, port, proto, v6only)
    if not holders:
        return None
    first, unsure = holders[0]
    where = format_endpoint(address, port)
    holder_text = (
        f"{_describe(first)} ({first.state if first.is_tcp else 'UDP'}, {_owner_words(first)})"
    )
    see = _see_it(port, udp, len(holders) - 1)
    if udp:
        return f"{_udp_words(where, holder_text, reuseaddr)} {see}"
    if first.state == "LISTEN":
        return f"{_listener_words(where, holder_text, unsure)} {see}"
    verdict = _held_verdict(unsure, reuseaddr)
    peer = _peer(first, all_sockets)
    return (
        f"bind() of {where} {verdict}: {holder_text} still holds port {port}: "
        f"{_why(first, peer)}. {_REUSE_RULE}. {_todo(first, reuseaddr)} {see}"
    )


def _udp_words(where: str, holder_text: str, reuseaddr: bool | None) -> str:
    """A UDP port in use: shared only when both sockets set SO_REUSEADDR."""
    verdict = "may fail" if reuseaddr is not False else "fails"
    return (
        f'bind() of {where} {verdict} with "Address already in use": {holder_text} has '
        f"that port. Two UDP sockets share a port only when both set SO_REUSEADDR before "
        "bind(). What to do: stop the program that has it, or pick another port."
    )


def _listener_words(where: str, holder_text: str, unsure: bool) -> str:
    """A TCP listener on the port: nothing lets a second one in."""
    maybe = " may" if unsure else ""
    return (
        f'bind() of {where}{maybe} fail{"" if maybe else "s"} with "Address already in '
        f'use": {holder_text} is listening there. Only one listener per address and '
        f"port, and SO_REUSEADDR does not change that. What to do: stop that program, or "
        "pick another port."
    )


def _see_it(port: int, udp: bool, others: int) -> str:
    """Where to see the holder, and how many more sockets hold the port."""
    see = f"See it with `observatory snapshot --all{' --udp' if udp else ''} --port {port}`."
    if others:
        see += f" ({others} more socket{'s hold' if others != 1 else ' holds'} that port too.)"
    return see


def _held_verdict(unsure: bool, reuseaddr: bool | None) -> str:
    """Whether a TCP bind() fails next to a socket that is not listening, and why."""
    fails = "may fail" if unsure or reuseaddr is True else "fails"
    if reuseaddr is True:
        return (
            f'{fails} with "Address already in use" (it does unless the program that had '
            "the port set SO_REUSEADDR too; the kernel does not report whether it did)"
        )
    if reuseaddr is False:
        return f'{fails} with "Address already in use" (the new socket has no SO_REUSEADDR)'
    return (
        f'{fails} with "Address already in use" unless both the old socket and the new '
        "one set SO_REUSEADDR (the kernel does not report whether the old one did)"
    )
