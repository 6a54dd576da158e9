"""nmap scans on demand, joined with what this machine knows about its own sockets.

nmap sees a port from outside: open, closed, filtered. The kernel knows, from
inside, which process listens there and on which address. Joined, a closed
port can say *why* it is closed ("a process listens on 127.0.0.1:6000 only;
you scanned 127.0.0.2") and an open one *who* answered.

Threading model (for a UI): build a :class:`ScanRequest` (validation happens
there, in the caller's thread), then either call :meth:`Scan.run` from a
worker thread or :meth:`Scan.start` to let the scan own a thread. Progress
arrives through ``on_progress`` in the scanning thread; :meth:`Scan.cancel`
may be called from any thread. However a scan ends (done, cancelled, timed
out, or an exception in a callback), nmap's whole process group is killed and
reaped before the scan returns: no nmap process is ever left behind.

nmap runs as ``nmap -oX - --stats-every 1s ...`` under ``subprocess.Popen``
with an argv list (no shell), stdin from /dev/null and its own session. Its
XML carries ``<taskprogress percent=...>`` lines while it works; those are
the progress reports. When nmap has ended, python-nmap reads its XML
(``PortScanner.analyse_nmap_xml_scan``; the few fields it drops are read by
hand, see :func:`parse_nmap_xml`). python-nmap never builds nor runs the
command: ``PortScannerAsync.stop()`` leaves nmap running, and ``PortScanner``
joins ``hosts`` and ``arguments`` into argv with ``shlex.split``, so a "host"
could add options.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Literal, get_args

from app.core.model import Snapshot, Socket, format_endpoint
from app.core.services import nmap_service_name
from app.core.sockets import SocketSource
from app.core.targets import (
    MAX_NETWORK_ADDRESSES,
    PortsError,
    ScanError,
    Target,
    TargetError,
    expand_ports,
    parse_ports,
    parse_target,
    ports_of,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "LECTURE_PORTS",
    "MAX_NETWORK_ADDRESSES",
    "NMAP_MISSING",
    "CompareRow",
    "HostResult",
    "ListenerInfo",
    "NmapNotFound",
    "NotShown",
    "PortResult",
    "PortsError",
    "Scan",
    "ScanError",
    "ScanHistory",
    "ScanProgress",
    "ScanRequest",
    "ScanResult",
    "ScanStatus",
    "ScanType",
    "ScanTypeError",
    "ScanTypeInfo",
    "ScanTypeUnavailable",
    "Target",
    "TargetError",
    "available_types",
    "build_command",
    "check_type",
    "compare",
    "default_ports",
    "find_nmap",
    "nmap_missing_reason",
    "parse_ports",
    "parse_target",
    "run_scan",
]

ScanType = Literal["connect", "syn", "udp", "version"]
ScanStatus = Literal["done", "cancelled", "timeout", "failed"]
SCAN_TYPES: tuple[ScanType, ...] = get_args(ScanType)

# The lecture's three servers: X11's port, fmsas (only in nmap's list), and one nmap calls unknown.
LECTURE_PORTS = (6000, 16000, 45321)
DEFAULT_TIMEOUT = 60.0  # seconds for the whole scan
STATS_EVERY = "1s"  # how often nmap writes <taskprogress> while it works
_TICK = 0.05  # seconds between looks at nmap, the cancel flag and the clock
_PROGRESS_EVERY = 0.25  # seconds between progress reports when only the clock moved
_TERM_GRACE = 0.5  # seconds nmap gets to exit on SIGTERM before SIGKILL
_HARD_GRACE = 1.0  # seconds past the timeout before nmap is killed (its own host timeout first)

NMAP_MISSING = "nmap is not installed: install it with `sudo apt install nmap`"


class ScanTypeError(ScanError):
    """The scan type is not one of connect, syn, udp, version."""


class ScanTypeUnavailable(ScanError):
    """The scan type exists but cannot run here (it needs root)."""


class NmapNotFound(ScanError):
    """nmap is not on PATH."""


# -- scan types ---------------------------------------------------------------
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


# -- requests -----------------------------------------------------------------
def _is_tcp_listener(s: Socket) -> bool:
    return s.is_tcp and s.state == "LISTEN"


def _is_udp_bound(s: Socket) -> bool:
    return not s.is_tcp and s.remote_port is None


def default_ports(scan_type: ScanType = "connect", snapshot: Snapshot | None = None) -> str:
    """The ports to scan when none are given: what listens now, plus the lecture's.

    For TCP types: every TCP LISTEN port; for UDP: every bound UDP port; in
    both cases plus 6000, 16000 and 45321.
    """
    if snapshot is None:
        from app.core.sockets import default_source

        snapshot = default_source().poll()
    wanted = _is_udp_bound if scan_type == "udp" else _is_tcp_listener
    ports = {s.local_port for s in snapshot.sockets if wanted(s) and s.local_port > 0}
    return ports_of(sorted(ports | set(LECTURE_PORTS)))


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """A validated scan: nothing in it came from the user unchecked.

    Build one with :meth:`create`; every field is already canonical.
    """

    target: Target
    ports: str  # canonical: "22,80,6000-6010"
    type: ScanType = "connect"

    @classmethod
    def create(
        cls,
        target: str,
        ports: str | None = None,
        type: str = "connect",  # the CLI's word
        *,
        snapshot: Snapshot | None = None,
    ) -> ScanRequest:
        """Validate the user's words.

        Args:
            target: an address, a network of at most 256 addresses, or a hostname.
            ports: ``"22,80,6000-6010"``; None or blank for :func:`default_ports`.
            type: "connect", "syn", "udp" or "version" (availability is checked
                when the scan runs: see :func:`check_type`).
            snapshot: used for the default ports (default: one fresh poll).

        Raises:
            TargetError, PortsError, ScanTypeError: one line in words.
        """
        if type not in SCAN_TYPES:
            raise ScanTypeError(f"a scan type is one of {', '.join(SCAN_TYPES)}, not {type!r}")
        scan_type: ScanType = type  # checked just above
        parsed = parse_target(target)
        if ports is None or not ports.strip():
            canonical = default_ports(scan_type, snapshot)
        else:
            canonical = parse_ports(ports)
        return cls(parsed, canonical, scan_type)

    @property
    def proto(self) -> str:
        return "udp" if self.type == "udp" else "tcp"


def build_command(request: ScanRequest, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, ...]:
    """The argv of nmap for ``request`` (``argv[0]`` is ``"nmap"``).

    Only fixed options and the request's canonical fields go in. ``--`` ends
    the options, so even a target that slipped past validation could not
    become one.
    """
    target = request.target
    # The checks are already made in parse_target/parse_ports: these asserts
    # keep a future change of those from silently opening an injection.
    if target.text.startswith("-") or any(c.isspace() for c in target.text):
        raise TargetError(f"{target.text!r} is not a valid target")
    parse_ports(request.ports)
    host_timeout = max(1, int(timeout + 0.999))
    argv = [
        "nmap",
        "-oX",
        "-",
        "--stats-every",
        STATS_EVERY,
        *_TYPES[request.type][0],
        "-Pn",  # no host discovery: every target is scanned, results stay deterministic
        "-n",  # no reverse DNS lookups
        "--max-retries",
        "1",
        "--host-timeout",
        f"{host_timeout}s",
    ]
    if target.family == 6:
        argv.append("-6")
    argv += ["-p", request.ports, "--", target.text]
    return tuple(argv)


# -- results ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """The local socket listening on a scanned port, and who holds it.

    ``pid`` and ``process`` are None when the socket belongs to another
    user's process that this user may not see (``user`` is still known).
    """

    pid: int | None
    process: str | None
    user: str | None
    address: str  # the address it is bound to: "0.0.0.0", "::", "127.0.0.1"
    port: int
    proto: str  # "tcp", "tcp6", "udp", "udp6"
    recv_q: int = 0  # TCP: connections waiting for accept() when the scan ended

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.address, self.port)

    @property
    def who(self) -> str:
        """``tcp-server (pid 1234)``, or what is known when the process is hidden."""
        if self.pid is not None:
            return f"{self.process or '?'} (pid {self.pid})"
        if self.user:
            return f"a process of user {self.user} (hidden: run as root to see which)"
        return "a hidden process"

    @property
    def label(self) -> str:
        """The LISTENER column: ``1234/tcp-server on 0.0.0.0``."""
        if self.pid is not None:
            owner = f"{self.pid}/{self.process or '?'}"
        else:
            owner = f"hidden (user {self.user})" if self.user else "hidden"
        return f"{owner} on {self.address}"

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "process": self.process,
            "user": self.user,
            "address": self.address,
        }


@dataclass(frozen=True, slots=True)
class PortResult:
    """One port of one scanned host.

    Attributes:
        port: the port number.
        proto: "tcp" or "udp".
        state: nmap's word: open, closed, filtered, unfiltered, open|filtered,
            closed|filtered.
        service: nmap's service name ("X11", "fmsas"), "unknown" where nmap
            prints unknown; with -sV, "ssl/http" style when tunnelled.
        reason: nmap's reason: syn-ack, conn-refused, reset, no-response,
            port-unreach, udp-response...
        listener: the local socket on that port when the host is this
            machine and something listens; else None.
        explanation: why the state is what it is, in words, when the join
            with the local sockets has something to say; else None.
        address: the scanned host's address.
        version: product and version from -sV ("OpenSSH 9.2p1"), else None.
    """

    port: int
    proto: str
    state: str
    service: str
    reason: str | None
    listener: ListenerInfo | None = None
    explanation: str | None = None
    address: str = ""
    version: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "port": self.port,
            "proto": self.proto,
            "state": self.state,
            "service": self.service,
            "listener": None if self.listener is None else self.listener.to_json(),
            "reason": self.reason,
            "explanation": self.explanation,
            "address": self.address,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class NotShown:
    """Ports nmap folded into one line ("Not shown: 65534 closed tcp ports (conn-refused)").

    ``ports`` is the canonical list of them when known, else None.
    """

    state: str
    count: int
    proto: str
    reason: str | None
    ports: str | None

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        noun = "port" if self.count == 1 else "ports"
        return f"Not shown: {self.count} {self.state} {self.proto} {noun}{why}"

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "count": self.count,
            "proto": self.proto,
            "reason": self.reason,
            "ports": self.ports,
        }


@dataclass(frozen=True, slots=True)
class HostResult:
    """One host nmap reported on.

    Attributes:
        address: the address nmap scanned.
        state: "up" or "down" (always "up" with -Pn unless nmap gave up).
        local: True when the address is this machine's (loopback or one of
            its interfaces): only then are ports joined with listeners.
        timed_out: nmap gave up on this host (its --host-timeout).
        not_shown: ports folded away, as nmap does beyond 25 alike ports.
    """

    address: str
    state: str
    local: bool
    timed_out: bool = False
    not_shown: tuple[NotShown, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "state": self.state,
            "local": self.local,
            "timed_out": self.timed_out,
            "not_shown": [n.to_json() for n in self.not_shown],
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Everything one scan found.

    Attributes:
        target: the canonical target as requested ("127.0.0.1", "localhost").
        type: the scan type.
        ports: every port nmap listed, host by host, ascending.
        started_at: ``time.time()`` when nmap was started.
        duration: seconds from start to end.
        command: the argv that ran (``command[0]`` is "nmap"), for showing.
        error: what went wrong, in one line, else None.
        status: "done", "cancelled", "timeout" or "failed".
        hosts: the hosts nmap reported on.
        requested_ports: the canonical port list that was asked for.
        scanner: "nmap".
    """

    target: str
    type: ScanType
    ports: tuple[PortResult, ...]
    started_at: float
    duration: float
    command: tuple[str, ...]
    error: str | None = None
    status: ScanStatus = "done"
    hosts: tuple[HostResult, ...] = ()
    requested_ports: str = ""
    scanner: str = "nmap"

    @property
    def ok(self) -> bool:
        return self.status == "done" and self.error is None

    def port(
        self, number: int, proto: str | None = None, address: str | None = None
    ) -> PortResult | None:
        """The listed result for one port (first host unless ``address`` is given)."""
        for p in self.ports:
            if (
                p.port == number
                and (proto is None or p.proto == proto)
                and (address is None or p.address == address)
            ):
                return p
        return None

    def state_of(self, number: int, proto: str, address: str) -> str | None:
        """nmap's state for a port, including ports folded into "Not shown"."""
        found = self.port(number, proto, address)
        if found is not None:
            return found.state
        for host in self.hosts:
            if host.address != address:
                continue
            for group in host.not_shown:
                if group.proto == proto and group.ports and number in expand_ports(group.ports):
                    return group.state
        return None

    def to_json(self) -> dict[str, object]:
        """The contract's object: target, scanner, ports (+ extra keys)."""
        return {
            "target": self.target,
            "scanner": self.scanner,
            "type": self.type,
            "status": self.status,
            "error": self.error,
            "command": list(self.command),
            "started_at": self.started_at,
            "duration": round(self.duration, 3),
            "requested_ports": self.requested_ports,
            "hosts": [h.to_json() for h in self.hosts],
            "ports": [p.to_json() for p in self.ports],
        }


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """How far a running scan is.

    Attributes:
        percent: 0 to 100, never decreasing (100 only when nmap has ended).
        elapsed: seconds since nmap started.
        task: nmap's current phase ("Connect Scan", "Service scan"), if it said.
        remaining: nmap's estimate of seconds left, if it gave one.
        pid: nmap's process id while it runs.
    """

    percent: float
    elapsed: float
    task: str | None = None
    remaining: float | None = None
    pid: int | None = None


