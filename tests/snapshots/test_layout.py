"""SVG snapshots of the main screen, from a fake source: layout only, no live data.

Look at every snapshot you accept: `pytest tests/snapshots --snapshot-update`
writes them under __snapshots__/; open the report or the SVG files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.ui.app import ObservatoryApp
from tests.ui.fakes import PROCESSES, T0, FakeManager, FakeSource, lecture_results


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(theme: str | None) -> tuple[ObservatoryApp, list]:  # type: ignore[type-arg]
    results = lecture_results()
    app = ObservatoryApp(
        FakeSource([r.snapshot for r in results]),
        FakeManager(PROCESSES),
        theme_name=theme,
        clock=lambda: T0 + 2,
        poll=False,
        interfaces=lambda: results[0].interfaces or [],
    )
    return app, results


async def _feed(pilot, results) -> None:  # type: ignore[no-untyped-def]
    for r in results:
        pilot.app.deliver(r)
        await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("theme", [None, "projector"])
@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_main_screen(snap_compare, theme: str | None, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app, results = make_app(theme)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await _feed(pilot, results)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
