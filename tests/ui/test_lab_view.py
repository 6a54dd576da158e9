"""The lab-only view and the side column as a teacher uses them (issue 11): real lab
processes, real sockets on loopback, the real app driven by Pilot."""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator

import pytest

from app.core.procs import ProcessManager
from app.core.sockets import DiagSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.keyed_table import KeyedTable
from tests.conftest import free_port, until


def rows(app: ObservatoryApp, table_id: str) -> list[str]:
    table = app.screen.query_one(f"#{table_id}", KeyedTable)
    return [" ".join(str(c) for c in cells) for cells in table._cells.values()]


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[ObservatoryApp, ProcessManager]]:
    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(DiagSource(), manager, interval=0.2)
    try:
        yield app, manager
    finally:
        manager.shutdown()


async def start_server_and_client(pilot, manager: ProcessManager, port: int) -> None:  # type: ignore[no-untyped-def]
    manager.launch_builtin("server1", "tcp-server", [str(port)])
    await until(pilot, lambda: any("Listening" in line for line in manager.output("server1")))
    manager.launch_builtin("client1", "tcp-client", ["127.0.0.1", "hello", str(port)])
    await until(pilot, lambda: any("Client:" in line for line in manager.output("server1")))


async def test_lab_only_shows_what_a_kill_left_and_only_the_lab_events(  # type: ignore[no-untyped-def]
        dashboard, sockets) -> None:
    app, manager = dashboard
    port = free_port()
    async with app.run_test(size=(120, 40)) as pilot:
        await start_server_and_client(pilot, manager, port)
        await until(pilot, lambda: any(f":{port}" in r for r in rows(app, "listen")))
        other = socket.socket()  # not the lab's: its events must not show in lab-only
        sockets.append(other)
        other.bind(("127.0.0.1", 0))
        other.listen()
        other_port = other.getsockname()[1]
        await until(pilot, lambda: f":{other_port}" in app.screen.timeline.render().plain)
        await pilot.press("a")
        await until(pilot, lambda: not any(f":{other_port}" in r for r in rows(app, "listen")))
        shown = app.screen.timeline.render().plain
        assert f":{other_port}" not in shown, shown
        assert f":{port}" in shown and "server1 started" in shown
        mini = str(app.screen.query_one("#events-mini").render())
        assert f":{other_port}" not in mini

        manager.kill("server1", signal.SIGKILL)
        # The killed server's rows stay a moment, marked, in the lab-only view too ...
        await until(pilot, lambda: any("GONE" in r and f":{port}" in r
                                       for r in rows(app, "listen")),
                    what="the killed server's LISTEN row marked GONE")
        # ... and the end it left to the kernel (FIN_WAIT2 or TIME_WAIT) on its port.
        await until(pilot, lambda: any(f"127.0.0.1:{port}" in r and "kernel" in r
                                       for r in rows(app, "other")),
                    what="the killed server's lingering end in Other states")
        assert "server1 (pid" in app.screen.timeline.render().plain
        await pilot.press("a")
        await until(pilot, lambda: f":{other_port}" in app.screen.timeline.render().plain)


def strip_text(app: ObservatoryApp) -> str:
    from app.ui.widgets.tabstrip import TabStrip

    strip = app.screen.query_one(TabStrip)
    return "\n".join("".join(s.text for s in strip.render_line(y))
                     for y in range(strip.size.height))


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 48)])
async def test_every_tab_is_in_view_and_has_a_key_and_a_palette_entry(size) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import TabbedContent, TabPane

    from app.ui.screens.main import MainScreen

    app = ObservatoryApp(DiagSource(), None, interval=0.5)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        panes = {p.id: app.screen.query_one(TabbedContent).get_tab(p.id).label_text
                 for p in app.screen.query(TabPane) if p.id}
        assert len(panes) == 9
        keys = {b.action: b.key for b in MainScreen.BINDINGS}  # type: ignore[union-attr]
        palette = {c.title for c in app.get_system_commands(app.screen)}
        for tab_id, title in panes.items():
            key = keys.get(f"tab('{tab_id}')")
            assert key, f"no key for the {title} tab"
            assert f"{title} ({key})" in palette
            await pilot.press(key)
            await pilot.pause()
            assert app.screen.query_one(TabbedContent).active == tab_id
            shown = strip_text(app)
            for other in panes.values():  # no tab scrolled or cut out of view
                assert other in shown, (title, shown)
        # A click on a label shows its tab.
        strip = app.screen.query_one("#tab-strip")
        line = strip_text(app).splitlines()
        y = next(i for i, text in enumerate(line) if "Events" in text)
        await pilot.click("#tab-strip", offset=(strip.styles.padding.left
                                                 + line[y].index("Events") + 1, y))
        await pilot.pause()
        assert app.screen.query_one(TabbedContent).active == "tab-events"
