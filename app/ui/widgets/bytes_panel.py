"""The Bytes tab: ``struct sockaddr_in`` of the selected socket, and endianness.

Experiments 11 and 12 of the lecture: the 16 bytes of ``sockaddr_in`` (28 of
``sockaddr_in6``) printed the lecture's way, ``[0]=2,[1]=0,[2]=3,[3]=E8,...``,
with each field explained; then the same few bytes read as 1-, 2- and 4-byte
words, big- and little-endian side by side. All the arithmetic is in
:mod:`app.core.sockaddr` and :mod:`app.core.endian`; this module lays it out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Static

from app.core.endian import (
    DEFAULT_BYTES,
    EndianError,
    EndianReport,
    WordTable,
    parse_bytes,
    read_words,
)
from app.core.model import Snapshot, Socket, SocketEvent
from app.core.sockaddr import (
    SockaddrError,
    SockaddrLayout,
    build_sockaddr,
    hex_bytes,
    hton_sentence,
    parse_endpoint,
)
from app.ui.widgets.instrument import (
    Follow,
    InstrumentPanel,
    give_keys_back,
    home_after_hidden_blur,
    keep_focus_out_of_hidden,
    render_plain,
)

LECTURE_EXAMPLE = ("127.0.0.1", 1000)
ADDRESS_PLACEHOLDER = "type any, like 10.0.2.15:6000 or [::1]:7000; empty: the selected row"
DEFAULT_INPUT = hex_bytes(DEFAULT_BYTES)  # "47 EF 15 2A 89 37 B4 33"
GRID_BYTES_PER_LINE = 4


class CommaWrapped:
    """The lecture's ``[0]=2,[1]=0,...`` line, wrapped only after a comma.

    Rich wraps text at spaces and the line has none; cut anywhere else, a byte
    like ``[12]=7F`` would be split over two lines. Wraps to whatever width
    the panel has, so it needs no resize handling.
    """

    def __init__(self, line: str, style: str = "bold") -> None:
        self.tokens = [t + "," for t in line.rstrip(",").split(",")]
        self.style = style

    def lines(self, width: int) -> list[str]:
        out: list[str] = []
        current = ""
        for token in self.tokens:
            if current and len(current) + len(token) > width:
                out.append(current)
                current = ""
            current += token
        if current:
            out.append(current)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(max(options.max_width, 1)):
            yield Text(line, style=self.style, no_wrap=True, overflow="fold")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        longest = max((len(t) for t in self.tokens), default=0)
        return Measurement(longest, sum(len(t) for t in self.tokens))


def _field_meaning(layout: SockaddrLayout, name: str) -> str:
    """A short meaning for the grid (the core's long sentences are for the CLI)."""
    order = layout.host_byteorder
    if name.endswith("_family"):
        return f"{layout.family_name} = {layout.family}, host byte order ({order}-endian here)"
    if name.endswith("_port"):
        return f"port {layout.port} = 0x{layout.port:04X}, network byte order (big-endian)"
    if name == "sin_addr":
        return f"{layout.address}, network byte order (big-endian)"
    if name == "sin6_addr":
        return f"{layout.address}, 16 bytes, network byte order"
    if name == "sin_zero":
        return "padding: 8 zero bytes, to make 16"
    if name == "sin6_flowinfo":
        return f"flow label {layout.flowinfo}, network byte order"
    if name == "sin6_scope_id":
        return f"scope id {layout.scope_id} (interface index; 0 = none), host byte order"
    return name


class Responsive:
    """A renderable built for the width it gets: a table when wide, lines when narrow."""

    def __init__(self, build: Callable[[int], RenderableType]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)


WIDE = 64  # columns from which the four-column grid fits without squeezing


def sockaddr_grid(layout: SockaddrLayout, width: int = 120) -> Table:
    """Offset, bytes, field and meaning, one row per struct member.

    Narrower than :data:`WIDE`, the field's name heads its meaning in the same
    column, so that the meaning keeps room to be read.
    """
    wide = width >= WIDE
    grid = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        expand=False,
        header_style="bold",
    )
    grid.add_column("offset" if wide else "at", no_wrap=True)
    grid.add_column("bytes", no_wrap=True)
    if wide:
        grid.add_column("field", no_wrap=True)
    grid.add_column("meaning" if wide else "field: meaning", ratio=1)
    for f in layout.fields:
        chunks = [
            f.data[i : i + GRID_BYTES_PER_LINE] for i in range(0, f.size, GRID_BYTES_PER_LINE)
        ]
        cells: list[RenderableType] = [f.span, "\n".join(hex_bytes(c) for c in chunks)]
        meaning = _field_meaning(layout, f.name)
        if wide:
            cells += [f.name, meaning]
        else:
            cells.append(Text.assemble((f.name, "bold"), ": ", meaning))
        grid.add_row(*cells)
    return grid


