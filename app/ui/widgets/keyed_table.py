"""A table for live data: keyed rows, kept sorted, only the visible lines drawn.

Textual's DataTable measures, stores and indexes every row it is given and
its bulk removals rebuild its index per call; at 16,000 sockets a table of it
either froze or had to be cut to 1,000 rows. This one is a Line API widget
(``ScrollView`` + ``render_line``, the way DataTable draws itself) over a
small model:

* rows are identified by a stable key and kept in order by a sort key
  (``(sort_key, key)`` in one sorted list: an insert, move or removal is a
  bisect, a key's position is a bisect, nothing is re-sorted when nothing
  moved);
* column widths in O(changed cells): each column counts its cells per
  width, so a wider cell widens it at once (nothing shows cut) and it
  narrows when the last of its widest cells goes;
* only the lines on screen are rendered, each row's line cached until its
  cells, the widths or the styles change;
* the cursor stays on the same key across updates, at the same height on
  screen, and the ``RowHighlighted`` message says when the key under the
  cursor changed.

Two ways to feed it: :meth:`KeyedTable.apply` with the full ordered list of
rows (small tables: processes, interfaces), or :meth:`KeyedTable.update`
with only the rows that changed, each with its sort key, and
:meth:`KeyedTable.replace` when everything changes (a new filter or sort).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from app.core.terminal_text import printable

Cell = str | Text

# Words the mark column must show whole from the start ("- GONE").
MARK_WIDTH = 6
ROW_CACHE_LIMIT = 2000  # rendered lines kept; a screen shows a few dozen


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row: its key, its cells and, for :meth:`KeyedTable.update`, where it sorts."""

    key: str
    cells: tuple[Cell, ...]
    sort_key: Any = None


@dataclass(frozen=True, slots=True)
class RowKey:
    """The key of a row, as the messages carry it (``event.row_key.value``)."""

    value: str


def cell_width(cell: Cell) -> int:
    if isinstance(cell, str):
        return len(cell) if cell.isascii() else cell_len(cell)
    return cell.cell_len


def row_widths(cells: tuple[Cell, ...]) -> tuple[int, ...]:
    """The cell widths of one row (plain ASCII rows, the most, measured in C)."""
    if "".join(map(str, cells)).isascii():  # str(Text) is its plain text; len() works on both
        return tuple(map(len, cells))
    return tuple(map(cell_width, cells))


class RowOrder:
    """Row keys in order of ``(sort_key, key)``; ``reverse`` reads it backwards.

    Sort keys of one table must compare with each other; the key breaks ties,
    so every row has one exact place and its index is a bisect away.
    """

    def __init__(self) -> None:
        self.sorted: list[tuple[Any, str]] = []
        self.sort_keys: dict[str, Any] = {}
        self.reverse = False

    def __len__(self) -> int:
        return len(self.sorted)

    def __contains__(self, key: object) -> bool:
        return key in self.sort_keys

    def index(self, key: str) -> int | None:
        sort_key = self.sort_keys.get(key, _MISSING)
        if sort_key is _MISSING:
            return None
        i = bisect_left(self.sorted, (sort_key, key))
        return len(self.sorted) - 1 - i if self.reverse else i

    def key_at(self, index: int) -> str:
        if self.reverse:
            index = len(self.sorted) - 1 - index
        return self.sorted[index][1]

    def keys(self) -> list[str]:
        keys = [k for _, k in self.sorted]
        return keys[::-1] if self.reverse else keys

    def put(self, key: str, sort_key: Any) -> bool:
        """Insert or move ``key``; True when its place (or presence) changed."""
        old = self.sort_keys.get(key, _MISSING)
        if old is not _MISSING:
            if old == sort_key:
                return False
            del self.sorted[bisect_left(self.sorted, (old, key))]
        self.sort_keys[key] = sort_key
        insort(self.sorted, (sort_key, key))
        return True

    def remove(self, key: str) -> bool:
        old = self.sort_keys.pop(key, _MISSING)
        if old is _MISSING:
            return False
        del self.sorted[bisect_left(self.sorted, (old, key))]
        return True

    def rebuild(self, items: Iterable[tuple[str, Any]], reverse: bool = False) -> None:
        """Every key anew, from ``(key, sort_key)`` pairs in any order."""
        self.sort_keys = dict(items)
        self.sorted = sorted((sk, k) for k, sk in self.sort_keys.items())
        self.reverse = reverse

    def drop(self, keys: set[str]) -> None:
        """Remove many keys in one pass (the rest keep their order)."""
        self.sorted = [item for item in self.sorted if item[1] not in keys]
        for key in keys:
            self.sort_keys.pop(key, None)

    def assign(self, items: Iterable[tuple[Any, str]], reverse: bool = False) -> None:
        """Every key anew, from ``(sort_key, key)`` pairs already in order."""
        self.sorted = list(items)
        self.sort_keys = {k: sk for sk, k in self.sorted}
        self.reverse = reverse


