"""Snapshots in, table changes out: work in proportion to what changed.

The socket source hands back the very same ``Socket`` object while its line
in the kernel's table is unchanged, so one identity pass over a poll tells
which sockets appeared, changed or vanished. Only those are marked (NEW,
GONE), sorted into their table, filtered, formatted and placed; a poll of
16,000 unchanged sockets touches no table at all. A new filter, sort or
option rebuilds each table once, from caches: every row's cells, sort key
and search text are kept while its socket is the same object, and each table
keeps all its rows in sorted order, so a filter is one pass that needs no sort.
"""

from __future__ import annotations

import gc
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from app.core.model import Snapshot, Socket
from app.ui.cells import mark_cell, row_cells, sort_function
from app.ui.rows import GONE_MARK, MARK_SECONDS, NEW_MARK, Marked, ViewOptions, haystack
from app.ui.widgets.keyed_table import Cell, KeyedTable, RowOrder, TableRow

# After this many rows changed at once, the heap is frozen for the cyclic GC (settle_heap).
FREEZE_AFTER = 2000
# Above this share of a table changing at once, one rebuild (a linear pass over the
# sorted rows, then a sort that finds them in order) beats placing rows one by one.
REBUILD_SHARE = 0.125
_NOWHERE = object()


def settle_heap(changed: int | None = None) -> None:
    """After thousands of rows were made (or start-up: ``None``), take what is alive
    out of the cyclic GC's scans.

    16,000 sockets with their rows, cells and caches are a few hundred thousand
    objects, Textual and the modules as many again; each full collection walked
    them all (30-80 ms, a stall the user sees as a late key press; measured in
    the dashboard with gc.callbacks). They are not garbage and hold no cycles:
    ``gc.freeze()`` moves them to the permanent generation, so later collections
    see only what was allocated since. They are still freed by reference
    counting when they go.
    """
    if changed is None or changed >= FREEZE_AFTER:
        gc.freeze()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection while a poll is applied: its new objects live on, and a
    collection in the middle of 16,000 new rows would only walk them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def table_of(sock: Socket) -> str:
    """Which table a socket belongs in: listen, established, other (TCP) or udp."""
    if not sock.is_tcp:
        return "udp"
    if sock.state == "LISTEN":
        return "listen"
    if sock.state == "ESTABLISHED":
        return "established"
    return "other"


def state_name(sock: Socket) -> str:
    """The status line's counting name: the TCP state, or ``UDP``."""
    return sock.state if sock.is_tcp else "UDP"


