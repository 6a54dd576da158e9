"""The class screen: one row per machine of the room (up or down in words and a mark,
its LISTEN ports, ESTABLISHED count, lab processes, connections waiting in backlogs,
its newest change, the age of its data), re-drawn as each machine's answer comes
(:class:`MachineUpdated`, posted from app.core.classroom's threads: this screen does
no network I/O), sorted by ``o``; Enter opens a machine's own LISTEN and ESTABLISHED
tables (:class:`MachineScreen`, the dashboard's columns, fed by the agent), Esc comes
back. Read-only by construction: no key here starts, stops or kills anything.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from app.core.classroom import MachineRow
from app.core.model import Snapshot, Socket
from app.ui.cells import ESTABLISHED_COLUMNS, LISTEN_COLUMNS, row_cells, sort_function, with_host
from app.ui.rows import Marked, ViewOptions
from app.ui.themes import ORANGE, SKY_BLUE
from app.ui.widgets.keyed_table import Cell, KeyedTable, TableRow

UP_STYLE = f"bold {SKY_BLUE}"
DOWN_STYLE = f"bold {ORANGE}"
# A projected table stays narrow (120 columns hold it all): the line under it says the rest.
PORTS_WIDTH = 18
HOST_WIDTH = 12
MACHINE_WIDTH = 21
EVENT_WIDTH = 30
REDRAW_DELAY = 0.1  # seconds an answer may wait to be drawn with the others

COLUMNS = [
    ("State", "state"),
    ("Machine", "target"),
    ("Name", "host"),
    ("LISTEN", "listen"),
    ("ESTAB", "established"),
    ("Lab", "processes"),
    ("Queue", "waiting"),
    ("Last event", "event"),
    ("Age", "age"),
]

# ``o`` cycles these: (column, what the toast says); None is the order the teacher gave.
SORTS: list[tuple[str | None, str]] = [
    ("state", "Sorted: machines that are down first"),
    ("listen", "Sorted: most LISTEN ports first"),
    ("established", "Sorted: most ESTABLISHED connections first"),
    ("processes", "Sorted: most lab processes first"),
    ("waiting", "Sorted: most connections waiting in backlogs first"),
    ("event", "Sorted: newest event first"),
    ("age", "Sorted: oldest data first"),
    ("target", "Sorted by machine name"),
    (None, "Sorted as the machines were given"),
]


class MachineUpdated(Message):
    """A machine answered, or failed to. Latest wins for the same machine."""

    def __init__(self, row: MachineRow) -> None:
        super().__init__()
        self.row = row

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MachineUpdated) and message.row.target == self.row.target


def duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``2h07m``: short enough for a table cell."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def whole_seconds(seconds: float) -> str:
    """How long ago, in whole seconds (``4s``, ``2m05s``): the Last event column."""
    return duration(seconds) if seconds >= 10 else f"{int(seconds)}s"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def state_cell(row: MachineRow | None) -> Cell:
    """Up or down in a word and a sign, with a colour told apart by colour-blind eyes."""
    if row is None:
        return "… asking"
    if row.up:
        return Text("✓ up", style=UP_STYLE)
    return Text(f"✗ DOWN: {row.problem or 'error'}", style=DOWN_STYLE)


def machine_cells(target: str, row: MachineRow | None, now: float) -> tuple[Cell, ...]:
    """One machine's row of the class table."""
    host = (row.host if row else None) or "-"
    age = row.age(now) if row else None
    event = "-"
    if row is not None and row.change is not None:
        ago = whole_seconds(max(0.0, now - row.change.at))
        event = _cut(f"{ago} {row.change.brief}", EVENT_WIDTH)
    if row is None or not row.up:
        counts: tuple[Cell, ...] = ("-", "-", "-", "-")
    else:
        ports = ",".join(map(str, row.listen)) or "none"
        waiting = Text(str(row.waiting), style="bold") if row.waiting else "0"
        counts = (_cut(ports, PORTS_WIDTH), str(row.established), str(row.processes), waiting)
    return (
        state_cell(row),
        _cut(target, MACHINE_WIDTH),
        _cut(host, HOST_WIDTH),
        *counts,
        event,
        "-" if age is None else duration(age),
    )


