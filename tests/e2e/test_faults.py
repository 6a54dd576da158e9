"""Faults the dashboard lives through (issue 16, point 2), the real app each time: a lab
process flooding 200 MB of output, one deaf to SIGTERM, a lab host's namespace deleted
under it, the terminal shrunk to 40x12 and back. It stays up and says what happened."""

from __future__ import annotations

import dataclasses
import gc
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from textual.widgets import RichLog

from app.core import netns
from app.core.interfaces import Interface, list_interfaces
from app.core.netns import LabHost, LabNetwork
from app.core.procs import ProcessManager
from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.requests import KillRequested
from app.ui.screens.main import MainScreen
from app.ui.widgets.lab_panel import LabPanel
from tests.conftest import wait_for
from tests.e2e.test_tmux import Launcher, dashboard_up
from tests.e2e.test_tmux import dashboard as dashboard  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(90)
MB = 1024 * 1024

# 200 MB of 500-byte lines, as fast as a pipe takes them.
FLOOD = (
    "import sys\nline = b'x' * 499 + b'\\n'\nout = sys.stdout.buffer\n"
    "for _ in range(400_000): out.write(line)\nout.write(b'the last line\\n')\n"
)
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(1000)"
)


@pytest.fixture
def app_and_manager() -> Iterator[tuple[ObservatoryApp, ProcessManager]]:
    manager = ProcessManager(register_atexit=False)
    try:
        yield ObservatoryApp(ProcNetSource(), manager, interval=0.25), manager
    finally:
        manager.shutdown()


def notices(app: ObservatoryApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_a_200_mb_flood_keeps_the_dashboard_answering_and_memory_flat(
    app_and_manager: tuple[ObservatoryApp, ProcessManager],
) -> None:
    app, manager = app_and_manager
    me = psutil.Process()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(1.0)
        gc.collect()
        before = me.memory_info().rss
        started = time.monotonic()
        manager.launch_command("flood", [sys.executable, "-c", FLOOD])
        peak = before
        while manager.get("flood").returncode is None:
            assert time.monotonic() - started < 60, "the flood did not drain in 60 s"
            await pilot.pause(0.25)
            peak = max(peak, me.memory_info().rss)
        took = time.monotonic() - started
        asked = time.monotonic()
        await pilot.press("e")  # a key, answered at once
        await pilot.pause(0.3)
        answered = time.monotonic() - asked
        screen = app.screen
        assert isinstance(screen, MainScreen)
        await pilot.pause(1.0)
        lines = manager.output("flood")
        held = app._output_gate.held_back
        log = screen.query_one(LabPanel).query_one("#output", RichLog)
        log_text = " ".join(" ".join(str(strip.text) for strip in log.lines).split())
        gc.collect()
        after = me.memory_info().rss
    print(
        f"flood: 200 MB in {took:.1f} s, {held} lines held back from the screen; RSS before "
        f"{before / MB:.1f} MB, peak {peak / MB:.1f}, after {after / MB:.1f}; key {answered:.2f} s"
    )
    assert manager.get("flood").state == "exited 0"
    assert len(lines) == 1000 and lines[-1] == "the last line"
    assert held > 390_000  # through the gate: a few hundred lines a second, then a count
    assert "more lines not shown here: flood printed more than 200 lines a second" in log_text
    assert peak - before < 60 * MB and after - before < 40 * MB, (before, peak, after)
    assert answered < 2.0


async def test_k_on_a_process_deaf_to_sigterm_says_so(
    app_and_manager: tuple[ObservatoryApp, ProcessManager],
) -> None:
    app, manager = app_and_manager
    async with app.run_test(size=(120, 40)) as pilot:
        info = manager.launch_command("deaf", [sys.executable, "-c", STUBBORN])
        wait_for(lambda: manager.output("deaf") == ["ready"], what="ready")
        app.screen.post_message(KillRequested("deaf", signal.SIGTERM))
        deadline = time.monotonic() + 8
        said = ""
        while time.monotonic() < deadline and not said:
            await pilot.pause(0.2)
            said = next((n for n in notices(app) if "after SIGTERM" in n), "")
        assert said == (
            f"deaf (pid {info.pid}) still runs 3 s after SIGTERM: it ignores or catches it. "
            "K sends SIGKILL, which it cannot."
        ), notices(app)
        assert manager.get("deaf").running


# -- a lab host's namespace deleted under the running dashboard (root) ------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts (network namespaces) need root")
async def test_a_namespace_deleted_under_the_dashboard(blackhole: None) -> None:
    network = LabNetwork()
    network.create([LabHost("faulty", ("10.0.2.15/24",))])
    ns = network.namespace("faulty")

    def interfaces() -> list[Interface]:  # as the dashboard's: the host's as faulty/eth0
        found = list_interfaces()
        for iface in netns.interfaces_in(ns):
            found.append(dataclasses.replace(iface, name=f"faulty/{iface.name}"))
        return found

    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(
        netns.lab_source(network), manager, interval=0.25, interfaces=interfaces, network=network
    )
    failures: list[str] = []
    app.poller.fail = failures.append
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            manager.launch_builtin("inside", "tcp-server", ["7300"], netns=ns)
            wait_for(lambda: any("Listening" in ln for ln in manager.output("inside")))
            await pilot.pause(1.0)
            screen = app.screen
            assert isinstance(screen, MainScreen)
            assert "faulty/eth0" in [i.name for i in screen.interfaces]
            assert not [n for n in notices(app) if "interfaces" in n]
            subprocess.run(["ip", "netns", "delete", ns], check=True)
            polls = screen.poller._previous
            app.poller.poll_now()
            await pilot.pause(6.0)  # the interfaces are read every 5 s
            warned = [n for n in notices(app) if "could not read the interfaces" in n]
            assert warned and "\n" not in warned[0], notices(app)
            assert not failures, failures
            assert screen.poller._previous is not polls  # it goes on polling
            assert screen.snapshot is not None
            rows = [s for s in screen.snapshot.sockets if s.local_port == 7300]
            assert rows and rows[0].host == "faulty"  # the host's socket is still read
            assert manager.get("inside").running
    finally:
        manager.shutdown()
        network.destroy()  # its namespace is gone already: nothing to say
    assert not os.path.exists(f"/run/netns/{ns}")


# -- the terminal shrunk to 40x12 and back ------------------------------------------------
def test_the_terminal_shrunk_to_40x12_and_back(dashboard: Launcher) -> None:  # noqa: F811
    dash = dashboard("--interval", "0.25")
    for width, height in ((40, 12), (120, 40), (40, 12), (120, 40)):
        dash.term.tmux("resize-window", "-t", dash.term.name, "-x", str(width), "-y", str(height))
        time.sleep(0.5)
        pane = dash.term.capture()
        lines = pane.splitlines()
        assert len(lines) == height and all(len(line) <= width for line in lines), pane
        if height == 12:
            dash.term.wait_for(lambda p: "Observatory" in p.splitlines()[0], what="status line")
    dash.term.wait_for(dashboard_up, what="the dashboard at 120x40 again")
    dash.term.send_keys("e")  # still answering: the Events tab
    dash.term.wait_for(re.compile(r"Events"), what="the Events tab")
    dash.term.send_keys("t")
    dash.term.wait_for("Theme: projector", what="the theme key's note")
    dash.term.send_keys("q")
    assert dash.term.wait_exit() == 0
    dash.tracker.assert_all_gone(timeout=5)
