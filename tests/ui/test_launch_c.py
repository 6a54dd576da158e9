"""The launch dialog offers the lecture's own C programs next to the Python built-ins, F2/F3
run them where a compiler exists, and a launch compiles (in a worker) and runs one."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest
from textual.widgets import Button, Input, Select, Static

from app.core import cprograms
from app.ui.screens.launch import NO_CC_NOTE, LaunchRequest
from tests.conftest import until
from tests.ui.conftest import rows
from tests.ui.test_dialogs import open_launch, preview

needs_cc = pytest.mark.skipif(cprograms.compiler() is None, reason=cprograms.INSTALL_HINT)


@needs_cc
async def test_presets_run_the_c_programs_where_cc_exists(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dialog = await open_launch(pilot)
        offered = {str(prompt): value for prompt, value in dialog.query_one(Select)._options}
        assert offered["tcp_server1 (C)"] == "tcp_server1"
        assert offered["tcp_client1 (C)"] == "tcp_client1"
        assert "tcp-server" in offered.values()  # the Python built-ins stay
        assert not dialog.query_one("#launch-note").display

        await pilot.press("f2")
        await pilot.pause()
        request, _ = dialog.request()
        assert request == LaunchRequest("server1", None, ("6000",), c_program="tcp_server1")
        assert preview(dialog) == "Will run: ./tcp_server1 6000  (C, compiled on first use)"
        assert app.focused is dialog.query_one("#launch")

        await pilot.press("f3")
        await pilot.pause()
        request, _ = dialog.request()
        assert request == LaunchRequest(
            "client1", None, ("127.0.0.1", "hello", "6000"), c_program="tcp_client1"
        )
        dialog.query_one("#target", Input).value = "localhost"
        await pilot.pause()
        assert preview(dialog) == (
            "✗ tcp_client1 takes an IPv4 address (e.g. 127.0.0.1), not 'localhost'"
        )
        await pilot.press("escape")


async def test_without_cc_the_presets_stay_python_and_say_why(dashboard, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cprograms, "compiler", lambda: None)
    app, _ = dashboard
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dialog = await open_launch(pilot)
        note = dialog.query_one("#launch-note", Static)
        assert note.display and str(note.render()) == NO_CC_NOTE
        await pilot.press("f2")
        await pilot.pause()
        request, _ = dialog.request()
        assert request is not None and request.program == "tcp-server"
        assert request.c_program is None

        dialog.query_one("#program", Select).value = "tcp_server1"
        await pilot.pause()
        assert preview(dialog) == f"✗ {cprograms.INSTALL_HINT}"
        assert dialog.query_one("#launch", Button).disabled
        await pilot.press("escape")


@needs_cc
async def test_launching_tcp_server1_shows_its_listen_row(  # type: ignore[no-untyped-def]
    dashboard, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # compiled fresh, by the launch
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app, manager = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        dialog = await open_launch(pilot)
        dialog.query_one("#program", Select).value = "tcp_server1"
        dialog.query_one("#port", Input).value = str(port)
        await pilot.pause()
        assert preview(dialog).startswith(f"Will run: ./tcp_server1 {port} ")
        await pilot.click("#launch")
        await until(
            pilot,
            lambda: any(f"0.0.0.0:{port}" in r for r in rows(app, "listen")),
            timeout=20,
            what=f"a LISTEN row for 0.0.0.0:{port}",
        )
        assert list((tmp_path / "connection-observatory" / "c").glob("*/tcp_server1"))
        info = manager.get("server1")
        assert info.pid is not None and psutil.Process(info.pid).cmdline() == [
            "./tcp_server1",
            str(port),
        ]  # as the lecture's ps shows it
