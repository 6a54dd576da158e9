"""What a scan found: hosts, ports, folded ports, listeners, and progress.

Frozen dataclasses only, each with a ``to_json`` for the CLI's ``--json``:
:class:`ScanResult` holds the :class:`HostResult` and :class:`PortResult`
rows of one scan (a port joined with the local :class:`ListenerInfo` when
the host is this machine, or a lab host's in a scan from a lab host),
:class:`NotShown` the ports nmap folded into one line, and :class:`ScanProgress`
how far a running scan is.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.model import format_endpoint
from app.core.scan.types import ScanStatus, ScanType
from app.core.targets import expand_ports


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
    host: str | None = None  # the lab host it lives on; None: this machine

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
        """The LISTENER column: ``1234/tcp-server on 0.0.0.0`` (``server: ...`` on a lab host)."""
        if self.pid is not None:
            owner = f"{self.pid}/{self.process or '?'}"
        else:
            owner = f"hidden (user {self.user})" if self.user else "hidden"
        where = "" if self.host is None else f"{self.host}: "
        return f"{where}{owner} on {self.address}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "pid": self.pid,
            "process": self.process,
            "user": self.user,
            "address": self.address,
        }
        if self.host is not None:  # as a snapshot's socket: only when on a lab host
            out["host"] = self.host
        return out


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
            its interfaces) and the scan ran from this machine: then its ports
            are joined with this machine's listeners.
        timed_out: nmap gave up on this host (its --host-timeout).
        not_shown: ports folded away, as nmap does beyond 25 alike ports.
        lab_host: in a scan from a lab host, the lab host this address is
            (127.0.0.1 is the scanning host's own): its ports are joined with
            that host's listeners. None otherwise.
    """

    address: str
    state: str
    local: bool
    timed_out: bool = False
    not_shown: tuple[NotShown, ...] = ()
    lab_host: str | None = None

    @property
    def joined(self) -> bool:
        """Its ports were joined with the listeners of whoever it is (this machine, a host)."""
        return self.local or self.lab_host is not None

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "state": self.state,
            "local": self.local,
            "timed_out": self.timed_out,
            "not_shown": [n.to_json() for n in self.not_shown],
            "lab_host": self.lab_host,
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
        command: nmap's argv (``command[0]`` is "nmap"), for showing; from a lab
            host it ran after ``exec_prefix``.
        error: what went wrong, in one line, else None.
        status: "done", "cancelled", "timeout" or "failed".
        hosts: the hosts nmap reported on.
        requested_ports: the canonical port list that was asked for.
        scanner: "nmap".
        from_host: the lab host it ran from; None: this machine.
        exec_prefix: what ran nmap inside that host (``ip netns exec NS``), else ().
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
    from_host: str | None = None
    exec_prefix: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "done" and self.error is None

    @property
    def scanned(self) -> str:
        """What was scanned from where: ``10.0.2.15 from client``; the target alone
        from this machine. The history keeps scans of one such together."""
        return self.target if self.from_host is None else f"{self.target} from {self.from_host}"

    @property
    def full_command(self) -> tuple[str, ...]:
        """What was run, as a student would type it: ``ip netns exec NS nmap ...``."""
        return (*self.exec_prefix, *self.command)

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
            "from": self.from_host,
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
