"""The join of nmap's ports with this machine's LISTEN table, and why each state is what it is.

nmap sees a port from outside; the kernel knows who listens there and on
which address. For a scanned host that is this machine, :func:`join_listeners`
attaches to each port the local listener (lifting listened ports out of
nmap's "Not shown" lines) and :func:`explain` says, in words, why nmap saw
open, closed or filtered: bound to another address, a full accept queue, a
SYN scan that never completed the handshake...
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import replace

from app.core.model import Snapshot, Socket, format_endpoint
from app.core.scan.nmap_xml import _ParsedHost
from app.core.scan.request import _is_tcp_listener, _is_udp_bound
from app.core.scan.results import HostResult, ListenerInfo, NotShown, PortResult
from app.core.scan.types import ScanType
from app.core.services import nmap_service_name
from app.core.targets import expand_ports, ports_of


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_local_address(address: str, local: Iterable[str] | None = None) -> bool:
    """True when ``address`` is this machine: loopback, or on one of its interfaces."""
    try:
        ip = _ip(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if local is None:
        from app.core.interfaces import local_addresses

        local = local_addresses()
    for other in local:
        try:
            if _ip(other) == ip:
                return True
        except ValueError:
            continue
    return False


def accepts(bound: str, scanned: str) -> bool:
    """Would a socket bound to ``bound`` receive connections to ``scanned``?

    ``0.0.0.0`` takes every IPv4 address, ``::`` every address of both
    families (Linux's default, net.ipv6.bindv6only=0), else only its own.
    """
    try:
        b, s = _ip(bound), _ip(scanned)
    except ValueError:
        return False
    if b.is_unspecified:
        return b.version == 6 or s.version == 4
    return b == s


def _wildcard(scanned: str) -> str:
    try:
        return "::" if _ip(scanned).version == 6 else "0.0.0.0"
    except ValueError:
        return "0.0.0.0"


def _listener_info(s: Socket) -> ListenerInfo:
    return ListenerInfo(
        pid=s.pid,
        process=s.process,
        user=s.user,
        address=s.local_addr,
        port=s.local_port,
        proto=s.proto,
        recv_q=s.recv_q if s.is_tcp else 0,
    )


def _why_closed(
    port: PortResult, info: ListenerInfo | None, matching: bool, others: Sequence[Socket]
) -> str:
    """Why ``port`` is closed: nothing listens, it listens on another address, or it came late."""
    udp = port.proto == "udp"
    if matching and info is not None:
        return f"{info.who} listens on {info.endpoint} now; it was not listening when nmap scanned"
    if others and info is not None:
        bound = " and ".join(format_endpoint(s.local_addr, s.local_port) for s in others)
        answer = "answers ICMP port unreachable" if udp else "refuses the connection"
        return (
            f"a process listens on {bound} only; you scanned {port.address}, so the kernel "
            f"{answer} (bind to {_wildcard(port.address)} to accept on every address)"
        )
    where = f"{port.port}/{port.proto}"
    if udp:
        return f"nothing listens on {where}: the kernel answered with ICMP port unreachable"
    return f"nothing listens on {where}: the kernel answered nmap's SYN with a reset (RST)"


def _why_no_listener(
    port: PortResult, info: ListenerInfo | None, others: Sequence[Socket]
) -> str | None:
    """Why nmap found ``port`` open though no socket listens for the scanned address now."""
    if not (port.state == "open" or (port.state == "open|filtered" and others)):
        return None
    extra = ""
    if others and info is not None:
        extra = f" ({info.who} listens on {info.endpoint}, another address)"
    return (
        f"no socket of this machine listens on {port.port}/{port.proto} for {port.address} "
        f"now{extra}: it closed after the scan, or it lives in another "
        "network namespace (a container)"
    )


def _why_open(who: str, udp: bool, scan_type: ScanType) -> str:
    """What nmap did to the listener ``who`` to find its port open, by scan type."""
    if udp:
        return f"{who} answered nmap's UDP probe"
    if scan_type == "syn":
        return (
            f"nmap's SYN scan got a SYN-ACK and answered it with RST: the "
            f"handshake never completed, so {who} never saw a client"
        )
    if scan_type == "version":
        return (
            f"nmap connected to {who} and sent it probes to learn its version: "
            "the server saw a real client"
        )
    return (
        f"nmap's connect scan completed a handshake with {who}: a real "
        "connection, so the server saw a client (the lecture's server prints a "
        "`Client:` line); an iterative server busy with another client leaves "
        "the probe waiting in its backlog"
    )


def _why_filtered(info: ListenerInfo, udp: bool) -> str:
    """Why nmap heard nothing from a port ``info`` listens on: a full queue, or a firewall."""
    # On a LISTEN row recv_q counts the connections waiting for accept().
    # /proc/net/tcp does not give the backlog limit (ss's Send-Q comes from
    # netlink), so any waiting connection plus silence reads as a full queue.
    if not udp and info.recv_q > 0:
        waiting = "1 connection waits" if info.recv_q == 1 else (f"{info.recv_q} connections wait")
        return (
            f"the accept queue of {info.who} is full ({waiting} to be accepted): the kernel "
            "drops new SYNs while it is full, so nmap heard no answer; the server does "
            "not call accept() (the lecture's iterative server is busy with its first "
            "client)"
        )
    return (
        f"{info.who} listens on {info.endpoint}, yet nmap heard no answer: a "
        "firewall rule may drop packets to this port"
    )


def _why_listened(port: PortResult, scan_type: ScanType, info: ListenerInfo) -> str | None:
    """Why nmap saw what it saw on a port that ``info`` listens on for the scanned address."""
    udp = port.proto == "udp"
    if port.state == "open":
        return _why_open(info.who, udp, scan_type)
    if port.state == "open|filtered" and udp:
        return (
            f"UDP has no handshake: {info.who} listens but did not answer nmap's "
            "probe, so nmap cannot tell open from filtered"
        )
    if "filtered" in port.state:
        return _why_filtered(info, udp)
    return None


def explain(
    port: PortResult, scan_type: ScanType, listeners: Sequence[Socket]
) -> tuple[ListenerInfo | None, str | None]:
    """The listener behind ``port`` on this machine, and why nmap saw what it saw.

    Args:
        port: nmap's result for a port of a local address.
        scan_type: the type of scan that produced it.
        listeners: this machine's sockets listening on that port and protocol
            (TCP LISTEN, or bound UDP), whatever address they are bound to.
    """
    matching = [s for s in listeners if accepts(s.local_addr, port.address)]
    others = [s for s in listeners if s not in matching]
    chosen = sorted(matching or others, key=lambda s: s.pid is None)
    info = _listener_info(chosen[0]) if chosen else None
    if port.state == "closed":
        return info, _why_closed(port, info, bool(matching), others)
    if info is None or not matching:
        return info, _why_no_listener(port, info, others)
    return info, _why_listened(port, scan_type, info)


def _listeners_by_port(scan_type: ScanType, snapshot: Snapshot) -> dict[int, list[Socket]]:
    """The sockets of ``snapshot`` a scan of ``scan_type`` could reach, by local port."""
    wanted = _is_udp_bound if scan_type == "udp" else _is_tcp_listener
    by_port: dict[int, list[Socket]] = {}
    for s in snapshot.sockets:
        if wanted(s):
            by_port.setdefault(s.local_port, []).append(s)
    return by_port


def _lift(
    group: NotShown, address: str, by_port: dict[int, list[Socket]]
) -> tuple[list[PortResult], NotShown]:
    """The ports of ``group`` that something listens on, as rows, and the group without them."""
    if not group.ports:
        return [], group
    numbers = expand_ports(group.ports)
    lifted = [n for n in numbers if n in by_port]
    if not lifted:
        return [], group
    rows = [
        PortResult(
            port=n,
            proto=group.proto,
            state=group.state,
            service=nmap_service_name(n, group.proto) or "unknown",
            reason=group.reason,
            address=address,
        )
        for n in lifted
    ]
    rest = sorted(set(numbers) - set(lifted))
    return rows, replace(group, count=group.count - len(lifted), ports=ports_of(rest) or None)


def _join_local(
    host: _ParsedHost, scan_type: ScanType, by_port: dict[int, list[Socket]]
) -> tuple[list[PortResult], list[NotShown]]:
    """The ports of a host that is this machine, each with its listener and explanation.

    Also the host's "Not shown" groups, less the ports lifted out of them
    (a group left with no port is dropped).
    """
    ports = list(host.ports)
    groups: list[NotShown] = []
    for group in host.not_shown:
        lifted, rest = _lift(group, host.address, by_port)
        ports.extend(lifted)
        groups.append(rest)
    joined = []
    for p in ports:
        info, why = explain(p, scan_type, by_port.get(p.port, []))
        joined.append(replace(p, listener=info, explanation=why))
    return joined, [g for g in groups if g.count > 0]


def join_listeners(
    hosts: Sequence[_ParsedHost],
    scan_type: ScanType,
    snapshot: Snapshot,
    local: Iterable[str] | None = None,
) -> tuple[tuple[HostResult, ...], tuple[PortResult, ...]]:
    """Attach listeners and explanations to the ports of local hosts.

    A port nmap folded into "Not shown" gets a line of its own when something
    listens on it: that is where an explanation matters most.
    """
    local_list = list(local) if local is not None else None
    by_port = _listeners_by_port(scan_type, snapshot)
    out_hosts: list[HostResult] = []
    out_ports: list[PortResult] = []
    for host in hosts:
        is_local = bool(host.address) and is_local_address(host.address, local_list)
        if is_local:
            ports, groups = _join_local(host, scan_type, by_port)
        else:
            ports, groups = list(host.ports), list(host.not_shown)
        ports.sort(key=lambda p: (p.proto, p.port))
        out_ports.extend(ports)
        out_hosts.append(
            HostResult(host.address, host.state, is_local, host.timed_out, tuple(groups))
        )
    return tuple(out_hosts), tuple(out_ports)
