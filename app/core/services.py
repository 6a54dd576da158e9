"""Port -> service name, as ``ss`` and ``nmap`` print them.

``/etc/services`` first (what ``ss`` uses), then nmap's own list where nmap is
installed (it knows ports that /etc/services does not: 16000 is ``fmsas``).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

ETC_SERVICES = Path("/etc/services")
NMAP_SERVICES_CANDIDATES = (
    Path("/usr/share/nmap/nmap-services"),
    Path("/usr/local/share/nmap/nmap-services"),
)

Table = dict[tuple[int, str], str]


# "name  port/proto  [aliases or nmap's frequency]  # comment", at the start of a line;
# nmap's list names a port it knows nothing of "unknown": those lines are skipped.
_ENTRY = re.compile(r"^([^\s#]+)[ \t]+(\d+)/(\w+)", re.MULTILINE)
_NMAP_ENTRY = re.compile(r"^(?!unknown\s)([^\s#]+)[ \t]+(\d+)/(\w+)", re.MULTILINE)


def _parse(path: Path, nmap_format: bool) -> Table:
    # One regular expression over the whole file (nmap's has 27,000 lines): every
    # `observatory snapshot` reads both files, so this is part of its start-up.
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    entries = (_NMAP_ENTRY if nmap_format else _ENTRY).findall(text)
    # The first name listed for a port is the one tools print: walking the list
    # backwards, the first one is written last.
    return {(int(port), proto): name for name, port, proto in reversed(entries)}


def nmap_services_path() -> Path | None:
    """Where nmap's service list is on this machine, or None."""
    override = os.environ.get("OBSERVATORY_NMAP_SERVICES")
    if override:
        return Path(override)
    for candidate in NMAP_SERVICES_CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[Table, Table]:
    nmap_path = nmap_services_path()
    nmap = _parse(nmap_path, nmap_format=True) if nmap_path else {}
    return _parse(ETC_SERVICES, nmap_format=False), nmap


def service_name(port: int | None, proto: str = "tcp") -> str | None:
    """The name of ``port`` for ``proto`` ("tcp"/"udp", a trailing 6 is ignored)."""
    if port is None:
        return None
    base = "udp" if proto.startswith("udp") else "tcp"
    etc, nmap = _tables()
    return etc.get((port, base)) or nmap.get((port, base))


def nmap_service_name(port: int, proto: str = "tcp") -> str | None:
    """The name nmap itself prints for ``port`` (its own list only)."""
    base = "udp" if proto.startswith("udp") else "tcp"
    return _tables()[1].get((port, base))
