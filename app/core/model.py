"""Immutable records of what the kernel has: sockets, snapshots, events."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

Owner = Literal["process", "hidden", "kernel"]

# ss/psutil names, in the order the kernel numbers them (include/net/tcp_states.h).
TCP_STATES = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
)
UDP_STATE = "NONE"

OWNER_HELP = {
    "process": "a process holds this socket",
    "hidden": "a process of another user holds it; you may not see which (run as root to see)",
    "kernel": "no process holds it: TIME_WAIT, or a connection waiting to be accepted",
}
HIDDEN_AS_ROOT = (
    "a process outside this machine's view holds it (another PID namespace:"
    " a container or sandbox); even root cannot see which"
)


def owner_help(owner: str) -> str:
    """Why a row has the owner it has, in words for the footer."""
    if owner == "hidden" and os.geteuid() == 0:
        return HIDDEN_AS_ROOT
    return OWNER_HELP.get(owner, owner)


@dataclass(frozen=True, slots=True)
class RawSocket:
    """One socket as a reader decoded it, before owners are known.

    The last six fields come only from sock_diag (``/proc/net`` has none of
    them): ``backlog`` is a listener's listen() limit; the others are from
    tcp_info for a connection (rtt in microseconds).
    """

    proto: str
    local_addr: str
    local_port: int
    remote_addr: str | None
    remote_port: int | None
    state: str
    uid: int
    inode: int
    recv_q: int
    send_q: int
    backlog: int | None = None
    rtt_us: int | None = None
    cwnd: int | None = None
    retrans: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None


@dataclass(slots=True, unsafe_hash=True)
class Socket:
    """One socket as the kernel reports it, with its owner when known.

    Treat it as immutable: nothing changes a Socket once a poll made it. It is
    not ``frozen`` only because a frozen dataclass takes 10x as long to build
    (5.4 us against 0.5 us here), and a first poll builds one per socket of the
    machine (16,000 on a busy one).
    """

    proto: str  # "tcp", "tcp6", "udp", "udp6"
    local_addr: str
    local_port: int
    remote_addr: str | None
    remote_port: int | None
    state: str  # TCP_STATES member, or "NONE" for UDP
    pid: int | None = None
    process: str | None = None
    cmdline: tuple[str, ...] = ()
    user: str | None = None  # owner of the socket by uid (known even when hidden)
    owner: Owner = "process"
    service: str | None = None
    inode: int = 0
    uid: int | None = None
    recv_q: int = 0  # LISTEN: connections waiting to be accepted; else bytes unread
    send_q: int = 0  # bytes not yet acknowledged by the peer
    # From sock_diag only; None where the kernel gives none (UDP, TIME_WAIT, /proc).
    backlog: int | None = None  # LISTEN: the limit given to listen()
    rtt_ms: float | None = None  # smoothed round-trip time
    cwnd: int | None = None  # congestion window, in segments
    retrans: int | None = None  # segments retransmitted over the connection's life
    bytes_sent: int | None = None  # data bytes sent (tcpi_bytes_sent; else tcpi_bytes_acked)
    bytes_received: int | None = None  # tcpi_bytes_received
    host: str | None = None  # the lab host whose network namespace holds it; None: this one
    # Stable identity across polls: protocol and both ends (not pid, not state), and the
    # lab host (two hosts may each have a 127.0.0.1:6000). Computed once here: diffs of
    # thousands of sockets read it every poll.
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        remote = "*" if self.remote_addr is None else f"{self.remote_addr}:{self.remote_port}"
        where = "" if self.host is None else f"{self.host} "
        self.key = f"{where}{self.proto} {self.local_addr}:{self.local_port} {remote}"

    @property
    def is_tcp(self) -> bool:
        return self.proto.startswith("tcp")

    @property
    def family(self) -> int:
        return 6 if self.proto.endswith("6") else 4

    @property
    def local(self) -> str:
        return format_endpoint(self.local_addr, self.local_port)

    @property
    def remote(self) -> str:
        if self.remote_addr is None or self.remote_port is None:
            return format_endpoint("::" if self.family == 6 else "0.0.0.0", None)
        return format_endpoint(self.remote_addr, self.remote_port)

    @property
    def waiting_in_backlog(self) -> bool:
        """A connection whose handshake completed but no process accepted yet."""
        return self.owner == "kernel" and self.state in ("ESTABLISHED", "SYN_RECV", "CLOSE_WAIT")

    @property
    def owner_label(self) -> str:
        """What the PID/Program column says: ``2759/tcp-server``, or why there is no pid."""
        if self.owner == "process":
            return f"{self.pid}/{self.process or '?'}"
        if self.owner == "hidden":
            return f"hidden (user {self.user})" if self.user else "hidden"
        if self.state == "TIME_WAIT":
            return "kernel: time-wait"
        if self.waiting_in_backlog:
            return "kernel: backlog"
        return "kernel"

    def to_json(self) -> dict[str, object]:
        """The contract's JSON object (keys fixed; extra keys may only be added)."""
        out: dict[str, object] = {
            "proto": self.proto,
            "local_addr": self.local_addr,
            "local_port": self.local_port,
            "remote_addr": self.remote_addr,
            "remote_port": self.remote_port,
            "state": self.state,
            "pid": self.pid,
            "process": self.process,
            "user": self.user,
            "owner": self.owner,
            "service": self.service,
            "cmdline": list(self.cmdline),
            "recv_q": self.recv_q,
            "send_q": self.send_q,
            "backlog": self.backlog,
            "rtt_ms": self.rtt_ms,
            "cwnd": self.cwnd,
            "retrans": self.retrans,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }
        if self.host is not None:
            out["host"] = self.host
        return out

    @classmethod
    def from_json(cls, data: object) -> Socket:
        """The socket of a :meth:`to_json` object (an agent's snapshot). Raises
        ValueError, in words, for anything that is not one (never KeyError)."""
        if not isinstance(data, dict):
            raise ValueError(f"a socket is a JSON object, not {type(data).__name__}")
        for name in ("proto", "local_addr", "state"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"a socket's {name!r} must be a string")
        local_port = _whole(data, "local_port")
        if local_port is None:
            raise ValueError("a socket's 'local_port' must be a whole number")
        owner = data.get("owner", "process")
        if owner not in OWNER_HELP:
            raise ValueError(f"a socket's owner must be one of {', '.join(OWNER_HELP)}")
        cmdline, rtt = data.get("cmdline"), data.get("rtt_ms")
        return cls(
            proto=data["proto"],
            local_addr=data["local_addr"],
            local_port=local_port,
            remote_addr=_text(data, "remote_addr"),
            remote_port=_whole(data, "remote_port"),
            state=data["state"],
            pid=_whole(data, "pid"),
            process=_text(data, "process"),
            cmdline=tuple(map(str, cmdline)) if isinstance(cmdline, list) else (),
            user=_text(data, "user"),
            owner=owner,
            service=_text(data, "service"),
            recv_q=_whole(data, "recv_q") or 0,
            send_q=_whole(data, "send_q") or 0,
            backlog=_whole(data, "backlog"),
            rtt_ms=float(rtt)
            if isinstance(rtt, (int, float)) and not isinstance(rtt, bool)
            else None,
            cwnd=_whole(data, "cwnd"),
            retrans=_whole(data, "retrans"),
            bytes_sent=_whole(data, "bytes_sent"),
            bytes_received=_whole(data, "bytes_received"),
            host=_text(data, "host"),
        )


