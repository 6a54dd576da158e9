"""Pilot tests of the teaching instruments (Bytes, TCP states, Backlog) on real sockets.

Every test opens its own loopback sockets on free ports, selects their rows in
the real dashboard (real /proc poller, 0.2 s interval) and reads what each
panel shows.
"""

from __future__ import annotations

import socket

from textual.app import App, ComposeResult
from textual.widgets import Input

from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.backlog import BacklogPanel
from app.ui.widgets.bytes_panel import BytesPanel
from app.ui.widgets.keyed_table import KeyedTable
from app.ui.widgets.tcp_machine import StateMachinePanel
from tests.conftest import until


def listening(held: list[socket.socket], backlog: int = 5) -> tuple[socket.socket, int]:
    s = socket.socket()
    held.append(s)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s, s.getsockname()[1]


def connected(held: list[socket.socket], port: int) -> tuple[socket.socket, int]:
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.append(c)
    return c, c.getsockname()[1]


def flat(text: str) -> str:
    """Text with its line breaks (where the panel wrapped it) as single spaces."""
    return " ".join(text.split())


def listen_key(port: int) -> str:
    return f"tcp 127.0.0.1:{port} *"


def conn_key(local: int, remote: int) -> str:
    return f"tcp 127.0.0.1:{local} 127.0.0.1:{remote}"


async def select(pilot, table_id: str, key: str) -> None:  # type: ignore[no-untyped-def]
    """Focus a socket table and put its cursor on the row ``key`` (once it is there)."""
    table = pilot.app.screen.query_one(f"#{table_id}", KeyedTable)
    await until(pilot, lambda: key in table._cells)
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


def dashboard() -> ObservatoryApp:
    return ObservatoryApp(ProcNetSource(), None, interval=0.2)


# -- Bytes --------------------------------------------------------------------------------


async def test_bytes_panel_shows_the_selected_listeners_sockaddr(sockets) -> None:  # type: ignore[no-untyped-def]
    _, port = listening(sockets)
    hi, lo = port >> 8, port & 0xFF
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, "listen", listen_key(port))
        await pilot.press("b")
        panel = app.screen.query_one(BytesPanel)
        await until(
            pilot, lambda: panel.layout_shown is not None and panel.layout_shown.port == port
        )
        text = panel.text()
        # The lecture's form: [2] and [3] are the port, big-endian, printed as %X.
        assert f"[2]={hi:X},[3]={lo:X}," in text.replace("\n", "")
        assert "[0]=2,[1]=0," in text and "[4]=7F,[5]=0,[6]=0,[7]=1," in text.replace("\n", "")
        assert f"Local end 127.0.0.1:{port}" in text
        assert "sin_port" in text and f"0x{port:04X}" in text
        assert "sin_zero" in text and "padding" in text
        # htons in both byte orders: the host's (little-endian here) and the network's.
        assert f"htons({port})" in text and f"{hi:02X} {lo:02X}" in text
        # Wrapped at commas to the panel's width, never inside a byte.
        width = panel.content_size.width
        for line in text.splitlines():
            assert len(line) <= width
        for line in text.splitlines():
            if line.startswith("[") and "]=" in line:
                assert line.endswith(","), line

        # A listener has no peer: the toggle says so instead of inventing bytes.
        await pilot.click("#bytes-end")
        await pilot.pause()
        assert panel.layout_shown is None
        assert "no peer" in panel.text()


async def test_bytes_panel_peer_end_of_a_connection(sockets) -> None:  # type: ignore[no-untyped-def]
    server, port = listening(sockets)
    _, cport = connected(sockets, port)
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, "established", conn_key(cport, port))
        await pilot.press("b")
        panel = app.screen.query_one(BytesPanel)
        await until(
            pilot, lambda: panel.layout_shown is not None and panel.layout_shown.port == cport
        )
        await pilot.click("#bytes-end")  # the peer's end: the server's port
        await until(
            pilot, lambda: panel.layout_shown is not None and panel.layout_shown.port == port
        )
        assert f"[2]={port >> 8:X},[3]={port & 0xFF:X}," in panel.text().replace("\n", "")
        assert f"Peer's end 127.0.0.1:{port}" in panel.text()


