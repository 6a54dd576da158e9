"""The TCP state machine (RFC 793, figure 6) as data, text and explanations.

* :data:`STATES` and :data:`TRANSITIONS`: the diagram as data, each
  transition with the event that causes it ("rcv SYN, snd SYN,ACK") and the
  side it belongs to (active/passive open, active/passive close).
* :func:`render_diagram`: the diagram drawn with box-drawing characters in
  76 x 22 cells, the current state marked by shape (``[*ESTABLISHED*]``, the
  only state name in upper case), never by colour alone; a path of states is
  listed underneath.
* :func:`path_from_events`: the states one connection walked through, from
  the observatory's :class:`~app.core.model.SocketEvent` stream.
* :func:`explain`: one sentence per state for students.

State names are the ones ``ss`` and the model use (``SYN_RECV``,
``FIN_WAIT1``...), except that the diagram's ``CLOSED`` is what the kernel
(and so the model) calls ``CLOSE``; :func:`normalize_state` maps one onto the
other, and also accepts the RFC's spellings (``SYN-RECEIVED``, ``FIN-WAIT-1``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.core.model import SocketEvent

STATES = (
    "CLOSED",
    "LISTEN",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "CLOSING",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
)

Side = Literal["active-open", "passive-open", "active-close", "passive-close", "any"]

# The end that calls close() first goes through these, and ends in TIME_WAIT.
ACTIVE_CLOSE_STATES = ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "TIME_WAIT")
# The end that receives the first FIN goes through these, and skips TIME_WAIT.
PASSIVE_CLOSE_STATES = ("CLOSE_WAIT", "LAST_ACK")

_ALIASES = {
    "CLOSE": "CLOSED",  # the kernel's (and ss's, psutil's) name
    "NEW_SYN_RECV": "SYN_RECV",  # Linux's request socket before it is a full socket
    "SYN_RECEIVED": "SYN_RECV",  # RFC 793
    "SYN_RCVD": "SYN_RECV",  # BSD / Stevens
    "FIN_WAIT_1": "FIN_WAIT1",
    "FIN_WAIT_2": "FIN_WAIT2",
    "TIMEWAIT": "TIME_WAIT",
    "ESTAB": "ESTABLISHED",  # ss's short form
}


class UnknownStateError(ValueError):
    """A name that is not a TCP state; the message is one line in words."""


def normalize_state(name: str) -> str:
    """The diagram's name for a state written the model's, ss's or the RFC's way.

    ``CLOSE`` -> ``CLOSED``, ``SYN-RECEIVED`` -> ``SYN_RECV``,
    ``fin-wait-1`` -> ``FIN_WAIT1``.

    Raises:
        UnknownStateError: not a TCP state (UDP's ``NONE`` is not one either).
    """
    key = name.strip().upper().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in STATES:
        raise UnknownStateError(f"{name!r} is not a TCP state; the states are {', '.join(STATES)}")
    return key


@dataclass(frozen=True, slots=True)
class Transition:
    """One arrow of the diagram."""

    src: str
    dst: str
    event: str  # what happens: "rcv SYN, snd SYN,ACK" (rcv = receive, snd = send)
    side: Side
    drawn: bool = True  # False: rare or crowded arrows the text diagram leaves out

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.src,
            "to": self.dst,
            "event": self.event,
            "side": self.side,
            "drawn": self.drawn,
        }


TRANSITIONS: tuple[Transition, ...] = (
    Transition("CLOSED", "LISTEN", "passive open: listen()", "passive-open"),
    Transition("CLOSED", "SYN_SENT", "active open: connect(), snd SYN", "active-open"),
    Transition("LISTEN", "SYN_RECV", "rcv SYN, snd SYN,ACK", "passive-open"),
    Transition("LISTEN", "SYN_SENT", "send data, snd SYN", "active-open", drawn=False),
    Transition("LISTEN", "CLOSED", "close()", "passive-open", drawn=False),
    Transition("SYN_SENT", "ESTABLISHED", "rcv SYN,ACK, snd ACK", "active-open"),
    Transition(
        "SYN_SENT",
        "SYN_RECV",
        "rcv SYN, snd SYN,ACK (simultaneous open)",
        "active-open",
        drawn=False,
    ),
    Transition("SYN_SENT", "CLOSED", "close(), or timeout", "active-open", drawn=False),
    Transition("SYN_RECV", "ESTABLISHED", "rcv ACK of SYN", "passive-open"),
    Transition("SYN_RECV", "LISTEN", "rcv RST", "passive-open", drawn=False),
    Transition("SYN_RECV", "FIN_WAIT1", "close(), snd FIN", "active-close", drawn=False),
    Transition("ESTABLISHED", "FIN_WAIT1", "close(), snd FIN", "active-close"),
    Transition("ESTABLISHED", "CLOSE_WAIT", "rcv FIN, snd ACK", "passive-close"),
    Transition("FIN_WAIT1", "FIN_WAIT2", "rcv ACK of FIN", "active-close"),
    Transition("FIN_WAIT1", "CLOSING", "rcv FIN, snd ACK (simultaneous close)", "active-close"),
    Transition("FIN_WAIT1", "TIME_WAIT", "rcv FIN,ACK, snd ACK", "active-close", drawn=False),
    Transition("FIN_WAIT2", "TIME_WAIT", "rcv FIN, snd ACK", "active-close"),
    Transition("CLOSING", "TIME_WAIT", "rcv ACK of FIN", "active-close"),
    Transition("TIME_WAIT", "CLOSED", "timeout after 2MSL (60 s on Linux)", "active-close"),
    Transition("CLOSE_WAIT", "LAST_ACK", "close(), snd FIN", "passive-close"),
    Transition("LAST_ACK", "CLOSED", "rcv ACK of FIN", "passive-close"),
    # Not in RFC 793's figure, but what kill -9 with unread data, or a peer's
    # RST, does to any synchronized connection.
    Transition("ESTABLISHED", "CLOSED", "rcv RST, or abort: snd RST", "any", drawn=False),
)


def transitions_from(state: str) -> list[Transition]:
    """Every arrow leaving ``state`` (any spelling :func:`normalize_state` knows)."""
    src = normalize_state(state)
    return [t for t in TRANSITIONS if t.src == src]


def find_transition(src: str, dst: str) -> Transition | None:
    """The arrow from ``src`` to ``dst``, or None when the diagram has none.

    Polls can miss short-lived states, so consecutive states of an observed
    path need not be joined by one arrow.
    """
    a, b = normalize_state(src), normalize_state(dst)
    for t in TRANSITIONS:
        if t.src == a and t.dst == b:
            return t
    return None


def close_side(state: str) -> Literal["active", "passive"] | None:
    """Which closer goes through ``state``: the one that closed first, or the other."""
    name = normalize_state(state)
    if name in ACTIVE_CLOSE_STATES:
        return "active"
    if name in PASSIVE_CLOSE_STATES:
        return "passive"
    return None


_EXPLANATIONS = {
    "CLOSED": (
        "CLOSED: there is no connection at all (ss shows no row); every connection "
        "starts and ends here."
    ),
    "LISTEN": (
        "LISTEN: a server called listen() and waits for clients; the kernel completes "
        "their handshakes by itself and queues them until the program calls accept()."
    ),
    "SYN_SENT": (
        "SYN_SENT: a client called connect() and sent a SYN; it waits for the server's "
        "SYN,ACK (a socket stuck here means nobody answers)."
    ),
    "SYN_RECV": (
        "SYN_RECV: the server's kernel received a SYN and answered SYN,ACK; it waits for "
        "the client's ACK that completes the three-way handshake."
    ),
    "ESTABLISHED": (
        "ESTABLISHED: the three-way handshake is done and both ends may send data; "
        "ss shows one row for each end of the connection."
    ),
    "FIN_WAIT1": (
        "FIN_WAIT1: this end closed first (the active closer) and sent a FIN; it waits "
        "for the peer to acknowledge it, and will end in TIME_WAIT."
    ),
    "FIN_WAIT2": (
        "FIN_WAIT2: the active closer's FIN was acknowledged; it waits for the peer to "
        "close too and send its own FIN, then goes to TIME_WAIT."
    ),
    "CLOSING": (
        "CLOSING: both ends sent a FIN at the same time (simultaneous close), so both "
        "are active closers; each waits for the ACK of its FIN, then goes to TIME_WAIT."
    ),
    "TIME_WAIT": (
        "TIME_WAIT: the active closer, the end that called close() first, waits 2*MSL "
        "(60 s on Linux) so that late packets die out; no process owns the socket any more."
    ),
    "CLOSE_WAIT": (
        "CLOSE_WAIT: the peer closed first (its FIN arrived) and this end, the passive "
        "closer, waits for its program to call close(); stuck here means it never does."
    ),
    "LAST_ACK": (
        "LAST_ACK: the passive closer called close() and sent its own FIN; it waits for "
        "the last ACK and then is gone, without TIME_WAIT (that is the active closer's)."
    ),
}

_UDP_EXPLANATION = (
    "NONE: UDP is connection-less, so a UDP socket has no state at all: no LISTEN, no "
    "handshake, no ESTABLISHED, no TIME_WAIT."
)


def explain(state: str) -> str:
    """One sentence for students about ``state`` (any known spelling, or UDP's NONE).

    Raises:
        UnknownStateError: not a TCP state nor ``NONE``.
    """
    if state.strip().upper() == "NONE":
        return _UDP_EXPLANATION
    return _EXPLANATIONS[normalize_state(state)]


def path_from_events(
    events: Iterable[SocketEvent], key: str, *, closed_at_end: bool = True
) -> list[str]:
    """The states the socket ``key`` walked through, in the diagram's names.

    Events are taken in time order (``at``; ties keep their given order). A
    ``state-changed`` event contributes its old state (when the path is empty)
    and its new one; an opened or owner-changed event the socket's state; a
    closed event ``CLOSED`` (the socket left the kernel's table), unless
    ``closed_at_end`` is False. Repeats in a row are dropped, the model's
    ``CLOSE`` becomes ``CLOSED``, and UDP events (no TCP state) are ignored.

    Args:
        events: SocketEvents of any sockets, e.g. everything ``diff()`` returned
            over a session.
        key: the socket's key (``SocketEvent.key`` or ``Socket.key``).
        closed_at_end: add ``CLOSED`` when the socket disappeared.
    """
    path: list[str] = []

    def add(name: str | None) -> None:
        if name is None:
            return
        try:
            state = normalize_state(name)
        except UnknownStateError:
            return  # UDP's NONE, or a state this diagram does not draw
        if not path or path[-1] != state:
            path.append(state)

    mine = [e for e in events if e.key == key or e.socket.key == key]
    for event in sorted(mine, key=lambda e: e.at):
        if event.kind in ("udp-opened", "udp-closed"):
            continue
        if event.kind == "state-changed":
            if not path:
                add(event.old_state)
            add(event.new_state if event.new_state is not None else event.socket.state)
        elif event.kind in ("connection-closed", "listener-closed"):
            if not path:
                add(event.socket.state)
            if closed_at_end:
                add("CLOSED")
        else:  # listener-opened, connection-opened, owner-changed
            add(event.socket.state)
    return path


# --- the diagram --------------------------------------------------------------

SLOT = 15  # width of a state's cell: "[*ESTABLISHED*]" fits exactly
WIDTH = 76
_LEFT, _MID, _RIGHT = 2, 30, 58  # slot columns; centres at 9, 37, 65
_CL, _CM, _CR = _LEFT + SLOT // 2, _MID + SLOT // 2, _RIGHT + SLOT // 2

# Where each state's cell sits (row, column). CLOSED is drawn twice: where a
# connection starts (top) and where it ends (bottom right).
_SLOTS: dict[str, tuple[tuple[int, int], ...]] = {
    "CLOSED": ((0, _MID), (21, _RIGHT)),
    "LISTEN": ((3, _LEFT),),
    "SYN_SENT": ((3, _RIGHT),),
    "SYN_RECV": ((6, _LEFT),),
    "ESTABLISHED": ((9, _MID),),
    "FIN_WAIT1": ((13, _LEFT),),
    "CLOSE_WAIT": ((13, _RIGHT),),
    "FIN_WAIT2": ((16, _LEFT),),
    "CLOSING": ((16, _MID),),
    "LAST_ACK": ((16, _RIGHT),),
    "TIME_WAIT": ((19, _LEFT),),
}
ROWS = 22

_ASCII = str.maketrans("─│┌┐└┘┴▼▶◀", "-|+++++v><")


class _Canvas:
    def __init__(self, rows: int, cols: int) -> None:
        self.cells = [[" "] * cols for _ in range(rows)]

    def put(self, row: int, col: int, text: str) -> None:
        for i, ch in enumerate(text):
            self.cells[row][col + i] = ch

    def put_end(self, row: int, last_col: int, text: str) -> None:
        """Text whose last character lands on ``last_col``."""
        self.put(row, last_col - len(text) + 1, text)

    def hline(self, row: int, first: int, last: int) -> None:
        self.put(row, first, "─" * (last - first + 1))

    def vline(self, col: int, first: int, last: int, arrow: bool = True) -> None:
        for row in range(first, last + 1):
            self.cells[row][col] = "│"
        if arrow:
            self.cells[last][col] = "▼"

    def put_slot(self, row: int, col: int, label: str) -> None:
        """A state's name centred in its cell; a line reaching the cell runs on
        through the padding up to the name, arrow head included."""
        left = (SLOT - len(label)) // 2
        right = SLOT - len(label) - left
        self.put(row, col, " " * left + label + " " * right)
        if left > 1 and col > 0 and self.cells[row][col - 1] in "─▶":
            head = self.cells[row][col - 1]
            self.cells[row][col - 1] = "─"
            self.put(row, col, "─" * (left - 1))
            self.cells[row][col + left - 2] = head
        end = col + SLOT
        if right > 1 and end < len(self.cells[row]) and self.cells[row][end] in "─◀":
            head = self.cells[row][end]
            self.cells[row][end] = "─"
            self.put(row, end - right + 1, "─" * (right - 1))
            self.cells[row][end - right + 1] = head

    def lines(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.cells]


def _draw_edges(c: _Canvas) -> None:
    """Every arrow of the diagram and its words; the states' names go on top."""
    _draw_opening(c)
    _draw_closing(c)
    _draw_ending(c)


def _draw_opening(c: _Canvas) -> None:
    """From CLOSED to ESTABLISHED: the passive and the active open, the handshake."""
    # CLOSED -> LISTEN (passive open) and CLOSED -> SYN_SENT (active open).
    c.put(0, _CL, "┌")
    c.hline(0, _CL + 1, _MID - 1)
    c.hline(0, _MID + SLOT, _CR - 1)
    c.put(0, _CR, "┐")
    c.vline(_CL, 1, 2)
    c.vline(_CR, 1, 2)
    c.put(1, _CL + 2, "passive open: listen()")
    c.put_end(1, _CR - 2, "active open: connect()")
    c.put_end(2, _CR - 2, "snd SYN")
    # LISTEN -> SYN_RECV.
    c.vline(_CL, 4, 5)
    c.put(4, _CL + 2, "rcv SYN, snd SYN,ACK")
    # SYN_RECV -> ESTABLISHED <- SYN_SENT.
    c.vline(_CL, 7, 8, arrow=False)
    c.put(7, _CL + 2, "rcv ACK of SYN")
    c.vline(_CR, 4, 8, arrow=False)
    c.put_end(5, _CR - 2, "rcv SYN,ACK, snd ACK")
    c.put(9, _CL, "└")
    c.hline(9, _CL + 1, _MID - 2)
    c.put(9, _MID - 1, "▶")
    c.put(9, _MID + SLOT, "◀")
    c.hline(9, _MID + SLOT + 1, _CR - 1)
    c.put(9, _CR, "┘")


def _draw_closing(c: _Canvas) -> None:
    """From ESTABLISHED to the FIN_WAITs, CLOSING and LAST_ACK: the two closes."""
    # ESTABLISHED -> FIN_WAIT1 (active close) and -> CLOSE_WAIT (passive close).
    c.put(10, _CL, "┌")
    c.hline(10, _CL + 1, _CR - 1)
    c.put(10, _CM, "┴")
    c.put(10, _CR, "┐")
    c.put(10, _CL + 3, " active close ")
    c.put_end(10, _CR - 3, " passive close ")
    c.vline(_CL, 11, 12)
    c.vline(_CR, 11, 12)
    c.put(11, _CL + 2, "close(), snd FIN")
    c.put_end(11, _CR - 2, "rcv FIN, snd ACK")
    # FIN_WAIT1 -> FIN_WAIT2, FIN_WAIT1 -> CLOSING, CLOSE_WAIT -> LAST_ACK.
    c.vline(_CL, 14, 15)
    c.put(14, _CL + 2, "rcv ACK of FIN")
    c.hline(13, _LEFT + SLOT, _CM - 1)
    c.put(13, _CM, "┐")
    c.vline(_CM, 14, 15)
    c.put(14, _CM + 2, "rcv FIN, snd ACK")
    c.vline(_CR, 14, 15)
    c.put_end(15, _CR - 2, "close(), snd FIN")


def _draw_ending(c: _Canvas) -> None:
    """Into TIME_WAIT and back to CLOSED: LAST_ACK's end, and 2MSL."""
    # FIN_WAIT2 -> TIME_WAIT, CLOSING -> TIME_WAIT, LAST_ACK -> CLOSED.
    c.vline(_CL, 17, 18)
    c.put(17, _CL + 2, "rcv FIN, snd ACK")
    c.vline(_CM, 17, 18, arrow=False)
    c.put(17, _CM + 2, "rcv ACK of FIN")
    c.put(19, _LEFT + SLOT, "◀")
    c.hline(19, _LEFT + SLOT + 1, _CM - 1)
    c.put(19, _CM, "┘")
    c.vline(_CR, 17, 20)
    c.put_end(18, _CR - 2, "rcv ACK of FIN")
    # TIME_WAIT -> CLOSED after 2MSL.
    c.vline(_CL, 20, 20, arrow=False)
    c.put(20, _CL + 2, "timeout after 2MSL (60 s on Linux)")
    c.put(21, _CL, "└")
    c.hline(21, _CL + 1, _RIGHT - 2)
    c.put(21, _RIGHT - 1, "▶")


def state_label(state: str, current: bool) -> str:
    """How a state's cell reads: ``[*FIN_WAIT1*]`` when current, else ``fin_wait1``.

    The current state is the only name in upper case and the only one in
    brackets and asterisks, so it stands out without colour.
    """
    return f"[*{state}*]" if current else state.lower()


def diagram_lines(
    current: str | None = None,
    path: Sequence[str] = (),
    *,
    ascii: bool = False,
    width: int = WIDTH,
) -> list[str]:
    """The diagram (22 rows, at most 74 columns), then a legend and the path.

    Args:
        current: the state to mark, in any spelling :func:`normalize_state`
            knows; None marks nothing.
        path: states to list underneath (``path: ESTABLISHED -> FIN_WAIT1``).
        ascii: draw with ``-|+v><`` only, for terminals without box-drawing
            glyphs.
        width: wrap the path line to this many columns.

    Raises:
        UnknownStateError: ``current`` or a state of ``path`` is not a TCP state.
    """
    marked = normalize_state(current) if current is not None else None
    walked = [normalize_state(s) for s in path]
    canvas = _Canvas(ROWS, WIDTH)
    _draw_edges(canvas)
    for state, places in _SLOTS.items():
        label = state_label(state, state == marked)
        for row, col in places:
            canvas.put_slot(row, col, label)
    lines = canvas.lines()
    if marked is not None:
        lines.append(f"[*{marked}*] = current state ({close_side_words(marked)})")
    if walked:
        arrow = " -> " if ascii else " → "
        text = "path: " + arrow.join(walked)
        lines.extend(textwrap.wrap(text, width, subsequent_indent="      ", break_on_hyphens=False))
    if ascii:
        lines = [line.translate(_ASCII) for line in lines]
    return lines


def close_side_words(state: str) -> str:
    """A few words on the phase ``state`` belongs to, for the legend."""
    name = normalize_state(state)
    side = close_side(name)
    if side == "active":
        return "active closer: the end that closed first"
    if side == "passive":
        return "passive closer: the peer closed first"
    if name in ("LISTEN", "SYN_RECV"):
        return "server side: passive open"
    if name == "SYN_SENT":
        return "client side: active open"
    if name == "ESTABLISHED":
        return "connected: data flows both ways"
    return "no connection"


def render_diagram(
    current: str | None = None, path: Sequence[str] = (), *, ascii: bool = False
) -> str:
    """:func:`diagram_lines` joined into one string ending in a newline."""
    return "\n".join(diagram_lines(current, path, ascii=ascii)) + "\n"
