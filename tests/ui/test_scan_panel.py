"""The Scan tab with the real app, real sockets and the real nmap, on loopback only.

Each test opens its own listeners on free ports of 127.0.0.1 and scans only
those (plus 127.0.0.2 for the lecture's experiment 9, still loopback).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Select, Static, TabbedContent

from app.core.scan import NMAP_MISSING, Scan, available_types
from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.screens.launch import LaunchDialog
from app.ui.widgets.keyed_table import KeyedTable
from app.ui.widgets.scan_panel import ScanPanel
from tests.conftest import REPO, listener, until
from tests.nmaputil import assert_loopback, closed_port, nmap_processes_of, require_nmap

SIZE = (120, 40)


def make_app() -> ObservatoryApp:
    return ObservatoryApp(ProcNetSource(), None, interval=0.2)


def rows(pilot: Pilot[None], table_id: str) -> list[list[str]]:
    # A scan table (DataTable) or a socket table (KeyedTable): both read the same way.
    table: DataTable[Text] | KeyedTable = pilot.app.screen.query_one(table_id)  # type: ignore[assignment]
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(pilot: Pilot[None], selector: str) -> str:
    widget = pilot.app.screen.query_one(selector, Static)
    return str(widget.render())


def panel_of(pilot: Pilot[None]) -> ScanPanel:
    return pilot.app.screen.query_one(ScanPanel)


async def open_scan_tab(pilot: Pilot[None]) -> ScanPanel:
    """Key s, then a click into Ports: a field is entered on purpose, never by opening the tab."""
    await pilot.pause(0.3)  # a first poll: the panel gets its snapshot
    await pilot.press("s")
    await pilot.pause()
    panel = panel_of(pilot)
    assert pilot.app.focused is pilot.app.screen.query_one("#listen"), pilot.app.focused
    await pilot.click("#scan-ports")
    assert pilot.app.focused is panel.query_one("#scan-ports", Input), pilot.app.focused
    return panel


def active_tab(pilot: Pilot[None]) -> str:
    return pilot.app.screen.query_one("#tabs", TabbedContent).active


async def test_the_scan_tab_leaves_the_dashboards_keys_alone() -> None:
    """Item 6 of issue 11: s, then l typed "l" into Ports; after Escape the panel's lists
    kept the letters and b no longer opened the Bytes tab."""
    async with make_app().run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        screen = pilot.app.screen
        listen = screen.query_one("#listen")
        ports = screen.query_one("#scan-ports", Input)
        await pilot.press("s")
        await pilot.pause()
        assert active_tab(pilot) == "tab-scan"
        assert pilot.app.focused is listen  # opening the tab moved no cursor into a field
        await pilot.press("l")  # Launch, not a letter in Ports
        await pilot.pause()
        assert isinstance(pilot.app.screen, LaunchDialog) and ports.value == ""
        await pilot.press("escape")
        await pilot.pause()
        assert pilot.app.screen is screen

        # Typing in a field, then Escape: the keys are the dashboard's again.
        await pilot.click("#scan-ports")
        await pilot.press("8", "0", "b")  # in a field, b is a letter like any other
        assert ports.value == "80b" and active_tab(pilot) == "tab-scan"
        await pilot.press("escape")
        assert pilot.app.focused is listen
        await pilot.press("b")
        await pilot.pause()
        assert active_tab(pilot) == "tab-bytes" and pilot.app.focused is listen

        # Entered on purpose from the keyboard: Tab reaches the panel, Enter goes into Ports.
        await pilot.press("s")
        await pilot.pause()
        screen.query_one(ScanPanel).focus()
        await pilot.press("enter")
        assert pilot.app.focused is ports
        assert "Esc to leave a field" in text_of(pilot, "#scan-keys")


async def test_no_list_of_the_scan_tab_keeps_the_tab_keys() -> None:
    """Each list, table and button of the panel lets s b m w e i through, and the tab
    that opens stays open: the focus must not fall back into the hidden panel, which
    switched the tabs straight back to Scan."""
    async with make_app().run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        screen = pilot.app.screen
        listen = screen.query_one("#listen")
        # One of each kind: a drop-down list, a table, a button.
        for widget_id, key, tab in (
            ("#scan-type", "m", "tab-machine"),
            ("#scan-history", "w", "tab-backlog"),
            ("#scan-run", "i", "tab-interfaces"),
        ):
            await pilot.press("s")
            screen.query_one(widget_id).focus()
            await pilot.pause()
            assert pilot.app.focused is screen.query_one(widget_id)
            await pilot.press(key)
            await pilot.pause()
            assert active_tab(pilot) == tab, (widget_id, key)
            assert pilot.app.focused is listen, (widget_id, pilot.app.focused)


async def test_an_open_drop_down_list_is_left_with_one_key() -> None:
    """An open list does not search by letter: b opens the Bytes tab; and one Escape
    closes the list and gives the keys back (its own Escape only closed it)."""
    async with make_app().run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        screen = pilot.app.screen
        listen = screen.query_one("#listen")
        target = screen.query_one("#scan-target", Select)
        for key in ("b", "escape"):
            await pilot.press("s")
            await pilot.pause()
            target.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert target.expanded
            await pilot.press(key)
            await pilot.pause()
            assert not target.expanded and pilot.app.focused is listen, key
            assert active_tab(pilot) == ("tab-bytes" if key == "b" else "tab-scan")


async def scan(pilot: Pilot[None], ports: str, target: str = "") -> None:
    """Type the fields (target empty: the chosen 127.0.0.1) and press Enter in Ports."""
    if target:
        assert_loopback(target)
    panel = panel_of(pilot)
    panel.query_one("#scan-target-text", Input).value = target
    box = panel.query_one("#scan-ports", Input)
    box.value = ""
    box.focus()
    await pilot.press(*ports, "enter")


def row_for(pilot: Pilot[None], port: int) -> list[str] | None:
    return next((r for r in rows(pilot, "#scan-results") if r[0] == f"{port}/tcp"), None)


async def test_open_then_closed_and_compare(sockets: list[socket.socket]) -> None:
    """Experiment 4: open while it listens, closed once it is gone, and the compare says so."""
    require_nmap()
    server = listener(sockets)
    port = server.getsockname()[1]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_scan_tab(pilot)
        await pilot.press(*str(port), "enter")  # typed into Ports, which has the focus
        await until(
            pilot,
            lambda: (r := row_for(pilot, port)) and r[1] == "open",
            what="the port shown open",
        )
        row = row_for(pilot, port)
        assert row is not None
        # nmap's table: PORT, STATE, SERVICE; then LOCAL from this machine's LISTEN table.
        assert row[3].startswith(f"{os.getpid()}/") and row[3].endswith(" on 127.0.0.1"), row
        assert f"-p {port} -- 127.0.0.1" in text_of(pilot, "#scan-command")
        assert text_of(pilot, "#scan-command").startswith("$ nmap ")
        why = text_of(pilot, "#scan-why")
        assert f"pid {os.getpid()}" in why and "a real connection" in why, why
        assert "done in" in str(panel.query_one("#scan-elapsed", Label).render())

        server.close()  # like kill -9 of the lecture's server
        await scan(pilot, str(port))
        await until(
            pilot,
            lambda: (r := row_for(pilot, port)) and r[1] == "closed",
            what="the port shown closed",
        )
        assert "nothing listens" in text_of(pilot, "#scan-why")
        history = rows(pilot, "#scan-history")
        assert [h[4] for h in history] == ["1 closed", "1 open"], history  # newest first
        # The compare view opened by itself: the previous scan of this target against this one.
        compared = rows(pilot, "#scan-compare")
        assert compared == [[f"{port}/tcp", "open", "closed", "≠ changed"]], compared
        assert "1 changed" in text_of(pilot, "#scan-compare-title")

        # The same compare, chosen by hand: Enter on both history rows marks them.
        panel.query_one("#scan-compare", DataTable).clear()
        table = panel.query_one("#scan-history", DataTable)
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        table.move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause()
        assert rows(pilot, "#scan-compare") == compared
        assert [h[0] for h in rows(pilot, "#scan-history")] == ["●", "●"]


async def test_bound_to_127_0_0_1_looks_closed_on_127_0_0_2(sockets: list[socket.socket]) -> None:
    """Experiment 9: the join explains why a listening port reads closed."""
    require_nmap()
    server = listener(sockets, "127.0.0.1")
    port = server.getsockname()[1]
    async with make_app().run_test(size=SIZE) as pilot:
        await open_scan_tab(pilot)
        await scan(pilot, str(port), target="127.0.0.2")
        await until(
            pilot,
            lambda: (r := row_for(pilot, port)) and r[1] == "closed",
            what="the port shown closed on 127.0.0.2",
        )
        row = row_for(pilot, port)
        assert row is not None and row[3] == f"{os.getpid()}/{row[3].split('/', 1)[1]}"
        why = text_of(pilot, "#scan-why")
        assert f"listens on 127.0.0.1:{port} only; you scanned 127.0.0.2" in why, why


async def test_refusals_in_words_before_nmap_runs(tmp_path: Path) -> None:
    """python-nmap's injection (`127.0.0.1 -oN FILE`) is refused; nmap never starts."""
    require_nmap()
    written = tmp_path / "x"
    async with make_app().run_test(size=SIZE) as pilot:
        panel = await open_scan_tab(pilot)
        for target, ports, words in (
            (f"127.0.0.1 -oN {written}", "", "one target at a time, without spaces"),
            (f"-oN {written}", "", "cannot start with '-'"),
            ("127.0.0.1", "70000", "70000"),
            ("10.0.0.0/8", "", "scan at most 256"),
        ):
            panel.query_one("#scan-target-text", Input).value = target
            panel.query_one("#scan-ports", Input).value = ports
            panel.query_one("#scan-ports", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            message = panel.query_one("#scan-message", Static)
            assert message.display and words in str(message.render()), (target, message.render())
            assert panel.scan is None
        assert not written.exists()
        assert nmap_processes_of() == []
        assert rows(pilot, "#scan-history") == []


async def test_nmap_missing_shows_the_install_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sockets: list[socket.socket]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nmap on PATH
    server = listener(sockets)
    port = server.getsockname()[1]
    async with make_app().run_test(size=SIZE) as pilot:
        panel = await open_scan_tab(pilot)
        line = panel.query_one("#scan-nmap-missing", Static)
        assert line.display and str(line.render()) == NMAP_MISSING
        assert "sudo apt install nmap" in NMAP_MISSING
        await pilot.press("1", "enter")
        await pilot.pause()
        assert panel.scan is None and rows(pilot, "#scan-results") == []
        # The rest of the dashboard is unaffected: the LISTEN table still shows our server.
        await until(
            pilot,
            lambda: any(f":{port}" in cell for r in rows(pilot, "#listen") for cell in r),
            what="the listener in the LISTEN table",
        )
        # The default ports (empty field) are what listens now plus the lecture's.
        placeholder = panel.query_one("#scan-ports", Input).placeholder
        assert placeholder.startswith("default: ") and str(port) in placeholder, placeholder
        assert all(str(p) in placeholder for p in (6000, 16000, 45321)), placeholder


def silent_listener(sockets: list[socket.socket]) -> int:
    """A server that never accepts: version detection waits for it for many seconds."""
    port: int = listener(sockets).getsockname()[1]
    return port


async def start_slow_scan(pilot: Pilot[None], port: int) -> int:
    panel = await open_scan_tab(pilot)
    panel.query_one("#scan-type", Select).value = "version"
    await scan(pilot, str(port))
    await until(
        pilot,
        lambda: panel.scan is not None and panel.scan.pid is not None,
        timeout=10,
        what="nmap started",
    )
    assert panel.scan is not None and panel.scan.pid is not None
    pid = panel.scan.pid
    assert [p.pid for p in nmap_processes_of()] == [pid]
    return pid


async def test_cancel_stops_nmap(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = silent_listener(sockets)
    async with make_app().run_test(size=SIZE) as pilot:
        panel = panel_of(pilot)
        pid = await start_slow_scan(pilot, port)
        assert panel.query_one("#scan-run").disabled
        await pilot.click("#scan-cancel")
        await until(pilot, lambda: panel.scan is None, timeout=5, what="the scan ended")
        assert "cancelled" in str(panel.query_one("#scan-elapsed", Label).render())
        assert nmap_processes_of(pid) == []
        assert not panel.query_one("#scan-run").disabled
        assert rows(pilot, "#scan-history") == []  # a cancelled scan has nothing to compare


async def test_quitting_mid_scan_leaves_no_nmap(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = silent_listener(sockets)
    async with make_app().run_test(size=SIZE) as pilot:
        pid = await start_slow_scan(pilot, port)
        started = time.monotonic()
    assert time.monotonic() - started < 3.0
    assert nmap_processes_of(pid) == []


class _PanelApp(App[None]):
    CSS_PATH = REPO / "styles" / "scan.tcss"  # the panel's CSS, which the app loads

    def __init__(self, panel: ScanPanel) -> None:
        super().__init__()
        self.panel = panel

    def compose(self) -> ComposeResult:
        yield self.panel


async def test_types_that_need_root_say_so() -> None:
    """As a normal user, SYN and UDP are listed with their reason and refuse to run."""
    panel = ScanPanel(types=available_types(euid=1000))
    async with _PanelApp(panel).run_test(size=(60, 40)) as pilot:
        select = panel.query_one("#scan-type", Select)
        labels = [str(prompt) for prompt, _ in select._options]
        assert "TCP SYN (-sS) — needs root" in labels and "TCP connect (-sT)" in labels
        select.value = "syn"
        await pilot.pause()
        message = panel.query_one("#scan-message", Static)
        assert message.display and "SYN scans need root" in str(message.render())
        panel.query_one("#scan-ports", Input).value = str(closed_port())
        panel.run_scan()
        await pilot.pause()
        assert panel.scan is None and "run the dashboard as root" in str(message.render())


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (RuntimeError("nmap's output ended early"), "nmap's output ended early"),
        (OSError(), "OSError"),
    ],
)
async def test_a_scan_that_raises_is_told_in_words(
    monkeypatch: pytest.MonkeyPatch, error: Exception, words: str
) -> None:
    """The scan's worker thread fails: the message box says why, the form is ready again,
    and nothing is kept (no nmap needed: the scan itself is replaced)."""

    def fail(scan: Scan) -> None:
        raise error

    monkeypatch.setattr("app.ui.widgets.scan.form.nmap_missing_reason", lambda: None)
    monkeypatch.setattr(Scan, "preflight", lambda scan: "/usr/bin/nmap")
    monkeypatch.setattr(Scan, "run", fail)
    panel = ScanPanel(types=available_types(euid=1000))
    async with _PanelApp(panel).run_test(size=(60, 40)) as pilot:
        panel.query_one("#scan-ports", Input).value = str(closed_port())
        panel.run_scan()
        assert panel.scan is not None and panel.query_one("#scan-run").disabled
        await until(pilot, lambda: panel.scan is None, timeout=5, what="the scan ended")
        message = panel.query_one("#scan-message", Static)
        assert message.display and str(message.render()) == words
        assert str(panel.query_one("#scan-elapsed", Label).render()) == "failed"
        assert not panel.query_one("#scan-run").disabled
        assert panel.query_one("#scan-cancel").disabled
        assert rows(pilot, "#scan-history") == [] and rows(pilot, "#scan-results") == []
        assert pilot.app.is_running  # the worker's exit_on_error=False: no traceback, no exit


async def test_port_of_the_highlighted_socket_row(sockets: list[socket.socket]) -> None:
    """A LISTEN row offers its own port; the client end of a connection offers its peer's."""
    server = listener(sockets)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    sockets.append(client)
    client_port = client.getsockname()[1]
    async with make_app().run_test(size=SIZE) as pilot:
        panel = await open_scan_tab(pilot)
        button = panel.query_one("#scan-use-selected")
        for table_id, local in (
            ("#listen", f"127.0.0.1:{port}"),
            ("#established", f"127.0.0.1:{client_port}"),
        ):

            def row_index(t: str = table_id, lo: str = local) -> int | None:
                # The Local column (the third): another process may hold a connection
                # whose peer is our client's port.
                return next((i for i, r in enumerate(rows(pilot, t)) if r[2] == lo), None)

            await until(pilot, lambda: row_index() is not None, what=f"{local} in {table_id}")
            table = pilot.app.screen.query_one(table_id, KeyedTable)
            index = row_index()
            assert index is not None
            table.focus()
            table.move_cursor(row=index)
            await pilot.pause()
            assert str(button.render()).strip() == f"Port {port}", button.render()
            panel.query_one("#scan-ports", Input).value = ""
            await pilot.click("#scan-use-selected")
            assert panel.query_one("#scan-ports", Input).value == str(port)


async def test_the_target_list_offers_the_interfaces_the_poller_read() -> None:
    """The screen hands each poll's interfaces to the Scan tab (InstrumentPanel's
    update_interfaces): its targets are this machine's addresses, not loopback alone."""
    from textual.widgets import Select

    from app.ui.app import ObservatoryApp
    from tests.ui.fakes import PROCESSES, FakeManager, FakeSource, lecture_results

    results = lecture_results()
    app = ObservatoryApp(
        FakeSource([r.snapshot for r in results]), FakeManager(PROCESSES), poll=False
    )
    async with app.run_test(size=(120, 40)) as pilot:
        app.deliver(results[0])  # it carries the interfaces: lo and dummy0 192.0.2.1
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        select = app.screen.query_one("#scan-target", Select)
        values = [value for _label, value in select._options]
        assert "192.0.2.1" in values and values[0] == "127.0.0.1", values
