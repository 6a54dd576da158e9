"""The class screen with Pilot, over real HTTP on loopback: stand-in agents serving a
real ``observatory snapshot --json`` and a real ``python -m app agent``; rows appear,
a dead machine is down in words, an agent killed mid-view turns down, Enter shows a
machine's listener, ``o`` sorts, and no key of the view acts on a machine."""

from __future__ import annotations

import os
import signal
from typing import Any

from textual.binding import Binding

from app.core.classroom import Classroom, parse_target
from app.ui.classroom_app import ClassroomApp
from app.ui.screens.classroom import ClassroomScreen, MachineScreen
from app.ui.widgets.keyed_table import KeyedTable
from tests.conftest import until
from tests.core.test_classroom import StandIn, agent, dead_target, needs_agent


def make_app(*targets: str) -> ClassroomApp:
    room = Classroom([parse_target(t) for t in targets], timeout=1.0)
    return ClassroomApp(room, interval=0.2)


def cells(app: ClassroomApp, key: str, table: str = "#machines") -> str:
    rows = app.screen.query_one(table, KeyedTable).rows
    return " | ".join(str(c) for c in rows[key]) if key in rows else ""


def detail(app: ClassroomApp) -> str:
    return str(app.screen.query_one("#class-detail").render())


async def test_rows_appear_and_a_dead_machine_is_down_in_words(
    servers: list[StandIn], recorded: Any
) -> None:
    body, port = recorded
    servers.append(StandIn("127.0.0.2", body))
    up, dead = servers[0].target, dead_target()
    app = make_app(up, dead)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: cells(app, up).startswith("✓ up"), what="the machine up")
        await until(pilot, lambda: cells(app, dead).startswith("✗ DOWN: no agent"))
        row = cells(app, up)
        assert "stand-in" in row and str(port) in row
        status = str(app.screen.query_one("#class-status").render())
        assert "2 machines: 1 up, 1 down" in status and "read-only" in status
        await pilot.press("down")
        await until(pilot, lambda: "connection refused" in detail(app))
        assert f"{dead} is down: nothing listens on" in detail(app)


@needs_agent
async def test_an_agent_killed_mid_view_turns_down() -> None:
    with agent("127.0.0.2") as target:
        app = make_app(target)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: cells(app, target).startswith("✓ up"))
            pid = _listener_pid(target)
            os.kill(pid, signal.SIGKILL)
            await until(
                pilot,
                lambda: cells(app, target).startswith("✗ DOWN: no agent"),
                what="the killed agent's row down",
            )
            assert "connection refused" in detail(app)
            assert "1 machines: 0 up, 1 down" in str(app.screen.query_one("#class-status").render())


def _listener_pid(target: str) -> int:
    """The pid of the process listening on ``target`` (the agent: python -m app agent)."""
    import psutil

    host, port = target.rsplit(":", 1)
    for conn in psutil.net_connections("tcp"):
        if conn.status == "LISTEN" and conn.laddr == (host, int(port)) and conn.pid:
            return int(conn.pid)
    raise AssertionError(f"nothing listens on {target}")


async def test_enter_shows_a_machines_listener_and_esc_comes_back(
    servers: list[StandIn], recorded: Any
) -> None:
    body, port = recorded
    servers.append(StandIn("127.0.0.2", body))
    target = servers[0].target
    app = make_app(dead_target(), target)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: cells(app, target).startswith("✓ up"))
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, MachineScreen))
        listen = app.screen.query_one("#machine-listen", KeyedTable)
        await until(
            pilot,
            lambda: any(f"127.0.0.1:{port}" in " ".join(map(str, r)) for r in listen.rows.values()),
            what="the listener's port in the machine's LISTEN table",
        )
        row = next(r for r in listen.rows.values() if f"127.0.0.1:{port}" in " ".join(map(str, r)))
        assert "1/4" in " ".join(map(str, row))  # one connection waiting, of listen(4)
        assert listen.border_title is not None and target in str(listen.border_title)
        status = str(app.screen.query_one("#machine-status").render())
        assert "read-only" in status and "stand-in" in status
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ClassroomScreen))


async def test_a_machine_going_down_while_open_says_so(
    servers: list[StandIn], recorded: Any
) -> None:
    body, port = recorded
    server = StandIn("127.0.0.2", body)
    app = make_app(server.target)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: cells(app, server.target).startswith("✓ up"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MachineScreen))
        server.close()
        status = app.screen.query_one("#machine-status")
        await until(pilot, lambda: "is DOWN" in str(status.render()))
        assert "Showing the last answer it gave" in str(status.render())
        listen = app.screen.query_one("#machine-listen", KeyedTable)
        assert any(f"127.0.0.1:{port}" in " ".join(map(str, r)) for r in listen.rows.values())


async def test_o_sorts_the_machines(servers: list[StandIn], recorded: Any) -> None:
    body, _ = recorded
    empty = StandIn("127.0.0.2", {**body, "sockets": []})
    busy = StandIn("127.0.0.3", body)
    servers += [empty, busy]
    dead = dead_target()
    app = make_app(empty.target, busy.target, dead)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one("#machines", KeyedTable)
        await until(pilot, lambda: all(cells(app, t)[:1] in "✓✗" for t in table.keys))
        assert table.keys == [empty.target, busy.target, dead]  # as given
        await pilot.press("o")  # down first
        await until(pilot, lambda: table.keys[0] == dead)
        await pilot.press("o")  # most LISTEN ports first, the down ones last
        await until(pilot, lambda: table.keys == [busy.target, empty.target, dead])
        for _ in range(7):  # round to the order given
            await pilot.press("o")
        await until(pilot, lambda: table.keys == [empty.target, busy.target, dead])


async def test_no_key_acts_on_a_machine(servers: list[StandIn], recorded: Any) -> None:
    body, _ = recorded
    servers.append(StandIn("127.0.0.2", body))
    app = make_app(servers[0].target)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: cells(app, servers[0].target).startswith("✓ up"))
        for screen in (app.screen, MachineScreen(servers[0].target, None)):
            actions = {b.action for b in type(screen).BINDINGS if isinstance(b, Binding)}
            assert actions <= {"app.quit", "sort", "app.toggle_theme", "app.pop_screen"}
        await pilot.press("k", "K", "l", "X", "r", "c")  # the dashboard's acting keys
        assert isinstance(app.screen, ClassroomScreen)


async def test_a_machine_s_own_words_are_shown_as_text_never_as_markup(
    servers: list[StandIn], recorded: Any
) -> None:
    """A student names a process or a machine like markup ("[/]", "[@click=app.quit]"):
    the teacher's view shows it as text and keeps running."""
    body, _ = recorded
    evil = "[/]x[@click=app.quit]q[/]"
    sockets = [{**s, "process": evil} for s in body["sockets"]]
    servers.append(StandIn("127.0.0.2", {**body, "host": evil, "sockets": sockets}))
    app = make_app(servers[0].target)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: cells(app, servers[0].target).startswith("✓ up"))
        # Its newest change names the process: the line under the table says it.
        sockets.append({**sockets[0], "local_port": 1, "state": "LISTEN"})
        servers[0].body = {**body, "host": evil, "sockets": sockets}
        await until(pilot, lambda: evil in detail(app), what="the name under the table")
        assert app.is_running
