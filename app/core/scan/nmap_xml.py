"""nmap's ``-oX`` output: its progress lines while it runs, its hosts and ports when done.

:class:`_ProgressTracker` turns the ``<taskprogress>`` lines nmap writes
while it works into one rising percentage. :func:`parse_nmap_xml` reads the
finished XML through python-nmap (its ``PortScanner`` only as an XML reader;
it never builds nor runs the command) and reads by hand, with ElementTree,
the few fields python-nmap drops: host timeouts, folded ports, SSL tunnels.
"""

from __future__ import annotations

import contextlib
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from app.core.scan.results import NotShown, PortResult
from app.core.scan.types import ScanType
from app.core.targets import ScanError, expand_ports, parse_ports, ports_of

_PHASES: dict[ScanType, tuple[str, ...]] = {
    "connect": ("Connect Scan",),
    "syn": ("SYN Stealth Scan",),
    "udp": ("UDP Scan",),
    "version": ("Connect Scan", "Service scan"),
}
_TASK_RE = re.compile(r"<task(progress|end)\b([^>]*)/?>")
_ATTR_RE = re.compile(r'(\w+)="([^"]*)"')


class _ProgressTracker:
    """Turns nmap's per-phase ``<taskprogress>`` lines into one rising percentage."""

    def __init__(self, scan_type: ScanType) -> None:
        self.phases = _PHASES[scan_type]
        self.percent = 0.0
        self.task: str | None = None
        self.remaining: float | None = None
        self.changed = False
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        for kind, attrs_text in _TASK_RE.findall(line):
            attrs = dict(_ATTR_RE.findall(attrs_text))
            task = attrs.get("task")
            if task not in self.phases:
                continue  # DNS, NSE...: phases whose share is not counted
            try:
                pct = 100.0 if kind == "end" else float(attrs.get("percent", "0"))
            except ValueError:
                continue
            share = (self.phases.index(task) + min(max(pct, 0.0), 100.0) / 100) / len(self.phases)
            with self._lock:
                self.task = task
                try:
                    self.remaining = float(attrs["remaining"]) if "remaining" in attrs else None
                except ValueError:
                    self.remaining = None
                # 100 is kept for the moment nmap has ended and its XML is read.
                self.percent = max(self.percent, min(share * 100, 99.0))
                self.changed = True

    def take(self) -> tuple[float, str | None, float | None, bool]:
        with self._lock:
            changed, self.changed = self.changed, False
            return self.percent, self.task, self.remaining, changed


@dataclass(slots=True)
class _ParsedHost:
    address: str
    state: str
    timed_out: bool
    ports: list[PortResult]
    not_shown: list[NotShown]


class NmapXmlError(ScanError):
    """nmap's output is not complete XML: nmap was killed mid-scan, or wrote nothing."""


# python-nmap reads nmap's XML into dicts, and its PortScanner is used for
# nothing else: the argv stays ours (built by build_command) and runs under
# our Popen. It drops three things this module needs, read here by hand with
# ElementTree (the tree is parsed anyway, to check the XML first):
#   - a host's ``timedout="true"`` (nmap's --host-timeout expired): the scan's
#     "timeout" status and words come from it;
#   - ``<extraports>`` and their ``<extrareasons>``: the "Not shown" lines,
#     which ports they fold, and the listeners lifted out of them;
#   - a service's ``tunnel="ssl"``: -sV's "ssl/http" service names.
# Everything else (addresses, host state, each port's protocol, number,
# state, reason, service name, product, version, extrainfo) is python-nmap's.
def _analyse(xml_text: str, root: ET.Element) -> dict[str, Any]:
    """python-nmap's ``scan`` dict for ``xml_text`` (host key -> its host dict).

    Raises:
        NmapXmlError: python-nmap could not read it.
    """
    if root.find("runstats/finished") is None or root.find("runstats/hosts") is None:
        # python-nmap reads <runstats> unconditionally (AttributeError without it).
        # nmap writes it in every complete output; a trimmed document may not
        # have it, so python-nmap is given one with empty stats.
        stats = root.find("runstats")
        if stats is None:
            stats = ET.SubElement(root, "runstats")
        for name in ("finished", "hosts"):
            if stats.find(name) is None:
                ET.SubElement(stats, name)
        xml_text = ET.tostring(root, encoding="unicode")
    # Imported here, where a finished scan's XML is read: validation, the
    # types and the UI's form need no python-nmap (whose module also loads
    # multiprocessing).
    import nmap  # type: ignore[import-untyped,unused-ignore]  # python-nmap has no type hints

    # PortScanner() would run `nmap -V` through its own Popen (and raise when
    # nmap is not on PATH): only its XML reader is wanted, so the reader is made
    # without __init__. analyse_nmap_xml_scan needs no state from __init__
    # when it is given the XML.
    reader = nmap.PortScanner.__new__(nmap.PortScanner)
    try:
        analysed = reader.analyse_nmap_xml_scan(nmap_xml_output=xml_text)
    except nmap.PortScannerError as exc:  # its word for "not XML"
        raise NmapXmlError("nmap's output is not complete XML") from exc
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # python-nmap takes for granted what nmap's DTD requires (a host's
        # <address>, a port's <state> and portid): without them, no reading.
        raise NmapXmlError(f"nmap's XML lacks what python-nmap needs: {exc}") from exc
    scan: dict[str, Any] = analysed["scan"]
    return scan


