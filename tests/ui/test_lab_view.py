"""The lab-only view and the side column as a teacher uses them (issue 11): real lab
processes, real sockets on loopback, the real app driven by Pilot."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

import pytest

from app.core.model import Socket
from app.core.procs import ProcessManager
from app.core.sockets import DiagSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.keyed_table import KeyedTable
from tests.conftest import free_port, until
from tests.ui.conftest import palette_titles, rows


async def start_server_and_client(pilot, manager: ProcessManager, port: int) -> None:  # type: ignore[no-untyped-def]
    manager.launch_builtin("server1", "tcp-server", [str(port)])
    await until(pilot, lambda: any("Listening" in line for line in manager.output("server1")))
    manager.launch_builtin("client1", "tcp-client", ["127.0.0.1", "hello", str(port)])
    await until(pilot, lambda: any("Client:" in line for line in manager.output("server1")))


async def test_lab_only_shows_what_a_kill_left_and_only_the_lab_events(  # type: ignore[no-untyped-def]
    dashboard, sockets
) -> None:
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
        await until(
            pilot,
            lambda: any("GONE" in r and f":{port}" in r for r in rows(app, "listen")),
            what="the killed server's LISTEN row marked GONE",
        )
        # ... and the end it left to the kernel (FIN_WAIT2 or TIME_WAIT) on its port.
        await until(
            pilot,
            lambda: any(f"127.0.0.1:{port}" in r and "kernel" in r for r in rows(app, "other")),
            what="the killed server's lingering end in Other states",
        )
        assert "server1 (pid" in app.screen.timeline.render().plain
        await pilot.press("a")
        await until(pilot, lambda: f":{other_port}" in app.screen.timeline.render().plain)


def visible_text(table: KeyedTable) -> list[str]:
    """The table's lines as the terminal shows them (what fits in its width)."""
    return ["".join(seg.text for seg in table.render_line(y)) for y in range(table.size.height)]


async def test_lab_table_keeps_cpu_in_view_and_ended_rows_below(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, manager = dashboard
    port = free_port()
    async with app.run_test(size=(120, 40)) as pilot:
        await start_server_and_client(pilot, manager, port)
        manager.stop("client1")  # stopped by SIGTERM (exit 143): the long state
        await until(pilot, lambda: any("SIGTERM" in r for r in rows(app, "processes")))
        table = app.screen.query_one("#processes", KeyedTable)
        await pilot.pause()
        lines = visible_text(table)
        header = next(line for line in lines if "Name" in line)
        assert "CPU%" in header and "State" in header, lines
        assert table.selected_key() == "server1"
        # the running server first, the ended client under it, its state short
        body = [line for line in lines if "server1" in line or "client1" in line]
        assert "server1" in body[0] and "client1" in body[1], lines
        assert "SIGTERM" in body[1] and "exit 143" not in body[1]
        # the whole state is on the output's title when the ended row is chosen
        table.focus()
        table.move_cursor(row=table.get_row_index("client1"))
        await until(
            pilot,
            lambda: (
                "stopped by SIGTERM (exit 143)" in str(app.screen.query_one("#output").border_title)
            ),
        )


async def test_a_launched_command_shows_its_output_at_once(dashboard) -> None:  # type: ignore[no-untyped-def]
    from app.ui.screens.launch import COMMAND, LaunchDialog

    app, manager = dashboard
    port = free_port()
    async with app.run_test(size=(120, 40)) as pilot:
        await start_server_and_client(pilot, manager, port)
        await until(pilot, lambda: app.screen.selected_process == "server1")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#program").value = COMMAND
        await pilot.pause()
        command = app.screen.query_one("#command")
        command.value = "sh -c 'for i in 1 2 3 4 5; do echo line$i; done; sleep 30'"
        command.focus()
        await pilot.pause()
        await pilot.press("enter")
        # A busy UI loop (a big poll): the lines are stored before it hears of the start.
        time.sleep(1.5)
        log = app.screen.query_one("#output")

        def lines() -> list[str]:
            return ["".join(s.text for s in line).strip() for line in log.lines]

        await until(
            pilot,
            lambda: "line5" in lines(),
            what="the command's output in the output box without selecting its row",
        )
        await pilot.pause(0.3)
        assert [t for t in lines() if t.startswith("line")] == [f"line{i}" for i in range(1, 6)]
        assert (
            app.screen.query_one("#processes", KeyedTable).selected_key()
            == app.screen.selected_process
        )


def strip_text(app: ObservatoryApp) -> str:
    from app.ui.widgets.tabstrip import TabStrip

    strip = app.screen.query_one(TabStrip)
    return "\n".join(
        "".join(s.text for s in strip.render_line(y)) for y in range(strip.size.height)
    )


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 48)])
async def test_every_tab_is_in_view_and_has_a_key_and_a_palette_entry(size) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import TabbedContent, TabPane

    from app.ui.screens.main import MainScreen

    app = ObservatoryApp(DiagSource(), None, interval=0.5)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        panes = {
            p.id: app.screen.query_one(TabbedContent).get_tab(p.id).label_text
            for p in app.screen.query(TabPane)
            if p.id
        }
        assert len(panes) == 9
        side, tables = app.screen.query_one("#side"), app.screen.query_one("#tables")
        if size[0] >= 150:  # a wide projector: the side column's panels wrap less
            assert side.size.width > 46 and tables.size.width >= 80
        keys = {b.action: b.key for b in MainScreen.BINDINGS}  # type: ignore[union-attr]
        palette = await palette_titles(app)
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
        await pilot.click(
            "#tab-strip", offset=(strip.styles.padding.left + line[y].index("Events") + 1, y)
        )
        await pilot.pause()
        assert app.screen.query_one(TabbedContent).active == "tab-events"


