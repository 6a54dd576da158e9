"""The Lab tab: the lab's processes, their buttons, and the selected one's output.

It shows what the polls and the manager's events say; what its buttons ask for
goes up as request messages (:mod:`app.ui.requests`) or as the screen's own
actions, so a button and its key always do the same thing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, RichLog

from app.core.procs import OutputLine, ProcessEvent, ProcessInfo, ProcessStarted
from app.ui.requests import KillRequested
from app.ui.widgets.keyed_table import KeyedTable, TableRow
from app.ui.words import short_state

# CPU% before State: a long state must never push it out of the narrow side column
# (the full state is on the output's title and in the Events).
PROCESS_COLUMNS = [
    ("Name", "name"),
    ("PID", "pid"),
    ("CPU%", "cpu"),
    ("State", "state"),
    ("Command", "command"),
]
# The buttons that are the screen's keys (l, X, r): the same action either way.
BUTTON_ACTIONS = {
    "btn-launch": "screen.launch",
    "btn-kill-all": "screen.kill_all",
    "btn-restart": "screen.restart",
}


class LabPanel(Vertical):
    """The lab processes table, Launch/Kill/Restart buttons and an output box.

    Args:
        output: a process's stored output lines, by name (replayed on selection).
    """

    def __init__(self, output: Callable[[str], list[str]], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._output = output
        self.processes: list[ProcessInfo] = []
        self.selected: str | None = None  # the process whose output is shown
        self._launched: set[str] = set()  # names launched from the dialog, not started yet

    def compose(self) -> ComposeResult:
        yield KeyedTable(PROCESS_COLUMNS, id="processes")
        with Horizontal(id="process-buttons"):
            yield Button("Launch", id="btn-launch", variant="success")
            yield Button("Kill", id="btn-kill", variant="warning")
            yield Button("Kill -9", id="btn-kill9", variant="error")
            yield Button("Restart", id="btn-restart")
            yield Button("Kill all", id="btn-kill-all", variant="error")
        # min_width: RichLog renders at 78 columns by default and the side
        # column is narrower, so lines were cut instead of wrapped.
        yield RichLog(id="output", max_lines=1000, wrap=True, markup=False, min_width=20)

    def on_mount(self) -> None:
        self.query_one("#output", RichLog).border_title = "output"
        self._draw()  # what a poll brought before this panel had its table

    # -- what the polls and the manager say ------------------------------------------------
    def show(self, processes: list[ProcessInfo]) -> None:
        """The table from a poll's processes."""
        self.processes = processes
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        processes = self.processes
        # Running ones first, in the order they started; then the ended, newest first:
        # what a student just killed is next to what still runs, not buried at the top.
        live = [p for p in processes if not p.ended]
        ended = sorted(
            (p for p in processes if p.ended), key=lambda p: p.ended_at or 0.0, reverse=True
        )
        rows = []
        for p in live + ended:
            cpu = "" if p.cpu_percent is None else f"{p.cpu_percent:.0f}%"
            cells = (p.name, str(p.pid or ""), cpu, short_state(p.state), p.command_line)
            rows.append(TableRow(p.name, cells))
        table = self.query_one("#processes", KeyedTable)
        table.apply(rows)
        table.set_title(f"Lab processes · {len(live)} running")
        key = self.selected
        if key is not None and table.selected_key() != key and key in table.rows:
            table.move_cursor(row=table.get_row_index(key))  # a new launch was selected
        if self.selected is None and rows:
            self.select(rows[0].key)
        else:
            self._title_output()

    def expect(self, name: str) -> None:
        """``name`` was just launched from the dialog: show its output once it starts."""
        self._launched = {name}

    def show_event(self, event: ProcessEvent) -> None:
        """A line goes to the output box (when its process is shown); a process the
        student just launched is selected as it starts."""
        log = self.query_one("#output", RichLog)
        if isinstance(event, OutputLine):
            if event.name == self.selected:
                log.write(event.text)
        elif isinstance(event, ProcessStarted):
            if event.name in self._launched:
                self._launched.discard(event.name)
                # Not replayed: its lines come after this event, each as an OutputLine
                # (a replay of those already stored would show them twice).
                self.select(event.name, replay=False)
            if event.replaced is not None and event.name == self.selected:
                log.clear()  # the ended one's lines go

    def selected_info(self) -> ProcessInfo | None:
        return next((p for p in self.processes if p.name == self.selected), None)

    def select(self, name: str, replay: bool = True) -> None:
        self.selected = name
        log = self.query_one("#output", RichLog)
        log.clear()
        self._title_output()
        if replay:
            for line in self._output(name):
                log.write(line)

    def _title_output(self) -> None:
        """The output box names its process and, whole, the state the table shortens."""
        p = self.selected_info()
        log = self.query_one("#output", RichLog)
        if self.selected is None:
            title = "output"
        else:
            title = f"{self.selected} output" + (f" · {p.state}" if p is not None else "")
        if log.border_title != title:
            log.border_title = title

    # -- what the student does -----------------------------------------------------------
    @on(KeyedTable.RowHighlighted, "#processes")
    def _row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        key = event.row_key.value  # (a process table row key is the process name)
        if key and key != self.selected:
            self.select(key)

    @on(Button.Pressed)
    async def _button(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if button in BUTTON_ACTIONS:
            await self.run_action(BUTTON_ACTIONS[button])
        elif button in ("btn-kill", "btn-kill9"):
            p = self.selected_info()
            if p is None or not p.running:
                self.notify("Select a running lab process first.", severity="warning")
                return
            sig = signal.SIGKILL if button == "btn-kill9" else signal.SIGTERM
            self.post_message(KillRequested(p.name, sig))
