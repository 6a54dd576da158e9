"""Choosing and ordering sockets, shared by ``snapshot`` and the dashboard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from app.core.model import TCP_STATES, Socket

StateFilter = Literal["default", "listen", "established", "all"]

# Listeners first, then the kernel's order (LISTEN is also in TCP_STATES: the first wins).
_STATE_ORDER = {name: i for i, name in reversed(list(enumerate(("LISTEN", *TCP_STATES))))}


@dataclass(frozen=True, slots=True)
class Selection:
    """Which sockets to show, in the vocabulary of ``ss`` and ``netstat`` flags."""

    state: StateFilter = "default"  # default: LISTEN and ESTABLISHED
    udp: bool = False
    family: int | None = None  # 4, 6 or None for both
    port: int | None = None  # matches either end

    def matches(self, sock: Socket) -> bool:
        if self.family is not None and sock.family != self.family:
            return False
        if self.port is not None and self.port not in (sock.local_port, sock.remote_port):
            return False
        if not sock.is_tcp:
            if not self.udp:
                return False
            if self.state == "listen":
                return sock.remote_port is None
            if self.state == "established":
                return sock.remote_port is not None
            return True
        if self.state == "all":
            return True
        if self.state == "listen":
            return sock.state == "LISTEN"
        if self.state == "established":
            return sock.state == "ESTABLISHED"
        return sock.state in ("LISTEN", "ESTABLISHED")


def sort_key(sock: Socket) -> tuple[int, int, str, int, str, int]:
    """Listeners first, then by state, local port and peer, as ``ss`` groups them."""
    return (
        0 if sock.is_tcp else 1,
        _STATE_ORDER.get(sock.state, 99),
        sock.local_addr,
        sock.local_port,
        sock.remote_addr or "",
        sock.remote_port or 0,
    )


def select(sockets: Iterable[Socket], selection: Selection) -> list[Socket]:
    return sorted((s for s in sockets if selection.matches(s)), key=sort_key)
