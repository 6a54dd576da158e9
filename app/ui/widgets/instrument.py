"""What the side column's instrument panels share (Scan, Bytes, TCP states, Backlog).

:class:`InstrumentPanel` is the screen's seam: after each poll it calls
``update_snapshot`` (and ``update_interfaces`` when the poll read them), and
``select_socket`` when the highlighted socket row changes
(the screen finds the panels by this class). :class:`Follow` tells a user's choice of
row from the cursor being pushed around; the focus helpers give the dashboard's
one-letter keys back when a panel's field is left or its tab is hidden.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Sequence

from rich.console import Console, RenderableType
from textual import events
from textual.containers import VerticalScroll
from textual.widget import Widget

from app.core.interfaces import Interface
from app.core.model import Snapshot, Socket, SocketEvent


class InstrumentPanel(VerticalScroll):
    """A side-column panel that follows the polls and the highlighted socket row."""

    follow: Follow | None = None  # the row it follows, where it follows one

    def select_socket(self, sock: Socket) -> None:
        """The highlighted socket row changed (or the same row was polled again)."""

    def update_snapshot(self, snapshot: Snapshot, events: list[SocketEvent]) -> None:
        """A poll's result."""

    def update_interfaces(self, interfaces: Sequence[Interface]) -> None:
        """The interfaces, as the poller read them (every few polls; ``host/eth0`` for a
        lab host's)."""


HOME = "#listen"  # where Escape sends the keyboard: the LISTEN table, as the filter's Enter does


def shown(widget: Widget) -> bool:
    """The widget and every container above it are displayed (its tab is the open one)."""
    return all(node.display for node in widget.ancestors_with_self)


def give_keys_back(widget: Widget) -> None:
    """Move the focus out of a panel's field, so the dashboard's one-letter keys work again.

    To the LISTEN table when it can be seen; otherwise (zoomed) to nothing, where
    the screen's own bindings answer every key too.
    """
    screen = widget.screen
    home = next(iter(screen.query(HOME)), None)
    if home is not None and home.focusable and shown(home):
        screen.set_focus(home)
    else:
        screen.set_focus(None)


def keep_focus_out_of_hidden(panel: Widget, event: events.DescendantFocus) -> None:
    """Call from a tab panel's ``on_descendant_focus``.

    A list of the panel had the focus and a key (``b``, ``m``...) opened another
    tab: Textual then hands the focus to a sibling of the list, still in this
    hidden panel, and the tabs switch straight back to it. Stop that focus here,
    before it reaches the tab pane, and give the keys back to the dashboard.
    """
    if not shown(panel):
        event.stop()
        give_keys_back(panel)


def home_after_hidden_blur(panel: Widget) -> None:
    """Call from a tab panel's ``on_descendant_blur``: a field of the panel lost the focus
    because another tab opened, and nothing took it (a drop-down list has no focusable
    sibling); the LISTEN table takes it, so that the arrows move its cursor at once."""
    if not shown(panel) and panel.screen.focused is None:
        give_keys_back(panel)


class Follow:
    """Tells a user's choice of socket row from the cursor being pushed around.

    The screen reports the highlighted row of the focused socket table after
    every poll. Two things move that row without anyone choosing:

    * zooming (z) hides the tables and focus falls on a hidden one;
    * the selected socket changes state and leaves its table (a connection
      going ESTABLISHED -> TIME_WAIT moves to "Other states"), so the cursor
      lands on a neighbour.

    In both cases a panel keeps following the socket it had, by key, until
    the user really picks another row: moving the cursor off the row it was
    pushed onto is such a pick. A change of view (a filter, lab-only) is the
    user's choice too: the screen calls :meth:`reset` and the panel follows the
    cursor again, never a row the view now hides.
    """

    def __init__(self) -> None:
        self.key: str | None = None
        self.table: str | None = None  # id of the table the choice was made in
        self.landed: str | None = None  # the row the cursor was pushed onto
        self.alive: Collection[str] = ()  # keys of the last snapshot

    def seen(self, snapshot: Snapshot) -> None:
        self.alive = snapshot.by_key

    def reset(self) -> None:
        """The user changed what the tables show: the next highlighted row is a choice."""
        self.key = self.table = self.landed = None

    def accept(self, panel: Widget, sock: Socket) -> bool:
        """True when ``sock`` should become the panel's socket."""
        focused = panel.app.focused
        if self.key is None or sock.key == self.key:
            self._chose(sock, focused)
            return True
        if focused is not None and not all(n.display for n in focused.ancestors_with_self):
            return False  # a table nobody can see: not a choice
        if sock.key == self.landed:
            return False  # still the row the cursor was pushed onto
        rows = getattr(focused, "rows", None)
        if (
            focused is not None
            and focused.id == self.table
            and rows is not None
            and self.key not in rows
            and self.key in self.alive
            and self.landed is None
        ):
            self.landed = sock.key  # our row left this table, the socket lives on
            return False
        # Else the cursor moved off the row it was pushed onto: the user picked this one.
        self._chose(sock, focused)
        return True

    def _chose(self, sock: Socket, focused: Widget | None) -> None:
        if sock.key != self.key:
            self.landed = None
        self.key = sock.key
        self.table = focused.id if focused is not None else None


def render_plain(parts: Iterable[RenderableType] | Sequence[RenderableType], width: int) -> str:
    """Render Rich renderables to plain text at ``width`` columns."""
    out = io.StringIO()
    console = Console(
        width=width, file=out, color_system=None, legacy_windows=False, force_terminal=False
    )
    for part in parts:
        console.print(part)
    return out.getvalue()
