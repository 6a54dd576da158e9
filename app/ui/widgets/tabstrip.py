"""The side column's tab strip: every tab in view, with its key, on as many lines as needed.

Textual's own strip is one line that scrolls: nine tabs in a 46-column side column
were cut to ``…Interfaces  S``, and choosing Scan scrolled Lab out of view. This
strip wraps instead, marks each tab's key (the underlined letter, or the key after
the title when the title has no such letter), and is clicked like tabs are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

GAP = 2  # spaces between two tabs


class TabStrip(Widget):
    """Labels of ``tabs`` ((tab id, title, key) in order), the active one highlighted."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"tab-strip--active"}
    DEFAULT_CSS = """
    TabStrip {
        height: auto;
        & > .tab-strip--active {
            background: $primary;
            color: $text;
            text-style: bold;
        }
    }
    """

    class Chosen(Message):
        """A tab label was clicked."""

        def __init__(self, tab_id: str) -> None:
            super().__init__()
            self.tab_id = tab_id

    def __init__(self, tabs: Sequence[tuple[str, str, str]], active: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.tabs = list(tabs)
        self.active = active

    def set_active(self, tab_id: str) -> None:
        if tab_id != self.active:
            self.active = tab_id
            self.refresh()

    # -- layout ------------------------------------------------------------------------
    def label(self, title: str, key: str) -> Text:
        """``title`` with ``key`` marked: its letter underlined, or the key after it."""
        text = Text(title)
        at = _key_position(title, key)
        if at is None:
            text.append(f" {key}", style="bold")
        else:
            text.stylize("underline bold", at, at + 1)
        return text

    def lines(self, width: int) -> tuple[int, list[list[tuple[str, Text]]]]:
        """The gap between labels and the labels laid out greedily in lines of at most
        ``width`` cells: two spaces, or one where that saves a line (80 columns: all nine
        on one). The labels are new Text each call (the active one is styled in place)."""
        wide, narrow = self._lay_out(width, GAP), self._lay_out(width, 1)
        return (1, narrow) if len(narrow) < len(wide) else (GAP, wide)

    def _lay_out(self, width: int, gap: int) -> list[list[tuple[str, Text]]]:
        lines: list[list[tuple[str, Text]]] = [[]]
        used = 0
        for tab_id, title, key in self.tabs:
            label = self.label(title, key)
            need = label.cell_len + (gap if lines[-1] else 0)
            if lines[-1] and used + need > width:
                lines.append([])
                used, need = 0, label.cell_len
            lines[-1].append((tab_id, label))
            used += need
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(max(1, width))[1])

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        gap, lines = self.lines(max(1, width))
        base = self.rich_style
        if y >= len(lines):
            return Strip.blank(width, base)
        active = self.get_component_rich_style("tab-strip--active")
        row = Text(style=base)
        for tab_id, label in lines[y]:
            if row.cell_len:
                row.append(" " * gap)
            if tab_id == self.active:
                label.stylize(active)
            row.append_text(label)
        return Strip(row.render(self.app.console)).crop_extend(0, width, base)

    def on_click(self, event: Click) -> None:
        gap, lines = self.lines(max(1, self.size.width))
        if event.y >= len(lines):
            return
        column = 0
        for tab_id, label in lines[event.y]:
            if column <= event.x < column + label.cell_len:
                event.stop()
                self.post_message(self.Chosen(tab_id))
                return
            column += label.cell_len + gap


def _key_position(title: str, key: str) -> int | None:
    """Where ``key`` can be marked in ``title``: a word's first letter first, then any
    letter (same case; an upper-case key is only marked as upper case)."""
    if len(key) != 1:
        return None
    words = [i for i, c in enumerate(title) if c == key and (i == 0 or title[i - 1] == " ")]
    if words:
        return words[0]
    if key.islower() and title[:1].lower() == key:
        return 0
    any_at = [i for i, c in enumerate(title) if c == key]
    return any_at[0] if any_at else None
