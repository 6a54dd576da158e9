"""Sockets -> table rows for the dashboard: pure functions, no Textual.

Keeps the short memory that makes change visible: a new row is marked NEW
and a vanished row stays, marked GONE, for a few seconds (as TCPView does),
with a sign and a word as well as a colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.core.model import Snapshot, Socket

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
            hay = " ".join(
                str(x) for x in (sock.proto, sock.local, sock.remote, sock.state,
                                 sock.owner_label, sock.service or "", sock.user or "")
            ).lower()
            return self.text.lower() in hay
        return True


@dataclass(slots=True)
class Marked:
    key: str  # the snapshot's key: unique within one poll
    sock: Socket
    mark: str  # "", NEW_MARK or GONE_MARK


@dataclass(slots=True)
class Lifecycle:
    """Remembers when each socket key was first seen and when it vanished."""

    seconds: float = MARK_SECONDS
    first_seen: dict[str, float] = field(default_factory=dict)
    gone: dict[str, tuple[Socket, float]] = field(default_factory=dict)
    primed: bool = False
    _last: dict[str, Socket] = field(default_factory=dict)

    def update(self, snap: Snapshot) -> list[Marked]:
        now = snap.taken_at
        current = snap.by_key
        for key, sock in self._last.items():
            if key not in current and key not in self.gone:
                self.gone[key] = (sock, now)
        out: list[Marked] = []
        for key, sock in current.items():
            # Sockets present at the first poll are not "new": they were there.
            first = self.first_seen.setdefault(key, now if self.primed else now - self.seconds)
            self.gone.pop(key, None)
            out.append(Marked(key, sock, NEW_MARK if now - first < self.seconds else ""))
        for key in [k for k in self.first_seen if k not in current]:
            del self.first_seen[key]
        for key, (sock, at) in list(self.gone.items()):
            if now - at >= self.seconds:
                del self.gone[key]
            else:
                out.append(Marked(key, sock, GONE_MARK))
        self._last = current
        self.primed = True
        return out


def backlog_text(sock: Socket) -> str:
    """The LISTEN row's queue: connections waiting to be accepted."""
    return f"{sock.recv_q} wait" if sock.recv_q else ""


def pair_order(listen_ports: set[int]) -> Callable[[Socket], tuple[object, ...]]:
    """Sort key that puts the two ends of a local connection next to each other,
    the server's end (its local port is listening) first."""

    def key(s: Socket) -> tuple[object, ...]:
        a = (s.local_addr, s.local_port)
        b = (s.remote_addr or "", s.remote_port or 0)
        pair = (a, b) if a <= b else (b, a)
        server_first = 0 if s.local_port in listen_ports else 1
        return (s.local_port not in listen_ports and (s.remote_port or 0) not in listen_ports,
                pair, server_first)

    return key


def group(marked: Iterable[Marked]) -> dict[str, list[Marked]]:
    """Split into the dashboard's tables: listen, established, other (TCP), udp."""
    out: dict[str, list[Marked]] = {"listen": [], "established": [], "other": [], "udp": []}
    for m in marked:
        s = m.sock
        if not s.is_tcp:
            out["udp"].append(m)
        elif s.state == "LISTEN":
            out["listen"].append(m)
        elif s.state == "ESTABLISHED":
            out["established"].append(m)
        else:
            out["other"].append(m)
    return out
