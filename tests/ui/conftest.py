"""What the dashboard's Pilot tests share: a real app with a real process manager."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.core.procs import ProcessManager
from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.keyed_table import KeyedTable


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[ObservatoryApp, ProcessManager]]:
    """The dashboard, polling every 0.2 s, and the manager of its lab processes (all
    stopped after the test)."""
    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(ProcNetSource(), manager, interval=0.2)
    try:
        yield app, manager
    finally:
        manager.shutdown()


def rows(app: ObservatoryApp, table_id: str) -> list[str]:
    """The rows of a table of the screen, each as one line of its cells."""
    table = app.screen.query_one(f"#{table_id}", KeyedTable)
    return [" ".join(str(c) for c in cells) for cells in table._cells.values()]


async def palette_titles(app: ObservatoryApp) -> set[str]:
    """The titles the command palette lists for the screen's keys, with nothing typed."""
    from app.ui.palette import KeyCommands

    provider = KeyCommands(app.screen)
    return {hit.text or "" async for hit in provider.discover()}
