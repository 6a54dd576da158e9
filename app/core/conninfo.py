"""What the kernel says of one connection, in words: backlog, RTT, retransmissions, bytes.

The dashboard shows this for the highlighted socket. The numbers come from
sock_diag (tcp_info); where the socket source is the ``/proc/net`` fallback
they are unknown, and the text says so rather than print zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.model import Socket


def human_bytes(n: float) -> str:
    """``4 B``, ``1.5 kB``, ``12.0 MB`` (powers of 1000, as ss and most tools print)."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n:.1f} TB"


@dataclass(frozen=True, slots=True)
class Rate:
    """Bytes per second both ways, between two looks at the same connection."""

    sent: float
    received: float


class RateMeter:
    """Follows one connection across polls and gives its byte rate.

    The meter keeps the last counters of the socket it was shown; showing it
    another socket starts again (no rate until the second look).
    """

    def __init__(self) -> None:
        self._key: str | None = None
        self._at = 0.0
        self._sent = 0
        self._received = 0
        self._rate: Rate | None = None

    def observe(self, sock: Socket, at: float) -> Rate | None:
        """The rate since the last look at ``sock`` (None on the first look or no counters)."""
        if sock.bytes_sent is None or sock.bytes_received is None:
            self._key = None
            return None
        if sock.key != self._key or at < self._at:  # another row; or the clock went back
            self._key, self._rate = sock.key, None
        elif at > self._at:
            span = at - self._at
            self._rate = Rate(
                (sock.bytes_sent - self._sent) / span, (sock.bytes_received - self._received) / span
            )
        else:  # the same poll shown again: keep the last rate
            return self._rate
        self._at, self._sent, self._received = at, sock.bytes_sent, sock.bytes_received
        return self._rate


def describe(sock: Socket, rate: Rate | None = None) -> str:
    """One line of what the kernel knows of ``sock`` beyond its ends and owner; may be ''."""
    if sock.state == "LISTEN":
        if sock.backlog is None:
            return f"{sock.recv_q} waiting to be accepted"
        return (
            f"{sock.recv_q} of {sock.backlog} waiting to be accepted "
            f"(backlog: the limit given to listen())"
        )
    if not sock.is_tcp:
        return "UDP: no connection, so no RTT and no counters"
    if sock.state == "TIME_WAIT":
        return "TIME_WAIT: only the kernel keeps it; no counters are left"
    if sock.bytes_sent is None or sock.bytes_received is None:
        if sock.state == "SYN_RECV":
            return "handshake under way: no counters yet"
        return "RTT and byte counts need the kernel's sock_diag (reading /proc/net here)"
    parts = []
    if sock.rtt_ms is not None:
        parts.append(f"rtt {sock.rtt_ms:.2f} ms")
    if sock.cwnd is not None:
        parts.append(f"cwnd {sock.cwnd}")
    if sock.retrans is not None:
        parts.append(f"retrans {sock.retrans}")
    sent = f"sent {human_bytes(sock.bytes_sent)}"
    received = f"received {human_bytes(sock.bytes_received)}"
    if rate is not None and rate.sent >= 1:
        sent += f" ({human_bytes(rate.sent)}/s)"
    if rate is not None and rate.received >= 1:
        received += f" ({human_bytes(rate.received)}/s)"
    return " · ".join([*parts, sent, received])
