"""The Bytes tab in the real dashboard: true byte-order sentences, any address typed in.

Every test opens its own sockets on loopback (or binds INADDR_ANY without
sending anything), selects their rows in the real dashboard (real /proc
poller, 0.2 s interval) and reads what the panel shows.
"""

from __future__ import annotations

import socket
import sys

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, TabbedContent

from app.core.sockaddr import build_sockaddr, render_lines
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


def listening(held: list[socket.socket]) -> tuple[socket.socket, int]:
    s = socket.socket()
    held.append(s)
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    return s, s.getsockname()[1]


class PanelHost(App[None]):
    """The panel alone, before any poll."""

    def __init__(self, panel: BytesPanel) -> None:
        super().__init__()
        self.panel = panel

    def compose(self) -> ComposeResult:
        yield self.panel


async def select(pilot: Pilot[None], table_id: str, key: str) -> None:
    table = pilot.app.screen.query_one(f"#{table_id}", KeyedTable)
    await until(pilot, lambda: key in table._cells, what=f"{key} in {table_id}")
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


# -- item 8: no false endianness sentence ---------------------------------------------------


async def test_inaddr_any_is_a_byte_palindrome_not_a_big_endian_machine(
    sockets: list[socket.socket],
) -> None:
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
        await until(
            pilot,
            lambda: panel.layout_shown is not None and panel.layout_shown.port == port,
            what="the listener's bytes",
        )
        text = flat(panel.text())
        assert (
            "htonl(0x00000000) gives 0x00000000 back: its bytes 00 00 00 00 read the "
            "same both ways (a byte palindrome)"
        ) in text, text
        assert f"change nothing on any machine; this machine is {sys.byteorder}-endian" in text
        if sys.byteorder == "little":
            assert "big-endian too" not in text
            assert f"htons({port}) = 0x" in text  # a port that is not a palindrome swaps


# -- any address and port, typed -------------------------------------------------------------


async def type_address(pilot: Pilot[None], text: str, keys: bool = False) -> None:
    """Click into the field and put ``text`` there: pasted, or ``keys`` typed one by one."""
    await pilot.click("#bytes-address")
    box = pilot.app.screen.query_one("#bytes-address", Input)
    box.value = "" if keys else text
    if keys:
        await pilot.press(*text)
    await pilot.pause()


async def test_any_address_and_port_typed_as_observatory_sockaddr_takes_them(
    sockets: list[socket.socket],
) -> None:
    _, port = listening(sockets)
    async with dashboard().run_test(size=SIZE) as pilot:
        await select(pilot, "listen", f"tcp 127.0.0.1:{port} *")
        listen = pilot.app.screen.query_one("#listen")
        await pilot.press("b")
        panel = pilot.app.screen.query_one(BytesPanel)
        await until(
            pilot,
            lambda: panel.layout_shown is not None and panel.layout_shown.port == port,
            what="the listener's bytes",
        )
        assert pilot.app.focused is listen  # the field is entered on purpose only

        for typed, address, port_typed in (
            ("[::1]:7000", "::1", 7000),
            ("10.0.2.15:6000", "10.0.2.15", 6000),
            ("0.0.0.0 6000", "0.0.0.0", 6000),
        ):
            await type_address(pilot, typed, keys=typed.startswith("["))
            layout = panel.layout_shown
            assert layout is not None and (layout.address, layout.port) == (address, port_typed)
            # What `observatory sockaddr ADDRESS PORT` says: its first line, the lecture's
            # dump, and its hton and note sentences.
            cli = render_lines(build_sockaddr(address, port_typed))
            text = panel.text()
            assert cli[0] in text.replace("\n", ""), typed
            said = flat(text)
            for line in cli:
                if line.startswith(("htons(", "htonl(", "note: ")):
                    assert line in said, line
            assert not panel.query_one("#bytes-end").display  # a typed address has no peer
            assert not panel.query_one("#bytes-address-error").display
        assert "(a byte palindrome)" in said  # 0.0.0.0: item 8's sentence here too

        # Empty: the selected socket again.
        await type_address(pilot, "")
        assert panel.layout_shown is not None and panel.layout_shown.port == port
        assert f"Local end 127.0.0.1:{port}" in panel.text()
        assert panel.query_one("#bytes-end").display


async def test_the_address_field_gives_the_keys_back() -> None:
    """Enter (on an address and port) or Escape leaves the field: s b m ... are the
    dashboard's keys again, and the typed address stays shown."""
    async with dashboard().run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        listen = pilot.app.screen.query_one("#listen")
        panel = pilot.app.screen.query_one(BytesPanel)
        await pilot.press("b")
        await pilot.pause()
        assert pilot.app.focused is listen
        panel.focus()  # as Tab reaches it; Enter goes into the field
        await pilot.press("enter")
        assert pilot.app.focused is pilot.app.screen.query_one("#bytes-address")
        await type_address(pilot, "0.0.0.0 6000")
        await pilot.press("s")  # in the field, a letter is typed like any other
        assert active_tab(pilot) == "tab-bytes" and panel.typed_error is not None
        await pilot.press("backspace", "enter")
        assert pilot.app.focused is listen
        await pilot.press("s")
        await pilot.pause()
        assert active_tab(pilot) == "tab-scan"
        await pilot.press("b")
        await pilot.pause()
        assert active_tab(pilot) == "tab-bytes"
        assert panel.layout_shown is not None and panel.layout_shown.address == "0.0.0.0"

        await type_address(pilot, "127.0.")  # half typed, refused for now
        await pilot.press("escape")
        assert pilot.app.focused is listen
        await pilot.press("m")
        await pilot.pause()
        assert active_tab(pilot) == "tab-machine"


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("127.0.0.1:٧٤٠٠", "a port is written with the digits 0-9"),
        ("127.0.0.1 ７４００", "a port is written with the digits 0-9"),
        ("localhost:80", "names are not looked up here"),
        ("::1:7000", "in brackets, [::1]:7000"),
        ("127.0.0.1:70000", "is too big"),
        ("127.0.0.1", "has no port"),
    ],
)
async def test_a_bad_address_is_refused_in_words(typed: str, words: str) -> None:
    panel = BytesPanel()
    async with PanelHost(panel).run_test(size=(80, 40)) as pilot:
        box = panel.query_one("#bytes-address", Input)
        box.focus()
        box.value = typed  # pasted: Pilot types no Arabic-Indic digits
        await pilot.pause()
        error = panel.query_one("#bytes-address-error")
        assert error.display and words in flat(str(error.render())), error.render()
        assert panel.layout_shown is None and panel.typed is None
        text = flat(panel.text())
        assert "Traceback" not in text and "Type an IPv4 or IPv6 address and a port" in text
        await pilot.press("enter")  # refused: the cursor stays in the field to fix it
        assert pilot.app.focused is box
        box.value = ""
        await pilot.pause()
        assert not error.display
        assert panel.layout_shown is not None and panel.layout_shown.port == 1000  # lecture's
