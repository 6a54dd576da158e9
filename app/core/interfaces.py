"""Network interfaces like ``ip addr``: name, up/down, IPv4 and IPv6 addresses."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class Address:
    family: int  # 4 or 6
    address: str
    prefixlen: int | None


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    up: bool
    mtu: int | None
    mac: str | None
    addresses: tuple[Address, ...]

    @property
    def ipv4(self) -> list[str]:
        return [a.address for a in self.addresses if a.family == 4]

    @property
    def ipv6(self) -> list[str]:
        return [a.address for a in self.addresses if a.family == 6]


def _prefixlen(netmask: str | None, family: int) -> int | None:
    if not netmask:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET if family == 4 else socket.AF_INET6, netmask)
    except OSError:
        return None
    return sum(bin(b).count("1") for b in packed)


def list_interfaces() -> list[Interface]:
    """Every interface of this machine, loopback first, in name order otherwise."""
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    out: list[Interface] = []
    for name, entries in addrs.items():
        found: list[Address] = []
        mac: str | None = None
        for entry in entries:
            if entry.family == socket.AF_INET:
                found.append(Address(4, entry.address, _prefixlen(entry.netmask, 4)))
            elif entry.family == socket.AF_INET6:
                address = entry.address.split("%", 1)[0]
                found.append(Address(6, address, _prefixlen(entry.netmask, 6)))
            elif entry.family == psutil.AF_LINK:
                mac = entry.address
        stat = stats.get(name)
        out.append(
            Interface(
                name=name,
                up=bool(stat and stat.isup),
                mtu=stat.mtu if stat else None,
                mac=mac,
                addresses=tuple(found),
            )
        )
    out.sort(key=lambda i: (not i.name.startswith("lo"), i.name))
    return out


def local_addresses() -> set[str]:
    """Every IPv4 and IPv6 address assigned to this machine."""
    return {a.address for i in list_interfaces() for a in i.addresses}
