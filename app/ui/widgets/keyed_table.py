"""A DataTable that is updated by keyed diffs: cursor and scroll never jump.

Rows are identified by a stable key. Each update adds new rows, updates only
the cells that changed, drops vanished rows in one pass (DataTable's own
``remove_row`` rebuilds its index per call: 8,000 removals took ~28 s in a
peer tool), and reorders once. The row under the cursor stays under the
cursor, at the same height on screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets._data_table import CellKey, RowKey

Cell = str | Text


@dataclass(frozen=True, slots=True)
class TableRow:
    key: str
    cells: tuple[Cell, ...]


class KeyedTable(DataTable[Cell]):
    """DataTable with :meth:`apply` taking the full, ordered list of rows."""

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._column_spec = list(columns)
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        for label, key in self._column_spec:
            # The mark column is as wide as its widest word from the start, so that
            # "- GONE" is never cut (auto width only grows when rows are added).
            self.add_column(label, key=key, width=6 if key == "mark" else None)

    @property
    def column_keys(self) -> list[str]:
        return [key for _, key in self._column_spec]

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        except Exception:
            return None
        return row_key.value

    def apply(self, rows: Sequence[TableRow]) -> None:
        """Make the table show exactly ``rows``, in that order."""
        anchor = self.selected_key()
        old_index = self.cursor_row
        old_scroll = self.scroll_y
        wanted = {r.key: r.cells for r in rows}
        columns = self.column_keys
        gone = [k for k in self._cells if k not in wanted]
        if gone:
            self._drop(gone)
        for row in rows:
            before = self._cells.get(row.key)
            if before is row.cells:  # the same formatted row as last time
                continue
            if before is None:
                self.add_row(*row.cells, key=row.key)
                self._order.append(row.key)  # add_row puts it last
            elif before != row.cells:
                for column, old, new in zip(columns, before, row.cells, strict=True):
                    if old != new:
                        # update_width: a cell that grows ("" -> "1 wait") must widen
                        # its column, or it shows cut.
                        self.update_cell(row.key, column, new, update_width=True)
            self._cells[row.key] = row.cells
        self._reorder([r.key for r in rows])
        if anchor is not None and anchor in wanted:
            new_index = self.get_row_index(anchor)
            if new_index != old_index:
                self.move_cursor(row=new_index, scroll=False)
                self.scroll_to(y=max(0, old_scroll + new_index - old_index), animate=False)
        elif self.row_count:
            self.move_cursor(row=min(old_index, self.row_count - 1), scroll=False)

    def _drop(self, keys: list[str]) -> None:
        """Remove many rows at once, leaving the table consistent (rows keep their order)."""
        gone = set(keys)
        for key in keys:
            row_key = RowKey(key)
            for column in self._data.get(row_key, {}):
                self._updated_cells.discard(CellKey(row_key, column))
            self.rows.pop(row_key, None)
            self._data.pop(row_key, None)
            del self._cells[key]
        # Every index must map to a live row at all times: add_row() below moves the
        # cursor, which reads the rows in order (a gap was a KeyError under load).
        self._set_order([k for k in self._order if k not in gone])
        self._require_update_dimensions = True

    def _update_dimensions(self, new_rows: Any) -> None:
        # DataTable measures new rows on idle; lines rendered before that were cached
        # at the old column widths (cells showed cut, e.g. "2759/tcp-se"). Widths may
        # have grown: drop those lines.
        before = [c.content_width for c in self.ordered_columns]
        super()._update_dimensions(new_rows)
        if [c.content_width for c in self.ordered_columns] != before:
            self._update_count += 1
            self._clear_caches()
            self.refresh()

    def _reorder(self, keys: list[str]) -> None:
        if keys != self._order:
            self._set_order(keys)

    def _set_order(self, keys: list[str]) -> None:
        self._order = keys
        self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(keys)})
        self._update_count += 1
        self._clear_caches()
        self.cursor_coordinate = self.cursor_coordinate
        self.refresh(layout=True)
