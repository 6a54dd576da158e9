"""Sockets -> table rows for the dashboard: pure functions, no Textual.

What the user chose to see (filter, scope, family, sort), the marks that make
change visible (a new row is marked NEW and a vanished row stays, marked GONE,
for a few seconds, as TCPView does, with a sign and a word as well as a
colour; ``app.ui.feed`` keeps them), and the natural order of connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.core.model import Socket
from app.core.procs import ProcessInfo

MARK_SECONDS = 3.0

NEW_MARK = "+ NEW"
GONE_MARK = "- GONE"


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """What the user chose to see."""

    text: str = ""  # filter: any part of address, port, program, service, state
    lab_pids: frozenset[int] | None = None  # lab-only: these pids (None = every socket)
    lab_ports: frozenset[int] = frozenset()  # lab-only: ports the lab's sockets use
    family: int | None = None  # 4, 6, or None for both
    numeric: bool = False  # no service names (the port number is always shown)
    sort: str | None = None  # column key, or None for the natural order
    reverse: bool = False

    def view_differs(self, other: ViewOptions) -> bool:
        """Whether ``other`` shows other rows (not only in another order or wording)."""
        return (self.text, self.lab_pids is None, self.family) != (
            other.text,
            other.lab_pids is None,
            other.family,
        )

    def _lab_kernel(self, sock: Socket) -> bool:
        """A socket no process holds belongs to the lab when it touches a lab port:
        the connection waiting in a lab server's backlog, a lab TIME_WAIT."""
        return sock.owner == "kernel" and (
            sock.local_port in self.lab_ports or sock.remote_port in self.lab_ports
        )

    def matches(self, sock: Socket) -> bool:
        if self.family is not None and sock.family != self.family:
            return False
        in_lab = self.lab_pids is None or sock.pid in self.lab_pids or self._lab_kernel(sock)
        if not in_lab:
            return False
        if self.text:
            return self.text.lower() in haystack(sock)
        return True


def haystack(sock: Socket) -> str:
    """The text a filter searches in: address, port, program, service, state, user, and
    ``host:NAME`` (a lab host's; ``host:here`` this machine's), so ``/host:server`` is
    the host filter."""
    return (
        f"{sock.proto} {sock.local} {sock.remote} {sock.state} {sock.owner_label} "
        f"{sock.service or ''} {sock.user or ''} host:{sock.host or HERE}"
    ).lower()


HERE = "here"  # the Host column of a socket of this machine's own namespace


@dataclass(slots=True)
class Marked:
    key: str  # the snapshot's key: unique within one poll
    sock: Socket
    mark: str  # "", NEW_MARK or GONE_MARK


def backlog_text(sock: Socket) -> str:
    """The LISTEN row's queue: connections waiting to be accepted, out of the limit given to
    listen() where the kernel says it (sock_diag; ss -ltn's Recv-Q/Send-Q): ``1/5``."""
    if sock.backlog is not None:
        return f"{sock.recv_q}/{sock.backlog}"
    return f"{sock.recv_q} wait" if sock.recv_q else ""


def pair_order(listen_ports: set[int]) -> Callable[[Socket], tuple[object, ...]]:
    """Sort key that puts the two ends of a local connection next to each other,
    the server's end (its local port is listening) first."""

    def key(s: Socket) -> tuple[object, ...]:
        a = (s.local_addr, s.local_port)
        b = (s.remote_addr or "", s.remote_port or 0)
        pair = (a, b) if a <= b else (b, a)
        server_first = 0 if s.local_port in listen_ports else 1
        return (
            s.local_port not in listen_ports and (s.remote_port or 0) not in listen_ports,
            pair,
            server_first,
        )

    return key


def lab_scope(
    processes: Iterable[ProcessInfo], marked: Iterable[Marked], listened: set[int]
) -> tuple[frozenset[int], frozenset[int]]:
    """The lab-only view: the lab's pids (ended ones too: what a kill left, its GONE rows)
    and the ports their sockets use, with every port a lab process ever listened on
    (``listened``, kept up to date here): the killed server's FIN_WAIT2 and TIME_WAIT
    stay on its port after its LISTEN row is gone."""
    pids = frozenset(p.pid for p in processes if p.pid is not None)
    ports: set[int] = set()
    for m in marked:
        if m.sock.pid in pids:
            ports.add(m.sock.local_port)
            if m.sock.state == "LISTEN":
                listened.add(m.sock.local_port)
    return pids, frozenset(ports | listened)
