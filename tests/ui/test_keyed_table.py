"""The keyed table under churn: always consistent, cursor stays on its row."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult

from app.ui.widgets.keyed_table import KeyedTable, TableRow

COLUMNS = [("", "mark"), ("Name", "name"), ("Value", "value")]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="t")


def make_rows(keys: list[str], tag: str = "") -> list[TableRow]:
    return [TableRow(k, ("", k, f"v{tag}{k}")) for k in keys]


async def test_churn_keeps_order_cells_and_cursor() -> None:
    rng = random.Random(4)
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(KeyedTable)
        keys = [f"k{i}" for i in range(3000)]
        table.apply(make_rows(keys))
        await pilot.pause()
        table.focus()
        table.move_cursor(row=table.get_row_index("k2500"))
        await pilot.pause()
        for round_ in range(4):
            keep = [k for k in keys if rng.random() < 0.4 or k == "k2500"]
            new = [f"n{round_}-{i}" for i in range(700)]
            keys = keep + new
            rng.shuffle(keys)
            table.apply(make_rows(keys, tag=str(round_)))
            await pilot.pause()
            shown = [row.key.value for row in table.ordered_rows]
            assert shown == keys
            assert table.get_row_at(table.get_row_index(keys[0]))[1] == keys[0]
            assert table.selected_key() == "k2500"
            assert table.get_row("k2500")[2] == f"v{round_}k2500"
        table.apply([])
        await pilot.pause()
        assert table.row_count == 0 and table.ordered_rows == []
