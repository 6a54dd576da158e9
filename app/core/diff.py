"""Compare two snapshots into time-stamped events with stable keys."""

from __future__ import annotations

from app.core.model import EventKind, Snapshot, Socket, SocketEvent


def _opened(sock: Socket) -> EventKind:
    if not sock.is_tcp:
        return "udp-opened"
    return "listener-opened" if sock.state == "LISTEN" else "connection-opened"


def _closed(sock: Socket) -> EventKind:
    if not sock.is_tcp:
        return "udp-closed"
    return "listener-closed" if sock.state == "LISTEN" else "connection-closed"


def diff(old: Snapshot | None, new: Snapshot) -> list[SocketEvent]:
    """Events that turn ``old`` into ``new``, stamped with ``new.taken_at``.

    A socket keeps its key (protocol and both ends) across polls, so a state
    change (ESTABLISHED -> TIME_WAIT) is one ``state-changed`` event, and a
    connection leaving the backlog is one ``owner-changed`` event (accept()).
    """
    at = new.taken_at
    before = old.by_key if old is not None else {}
    after = new.by_key
    events: list[SocketEvent] = []
    for key, sock in after.items():
        prev = before.get(key)
        if prev is None:
            events.append(SocketEvent(at, _opened(sock), key, sock, None, sock.state))
        elif prev.state != sock.state:
            events.append(SocketEvent(at, "state-changed", key, sock, prev.state, sock.state))
        elif prev.pid != sock.pid or prev.owner != sock.owner:
            events.append(SocketEvent(at, "owner-changed", key, sock, prev.state, sock.state))
    for key, sock in before.items():
        if key not in after:
            events.append(SocketEvent(at, _closed(sock), key, sock, sock.state, None))
    return events
