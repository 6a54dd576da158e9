"""The Scan tab's results: one scan's ports, why each reads as it does, and the compare.

:class:`ScanResultsView` shows a scan as nmap's table (PORT, STATE, SERVICE)
plus the LOCAL column, nmap's "Not shown" lines, the story of the highlighted
port in a box under the table, and, when asked, the compare table of two scans
(Zenmap's, with a sign and a word on each changed row). Its rows and words come
from :mod:`app.ui.widgets.scan.formatting`.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalGroup
from textual.widgets import DataTable, Static

from app.core.scan import ScanResult, compare
from app.ui.widgets.scan.formatting import (
    COMPARE_COLUMNS,
    RESULT_COLUMNS,
    compare_rows,
    compare_title,
    describe_port,
    first_interesting,
    host_is_local,
    not_shown_lines,
    result_rows,
    results_title,
)


class ScanResultsView(VerticalGroup):
    """The results table of one scan, its explanation box and the compare table."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: ScanResult | None = None

    def compose(self) -> ComposeResult:
        yield Static("Results", classes="scan-title", id="scan-results-title")
        results: DataTable[Text] = DataTable(
            id="scan-results", cursor_type="row", zebra_stripes=False
        )
        yield results
        yield Static(id="scan-notshown", classes="-hidden")
        yield Static(
            "Run a scan: each port's row says here why nmap saw what it saw.", id="scan-why"
        )
        yield Static("Compare", classes="scan-title -hidden", id="scan-compare-title")
        compared: DataTable[Text] = DataTable(
            id="scan-compare", cursor_type="row", zebra_stripes=False, classes="-hidden"
        )
        yield compared

    def on_mount(self) -> None:
        self.query_one("#scan-results", DataTable).add_columns(*RESULT_COLUMNS)

    def show_result(
        self, result: ScanResult, note: str = "", previous: ScanResult | None = None
    ) -> None:
        """Fill the results table (nmap's columns + LOCAL) with one scan.

        Args:
            result: the scan to show.
            note: added to the title (what changed since the previous scan).
            previous: the scan before it; the cursor starts on the first port that
                changed since, so its explanation is the one shown.
        """
        self._shown = result
        table: DataTable[Text] = self.query_one("#scan-results", DataTable)
        # Columns too: auto widths only grow, and a long LOCAL of an older scan would stay.
        table.clear(columns=True)
        table.add_columns(*RESULT_COLUMNS)
        for i, row in enumerate(result_rows(result)):
            table.add_row(*row, key=str(i))
        self.query_one("#scan-results-title", Static).update(results_title(result, note))
        folded = not_shown_lines(result)
        notshown = self.query_one("#scan-notshown", Static)
        notshown.update("\n".join(folded))
        notshown.set_class(not folded, "-hidden")
        if result.ports:
            first = first_interesting(result, previous)
            table.move_cursor(row=first)
            self._explain(first)
        else:
            self.query_one("#scan-why", Static).update("nmap listed no port: see the line above.")

    def _explain(self, index: int) -> None:
        result = self._shown
        if result is None or not 0 <= index < len(result.ports):
            return
        port = result.ports[index]
        local = host_is_local(result, port.address)
        self.query_one("#scan-why", Static).update(describe_port(port, local))

    @on(DataTable.RowHighlighted, "#scan-results")
    def _result_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._explain(event.cursor_row)

    def show_compare(self, before: ScanResult, after: ScanResult) -> int:
        """Zenmap's compare in the terminal: PORT | before | after | sign + word.

        Returns:
            How many rows changed.
        """
        rows = compare(before, after)
        table: DataTable[Text] = self.query_one("#scan-compare", DataTable)
        table.clear(columns=True)
        table.add_columns(*COMPARE_COLUMNS)
        for i, row in enumerate(compare_rows(rows, before, after)):
            table.add_row(*row, key=str(i))
        changed = sum(r.changed for r in rows)
        title = self.query_one("#scan-compare-title", Static)
        title.update(compare_title(before, after, changed))
        title.remove_class("-hidden")
        table.remove_class("-hidden")
        return changed
