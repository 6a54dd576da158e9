"""The join of nmap's ports with this machine's LISTEN table, and why each state is what it is.

nmap sees a port from outside; the kernel knows who listens there and on
which address. For a scanned host that is this machine, :func:`join_listeners`
attaches to each port the local listener (lifting listened ports out of
nmap's "Not shown" lines) and :func:`explain` says, in words, why nmap saw
open, closed or filtered: bound to another address, a full accept queue, a
SYN scan that never completed the handshake...

A scan from a lab host (``origin``) joins each scanned address with the
sockets of the lab host that address is (``Socket.host``), and its words name
that host ("on host server, tcp-server (pid 12) listens on 10.0.2.100:7000
only, not on 10.0.2.15"). A socket is only ever used to explain the ports of
its own host: this machine's (``host`` None) for this machine's addresses,
a lab host's for that host's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from app.core.model import Snapshot, Socket, format_endpoint
from app.core.scan.nmap_xml import _ParsedHost
from app.core.scan.request import _is_tcp_listener, _is_udp_bound
from app.core.scan.results import HostResult, ListenerInfo, NotShown, PortResult
from app.core.scan.types import ScanType
from app.core.services import nmap_service_name
from app.core.targets import expand_ports, ports_of

if TYPE_CHECKING:
    from app.core.scan.origin import LabOrigin

EXPERIMENT_9 = "experiment 9: a server bound to one address"


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
        host=s.host,
    )


def _why_bound_elsewhere(
    port: PortResult, info: ListenerInfo, others: Sequence[Socket], host: str | None
) -> str:
    """Why ``port`` is closed though a process listens on it, on another address."""
    bound = " and ".join(format_endpoint(s.local_addr, s.local_port) for s in others)
    answer = "answers ICMP port unreachable" if port.proto == "udp" else "refuses the connection"
    wildcard = _wildcard(port.address)
    if host is None:
        return (
            f"a process listens on {bound} only; you scanned {port.address}, so the kernel "
            f"{answer} (bind to {wildcard} to accept on every address)"
        )
    return (
        f"on host {host}, {info.who} listens on {bound} only, not on {port.address}, so "
        f"{host}'s kernel {answer} ({EXPERIMENT_9}; bind to {wildcard} to accept on every "
        f"address of {host})"
    )


def _why_closed(
    port: PortResult,
    info: ListenerInfo | None,
    matching: bool,
    others: Sequence[Socket],
    host: str | None = None,
) -> str:
    """Why ``port`` is closed: nothing listens, it listens on another address, or it came late."""
    udp = port.proto == "udp"
    on_host = "" if host is None else f"on host {host}, "
    if matching and info is not None:
        return (
            f"{on_host}{info.who} listens on {info.endpoint} now; it was not listening when "
            "nmap scanned"
        )
    if others and info is not None:
        return _why_bound_elsewhere(port, info, others, host)
    where = f"{port.port}/{port.proto}"
    if host is not None:
        where += f" on host {host}"
    kernel = "the kernel" if host is None else f"{host}'s kernel"
    if udp:
        return f"nothing listens on {where}: {kernel} answered with ICMP port unreachable"
    return f"nothing listens on {where}: {kernel} answered nmap's SYN with a reset (RST)"


def _why_no_listener(
    port: PortResult, info: ListenerInfo | None, others: Sequence[Socket], host: str | None = None
) -> str | None:
    """Why nmap found ``port`` open though no socket listens for the scanned address now."""
    if not (port.state == "open" or (port.state == "open|filtered" and others)):
        return None
    extra = ""
    if others and info is not None:
        extra = f" ({info.who} listens on {info.endpoint}, another address)"
    if host is not None:
        return (
            f"no socket of host {host} listens on {port.port}/{port.proto} for {port.address} "
            f"now{extra}: it closed after the scan"
        )
    return (
        f"no socket of this machine listens on {port.port}/{port.proto} for {port.address} "
        f"now{extra}: it closed after the scan, or it lives in another "
        "network namespace (a container, or a lab host: scan it from one)"
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


def _on_host(info: ListenerInfo, host: str) -> str:
    """``host server: tcp-server (pid 12) listens on 0.0.0.0:6000 (every address of server)``."""
    try:
        every = _ip(info.address).is_unspecified
    except ValueError:
        every = False
    scope = f"every address of {host}" if every else "this address only"
    return f"host {host}: {info.who} listens on {info.endpoint} ({scope})"


def _why_listened(
    port: PortResult, scan_type: ScanType, info: ListenerInfo, host: str | None = None
) -> str | None:
    """Why nmap saw what it saw on a port that ``info`` listens on for the scanned address."""
    udp = port.proto == "udp"
    if host is not None:
        if port.state == "open":
            return f"{_on_host(info, host)}; {_why_open('it', udp, scan_type)}"
        why = _why_listened(port, scan_type, info)
        return None if why is None else f"host {host}: {why}"
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
    port: PortResult, scan_type: ScanType, listeners: Sequence[Socket], host: str | None = None
) -> tuple[ListenerInfo | None, str | None]:
    """The listener behind ``port``, and why nmap saw what it saw.

    Args:
        port: nmap's result for a port of a local address (or of lab host ``host``).
        scan_type: the type of scan that produced it.
        listeners: the sockets of that machine or host listening on that port
            and protocol (TCP LISTEN, or bound UDP), whatever address they are
            bound to. Those of any other host are left out here.
        host: the lab host the scanned address is, in a scan from a lab host;
            None: this machine.
    """
    listeners = [s for s in listeners if s.host == host]
    matching = [s for s in listeners if accepts(s.local_addr, port.address)]
    others = [s for s in listeners if s not in matching]
    chosen = sorted(matching or others, key=lambda s: s.pid is None)
    info = _listener_info(chosen[0]) if chosen else None
    if port.state == "closed":
        return info, _why_closed(port, info, bool(matching), others, host)
    if info is None or not matching:
        return info, _why_no_listener(port, info, others, host)
    return info, _why_listened(port, scan_type, info, host)


def _listeners_by_port(
    scan_type: ScanType, snapshot: Snapshot, host: str | None = None
) -> dict[int, list[Socket]]:
    """The sockets of ``snapshot`` on ``host`` (None: this machine) that a scan of
    ``scan_type`` could reach, by local port."""
    wanted = _is_udp_bound if scan_type == "udp" else _is_tcp_listener
    by_port: dict[int, list[Socket]] = {}
    for s in snapshot.sockets:
        if s.host == host and wanted(s):
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
    host: _ParsedHost,
    scan_type: ScanType,
    by_port: dict[int, list[Socket]],
    lab_host: str | None = None,
) -> tuple[list[PortResult], list[NotShown]]:
    """The ports of a host that is this machine (or lab host ``lab_host``), each with
    its listener and explanation.

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
        info, why = explain(p, scan_type, by_port.get(p.port, []), lab_host)
        joined.append(replace(p, listener=info, explanation=why))
    return joined, [g for g in groups if g.count > 0]


