"""The property tests' tally: every input a property was given is counted, and the
total is printed at the end of the run (``property tests: N inputs tried``), for issue
16's closing note."""

from __future__ import annotations

from collections import Counter

import pytest

TRIED: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    total = sum(TRIED.values())
    terminalreporter.write_line(
        f"property tests: {total} inputs tried by {len(TRIED)} properties "
        "(each refused in words or accepted; no other exception)"
    )