# -- nmap's XML ---------------------------------------------------------------
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


# -- the join with this machine's sockets -------------------------------------
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
    state, where = port.state, f"{port.port}/{port.proto}"
    udp = port.proto == "udp"

    if state == "closed":
        if matching and info is not None:
            return info, (
                f"{info.who} listens on {info.endpoint} now; it was not listening when nmap scanned"
            )
        if others and info is not None:
            bound = " and ".join(format_endpoint(s.local_addr, s.local_port) for s in others)
            answer = "answers ICMP port unreachable" if udp else "refuses the connection"
            return info, (
                f"a process listens on {bound} only; you scanned {port.address}, so the kernel "
                f"{answer} (bind to {_wildcard(port.address)} to accept on every address)"
            )
        if udp:
            return None, (
                f"nothing listens on {where}: the kernel answered with ICMP port unreachable"
            )
        return None, (
            f"nothing listens on {where}: the kernel answered nmap's SYN with a reset (RST)"
        )

    if info is None or not matching:
        if state == "open" or (state == "open|filtered" and others):
            extra = ""
            if others and info is not None:
                extra = f" ({info.who} listens on {info.endpoint}, another address)"
            return info, (
                f"no socket of this machine listens on {where} for {port.address} "
                f"now{extra}: it closed after the scan, or it lives in another "
                "network namespace (a container)"
            )
        return info, None

    who = info.who
    if state == "open":
        if udp:
            return info, f"{who} answered nmap's UDP probe"
        if scan_type == "syn":
            return info, (
                f"nmap's SYN scan got a SYN-ACK and answered it with RST: the "
                f"handshake never completed, so {who} never saw a client"
            )
        if scan_type == "version":
            return info, (
                f"nmap connected to {who} and sent it probes to learn its version: "
                "the server saw a real client"
            )
        return info, (
            f"nmap's connect scan completed a handshake with {who}: a real "
            "connection, so the server saw a client (the lecture's server prints a "
            "`Client:` line); an iterative server busy with another client leaves "
            "the probe waiting in its backlog"
        )
    if state == "open|filtered" and udp:
        return info, (
            f"UDP has no handshake: {who} listens but did not answer nmap's "
            "probe, so nmap cannot tell open from filtered"
        )
    if "filtered" in state:
        # On a LISTEN row recv_q counts the connections waiting for accept().
        # /proc/net/tcp does not give the backlog limit (ss's Send-Q comes from
        # netlink), so any waiting connection plus silence reads as a full queue.
        if not udp and info.recv_q > 0:
            waiting = (
                "1 connection waits" if info.recv_q == 1 else (f"{info.recv_q} connections wait")
            )
            return info, (
                f"the accept queue of {who} is full ({waiting} to be accepted): the kernel "
                "drops new SYNs while it is full, so nmap heard no answer; the server does "
                "not call accept() (the lecture's iterative server is busy with its first "
                "client)"
            )
        return info, (
            f"{who} listens on {info.endpoint}, yet nmap heard no answer: a "
            "firewall rule may drop packets to this port"
        )
    return info, None


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
    wanted = _is_udp_bound if scan_type == "udp" else _is_tcp_listener
    by_port: dict[int, list[Socket]] = {}
    for s in snapshot.sockets:
        if wanted(s):
            by_port.setdefault(s.local_port, []).append(s)
    out_hosts: list[HostResult] = []
    out_ports: list[PortResult] = []
    for host in hosts:
        is_local = bool(host.address) and is_local_address(host.address, local_list)
        ports = list(host.ports)
        groups = list(host.not_shown)
        if is_local:
            for i, group in enumerate(groups):
                if not group.ports:
                    continue
                numbers = expand_ports(group.ports)
                lifted = [n for n in numbers if n in by_port]
                if not lifted:
                    continue
                for n in lifted:
                    ports.append(
                        PortResult(
                            port=n,
                            proto=group.proto,
                            state=group.state,
                            service=nmap_service_name(n, group.proto) or "unknown",
                            reason=group.reason,
                            address=host.address,
                        )
                    )
                rest = sorted(set(numbers) - set(lifted))
                groups[i] = replace(
                    group, count=group.count - len(lifted), ports=ports_of(rest) or None
                )
            groups = [g for g in groups if g.count > 0]
            joined = []
            for p in ports:
                info, why = explain(p, scan_type, by_port.get(p.port, []))
                joined.append(replace(p, listener=info, explanation=why))
            ports = joined
        ports.sort(key=lambda p: (p.proto, p.port))
        out_ports.extend(ports)
        out_hosts.append(
            HostResult(host.address, host.state, is_local, host.timed_out, tuple(groups))
        )
    return tuple(out_hosts), tuple(out_ports)