def _host_key(host: ET.Element) -> str | None:
    """The key python-nmap files ``host`` under: its last IPv4 address, else its first address."""
    key: str | None = None
    for addr in host.findall("address"):
        if addr.get("addrtype") == "ipv4":
            key = addr.get("addr")
    if key is None and (first := host.find("address")) is not None:
        key = first.get("addr")
    return key


def _not_shown(
    host: ET.Element | None, listed: list[PortResult], requested: set[int]
) -> list[NotShown]:
    """The host's ``<extraports>`` groups (dropped by python-nmap), read by hand."""
    groups: list[tuple[str, int, list[ET.Element]]] = []
    if host is not None:
        for extra in host.findall("ports/extraports"):
            groups.append(
                (
                    extra.get("state", "unknown"),
                    int(extra.get("count", "0")),
                    list(extra.iter("extrareasons")),
                )
            )
    numbers = {p.port for p in listed}
    # Older nmap gives no proto on <extrareasons>: the first listed port's, in nmap's order.
    first = host.find("ports/port") if host is not None else None
    fallback = first.get("protocol", "tcp") if first is not None else "tcp"
    not_shown: list[NotShown] = []
    for state, count, reasons in groups:
        group_proto = next((r.get("proto", "") for r in reasons if r.get("proto")), "")
        proto = group_proto or fallback
        reason = None
        if reasons:
            top = max(reasons, key=lambda r: int(r.get("count", "0")))
            reason = top.get("reason")
        texts = [r.get("ports") for r in reasons]
        known: str | None
        if reasons and all(texts):
            known = parse_ports(",".join(t for t in texts if t))
        elif len(groups) == 1 and requested:
            # Older nmap does not list the folded ports; with one group
            # they are the requested ports nmap did not list.
            rest = sorted(requested - numbers)
            known = ports_of(rest) if len(rest) == count else None
        else:
            known = None
        not_shown.append(NotShown(state, count, proto, reason, known))
    return not_shown


def _tunnels(host: ET.Element | None) -> dict[tuple[str, int], str]:
    """(protocol, port) -> the service's ``tunnel`` ("ssl"), dropped by python-nmap."""
    found: dict[tuple[str, int], str] = {}
    if host is None:
        return found
    for port in host.findall("ports/port"):
        service = port.find("service")
        tunnel = service.get("tunnel") if service is not None else None
        if tunnel:
            with contextlib.suppress(ValueError):
                found[(port.get("protocol", "tcp"), int(port.get("portid", "0")))] = tunnel
    return found


def _port_of(
    address: str, proto: str, number: int, entry: dict[str, Any], tunnel: str | None
) -> PortResult:
    """One port of python-nmap's host dict as a :class:`PortResult`."""
    name = entry.get("name") or "unknown"
    if tunnel:
        name = f"{tunnel}/{name}"
    words = [entry.get(k) for k in ("product", "version", "extrainfo")]
    version = " ".join(w for w in words if w) or None
    return PortResult(
        port=number,
        proto=proto or "tcp",
        state=entry.get("state") or "unknown",
        service=name,
        reason=entry.get("reason"),
        address=address,
        version=version,
    )


def parse_nmap_xml(xml_text: str, requested_ports: str = "") -> list[_ParsedHost]:
    """The hosts and ports of nmap's ``-oX`` output, read by python-nmap.

    Raises:
        NmapXmlError: the text is not complete XML (empty, or cut off).
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise NmapXmlError("nmap's output is not complete XML") from exc
    scanned = _analyse(xml_text, root)
    # The elements python-nmap read, under its keys, for the fields it drops
    # (a later host of the same key wins, as in python-nmap's dict).
    elements = {key: host for host in root.findall("host") if (key := _host_key(host)) is not None}
    requested = set(expand_ports(requested_ports))
    hosts: list[_ParsedHost] = []
    for key, found in scanned.items():
        elem = elements.get(key)
        addresses: dict[str, str] = found.get("addresses", {})
        address = addresses.get("ipv4") or addresses.get("ipv6") or ""
        tunnels = _tunnels(elem)
        ports = [
            _port_of(address, proto, number, entry, tunnels.get((proto, number)))
            for proto in found.all_protocols()
            for number, entry in found[proto].items()
        ]
        not_shown = _not_shown(elem, ports, requested)
        ports.sort(key=lambda p: (p.proto, p.port))
        hosts.append(
            _ParsedHost(
                address=address,
                state=found.get("status", {}).get("state") or "unknown",
                timed_out=elem is not None and elem.get("timedout") == "true",
                ports=ports,
                not_shown=not_shown,
            )
        )
    return hosts