def byte_order_view(layout: SockaddrLayout, width: int = 120) -> Group:
    """htons/htonl: each value's bytes on this machine and on the wire, and back."""
    order = layout.host_byteorder
    parts: list[RenderableType] = []
    if width >= 50:
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
            header_style="bold",
        )
        table.add_column("call", no_wrap=True)
        table.add_column(f"this machine ({order}-endian)", no_wrap=True)
        table.add_column("network (big-endian)", no_wrap=True)
        for r in layout.byte_order:
            table.add_row(r.call, hex_bytes(r.host_bytes), hex_bytes(r.network_bytes))
        parts.append(table)
    else:
        text = Text(
            f"In memory here ({order}-endian) and on the network (big-endian):", style="bold"
        )
        for r in layout.byte_order:
            text.append(f"\n{r.call}", style="bold")
            text.append(f"\n  here    {hex_bytes(r.host_bytes)}")
            text.append(f"\n  network {hex_bytes(r.network_bytes)}")
        parts.append(text)
    for r in layout.byte_order:
        parts.append(Text(hton_sentence(r, order) + "."))
    return Group(*parts)


def endpoint_of(sock: Socket, end: str) -> tuple[str, int] | None:
    """The (address, port) of the socket's local or peer end; None when it has no peer."""
    if end == "local":
        return sock.local_addr, sock.local_port
    if sock.remote_addr is None or sock.remote_port is None:
        return None
    if sock.remote_port == 0 and sock.remote_addr in ("0.0.0.0", "::"):
        return None
    return sock.remote_addr, sock.remote_port


def word_tables(report: EndianReport, width: int = 120) -> list[RenderableType]:
    """1-byte words on one line; 2- and 4-byte words big- and little-endian side by side.

    Narrower than :data:`WIDE`, each value goes under its hex form and the
    headers shrink to ``big``/``little``, so that no number is ever cut.
    """
    host = report.host_byteorder
    wide = width >= WIDE
    out: list[RenderableType] = [
        Text.assemble("bytes in memory, lowest address first:\n", (report.hex, "bold")),
    ]
    if not wide:
        out.append(
            Text(
                f"big = big-endian (network order), little = little-endian; this "
                f"machine is {host}-endian."
            )
        )
    for table in report.tables:
        out.extend(_word_size(table, host, wide))
    out.append(Text())
    out.append(Text(report.host_line))
    out.append(Text(report.network_line))
    return out


def _word_size(table: WordTable, host: str, wide: bool) -> list[RenderableType]:
    """One word size: a line when there is nothing to compare, else its grid and notes."""
    if table.size == 1:
        return [
            Text(
                f"1-byte words: {table.sequence('big').replace('-', ' ')}\n"
                "one byte has no byte order: both readings are the same."
            )
        ]
    if not table.words:
        return [
            Text(f"{table.size}-byte words: fewer than {table.size} bytes, no whole word to read.")
        ]
    out: list[RenderableType] = [Text(), _word_grid(table, host, wide)]
    if table.palindrome_note:
        out.append(Text(table.palindrome_note))
    if table.leftover:
        left = " ".join(f"{b:02X}" for b in table.leftover)
        out.append(Text(f"({left}: too few bytes left for another {table.size}-byte word)"))
    return out


