"""Whether a lesson's sentence holds now: :func:`judge` one :class:`Expectation` against a
:class:`World` (one poll of the sockets, the lab processes, the step's scan).

Pure and quick (it reads what it is given, nothing else: the dashboard calls it on its UI
loop at every poll). When a sentence does not hold, the verdict says what is there
instead, in words a student reads: "nothing listens on 6000", "6000 is listened on by
server2 on 127.0.0.1, not 0.0.0.0", "2 connections on 6000, not 1".

Without ``at HOST`` a sentence looks at this machine's own sockets (those a lab host holds
are left out); with it, at that host's only.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.core.lesson_sentence import Expectation
from app.core.model import Snapshot, Socket
from app.core.procs import ProcessInfo


@dataclass(frozen=True)
class World:
    """What a sentence is judged against."""

    snapshot: Snapshot
    processes: Sequence[ProcessInfo]
    scan: Mapping[int, str] | None = None  # port -> open/closed/filtered; None: not scanned

    @functools.cached_property
    def _by_port(self) -> dict[int, list[Socket]]:
        """Each port's sockets (either end on it), indexed once: every socket sentence
        names a port, and a step's sentences over 16,000 sockets each walked them all."""
        index: dict[int, list[Socket]] = {}
        for s in self.snapshot.sockets:
            index.setdefault(s.local_port, []).append(s)
            if s.remote_port and s.remote_port != s.local_port:
                index.setdefault(s.remote_port, []).append(s)
        return index

    def on_port(self, port: int | None, host: str | None) -> list[Socket]:
        """The sockets of ``host`` (None: this machine) with an end on ``port``."""
        return [s for s in self._by_port.get(port or 0, ()) if s.host == host]


@dataclass(frozen=True)
class Verdict:
    """``held``; else ``why``: what is there instead, in words ("" when held)."""

    held: bool
    why: str = ""


HELD = Verdict(True)


def judge(expectation: Expectation, world: World) -> Verdict:
    """Whether ``expectation`` holds in ``world``."""
    return _JUDGES[expectation.kind](expectation, world)


# ------------------------------------------------------------------ helpers


@functools.lru_cache(maxsize=4096)
def _plain(address: str | None) -> str | None:
    """An address as the sentence writes it: an IPv4-mapped IPv6 address as IPv4."""
    if address is None:
        return None
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def _where(host: str | None) -> str:
    return f" on lab host {host}" if host else ""


def _by_pid(processes: Iterable[ProcessInfo]) -> dict[int, ProcessInfo]:
    return {p.pid: p for p in processes if p.pid is not None and not p.ended}


def _owner(sock: Socket, labs: Mapping[int, ProcessInfo]) -> str:
    """Who holds a socket, as a student names it: the lab process, else its program."""
    if sock.pid is not None and sock.pid in labs:
        return labs[sock.pid].name
    if sock.owner == "process":
        return f"{sock.process or 'a process'} (pid {sock.pid})"
    if sock.owner == "hidden":
        return f"a process of user {sock.user}" if sock.user else "a hidden process"
    if sock.state == "TIME_WAIT":
        return "the kernel (TIME_WAIT)"
    if sock.waiting_in_backlog:
        return "the kernel (waiting to be accepted)"
    return "the kernel"


def _names_of(sock: Socket, labs: Mapping[int, ProcessInfo]) -> set[str]:
    """Every name ``by PROGRAM`` may give for the holder: the lab name (server1), its
    built-in (tcp-server), the program ps shows (tcp_server1, python3)."""
    names: set[str] = set()
    if sock.process:
        names.add(sock.process)
    if sock.cmdline:
        names.add(os.path.basename(sock.cmdline[0]))
    info = labs.get(sock.pid) if sock.pid is not None else None
    if info is not None:
        names.add(info.name)
        if info.program:
            names.add(info.program)
        if info.argv:
            names.add(os.path.basename(info.argv[0]))
    return names


def _listeners(world: World, exp: Expectation) -> list[Socket]:
    return [
        s
        for s in world.on_port(exp.port, exp.host)
        if s.is_tcp and s.state == "LISTEN" and s.local_port == exp.port
    ]


def _udp_bound(world: World, exp: Expectation) -> list[Socket]:
    return [
        s for s in world.on_port(exp.port, exp.host) if not s.is_tcp and s.local_port == exp.port
    ]


def _describe_holders(socks: Sequence[Socket], labs: Mapping[int, ProcessInfo]) -> str:
    """``server2 on 127.0.0.1`` (and others), for a why."""
    parts = list(dict.fromkeys(f"{_owner(s, labs)} on {_plain(s.local_addr)}" for s in socks))
    if len(parts) > 3:
        parts = [*parts[:3], f"{len(parts) - 3} more"]
    return " and ".join(parts) if len(parts) <= 2 else ", ".join(parts)


