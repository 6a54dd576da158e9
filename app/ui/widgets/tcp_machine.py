"""The TCP states tab: RFC 793's state machine with the selected connection on it.

The diagram comes from :func:`app.core.tcpstates.diagram_lines`, which marks
the current state by shape (``[*ESTABLISHED*]``, the only upper-case name);
here it also gets the theme's accent and bold, and the states the socket was
seen in are underlined. The path is built from the poller's events as they
arrive, per socket key, bounded in keys and in length.

The diagram is 74 columns wide and the side column about 46: it sits in a
horizontally scrollable box (z zooms the column to the whole screen), and
the arrows leaving the current state are also listed in words underneath.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import HorizontalScroll
from textual.widgets import Static

from app.core.model import Snapshot, Socket, SocketEvent
from app.core.tcpstates import (
    STATES,
    UnknownStateError,
    close_side,
    diagram_lines,
    explain,
    normalize_state,
    transitions_from,
)
from app.core.watch import WatchEvent
from app.ui.widgets.instrument import Follow, InstrumentPanel, render_plain

MAX_KEYS = 2000  # sockets whose path is remembered (least recently changed dropped first)
MAX_PATH = 12  # states remembered per socket

SIDE_WORDS = {
    "active-open": "active open, the client",
    "passive-open": "passive open, the server",
    "active-close": "active close",
    "passive-close": "passive close",
    "any": "abort",
}

_LABELS = {state: re.compile(rf"\b{state.lower()}\b(?!\()") for state in STATES}


def tcp_state(sock: Socket) -> str | None:
    """The diagram's name of the socket's state; None for UDP (no state at all)."""
    if not sock.is_tcp:
        return None
    try:
        return normalize_state(sock.state)
    except UnknownStateError:
        return None


def mirror_key(sock: Socket) -> str | None:
    """The key of the other end of a connection, when both ends are on this machine.

    A dual-stack (``::``) server's end of an IPv4 connection is a tcp6 socket with
    ``::ffff:a.b.c.d`` ends; the client's end is a plain tcp socket.
    """
    if sock.remote_addr is None or sock.remote_port is None or sock.state == "LISTEN":
        return None
    proto, local, remote = sock.proto, sock.local_addr, sock.remote_addr
    if local.startswith("::ffff:") and remote.startswith("::ffff:") and "." in remote:
        proto, local, remote = proto[:-1], local[7:], remote[7:]
    return f"{proto} {remote}:{sock.remote_port} {local}:{sock.local_port}"


class PathHistory:
    """States each socket key walked through, from the event stream; bounded."""

    def __init__(self, max_keys: int = MAX_KEYS, max_path: int = MAX_PATH) -> None:
        self.max_keys = max_keys
        self.max_path = max_path
        self.paths: OrderedDict[str, deque[str]] = OrderedDict()

    def _add(self, key: str, name: str | None, fresh: bool = False) -> None:
        if name is None:
            return
        try:
            state = normalize_state(name)
        except UnknownStateError:
            return
        path = self.paths.get(key)
        if path is None or (fresh and path and path[-1] == "CLOSED"):
            # A key reused by a new connection (same ports again) starts over.
            path = self.paths[key] = deque(maxlen=self.max_path)
        self.paths.move_to_end(key)
        if not path or path[-1] != state:
            path.append(state)
        while len(self.paths) > self.max_keys:
            self.paths.popitem(last=False)

    def record(self, events: Iterable[SocketEvent]) -> None:
        """Same rules as :func:`app.core.tcpstates.path_from_events`, one poll at a time."""
        for e in events:
            if e.kind in ("udp-opened", "udp-closed") or not e.socket.is_tcp:
                continue
            key = e.socket.key
            if e.kind == "state-changed":
                if key not in self.paths:
                    self._add(key, e.old_state)
                self._add(key, e.new_state or e.socket.state)
            elif e.kind in ("connection-closed", "listener-closed"):
                if key not in self.paths:
                    self._add(key, e.socket.state)
                self._add(key, "CLOSED")
            else:  # opened, owner-changed
                self._add(key, e.socket.state, fresh=e.kind != "owner-changed")

    def record_transitions(self, events: Iterable[WatchEvent]) -> None:
        """Every transition the kernel reported (:class:`app.core.watch.EventStream`).

        The tracepoint says ``FIN_WAIT2 -> CLOSE`` when the socket becomes a
        TIME_WAIT entry, and the socket table then says ``TIME_WAIT``: the
        path reads ``FIN_WAIT2 → TIME_WAIT`` (what the diagram draws), and the
        entry's end adds ``CLOSED``.
        """
        for e in events:
            if not e.proto.startswith("tcp") or not e.local_port:
                continue  # UDP has no states; connect()'s line has no port, no identity yet
            key = e.key
            path = self.paths.get(key)
            if path and path[-1] == "CLOSED" and e.new_state == "TIME_WAIT":
                path.pop()  # not closed: a TIME_WAIT entry took the socket's place
            elif not path or path[-1] == "CLOSED":  # a new connection, or the same ends again
                if e.old_state == "SYN_SENT":  # connect()'s line was CLOSE -> SYN_SENT
                    self._add(key, "CLOSED", fresh=True)
                    self._add(key, e.old_state)
                else:
                    self._add(key, e.old_state, fresh=True)
            self._add(key, e.new_state)

    def path(self, key: str, current: str | None) -> list[str]:
        """The remembered path, ending in ``current`` when the events missed it."""
        out = list(self.paths.get(key, ()))
        if current is not None and (not out or out[-1] != current):
            out.append(current)
        return out


def time_wait_words(state: str | None, sock: Socket | None) -> str:
    """Which end of this connection ends (or ended) in TIME_WAIT."""
    if state is None:
        return "UDP has no TIME_WAIT: there is no connection to close, the socket just goes away."
    if state == "LISTEN":
        return (
            "A listener never reaches TIME_WAIT: closing it goes straight to CLOSED. "
            "Each connection it accepted closes on its own, and the end that calls "
            "close() first keeps TIME_WAIT."
        )
    side = close_side(state)
    if side == "active":
        return (
            "This end called close() first (the active closer): it is the end that "
            "ends in TIME_WAIT, about 60 s, owned by no process."
        )
    if side == "passive":
        return (
            "The peer called close() first: the peer ends in TIME_WAIT; this end goes "
            "LAST_ACK → CLOSED without it."
        )
    if state == "CLOSED":
        return "The connection is gone from the kernel's table."
    return (
        "Whichever end calls close() first ends in TIME_WAIT; the other goes through "
        "CLOSE_WAIT and LAST_ACK. Kill the client first and the client's socket "
        "lingers in TIME_WAIT; kill the server first and the server's does."
    )


LANE = 22  # columns per lane of the compact diagram: two lanes fit 44 columns


def lanes_lines(current: str | None) -> list[str]:
    """The state machine in two lanes, for a narrow column (44 columns).

    Left: the server's opening and the end that closes first; right: the
    client's opening and the end that closes second. Same convention as the
    full diagram: the current state alone is upper case in ``[*...*]``.
    """

    def slot(state: str) -> str:
        label = f"[*{state}*]" if state == current else state.lower()
        return label

    def row(left: str, right: str = "") -> str:
        return (left.ljust(LANE) + right).rstrip()

    est = slot("ESTABLISHED").center(15)
    return [
        row("server: passive open", "client: active open"),
        row(slot("CLOSED"), slot("CLOSED")),
        row("  │ listen()", "  │ connect()"),
        row("  ▼", "  ▼ snd SYN"),
        row(slot("LISTEN"), slot("SYN_SENT")),
        row("  │ rcv SYN", "  │ rcv SYN,ACK"),
        row("  ▼ snd SYN,ACK", "  │ snd ACK"),
        row(slot("SYN_RECV"), "  │"),
        row("  │ rcv ACK", "  │"),
        f"  └──▶{est}◀──┘",
        "  ┌──────────┴──────────┐",
        row("  │ closes first", "  │ closes second"),
        row("  │ (active close)", "  │ (passive close)"),
        row("  │ close(), snd FIN", "  │ rcv FIN, snd ACK"),
        row("  ▼", "  ▼"),
        row(slot("FIN_WAIT1"), slot("CLOSE_WAIT")),
        row("  │ rcv ACK", "  │ close(), snd FIN"),
        row("  ▼", "  ▼"),
        row(slot("FIN_WAIT2"), slot("LAST_ACK")),
        row("  │ rcv FIN, snd ACK", "  │ rcv ACK"),
        row("  ▼", "  ▼"),
        row(slot("TIME_WAIT"), slot("CLOSED")),
        row("  │ 2 MSL (60 s)"),
        row("  ▼"),
        row(slot("CLOSED")),
        "both close at once:",
        f"  fin_wait1 → {slot('CLOSING')} → time_wait",
    ]


class StateMachinePanel(InstrumentPanel):
    """The state machine, the selected socket's state and the path it took."""

    DEFAULT_CSS = """
    StateMachinePanel {
        height: 1fr;
        padding: 0 1;
    }
    StateMachinePanel > Static {
        height: auto;
        width: 1fr;
    }
    StateMachinePanel #machine-scroll {
        height: auto;
        width: 1fr;
        scrollbar-size-horizontal: 1;
    }
    StateMachinePanel #machine-diagram {
        width: auto;
        height: auto;
    }
    StateMachinePanel #machine-explain {
        margin: 1 0 0 0;
    }
    StateMachinePanel #machine-lanes, StateMachinePanel #machine-full-title {
        display: none;
        width: auto;
    }
    StateMachinePanel.-narrow #machine-lanes, StateMachinePanel.-narrow #machine-full-title {
        display: block;
    }
    StateMachinePanel #machine-full-title {
        margin: 1 0 0 0;
        text-style: bold;
    }
    """

    NARROW = 76  # columns: below this the two-lane diagram comes first

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = PathHistory()
        self.seeing: str | None = None  # what the event stream can see, in words
        self.follow: Follow = Follow()
        self.socket: Socket | None = None
        self.gone = False
        self.peer: Socket | None = None
        self._shown: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="machine-head")
        yield Static(id="machine-lanes")
        yield Static(
            "RFC 793's full diagram (scroll sideways, or z to zoom):", id="machine-full-title"
        )
        with HorizontalScroll(id="machine-scroll"):
            yield Static(id="machine-diagram")
        yield Static(id="machine-explain")

    def on_resize(self) -> None:
        narrow = self.size.width < self.NARROW
        if narrow == self.has_class("-narrow"):
            return
        self.set_class(narrow, "-narrow")
        # Narrow: head, two lanes, explanation, then the wide diagram to scroll.
        # Wide: head, the diagram, then the explanation.
        explain = self.query_one("#machine-explain", Static)
        if narrow:
            self.move_child(explain, after=self.query_one("#machine-lanes", Static))
        else:
            self.move_child(explain, after=self.query_one("#machine-scroll"))

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._show(force=True))
        self._show(force=True)

    # -- the main screen's interface ---------------------------------------------------
    def select_socket(self, sock: Socket) -> None:
        if not self.follow.accept(self, sock):
            return
        if self.socket is None or sock.key != self.socket.key:
            self.gone = False
            self.peer = None
        self.socket = sock
        self._show()

    def update_snapshot(
        self,
        snapshot: Snapshot,
        events: list[SocketEvent],
        transitions: list[WatchEvent] | None = None,
        seeing: str | None = None,
    ) -> None:
        """A poll's result; ``transitions`` from the event stream replace the sampled
        ``events`` in the path (they hold every state, the samples only some)."""
        if transitions is None:
            self.history.record(events)
        else:
            self.history.record_transitions(transitions)
        self.seeing = seeing
        self.follow.seen(snapshot)
        if self.socket is not None:
            fresh = snapshot.by_key.get(self.socket.key)
            self.gone = fresh is None
            if fresh is not None:
                self.socket = fresh
            mirror = mirror_key(self.socket)
            self.peer = snapshot.by_key.get(mirror) if mirror else None
        self._show()

    # -- what is shown ---------------------------------------------------------------------
    @property
    def current(self) -> str | None:
        """The marked state: None with nothing selected or for UDP."""
        if self.socket is None:
            return None
        if self.gone:
            return "CLOSED"
        return tcp_state(self.socket)

    @property
    def path(self) -> list[str]:
        if self.socket is None or not self.socket.is_tcp:
            return []
        return self.history.path(self.socket.key, self.current)

    def _show(self, force: bool = False) -> None:
        if not self.is_mounted:
            return
        sock = self.socket
        signature = (
            self.seeing,
            sock and (sock.key, sock.state, sock.owner_label),
            self.gone,
            tuple(self.path),
            self.peer and (self.peer.state, self.peer.owner_label),
        )
        if signature == self._shown and not force:
            return
        self._shown = signature
        self.query_one("#machine-head", Static).update(self._head())
        self.query_one("#machine-diagram", Static).update(self._diagram())
        self.query_one("#machine-lanes", Static).update(self._lanes())
        self.query_one("#machine-explain", Static).update(self._explain())

    def _head(self) -> Text:
        sock = self.socket
        if sock is None:
            return Text(
                "No socket selected: select a row in the LISTEN or ESTABLISHED table "
                "to see its state marked here."
            )
        head = Text()
        if sock.state == "LISTEN":
            head.append(f"{sock.local} listening", style="bold")
        else:
            head.append(f"{sock.local} → {sock.remote}", style="bold")
        head.append(f"  {sock.proto} · {sock.owner_label}")
        current = self.current
        if current is None:
            head.append("\nstate: none (UDP is connection-less)")
            return head
        head.append("\nstate: ")
        head.append(current, style="bold")
        if self.gone:
            head.append(" (the socket is gone)")
        path = self.path
        if len(path) > 1:
            head.append("\npath seen: " + " → ".join(path))
        head.append(f"\n({self._seen_how()})")
        return head

    def _seen_how(self) -> str:
        """What the path can hold, in words: every transition, or samples."""
        if self.seeing is None:
            return (
                "states sampled at each poll: a state that lasts less than the interval is not seen"
            )
        if self.seeing.startswith("every transition"):
            return (
                "every transition the kernel made; TIME_WAIT is not one of its "
                "transitions, so it comes from the socket table"
            )
        return self.seeing

    def _current_style(self) -> Style:
        colours = self.app.get_css_variables()
        accent, background = colours.get("accent"), colours.get("background")
        if accent and background:
            return Style(bold=True, color=background, bgcolor=accent)
        return Style(bold=True, reverse=True)

    def _styled(self, lines: list[str]) -> Text:
        """Lines of a diagram with the current state in the accent colour and bold,
        the states seen before it underlined (the shape already tells them apart)."""
        current = self.current
        text = Text("\n".join(lines), no_wrap=True)
        plain = text.plain
        for state in set(self.path) - {current}:
            for match in _LABELS[state].finditer(plain):
                text.stylize("bold underline", match.start(), match.end())
        if current is not None:
            mark = f"[*{current}*]"
            start = plain.find(mark)
            while start >= 0:
                text.stylize(self._current_style(), start, start + len(mark))
                start = plain.find(mark, start + len(mark))
        if len(self.path) > 1:
            text.append("\nunderlined = states this socket was seen in")
        return text

    def _diagram(self) -> Text:
        return self._styled(diagram_lines(self.current))

    def _lanes(self) -> Text:
        return self._styled(lanes_lines(self.current))

    def _explain(self) -> RenderableType:
        sock = self.socket
        current = self.current
        if sock is None:
            return Text(
                "Every TCP connection starts and ends in CLOSED. The server's socket "
                "goes LISTEN (and each client it accepts gets a socket of its own); "
                "the client's goes SYN_SENT → ESTABLISHED; the end that closes first "
                "ends in TIME_WAIT."
            )
        parts: list[RenderableType] = []
        if current is None:
            parts.append(Text(explain("NONE")))
        else:
            parts.append(Text(explain(current)))
        parts.append(Text(time_wait_words(current, sock)))
        if self.peer is not None:
            peer_state = tcp_state(self.peer) or self.peer.state
            parts.append(
                Text.assemble(
                    "Other end, on this machine: ",
                    (f"{self.peer.local} {peer_state}", "bold"),
                    f" ({self.peer.owner_label})",
                )
            )
        if current is not None:
            arrows = transitions_from(current)
            if arrows:
                lines = Text(f"From {current}:", style="bold")
                for t in arrows:
                    lines.append(f"\n → {t.dst}: ", style="bold")
                    lines.append(f"{t.event} ({SIDE_WORDS.get(t.side, t.side)})")
                parts.append(lines)
        return Group(*parts)

    # -- for tests and the report -------------------------------------------------------
    def text(self, width: int | None = None) -> str:
        """Head, explanation and both diagrams as plain text (diagrams never wrapped)."""
        width = width or max(self.content_size.width, 20)
        head = render_plain([self._head(), self._explain()], width)
        return "\n".join([head, self._lanes().plain, self._diagram().plain, ""])