# -- running nmap -------------------------------------------------------------
def _exited(pid: int) -> bool:
    """Has the child ended? Does not reap it, so its process group stays reserved."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End nmap and anything in its process group, then reap it.

    The leader is not reaped until the group has had its SIGKILL: a zombie
    leader keeps the group id from being reused by an unrelated process.
    """
    if not _exited(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _TERM_GRACE
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _drain(stream: IO[bytes], sink: list[bytes], feed: Callable[[str], None] | None) -> None:
    for line in iter(stream.readline, b""):
        sink.append(line)
        if feed is not None and b"<task" in line:
            feed(line.decode("utf-8", errors="replace"))


def _first_line(err: str) -> str | None:
    for line in err.splitlines():
        line = line.strip()
        if line and line != "QUITTING!":
            return line
    return None


class Scan:
    """One nmap scan that can be watched and cancelled from another thread.

    Args:
        request: what to scan (validated).
        timeout: seconds the whole scan may take; nmap is killed after that.
        on_progress: called with a :class:`ScanProgress` in the scanning
            thread: when nmap reports, and every 0.25 s with the elapsed time.
        on_done: called with the :class:`ScanResult` in the scanning thread.
        cancel_event: a shared event that cancels the scan when set
            (default: a private one; :meth:`cancel` sets it either way).
        source: where the local sockets come from (default: a fresh
            ``ProcNetSource``; do not share one that another thread polls).
        local_addresses: this machine's addresses (default: from its interfaces).
    """

    def __init__(
        self,
        request: ScanRequest,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_progress: Callable[[ScanProgress], None] | None = None,
        on_done: Callable[[ScanResult], None] | None = None,
        cancel_event: threading.Event | None = None,
        source: SocketSource | None = None,
        local_addresses: Iterable[str] | None = None,
    ) -> None:
        if not timeout > 0:
            raise ScanError(f"a scan timeout is more than 0 seconds, not {timeout}")
        self.request = request
        self.timeout = timeout
        self._on_progress = on_progress
        self._on_done = on_done
        self._cancel = cancel_event if cancel_event is not None else threading.Event()
        self._source = source
        self._local = list(local_addresses) if local_addresses is not None else None
        self._lock = threading.Lock()
        self._started = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: ScanResult | None = None
        self._failure: BaseException | None = None
        self._progress = ScanProgress(0.0, 0.0)
        self.pid: int | None = None  # nmap's pid once started (kept after it ends, for checks)
        self.command = build_command(request, timeout)

    # -- control ----------------------------------------------------------
    def preflight(self) -> str:
        """Check that nmap is installed and the type may run; return nmap's path.

        Raises:
            NmapNotFound, ScanTypeUnavailable: one line in words.
        """
        nmap = find_nmap()
        if nmap is None:
            raise NmapNotFound(NMAP_MISSING)
        check_type(self.request.type)
        return nmap

    def run(self) -> ScanResult:
        """Run the scan in this thread and return its result (blocking).

        Raises:
            NmapNotFound, ScanTypeUnavailable: before nmap starts.
            RuntimeError: the scan was already started.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("this scan has already been started; make a new Scan")
            self._started = True
        try:
            result = self._execute()
            self._result = result
        except BaseException as exc:
            self._failure = exc
            self._done.set()
            raise
        self._done.set()
        if self._on_done is not None:
            self._on_done(result)
        return result

    def start(self) -> Scan:
        """Run the scan in a thread of its own; returns at once.

        nmap's presence and the type's availability are checked here, in the
        caller's thread, so those errors are raised by ``start()`` itself.
        """
        self.preflight()
        thread = threading.Thread(target=self._run_quietly, name="observatory-scan", daemon=True)
        self._thread = thread
        thread.start()
        return self

    def _run_quietly(self) -> None:
        # An exception is kept by run() for wait() to re-raise.
        with contextlib.suppress(BaseException):
            self.run()

    def cancel(self) -> None:
        """Ask the scan to stop (any thread, any time; harmless when it has ended)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> ScanResult | None:
        """Wait for the end of a started scan; its result, or None if still running.

        Re-raises an exception that ended the scan in its thread.
        """
        if not self._done.wait(timeout):
            return None
        if self._failure is not None:
            raise self._failure
        return self._result

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def result(self) -> ScanResult | None:
        return self._result

    @property
    def progress(self) -> ScanProgress:
        """The latest progress (safe to read from any thread)."""
        return self._progress

    # -- work ---------------------------------------------------------------
    def _report(self, progress: ScanProgress) -> None:
        self._progress = progress
        if self._on_progress is not None:
            self._on_progress(progress)

    def _result_of(
        self,
        started_at: float,
        duration: float,
        status: ScanStatus,
        error: str | None,
        hosts: tuple[HostResult, ...] = (),
        ports: tuple[PortResult, ...] = (),
    ) -> ScanResult:
        return ScanResult(
            target=self.request.target.text,
            type=self.request.type,
            ports=ports,
            started_at=started_at,
            duration=duration,
            command=self.command,
            error=error,
            status=status,
            hosts=hosts,
            requested_ports=self.request.ports,
        )

    def _execute(self) -> ScanResult:
        nmap = self.preflight()
        started_at = time.time()
        t0 = time.monotonic()
        if self._cancel.is_set():
            return self._result_of(
                started_at, 0.0, "cancelled", "the scan was cancelled before nmap started"
            )
        tracker = _ProgressTracker(self.request.type)
        out: list[bytes] = []
        err: list[bytes] = []
        readers: list[threading.Thread] = []
        status: ScanStatus = "failed"
        try:
            proc = subprocess.Popen(
                [nmap, *self.command[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: killed as one, deaf to our Ctrl-C
            )
        except OSError as exc:
            return self._result_of(
                started_at,
                time.monotonic() - t0,
                "failed",
                f"could not start nmap: {exc.strerror or exc}",
            )
        try:  # entered at once: from here on, any exception still ends nmap
            self.pid = proc.pid
            assert proc.stdout is not None and proc.stderr is not None
            for stream, sink, feed in ((proc.stdout, out, tracker.feed), (proc.stderr, err, None)):
                reader = threading.Thread(target=_drain, args=(stream, sink, feed), daemon=True)
                reader.start()
                readers.append(reader)
            self._report(ScanProgress(0.0, 0.0, None, None, proc.pid))
            status = self._watch(proc.pid, t0, tracker)
        finally:
            # Whatever happened (even an exception in on_progress), nmap goes.
            _stop_group(proc)
            for reader in readers:
                reader.join(timeout=2.0)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        duration = time.monotonic() - t0
        percent, task, _, _ = tracker.take()
        if status == "cancelled":
            self._report(ScanProgress(percent, duration, task, None, None))
            return self._result_of(
                started_at, duration, status, f"the scan was cancelled after {duration:.1f} s"
            )
        if status == "timeout":
            self._report(ScanProgress(percent, duration, task, None, None))
            return self._result_of(
                started_at,
                duration,
                status,
                f"the scan took longer than {self.timeout:g} s and was stopped",
            )
        result = self._parse(
            started_at,
            duration,
            proc.returncode,
            b"".join(out).decode("utf-8", errors="replace"),
            b"".join(err).decode("utf-8", errors="replace"),
        )
        self._report(ScanProgress(100.0, duration, task, 0.0, None))
        return result

    def _watch(self, pid: int, t0: float, tracker: _ProgressTracker) -> ScanStatus:
        deadline = t0 + self.timeout + _HARD_GRACE
        last = time.monotonic()
        while True:
            if _exited(pid):
                return "done"
            if self._cancel.is_set():
                return "cancelled"
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            percent, task, remaining, changed = tracker.take()
            if changed or now - last >= _PROGRESS_EVERY:
                self._report(ScanProgress(percent, now - t0, task, remaining, pid))
                last = now
            self._cancel.wait(_TICK)

    def _parse(
        self,
        started_at: float,
        duration: float,
        returncode: int | None,
        xml_text: str,
        err_text: str,
    ) -> ScanResult:
        problem = _first_line(err_text)
        try:
            parsed = parse_nmap_xml(xml_text, self.request.ports)
        except NmapXmlError:
            why = problem or f"nmap ended with code {returncode} and wrote no results"
            return self._result_of(started_at, duration, "failed", f"nmap failed: {why}")
        if returncode not in (0, None) and not parsed:
            why = problem or f"it ended with code {returncode}"
            return self._result_of(started_at, duration, "failed", f"nmap failed: {why}")
        if not parsed:
            why = problem or "the name did not resolve to an address"
            return self._result_of(started_at, duration, "failed", f"nmap scanned no host: {why}")
        local = self._local
        needs_join = any(h.address and is_local_address(h.address, local) for h in parsed)
        snapshot = Snapshot(taken_at=time.time(), sockets=())
        if needs_join:
            source = self._source
            if source is None:
                from app.core.sockets import default_source

                source = default_source()
            # Without /proc, results without listeners are still results.
            with contextlib.suppress(OSError):
                snapshot = source.poll()
        hosts, ports = join_listeners(parsed, self.request.type, snapshot, local)
        timed_out = [h.address for h in hosts if h.timed_out]
        if timed_out:
            return self._result_of(
                started_at,
                duration,
                "timeout",
                f"nmap gave up on {', '.join(timed_out)} after its host timeout of "
                f"{self.timeout:g} s",
                hosts,
                ports,
            )
        return self._result_of(started_at, duration, "done", None, hosts, ports)


def run_scan(
    request: ScanRequest,
    on_progress: Callable[[ScanProgress], None] | None = None,
    cancel_event: threading.Event | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    source: SocketSource | None = None,
) -> ScanResult:
    """Run one scan in this thread; see :class:`Scan` for the arguments.

    Raises:
        NmapNotFound, ScanTypeUnavailable: before nmap starts.
    """
    return Scan(
        request, timeout=timeout, on_progress=on_progress, cancel_event=cancel_event, source=source
    ).run()


# -- history and comparison ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class CompareRow:
    """One port in two scans, like Zenmap's compare view."""

    port: int
    proto: str
    state_a: str | None  # None: not in scan a (not scanned, or nmap said nothing)
    state_b: str | None
    changed: bool
    address: str = ""


def compare(a: ScanResult, b: ScanResult) -> list[CompareRow]:
    """Port by port, the state in ``a`` and in ``b`` (ports folded away included).

    Rows cover every port listed in either scan, sorted by address, protocol
    and port; ``changed`` is True when the two states differ.
    """
    keys = {(p.address, p.proto, p.port) for p in (*a.ports, *b.ports)}
    rows: list[CompareRow] = []
    for address, proto, port in sorted(keys):
        sa = a.state_of(port, proto, address)
        sb = b.state_of(port, proto, address)
        rows.append(CompareRow(port, proto, sa, sb, sa != sb, address))
    return rows


@dataclass(eq=False)
class ScanHistory:
    """Results kept per target, oldest first; safe to use from several threads.

    Args:
        limit: results kept per target (the oldest go first).
    """

    limit: int = 20
    _by_target: dict[str, list[ScanResult]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: ScanResult) -> None:
        with self._lock:
            kept = self._by_target.setdefault(result.target, [])
            kept.append(result)
            del kept[: max(0, len(kept) - self.limit)]

    def targets(self) -> list[str]:
        """Targets scanned, most recently scanned last."""
        with self._lock:
            return sorted(self._by_target, key=lambda t: self._by_target[t][-1].started_at)

    def results(self, target: str) -> list[ScanResult]:
        """Every kept result for ``target`` (canonical text), oldest first."""
        with self._lock:
            return list(self._by_target.get(target, []))

    def latest(self, target: str) -> ScanResult | None:
        with self._lock:
            kept = self._by_target.get(target)
            return kept[-1] if kept else None

    def previous(self, target: str) -> ScanResult | None:
        """The result before the latest one, for a "what changed" view."""
        with self._lock:
            kept = self._by_target.get(target)
            return kept[-2] if kept and len(kept) > 1 else None

    def compare_latest(self, target: str) -> list[CompareRow] | None:
        """:func:`compare` of the previous and the latest result, or None if fewer than two."""
        prev, last = self.previous(target), self.latest(target)
        if prev is None or last is None:
            return None
        return compare(prev, last)

    def clear(self, target: str | None = None) -> None:
        with self._lock:
            if target is None:
                self._by_target.clear()
            else:
                self._by_target.pop(target, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_target.values())