# ------------------------------------------------------------------ listen, udp


def _bound(
    exp: Expectation,
    world: World,
    find: Callable[[World, Expectation], list[Socket]],
    verb: str,
    nothing: str,
) -> Verdict:
    """``listen`` and ``udp``: a socket on the port (on ADDR, by PROGRAM), or none."""
    labs = _by_pid(world.processes)
    found = find(world, exp)
    matching = [
        s
        for s in found
        if (exp.address is None or _plain(s.local_addr) == exp.address)
        and (exp.program is None or exp.program in _names_of(s, labs))
    ]
    where = _where(exp.host)
    if exp.negated:
        if not matching:
            return HELD
        return Verdict(False, f"{exp.port} is still {verb} by {_describe_holders(matching, labs)}")
    if matching:
        return HELD
    if not found:
        return Verdict(False, f"{nothing} {exp.port}{where}")
    holders = _describe_holders(found, labs)
    wrong: list[str] = []
    if exp.address is not None and not any(_plain(s.local_addr) == exp.address for s in found):
        wrong.append(f"not {exp.address}")
    if exp.program is not None and not any(exp.program in _names_of(s, labs) for s in found):
        wrong.append(f"not by {exp.program}")
    if not wrong:  # each alone is there, not both on one socket
        wrong.append(f"not on {exp.address} by {exp.program} together")
    return Verdict(False, f"{exp.port} is {verb} by {holders}{where}, {' and '.join(wrong)}")


def _listen(exp: Expectation, world: World) -> Verdict:
    return _bound(exp, world, _listeners, "listened on", "nothing listens on")


def _udp(exp: Expectation, world: World) -> Verdict:
    return _bound(exp, world, _udp_bound, "bound (UDP)", "no UDP socket is bound to")


# ------------------------------------------------------------------ established


def _ends(sock: Socket, port: int) -> list[tuple[str | None, str | None]]:
    """For a connection row: (address of the end on ``port``, the other end's address),
    once for each end that is on ``port`` (both, for a connection to itself)."""
    out = []
    if sock.local_port == port:
        out.append((_plain(sock.local_addr), _plain(sock.remote_addr)))
    if sock.remote_port == port:
        out.append((_plain(sock.remote_addr), _plain(sock.local_addr)))
    return out


def _connection_key(sock: Socket) -> tuple[object, ...]:
    """One key for both rows of a connection (each end's row, on one machine or two lab
    hosts); a loopback connection is the host's own."""
    ends = frozenset(
        {(_plain(sock.local_addr), sock.local_port), (_plain(sock.remote_addr), sock.remote_port)}
    )
    loopback = any(_is_loopback(a) for a, _ in ends)
    return (ends, sock.host if loopback else None)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _show_connection(sock: Socket) -> str:
    return f"{sock.local} ↔ {sock.remote}"


def _established(exp: Expectation, world: World) -> Verdict:
    assert exp.port is not None
    labs = _by_pid(world.processes)
    rows = [
        s
        for s in world.on_port(exp.port, exp.host)
        if s.is_tcp and s.state == "ESTABLISHED" and exp.port in (s.local_port, s.remote_port)
    ]
    connections: dict[tuple[object, ...], Socket] = {}
    all_connections: dict[tuple[object, ...], Socket] = {}
    for s in rows:
        key = _connection_key(s)
        all_connections.setdefault(key, s)
        if _row_matches(s, exp, labs):
            connections.setdefault(key, s)
    count = len(connections)
    where = _where(exp.host)
    plural = "connection" if count == 1 else "connections"
    if exp.negated:
        if count == 0:
            return HELD
        shown = ", ".join(_show_connection(s) for s in list(connections.values())[:3])
        return Verdict(False, f"{count} {plural} on {exp.port}{where}: {shown}")
    if exp.count is not None:
        if count == exp.count:
            return HELD
        return Verdict(
            False, f"{count} {plural} on {exp.port}{where}{_which(exp)}, not {exp.count}"
        )
    if count:
        return HELD
    if not all_connections:
        return Verdict(False, f"no connection on {exp.port}{where}")
    shown = ", ".join(_show_connection(s) for s in list(all_connections.values())[:3])
    return Verdict(False, f"no connection on {exp.port}{where}{_which(exp)}; there are: {shown}")


def _which(exp: Expectation) -> str:
    """`` with 10.0.2.15 at that end, from 10.0.2.16, by client1`` for a why."""
    parts = []
    if exp.address is not None:
        parts.append(f"with {exp.address} at that end")
    if exp.peer is not None:
        parts.append(f"from {exp.peer}")
    if exp.program is not None:
        parts.append(f"held by {exp.program}")
    return (" " + ", ".join(parts)) if parts else ""


