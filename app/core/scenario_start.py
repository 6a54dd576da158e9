"""Starting a checked scenario (:mod:`app.core.scenario`): each entry after its delay,
on this machine or on its lab host, with one result per entry in words.

``start_scenario`` starts all or stops at the first failure (``observatory lab up``);
``start_scenario_each`` starts what can start and says why the others did not (the
dashboard, where processes of the same name may already run).
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.core import cprograms
from app.core.control import ProcessControl
from app.core.netns import LabNetwork
from app.core.procs import LaunchError, ProcessError, ProcessInfo
from app.core.scenario import LabNetworkNeeded, Scenario, ScenarioEntry


def _when_due(scenario: Scenario, stop: threading.Event | None) -> Iterator[ScenarioEntry]:
    """The entries, each after its delay; none more once ``stop`` is set."""
    for entry in scenario.entries:
        if entry.delay > 0:
            if stop is not None:
                if stop.wait(entry.delay):
                    return
            else:
                threading.Event().wait(entry.delay)
        if stop is not None and stop.is_set():
            return
        yield entry


def _refuse_hosts_without_network(scenario: Scenario, network: LabNetwork | None) -> None:
    """Nothing starts of a scenario with lab hosts but inside its lab network."""
    if not scenario.hosts or network is not None:
        return
    names = ", ".join(host.name for host in scenario.hosts)
    file = shlex.quote(str(scenario.path))
    raise LabNetworkNeeded(
        f"this scenario has lab hosts ({names}); start it with "
        f"`observatory --scenario {file}` or `observatory lab up {file}` as root; "
        "nothing was started"
    )


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a scenario's processes start: its folder, and its lab network, if any."""

    folder: Path
    network: LabNetwork | None

    def netns(self, entry: ScenarioEntry) -> str | None:
        """The network namespace of the entry's lab host; None: this machine's."""
        if entry.host is None or self.network is None:
            return None
        return self.network.namespace(entry.host)


def _launch(manager: ProcessControl, entry: ScenarioEntry, name: str, place: _Place) -> ProcessInfo:
    """Start ``entry`` as ``name``: a built-in, one of the lecture's C programs (compiled
    first, run in its cache folder), or a command run in the scenario's folder; on its lab
    host when it names one.

    Raises:
        LaunchError: it cannot start (a C program without a compiler: said how to get one).
    """
    netns = place.netns(entry)
    if entry.c_program and entry.program is not None:
        try:  # compiled on first use: seconds, once per source
            built = cprograms.build(entry.program)
        except cprograms.CProgramUnavailable as exc:
            raise LaunchError(f"{name}: {exc}") from None
        argv = [f"./{built.name}", *entry.args]  # as the lecture types it
        return manager.launch_command(name, argv, cwd=built.parent, netns=netns)
    if entry.program is not None:
        return manager.launch_builtin(name, entry.program, entry.args, netns=netns)
    return manager.launch_command(name, entry.command or (), cwd=place.folder, netns=netns)


def start_scenario(
    manager: ProcessControl,
    scenario: Scenario,
    *,
    stop: threading.Event | None = None,
    on_started: Callable[[ScenarioEntry, ProcessInfo], None] | None = None,
    network: LabNetwork | None = None,
) -> list[ProcessInfo]:
    """Start every entry in order, waiting each one's ``delay`` first.

    Blocks for the sum of the delays: call it from a worker thread in a UI
    (the manager forks on its own launcher thread either way). Setting
    ``stop`` ends the waiting and starts nothing more. ``network`` is the
    running lab network a scenario with ``[[host]]`` tables needs.

    Raises:
        LabNetworkNeeded: the scenario has hosts and ``network`` is None
            (before anything starts).
        LaunchError: an entry could not start (those already started keep
            running; the caller decides whether to stop them).
    """
    _refuse_hosts_without_network(scenario, network)
    started: list[ProcessInfo] = []
    place = _Place(scenario.folder, network)
    for entry in _when_due(scenario, stop):
        info = _launch(manager, entry, entry.name, place)
        started.append(info)
        if on_started is not None:
            on_started(entry, info)
    return started