class PanelHost(App[None]):
    """One panel alone, before any poll: what a student sees with nothing selected."""

    def __init__(self, panel: BytesPanel) -> None:
        super().__init__()
        self.panel = panel

    def compose(self) -> ComposeResult:
        yield self.panel


async def test_bytes_panel_without_selection_and_endianness_input() -> None:
    panel = BytesPanel()
    async with PanelHost(panel).run_test(size=(60, 60)) as pilot:
        text = panel.text()
        assert "select a socket row to see its bytes" in flat(text)
        assert "[0]=2,[1]=0,[2]=3,[3]=E8,[4]=7F," in text.replace("\n", "")  # 127.0.0.1:1000
        # The lecture's 8 bytes, read both ways, side by side.
        assert "47 EF 15 2A 89 37 B4 33" in text
        assert "0x47EF" in text and "0xEF47" in text
        assert "0x47EF152A" in text and "0x2A15EF47" in text

        box = panel.query_one("#endian-input", Input)
        box.value = "12 3G"
        await pilot.pause()
        error = panel.query_one("#endian-error")
        assert error.display
        assert "refused" in str(error.render()) and "3G" in str(error.render())
        assert "0x47EF" not in panel.text()

        box.value = "0x03-0xE8"
        await pilot.pause()
        assert not error.display
        assert "0x03E8 = 1000" in panel.text(width=100)
        assert "0xE803 = 59395" in panel.text(width=100)


# -- Backlog ------------------------------------------------------------------------------


async def test_backlog_panel_names_the_peer_waiting_to_be_accepted(sockets) -> None:  # type: ignore[no-untyped-def]
    server, port = listening(sockets, backlog=1)
    _, first = connected(sockets, port)
    accepted, _ = server.accept()  # the iterative server took the first client...
    sockets.append(accepted)
    _, second = connected(sockets, port)  # ...the second waits in the backlog
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, "listen", listen_key(port))
        await pilot.press("w")
        panel = app.screen.query_one(BacklogPanel)
        await until(
            pilot,
            lambda: (
                (q := panel.queue()) is not None
                and q.recv_q == 1
                and len(q.waiting) == 1
                and len(q.accepted) == 1
            ),
        )
        queue = panel.queue()
        assert queue is not None
        assert queue.waiting[0].remote == f"127.0.0.1:{second}"
        assert queue.accepted[0].remote == f"127.0.0.1:{first}"
        text = panel.text()
        assert f"Listener 127.0.0.1:{port}" in text and "Recv-Q 1" in text
        waiting_part, accepted_part = text.split("Accepted")
        assert f"127.0.0.1:{second}" in waiting_part.split("Waiting in the backlog")[1]
        assert f"127.0.0.1:{first}" in accepted_part
        assert "seen since" in waiting_part
        assert f"accepted 127.0.0.1:{first} and is busy" in " ".join(text.split())
        assert "--concurrent" in text

        # Selecting the waiting connection itself shows the same listener's queue.
        await select(pilot, "established", conn_key(port, second))
        await until(
            pilot, lambda: panel.selected is not None and panel.selected.remote_port == second
        )
        assert (q := panel.queue()) is not None and q.listener.local_port == port
        assert "the listener of the selected connection" in panel.text()

        # Once accepted, the peer moves from "waiting" to "accepted" and Recv-Q drops.
        late, _ = server.accept()
        sockets.append(late)
        await until(
            pilot,
            lambda: (
                (q := panel.queue()) is not None
                and q.recv_q == 0
                and not q.waiting
                and len(q.accepted) == 2
            ),
        )


