"""The teacher's view of a class of machines, without a screen: each machine's agent
(``observatory agent``) is asked for its ``GET /api/snapshot`` (app.core.agent_client:
one thread and one kept connection per machine, each question bounded by one
timeout), and each answer is reduced to one :class:`MachineRow` (up or down, its
LISTEN ports, ESTABLISHED count, lab processes, connections waiting in backlogs,
the newest change since the previous answer, how old the data is). A machine
that is down, slow, wants a token or answers something that is not a snapshot
is a row with ``up`` False and the reason in words, never an exception.
``observatory class --json`` prints the rows; the class screen of ``app.ui``
shows them live and never does network I/O itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from app.core import targets
from app.core.agent_client import (
    DEFAULT_TIMEOUT,
    AgentClient,
    AgentSnapshot,
    FetchError,
    Target,
    fetch_snapshot,
)
from app.core.diff import diff
from app.core.model import Snapshot, Socket, SocketEvent
from app.core.small_files import read_limited
from app.labs import digits_hint, whole_number

__all__ = [
    "DEFAULT_TIMEOUT",
    "AgentSnapshot",
    "Change",
    "Classroom",
    "FetchError",
    "MachineRow",
    "Target",
    "TargetError",
    "fetch_snapshot",
    "parse_target",
    "parse_targets",
    "read_hosts_file",
    "read_token",
]

MAX_TARGETS = 256  # one view; a thread each
MAX_FILE_BYTES = 64 * 1024  # a hosts file (256 lines of HOST:PORT are 10 KiB) or a token file
SHOWN = 60  # the most of a TARGET a message quotes


class TargetError(ValueError):
    """A TARGET (or the hosts file, or the token file) refused; ``str()`` says why."""


def parse_target(text: str) -> Target:
    """``HOST:PORT`` (an IPv4 address or a name) or ``[IPv6]:PORT``; TargetError in words."""
    raw = text.strip()
    example = "like pc07:8765, 192.168.1.7:8765 or [fd00::7]:8765"
    if not raw:
        raise TargetError(f"a TARGET is HOST:PORT, {example}; this one is empty")
    shown = repr(raw if len(raw) <= SHOWN else raw[: SHOWN - 3] + "...")
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
        if not sep:
            raise TargetError(f"{shown}: after [IPv6 address] comes ':PORT', {example}")
    else:
        host, sep, port = raw.rpartition(":")
        if not sep:
            raise TargetError(f"{shown} has no port: a TARGET is HOST:PORT, {example}")
        if ":" in host:
            raise TargetError(
                f"{shown}: put an IPv6 address in brackets before the port, like [::1]:{port[:5]}"
            )
    number = whole_number(port)
    if number is None or not 1 <= number <= 65535:
        raise TargetError(
            f"{shown}: the port after ':' is a number from 1 to 65535, not {port[:20]!r}"
            + digits_hint(port)
        )
    try:
        parsed = targets.parse_target(host)
    except targets.TargetError as exc:
        raise TargetError(f"{shown}: {exc}") from None
    if parsed.kind == "network":
        raise TargetError(f"{shown}: name one machine, not a network; list each machine")
    return Target(parsed.text, number)


def parse_targets(texts: Iterable[str]) -> list[Target]:
    """Every TARGET, each machine once, in the order given (the room's order)."""
    found: dict[str, Target] = {}
    for text in texts:
        target = parse_target(text)
        found.setdefault(target.text, target)
    if not found:
        raise TargetError(
            "name the machines: observatory class pc01:8765 pc02:8765 ..., "
            "or --hosts-file FILE with one HOST:PORT a line"
        )
    if len(found) > MAX_TARGETS:
        raise TargetError(f"{len(found)} machines is too many for one view; at most {MAX_TARGETS}")
    return list(found.values())


def _read_text(path: str, what: str) -> str:
    """The UTF-8 text of a small file (at most MAX_FILE_BYTES), or TargetError in words.
    A FIFO or /dev/zero is never read without end."""
    try:
        data = read_limited(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise TargetError(f"there is no {what} {path!r}: check the name") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a file name"
        raise TargetError(f"cannot read the {what} {path!r}: {reason}") from None
    if data is None:
        raise TargetError(f"the {what} {path!r} is too big: at most {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TargetError(f"cannot read the {what} {path!r}: it is not UTF-8 text") from None


def read_hosts_file(path: str) -> list[str]:
    """The TARGETs of a hosts file: one a line; blank lines and ``#`` comments skipped.
    Each is checked here, so a mistake names its line."""
    text = _read_text(path, "hosts file")
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            parse_target(entry)
        except TargetError as exc:
            raise TargetError(f"{path}, line {number}: {exc}") from None
        lines.append(entry)
    if not lines:
        raise TargetError(f"the hosts file {path!r} names no machine: write one HOST:PORT a line")
    return lines


def read_token(path: str) -> str:
    """The bearer token of a token file: its one line, without the spaces around it."""
    token = _read_text(path, "token file").strip()
    if not token:
        raise TargetError(f"the token file {path!r} is empty: put the agents' token in it")
    if not token.isprintable() or not token.isascii():
        raise TargetError(
            f"the token file {path!r} must hold the token on one line, in plain ASCII"
        )
    return token


@dataclass(frozen=True, slots=True)
class MachineRow:
    """One machine of the class as the view shows it (``to_json`` for ``--json``).

    ``taken_at`` and ``snapshot`` are of the newest answer the machine gave, kept
    while it is down (the age of the data keeps growing); ``problem`` is the reason
    it is down in two words, ``error`` the same in a sentence.
    """

    target: str
    up: bool
    host: str | None = None
    listen: tuple[int, ...] = ()
    established: int = 0
    processes: int = 0
    waiting: int = 0
    change: Change | None = None  # the newest change the answers showed (kept while down)
    taken_at: float | None = None
    checked_at: float = 0.0
    error: str | None = None
    problem: str | None = None
    snapshot: AgentSnapshot | None = field(default=None, compare=False, repr=False)

    @property
    def last_event(self) -> str | None:
        return None if self.change is None else self.change.text

    def age(self, now: float) -> float | None:
        """Seconds since the agent took the data shown (never below 0: clocks differ)."""
        return None if self.taken_at is None else max(0.0, now - self.taken_at)

    def to_json(self) -> dict[str, object]:
        age = self.age(self.checked_at)
        return {
            "target": self.target,
            "up": self.up,
            "host": self.host,
            "listen": list(self.listen),
            "established": self.established,
            "processes": self.processes,
            "waiting": self.waiting,
            "last_event": self.last_event,
            "age": None if age is None else round(age, 3),
            "error": self.error,
        }


def reduce(target: str, snap: AgentSnapshot, now: float) -> MachineRow:
    """The row of one answer (without its last event: that needs the answer before)."""
    listen: set[int] = set()
    established = waiting = 0
    for s in snap.sockets:
        if not s.is_tcp:
            continue
        if s.state == "LISTEN":
            listen.add(s.local_port)
            waiting += s.recv_q
        elif s.state == "ESTABLISHED":
            established += 1
    return MachineRow(
        target=target,
        up=True,
        host=snap.host,
        listen=tuple(sorted(listen)),
        established=established,
        processes=len(snap.processes),
        waiting=waiting,
        taken_at=snap.taken_at,
        checked_at=now,
        snapshot=snap,
    )


# Which change a row shows when one answer brought several: a server starting or
# stopping says most about a lab, then a state change, then connections coming and going.
_WEIGHT = {
    "listener-opened": 0,
    "listener-closed": 0,
    "state-changed": 1,
    "connection-opened": 2,
    "connection-closed": 2,
    "owner-changed": 3,
    "udp-opened": 4,
    "udp-closed": 4,
}


@dataclass(frozen=True, slots=True)
class Change:
    """The change a row shows: in words (``text``), for a table cell (``brief``), and
    when the agent saw it (its clock)."""

    text: str
    brief: str
    at: float


def newest_change(events: Sequence[SocketEvent]) -> Change | None:
    """The most telling of one answer's changes (``and 3 more``)."""
    if not events:
        return None
    chosen = min(events, key=lambda e: _WEIGHT[e.kind])
    more = len(events) - 1
    text = chosen.describe() + (f" (and {more} more)" if more else "")
    return Change(text, brief(chosen) + (f" +{more}" if more else ""), chosen.at)


def brief(event: SocketEvent) -> str:
    """A change in a few words: ``+ LISTEN :8080 tcp-server``, ``~ CLOSE_WAIT :8080``."""
    s = event.socket
    here, there = f":{s.local_port}", "" if s.remote_port is None else f":{s.remote_port}"
    words = {
        "listener-opened": f"+ LISTEN {here}",
        "listener-closed": f"- LISTEN {here} closed",
        "connection-opened": f"+ {s.state} {here}→{there}",
        "connection-closed": f"- {s.state} {here}→{there} gone",
        "state-changed": f"~ {event.new_state} {here}→{there}",
        "owner-changed": f"~ accepted {here}←{there}",
        "udp-opened": f"+ UDP {here}",
        "udp-closed": f"- UDP {here} closed",
    }[event.kind]
    return f"{words} {s.process}" if s.process else words


@dataclass(slots=True)
class _Memory:
    """What the view keeps of one machine between two answers."""

    previous: Snapshot | None = None
    answer: AgentSnapshot | None = None  # the last answer as it came (its sockets reused)
    last_good: MachineRow | None = None
    change: Change | None = None


class Classroom:
    """The machines of a class and what each said last.

    Args:
        machines: the agents to ask.
        token: the bearer token (``--token-file``), or None.
        timeout: seconds one request may take.
        clock: the time the ages are measured against.
    """

    def __init__(
        self,
        machines: Sequence[Target],
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.machines = list(machines)
        self.token = token
        self.timeout = timeout
        self.clock = clock
        self._clients = {m.text: AgentClient(m, token, timeout) for m in self.machines}
        self._memory = {m.text: _Memory() for m in self.machines}
        self._ends: set[tuple[str | None, int | None]] = {(m.host, m.port) for m in self.machines}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def check(self, target: Target) -> MachineRow:
        """Ask one machine once; its row, up or down (never raises)."""
        memory = self._memory[target.text]
        try:
            snap = self._clients[target.text].snapshot(memory.answer)
        except FetchError as exc:
            return self._down(target, memory, exc.short, exc.words)
        except Exception as exc:  # a row in words, whatever broke: never a traceback
            return self._down(target, memory, "error", f"cannot ask {target.text}: {exc!r}.")
        memory.answer = snap
        snap = self._without_the_room(snap)
        current = Snapshot(taken_at=snap.taken_at, sockets=snap.sockets)
        if memory.previous is not None:
            memory.change = newest_change(diff(memory.previous, current)) or memory.change
        memory.previous = current
        row = replace(reduce(target.text, snap, self.clock()), change=memory.change)
        memory.last_good = row
        return row

    def _without_the_room(self, snap: AgentSnapshot) -> AgentSnapshot:
        """The answer without this view's own traffic: a socket with an end at one of the
        room's agents (the agents' listeners, and our connections to them, which a
        machine shows when the view or another agent runs on it: loopback rooms)."""
        ends = self._ends

        def ours(s: Socket) -> bool:
            return (s.local_addr, s.local_port) in ends or (s.remote_addr, s.remote_port) in ends

        if not any(ours(s) for s in snap.sockets):
            return snap
        return replace(snap, sockets=tuple(s for s in snap.sockets if not ours(s)))

    def _down(self, target: Target, memory: _Memory, short: str, words: str) -> MachineRow:
        last = memory.last_good
        return MachineRow(
            target=target.text,
            up=False,
            host=last.host if last else None,
            change=memory.change,
            taken_at=last.taken_at if last else None,
            checked_at=self.clock(),
            error=words,
            problem=short,
            snapshot=last.snapshot if last else None,
        )

    def poll_all(self) -> list[MachineRow]:
        """Ask every machine at once; their rows in the machines' order. (Not while
        :meth:`start`'s threads run: a machine's connection is one thread's at a time.)"""
        if not self.machines:
            return []
        with ThreadPoolExecutor(max_workers=min(len(self.machines), 32)) as pool:
            return list(pool.map(self.check, self.machines))

    def close(self) -> None:
        """Close the connections kept open to the agents (:meth:`poll_all`'s)."""
        for client in self._clients.values():
            client.close()

    def start(self, on_row: Callable[[MachineRow], object], interval: float) -> None:
        """Ask each machine every ``interval`` seconds, each in a thread of its own (a
        slow one never holds the others back); each row goes to ``on_row`` on that
        thread. Daemon threads: a request in flight never keeps the process alive."""
        self._stop.clear()
        for machine in self.machines:
            thread = threading.Thread(
                target=self._watch,
                args=(machine, on_row, interval),
                name=f"class-{machine.text}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def _watch(
        self, machine: Target, on_row: Callable[[MachineRow], object], interval: float
    ) -> None:
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                row = self.check(machine)
                if self._stop.is_set():
                    return
                on_row(row)
                self._stop.wait(max(0.0, interval - (time.monotonic() - began)))
        finally:
            self._clients[machine.text].close()

    def stop(self) -> None:
        """No more requests begin; one in flight ends within the timeout, unreported."""
        self._stop.set()
        self._threads.clear()