def _word_grid(table: WordTable, host: str, wide: bool) -> Table:
    """Each word's offset and bytes, read big- and little-endian (this machine's marked)."""
    mine = " ← this machine"
    grid = Table(
        title=f"{table.size}-byte words",
        title_style="bold",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold",
    )
    grid.add_column("at", no_wrap=True, justify="right")
    grid.add_column("bytes", no_wrap=True)
    if wide:
        grid.add_column("big-endian (network)" + (mine if host == "big" else ""))
        grid.add_column("little-endian" + (mine if host == "little" else ""))
    else:
        grid.add_column("big", no_wrap=True)
        grid.add_column("little", no_wrap=True)
    sep = " = " if wide else "\n"
    for w in table.words:
        grid.add_row(
            str(w.offset),
            " ".join(f"{b:02X}" for b in w.data),
            f"{w.big_hex}{sep}{w.big}",
            f"{w.little_hex}{sep}{w.little}",
        )
    return grid


class BytesPanel(InstrumentPanel):
    """sockaddr bytes of the selected socket's local (or peer) end, or of any address and
    port the student types (as ``observatory sockaddr``), and an endianness lab."""

    DEFAULT_CSS = """
    BytesPanel {
        height: 1fr;
        padding: 0 1;
    }
    BytesPanel > Static {
        height: auto;
        width: 1fr;
    }
    BytesPanel #bytes-bar {
        height: auto;
        width: 1fr;
    }
    BytesPanel #bytes-title {
        width: 1fr;
        height: auto;
        text-style: bold;
    }
    BytesPanel #bytes-end {
        height: 1;
        width: auto;
        min-width: 4;
        border: none;
        padding: 0 1;
        margin: 0 0 0 1;
        text-style: bold;
    }
    BytesPanel #bytes-address-row {
        height: 1;
        width: 1fr;
    }
    BytesPanel #bytes-address-label {
        width: auto;
        padding: 0 1 0 0;
        color: $text-muted;
        text-style: bold;
    }
    BytesPanel #bytes-address {
        width: 1fr;
    }
    BytesPanel #bytes-address-error {
        color: $error;
        text-style: bold;
    }
    BytesPanel #endian-head {
        margin: 1 0 0 0;
        text-style: bold;
    }
    BytesPanel #endian-input {
        height: 3;
        width: 1fr;
    }
    BytesPanel #endian-error {
        color: $error;
        text-style: bold;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave_field", "Leave the field", show=False),
        Binding("enter", "enter_field", "Type an address", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.socket: Socket | None = None
        self.end = "local"  # or "peer"
        self.layout_shown: SockaddrLayout | None = None
        self.report: EndianReport | None = read_words(DEFAULT_BYTES)
        self.endian_error: str | None = None
        self._shown_key: tuple[object, ...] | None = None
        self._gone = False  # the selected socket left the kernel's table
        self.follow: Follow = Follow()
        self.typed: tuple[str, int] | None = None  # an address and port typed in the field
        self.typed_error: str | None = None  # why the typed text is not one

    def compose(self) -> ComposeResult:
        # One line (compact): at 80x24 the panel has four, and the bytes come first.
        with Horizontal(id="bytes-address-row"):
            yield Label("Address", id="bytes-address-label")
            yield Input(
                placeholder=ADDRESS_PLACEHOLDER,
                id="bytes-address",
                compact=True,
                tooltip="An address and a port, as observatory sockaddr takes them: "
                "10.0.2.15:6000, [::1]:7000, 0.0.0.0 6000. Empty: the "
                "selected socket. Esc gives the keys back to the dashboard.",
            )
        yield Static(id="bytes-address-error")
        with Horizontal(id="bytes-bar"):
            yield Static(id="bytes-title")
            yield Button("peer's end", id="bytes-end")
        yield Static(id="bytes-view")
        yield Static("Endianness: the same bytes read both ways (htons, htonl)", id="endian-head")
        yield Input(DEFAULT_INPUT, placeholder="bytes in hex, like 47 EF 15 2A", id="endian-input")
        yield Static(id="endian-error")
        yield Static(id="endian-view")

    def on_mount(self) -> None:
        self.query_one("#endian-error", Static).display = False
        self.query_one("#bytes-address-error", Static).display = False
        self._show_socket(force=True)
        self._show_endian()

    # -- the main screen's interface ---------------------------------------------------
    def select_socket(self, sock: Socket) -> None:
        """The highlighted socket row changed (or the same row was polled again)."""
        if not self.follow.accept(self, sock):
            return
        if self.socket is None or sock.key != self.socket.key:
            self.end = "local"
            self._gone = False
        self.socket = sock
        self._show_socket()

    def update_snapshot(self, snapshot: Snapshot, events: list[SocketEvent]) -> None:
        # The bytes depend only on the addresses and ports, which a socket keeps
        # for life: nothing to redo per poll, except noticing the socket is gone.
        self.follow.seen(snapshot)
        if self.socket is not None:
            self._gone = self.socket.key not in snapshot.by_key
            self._show_socket()

    # -- keys: the dashboard's letters work unless a field has the focus ----------------
    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        keep_focus_out_of_hidden(self, event)

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        home_after_hidden_blur(self)

    def action_leave_field(self) -> None:
        """Esc in a field (or on the button): the keys go back to the dashboard's tables."""
        give_keys_back(self)

    def action_enter_field(self) -> None:
        """Enter on the panel itself (reached with Tab): into the address field."""
        self.query_one("#bytes-address", Input).focus()

    # -- actions -------------------------------------------------------------------------
    def action_toggle_end(self) -> None:
        if self.typed is not None:
            return  # a typed address has no other end; the button is hidden meanwhile
        self.end = "peer" if self.end == "local" else "local"
        self._show_socket()

    @on(Input.Changed, "#bytes-address")
    def _address_typed(self, event: Input.Changed) -> None:
        """Any address and port, laid out as it is typed; empty: the selected socket again."""
        event.stop()
        text = event.value.strip()
        self.typed, self.typed_error = None, None
        if text:
            try:
                self.typed = parse_endpoint(text)
            except SockaddrError as exc:
                self.typed_error = str(exc)
        error = self.query_one("#bytes-address-error", Static)
        error.update(Text(f"✗ {self.typed_error}") if self.typed_error else "")
        error.display = self.typed_error is not None
        self._show_socket(force=True)

    @on(Input.Submitted, "#bytes-address")
    def _address_submitted(self, event: Input.Submitted) -> None:
        """Enter keeps what was typed and, when it is an address and port, gives the keys
        back (p, b, s... work again); a refused entry keeps the cursor in the field."""
        event.stop()
        if self.typed_error is None:
            give_keys_back(self)

    @on(Button.Pressed, "#bytes-end")
    def _toggle_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_toggle_end()

    @on(Input.Changed, "#endian-input")
    def _bytes_typed(self, event: Input.Changed) -> None:
        event.stop()
        try:
            self.report = read_words(parse_bytes(event.value))
            self.endian_error = None
        except EndianError as exc:
            self.report = None
            self.endian_error = str(exc)
        self._show_endian()

    @on(Input.Submitted, "#endian-input")
    def _bytes_submitted(self, event: Input.Submitted) -> None:
        event.stop()

    # -- rendering -----------------------------------------------------------------------
    def _target(self) -> tuple[str, tuple[str, int] | None, str]:
        """(title, (address, port) or None, why there is nothing to show)."""
        if self.typed_error is not None:
            return (
                "Typed above · not an address and port yet",
                None,
                "Type an IPv4 or IPv6 address and a port, like 10.0.2.15:6000, "
                "[::1]:7000 or 0.0.0.0 6000; empty the field to see the selected "
                "socket's bytes again.",
            )
        if self.typed is not None:
            address, port = self.typed
            shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            return (
                f"Typed {shown} · empty the field to follow the selected socket again",
                self.typed,
                "",
            )
        sock = self.socket
        if sock is None:
            return (
                "Lecture's example: 127.0.0.1 port 1000 · select a socket row to see its bytes",
                LECTURE_EXAMPLE,
                "",
            )
        gone = " (gone)" if self._gone else ""
        if self.end == "local":
            return (
                f"Local end {sock.local} · {sock.proto} {sock.state}{gone}",
                endpoint_of(sock, "local"),
                "",
            )
        where = endpoint_of(sock, "peer")
        if where is None:
            why = (
                "A LISTEN socket has no peer yet (its remote end is all zeros, "
                f"{sock.remote}): select an ESTABLISHED row, or press p for the local end."
                if sock.state == "LISTEN"
                else f"This socket has no peer ({sock.remote}); press p for the local end."
            )
            return f"Peer's end of {sock.local} · none", None, why
        return f"Peer's end {sock.remote} · seen from {sock.local}{gone}", where, ""

    def _show_socket(self, force: bool = False) -> None:
        if not self.is_mounted:
            return
        title, where, why = self._target()
        key = (title, where, why)
        if key == self._shown_key and not force:
            return  # polled again, nothing changed: keep it cheap
        self._shown_key = key
        button = self.query_one("#bytes-end", Button)
        button.label = "local end" if self.end == "peer" else "peer's end"
        button.display = (
            self.socket is not None and self.typed is None and (self.typed_error is None)
        )
        self.query_one("#bytes-title", Static).update(Text(title))
        self.query_one("#bytes-view", Static).update(self._socket_view(where, why))

    def _socket_view(self, where: tuple[str, int] | None, why: str) -> RenderableType:
        if where is None:
            self.layout_shown = None
            return Text(why)
        try:
            layout = build_sockaddr(*where)
        except SockaddrError as exc:  # an address the kernel printed that we cannot pack
            self.layout_shown = None
            return Text(f"Cannot lay out {where[0]} port {where[1]}: {exc}")
        self.layout_shown = layout
        parts: list[RenderableType] = [
            Text(
                f"struct {layout.struct_name}: {layout.size} bytes, as the lecture's "
                'printf("[%d]=%X,") prints them:'
            ),
            CommaWrapped(layout.lecture_line),
            Text(),
            Responsive(lambda width: sockaddr_grid(layout, width)),
            Text(),
            Responsive(lambda width: byte_order_view(layout, width)),
        ]
        parts.extend(Text(f"note: {n}") for n in layout.notes)
        return Group(*parts)

    def _show_endian(self) -> None:
        if not self.is_mounted:
            return
        error = self.query_one("#endian-error", Static)
        view = self.query_one("#endian-view", Static)
        if self.endian_error is not None:
            error.update(Text(f"✗ refused: {self.endian_error}"))
            error.display = True
            view.update(
                Text(
                    "Type bytes in hex, two digits each: 47 EF 15 2A, 0x47-0xEF, "
                    "47EF152A, or paste a [0]=2,[1]=0, line."
                )
            )
            return
        error.display = False
        assert self.report is not None
        report = self.report
        view.update(Responsive(lambda width: Group(*word_tables(report, width))))

    # -- for tests and the report -------------------------------------------------------
    def text(self, width: int | None = None) -> str:
        """Everything the panel shows, as plain text at its current width."""
        return render_plain(self._plain_parts(), width or max(self.content_size.width, 20))

    def _plain_parts(self) -> Iterable[RenderableType]:
        title, where, why = self._target()
        if self.typed_error is not None:
            yield Text(f"✗ {self.typed_error}")
        yield Text(title)
        yield self._socket_view(where, why)
        if self.endian_error is not None:
            yield Text(f"✗ refused: {self.endian_error}")
        elif self.report is not None:
            report = self.report
            yield Responsive(lambda width: Group(*word_tables(report, width)))
