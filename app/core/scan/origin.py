"""Scanning from a lab host: which running lab host scans, and which addresses it may scan.

A running lab (``observatory lab up FILE`` with ``[[host]]`` tables, or the
dashboard's ``--scenario``) is a set of network namespaces ``obs<PID>-<host>``
(see :mod:`app.core.netns`). :func:`find_origin` finds the one of a host, from
any process, with every host of its lab and their addresses: a
:class:`LabOrigin`. nmap then runs as ``ip netns exec NS nmap ...``, so its
packets leave from that host.

The safety rule: nmap never sends a packet outside loopback or the lab's
namespaces. A lab host has no route but its lab network's, and on top of that
:meth:`LabOrigin.check_target` allows exactly the lab's addresses (any address
of any of its hosts) and 127.0.0.1 or ::1, the scanning host's own loopback.
From this machine, :func:`refuse_lab_address` refuses a running lab's address
(this machine has no route into the lab: the packets would take its default
route, off the machine) and names the host to scan from.

Names never reach an argv: a host name is only compared with the names of
``/run/netns``; the namespace put after ``ip netns exec`` is one of those
names, which start with ``obs``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass

from app.core import netns
from app.core.model import Snapshot, Socket
from app.core.netns import LabHost
from app.core.targets import ScanError, Target, TargetError

_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class OriginError(ScanError):
    """No such lab host runs, or it cannot be scanned from (not root, no ``ip``)."""


def _ip(text: str) -> IP | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0].split("/", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class LabOrigin:
    """A running lab host to scan from, and every host of its lab.

    Attributes:
        host: the scanning host's name ("client").
        namespace: its network namespace ("obs1234-client"), a name of /run/netns.
        hosts: every host of its lab (itself included), each with its addresses
            in CIDR, as ``ip addr`` shows them inside the host.
    """

    host: str
    namespace: str
    hosts: tuple[LabHost, ...]

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        """The words that run a command inside the host: ``ip netns exec NS``."""
        return ("ip", "netns", "exec", self.namespace)

    def namespace_of(self, host: str) -> str:
        """The namespace of another host of the same lab."""
        return self.namespace[: len(self.namespace) - len(self.host)] + host

    def owner(self, address: str) -> str | None:
        """The host of this lab that ``address`` is: the scanning host for its own
        loopback (127.0.0.1, ::1), the host holding it otherwise; None: not the lab's."""
        ip = _ip(address)
        if ip is None:
            return None
        if ip in _LOOPBACK:
            return self.host
        for host in self.hosts:
            if any(_ip(a) == ip for a in host.addresses):
                return host.name
        return None

    def allowed(self) -> str:
        """The addresses it may scan, in words: ``10.0.2.15 or 10.0.2.100 (server), ...``."""
        parts = []
        # The other hosts first: scanning them is the point.
        for host in sorted(self.hosts, key=lambda h: h.name == self.host):
            shown = " or ".join(a.split("/", 1)[0] for a in host.addresses)
            if shown:
                parts.append(f"{shown} ({host.name})")
        parts.append(f"127.0.0.1 ({self.host}'s own loopback)")
        return ", ".join(parts)

    def check_target(self, target: Target) -> None:
        """Refuse, in words, a target that is not one of the lab's addresses.

        Raises:
            TargetError: a hostname, a network, or an address outside the lab.
        """
        if target.kind == "address" and self.owner(target.text) is not None:
            return
        if target.kind == "hostname":
            what = f"{target.text!r} is a name, and names are not looked up there"
        elif target.kind == "network":
            what = f"{target.text} is a network, and only single addresses are scanned"
        else:
            what = f"{target.text} is not one of them"
        raise TargetError(
            f"from lab host {self.host}, scan an address of its lab: {self.allowed()}; "
            f"{what} (a scan from a lab host never leaves the lab)"
        )

    def check_usable(self) -> str:
        """Check the host can be scanned from now; the path of ``ip``.

        Raises:
            OriginError: not root, no ``ip``, or the lab has ended.
        """
        _check_root(self.host)
        ip = shutil.which("ip")
        if ip is None:
            raise OriginError(
                "scanning from a lab host needs iproute2's `ip` (apt install iproute2)"
            )
        if not os.path.exists(os.path.join(netns.NETNS_DIR, self.namespace)):
            raise OriginError(f"lab host {self.host} is not running any more ({self.namespace})")
        return ip

    def poll(self, hosts: Iterable[str]) -> Snapshot:
        """The sockets of some hosts of the lab, each marked with its host (sock_diag
        opened inside each host's namespace). A host that cannot be read is left out.

        Raises:
            OriginError: none could be read at all (the lab ended, say).
        """
        from app.core.sockets import DiagSource

        sockets: list[Socket] = []
        failures: list[str] = []
        for name in sorted(set(hosts)):
            try:
                opened = functools.partial(DiagSource, host=name)
                source = netns.in_namespace(self.namespace_of(name), opened)
            except (OSError, netns.NetnsError) as exc:
                failures.append(f"{name}: {exc}")
                continue
            try:
                sockets.extend(source.poll().sockets)
            except OSError as exc:
                failures.append(f"{name}: {exc}")
            finally:
                source.close()
        if failures and not sockets:
            raise OriginError(f"cannot read the lab hosts' sockets: {'; '.join(failures)}")
        return Snapshot(taken_at=time.time(), sockets=tuple(sockets))


