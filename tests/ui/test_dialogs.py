"""Pilot tests of the dialogs: launch, confirm (quit, close, kill) and scenario path."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Select, Static
from textual.widgets._toast import Toast

from app.core import cprograms
from app.ui.screens.dialogs import ConfirmDialog, PathDialog
from app.ui.screens.launch import COMMAND, LaunchDialog, LaunchRequest
from tests.conftest import until

SIZES = [(80, 24), (120, 40), (160, 48)]
ADDRESSES = ["127.0.0.1", "0.0.0.0", "::1", "::"]


def shown(widget: Widget) -> bool:
    """Every cell of ``widget`` is on the screen and drawn by it (or its children).

    A widget inside a scrolled container, under a docked one or under a toast fails: what
    the compositor draws at that cell belongs to another widget.
    """
    screen = widget.screen
    region = widget.region
    if not region or not screen.region.contains_region(region):
        return False
    for y in range(region.y, region.bottom):
        for x in range(region.x, region.right):
            drawn, _ = screen.get_widget_at(x, y)
            if drawn is not widget and widget not in drawn.ancestors:
                return False
    return True


def covered_by_toast(region: Region, screen: Any) -> bool:
    for y in range(region.y, region.bottom):
        for x in range(region.x, region.right):
            drawn, _ = screen.get_widget_at(x, y)
            if isinstance(drawn, Toast) or any(isinstance(a, Toast) for a in drawn.ancestors):
                return True
    return False


async def open_launch(pilot: Any) -> LaunchDialog:
    await pilot.press("l")
    await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
    await pilot.pause()
    return pilot.app.screen  # type: ignore[no-any-return]


def preview(dialog: LaunchDialog) -> str:
    return str(dialog.query_one("#launch-preview", Static).render())


# -- item 7: at 80x24 every field is reachable, the preview and the buttons always shown --------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_launch_dialog_fits_the_terminal(dashboard, sockets, size) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    # The port is held by a killed server's end (FIN_WAIT2): the longest warning shows too.
    server = socket.socket()
    sockets.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    sockets.append(socket.create_connection(("127.0.0.1", port)))
    accepted, _ = server.accept()
    accepted.close()
    server.close()
    async with app.run_test(size=size) as pilot:
        await until(
            pilot,
            lambda: (
                app.screen.snapshot is not None
                and any(
                    s.local_port == port and s.state == "FIN_WAIT2"
                    for s in app.screen.snapshot.sockets
                )
            ),
        )
        dialog = await open_launch(pilot)
        dialog.query_one("#port", Input).value = str(port)
        for program in ("tcp-server", "tcp-client", "udp-server", "command"):
            dialog.query_one("#program", Select).value = program
            await pilot.pause()
            if program == "tcp-server":
                warning = dialog.query_one("#launch-warning")
                assert warning.display
                if size[1] < 32:  # it keeps to four lines: the fields keep their room
                    assert warning.size.height <= 4, warning.size
            fields = [
                w
                for w in dialog.query(
                    "#launch-fields Input, #launch-fields Select, #launch-fields Checkbox"
                )
                if w.display and all(a.display for a in w.ancestors_with_self if a is not dialog)
            ]
            assert len(fields) >= 3, program
            for field in fields:  # Tab (or a click) reaches it: it scrolls into view
                field.focus()
                # Scrolled into view after the next layout (later on a loaded machine).
                await until(
                    pilot,
                    lambda: shown(field),  # noqa: B023
                    timeout=3,
                    what=f"{program}: #{field.id} in view at {size}",
                )
                for fixed in (
                    "#launch-preview",
                    "#launch",
                    "#cancel",
                    "#preset-server",
                    "#preset-client",
                ):
                    assert shown(dialog.query_one(fixed)), (
                        f"{program}: {fixed} hidden at {size} with #{field.id} focused"
                    )
        await pilot.press("escape")


# -- the lecture's defaults, one key or one click away ------------------------------------------
async def test_lecture_presets_fill_the_lecture_commands(dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Without a C compiler F2/F3 are the Python built-ins (with one, the lecture's C
    # programs: tests/ui/test_launch_c.py).
    monkeypatch.setattr(cprograms, "compiler", lambda: None)
    app, _ = dashboard
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the main screen is up first
        dialog = await open_launch(pilot)
        await pilot.press("f2")
        await pilot.pause()
        request, _ = dialog.request()
        assert request == LaunchRequest(
            "server1",
            "tcp-server",
            ("6000", "--bind", "0.0.0.0", "--handler", "busy", "--no-reuseaddr"),
        )
        assert preview(dialog) == (
            "Will run: tcp-server 6000 --bind 0.0.0.0 --handler busy --no-reuseaddr"
        )
        assert app.focused is dialog.query_one("#launch")  # Enter launches it

        await pilot.click("#preset-client")
        await pilot.pause()
        request, _ = dialog.request()
        assert request == LaunchRequest("client1", "tcp-client", ("127.0.0.1", "hello", "6000"))

        dialog.query_one("#concurrent", Checkbox).value = True  # F2 undoes what was changed
        dialog.query_one("#name", Input).value = "mine"
        await pilot.press("f2")
        await pilot.pause()
        request, _ = dialog.request()
        assert request is not None and request.name == "server1"
        assert "--concurrent" not in request.args
        await pilot.press("escape")


# -- names: never the name of a process the manager still knows ---------------------------------
async def test_names_of_ended_and_running_processes_are_refused(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # the main screen is up first
        dialog = LaunchDialog(
            ADDRESSES, {"cmd1", "server1", "server2"}, COMMAND, running_names={"server1"}
        )
        app.push_screen(dialog)
        await pilot.pause()
        dialog.query_one("#command", Input).value = "sleep 5"
        await pilot.pause()
        request, _ = dialog.request()
        assert request is not None and request.name == "cmd2"  # cmd1 ended: not reused
        assert dialog.query_one("#name", Input).placeholder == "automatic: cmd2"

        dialog.query_one("#name", Input).value = "cmd1"
        await pilot.pause()
        assert preview(dialog) == (
            "✗ cmd1 ended; its output is still shown: choose another name, e.g. cmd2"
        )
        assert dialog.query_one("#launch", Button).disabled

        dialog.query_one("#name", Input).value = "server1"
        await pilot.pause()
        assert preview(dialog) == "✗ server1 is running: choose another name, e.g. server3"
        assert dialog.query_one("#launch", Button).disabled
        await app.pop_screen()
        await pilot.pause()

        # Without running_names every taken name is taken to be running (the old callers).
        dialog = LaunchDialog(ADDRESSES, {"server1"})
        app.push_screen(dialog)
        await pilot.pause()
        dialog.query_one("#name", Input).value = "server1"
        await pilot.pause()
        assert preview(dialog) == "✗ server1 is running: choose another name, e.g. server2"


# -- the port is checked before launching ---------------------------------------------------------
async def test_port_warning_before_launching(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    calls: list[tuple[str, int, str, bool | None]] = []
    held = "Port 6000 is held by a socket in TIME_WAIT; bind() will fail for about 60 s."

    def port_check(bind: str, port: int, proto: str, reuseaddr: bool | None) -> str | None:
        calls.append((bind, port, proto, reuseaddr))
        return held if port == 6000 and proto == "tcp" else None

    def last_call() -> tuple[str, int, str, bool | None]:
        # Not calls[-1] in the asserts: mypy would keep the first assert's narrowing of
        # calls[-1] across the awaits and call the later comparisons impossible.
        return calls[-1]

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the main screen is up first
        dialog = LaunchDialog(ADDRESSES, set(), port_check=port_check)
        app.push_screen(dialog)
        await pilot.pause()
        warning = dialog.query_one("#launch-warning", Static)
        assert last_call() == ("127.0.0.1", 6000, "tcp", True)
        assert str(warning.render()) == f"⚠ {held}"
        assert shown(warning) and shown(dialog.query_one("#launch"))
        assert not dialog.query_one("#launch", Button).disabled  # warned, still allowed

        dialog.query_one("#bind", Select).value = "0.0.0.0"
        await pilot.pause()
        assert last_call() == ("0.0.0.0", 6000, "tcp", True)

        dialog.query_one("#port", Input).value = "6001"
        await pilot.pause()
        assert last_call() == ("0.0.0.0", 6001, "tcp", True)
        assert not warning.display

        dialog.query_one("#port", Input).value = "6000"
        dialog.query_one("#program", Select).value = "udp-server"
        await pilot.pause()
        assert last_call() == ("0.0.0.0", 6000, "udp", False) and not warning.display

        dialog.query_one("#program", Select).value = "tcp-server"
        dialog.query_one("#reuseaddr", Checkbox).value = False  # as the lecture's server
        await pilot.pause()
        assert last_call() == ("0.0.0.0", 6000, "tcp", False)

        # The lecture's own C server as any command: its one port, every address, and
        # whether it sets SO_REUSEADDR nobody can tell.
        dialog.query_one("#program", Select).value = "command"
        dialog.query_one("#command", Input).value = "./tcp_server1 6000"
        await pilot.pause()
        assert last_call() == ("0.0.0.0", 6000, "tcp", None) and warning.display

        calls.clear()
        dialog.query_one("#program", Select).value = "tcp-client"
        await pilot.pause()
        assert not warning.display  # a client binds no port of its own
        assert calls == []


# -- the quit dialog: its keys shown, the expected button focused, no toast over it --------------
async def test_quit_dialog_says_its_keys_and_no_toast_covers_it(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, manager = dashboard
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()  # the main screen is up first
        manager.launch_command("sleeper", ["sleep", "30"])
        await until(
            pilot,
            lambda: any(p.name == "sleeper" and p.running for p in app.screen.processes),
            what="sleeper listed",
        )
        for n in range(4):
            app.notify(f"Something happened, number {n}, told in a long toast " * 2, timeout=30)
        await pilot.pause()
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.pause()
        dialog = app.screen
        yes, no = dialog.query_one("#yes", Button), dialog.query_one("#no", Button)
        assert str(yes.label) == "Stop them and quit (y)"
        assert str(no.label) == "Cancel (n, Esc)"
        box = dialog.query_one("#dialog")
        assert not covered_by_toast(box.region, dialog)
        assert shown(yes) and shown(no)
        assert dialog.focused is yes  # q asked to quit: Enter does it
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert manager.get("sleeper").running
        # The toasts were only held back: they are there again on the main screen.
        await until(pilot, lambda: app.screen.query(Toast))


async def test_confirm_dialog_focuses_the_button_asked_for(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the main screen is up first
        results: list[bool | None] = []
        app.push_screen(
            ConfirmDialog("Quit?", "Two run.", yes="Stop them and quit", default="yes"),
            results.append,
        )
        await pilot.pause()
        assert app.focused is app.screen.query_one("#yes")
        await pilot.press("enter")  # q then Enter quits, as q then y does
        await pilot.pause()
        assert results == [True]

        # Close and kill confirmations keep the safe button focused.
        app.push_screen(
            ConfirmDialog("Kill pid 1?", "Not ours.", yes="Send SIGTERM"), results.append
        )
        await pilot.pause()
        assert app.focused is app.screen.query_one("#no")
        await pilot.press("enter")
        await pilot.pause()
        assert results == [True, False]


async def test_confirm_dialog_buttons_stay_in_view_with_a_long_body(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    body = "pid 4242 was not started by the observatory.\n\n  command: " + "java -cp x " * 200
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the main screen is up first
        app.push_screen(ConfirmDialog("Kill pid 4242?", body, yes="Send SIGTERM"))
        await pilot.pause()
        assert shown(app.screen.query_one("#yes")) and shown(app.screen.query_one("#no"))
        box = app.screen.query_one("#dialog")
        box.scroll_end(animate=False)  # the rest of the body scrolls into view, not cut off
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y > 0
        assert shown(app.screen.query_one("#yes"))


# -- the scenario path is a value: Enter loads it ---------------------------------------------
async def test_scenario_path_is_typed_in(dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    loaded: list[str] = []
    monkeypatch.setattr(app, "load_scenario", loaded.append)  # the dialog's part only
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the main screen is up first
        await pilot.press("O")
        await until(pilot, lambda: isinstance(app.screen, PathDialog))
        await pilot.pause()
        field = app.screen.query_one("#path", Input)
        assert field.value == "scenarios/session4.toml"
        assert field.placeholder  # a hint once the value is erased
        assert app.focused is field and field.cursor_position == len(field.value)
        await pilot.press("enter")
        await until(pilot, lambda: loaded)
        assert loaded == ["scenarios/session4.toml"]


# -- ctrl+s (the app's screenshot) passes through every dialog ---------------------------------
async def test_dialogs_do_not_swallow_ctrl_s(dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    shots: list[str] = []
    monkeypatch.setattr(app, "action_save_screen", lambda: shots.append(type(app.screen).__name__))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the main screen is up first
        for dialog in (
            LaunchDialog(ADDRESSES, set()),
            ConfirmDialog("Kill?", "Sure?"),
            PathDialog("Load a scenario file", "scenarios/session4.toml"),
        ):
            app.push_screen(dialog)
            await pilot.pause()
            focusable = [w for w in dialog.query("*") if w.focusable]
            # One of each kind is enough (each took 0.3 s): a button, a list, a field.
            for widget in {type(w): w for w in reversed(focusable)}.values():
                widget.focus()
                await pilot.pause()
                before = len(shots)
                await pilot.press("ctrl+s")
                await pilot.pause()
                assert shots[before:] == [type(dialog).__name__], (
                    f"{type(dialog).__name__} #{widget.id}"
                )
            await app.pop_screen()
            await pilot.pause()