def _snapshot_socket(predicate: Callable[[Socket], bool]) -> Socket:
    from tests.conftest import wait_for

    source = DiagSource()
    found: Socket = wait_for(
        lambda: next((s for s in source.poll().sockets if predicate(s)), None),
        5,
        "the socket in a snapshot",
    )
    return found


def test_k_on_a_socket_no_process_holds_says_why_once(sockets) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from app.ui.words import kill_refusal
    from tests.conftest import connect, listener

    server = listener(sockets)
    port = server.getsockname()[1]
    client = connect(sockets, server)
    accepted, _ = server.accept()
    sockets.append(accepted)
    mine = _snapshot_socket(lambda s: s.local_port == port and s.state == "ESTABLISHED")
    assert kill_refusal(mine) is None  # our own process: k may kill it
    accepted.close()  # this end closes first, the client does not: FIN_WAIT2, no process
    fin = _snapshot_socket(lambda s: s.local_port == port and s.state == "FIN_WAIT2")
    words = kill_refusal(fin)
    assert words and "FIN_WAIT2" in words and "backlog" not in words, words
    assert "kill the peer" not in words and "60 s" in words
    client.close()  # now the closed-first end waits out TIME_WAIT
    tw = _snapshot_socket(lambda s: s.local_port == port and s.state == "TIME_WAIT")
    assert "TIME_WAIT" in (kill_refusal(tw) or "")
    hidden = kill_refusal(replace(mine, owner="hidden", pid=None))
    assert (
        hidden
        and hidden.lower().count("may not see") <= 1
        and hidden.lower().count("cannot see") <= 1
    ), hidden


