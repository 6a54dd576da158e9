"""The Scan tab's history: past scans, newest first, and the choice of two to compare.

:class:`ScanHistoryView` keeps the finished scans (the last
:data:`HISTORY_SHOWN` in its table, every target's recent ones in the core's
:class:`~app.core.scan.ScanHistory`), marks scans with Enter, and offers
"vs previous" and "Compare marked". It shows no result itself: it tells the
panel with a message (:class:`ScanHistoryView.Chosen`,
:class:`ScanHistoryView.CompareAsked`, or :class:`ScanHistoryView.Refused`
with the reason in words).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalGroup
from textual.message import Message
from textual.widgets import Button, DataTable, Static

from app.core.scan import ScanHistory, ScanResult
from app.ui.widgets.scan.formatting import HISTORY_COLUMNS, history_row, mark_text

HISTORY_SHOWN = 50  # past scans listed (the oldest go first)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    key: str
    result: ScanResult


class ScanHistoryView(VerticalGroup):
    """The history table of past scans and the two compare buttons."""

    class Chosen(Message):
        """A past scan was chosen (Enter or a click): show it."""

        def __init__(self, result: ScanResult) -> None:
            super().__init__()
            self.result = result

    class CompareAsked(Message):
        """Show the compare of two scans, ``before`` the older."""

        def __init__(self, before: ScanResult, after: ScanResult) -> None:
            super().__init__()
            self.before = before
            self.after = after

    class Refused(Message):
        """A compare was asked for that cannot be made; ``reason`` says why, in words."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history = ScanHistory()
        self.entries: list[HistoryEntry] = []
        self._next_key = 0
        self._marked: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(
            "History (Enter marks two to compare)", classes="scan-title", id="scan-history-title"
        )
        history: DataTable[Text] = DataTable(
            id="scan-history", cursor_type="row", zebra_stripes=False
        )
        yield history
        yield Horizontal(
            Button(
                "vs previous",
                id="scan-compare-prev",
                compact=True,
                disabled=True,
                tooltip="Compare the highlighted scan with the scan of the same target before it",
            ),
            Button(
                "Compare marked",
                id="scan-compare-marked",
                compact=True,
                disabled=True,
                tooltip="Compare the two marked scans",
            ),
            id="scan-compare-buttons",
        )

    def on_mount(self) -> None:
        self.query_one("#scan-history", DataTable).add_columns(*HISTORY_COLUMNS)

    def add(self, result: ScanResult) -> ScanResult | None:
        """Keep a finished scan; returns the latest scan of the same target before it."""
        previous = self.history.latest(result.scanned)
        self.history.add(result)
        key = f"h{self._next_key}"
        self._next_key += 1
        self.entries.append(HistoryEntry(key, result))
        del self.entries[: max(0, len(self.entries) - HISTORY_SHOWN)]
        self._marked = []
        # Newest first; at most HISTORY_SHOWN rows, so rebuilding is cheap.
        table: DataTable[Text] = self.query_one("#scan-history", DataTable)
        table.clear()
        for entry in reversed(self.entries):
            table.add_row(*history_row(entry.result), key=entry.key)
        table.move_cursor(row=0)
        self._update_compare_buttons()
        return previous

    def _entry(self, key: str | None) -> HistoryEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def _highlighted_entry(self) -> HistoryEntry | None:
        table: DataTable[Text] = self.query_one("#scan-history", DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self._entry(row_key.value)

    def _previous_of(self, entry: HistoryEntry) -> HistoryEntry | None:
        index = self.entries.index(entry)
        for other in reversed(self.entries[:index]):
            if other.result.scanned == entry.result.scanned:
                return other
        return None

    def _set_marks(self, keys: list[str]) -> None:
        table: DataTable[Text] = self.query_one("#scan-history", DataTable)
        for key in set(self._marked) | set(keys):
            if self._entry(key) is None:
                continue
            table.update_cell(key, table.ordered_columns[0].key, mark_text(key in keys))
        self._marked = list(keys)
        self._update_compare_buttons()

    def _update_compare_buttons(self) -> None:
        entry = self._highlighted_entry()
        self.query_one("#scan-compare-prev", Button).disabled = (
            entry is None or self._previous_of(entry) is None
        )
        self.query_one("#scan-compare-marked", Button).disabled = len(self._marked) != 2

    @on(DataTable.RowSelected, "#scan-history")
    def _history_selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click) on a past scan marks it; two marks compare at once."""
        event.stop()
        key = event.row_key.value
        if key is None:
            return
        marks = [k for k in self._marked if k != key]
        if key not in self._marked:
            marks = [*marks, key][-2:]
        self._set_marks(marks)
        entry = self._entry(key)
        if entry is not None:
            self.post_message(self.Chosen(entry.result))
        if len(marks) == 2:
            self.compare_marked()

    @on(DataTable.RowHighlighted, "#scan-history")
    def _history_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_compare_buttons()

    @on(Button.Pressed, "#scan-compare-prev")
    def _compare_prev(self, event: Button.Pressed) -> None:
        event.stop()
        self.compare_with_previous()

    @on(Button.Pressed, "#scan-compare-marked")
    def _compare_marked(self, event: Button.Pressed) -> None:
        event.stop()
        self.compare_marked()

    def compare_with_previous(self) -> None:
        """Ask for the compare of the highlighted scan with the one of its target before it."""
        entry = self._highlighted_entry()
        previous = self._previous_of(entry) if entry is not None else None
        if entry is None or previous is None:
            self.post_message(self.Refused("No earlier scan of this target to compare with."))
            return
        self.post_message(self.CompareAsked(previous.result, entry.result))

    def compare_marked(self) -> None:
        """Ask for the compare of the two marked scans, the older first."""
        entries = [e for e in self.entries if e.key in self._marked]  # oldest first
        if len(entries) != 2:
            self.post_message(
                self.Refused("Mark two scans in the history (Enter on each) to compare them.")
            )
            return
        self.post_message(self.CompareAsked(entries[0].result, entries[1].result))
