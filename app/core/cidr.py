"""A lab host's own address, as a scenario's ``[[host]]`` gives it: an interface address
with its prefix ("10.0.2.15/24", "fd00::15/64"), checked with the ``ipaddress`` module,
and why one is refused, in words a student can act on."""

from __future__ import annotations

import ipaddress

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_host_address(text: str) -> tuple[IPInterface | None, str]:
    """An interface's address with its prefix ("10.0.2.15/24"), or why not in words."""
    address_part, slash, prefix = text.strip().partition("/")
    try:
        ip = ipaddress.ip_address(address_part)
    except ValueError:
        return None, f'"{text}" is not an IP address with a prefix: {why_not_an_ip(address_part)}'
    usual = 24 if ip.version == 4 else 64
    if not slash:
        return None, (
            f'"{text}" has no prefix: an interface address needs its network\'s length '
            f'after "/" (add /{usual}: "{ip}/{usual}")'
        )
    try:
        interface = ipaddress.ip_interface(f"{ip}/{prefix}")
    except ValueError:
        return None, (
            f'"{text}": the prefix after "/" must be a length from 0 to {ip.max_prefixlen} '
            f'(like /{usual}), not "{prefix}"'
        )
    why = not_a_host_address(interface)
    return (None, f'"{text}": {why}') if why else (interface, "")


def why_not_an_ip(text: str) -> str:
    """ipaddress's own reason ("Octet 300 (> 255) not permitted in '10.0.2.300'")."""
    parse = ipaddress.IPv6Address if ":" in text else ipaddress.IPv4Address
    try:
        parse(text)
    except ValueError as exc:
        return str(exc)
    return "not an IPv4 or IPv6 address"  # pragma: no cover - ip_address refused it


def not_a_host_address(interface: IPInterface) -> str | None:
    """Why an address cannot be a lab host's own, in words; None when it can."""
    ip, network = interface.ip, interface.network
    if ip.is_unspecified:
        return f"{ip} is the unspecified address (bind() takes it as 'any'), not one host's"
    if ip.is_loopback:
        return f"{ip} is a loopback address: every lab host has its own loopback already"
    if ip.is_multicast:
        return f"{ip} is a multicast address (a group of hosts), not one host's"
    if ip.is_link_local:
        block = "169.254.0.0/16" if ip.version == 4 else "fe80::/10"
        return f"{ip} is link-local ({block}): the kernel gives those itself, not a scenario"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"an IPv4 address written as IPv6: write {ip.ipv4_mapped} itself, with a prefix"
    if ip.version == 4 and network.prefixlen < 31:
        first, last = network[1], network[-2]
        if ip == network.network_address:
            return (
                f"{ip} is the network address of {network} (its first); "
                f"a host takes one of {first} to {last}"
            )
        if ip == network.broadcast_address:
            return (
                f"{ip} is the broadcast address of {network} (its last); "
                f"a host takes one of {first} to {last}"
            )
    return None