def _natural(text: str) -> tuple[object, ...]:
    """``pc2`` before ``pc10``: numbers in a name compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text.lower()))


def sort_key(
    column: str | None, name: str, index: int, row: MachineRow | None, now: float
) -> tuple[object, ...]:
    """Where a machine sorts (``index``: its place among the machines given). Machines
    that have not answered yet go last; the rest compare by keys of one shape."""
    if column is None:
        return (index,)
    if column == "target":
        return (_natural(name),)
    if row is None:
        return (True, index)
    if column == "state":
        return (False, row.up, index)
    if column == "event":
        return (False, -(row.change.at if row.change else 0.0), index)
    if column == "age":
        age = row.age(now)
        return (False, -(math.inf if age is None else age), index)
    value = {
        "listen": len(row.listen),
        "established": row.established,
        "processes": row.processes,
        "waiting": row.waiting,
    }[column]
    return (False, not row.up, -value, index)


def describe(target: str, row: MachineRow | None) -> str:
    """The line under the table: the highlighted machine, in a sentence."""
    if row is None:
        return f"{target}: no answer yet."
    if not row.up:
        return f"{target} is down: {row.error}"
    ports = ", ".join(map(str, row.listen)) or "no port"
    text = (
        f"{target} ({row.host}): LISTEN on {ports}; {row.established} ESTABLISHED; "
        f"{row.processes} lab processes; {row.waiting} waiting in backlogs. Enter: its tables."
    )
    if row.last_event:
        text += f"\nLast event: {row.last_event}"
    return text


class ClassroomScreen(Screen[None]):
    """The room: one row per machine, as given on the command line or the hosts file."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit", id="quit", tooltip="Leave the class view"),
        Binding("o", "sort", "Sort", id="sort", tooltip="Sort the machines by the next column"),
        Binding(
            "t", "app.toggle_theme", "Theme", tooltip="Switch the default and projector themes"
        ),
    ]

    def __init__(
        self, machines: list[str], interval: float, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.machines = machines
        self.interval = interval
        self.clock = clock
        self.answers: dict[str, MachineRow] = {}
        self._pending: set[str] = set()
        self._flush_due = False
        self.sort: str | None = None
        self._index = {name: i for i, name in enumerate(machines)}

    def compose(self) -> ComposeResult:
        yield Static(id="class-status", markup=False)
        yield KeyedTable(COLUMNS, id="machines")
        yield Static(id="class-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#machines", KeyedTable)
        table.set_title(f"The class: {len(self.machines)} machines (Enter: a machine's tables)")
        now = self.clock()
        table.replace([self._table_row(name, now) for name in self.machines])
        table.focus()
        self._show_status()
        self._show_detail()

    def _table_row(self, name: str, now: float) -> TableRow:
        row = self.answers.get(name)
        return TableRow(
            name,
            machine_cells(name, row, now),
            sort_key(self.sort, name, self._index[name], row, now),
        )

    @on(MachineUpdated)
    def _answered(self, message: MachineUpdated) -> None:
        """Keep the answer; draw the answers of the next tenth of a second together (thirty
        machines answering a second apart are three repaints, not thirty)."""
        row = message.row
        if row.target not in self._index:
            return
        self.answers[row.target] = row
        self._pending.add(row.target)
        if not self._flush_due:
            self._flush_due = True
            self.set_timer(REDRAW_DELAY, self._redraw)

    def _redraw(self) -> None:
        self._flush_due = False
        names, self._pending = self._pending, set()
        table = self.query_one("#machines", KeyedTable)
        now = self.clock()
        with self.app.batch_update():
            table.update([self._table_row(name, now) for name in names])
            self._show_status()
            if table.selected_key() in names:
                self._show_detail()
            for screen in self.app.screen_stack:
                if isinstance(screen, MachineScreen) and screen.target in names:
                    screen.show(self.answers[screen.target])

    def _show_status(self) -> None:
        rows = self.answers.values()
        up = sum(1 for r in rows if r.up)
        down = sum(1 for r in rows if not r.up)
        waiting = len(self.machines) - up - down
        parts = [f"{len(self.machines)} machines: {up} up, {down} down"]
        if waiting:
            parts[0] += f", {waiting} not answered yet"
        parts.append(f"asked every {self.interval:g} s")
        parts.append("read-only")
        self.query_one("#class-status", Static).update(" · ".join(parts))

    def _show_detail(self) -> None:
        key = self.query_one("#machines", KeyedTable).selected_key()
        text = "" if key is None else describe(key, self.answers.get(key))
        self.query_one("#class-detail", Static).update(text)

    @on(KeyedTable.RowHighlighted, "#machines")
    def _highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self._show_detail()

    @on(KeyedTable.RowSelected, "#machines")
    def _selected(self, event: KeyedTable.RowSelected) -> None:
        target = event.row_key.value
        self.app.push_screen(MachineScreen(target, self.answers.get(target), self.clock))

    def action_sort(self) -> None:
        columns = [column for column, _ in SORTS]
        nxt = columns.index(self.sort) + 1 if self.sort in columns else 0
        self.sort, words = SORTS[nxt % len(SORTS)]
        table = self.query_one("#machines", KeyedTable)
        now = self.clock()
        table.replace([self._table_row(name, now) for name in self.machines])
        self.notify(words, timeout=3)


# The dashboard's columns, without its NEW/GONE marks (this view shows one answer).
MACHINE_LISTEN = [c for c in LISTEN_COLUMNS if c[1] != "mark"]
MACHINE_ESTABLISHED = [c for c in ESTABLISHED_COLUMNS if c[1] != "mark"]


def socket_rows(sockets: tuple[Socket, ...], state: str, columns: list[str]) -> list[TableRow]:
    """One table of a machine: its TCP sockets in ``state``, in the dashboard's order."""
    chosen = [s for s in sockets if s.is_tcp and s.state == state]
    listening = {s.local_port for s in sockets if s.is_tcp and s.state == "LISTEN"}
    keyed = Snapshot(taken_at=0.0, sockets=tuple(chosen)).by_key
    marked = sorted(
        (Marked(key, sock, "") for key, sock in keyed.items()),
        key=sort_function(None, listening),
    )
    options = ViewOptions()
    return [TableRow(m.key, row_cells(m, columns, options)) for m in marked]


class MachineScreen(Screen[None]):
    """One machine's LISTEN and ESTABLISHED tables, as its agent saw them. Read-only."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="back", tooltip="Back to the class"),
        Binding("q", "app.quit", "Quit", id="quit", tooltip="Leave the class view"),
    ]

    def __init__(
        self, target: str, row: MachineRow | None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.target = target
        self.row = row
        self.clock = clock
        hosts = (
            row is not None
            and row.snapshot is not None
            and any(s.host for s in row.snapshot.sockets)
        )
        self._listen_columns = with_host(MACHINE_LISTEN) if hosts else MACHINE_LISTEN
        self._established_columns = with_host(MACHINE_ESTABLISHED) if hosts else MACHINE_ESTABLISHED

    def compose(self) -> ComposeResult:
        yield Static(id="machine-status", markup=False)
        yield KeyedTable(self._listen_columns, id="machine-listen")
        yield KeyedTable(self._established_columns, id="machine-established")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#machine-listen", KeyedTable).focus()
        self.show(self.row)

    def show(self, row: MachineRow | None) -> None:
        """Show the machine's newest answer (the last one it gave, while it is down)."""
        self.row = row
        snap = row.snapshot if row is not None else None
        sockets = snap.sockets if snap is not None else ()
        listen = self.query_one("#machine-listen", KeyedTable)
        established = self.query_one("#machine-established", KeyedTable)
        listen.apply(socket_rows(sockets, "LISTEN", [k for _, k in self._listen_columns]))
        established.apply(
            socket_rows(sockets, "ESTABLISHED", [k for _, k in self._established_columns])
        )
        listen.set_title(f"LISTEN on {self.target} ({listen.row_count})")
        established.set_title(f"ESTABLISHED on {self.target} ({established.row_count})")
        self.query_one("#machine-status", Static).update(self._status(row))

    def _status(self, row: MachineRow | None) -> str:
        if row is None:
            return f"{self.target}: no answer yet · read-only · Esc: back to the class"
        age = row.age(self.clock())
        old = "" if age is None else f", {duration(age)} old"
        if row.up:
            return f"{self.target} ({row.host}): its agent's data{old} · read-only · Esc: back"
        shown = f"the last answer it gave{old}" if row.snapshot is not None else "nothing"
        return f"{self.target} is DOWN: {row.error}\nShowing {shown} · Esc: back"