Outcome = Literal["started", "kept", "renamed", "failed"]


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What loading a scenario did with one entry.

    ``outcome``: ``started``; ``kept`` (a running process of that name runs the
    same program and arguments: left running, nothing started); ``renamed``
    (the name is taken by a running process of another program: started under
    ``name``, a fresh one); ``failed`` (could not start; ``info`` is None).
    ``message`` is one line for the student (empty for a plain start).
    """

    entry: ScenarioEntry
    outcome: Outcome
    name: str
    info: ProcessInfo | None
    message: str


def _same_program(info: ProcessInfo, entry: ScenarioEntry) -> bool:
    if entry.c_program:  # ./tcp_server1 6000, in the compiled program's folder
        return info.program is None and tuple(info.argv) == (f"./{entry.program}", *entry.args)
    if entry.program is not None:
        return info.program == entry.program and tuple(info.args) == entry.args
    return info.program is None and tuple(info.argv) == tuple(entry.command or ())


def _fresh_name(manager: ProcessControl, name: str) -> str:
    taken = set(manager.names())
    for n in range(2, 1000):
        candidate = f"{name[:36]}-{n}"
        if candidate not in taken:
            return candidate
    raise LaunchError(f"no free name like {name}-2 is left")


def start_scenario_each(
    manager: ProcessControl,
    scenario: Scenario,
    *,
    stop: threading.Event | None = None,
    on_result: Callable[[EntryResult], None] | None = None,
    network: LabNetwork | None = None,
) -> list[EntryResult]:
    """Start what can start, one result per entry; never raises for one entry's failure.

    For a dashboard where processes may already run (a manual launch, a
    scenario loaded twice): a running process with the entry's name and the
    same program and arguments is kept ("server1 is already running: kept");
    one with that name but another program leaves the name alone and the
    entry starts under a fresh name (``server1-2``); an entry that cannot start
    is reported and the next ones still start. An ended process's name is
    simply used again (the manager replaces it). Delays and ``stop`` are as in
    :func:`start_scenario`; entries not reached because of ``stop`` get no result.

    Raises:
        LabNetworkNeeded: the scenario has hosts and ``network`` (the running lab
            network they need) is None; nothing was started.
    """
    _refuse_hosts_without_network(scenario, network)
    results: list[EntryResult] = []
    place = _Place(scenario.folder, network)
    for entry in _when_due(scenario, stop):
        result = _start_entry(manager, entry, place)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _start_entry(manager: ProcessControl, entry: ScenarioEntry, place: _Place) -> EntryResult:
    """Start one entry; or keep the process that already runs it under its name; or,
    when its name is taken by another program, start it under a fresh name."""
    try:
        current = manager.get(entry.name)
    except ProcessError:
        current = None
    if current is None or current.ended:
        return _start_as(manager, entry, entry.name, place, "started", "")
    if _same_program(current, entry):
        where = f"pid {current.pid}" if current.pid else "starting"
        message = f"{entry.name} is already running ({where}): kept"
        return EntryResult(entry, "kept", entry.name, current, message)
    try:
        name = _fresh_name(manager, entry.name)
    except LaunchError as exc:
        message = f"{entry.name} was not started: {exc}"
        return EntryResult(entry, "failed", entry.name, None, message)
    message = (
        f"{entry.name} is already the name of a running {current.command_line}: "
        f"{entry.command_line} started as {name}"
    )
    return _start_as(manager, entry, name, place, "renamed", message)


def _start_as(
    manager: ProcessControl,
    entry: ScenarioEntry,
    name: str,
    place: _Place,
    outcome: Outcome,
    message: str,
) -> EntryResult:
    """Launch ``entry`` as ``name``: ``outcome`` with ``message``, or ``failed`` with why."""
    try:
        info = _launch(manager, entry, name, place)
    except ProcessError as exc:
        return EntryResult(entry, "failed", name, None, f"{name} could not start: {exc}")
    return EntryResult(entry, outcome, name, info, message)