async def test_backlog_overview_lists_listeners_with_a_queue(sockets) -> None:  # type: ignore[no-untyped-def]
    panel = BacklogPanel()
    server, port = listening(sockets, backlog=1)
    _, waiting = connected(sockets, port)
    source = ProcNetSource()
    async with PanelHost(panel).run_test(size=(60, 40)) as pilot:  # type: ignore[arg-type]
        panel.update_snapshot(source.poll(), [])
        await pilot.pause()
        text = panel.text()
        assert f"127.0.0.1:{port}" in text and "Recv-Q 1" in text
        assert f"waiting: 127.0.0.1:{waiting}" in text
        assert "Select a LISTEN row" in text


# -- TCP states ---------------------------------------------------------------------------


async def test_state_machine_follows_the_client_end_to_time_wait(sockets) -> None:  # type: ignore[no-untyped-def]
    server, port = listening(sockets)
    client, cport = connected(sockets, port)
    accepted, _ = server.accept()
    sockets.append(accepted)
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.screen.query_one(StateMachinePanel)
        await select(pilot, "listen", listen_key(port))
        await pilot.press("m")
        await until(pilot, lambda: panel.current == "LISTEN")
        assert "[*LISTEN*]" in panel.text()

        await select(pilot, "established", conn_key(cport, port))
        await until(pilot, lambda: panel.current == "ESTABLISHED")
        text = panel.text()
        assert text.count("[*ESTABLISHED*]") >= 2  # the two-lane diagram and RFC 793's
        assert "three-way handshake is done" in " ".join(text.split())
        assert "Whichever end calls close() first ends in TIME_WAIT" in " ".join(text.split())
        # Both ends are on this machine: the server's end is named with its state.
        assert f"Other end, on this machine: 127.0.0.1:{port} ESTABLISHED" in " ".join(text.split())
        # The mark is also styled (bold, theme accent), not only bracketed.
        diagram = panel._diagram()
        start = diagram.plain.index("[*ESTABLISHED*]")
        assert any(
            span.start <= start < span.end and "bold" in str(span.style) for span in diagram.spans
        )

        # The client closes first: it is the active closer and ends in TIME_WAIT.
        client.close()
        accepted.close()
        # Its row leaves the ESTABLISHED table (TIME_WAIT is under "Other states"):
        # the cursor lands on a neighbour, and the panel keeps following this socket.
        await until(pilot, lambda: panel.current == "TIME_WAIT", timeout=5)
        assert panel.socket is not None and panel.socket.local_port == cport
        text = " ".join(panel.text().split())
        assert "[*TIME_WAIT*]" in text
        assert "This end called close() first (the active closer)" in text
        assert panel.path[0] == "ESTABLISHED" and panel.path[-1] == "TIME_WAIT"
        assert "path seen: ESTABLISHED →" in text

        # A row the user really picks is followed again.
        await select(pilot, "listen", listen_key(port))
        await until(pilot, lambda: panel.current == "LISTEN")


async def test_panels_keep_their_socket_when_zoomed(sockets) -> None:  # type: ignore[no-untyped-def]
    _, port = listening(sockets)
    other, _ = listening(sockets)
    connected(sockets, other.getsockname()[1])  # rows in the ESTABLISHED table too
    app = dashboard()
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, "listen", listen_key(port))
        await pilot.press("m")
        machine = app.screen.query_one(StateMachinePanel)
        await until(pilot, lambda: machine.socket is not None and machine.socket.local_port == port)
        assert machine.has_class("-narrow")  # ~46 columns: the two-lane diagram
        await pilot.press("z")  # the tables hide; focus falls on a hidden table
        await pilot.pause(0.6)
        assert machine.socket is not None and machine.socket.local_port == port
        assert not machine.has_class("-narrow")  # the whole width: RFC 793's diagram
        assert app.screen.query_one(BytesPanel).socket.local_port == port  # type: ignore[union-attr]
        backlog = app.screen.query_one(BacklogPanel)
        assert backlog.selected is not None and backlog.selected.local_port == port