@dataclass
class Marks:
    """NEW for ``seconds`` after a socket appears, GONE for ``seconds`` after it vanishes.

    The same rules as polling every socket each time (sockets present at the
    first poll are not new; a vanished socket that returns is new again), kept
    with two queues of deadlines so that each poll costs what changed.
    """

    seconds: float = MARK_SECONDS
    marked: dict[str, Marked] = field(default_factory=dict)  # everything shown
    counts: Counter[str] = field(default_factory=Counter)  # open sockets per state
    current: Mapping[str, Socket] = field(default_factory=dict)
    primed: bool = False
    _sockets: tuple[Socket, ...] = ()
    _new_since: dict[str, float] = field(default_factory=dict)
    _gone_since: dict[str, float] = field(default_factory=dict)
    _new_queue: deque[tuple[float, str]] = field(default_factory=deque)
    _gone_queue: deque[tuple[float, str]] = field(default_factory=deque)

    def update(self, snap: Snapshot) -> dict[str, Marked | None]:
        """Take a poll; returns the keys whose row changed: the new row, or None (gone)."""
        now = snap.taken_at
        new, old = snap.by_key, self.current
        changed: dict[str, Marked | None] = {}
        marked, counts = self.marked, self.counts
        # The same sockets in the same order: one comparison in C (identity first).
        if new is not old and snap.sockets != self._sockets:
            added = 0
            for key, sock in new.items():
                prev = old.get(key)
                if prev is sock:
                    continue
                if prev is None:
                    added += 1
                    counts[state_name(sock)] += 1
                    self._gone_since.pop(key, None)
                    if self.primed:
                        self._new_since[key] = now
                        self._new_queue.append((now, key))
                    mark = NEW_MARK if self.primed else ""
                else:
                    if prev.state != sock.state or prev.is_tcp != sock.is_tcp:
                        counts[state_name(prev)] -= 1
                        counts[state_name(sock)] += 1
                    mark = marked[key].mark
                changed[key] = marked[key] = Marked(key, sock, mark)
            if len(old) + added != len(new):  # something vanished
                for key, sock in old.items():
                    if key not in new:
                        counts[state_name(sock)] -= 1
                        self._new_since.pop(key, None)
                        self._gone_since[key] = now
                        self._gone_queue.append((now, key))
                        changed[key] = marked[key] = Marked(key, sock, GONE_MARK)
        self.current, self._sockets = new, snap.sockets
        self._expire(now, changed)
        self.primed = True
        return changed

    def _expire(self, now: float, changed: dict[str, Marked | None]) -> None:
        marked = self.marked
        # A mark ends ``seconds`` after it began, or at once when the clock went back to
        # before it began (else a GONE row would stay until the clock caught up).
        queue = self._new_queue
        while queue and not 0 <= now - queue[0][0] < self.seconds:
            at, key = queue.popleft()
            if self._new_since.get(key) == at:
                del self._new_since[key]
                changed[key] = marked[key] = Marked(key, marked[key].sock, "")
        queue = self._gone_queue
        while queue and not 0 <= now - queue[0][0] < self.seconds:
            at, key = queue.popleft()
            if self._gone_since.get(key) == at:
                del self._gone_since[key]
                del marked[key]
                changed[key] = None


