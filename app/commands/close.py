"""``observatory close LOCAL_ADDR:PORT REMOTE_ADDR:PORT``: end one TCP connection (root).

What TCPView and ``ss -K`` do: the kernel's ``SOCK_DESTROY`` through
netlink sock_diag. The socket is looked up in one poll first, so that the
line printed names who held it, and so that a pair that does not exist is
refused in words (the ends swapped, a listener, a typo) before the kernel
is asked. Exit 0 when closed; 1 when refused (not root, no such connection,
a kernel without ``CONFIG_INET_DIAG_DESTROY``: nothing touched); 2 for an
address that is not ``ADDRESS:PORT``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.cliutil import UsageError
from app.core.model import format_endpoint
from app.core.terminal_text import printable
from app.labs import whole_number

if TYPE_CHECKING:
    from app.core.model import Socket

HELP = "end one TCP connection, as ss -K does (root): its owner's recv() gets ECONNABORTED"
EXAMPLE = "like 127.0.0.1:6000 or [::1]:6000"

# States in which the kernel's tcp_abort() sends the peer a reset (tcp_need_reset()).
_RESET_STATES = ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2", "SYN_RECV")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
End = tuple[Address, int]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "close",
        help=HELP,
        description=HELP + ". Give both ends as ss -tn prints them, this machine's end first; "
        "IP addresses only (names are not looked up).",
    )
    p.add_argument(
        "local",
        metavar="LOCAL_ADDR:PORT",
        help=f"this machine's end, whose socket is closed ({EXAMPLE})",
    )
    p.add_argument("remote", metavar="REMOTE_ADDR:PORT", help="the other end of the connection")


def parse_end(text: str, which: str) -> End:
    """``127.0.0.1:6000`` or ``[::1]:6000`` (as ss prints them) as an address and a port.

    Raises:
        UsageError: anything else, in one line of words.
    """
    raw = text.strip()
    shown = repr(text if len(text) <= 60 else text[:57] + "...")
    if raw.startswith("["):
        inside, bracket, rest = raw[1:].partition("]")
        if not bracket:
            raise UsageError(f"{which} {shown}: an IPv6 address in '[' needs its ']', {EXAMPLE}")
        if not rest.startswith(":"):
            raise UsageError(
                f"{which} {shown}: after ']' comes ':' and the port, like [{inside}]:6000"
            )
        addr_text, port_text = inside, rest[1:]
        if ":" not in addr_text:
            raise UsageError(
                f"{which} {shown}: brackets are for IPv6 addresses; write IPv4 "
                "without them, like 127.0.0.1:6000"
            )
    else:
        addr_text, colon, port_text = raw.rpartition(":")
        if not colon:
            raise UsageError(f"{which} {shown} has no port: write ADDRESS:PORT, {EXAMPLE}")
        if ":" in addr_text:
            raise UsageError(
                f"{which} {shown}: write an IPv6 address in brackets, "
                f"like [{addr_text}]:{port_text or 6000}"
            )
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise UsageError(
            f"{which} {shown}: {addr_text[:60]!r} is not an IP address ({EXAMPLE}); "
            "names are not looked up"
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise UsageError(f"{which} {shown}: addresses with a %scope are not supported")
    if port_text == "*":
        raise UsageError(
            f"{which} {shown}: '*' is how ss shows a listening socket's missing "
            "peer; a connection has a port at both ends"
        )
    if not port_text.isascii() or not port_text.isdigit():
        raise UsageError(
            f"{which} {shown}: a port is a number from 1 to 65535, not {port_text[:20]!r}"
        )
    port = whole_number(port_text)  # None past 18 digits: int() refuses 4,301
    if port is None or not 1 <= port <= 65535:
        said = port_text.lstrip("0") or "0"
        said = said if len(said) <= 20 else said[:17] + "..."
        raise UsageError(
            f"{which} {shown}: a port is a number from 1 to 65535; {said} is outside that range"
        )
    return addr, port


def _plain(addr: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it holds.

    A dual-stack ``::`` socket holding an IPv4 connection is listed with mapped
    addresses; a user who types the IPv4 form means that same connection.
    """
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _show(end: End) -> str:
    return format_endpoint(str(end[0]), end[1])


def _ends(sock: Socket) -> tuple[End, End] | None:
    if sock.remote_addr is None or sock.remote_port is None:
        return None
    return (
        (_plain(ipaddress.ip_address(sock.local_addr)), sock.local_port),
        (_plain(ipaddress.ip_address(sock.remote_addr)), sock.remote_port),
    )


