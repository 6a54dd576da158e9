"""A scan request, validated from the user's words, and the nmap argv it becomes.

:class:`ScanRequest` checks a target, a port list and a scan type (the ports
default to what listens now plus the lecture's three); :func:`build_command`
turns a request into nmap's argv from fixed options and the request's
canonical fields only, so nothing the user typed can become an option.
A request from a lab host (``origin``) may target only the lab's addresses
(:meth:`LabOrigin.check_target`); one from this machine may not target a
running lab's (:func:`refuse_lab_address`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from app.core.model import Snapshot, Socket
from app.core.scan.origin import LabOrigin, refuse_lab_address
from app.core.scan.types import _TYPES, SCAN_TYPES, ScanType, ScanTypeError
from app.core.targets import Target, TargetError, parse_ports, parse_target, ports_of

# The lecture's three servers: X11's port, fmsas (only in nmap's list), and one nmap calls unknown.
LECTURE_PORTS = (6000, 16000, 45321)
DEFAULT_TIMEOUT = 60.0  # seconds for the whole scan
STATS_EVERY = "1s"  # how often nmap writes <taskprogress> while it works


def _is_tcp_listener(s: Socket) -> bool:
    return s.is_tcp and s.state == "LISTEN"


def _is_udp_bound(s: Socket) -> bool:
    return not s.is_tcp and s.remote_port is None


def default_ports(
    scan_type: ScanType = "connect",
    snapshot: Snapshot | None = None,
    origin: LabOrigin | None = None,
    *,
    hosts: Collection[str | None] | None = None,
) -> str:
    """The ports to scan when none are given: what listens now, plus the lecture's.

    For TCP types: every TCP LISTEN port; for UDP: every bound UDP port; in
    both cases plus 6000, 16000 and 45321. "Now" is this machine's sockets
    (``Socket.host`` None), or with ``origin`` those of its lab's hosts, or
    those of ``hosts`` when given (None in it: this machine's).
    """
    if hosts is None:
        hosts = {None} if origin is None else {h.name for h in origin.hosts}
    if snapshot is None:
        if origin is None:
            from app.core.sockets import default_source

            snapshot = default_source().poll()
        else:
            snapshot = origin.poll(h.name for h in origin.hosts)
    wanted = _is_udp_bound if scan_type == "udp" else _is_tcp_listener
    ports = {
        s.local_port for s in snapshot.sockets if s.host in hosts and wanted(s) and s.local_port > 0
    }
    return ports_of(sorted(ports | set(LECTURE_PORTS)))


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """A validated scan: nothing in it came from the user unchecked.

    Build one with :meth:`create`; every field is already canonical.
    """

    target: Target
    ports: str  # canonical: "22,80,6000-6010"
    type: ScanType = "connect"
    origin: LabOrigin | None = None  # the lab host it runs from; None: this machine

    @classmethod
    def create(
        cls,
        target: str,
        ports: str | None = None,
        type: str = "connect",  # the CLI's word
        *,
        snapshot: Snapshot | None = None,
        origin: LabOrigin | None = None,
        labs: Sequence[LabOrigin] = (),
        local: Iterable[str] | None = None,
    ) -> ScanRequest:
        """Validate the user's words.

        Args:
            target: an address, a network of at most 256 addresses, or a hostname;
                from a lab host, one address of its lab (or 127.0.0.1).
            ports: ``"22,80,6000-6010"``; None or blank for :func:`default_ports`.
            type: "connect", "syn", "udp" or "version" (availability is checked
                when the scan runs: see :func:`check_type`).
            snapshot: used for the default ports (default: one fresh poll).
            origin: the running lab host to scan from (:func:`find_origin`);
                None: this machine.
            labs: the running labs (:func:`running_labs`), for a scan from this
                machine: their addresses are refused, with the host to scan from.
            local: this machine's addresses (default: from its interfaces), for
                the same check.

        Raises:
            TargetError, PortsError, ScanTypeError: one line in words.
        """
        if type not in SCAN_TYPES:
            shown = type if len(type) <= 30 else type[:27] + "..."
            raise ScanTypeError(f"a scan type is one of {', '.join(SCAN_TYPES)}, not {shown!r}")
        scan_type: ScanType = type  # checked just above
        parsed = parse_target(target)
        if origin is not None:
            origin.check_target(parsed)
        elif labs:
            refuse_lab_address(parsed, labs, local)
        if ports is None or not ports.strip():
            canonical = default_ports(scan_type, snapshot, origin)
        else:
            canonical = parse_ports(ports)
        return cls(parsed, canonical, scan_type, origin)

    @property
    def from_host(self) -> str | None:
        """The lab host it runs from; None: this machine."""
        return None if self.origin is None else self.origin.host

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