@dataclass
class TableFeed:
    """One socket table: all its rows in order, and what the widget was last given.

    Args:
        columns: the table's ``(label, key)`` pairs.
    """

    columns: Sequence[tuple[str, str]]
    members: dict[str, Marked] = field(default_factory=dict)
    gone: int = 0  # members marked GONE
    shown: set[str] = field(default_factory=set)  # keys in the widget
    order: RowOrder = field(default_factory=RowOrder)  # every member, sorted
    pending: set[str] = field(default_factory=set)  # members changed since the last show
    _options: ViewOptions | None = None
    _order_signature: tuple[object, ...] | None = None  # (user sort, listen ports)
    _cells: dict[str, tuple[Marked, tuple[Cell, ...]]] = field(default_factory=dict)
    _hay: dict[str, str] = field(default_factory=dict)  # search text, until the row changes
    # A restart's rows (sort key, key) in display order, and how many the table has.
    _stream: list[tuple[object, str]] = field(default_factory=list)
    _stream_at: int = 0
    _stream_drop: list[str] = field(default_factory=list)  # rows to take out first
    _stream_whole: bool = False  # the order changed: all rows at once
    _placed: dict[str, Socket] = field(default_factory=dict)  # the socket each sort key is of

    @property
    def column_keys(self) -> list[str]:
        return [k for _, k in self.columns]

    # -- membership ------------------------------------------------------------------
    def put(self, m: Marked) -> None:
        old = self.members.get(m.key)
        self.gone += (m.mark == GONE_MARK) - (old is not None and old.mark == GONE_MARK)
        self.members[m.key] = m
        self.pending.add(m.key)
        self._hay.pop(m.key, None)

    def discard(self, key: str) -> None:
        old = self.members.pop(key, None)
        if old is not None:
            self.gone -= old.mark == GONE_MARK
            self.pending.add(key)

    # -- per row, cached while the row is the same object --------------------------------
    def cells(self, m: Marked, options: ViewOptions) -> tuple[Cell, ...]:
        hit = self._cells.get(m.key)
        if hit is not None and hit[0] is m:
            return hit[1]
        prev = hit[0] if hit is not None else None
        if prev is not None and prev.sock is m.sock:  # only the mark changed
            cells = hit[1]  # type: ignore[index]
            keys = self.column_keys
            if "mark" in keys:
                i = keys.index("mark")
                cells = cells[:i] + (mark_cell(m.mark),) + cells[i + 1 :]
        else:
            cells = row_cells(m, self.column_keys, options)
        self._cells[m.key] = (m, cells)
        return cells

    def matches(self, m: Marked, plain: ViewOptions, text: str) -> bool:
        """``plain`` is the options without their text; ``text`` is that text, lowered."""
        if not plain.matches(m.sock):
            return False
        if not text:
            return True
        hay = self._hay.get(m.key)
        if hay is None:
            hay = self._hay[m.key] = haystack(m.sock)
        return text in hay

    def matching(
        self, items: Iterable[tuple[object, str]], options: ViewOptions
    ) -> list[tuple[object, str]]:
        """The ``(sort_key, key)`` items whose rows pass ``options``, in the same order."""
        plain, text = replace(options, text=""), options.text.lower()
        members = self.members
        if plain != ViewOptions(sort=plain.sort, reverse=plain.reverse, numeric=plain.numeric):
            return [item for item in items if self.matches(members[item[1]], plain, text)]
        if not text:
            return list(items)
        # Only the text to look for: one dictionary lookup and one `in` per row.
        hay, found = self._hay, []
        for item in items:
            h = hay.get(item[1])
            if h is None:
                h = hay[item[1]] = haystack(members[item[1]].sock)
            if text in h:
                found.append(item)
        return found

    # -- to the widget -------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Rows are still to be handed to the table (a show with a budget stopped short)."""
        return (
            bool(self._stream)
            or bool(self._stream_drop)
            or self._stream_whole
            or bool(self.pending)
        )

    def show(
        self,
        table: KeyedTable,
        options: ViewOptions,
        order_for: Callable[[str | None], Callable[[Marked], tuple[object, ...]]],
        order_signature: object,
        budget: int | None = None,
    ) -> bool:
        """Bring ``table`` up to date with the members and ``options``.

        Args:
            budget: at most this many rows handed over now (None: all); call again
                while it returns False. The rows go in display order, so the top of
                a big table is right at once and the rest follows.

        Returns:
            True when the table is up to date.
        """
        user_sort = options.sort if options.sort in self.column_keys else None
        signature = (user_sort, order_signature if user_sort is None else None)
        key_of = order_for(user_sort)
        reverse = bool(user_sort) and options.reverse
        members = self.members
        if signature != self._order_signature:
            self._order_signature = signature
            self.order.rebuild((k, key_of(m)) for k, m in members.items())
            self._placed = {k: m.sock for k, m in members.items()}
            self._forget(self.pending)
            self.pending = set()
            self._restart(table, options, None, whole=True)
        elif options != self._options or (self._stream and self.pending):
            pending, self.pending = self.pending, set()
            self._place(pending, key_of)
            previous = self._options
            if previous is None or options.numeric != previous.numeric:
                self._cells.clear()
            narrowing = (
                previous is not None
                and not self._stream
                and previous.text.lower() in options.text.lower()
                and replace(previous, text=options.text) == options
            )
            # Typing on narrows the filter: only rows shown now (or just changed) can match.
            self._restart(table, options, pending if narrowing else None)
        elif len(self.pending) > REBUILD_SHARE * len(self.shown) + 64:
            pending, self.pending = self.pending, set()
            self._place(pending, key_of)
            self._restart(table, options, None)
        elif self.pending:
            self._changes(table, options, key_of, budget)
            return not self.pending
        return self._hand_over(table, options, reverse, budget)

    def _place(self, keys: set[str], key_of: Callable[[Marked], tuple[object, ...]]) -> None:
        """Move changed rows to their places in the order of all members.

        A row whose socket is the same object keeps its sort key (only its mark
        changed: NEW or GONE), unless the table is sorted by the mark.
        """
        members, order, placed = self.members, self.order, self._placed
        by_mark = self._order_signature is not None and self._order_signature[0] == "mark"
        moves: list[tuple[str, object]] = []
        for key in keys:
            m = members.get(key)
            if m is None:
                if key in order:
                    moves.append((key, None))
                placed.pop(key, None)
            elif by_mark or placed.get(key) is not m.sock:
                placed[key] = m.sock
                new_key = key_of(m)
                if order.sort_keys.get(key, _NOWHERE) != new_key:
                    moves.append((key, new_key))
        if len(moves) > REBUILD_SHARE * len(order) + 64:  # one sort beats many moves
            order.rebuild(
                itertools.chain(
                    ((k, sk) for k, sk in order.sort_keys.items() if k in members),
                    ((k, sk) for k, sk in moves if sk is not None),
                )
            )
        else:
            for key, sort_key in moves:
                if sort_key is None:
                    order.remove(key)
                else:
                    order.put(key, sort_key)
        self._forget(keys)

    def _changes(
        self,
        table: KeyedTable,
        options: ViewOptions,
        key_of: Callable[[Marked], tuple[object, ...]],
        budget: int | None,
    ) -> None:
        """A few rows changed: each is placed, formatted and handed over on its own."""
        if budget is None or budget >= len(self.pending):
            keys, self.pending = self.pending, set()
        else:
            keys = {self.pending.pop() for _ in range(budget)}
        self._place(keys, key_of)
        plain, text = replace(options, text=""), options.text.lower()
        upserts: list[TableRow] = []
        removed: list[str] = []
        shown, members = self.shown, self.members
        for key in keys:
            m = members.get(key)
            if m is not None and self.matches(m, plain, text):
                upserts.append(TableRow(key, self.cells(m, options), self.order.sort_keys[key]))
                shown.add(key)
            elif key in shown:
                removed.append(key)
                shown.discard(key)
        table.update(upserts, removed)

    def _forget(self, keys: Iterable[str]) -> None:
        """Drop the caches of rows that left the table."""
        for key in keys:
            if key not in self.members:
                self._cells.pop(key, None)
                self._hay.pop(key, None)

    def _restart(
        self, table: KeyedTable, options: ViewOptions, narrow: set[str] | None, whole: bool = False
    ) -> None:
        """Every row again: one pass over the members in sorted order gives the rows
        the table must show; :meth:`_hand_over` gives them to it.

        Args:
            narrow: when the filter only got stricter, the rows changed since the
                last show; then only those and the rows shown now are tried.
            whole: the order changed: the table gets every row at once (rows handed
                over a slice at a time would show a half-sorted table meanwhile).
        """
        previous, self._options = self._options, options
        candidates: Iterable[tuple[object, str]] = self.order.sorted
        shown = self.shown
        if narrow is not None:
            candidates = [
                item for item in self.order.sorted if item[1] in shown or item[1] in narrow
            ]
        found = self.matching(candidates, options)
        user_sort = options.sort if options.sort in self.column_keys else None
        reverse = bool(user_sort) and options.reverse
        whole = (whole or reverse != table.reversed) and table.row_count > 0
        if (
            narrow is not None
            and not narrow
            and len(found) == len(shown)
            and not whole
            and previous is not None
            and previous.numeric == options.numeric
        ):
            return  # a stricter filter that every row shown still passes: nothing to redo
        self.shown = {key for _, key in found}
        # Rows that leave go at once; the others are handed over from the top of
        # the table down, the rows the user sees first. Rows stay in the table all
        # the while, so the cursor and the scroll stay on theirs.
        self._stream_drop = [] if whole else [k for k in table.rows if k not in self.shown]
        if reverse:
            found.reverse()
        self._stream, self._stream_at, self._stream_whole = found, 0, whole

    def _hand_over(
        self, table: KeyedTable, options: ViewOptions, reverse: bool, budget: int | None
    ) -> bool:
        """The next rows of a restart, in display order; True when all are handed over."""
        stream, members = self._stream, self.members
        if self._stream_whole:
            if reverse:
                stream.reverse()  # ascending for the table
            have = table.rows
            rows = [
                TableRow(key, self.cells(members[key], options), sort_key)
                for sort_key, key in stream
            ]
            if len(rows) == len(have) and all(have.get(r.key) is r.cells for r in rows):
                table.reorder(stream, reverse)  # a new sort of the same rows
            else:
                table.replace(rows, reverse=reverse, presorted=True)
            self._stream, self._stream_whole = [], False
            return True
        if self._stream_drop:
            table.update(removed=self._stream_drop)
            self._stream_drop = []
        if not stream:
            return True
        start = self._stream_at
        end = len(stream) if budget is None else min(len(stream), start + budget)
        rows = []
        for sort_key, key in stream[start:end]:
            cells = self.cells(members[key], options)
            if not table.holds(key, cells, sort_key):
                rows.append(TableRow(key, cells, sort_key))
        table.update(rows)
        self._stream_at = end
        if end < len(stream):
            return False
        self._stream = []
        return True


