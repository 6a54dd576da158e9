"""Scan results kept per target, and the port-by-port comparison of two scans.

:class:`ScanHistory` keeps the last results of each target (thread-safe);
:func:`compare` lines up two results port by port, folded ports included,
like Zenmap's compare view, as :class:`CompareRow` rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from app.core.scan.results import ScanResult


@dataclass(frozen=True, slots=True)
class CompareRow:
    """One port in two scans, like Zenmap's compare view."""

    port: int
    proto: str
    state_a: str | None  # None: not in scan a (not scanned, or nmap said nothing)
    state_b: str | None
    changed: bool
    address: str = ""


def compare(a: ScanResult, b: ScanResult) -> list[CompareRow]:
    """Port by port, the state in ``a`` and in ``b`` (ports folded away included).

    Rows cover every port listed in either scan, sorted by address, protocol
    and port; ``changed`` is True when the two states differ.
    """
    keys = {(p.address, p.proto, p.port) for p in (*a.ports, *b.ports)}
    rows: list[CompareRow] = []
    for address, proto, port in sorted(keys):
        sa = a.state_of(port, proto, address)
        sb = b.state_of(port, proto, address)
        rows.append(CompareRow(port, proto, sa, sb, sa != sb, address))
    return rows


@dataclass(eq=False)
class ScanHistory:
    """Results kept per target, oldest first; safe to use from several threads.

    Args:
        limit: results kept per target (the oldest go first).
    """

    limit: int = 20
    _by_target: dict[str, list[ScanResult]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: ScanResult) -> None:
        with self._lock:
            kept = self._by_target.setdefault(result.scanned, [])
            kept.append(result)
            del kept[: max(0, len(kept) - self.limit)]

    def targets(self) -> list[str]:
        """Targets scanned, most recently scanned last."""
        with self._lock:
            return sorted(self._by_target, key=lambda t: self._by_target[t][-1].started_at)

    def results(self, target: str) -> list[ScanResult]:
        """Every kept result for ``target`` (canonical text; ``10.0.2.15 from client``
        for a scan from a lab host: :attr:`ScanResult.scanned`), oldest first."""
        with self._lock:
            return list(self._by_target.get(target, []))

    def latest(self, target: str) -> ScanResult | None:
        with self._lock:
            kept = self._by_target.get(target)
            return kept[-1] if kept else None

    def previous(self, target: str) -> ScanResult | None:
        """The result before the latest one, for a "what changed" view."""
        with self._lock:
            kept = self._by_target.get(target)
            return kept[-2] if kept and len(kept) > 1 else None

    def compare_latest(self, target: str) -> list[CompareRow] | None:
        """:func:`compare` of the previous and the latest result, or None if fewer than two."""
        prev, last = self.previous(target), self.latest(target)
        if prev is None or last is None:
            return None
        return compare(prev, last)

    def clear(self, target: str | None = None) -> None:
        with self._lock:
            if target is None:
                self._by_target.clear()
            else:
                self._by_target.pop(target, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_target.values())
