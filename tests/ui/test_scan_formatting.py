"""The Scan tab's words and rows (app.ui.widgets.scan.formatting), without an app."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from app.core.interfaces import Address, Interface
from app.core.scan import HostResult, NotShown, PortResult, ScanResult, compare
from app.ui.widgets.scan.formatting import (
    compare_rows,
    compare_title,
    history_row,
    not_shown_lines,
    result_rows,
    results_title,
    summarize,
    target_options,
)

T0 = 1_700_000_000.0  # 22:13:20 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def result(
    *ports: tuple[int, str],
    hosts: tuple[HostResult, ...] = (HostResult("127.0.0.1", "up", True),),
    started_at: float = T0,
    requested: str = "",
    status: str = "done",
) -> ScanResult:
    address = hosts[0].address if hosts else ""
    return ScanResult(
        target="127.0.0.1",
        type="connect",
        ports=tuple(PortResult(p, "tcp", s, "svc", None, address=address) for p, s in ports),
        started_at=started_at,
        duration=0.5,
        command=("nmap",),
        status=status,  # type: ignore[arg-type]
        hosts=hosts,
        requested_ports=requested,
    )


def cells(rows: Sequence[tuple[object, ...]]) -> list[list[str]]:
    return [[str(c) for c in row] for row in rows]


def test_summary_counts_the_folded_ports_too() -> None:
    folded = HostResult(
        "127.0.0.1", "up", True, not_shown=(NotShown("closed", 97, "tcp", None, None),)
    )
    assert summarize(result((22, "open"), (80, "filtered"), hosts=(folded,))) == (
        "1 open, 97 closed, 1 filtered"
    )
    assert summarize(result(status="timeout")) == "no ports (timed out)"
    assert summarize(result((22, "open"), status="cancelled")) == "cancelled"
    two = (HostResult("127.0.0.1", "up", True), HostResult("127.0.0.2", "up", True))
    assert summarize(result((22, "closed"), hosts=two)) == "2 hosts: 1 closed"


def test_result_rows_name_the_host_only_when_there_are_several() -> None:
    assert cells(result_rows(result((22, "open")))) == [["22/tcp", "open", "svc", "-"]]
    far = (HostResult("192.0.2.1", "up", False), HostResult("192.0.2.2", "up", False))
    assert cells(result_rows(result((22, "open"), hosts=far))) == [
        ["192.0.2.1 22/tcp", "open", "svc", "(not this machine)"]
    ]
    assert results_title(result(), "1 changed") == (
        "Results 22:13:20 · 127.0.0.1 · connect · 1 changed"
    )
    assert not_shown_lines(result(hosts=far)) == []


def test_compare_rows_carry_a_sign_and_a_word() -> None:
    before = result((22, "open"), (80, "closed"), requested="22,80,443")
    after = result((22, "closed"), (443, "open"), started_at=T0 + 10, requested="22,443")
    rows = compare(before, after)
    assert cells(compare_rows(rows, before, after)) == [
        ["22/tcp", "open", "closed", "≠ changed"],
        ["80/tcp", "closed", "not scanned", "- removed"],
        ["443/tcp", "-", "open", "+ added"],
    ]
    changed = sum(r.changed for r in rows)
    assert compare_title(before, after, changed) == "Compare 22:13:20 → 22:13:30 · 3 changed"


def test_history_row() -> None:
    assert cells([history_row(result((22, "open")))]) == [
        [" ", "22:13:20", "127.0.0.1", "connect", "1 open"]
    ]


def test_target_options_loopback_first_and_no_link_local() -> None:
    eth = Interface(
        name="eth0",
        up=True,
        mtu=1500,
        mac=None,
        addresses=(
            Address(4, "192.0.2.7", 24),
            Address(4, "127.0.0.1", 8),
            Address(6, "fe80::1", 64),
            Address(6, "2001:db8::7", 64),
        ),
    )
    assert target_options([eth]) == [
        ("127.0.0.1 (loopback)", "127.0.0.1"),
        ("192.0.2.7 (eth0)", "192.0.2.7"),
        ("2001:db8::7 (eth0)", "2001:db8::7"),
        ("::1 (loopback)", "::1"),
    ]
