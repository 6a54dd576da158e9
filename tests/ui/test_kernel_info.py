"""The dashboard with the kernel's own interface: backlog, counters, every transition, close.

Real sockets on loopback, the real sock_diag source and event stream, Pilot.
"""

from __future__ import annotations

import functools
import os
import socket

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from app.core.sockets import DiagSource
from app.core.watch import EventStream
from app.ui.app import ObservatoryApp
from app.ui.screens.dialogs import ConfirmDialog
from app.ui.screens.main import MainScreen
from app.ui.widgets.keyed_table import KeyedTable
from app.ui.widgets.tcp_machine import StateMachinePanel
from tests.conftest import connect, listener, until

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tracepoint, SOCK_DESTROY)")


def dashboard(stream: bool = False) -> ObservatoryApp:
    return ObservatoryApp(
        DiagSource(),
        None,
        interval=0.2,
        stream=functools.partial(EventStream, udp=True) if stream else None,
    )


async def select(pilot: Pilot[None], table_id: str, key: str) -> KeyedTable:
    table = pilot.app.screen.query_one(f"#{table_id}", KeyedTable)
    await until(pilot, lambda: key in table.rows, what=f"row {key}")
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()
    return table


def why(pilot: Pilot[None]) -> str:
    return str(pilot.app.screen.query_one("#why", Static).render())


async def test_queue_is_waiting_over_limit_and_hola_is_4_bytes(sockets) -> None:  # type: ignore[no-untyped-def]
    srv = listener(sockets, backlog=5)
    port = srv.getsockname()[1]
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    connect(sockets, srv)  # a second client, never accepted: it waits in the backlog
    cli.sendall(b"hola")
    assert conn.recv(16) == b"hola"
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        table = await select(pilot, "listen", f"tcp 127.0.0.1:{port} *")
        await until(
            pilot, lambda: "1/5" in str(table.get_row(f"tcp 127.0.0.1:{port} *")), what="Queue 1/5"
        )
        await until(pilot, lambda: "1 of 5 waiting" in why(pilot))
        server_end = f"tcp 127.0.0.1:{port} 127.0.0.1:{cli.getsockname()[1]}"
        await select(pilot, "established", server_end)
        await until(pilot, lambda: "received 4 B" in why(pilot), what="the server got 4 bytes")
        assert "rtt " in why(pilot)


@root_only
async def test_timeline_and_path_have_every_transition(sockets) -> None:  # type: ignore[no-untyped-def]
    srv = listener(sockets)
    port = srv.getsockname()[1]
    app = dashboard(stream=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, MainScreen)
        await until(pilot, lambda: screen.snapshot is not None, what="a first poll")
        await pilot.pause(0.5)
        cli = socket.create_connection(("127.0.0.1", port))
        conn, _ = srv.accept()
        cli.close()  # a connection that lives a few ms: no sample sees it
        conn.close()

        def texts() -> list[str]:
            return [e.text for e in screen.timeline.entries]

        def ours(states: str) -> bool:  # (the tracepoint sees the whole machine's)
            return any(t.startswith(states) and f":{port} " in f"{t} " for t in texts())

        await until(
            pilot, lambda: ours("FIN_WAIT1 -> FIN_WAIT2"), what="the FIN sequence in the timeline"
        )
        assert ours("SYN_SENT -> ESTABLISHED"), texts()
        # The TCP states tab says what it can see.
        await select(pilot, "listen", f"tcp 127.0.0.1:{port} *")
        await pilot.press("m")
        panel = screen.query_one(StateMachinePanel)
        await until(
            pilot,
            lambda: "every transition the kernel made" in " ".join(panel.text().split()),
            what="the tab's words",
        )


@root_only
async def test_c_closes_the_selected_connection_after_asking(sockets) -> None:  # type: ignore[no-untyped-def]
    srv = listener(sockets)
    port = srv.getsockname()[1]
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    cport = cli.getsockname()[1]
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, "established", f"tcp 127.0.0.1:{port} 127.0.0.1:{cport}")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the dialog")
        body = str(app.screen.query_one("#dialog-body", Static).render())
        assert f"127.0.0.1:{port}" in body and f"127.0.0.1:{cport}" in body
        assert f"{os.getpid()}/" in body  # the owner is named
        await pilot.press("y")
        conn.settimeout(5)
        with pytest.raises(ConnectionAbortedError):
            conn.recv(1)  # the owner's recv() gets ECONNABORTED
        with pytest.raises(ConnectionResetError):
            cli.recv(1)  # the peer a reset


async def test_the_events_box_says_what_the_stream_sees() -> None:
    """Where students look at the events, the box says whether they are every transition
    (root: the tracepoint) or samples (and that root would see every one)."""
    app = dashboard(stream=True)
    async with app.run_test(size=(120, 40)) as pilot:
        box = app.screen.query_one("#events-mini", Static)
        if os.geteuid() == 0:
            expected = "Events (newest first) · every transition"
        else:
            expected = "Events · sampled (root sees every one)"
        await until(pilot, lambda: box.border_title == expected, what=expected)
    plain = ObservatoryApp(DiagSource(), None, interval=0.2)  # no stream: nothing claimed
    async with plain.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        assert plain.screen.query_one("#events-mini", Static).border_title == (
            "Events (newest first)"
        )
