"""nmap from one lab host to another (scenarios/session4-hosts.toml), as root: experiment 9
seen by a scan from host client, `observatory scan --from` and the Scan tab's From.

`observatory lab up` runs in the background (tests.e2e.test_lab_hosts.LabUp) with the
blackhole route for the lab range in the machine's own namespace (tests/conftest.py), so a
bug cannot send a packet anywhere; nmap runs inside host client's namespace, which has no
route but the lab network's, and may be given only the lab's addresses.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select, Static

from app.core import netns
from app.core.interfaces import Interface, list_interfaces
from app.core.sockets import DiagSource, LabSource, ProcNetSource, SocketSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.scan_panel import ScanPanel
from tests.conftest import AsNobody, observatory, until, wait_for
from tests.e2e.test_lab_hosts import LabUp
from tests.nmaputil import require_nmap

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts (network namespaces) need root"),
    pytest.mark.timeout(90),
]
HOSTS = ("client", "server")


@pytest.fixture
def lab_up(blackhole: None) -> Iterator[LabUp]:
    """The lecture's two hosts, their servers listening and the client connected."""
    require_nmap()
    up = LabUp()
    try:
        wait_for(lambda: up.saw("Connected 10.0.2.16:"), timeout=20, what="the client's connect")
        yield up
    finally:
        up.end(signal.SIGINT)  # as Ctrl+C: the lab removes its hosts itself
        netns.sweep_stale()  # (only if it could not)


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return observatory("scan", *args, timeout=60)


def test_a_scan_from_client_explains_experiment_9(lab_up: LabUp) -> None:
    done = scan("10.0.2.15", "-p", "6000,7000", "--from", "client", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["from"] == "client" and data["target"] == "10.0.2.15"
    assert data["command"][0] == "nmap" and data["command"][-1] == "10.0.2.15"
    assert [h["lab_host"] for h in data["hosts"]] == ["server"]
    ports = {p["port"]: p for p in data["ports"]}
    assert ports[6000]["state"] == "open" and ports[7000]["state"] == "closed"
    assert ports[6000]["listener"]["host"] == "server"
    assert ports[6000]["listener"]["address"] == "0.0.0.0"
    assert "(every address of server)" in ports[6000]["explanation"]
    closed = ports[7000]
    assert closed["listener"]["address"] == "10.0.2.100" and closed["listener"]["host"] == "server"
    assert closed["listener"]["process"] == "tcp-server"
    assert "listens on 10.0.2.100:7000 only, not on 10.0.2.15" in closed["explanation"]
    assert "experiment 9" in closed["explanation"]

    # The address server2 is bound to answers: open.
    done = scan("10.0.2.100", "-p", "7000", "--from", "client")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Command: ip netns exec obs") and "-client nmap " in lines[0]
    assert lines[1] == "From: lab host client (nmap ran inside its network namespace)"
    row = next(line for line in lines if line.startswith("7000/tcp"))
    assert row.split()[1] == "open" and row.endswith(" on 10.0.2.100"), row
    assert "listens on 10.0.2.100:7000 (this address" in done.stdout, done.stdout


def test_refusals_in_words_while_the_lab_runs(lab_up: LabUp, as_nobody: AsNobody) -> None:
    for args, words in [
        (["8.8.8.8", "--from", "client"], "8.8.8.8 is not one of them"),
        (["10.0.2.99", "--from", "client"], "10.0.2.99 is not one of them"),
        (["10.0.2.0/24", "--from", "client"], "is a network"),
        (["10.0.2.15", "--from", "nosuch"], "no lab host named 'nosuch' is running"),
        # From this machine, a lab address: no route leads into the lab.
        (["10.0.2.15"], "scan it from a lab host instead (--from client"),
    ]:
        done = scan(*args, "-p", "6000")
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("observatory scan: ") and words in done.stderr, done.stderr
    assert "running lab hosts: client, server" in scan("10.0.2.15", "--from", "x").stderr
    done = as_nobody("scan", "10.0.2.15", "-p", "6000", "--from", "client")
    assert done.returncode == 2 and done.stdout == ""
    assert "scanning from lab host client needs root" in done.stderr, done.stderr


def test_from_a_host_that_does_not_run() -> None:
    done = scan("127.0.0.1", "-p", "6000", "--from", "nosuch")
    assert done.returncode == 2 and done.stdout == ""
    assert "no lab host named 'nosuch' is running" in done.stderr, done.stderr


# -- the Scan tab ------------------------------------------------------------------------
def _lab_source() -> SocketSource:
    """What the dashboard polls with lab hosts: this machine's sockets and each host's."""
    hosts = [
        netns.in_namespace(netns.find_namespaces(h)[0], functools.partial(DiagSource, host=h))
        for h in HOSTS
    ]
    return LabSource(ProcNetSource(), hosts)


def _lab_interfaces() -> list[Interface]:
    """This machine's interfaces, and each host's as host/eth0, as the dashboard lists them."""
    found = list_interfaces()
    for h in HOSTS:
        for iface in netns.interfaces_in(netns.find_namespaces(h)[0]):
            found.append(Interface(f"{h}/{iface.name}", iface.up, iface.mtu, None, iface.addresses))
    return found


def _rows(panel: ScanPanel) -> dict[str, list[str]]:
    table: DataTable[Text] = panel.query_one("#scan-results", DataTable)
    rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
    return {r[0]: r for r in rows}


def _why(panel: ScanPanel) -> str:
    return str(panel.query_one("#scan-why", Static).render())


async def test_the_scan_tab_scans_from_a_lab_host(lab_up: LabUp) -> None:
    app = ObservatoryApp(_lab_source(), None, interval=0.2, interfaces=_lab_interfaces)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("s")
        panel = app.screen.query_one(ScanPanel)
        row = panel.query_one("#scan-from-row")
        await until(pilot, lambda: row.display, what="the From choice shown")
        origin: Select[Any] = panel.query_one("#scan-from", Select)
        origin.value = "client"
        await pilot.pause()
        target: Select[Any] = panel.query_one("#scan-target", Select)
        await until(pilot, lambda: target.value == "10.0.2.15", what="server's address offered")
        await pilot.click("#scan-ports")
        await pilot.press(*"6000,7000", "enter")
        await until(pilot, lambda: len(_rows(panel)) == 2, what="the two ports")
        rows = _rows(panel)
        assert rows["6000/tcp"][1] == "open" and rows["7000/tcp"][1] == "closed", rows
        assert rows["7000/tcp"][3].startswith("server: ") and rows["7000/tcp"][3].endswith(
            "/tcp-server on 10.0.2.100"
        )
        command = str(panel.query_one("#scan-command", Static).render())
        assert command.startswith("$ ip netns exec obs") and "-client nmap " in command
        assert "host server: tcp-server" in _why(panel)  # the first row, 6000, open
        panel.query_one("#scan-results", DataTable).move_cursor(row=1)
        await pilot.pause()
        assert "listens on 10.0.2.100:7000 only, not on 10.0.2.15" in _why(panel), _why(panel)

        # From this machine, the lab's address is refused before nmap runs.
        origin.value = ""
        await pilot.pause()
        assert target.value == "127.0.0.1"  # the lab's addresses are no choice from here
        panel.query_one("#scan-target-text", Input).value = "10.0.2.15"
        await pilot.click("#scan-run")
        message = str(panel.query_one("#scan-message", Static).render())
        assert "no route into the lab network" in message, message