class SocketFeed:
    """Every socket table of the main screen, fed from polls.

    Args:
        tables: table name -> its columns (``listen``, ``established``,
            ``other``, ``udp``).
    """

    def __init__(
        self, tables: Mapping[str, Sequence[tuple[str, str]]], seconds: float = MARK_SECONDS
    ) -> None:
        self.marks = Marks(seconds=seconds)
        self.tables = {name: TableFeed(columns) for name, columns in tables.items()}
        self._table_of: dict[str, str] = {}
        self._listen_ports: Counter[int] = Counter()

    @property
    def marked(self) -> dict[str, Marked]:
        """Every row shown, by key (current sockets and the GONE ones)."""
        return self.marks.marked

    @property
    def counts(self) -> dict[str, int]:
        """Open sockets per state (UDP under ``UDP``), as ``Snapshot.counts``."""
        return {k: v for k, v in self.marks.counts.items() if v}

    def update(self, snap: Snapshot) -> int:
        """Take a poll; returns how many rows changed."""
        changed = self.marks.update(snap)
        for key, m in changed.items():
            old = self._table_of.get(key)
            new = table_of(m.sock) if m is not None else None
            if old is not None and old != new:
                if old == "listen":
                    self._listen_port(self.tables[old].members[key].sock, -1)
                self.tables[old].discard(key)
            if new is None:
                self._table_of.pop(key, None)
                continue
            self._table_of[key] = new
            if new == "listen" and old != "listen":
                self._listen_port(m.sock, 1)  # type: ignore[union-attr]
            self.tables[new].put(m)  # type: ignore[arg-type]
        return len(changed)

    def _listen_port(self, sock: Socket, step: int) -> None:
        self._listen_ports[sock.local_port] += step
        if not self._listen_ports[sock.local_port]:
            del self._listen_ports[sock.local_port]

    @property
    def listen_ports(self) -> set[int]:
        return set(self._listen_ports)

    def show(
        self, name: str, table: KeyedTable, options: ViewOptions, budget: int | None = None
    ) -> TableFeed:
        """Bring one table up to date (with ``budget``: that many rows, then see
        ``busy``); returns its feed (for the counts in its title)."""
        feed = self.tables[name]
        ports = frozenset(self._listen_ports)
        feed.show(table, options, lambda user_sort: sort_function(user_sort, ports), ports, budget)
        return feed

    @property
    def busy(self) -> bool:
        """Some table still has rows to be handed over."""
        return any(feed.busy for feed in self.tables.values())
