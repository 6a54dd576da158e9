"""Pilot tests of the dashboard's flows with the real parts: sockets, processes, manager."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import psutil
from textual.binding import Binding

from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.screens.dialogs import ConfirmDialog
from app.ui.screens.launch import LaunchDialog
from app.ui.widgets.keyed_table import KeyedTable
from tests.conftest import free_port, listener_process, until, wait_for
from tests.ui.conftest import palette_titles, rows


async def launch_server(pilot, port: int) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("l")
    await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
    dialog = pilot.app.screen
    dialog.query_one("#port").value = str(port)
    await pilot.pause()
    await pilot.click("#launch")


async def test_launch_server_then_client_then_kill(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, manager = dashboard
    port = free_port()
    async with app.run_test(size=(120, 40)) as pilot:
        await launch_server(pilot, port)
        await until(
            pilot,
            lambda: any(
                f"127.0.0.1:{port}" in r and "tcp-server" in r for r in rows(app, "listen")
            ),
        )
        server = manager.get("server1")
        assert any(f"{server.pid}/tcp-server" in r for r in rows(app, "listen"))

        # A client: the ESTABLISHED pair appears, both ends, next to each other.
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#program").value = "tcp-client"
        await pilot.pause()
        app.screen.query_one("#port").value = str(port)
        await pilot.pause()
        await pilot.click("#launch")
        await until(
            pilot, lambda: len([r for r in rows(app, "established") if f":{port}" in r]) == 2
        )
        client = manager.get("client1")
        est = [r for r in rows(app, "established") if f":{port}" in r]
        assert any(f"{client.pid}/tcp-client" in r for r in est)
        assert any(f"{server.pid}/tcp-server" in r for r in est)

        # Kill the server from the process table: its rows go and the event shows.
        table = app.screen.query_one("#processes", KeyedTable)
        table.focus()
        table.move_cursor(row=table.get_row_index("server1"))
        await pilot.pause()
        await pilot.press("k")
        await until(
            pilot,
            lambda: (
                not any(f"127.0.0.1:{port}" in r and "GONE" not in r for r in rows(app, "listen"))
            ),
        )
        await until(pilot, lambda: "server1 (pid" in app.screen.timeline.render().plain)
        events = app.screen.timeline.render().plain
        assert f"server1 (pid {server.pid})" in events and "by SIGTERM" in events
        assert f"LISTEN closed tcp 127.0.0.1:{port}" in events
        assert "SIGTERM" in " ".join(rows(app, "processes"))  # the Lab table shortens the state
        await until(
            pilot,
            lambda: (
                not psutil.pid_exists(server.pid)
                or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE
            ),
        )


async def test_filter_and_freeze(dashboard, sockets) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    a = socket.socket()
    sockets.append(a)
    a.bind(("127.0.0.1", 0))
    a.listen()
    port_a = a.getsockname()[1]
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: any(f":{port_a}" in r for r in rows(app, "listen")))
        await pilot.press("slash")
        await pilot.press(*str(port_a))
        await until(
            pilot,
            lambda: rows(app, "listen") and all(f"{port_a}" in r for r in rows(app, "listen")),
        )
        await pilot.press("enter")
        app.screen.query_one("#filter").value = ""
        await pilot.pause()

        await pilot.press("space")  # freeze: a new listener must not appear
        assert "FROZEN" in str(app.screen.query_one("#status").render())
        b = socket.socket()
        sockets.append(b)
        b.bind(("127.0.0.1", 0))
        b.listen()
        port_b = b.getsockname()[1]
        await asyncio.sleep(0.8)
        await pilot.pause()
        assert not any(f":{port_b}" in r for r in rows(app, "listen"))
        await pilot.press("space")
        await until(pilot, lambda: any(f":{port_b}" in r for r in rows(app, "listen")))


async def test_killing_a_foreign_owner_asks_first(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    holder, port = listener_process()
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            key = f"tcp 127.0.0.1:{port} *"
            table = app.screen.query_one("#listen", KeyedTable)
            await until(pilot, lambda: key in table._cells)
            table.focus()
            table.move_cursor(row=table.get_row_index(key))
            await pilot.pause()
            await pilot.press("k")
            await until(
                pilot,
                lambda: isinstance(app.screen, ConfirmDialog) and app.screen.query("#dialog-body"),
            )
            body = str(app.screen.query_one("#dialog-body").render())
            assert f"pid {holder.pid}" in body
            assert os.geteuid() != 0 or "root" in body
            assert "was not started by the observatory" in body
            await pilot.press("escape")  # no: nothing is sent
            await pilot.pause(0.3)
            assert holder.poll() is None
            await pilot.press("k")
            await until(
                pilot, lambda: isinstance(app.screen, ConfirmDialog) and app.screen.query("#yes")
            )
            await pilot.click("#yes")
            await until(pilot, lambda: holder.poll() is not None)
            assert holder.returncode == -signal.SIGTERM
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


async def test_unknown_theme_is_refused_in_words() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "--theme", "nosuch"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "nosuch" in out.stderr and "projector" in out.stderr


async def test_session_record_and_screenshot(tmp_path, sockets) -> None:  # type: ignore[no-untyped-def]
    from app.core.record import SessionRecorder, read_session

    recorder = SessionRecorder.start(tmp_path)
    app = ObservatoryApp(ProcNetSource(), None, interval=0.2, recorder=recorder)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)  # a first poll, so the listener below is a change
        s = socket.socket()
        sockets.append(s)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        await until(pilot, lambda: any(f":{port}" in r for r in rows(app, "listen")))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: list(tmp_path.glob("observatory-*.svg")))
    recorder.close()
    entries = read_session(recorder.path).entries
    assert any(
        e.get("kind") == "listener-opened" and f"127.0.0.1:{port}" in str(e.get("text"))
        for e in entries
    )
    svg = next(tmp_path.glob("observatory-*.svg")).read_text()
    assert "LISTEN" in svg


async def test_lab_only_keeps_the_lab_backlog_and_hides_the_rest(dashboard, sockets) -> None:  # type: ignore[no-untyped-def]
    app, manager = dashboard
    port = free_port()
    other = socket.socket()  # not the lab's: hidden by lab-only
    sockets.append(other)
    other.bind(("127.0.0.1", 0))
    other.listen()
    other_port = other.getsockname()[1]
    manager.launch_builtin("server1", "tcp-server", [str(port)])
    # Clients connect once it listens (else: refused), the second once the first is served.
    wait_for(lambda: any("Listening" in line for line in manager.output("server1")), 10)
    manager.launch_builtin("client1", "tcp-client", ["127.0.0.1", "hello", str(port)])
    wait_for(lambda: any("Client:" in line for line in manager.output("server1")), 10)
    manager.launch_builtin("client2", "tcp-client", ["127.0.0.1", "hello", str(port)])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: any("kernel: backlog" in r for r in rows(app, "established")))
        await pilot.press("a")
        await until(pilot, lambda: not any(f":{other_port}" in r for r in rows(app, "listen")))
        est = rows(app, "established")
        assert any("kernel: backlog" in r and f"127.0.0.1:{port}" in r for r in est)
        assert len([r for r in est if f":{port}" in r]) == 4  # both ends of both clients
        await pilot.press("a")
        await until(pilot, lambda: any(f":{other_port}" in r for r in rows(app, "listen")))


async def test_every_key_is_in_the_command_palette() -> None:
    from textual.actions import parse
    from textual.command import CommandList, CommandPalette
    from textual.widgets import TabbedContent

    from app.ui.screens.main import MainScreen

    app = ObservatoryApp(ProcNetSource(), None, interval=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        titles = await palette_titles(app)
        main = app.screen
        for binding in MainScreen.BINDINGS:
            assert isinstance(binding, Binding)
            _, name, arguments = parse(binding.action)
            # what does not apply now (kill with nothing selected) is left out, as greyed
            if name != "quit" and main.check_action(name, arguments):
                key = binding.key.split(",")[0]
                assert f"{binding.description} ({key})" in titles
        assert {"Launch (l)", "Filter (slash)", "Freeze (space)", "Scan (s)"} <= titles
        assert "Kill all (X)" not in titles  # nothing runs: as the footer greys it
        # As a student does it: ctrl+p, a few letters, Enter.
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Scan (s")
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, MainScreen)
                and app.screen.query_one("#tabs", TabbedContent).active == "tab-scan"
            ),
        )