def _text(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _whole(data: dict[str, object], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def format_endpoint(addr: str, port: int | None) -> str:
    """``127.0.0.1:6000``, ``[::1]:6000``, ``0.0.0.0:*`` as netstat prints them."""
    shown = f"[{addr}]" if ":" in addr else addr
    return f"{shown}:{'*' if port is None else port}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every socket of one poll, and when it was taken."""

    taken_at: float  # time.time()
    sockets: tuple[Socket, ...]
    duration: float = 0.0  # seconds the poll took
    by_key: dict[str, Socket] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.by_key:
            index: dict[str, Socket] = {}
            for sock in self.sockets:
                key = sock.key
                if key in index:  # SO_REUSEPORT listeners share both ends
                    key = f"{key} #{sock.inode}"
                index[key] = sock
            object.__setattr__(self, "by_key", index)

    def listening(self) -> list[Socket]:
        return [s for s in self.sockets if s.state == "LISTEN"]

    def established(self) -> list[Socket]:
        return [s for s in self.sockets if s.state == "ESTABLISHED"]

    def counts(self) -> dict[str, int]:
        """Sockets per state (UDP counted under ``UDP``)."""
        out: dict[str, int] = {}
        for s in self.sockets:
            name = s.state if s.is_tcp else "UDP"
            out[name] = out.get(name, 0) + 1
        return out


EventKind = Literal[
    "listener-opened",
    "listener-closed",
    "connection-opened",
    "connection-closed",
    "state-changed",
    "owner-changed",
    "udp-opened",
    "udp-closed",
]


_SIGNS: dict[str, str] = {
    "listener-opened": "+",
    "connection-opened": "+",
    "udp-opened": "+",
    "listener-closed": "-",
    "connection-closed": "-",
    "udp-closed": "-",
    "state-changed": "~",
    "owner-changed": "~",
}


@dataclass(frozen=True, slots=True)
class SocketEvent:
    """One change between two snapshots."""

    at: float
    kind: EventKind
    key: str
    socket: Socket
    old_state: str | None = None
    new_state: str | None = None

    @property
    def sign(self) -> str:
        """``+`` something appeared, ``-`` it went, ``~`` it changed."""
        return _SIGNS[self.kind]

    @property
    def text(self) -> str:
        """What changed, in words (without the sign)."""
        s = self.socket
        who = s.owner_label
        if self.kind == "listener-opened":
            return f"LISTEN {s.proto} {s.local}  {who}"
        if self.kind == "listener-closed":
            return f"LISTEN closed {s.proto} {s.local}  {who}"
        if self.kind == "connection-opened":
            return f"{s.state} {s.local} -> {s.remote}  {who}"
        if self.kind == "connection-closed":
            return f"{s.state} gone {s.local} -> {s.remote}  {who}"
        if self.kind == "state-changed":
            return f"{self.old_state} -> {self.new_state} {s.local} -> {s.remote}  {who}"
        if self.kind == "owner-changed":
            return f"accepted {s.local} -> {s.remote}  now {who}"
        if self.kind == "udp-opened":
            return f"UDP {s.proto} {s.local}  {who}"
        return f"UDP closed {s.proto} {s.local}  {who}"

    def describe(self) -> str:
        """The change as one line: its sign, then its words (``+ LISTEN tcp ...``)."""
        return f"{self.sign} {self.text}"
