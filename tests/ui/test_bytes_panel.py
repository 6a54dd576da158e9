"""The Bytes tab in the real dashboard: true byte-order sentences, any address typed in.

Every test opens its own sockets on loopback (or binds INADDR_ANY without
sending anything), selects their rows in the real dashboard (real /proc
poller, 0.2 s interval) and reads what the panel shows.
"""

from __future__ import annotations

import socket
import sys

from textual.pilot import Pilot
from textual.widgets import TabbedContent

from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.bytes_panel import BytesPanel
from app.ui.widgets.keyed_table import KeyedTable
from tests.conftest import until

SIZE = (120, 40)


def dashboard() -> ObservatoryApp:
    return ObservatoryApp(ProcNetSource(), None, interval=0.2)


def flat(text: str) -> str:
    """Text with its line breaks (where the panel wrapped it) as single spaces."""
    return " ".join(text.split())


def active_tab(pilot: Pilot[None]) -> str:
    return pilot.app.screen.query_one("#tabs", TabbedContent).active


async def select(pilot: Pilot[None], table_id: str, key: str) -> None:
    table = pilot.app.screen.query_one(f"#{table_id}", KeyedTable)
    await until(pilot, lambda: key in table._cells, what=f"{key} in {table_id}")
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


# -- item 8: no false endianness sentence ---------------------------------------------------

async def test_inaddr_any_is_a_byte_palindrome_not_a_big_endian_machine(
        sockets: list[socket.socket]) -> None:
    """A server on 0.0.0.0: htonl(0x00000000) changes nothing because its bytes are all
    zero, on any machine; the panel names this machine's real byte order."""
    server = socket.socket()
    sockets.append(server)
    server.bind(("0.0.0.0", 0))  # nothing is sent: a listener, never connected to
    server.listen(1)
    port = server.getsockname()[1]
    async with dashboard().run_test(size=SIZE) as pilot:
        await select(pilot, "listen", f"tcp 0.0.0.0:{port} *")
        await pilot.press("b")
        panel = pilot.app.screen.query_one(BytesPanel)
        await until(pilot, lambda: panel.layout_shown is not None
                    and panel.layout_shown.port == port, what="the listener's bytes")
        text = flat(panel.text())
        assert ("htonl(0x00000000) gives 0x00000000 back: its bytes 00 00 00 00 read the "
                "same both ways (a byte palindrome)") in text, text
        assert f"change nothing on any machine; this machine is {sys.byteorder}-endian" in text
        if sys.byteorder == "little":
            assert "big-endian too" not in text
            assert f"htons({port}) = 0x" in text  # a port that is not a palindrome swaps
