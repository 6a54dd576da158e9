"""Fixtures of the lab tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.labs.procs import Labs


@pytest.fixture
def lab() -> Iterator[Labs]:
    """Start lab programs with ``lab.start(...)``; every one is killed after the test."""
    labs = Labs()
    try:
        yield labs
    finally:
        labs.kill_all()