_MISSING = object()


class KeyedTable(ScrollView, can_focus=True):
    """A keyed, sorted table with a row cursor; draws only what is on screen.

    Args:
        columns: ``(label, key)`` pairs, in display order. A column keyed
            ``mark`` is at least as wide as ``- GONE`` from the start.
    """

    ALLOW_SELECT = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First row", show=False),
        Binding("end,ctrl+end", "last", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"keyed-table--header", "keyed-table--cursor"}

    # As DataTable's: the cursor shows without focus too (blurred colours), which the
    # projector theme makes as visible as the focused one.
    DEFAULT_CSS = """
    KeyedTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .keyed-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .keyed-table--header {
                background-tint: $foreground 5%;
            }
        }
        & > .keyed-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .keyed-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .keyed-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowMessage(Message):
        """A row of this table, by its key (the attributes DataTable's messages have)."""

        def __init__(self, table: KeyedTable, cursor_row: int, key: str) -> None:
            super().__init__()
            self.data_table = table
            self.cursor_row = cursor_row
            self.row_key = RowKey(key)

        @property
        def control(self) -> KeyedTable:
            return self.data_table

    class RowHighlighted(RowMessage):
        """The key under the cursor changed (by a key, a click, or rows moving)."""

    class RowSelected(RowMessage):
        """Enter on the cursor row, or a click on the row already under the cursor."""

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._column_spec = list(columns)
        self._labels = [label for label, _ in self._column_spec]
        self._min_widths = [
            max(cell_len(label), MARK_WIDTH if key == "mark" else 0)
            for label, key in self._column_spec
        ]
        self._widths = list(self._min_widths)
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._row_widths: dict[str, tuple[int, ...]] = {}
        self._order = RowOrder()
        self._cursor = 0
        self._cursor_key: str | None = None
        self._line_cache: dict[str, tuple[tuple[Cell, ...], Strip]] = {}
        self._drawn_with: tuple[object, ...] = ()
        self._title: str | None = None
        self._counts: list[Counter[int]] = [Counter() for _ in self._min_widths]
        self.updates = 0  # how many calls changed something (for tests and bench)

    # -- what the screen and tests read ----------------------------------------------
    @property
    def column_keys(self) -> list[str]:
        return [key for _, key in self._column_spec]

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def rows(self) -> Mapping[str, tuple[Cell, ...]]:
        """The rows by key (``key in table.rows``), in no particular order."""
        return self._cells

    @property
    def keys(self) -> list[str]:
        """Every row key, in display order (O(rows): for tests, not per frame)."""
        return self._order.keys()

    @property
    def column_widths(self) -> list[int]:
        return list(self._widths)

    @property
    def reversed(self) -> bool:
        """True when the rows are shown in descending order of their sort keys."""
        return self._order.reverse

    def set_title(self, title: str) -> None:
        """Set the border title; setting the same title again costs no repaint."""
        if title != self._title:
            self._title = title
            self.border_title = title

    def selected_key(self) -> str | None:
        return self._cursor_key

    def holds(self, key: str, cells: tuple[Cell, ...], sort_key: Any) -> bool:
        """True when the row ``key`` has these very cells and this sort key already."""
        return self._cells.get(key) is cells and self._order.sort_keys.get(key) == sort_key

    def get_row_index(self, key: str) -> int:
        index = self._order.index(key)
        if index is None:
            raise KeyError(key)
        return index

    def get_row(self, key: str) -> list[Cell]:
        return list(self._cells[key])

    def get_row_at(self, index: int) -> list[Cell]:
        return list(self._cells[self._order.key_at(index)])

    # -- feeding it --------------------------------------------------------------------
    def apply(self, rows: Sequence[TableRow]) -> None:
        """Make the table show exactly ``rows``, in that order (O(rows))."""
        order = self._order
        same_order = (
            len(rows) == len(order)
            and not order.reverse
            and all(order.sort_keys.get(r.key) == i for i, r in enumerate(rows))
        )
        changed = resized = not same_order and not rows
        if not same_order:
            wanted = {r.key for r in rows}
            for key in [k for k in self._cells if k not in wanted]:
                resized |= self._forget_row(key)
            order.rebuild(((r.key, i) for i, r in enumerate(rows)))
            changed = True
        for row in rows:
            if self._cells.get(row.key) is not row.cells:
                resized |= self._set_row(row.key, row.cells)
                changed = True
        if changed:
            self._changed(resized)

    def update(self, rows: Iterable[TableRow] = (), removed: Iterable[str] = ()) -> None:
        """Add or change ``rows`` (placed by their ``sort_key``) and drop ``removed``.

        Costs O(changed rows · log rows). Rows not named keep their cells and place.
        """
        order, cells = self._order, self._cells
        changed = resized = False
        removed = [key for key in removed if key in cells]
        if len(removed) > len(order) // 8 + 64:  # one pass beats many bisects
            order.drop(set(removed))
        else:
            for key in removed:
                order.remove(key)
        for key in removed:
            resized |= self._forget_row(key)
            changed = True
        for row in rows:
            if cells.get(row.key) is not row.cells:
                resized |= self._set_row(row.key, row.cells)
                changed = True
            changed |= order.put(row.key, row.sort_key)
        if changed:
            self._changed(resized)

    def replace(
        self, rows: Iterable[TableRow], reverse: bool = False, presorted: bool = False
    ) -> None:
        """Show exactly ``rows``, ordered by their sort keys (read backwards if ``reverse``).

        O(rows log rows), O(rows) when ``presorted`` says they come in order of
        ``(sort_key, key)`` already.
        """
        old_cells, old_widths = self._cells, self._row_widths
        cells: dict[str, tuple[Cell, ...]] = {}
        widths: dict[str, tuple[int, ...]] = {}
        for row in rows:
            cells[row.key] = row.cells
            known = old_widths.get(row.key)
            if known is None or old_cells.get(row.key) is not row.cells:
                known = row_widths(row.cells)
            widths[row.key] = known
        self._cells, self._row_widths = cells, widths
        if presorted:
            self._order.assign(((r.sort_key, r.key) for r in rows), reverse)
        else:
            self._order.rebuild(((r.key, r.sort_key) for r in rows), reverse)
        # Each column's widths counted anew (in C): the widest may have left or come.
        self._counts = (
            [Counter(column) for column in zip(*widths.values(), strict=True)]
            if widths
            else [Counter() for _ in self._min_widths]
        )
        before = self._widths
        self._widths = [
            max(max(c, default=0), least)
            for c, least in zip(self._counts, self._min_widths, strict=True)
        ]
        self._changed(self._widths != before)

    def reorder(self, items: list[tuple[Any, str]], reverse: bool = False) -> None:
        """New sort keys for the very rows shown, cells unchanged: ``(sort_key, key)``
        ascending, every key once. O(rows), nothing measured."""
        self._order.assign(items, reverse)
        self._changed(False)

    # Column widths in O(changed cells): each column counts how many of its cells
    # have each width; a column is as wide as its widest cell (at least its header),
    # wider at once when a wider cell comes, narrower once the last widest one goes.
    def _set_row(self, key: str, cells: tuple[Cell, ...]) -> bool:
        """Store a row's cells; True when a column's width changed."""
        resized = self._forget_row(key) if key in self._cells else False
        self._cells[key] = cells
        measured = self._row_widths[key] = row_widths(cells)
        widths = self._widths
        for column, width in enumerate(measured):
            self._counts[column][width] += 1
            if width > widths[column]:
                widths[column] = width
                resized = True
        return resized

    def _forget_row(self, key: str) -> bool:
        """Drop a row's cells (not its place); True when a column's width changed."""
        del self._cells[key]
        resized = False
        widths = self._widths
        for column, width in enumerate(self._row_widths.pop(key)):
            count = self._counts[column]
            count[width] -= 1
            if not count[width]:
                del count[width]
                if width == widths[column] and width > self._min_widths[column]:
                    widths[column] = max(max(count, default=0), self._min_widths[column])
                    resized = True
        return resized

    def _changed(self, widths_changed: bool) -> None:
        """After any change: keep the cursor on its key, resize, redraw."""
        self.updates += 1
        if widths_changed:
            self._line_cache.clear()
        self._resize(Size(self._table_width(), len(self._order) + 1))
        self._follow_cursor_key()
        self.refresh()

    def _resize(self, size: Size) -> None:
        """A new virtual size, without a layout of the whole screen when the table's
        own size cannot change: more rows than lines before and after (or a height
        not set by the content) and the same width. Then only the scrollbar moves.
        Rows coming and going every poll made a full layout each time (~20 ms)."""
        old = self.virtual_size
        if size == old:
            return
        lines = self.size.height
        auto = self.styles.height is None or self.styles.height.is_auto
        overflow = size.height > lines
        if (
            lines
            and size.width == old.width
            and overflow == (old.height > lines)
            and (overflow or not auto)
        ):
            self.set_reactive(KeyedTable.virtual_size, size)
            if self.show_vertical_scrollbar:
                self.vertical_scrollbar.window_virtual_size = size.height
            return
        self.virtual_size = size

    def _table_width(self) -> int:
        return sum(self._widths) + 2 * len(self._widths)

    def _follow_cursor_key(self) -> None:
        count = len(self._order)
        old_key, old_index = self._cursor_key, self._cursor
        new_index = self._order.index(old_key) if old_key is not None else None
        if new_index is None:  # its row left: stay at the same height
            new_index = min(old_index, count - 1) if count else 0
        self._cursor = new_index
        self._cursor_key = self._order.key_at(new_index) if count else None
        if self._cursor_key is not None and new_index != old_index:
            # The row under the cursor stays at the same height on screen.
            self.scroll_to(y=self.scroll_offset.y + new_index - old_index, animate=False)
        if self._cursor_key != old_key and self._cursor_key is not None:
            self.post_message(self.RowHighlighted(self, self._cursor, self._cursor_key))

    # -- the cursor ----------------------------------------------------------------------
    def move_cursor(
        self, *, row: int | None = None, scroll: bool = True, animate: bool = False
    ) -> None:
        """Put the cursor on row index ``row`` (clamped); scroll it into view."""
        count = len(self._order)
        if row is None or not count:
            return
        row = max(0, min(row, count - 1))
        old_row, old_key = self._cursor, self._cursor_key
        self._cursor = row
        self._cursor_key = self._order.key_at(row)
        if row != old_row:
            self._refresh_row(old_row)
            self._refresh_row(row)
        if scroll:
            self._scroll_cursor_into_view()
        if self._cursor_key != old_key:
            self.post_message(self.RowHighlighted(self, row, self._cursor_key))

    @property
    def _page(self) -> int:
        return max(1, self.size.height - 1)  # the header line does not scroll

    def _scroll_cursor_into_view(self) -> None:
        top = self.scroll_offset.y
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False)
        elif self._cursor >= top + self._page:
            self.scroll_to(y=self._cursor - self._page + 1, animate=False)

    def _refresh_row(self, index: int) -> None:
        y = index - self.scroll_offset.y + 1
        if 1 <= y < self.size.height:
            self.refresh_line(y + self.scroll_offset.y)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self._cursor + 1)

    def action_page_down(self) -> None:
        self.scroll_to(y=self.scroll_offset.y + self._page, animate=False)
        self.move_cursor(row=self._cursor + self._page)

    def action_page_up(self) -> None:
        self.scroll_to(y=self.scroll_offset.y - self._page, animate=False)
        self.move_cursor(row=self._cursor - self._page)

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        if self._cursor_key is not None:
            self.post_message(self.RowSelected(self, self._cursor, self._cursor_key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:  # the border, the scrollbar or the header
            return
        row = self.scroll_offset.y + offset.y - 1
        if row >= len(self._order):
            return
        event.stop()
        if row == self._cursor:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row)

    # -- drawing -------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._line_cache.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        base = self.rich_style
        header = base + self.get_component_rich_style("keyed-table--header")
        cursor = self.get_component_rich_style("keyed-table--cursor")
        context = (base, header, cursor, width, tuple(self._widths))
        if context != self._drawn_with:
            self._drawn_with = context
            self._line_cache.clear()
        if y == 0:
            strip = self._render_row(self._labels, header, None, width)
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, base)
            key = self._order.key_at(index)
            cells = self._cells[key]
            if index == self._cursor:
                strip = self._render_row(cells, base + cursor, Style(color=cursor.color), width)
            else:
                cached = self._line_cache.get(key)
                if cached is not None and cached[0] is cells:
                    strip = cached[1]
                else:
                    if len(self._line_cache) >= ROW_CACHE_LIMIT:
                        self._line_cache.clear()
                    strip = self._render_row(cells, base, None, width)
                    self._line_cache[key] = (cells, strip)
        if scroll_x or strip.cell_length != width:
            strip = strip.crop_extend(scroll_x, scroll_x + width, base)
        return strip

    def _render_row(
        self, cells: Sequence[Cell], style: Style, post: Style | None, width: int
    ) -> Strip:
        """One line of the table: each cell padded by a space on each side, then the
        row's style to the widget's right edge."""
        segments: list[Segment] = []
        console = self.app.console
        for cell, column_width in zip(cells, self._widths, strict=True):
            # Never a raw control character: a process may name itself ESC[2J
            # (/proc/self/comm), and a student's machine its host (the class view).
            if isinstance(cell, str):
                if not cell.isprintable():
                    cell = printable(cell)
                if cell.isascii():
                    body = cell[:column_width].ljust(column_width)
                else:
                    body = set_cell_size(cell, column_width)
                segments.append(Segment(f" {body} ", style))
                continue
            if not cell.plain.isprintable():
                cell = Text(printable(cell.plain), style=cell.style)
            # Text.render leaves the text's own style to the caller.
            own = (
                cell.style
                if isinstance(cell.style, Style)
                else console.get_style(cell.style, default=Style.null())
            )
            segments.append(Segment(" ", style))
            if cell.spans:
                text = cell.copy()
                text.truncate(column_width, overflow="ellipsis", pad=True)
                segments.extend(Segment.apply_style(text.render(console), style + own, post))
            else:
                body = set_cell_size(cell.plain, column_width)
                segments.append(Segment(body, style + own + post if post else style + own))
            segments.append(Segment(" ", style))
        rest = width - self._table_width()
        if rest > 0:
            segments.append(Segment(" " * rest, style))
        return Strip(segments).simplify()