def join_listeners(
    hosts: Sequence[_ParsedHost],
    scan_type: ScanType,
    snapshot: Snapshot,
    local: Iterable[str] | None = None,
    origin: LabOrigin | None = None,
) -> tuple[tuple[HostResult, ...], tuple[PortResult, ...]]:
    """Attach listeners and explanations to the ports of local hosts.

    From this machine (``origin`` None), a local host's ports are joined with
    the snapshot's sockets of this machine (``Socket.host`` None). From a lab
    host, each address of the lab is joined with the sockets of the host it is
    (127.0.0.1: the scanning host), and nothing else is joined.

    A port nmap folded into "Not shown" gets a line of its own when something
    listens on it: that is where an explanation matters most.
    """
    local_list = list(local) if local is not None else None
    by_host: dict[str | None, dict[int, list[Socket]]] = {}
    out_hosts: list[HostResult] = []
    out_ports: list[PortResult] = []
    for host in hosts:
        if origin is not None:
            is_local, lab_host = False, origin.owner(host.address) if host.address else None
            joined = lab_host is not None
        else:
            is_local = bool(host.address) and is_local_address(host.address, local_list)
            lab_host, joined = None, is_local
        if joined:
            if lab_host not in by_host:
                by_host[lab_host] = _listeners_by_port(scan_type, snapshot, lab_host)
            ports, groups = _join_local(host, scan_type, by_host[lab_host], lab_host)
        else:
            ports, groups = list(host.ports), list(host.not_shown)
        ports.sort(key=lambda p: (p.proto, p.port))
        out_ports.extend(ports)
        out_hosts.append(
            HostResult(host.address, host.state, is_local, host.timed_out, tuple(groups), lab_host)
        )
    return tuple(out_hosts), tuple(out_ports)