def _row_matches(sock: Socket, exp: Expectation, labs: Mapping[int, ProcessInfo]) -> bool:
    assert exp.port is not None
    if exp.program is not None and exp.program not in _names_of(sock, labs):
        return False
    return any(
        (exp.address is None or here == exp.address) and (exp.peer is None or there == exp.peer)
        for here, there in _ends(sock, exp.port)
    )


# ------------------------------------------------------------------ backlog, state


def _backlog(exp: Expectation, world: World) -> Verdict:
    listeners = [
        s
        for s in _listeners(world, exp)
        if exp.address is None or _plain(s.local_addr) == exp.address
    ]
    where = _where(exp.host)
    if not listeners:
        on = f" on {exp.address}" if exp.address else ""
        return Verdict(False, f"nothing listens on {exp.port}{on}{where}")
    waiting = sum(s.recv_q for s in listeners)
    if waiting == exp.count:
        return HELD
    verb = "waits" if waiting == 1 else "wait"
    plural = "connection" if waiting == 1 else "connections"
    return Verdict(
        False, f"{waiting} {plural} {verb} in the backlog of {exp.port}{where}, not {exp.count}"
    )


def _state(exp: Expectation, world: World) -> Verdict:
    rows = [
        s
        for s in world.on_port(exp.port, exp.host)
        if s.is_tcp and exp.port in (s.local_port, s.remote_port)
    ]
    matching = [s for s in rows if s.state == exp.state]
    where = _where(exp.host)
    if exp.negated:
        if not matching:
            return HELD
        return Verdict(False, f"{len(matching)} socket(s) on port {exp.port}{where} in {exp.state}")
    if matching:
        return HELD
    if not rows:
        return Verdict(False, f"no TCP socket on port {exp.port}{where}")
    states = ", ".join(sorted({s.state for s in rows}))
    return Verdict(
        False, f"no socket on port {exp.port}{where} is in {exp.state}; there are: {states}"
    )


# ------------------------------------------------------------------ scan, cpu, output, service


def _scan(exp: Expectation, world: World) -> Verdict:
    if world.scan is None:
        return Verdict(False, "not scanned yet")
    assert exp.port is not None
    found = world.scan.get(exp.port)
    if found is None:
        return Verdict(False, f"nmap said nothing of {exp.port}")
    if found == exp.state:
        return HELD
    return Verdict(False, f"nmap says {exp.port} is {found}, not {exp.state}")


def _process(world: World, name: str | None) -> ProcessInfo | None:
    for info in world.processes:
        if info.name == name:
            return info
    return None


def _cpu(exp: Expectation, world: World) -> Verdict:
    info = _process(world, exp.name)
    if info is None:
        return Verdict(False, f"no process named {exp.name} runs")
    if info.ended:
        return Verdict(False, f"{exp.name} is not running ({info.state})")
    if info.cpu_percent is None:
        return Verdict(False, f"{exp.name}'s CPU is not measured yet")
    assert exp.percent is not None
    share = info.cpu_percent
    if (share > exp.percent) if exp.above else (share < exp.percent):
        return HELD
    side = "above" if exp.above else "below"
    return Verdict(False, f"{exp.name} uses {share:g}% CPU, not {side} {exp.percent:g}%")


def _output(exp: Expectation, world: World) -> Verdict:
    info = _process(world, exp.name)
    if info is None:
        return Verdict(False, f"no process named {exp.name} was started")
    assert exp.contains is not None
    if any(exp.contains in line for line in info.output):
        return HELD
    if not info.output:
        ended = f" ({info.state})" if info.ended else ""
        return Verdict(False, f"{exp.name} has printed nothing{ended}")
    last = info.output[-1]
    if len(last) > 80:
        last = last[:79] + "…"
    return Verdict(False, f"{exp.name} has not printed it; its last line: {last}")


def _service(exp: Expectation, world: World) -> Verdict:
    from app.core.services import service_name

    assert exp.port is not None and exp.service is not None
    name = service_name(exp.port, "tcp")
    if (name or "unknown").lower() == exp.service.lower():
        return HELD
    if name is None:
        return Verdict(False, f"no service name is known for {exp.port} (unknown)")
    return Verdict(False, f"{exp.port} is named {name}, not {exp.service}")


_JUDGES: dict[str, Callable[[Expectation, World], Verdict]] = {
    "listen": _listen,
    "udp": _udp,
    "established": _established,
    "backlog": _backlog,
    "state": _state,
    "scan": _scan,
    "cpu": _cpu,
    "output": _output,
    "service": _service,
}