# --------------------------------------------------------------------------- finding them


def _check_root(host: str) -> None:
    """Refuse, in words, a user who may not enter the lab host's namespace."""
    why = netns.refusal()
    if why is None:
        return
    if os.geteuid() != 0:
        why = (
            "nmap runs inside its network namespace (ip netns exec), and only root may "
            "enter one: run the observatory again with sudo"
        )
    raise OriginError(f"scanning from lab host {host} needs root: {why}")


def running_hosts() -> list[str]:
    """The names of the lab hosts that run now, in every lab, sorted (no root needed)."""
    return sorted({host for lab in netns.lab_namespaces().values() for host, _ in lab})


def _addresses(ns: str) -> tuple[str, ...]:
    """The host's addresses in CIDR, but loopback and link-local (read inside it)."""
    from app.core.interfaces import list_interfaces

    out: list[str] = []
    for iface in netns.in_namespace(ns, list_interfaces):
        for a in iface.addresses:
            ip = _ip(a.address)
            if ip is None or ip.is_loopback or ip.is_link_local:
                continue
            out.append(a.address if a.prefixlen is None else f"{a.address}/{a.prefixlen}")
    return tuple(out)


def _origin(host: str, lab: list[tuple[str, str]]) -> LabOrigin:
    try:
        hosts = tuple(LabHost(name, _addresses(ns)) for name, ns in lab)
    except (OSError, netns.NetnsError) as exc:
        reason = netns.refusal() or str(exc)
        raise OriginError(f"cannot read the addresses of lab host {host}'s lab: {reason}") from None
    namespace = next(ns for name, ns in lab if name == host)
    return LabOrigin(host, namespace, hosts)


def find_origin(host: str) -> LabOrigin:
    """The running lab host ``host``, to scan from, with its lab's hosts and addresses.

    Raises:
        OriginError: no such host runs (the running ones are named), two labs have
            one, or this user may not enter it (not root), in words.
    """
    labs = netns.lab_namespaces()
    found = [(prefix, lab) for prefix, lab in labs.items() if any(h == host for h, _ in lab)]
    if not found:
        running = running_hosts()
        known = f"running lab hosts: {', '.join(running)}" if running else "no lab runs now"
        raise OriginError(
            f"no lab host named {host!r} is running ({known}). Lab hosts are the [[host]] "
            "tables of a scenario, made while `observatory lab up FILE` (or the dashboard's "
            "--scenario FILE) runs, as root."
        )
    if len(found) > 1:
        raise OriginError(
            f"{len(found)} running labs have a host named {host!r}: "
            f"{', '.join(prefix + host for prefix, _ in found)}; stop all but one"
        )
    _check_root(host)
    return _origin(host, found[0][1])


def running_labs() -> list[LabOrigin]:
    """Every running lab, as seen from its first host (for :func:`refuse_lab_address`).

    Empty when no lab runs, or when this user may not enter one (not root).
    """
    if netns.refusal() is not None:
        return []
    out = []
    for lab in netns.lab_namespaces().values():
        try:
            out.append(_origin(lab[0][0], lab))
        except OriginError:
            continue
    return out


def refuse_lab_address(
    target: Target, labs: Iterable[LabOrigin], local: Iterable[str] | None = None
) -> None:
    """From this machine, refuse an address of a running lab (unless it is this machine's too).

    This machine has no route into a lab network: the packets would take its
    default route, off the machine. The refusal names the hosts to scan from.

    Raises:
        TargetError: in words, with ``--from`` hosts to use instead.
    """
    from app.core.scan.join import is_local_address

    for address in target.addresses():
        for lab in labs:
            owner = lab.owner(address)
            if owner is None or _ip(address) in _LOOPBACK:
                continue
            if is_local_address(address, local):
                continue  # (this machine's own too: the next address is still checked)
            others = [h.name for h in lab.hosts if h.name != owner] or [owner]
            hosts = " or ".join(f"--from {name}" for name in others)
            raise TargetError(
                f"{address} is lab host {owner}'s address, and this machine has no route into "
                f"the lab network: scan it from a lab host instead ({hosts}, or the Scan "
                "tab's From)"
            )