async def test_ctrl_s_saves_a_screenshot_while_a_dialog_is_open(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.ui.screens.dialogs import ConfirmDialog

    monkeypatch.chdir(tmp_path)
    app = ObservatoryApp(DiagSource(), None, interval=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.push_screen(ConfirmDialog("Quit the observatory?", "2 lab processes still run."))
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: list(tmp_path.glob("observatory-*.svg")))
        svg = next(tmp_path.glob("observatory-*.svg")).read_text().replace("&#160;", " ")
        assert "Quit the observatory?" in svg


async def test_side_panels_follow_the_cursor_in_lab_only_mode(dashboard, sockets) -> None:  # type: ignore[no-untyped-def]
    from app.ui.widgets.backlog import BacklogPanel
    from app.ui.widgets.bytes_panel import BytesPanel
    from app.ui.widgets.tcp_machine import StateMachinePanel

    app, manager = dashboard
    ports = [free_port(), free_port()]
    other = socket.socket()  # the machine's own listener (sshd, cups): not the lab's
    sockets.append(other)
    other.bind(("127.0.0.1", 0))
    other.listen()
    other_port = other.getsockname()[1]
    async with app.run_test(size=(120, 40)) as pilot:
        for n, port in enumerate(ports, 1):
            manager.launch_builtin(f"server{n}", "tcp-server", [str(port)])
        table = app.screen.query_one("#listen", KeyedTable)
        await until(
            pilot,
            lambda: all(
                any(f":{p}" in r for r in rows(app, "listen")) for p in [*ports, other_port]
            ),
        )
        backlog = app.screen.query_one(BacklogPanel)
        machine = app.screen.query_one(StateMachinePanel)
        bytes_panel = app.screen.query_one(BytesPanel)

        def shown() -> set[int | None]:
            return {
                p.local_port if p else None
                for p in (backlog.selected, machine.socket, bytes_panel.socket)
            }

        def cursor_port() -> int:
            key = table.selected_key()
            return app.screen.marked[key].sock.local_port if key else -1

        table.focus()
        table.move_cursor(
            row=next(i for i, r in enumerate(rows(app, "listen")) if f":{other_port}" in r)
        )
        await pilot.press("w")
        await until(pilot, lambda: shown() == {other_port}, what="the panels on the chosen row")
        await pilot.press("a")  # the chosen row is hidden now: the panels follow the cursor
        await until(pilot, lambda: not any(f":{other_port}" in r for r in rows(app, "listen")))
        await until(
            pilot,
            lambda: shown() == {cursor_port()} and cursor_port() in ports,
            what="the panels on the cursor's lab row, not the hidden one",
        )
        last = table.cursor_row == table.row_count - 1
        for key in ("up", "down") if last else ("down", "up"):  # Up/Down moves them too
            before = cursor_port()
            await pilot.press(key)
            await until(pilot, lambda: cursor_port() != before)  # noqa: B023
            await until(pilot, lambda: shown() == {cursor_port()}, what=f"the panels after {key}")


async def test_a_panel_follows_the_cursor_once_it_is_moved_after_its_row_left(sockets) -> None:  # type: ignore[no-untyped-def]
    from app.ui.screens.main import MainScreen
    from app.ui.widgets.tcp_machine import StateMachinePanel
    from tests.conftest import connect, listener

    server = listener(sockets)
    port = server.getsockname()[1]
    first = connect(sockets, server)
    for _ in range(2):
        connect(sockets, server)
    app = ObservatoryApp(DiagSource(), None, interval=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#established", KeyedTable)
        await until(
            pilot, lambda: len([r for r in rows(app, "established") if f":{port}" in r]) == 6
        )
        mine = f"127.0.0.1:{first.getsockname()[1]}"
        table.focus()
        table.move_cursor(
            row=next(
                i
                for i, r in enumerate(rows(app, "established"))
                if r.split()[1:3] == [mine, f"127.0.0.1:{port}"]
            )
        )
        await pilot.press("m")
        machine = app.screen.query_one(StateMachinePanel)
        await until(pilot, lambda: machine.socket is not None and machine.socket.local == mine)
        first.close()  # FIN_WAIT2 now: its row leaves ESTABLISHED, the cursor is pushed
        await until(
            pilot, lambda: not any(mine in r.split()[1:2] for r in rows(app, "established"))
        )
        await pilot.pause(0.5)
        assert machine.socket is not None and machine.socket.local == mine  # still followed

        def cursor_local() -> str:
            key = table.selected_key()
            screen = app.screen
            assert isinstance(screen, MainScreen)
            return screen.marked[key].sock.local if key else ""

        for key in ("down", "up") if table.cursor_row == 0 else ("up", "down"):
            before = cursor_local()
            await pilot.press(key)
            await until(pilot, lambda: cursor_local() != before)  # noqa: B023
            await until(
                pilot,
                lambda: machine.socket is not None and machine.socket.local == cursor_local(),
                what=f"the panel on the row {key} chose",
            )


async def test_the_launch_dialog_warns_of_a_held_port(dashboard, sockets) -> None:  # type: ignore[no-untyped-def]
    from app.ui.screens.launch import LaunchDialog

    app, _ = dashboard
    other = socket.socket()  # another program listens on the port the student picks
    sockets.append(other)
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: any(f":{port}" in r for r in rows(app, "listen")))
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#port").value = str(port)
        warning = app.screen.query_one("#launch-warning")
        await until(pilot, lambda: warning.display and str(port) in str(warning.render()))
        assert "LISTEN" in str(warning.render()) or "listen" in str(warning.render())


async def test_a_failed_launch_says_why_in_the_event_and_a_scenario_starts_around_a_manual_launch(  # type: ignore[no-untyped-def]
    dashboard, sockets, tmp_path
) -> None:
    app, manager = dashboard
    other = socket.socket()
    sockets.append(other)
    other.bind(("127.0.0.1", 0))
    other.listen()
    taken = other.getsockname()[1]
    free = free_port()
    scenario = tmp_path / "lab.toml"
    scenario.write_text(
        f'[[process]]\nname = "server1"\nprogram = "tcp-server"\nargs = ["{free}"]\n\n'
        f'[[process]]\nname = "server2"\nprogram = "tcp-server"\nargs = ["{taken}"]\n'
    )
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        manager.launch_builtin("server1", "tcp-server", [str(free)])  # by hand, first
        await until(
            pilot, lambda: any(p.name == "server1" and p.running for p in app.screen.processes)
        )
        app.load_scenario(str(scenario))
        # server1 is kept (the same program and arguments); server2 starts, and fails
        await until(
            pilot,
            lambda: any("server1 is already running" in n.message for n in app._notifications),
        )
        await until(pilot, lambda: "server2 (pid" in app.screen.timeline.render().plain)
        events = app.screen.timeline.render().plain
        line = next(t for t in events.splitlines() if "server2 (pid" in t)
        assert "exited 1" in line and "already in use" in line, line
        assert manager.get("server1").running


async def test_a_udp_client_launched_from_the_dialog_stays_to_be_seen(dashboard) -> None:  # type: ignore[no-untyped-def]
    from app.ui.screens.launch import LaunchDialog

    app, manager = dashboard
    port = free_port(socket.SOCK_DGRAM)
    async with app.run_test(size=(120, 40)) as pilot:
        manager.launch_builtin("udpserver1", "udp-server", [str(port)])
        await until(pilot, lambda: any(f":{port}" in r for r in rows(app, "udp")))
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#program").value = "udp-client"
        await pilot.pause()
        app.screen.query_one("#port").value = str(port)
        await pilot.pause()
        preview = str(app.screen.query_one("#launch-preview").render())
        assert "--hold" in preview, preview
        app.screen.query_one("#port").focus()
        await pilot.press("enter")
        await until(
            pilot,
            lambda: any(p.name.startswith("udpclient") and p.running for p in app.screen.processes),
        )
        client = next(p for p in app.screen.processes if p.name.startswith("udpclient"))
        await pilot.press("u")
        await until(
            pilot,
            lambda: any(f"{client.pid}/udp-client" in r for r in rows(app, "udp")),
            what="the udp-client's socket in the UDP tab",
        )


async def test_the_footer_enables_kill_all_as_soon_as_a_process_runs(dashboard) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets._footer import FooterKey

    app, manager = dashboard

    def kill_all_enabled() -> bool:
        keys = [k for k in app.screen.query(FooterKey) if k.key == "X"]
        return bool(keys) and not keys[0].has_class("-disabled")

    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert not kill_all_enabled()  # nothing runs: greyed
        manager.launch_command("sleeper", ["sleep", "30"])
        # No key pressed, focus unmoved: the footer follows what the keys can do now.
        await until(pilot, kill_all_enabled, timeout=10, what="Kill all enabled in the footer")
