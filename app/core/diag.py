"""The kernel's own socket interface: netlink ``NETLINK_SOCK_DIAG`` (what ``ss`` reads).

Three things are done here, all with :mod:`socket` and :mod:`struct`:

* :func:`dump` asks for every socket of one family and protocol
  (``inet_diag_req_v2``, every state) and returns the kernel's
  ``inet_diag_msg`` payloads, with ``tcp_info`` (``INET_DIAG_INFO``) for TCP;
* :class:`DestroyListener` joins the sock_diag destroy multicast groups
  (what ``ss -E`` uses): the kernel sends one message for every socket that
  is destroyed, even one that lived a millisecond. Unprivileged;
* :func:`destroy` ends one TCP connection (``SOCK_DESTROY``, what ``ss -K``
  does): root only, and the kernel must have ``CONFIG_INET_DIAG_DESTROY``.

Why a decoder of our own rather than pyroute2's ``RawSocket``: measured
here, it took 1.0-1.7 s for 10,000 sockets where these ~100 lines take
0.13 s; pyroute2 marks its ``get_sock_stats`` as work in progress and
mis-decodes tcp_info's window-scale bit fields. The structures are small
and stable kernel ABI (``linux/inet_diag.h``, ``linux/tcp.h``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import struct
from collections.abc import Container

from app.core.model import TCP_STATES, UDP_STATE, RawSocket, format_endpoint

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
INET_DIAG_INFO = 2
# Every state /proc/net/tcp and ss list: bits 1-12 (ESTABLISHED .. NEW_SYN_RECV). Not
# bit 13, TCP_BOUND_INACTIVE (Linux 6.5+): a socket that was bound and never listened
# nor connected, which neither /proc nor ss -a shows.
ALL_STATES = (1 << 13) - 1
NO_COOKIE = 0xFFFFFFFF

# enum sknetlink_groups (linux/sock_diag.h)
GROUP_TCP4_DESTROY = 1
GROUP_UDP4_DESTROY = 2
GROUP_TCP6_DESTROY = 3
GROUP_UDP6_DESTROY = 4

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid:
# sport, dport (big-endian), src[16], dst[16], if, cookie[2].
_REQ = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue,
# wqueue, uid, inode.
_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")  # the ports still in network order
MSG_LEN = _MSG.size  # 72
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")

# Offsets in struct tcp_info (linux/tcp.h) of the fields the observatory shows.
TCPI_RTT = 68  # u32, microseconds (smoothed)
TCPI_SND_CWND = 80  # u32, segments
TCPI_TOTAL_RETRANS = 100  # u32
TCPI_BYTES_ACKED = 120  # u64: sequence space acknowledged by the peer (counts a SYN and FIN)
TCPI_BYTES_RECEIVED = 128  # u64: data bytes received
TCPI_BYTES_SENT = 200  # u64: data bytes sent (Linux 4.19+), retransmissions included
TCPI_MIN_LEN = TCPI_BYTES_RECEIVED + 8
# States in which the peer's FIN has arrived (it moved rcv_nxt, so bytes_received counts it).
FIN_RECEIVED = ("CLOSE_WAIT", "LAST_ACK", "CLOSING")
TCPI_SENT_LEN = TCPI_BYTES_SENT + 8

_PROTO_NAMES = {
    (socket.AF_INET, socket.IPPROTO_TCP): "tcp",
    (socket.AF_INET6, socket.IPPROTO_TCP): "tcp6",
    (socket.AF_INET, socket.IPPROTO_UDP): "udp",
    (socket.AF_INET6, socket.IPPROTO_UDP): "udp6",
}
PROTO_REQUESTS = {name: pair for pair, name in _PROTO_NAMES.items()}


class DiagUnavailable(OSError):
    """Netlink sock_diag cannot be used here; the message says why in words."""


# The kernel's state numbers (include/net/tcp_states.h, from 1) as the model names
# them; a request socket (NEW_SYN_RECV) is shown as SYN_RECV, as /proc/net/tcp does.
_TCP_NAMES = ("NONE", *("SYN_RECV" if n == "NEW_SYN_RECV" else n for n in TCP_STATES))


def state_name(number: int, proto: str) -> str:
    """The model's name for the kernel's state number (NEW_SYN_RECV is SYN_RECV)."""
    if not proto.startswith("tcp"):
        return UDP_STATE
    return _TCP_NAMES[number] if 0 < number < len(_TCP_NAMES) else "NONE"


def _info_span(payload: bytes | memoryview) -> tuple[int, int]:
    """Where the ``INET_DIAG_INFO`` attribute's data (struct tcp_info) lies: (start, end).

    (0, 0) when the message has none (TIME_WAIT, a request socket, UDP).
    """
    off = MSG_LEN
    end = len(payload)
    while off + 4 <= end:
        alen, atype = _RTA.unpack_from(payload, off)
        if alen < 4:
            break
        if atype == INET_DIAG_INFO:
            return off + 4, min(off + alen, end)
        off += (alen + 3) & ~3
    return 0, 0


Fields = tuple[
    int,
    int | None,
    str,
    str | None,
    str,
    int,
    int,
    int,
    int,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
]


@functools.lru_cache(maxsize=4096)
def _addr(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw)


def decode_fields(
    payload: bytes | memoryview, proto: str, info: tuple[int, int] | None = None
) -> Fields:
    """One ``inet_diag_msg`` payload as a tuple: local_port, remote_port, local_addr,
    remote_addr, state, uid, inode, recv_q, send_q, backlog, rtt_us, cwnd, retrans,
    bytes_sent, bytes_received (the last six None where the kernel gives none).

    ``info`` is where tcp_info lies in the payload when the caller knows it.
    """
    (
        family,
        state_no,
        _timer,
        _retrans,
        sport,
        dport,
        src,
        dst,
        _if,
        _c0,
        _c1,
        _expires,
        rqueue,
        wqueue,
        uid,
        inode,
    ) = _MSG.unpack_from(payload, 0)
    state = state_name(state_no, proto)
    sport, dport = socket.ntohs(sport), socket.ntohs(dport)
    backlog = rtt = cwnd = retrans = sent = received = None
    send_q = wqueue
    if state == "LISTEN":
        # For a listener the kernel puts the accept queue's length in rqueue and
        # the limit given to listen() in wqueue (ss shows it as Send-Q).
        backlog, send_q = wqueue, 0
    elif proto.startswith("tcp") and state not in ("TIME_WAIT", "SYN_RECV"):
        span = _info_span(payload) if info is None else info
        rtt, cwnd, retrans, sent, received = _tcp_numbers(payload, state, span)
    return (
        sport,
        dport or None,
        _addr(family, src),
        _addr(family, dst) if dport else None,
        state,
        uid,
        inode,
        rqueue,
        send_q,
        backlog,
        rtt,
        cwnd,
        retrans,
        sent,
        received,
    )


def _tcp_numbers(
    payload: bytes | memoryview, state: str, span: tuple[int, int]
) -> tuple[int | None, int | None, int | None, int | None, int | None]:
    """rtt, cwnd, retrans, bytes sent and bytes received from the tcp_info at ``span``.

    Five Nones when there is none, or one too short to hold them.
    """
    start, end = span
    if end - start < TCPI_MIN_LEN:
        return None, None, None, None, None
    (rtt,) = _U32.unpack_from(payload, start + TCPI_RTT)
    (cwnd,) = _U32.unpack_from(payload, start + TCPI_SND_CWND)
    (retrans,) = _U32.unpack_from(payload, start + TCPI_TOTAL_RETRANS)
    # "hola" is 4 bytes sent; bytes_acked would say 5 on the client (its
    # SYN counts), so bytes_sent is read where the kernel has it.
    at = TCPI_BYTES_SENT if end - start >= TCPI_SENT_LEN else TCPI_BYTES_ACKED
    (sent,) = _U64.unpack_from(payload, start + at)
    (received,) = _U64.unpack_from(payload, start + TCPI_BYTES_RECEIVED)
    if state in FIN_RECEIVED and received:
        received -= 1  # the kernel counts the peer's FIN as a byte received
    return rtt, cwnd, retrans, sent, received


def decode(payload: bytes | memoryview, proto: str) -> RawSocket:
    """Decode one ``inet_diag_msg`` payload (as :func:`dump` returns them)."""
    (
        lport,
        rport,
        laddr,
        raddr,
        state,
        uid,
        inode,
        recv_q,
        send_q,
        backlog,
        rtt,
        cwnd,
        retrans,
        sent,
        received,
    ) = decode_fields(payload, proto)
    return RawSocket(
        proto,
        laddr,
        lport,
        raddr,
        rport,
        state,
        uid,
        inode,
        recv_q,
        send_q,
        backlog,
        rtt,
        cwnd,
        retrans,
        sent,
        received,
    )


def open_socket() -> socket.socket:
    """A NETLINK_SOCK_DIAG socket; :class:`DiagUnavailable` (in words) if there is none."""
    try:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
        )
    except (OSError, AttributeError) as exc:
        raise DiagUnavailable(
            f"the kernel's socket interface (netlink sock_diag) is not available here: {exc}"
        ) from exc
    with contextlib.suppress(OSError):  # a smaller buffer only means more recv() calls
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


def _request(
    family: int,
    protocol: int,
    ext: int,
    states: int = ALL_STATES,
    sockid: bytes = b"\0" * 48,
    msg_type: int = SOCK_DIAG_BY_FAMILY,
    flags: int = NLM_F_REQUEST | NLM_F_DUMP,
    seq: int = 1,
) -> bytes:
    body = _REQ.pack(family, protocol, ext, states) + sockid
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def _error_of(buf: bytes, off: int) -> int:
    code: int = struct.unpack_from("=i", buf, off + _NLMSGHDR.size)[0]
    return -code


RECV_SIZE = 1 << 18


def _ended(buf: bytes, off: int, length: int, msg_type: int, what: str) -> bool:
    """Whether a message other than a socket ends the dump; raises if the kernel refused.

    The kernel ends a dump with NLMSG_DONE carrying 0 or a negative errno (a
    protocol it has no handler for: ENOENT), or answers with NLMSG_ERROR.
    """
    if msg_type not in (NLMSG_DONE, NLMSG_ERROR):
        return False
    code = _error_of(buf, off) if length >= _NLMSGHDR.size + 4 else 0
    if code > 0:
        raise DiagUnavailable(f"the kernel refused to list {what} sockets: {os.strerror(code)}")
    return True


# The parts of a message that a row shows, as byte ranges: the header up to the
# timer's expiry (which ticks every poll on a TIME_WAIT socket), then queues,
# uid and inode; and in tcp_info, rtt to bytes_sent/bytes_retrans, leaving out
# the last_data_*/last_ack_* ages (which tick on every socket).
_HEAD_END = 52
_TAIL = (56, MSG_LEN)
TCPI_KEY = (TCPI_RTT, TCPI_SENT_LEN + 8)


NO_INFO = (0, 0)


def dump_keys(
    sock: socket.socket,
    proto: str,
    known: Container[bytes],
    keys: list[bytes],
    fresh: dict[bytes, tuple[str, bytes, tuple[int, int]]],
    inodes: set[int],
) -> None:
    """Every socket of ``proto`` as a key: the bytes of its message that a row shows.

    The poll of :class:`~app.core.sockets.DiagSource` calls this; it is the
    one loop that runs once per socket per poll, so it is written for speed:
    one pass over each received buffer, no payload copied unless the key is
    not in ``known`` (then ``fresh[key]`` holds the protocol, the payload and
    where its tcp_info lies, what :func:`decode_fields` needs, and
    its inode, if not 0, is added to ``inodes``). Appends to ``keys``.

    Raises:
        DiagUnavailable: the kernel refused the request.
    """
    family, protocol = PROTO_REQUESTS[proto]
    tcp = protocol == socket.IPPROTO_TCP
    sock.send(_request(family, protocol, 1 << (INET_DIAG_INFO - 1) if tcp else 0))
    info_at: dict[int, tuple[int, int]] = {}  # message length -> where its tcp_info lies
    recv = sock.recv
    while True:
        buf = recv(RECV_SIZE)
        if not buf or _keys_of_buffer(buf, proto, tcp, known, keys, fresh, inodes, info_at):
            return


def _keys_of_buffer(
    buf: bytes,
    proto: str,
    tcp: bool,
    known: Container[bytes],
    keys: list[bytes],
    fresh: dict[bytes, tuple[str, bytes, tuple[int, int]]],
    inodes: set[int],
    info_at: dict[int, tuple[int, int]],
) -> bool:
    """The keys of the messages in one received buffer, as :func:`dump_keys` says.

    Returns True when a message in it ended the dump. ``info_at`` caches, by
    message length, where tcp_info lies, from one buffer to the next.
    """
    hdr = _NLMSGHDR.unpack_from
    rta = _RTA.unpack_from
    u32 = _U32.unpack_from
    head_end = 16 + _HEAD_END
    tail_lo, tail_hi = 16 + _TAIL[0], 16 + _TAIL[1]
    info_lo, info_hi = TCPI_KEY
    append, add = keys.append, inodes.add
    off = 0
    end = len(buf)
    while off < end:
        length, msg_type, _f, _s, _p = hdr(buf, off)
        if msg_type != SOCK_DIAG_BY_FAMILY:
            if _ended(buf, off, length, msg_type, proto) or length < 16:
                return True
            off += (length + 3) & ~3
            continue
        key = buf[off + 16 : off + head_end] + buf[off + tail_lo : off + tail_hi]
        span = NO_INFO
        if tcp and length > 16 + MSG_LEN:
            span = info_at.get(length, NO_INFO)
            if span is NO_INFO or (
                span[0] and rta(buf, off + 16 + span[0] - 4)[1] != INET_DIAG_INFO
            ):
                # Attributes come in the same order in messages of one length:
                # find tcp_info once per length, then check it with one read.
                span = info_at[length] = _info_span(buf[off + 16 : off + length])
            if span[0]:
                at = off + 16 + span[0]
                key += buf[at + info_lo : at + min(info_hi, span[1] - span[0])]
        append(key)
        if key not in known:
            fresh[key] = (proto, buf[off + 16 : off + length], span)
            inode = u32(buf, off + 16 + MSG_LEN - 4)[0]
            if inode:
                add(inode)
        off += (length + 3) & ~3
    return False


def _sockid(family: int, local: tuple[str, int], remote: tuple[str, int]) -> bytes:
    def packed(addr: str) -> bytes:
        raw = socket.inet_pton(family, addr)
        return raw.ljust(16, b"\0")

    return _SOCKID.pack(
        local[1], remote[1], packed(local[0]), packed(remote[0])
    ) + _SOCKID_TAIL.pack(0, NO_COOKIE, NO_COOKIE)


class CloseRefused(Exception):
    """The kernel would not close the connection; the message says why in words."""


CLOSE_NEEDS_ROOT = (
    "closing a connection needs root (the kernel's SOCK_DESTROY, as ss -K); nothing was touched"
)


CAP_NET_ADMIN = 12


def _has_net_admin() -> bool:
    """Whether this process has CAP_NET_ADMIN (root in a container may not: Docker's default)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def close_refusal() -> str | None:
    """Why :func:`destroy` cannot work for this user, in words; None if it may.

    Only the privilege is known in advance; a kernel without
    CONFIG_INET_DIAG_DESTROY says so when asked.
    """
    if os.geteuid() != 0:
        return CLOSE_NEEDS_ROOT
    if not _has_net_admin():
        return (
            "closing a connection needs the CAP_NET_ADMIN capability, which this root has"
            " not (a container's root usually has not); nothing was touched"
        )
    return None


def destroy(local: tuple[str, int], remote: tuple[str, int]) -> None:
    """End one TCP connection as ``ss -K`` does (``SOCK_DESTROY``).

    ``local`` is the end on this machine whose socket is destroyed; its owner's
    blocked ``recv()`` gets ``ECONNABORTED`` and the peer gets a reset.

    Raises:
        CloseRefused: not root, no such connection, or a kernel without
            ``CONFIG_INET_DIAG_DESTROY``; the message says which, in words.
    """
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    try:
        sockid = _sockid(family, local, remote)
    except OSError as exc:
        raise CloseRefused(f"not an address: {exc}") from exc
    request = _request(
        family,
        socket.IPPROTO_TCP,
        0,
        sockid=sockid,
        msg_type=SOCK_DESTROY,
        flags=NLM_F_REQUEST | NLM_F_ACK,
    )
    try:
        sock = open_socket()
    except DiagUnavailable as exc:
        raise CloseRefused(str(exc)) from exc
    with sock:
        sock.send(request)
        buf = sock.recv(65536)
    code = (
        _error_of(buf, 0) if len(buf) >= 20 and _NLMSGHDR.unpack_from(buf)[1] == NLMSG_ERROR else 0
    )
    if code == 0:
        return
    ends = f"{format_endpoint(*local)} -> {format_endpoint(*remote)}"
    if code == errno.EPERM:
        raise CloseRefused(f"{CLOSE_NEEDS_ROOT} ({ends})")
    if code == errno.ENOENT:
        raise CloseRefused(f"no TCP connection {ends} on this machine; nothing was touched")
    if code == errno.EOPNOTSUPP:
        raise CloseRefused(
            "this kernel cannot close sockets from outside (built without"
            " CONFIG_INET_DIAG_DESTROY); nothing was touched"
        )
    raise CloseRefused(f"the kernel refused to close {ends}: {os.strerror(code)}")


_GROUPS = {
    GROUP_TCP4_DESTROY: "tcp",
    GROUP_TCP6_DESTROY: "tcp6",
    GROUP_UDP4_DESTROY: "udp",
    GROUP_UDP6_DESTROY: "udp6",
}


class DestroyListener:
    """Every socket the kernel destroys, as it happens (the ``ss -E`` groups).

    Works unprivileged. Each message is the socket's last ``inet_diag_msg``
    with its tcp_info; its state is CLOSE (a listener's too), and it carries
    no uid or inode. The end of a TIME_WAIT sends none (a timewait socket is
    not a full socket).

    Args:
        udp: also report UDP sockets.
    """

    def __init__(self, udp: bool = False) -> None:
        self._sock = open_socket()
        groups = [GROUP_TCP4_DESTROY, GROUP_TCP6_DESTROY]
        if udp:
            groups += [GROUP_UDP4_DESTROY, GROUP_UDP6_DESTROY]
        try:
            self._sock.bind((0, 0))
            for group in groups:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        except OSError as exc:
            self._sock.close()
            raise DiagUnavailable(
                f"cannot listen for closed sockets (sock_diag destroy groups): {exc}"
            ) from exc
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[RawSocket]:
        """What has arrived so far (never blocks)."""
        out: list[RawSocket] = []
        while True:
            try:
                buf = self._sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # we fell behind: some closes were lost
                    continue
                return out
            off = 0
            while off + _NLMSGHDR.size <= len(buf):
                length, msg_type = _NLMSGHDR.unpack_from(buf, off)[:2]
                if length < _NLMSGHDR.size:
                    break
                if msg_type == SOCK_DIAG_BY_FAMILY:
                    payload = buf[off + _NLMSGHDR.size : off + length]
                    if len(payload) >= MSG_LEN:
                        out.append(decode(payload, self._proto_of(payload)))
                off += (length + 3) & ~3

    @staticmethod
    def _proto_of(payload: bytes) -> str:
        # recv() does not say which group a message came from; the kernel puts
        # the protocol in an INET_DIAG_PROTOCOL attribute of destroy messages.
        tcp = _protocol_attr(payload) in (None, socket.IPPROTO_TCP)
        if payload[0] == socket.AF_INET6:
            return "tcp6" if tcp else "udp6"
        return "tcp" if tcp else "udp"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> DestroyListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


INET_DIAG_PROTOCOL = 10


def _protocol_attr(payload: bytes) -> int | None:
    off = MSG_LEN
    while off + 4 <= len(payload):
        alen, atype = _RTA.unpack_from(payload, off)
        if alen < 4:
            return None
        if atype == INET_DIAG_PROTOCOL and alen >= 5:
            return payload[off + 4]
        off += (alen + 3) & ~3
    return None
