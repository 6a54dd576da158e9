"""The four scan types and whether each can run here, and whether nmap is installed.

A scan type (connect, syn, udp, version) is a few nmap options, a label for a
menu and a sentence on what nmap does; SYN and UDP scans need root. This
module answers "which types may this user run, and why not" and "is nmap on
PATH", with the errors a caller gets when the answer is no.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Literal, get_args

from app.core.targets import ScanError

ScanType = Literal["connect", "syn", "udp", "version"]
ScanStatus = Literal["done", "cancelled", "timeout", "failed"]
SCAN_TYPES: tuple[ScanType, ...] = get_args(ScanType)

NMAP_MISSING = "nmap is not installed: install it with `sudo apt install nmap`"


class ScanTypeError(ScanError):
    """The scan type is not one of connect, syn, udp, version."""


class ScanTypeUnavailable(ScanError):
    """The scan type exists but cannot run here (it needs root)."""


class NmapNotFound(ScanError):
    """nmap is not on PATH."""


@dataclass(frozen=True, slots=True)
class ScanTypeInfo:
    """One scan type, and whether it can run for this user.

    Attributes:
        name: "connect", "syn", "udp" or "version".
        flags: the nmap options it adds (``("-sT",)``).
        label: a short title for a menu.
        description: one sentence on what nmap does for it.
        enabled: False when it cannot run here.
        reason: why it is disabled, in words (None when enabled).
    """

    name: ScanType
    flags: tuple[str, ...]
    label: str
    description: str
    enabled: bool
    reason: str | None


_TYPES: dict[ScanType, tuple[tuple[str, ...], str, str, str | None]] = {
    "connect": (
        ("-sT",),
        "TCP connect (-sT)",
        "a full TCP handshake with each port, through the kernel like any client",
        None,
    ),
    "syn": (
        ("-sS",),
        "TCP SYN (-sS)",
        "sends only a SYN and reads the answer; never completes the handshake",
        "SYN scans need root: nmap sends raw packets",
    ),
    "udp": (
        ("-sU",),
        "UDP (-sU)",
        "sends a UDP datagram to each port and listens for an answer or ICMP port unreachable",
        "UDP scans need root: nmap sends raw packets and reads the ICMP replies",
    ),
    "version": (
        ("-sT", "-sV"),
        "Service version (-sT -sV)",
        "connects, then sends probes to learn which program and version answers",
        None,
    ),
}


def _is_root(euid: int | None) -> bool:
    return (os.geteuid() if euid is None else euid) == 0


def available_types(euid: int | None = None) -> tuple[ScanTypeInfo, ...]:
    """Every scan type in menu order, each enabled or disabled with the reason.

    Args:
        euid: the effective user id to judge for (default: this process's).
    """
    root = _is_root(euid)
    out: list[ScanTypeInfo] = []
    for name in SCAN_TYPES:
        flags, label, description, needs_root = _TYPES[name]
        enabled = needs_root is None or root
        out.append(
            ScanTypeInfo(name, flags, label, description, enabled, None if enabled else needs_root)
        )
    return tuple(out)


def check_type(name: str, euid: int | None = None) -> ScanTypeInfo:
    """The scan type called ``name``, if it can run here.

    Raises:
        ScanTypeError: no such type.
        ScanTypeUnavailable: it needs root; the message says so and suggests connect.
    """
    for info in available_types(euid):
        if info.name == name:
            if not info.enabled:
                raise ScanTypeUnavailable(f"{info.reason}; run as root, or use --type connect")
            return info
    raise ScanTypeError(f"a scan type is one of {', '.join(SCAN_TYPES)}, not {name!r}")


def find_nmap() -> str | None:
    """The path of nmap on PATH now (looked up at every call), or None."""
    return shutil.which("nmap")


def nmap_missing_reason() -> str | None:
    """:data:`NMAP_MISSING` when nmap is not on PATH, else None (for greying out a button)."""
    return None if find_nmap() else NMAP_MISSING