def held_by(sock: Socket) -> str:
    """Who holds the socket, in words: ``2759/tcp-server (user root)``, or why nobody."""
    if sock.owner == "process":
        # A process names itself (prctl, /proc/self/comm): its ESC is shown as \x1b.
        user = f" (user {printable(sock.user)})" if sock.user else ""
        return f"{sock.pid}/{printable(sock.process or '?')}{user}"
    if sock.owner == "hidden":
        if os.geteuid() == 0:  # root sees every process but those of other PID namespaces
            return "a process in another PID namespace (hidden even from root)"
        return f"a process of user {printable(sock.user or '?')} (which one is hidden from you)"
    if sock.state == "TIME_WAIT":
        return "the kernel (TIME_WAIT: no process holds it any more)"
    if sock.waiting_in_backlog:
        return "the kernel (in the listener's backlog: no process has accepted it yet)"
    return "the kernel (no process holds it)"


def _what_follows(sock: Socket, peer: Socket | None) -> str:
    if sock.owner == "process":
        said = "its owner's recv() gets ECONNABORTED"
    elif sock.state == "TIME_WAIT":
        said = "the kernel forgets it now instead of after its timer"
    elif sock.waiting_in_backlog:
        # Measured: the destroyed socket stays in the accept queue; accept() still
        # returns it, and the server's first recv() on it gets ECONNABORTED.
        said = "the server's accept() still returns it, and its first recv() gets ECONNABORTED"
    else:
        said = "its owner is told ECONNABORTED"
    if sock.state in _RESET_STATES:
        said += f"; the peer{f' {held_by(peer)}' if peer else ''} gets a reset"
    return said


def find(sockets: Sequence[Socket], local: End, remote: End) -> Socket | None:
    """The TCP connection whose ends are ``local`` and ``remote`` (IPv4-mapped = IPv4)."""
    want = ((_plain(local[0]), local[1]), (_plain(remote[0]), remote[1]))
    for sock in sockets:
        if sock.is_tcp and sock.state != "LISTEN" and _ends(sock) == want:
            return sock
    return None


def why_not(sockets: Sequence[Socket], local: End, remote: End) -> str:
    """Words for a pair that is not a connection of this machine: what is there instead."""
    pair = f"{_show(local)} -> {_show(remote)}"
    mirrored = find(sockets, remote, local)
    if mirrored is not None:
        return (
            f"no connection {pair} here, but the other way round there is one, held by "
            f"{held_by(mirrored)}: this machine's end comes first "
            f"(observatory close {_show(remote)} {_show(local)}); nothing was touched"
        )
    said = [f"no TCP connection {pair} on this machine"]
    here = (_plain(local[0]), local[1])
    peers = sorted(
        {
            _show(ends[1])
            for s in sockets
            if s.is_tcp
            and s.state != "LISTEN"
            and (ends := _ends(s)) is not None
            and ends[0] == here
        }
    )
    if peers:
        more = f" and {len(peers) - 3} more" if len(peers) > 3 else ""
        said.append(f"{_show(local)} is connected to {', '.join(peers[:3])}{more}")
    for sock in sockets:
        if not (sock.is_tcp and sock.state == "LISTEN" and sock.local_port == local[1]):
            continue
        bound = _plain(ipaddress.ip_address(sock.local_addr))
        if bound != here[0] and not bound.is_unspecified:
            continue
        kill = f"kill {sock.pid}" if sock.pid else "kill"
        said.append(
            f"{sock.local} is the listening socket of {held_by(sock)}; close ends "
            "connections, not listeners (the kernel would destroy a listener too, "
            f"and its accept() would fail with EINVAL: to stop the server, {kill})"
        )
        break
    if len(said) == 1:
        said.append(f"see observatory snapshot --all --port {local[1]}")
    return "; ".join(said) + "; nothing was touched"


def run(args: argparse.Namespace) -> int:
    from app.core.diag import CloseRefused, close_refusal, destroy
    from app.core.sockets import default_source

    local = parse_end(args.local, "LOCAL_ADDR:PORT")
    remote = parse_end(args.remote, "REMOTE_ADDR:PORT")
    if _plain(local[0]).version != _plain(remote[0]).version:
        raise UsageError(
            f"{_show(local)} and {_show(remote)}: the two ends of a connection "
            "are both IPv4 or both IPv6"
        )
    refusal = close_refusal()  # before reading anything: no root, no need to look
    if refusal is not None:
        sys.stderr.write(f"observatory close: {refusal}\n")
        return 1
    sockets = default_source(("tcp", "tcp6")).poll().sockets
    sock = find(sockets, local, remote)
    if sock is None:
        sys.stderr.write(f"observatory close: {why_not(sockets, local, remote)}\n")
        return 1
    assert sock.remote_addr is not None and sock.remote_port is not None
    try:
        # The ends exactly as the kernel lists them (::ffff:a.b.c.d for a dual-stack socket).
        destroy((sock.local_addr, sock.local_port), (sock.remote_addr, sock.remote_port))
    except CloseRefused as exc:
        sys.stderr.write(f"observatory close: {printable(str(exc))}\n")
        return 1
    peer = find(sockets, remote, local)
    sys.stdout.write(
        f"Closed {sock.local} -> {sock.remote} ({sock.state}), held by "
        f"{held_by(sock)}: {_what_follows(sock, peer)}\n"
    )
    return 0
