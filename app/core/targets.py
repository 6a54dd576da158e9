"""What may be scanned: targets and port lists, validated before nmap sees them.

python-nmap builds ``["nmap", "-oX", "-"] + shlex.split(hosts) + ...``, so a
"host" of ``127.0.0.1 -oN /tmp/x`` would become an nmap option. Here nothing
a user typed is passed on as it was typed: a target is parsed into an address,
a network or a strict hostname and re-printed in canonical form; a port list
is parsed into numbers and re-printed as ``22,80,6000-6010``. Anything else
is refused with one line of words (a ``ScanError``, which is a ``ValueError``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from app.labs import digits_hint

# A network may hold at most this many addresses: a /24 for IPv4, a /120 for IPv6.
MAX_NETWORK_ADDRESSES = 256
# The longest target (a hostname has at most 253 characters; an IPv6 address with its
# zone and prefix fewer) and port list (ranges say any list in fewer) read.
MAX_TARGET_LENGTH = 300
MAX_PORTS_LENGTH = 1000

# RFC 1123 labels: letters, digits and inner hyphens; 1 to 63 characters each.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# An IPv6 zone ("fe80::1%eth0") is an interface name: no spaces, no shell characters.
_ZONE = re.compile(r"[A-Za-z0-9_.]{1,15}")
# [0-9], not \d: \d matches every script's digits (Arabic-Indic, full-width...).
_PORT_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")

TargetKind = Literal["address", "network", "hostname"]


class ScanError(ValueError):
    """Anything a scan refuses or cannot do; ``str(exc)`` is one line of words."""


class TargetError(ScanError):
    """The target is not an address, a small network or a hostname."""


class PortsError(ScanError):
    """The port list is not numbers and ranges from 1 to 65535."""


@dataclass(frozen=True, slots=True)
class Target:
    """A validated target.

    Attributes:
        text: the canonical form handed to nmap (never the user's raw text).
        kind: "address", "network" (CIDR) or "hostname".
        family: 4 or 6 for addresses and networks; None for a hostname.
        size: how many addresses the target covers (1 for a hostname).
    """

    text: str
    kind: TargetKind
    family: int | None
    size: int

    def addresses(self) -> list[str]:
        """Every address of an address or network target (empty for a hostname)."""
        if self.kind == "address":
            return [self.text]
        if self.kind == "network":
            return [str(a) for a in ipaddress.ip_network(self.text)]
        return []

    @property
    def is_loopback(self) -> bool:
        """True when every address of the target is a loopback address."""
        if self.kind == "hostname":
            return self.text.rstrip(".").lower() == "localhost"
        return ipaddress.ip_network(self.text.split("%", 1)[0]).is_loopback


def _shown(text: str) -> str:
    """The user's text, quoted, short enough for one line."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_target(text: str) -> Target:
    """Validate one scan target.

    Accepted: an IPv4 or IPv6 address (``127.0.0.1``, ``::1``, ``fe80::1%lo``),
    a network in CIDR form of at most 256 addresses (``127.0.0.0/24``,
    ``fd00::/120``), or a hostname of letters, digits, dots and hyphens
    (``localhost``).

    Raises:
        TargetError: anything else, with the reason in words.
    """
    raw = text.strip()
    if not raw:
        raise TargetError(
            "give a target to scan: an IP address, a network like 127.0.0.0/24, or a hostname"
        )
    if len(raw) > MAX_TARGET_LENGTH:
        raise TargetError(
            f"{_shown(raw)} is {len(raw)} characters long: a target is at most "
            f"{MAX_TARGET_LENGTH} (a hostname at most 253)"
        )
    if raw.startswith("-"):
        raise TargetError(
            f"a target cannot start with '-': {_shown(raw)} looks like an "
            "option, and options are not accepted as targets"
        )
    if any(c.isspace() for c in raw):
        raise TargetError(
            f"one target at a time, without spaces: {_shown(raw)} is not "
            "an address, a network or a hostname"
        )
    if "/" in raw:
        return _parse_network(raw)
    if ":" in raw:
        return _parse_ipv6(raw)
    try:
        v4 = ipaddress.IPv4Address(raw)
    except ValueError:
        pass
    else:
        return Target(str(v4), "address", 4, 1)
    if _HOSTNAME.fullmatch(raw) and len(raw.rstrip(".")) <= 253:
        last = raw.rstrip(".").rsplit(".", 1)[-1]
        # A top-level domain has letters; digits and hyphens alone are a
        # mistyped IPv4 address or nmap's own range syntax (127.0.0.1-5).
        if not any(c.isalpha() for c in last):
            if "-" in raw:
                raise TargetError(
                    f"{_shown(raw)}: address ranges are not accepted; write a "
                    "network like 127.0.0.0/29 instead"
                )
            raise TargetError(
                f"{_shown(raw)} is not a valid IPv4 address: four numbers "
                "from 0 to 255 separated by dots, like 127.0.0.1"
            )
        return Target(raw, "hostname", None, 1)
    raise TargetError(
        f"{_shown(raw)} is not an IP address, a network like 127.0.0.0/24, "
        "or a hostname (letters, digits, dots and hyphens only)"
    )


def _parse_ipv6(raw: str) -> Target:
    address, sep, zone = raw.partition("%")
    if sep and not _ZONE.fullmatch(zone):
        raise TargetError(f"{_shown(raw)}: after '%' comes an interface name, like fe80::1%eth0")
    try:
        v6 = ipaddress.IPv6Address(address)
    except ValueError:
        raise TargetError(
            f"{_shown(raw)} is not a valid IPv6 address (like ::1 or fe80::1%eth0)"
        ) from None
    return Target(f"{v6}%{zone}" if sep else str(v6), "address", 6, 1)


def _parse_network(raw: str) -> Target:
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise TargetError(
            f"{_shown(raw)} is not a network: write an address, '/', and a "
            "prefix length, like 127.0.0.0/24"
        ) from None
    if net.num_addresses > MAX_NETWORK_ADDRESSES:
        largest = "/24" if net.version == 4 else "/120"
        raise TargetError(
            f"{net} has {net.num_addresses} addresses; scan at most {MAX_NETWORK_ADDRESSES} "
            f"at once (a {largest} or smaller)"
        )
    if net.num_addresses == 1:
        return Target(str(net.network_address), "address", net.version, 1)
    return Target(str(net), "network", net.version, net.num_addresses)


def parse_ports(text: str) -> str:
    """Validate a port list and return it in canonical form.

    ``"80, 22,6000-6010,81"`` becomes ``"22,80-81,6000-6010"``: sorted, with
    overlapping and adjacent ranges merged.

    Raises:
        PortsError: anything but numbers and ranges from 1 to 65535.
    """
    raw = text.strip()
    if not raw:
        raise PortsError("give ports as numbers and ranges, like 22,80,6000-6010")
    if len(raw) > MAX_PORTS_LENGTH:
        raise PortsError(
            f"the port list is {len(raw)} characters long: at most {MAX_PORTS_LENGTH}; "
            "write ranges, like 1-1024"
        )
    ranges: list[tuple[int, int]] = []
    for item in raw.split(","):
        item = item.strip()
        match = _PORT_ITEM.fullmatch(item)
        if not match:
            raise PortsError(
                f"ports are numbers from 1 to 65535 and ranges like 6000-6010, "
                f"not {_shown(item) + digits_hint(item) if item else 'an empty item'}"
            )
        start_text, end_text = match.group(1), match.group(2) or match.group(1)
        for digits in (start_text, end_text):
            if len(digits.lstrip("0")) > 5 or not 1 <= int(digits) <= 65535:
                shown = digits.lstrip("0") or "0"
                shown = shown if len(shown) <= 20 else shown[:17] + "..."
                raise PortsError(
                    f"a port is a number from 1 to 65535; {shown} is outside that range"
                )
        start, end = int(start_text), int(end_text)
        if start > end:
            raise PortsError(
                f"a range goes from the smaller port to the larger: {end}-{start}, not {item}"
            )
        ranges.append((start, end))
    return format_ports(_merge(ranges))


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def format_ports(ranges: list[tuple[int, int]]) -> str:
    """``[(22, 22), (6000, 6010)]`` -> ``"22,6000-6010"``."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def ports_of(numbers: list[int] | set[int] | tuple[int, ...]) -> str:
    """A canonical port list from single numbers (each must be 1-65535)."""
    return parse_ports(",".join(str(n) for n in numbers)) if numbers else ""


def expand_ports(canonical: str) -> list[int]:
    """Every port of a port list, ascending: ``"22,80-81"`` -> ``[22, 80, 81]``."""
    out: list[int] = []
    if not canonical:
        return out
    for item in canonical.split(","):
        start, _, end = item.partition("-")
        out.extend(range(int(start), int(end or start) + 1))
    return out
