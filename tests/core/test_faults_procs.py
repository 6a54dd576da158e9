"""Faults of lab processes (issue 16): one that ignores SIGTERM, exits at once, crashes;
a flood of output lines held back from a screen. Each ends said in words."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator

import pytest

from app.core.procs import LineGate, OutputLine, ProcessEvent, ProcessExited, ProcessManager
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(30)

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(1000)"
)


@pytest.fixture
def manager() -> Iterator[tuple[ProcessManager, list[ProcessEvent]]]:
    with ProcessManager(register_atexit=False) as m:
        events: list[ProcessEvent] = []
        m.subscribe(events.append)
        yield m, events


def exits(events: list[ProcessEvent], name: str) -> list[ProcessExited]:
    return [e for e in events if isinstance(e, ProcessExited) and e.name == name]


@pytest.mark.parametrize("how", ["stop", "shutdown"])
def test_sigterm_ignored_is_followed_by_sigkill_and_said(
    manager: tuple[ProcessManager, list[ProcessEvent]], how: str
) -> None:
    m, events = manager
    m.launch_command("stubborn", [sys.executable, "-c", STUBBORN])
    wait_for(lambda: m.output("stubborn") == ["ready"], what="ready")
    started = time.monotonic()
    if how == "stop":
        info = m.stop("stubborn", timeout=1.0)
    else:
        m.shutdown(timeout=1.0)
        info = m.get("stubborn")
    took = time.monotonic() - started
    assert info.state == "killed by SIGKILL"
    assert 0.9 < took < 4, f"took {took:.2f} s"
    wait_for(lambda: exits(events, "stubborn"), what="the exit event")
    (exited,) = exits(events, "stubborn")
    assert exited.describe().endswith(
        "killed by SIGKILL: it did not end within 1 s of SIGTERM, so the observatory sent SIGKILL"
    ), exited.describe()


def test_a_process_that_ends_at_once_or_crashes_is_said(
    manager: tuple[ProcessManager, list[ProcessEvent]],
) -> None:
    m, events = manager
    m.launch_command("quick", ["true"])
    m.launch_command("fails", ["sh", "-c", "echo 'cannot open lab.conf' >&2; exit 3"])
    crash = "import ctypes; print('about to crash', flush=True); ctypes.string_at(0)"
    m.launch_command("crash", [sys.executable, "-c", crash])
    for name in ("quick", "fails", "crash"):
        m.wait(name, 10)
    wait_for(lambda: all(exits(events, n) for n in ("quick", "fails", "crash")), what="exits")
    assert exits(events, "quick")[0].describe().endswith("exited 0")
    assert exits(events, "fails")[0].describe().endswith("exited 3: cannot open lab.conf")
    crashed = exits(events, "crash")[0]
    assert crashed.returncode == -signal.SIGSEGV and "killed by SIGSEGV" in crashed.describe()
    assert not crashed.ended_well


def line(n: int, name: str = "flood") -> OutputLine:
    return OutputLine(name, 42, "stdout", f"line {n}", 0.0)


def test_the_gate_lets_a_rate_through_and_counts_the_rest() -> None:
    now = [100.0]
    gate = LineGate(rate=5, clock=lambda: now[0])
    passed = [out for n in range(12) for out in gate.admit(line(n))]
    assert [p.text for p in passed] == [f"line {n}" for n in range(5)]
    assert gate.admit(line(0, "other")) == [line(0, "other")]  # each process its own rate
    now[0] += 1.0
    first, nxt = gate.admit(line(12))
    assert first.text.startswith("[... 7 more lines not shown here: flood printed more than 5")
    assert nxt.text == "line 12"
    for n in range(13, 20):
        gate.admit(line(n))
    (summary,) = gate.flush("flood", 42)
    assert summary.text.startswith("[... 3 more lines")
    assert gate.flush("flood", 42) == []
    assert gate.held_back == 10


def test_the_gate_survives_a_clock_going_back() -> None:
    now = [100.0]
    gate = LineGate(rate=2, clock=lambda: now[0])
    for n in range(4):
        gate.admit(line(n))
    now[0] -= 3600.0  # the clock jumped back an hour: a new second, not an hour's silence
    out = gate.admit(line(4))
    assert [o.text for o in out][-1] == "line 4"
    assert out[0].text.startswith("[... 2 more lines")
