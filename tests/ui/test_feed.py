"""The feed redoes only what changed, and ends where redoing everything every poll ends.

A reference computes each table from scratch every poll (as the dashboard did
before: mark every socket, group, filter, sort, format); the feed, fed the same
polls with the same churn, must leave every table with the same rows, in the
same order, with the same cells, and the same counts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest
from textual.app import App, ComposeResult

from app.core.model import Owner, Snapshot, Socket
from app.ui.cells import (
    ESTABLISHED_COLUMNS,
    LISTEN_COLUMNS,
    OTHER_COLUMNS,
    UDP_COLUMNS,
    row_cells,
    sort_function,
)
from app.ui.feed import SocketFeed, table_of
from app.ui.rows import GONE_MARK, MARK_SECONDS, NEW_MARK, Marked, ViewOptions
from app.ui.widgets.backlog import BacklogPanel
from app.ui.widgets.keyed_table import KeyedTable

TABLES = {
    "listen": LISTEN_COLUMNS,
    "established": ESTABLISHED_COLUMNS,
    "other": OTHER_COLUMNS,
    "udp": UDP_COLUMNS,
}


@dataclass
class ReferenceMarks:
    """The marks as the dashboard computed them before: every socket, every poll."""

    seconds: float = MARK_SECONDS
    first_seen: dict[str, float] = field(default_factory=dict)
    gone: dict[str, tuple[Socket, float]] = field(default_factory=dict)
    primed: bool = False
    last: dict[str, Socket] = field(default_factory=dict)

    def update(self, snap: Snapshot) -> list[Marked]:
        now, current = snap.taken_at, snap.by_key
        for key, sock in self.last.items():
            if key not in current and key not in self.gone:
                self.gone[key] = (sock, now)
        out = []
        for key, sock in current.items():
            first = self.first_seen.setdefault(key, now if self.primed else now - self.seconds)
            self.gone.pop(key, None)
            out.append(Marked(key, sock, NEW_MARK if now - first < self.seconds else ""))
        for key in [k for k in self.first_seen if k not in current]:
            del self.first_seen[key]
        for key, (sock, at) in list(self.gone.items()):
            if now - at >= self.seconds:
                del self.gone[key]
            else:
                out.append(Marked(key, sock, GONE_MARK))
        self.last, self.primed = current, True
        return out


def reference_rows(
    marked: list[Marked], options: ViewOptions
) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    groups: dict[str, list[Marked]] = {name: [] for name in TABLES}
    for m in marked:
        groups[table_of(m.sock)].append(m)
    listen_ports = {m.sock.local_port for m in groups["listen"]}
    out = {}
    for name, columns in TABLES.items():
        keys = [k for _, k in columns]
        user_sort = options.sort if options.sort in keys else None
        order = sort_function(user_sort, listen_ports)
        chosen = sorted(
            (
                (order(m), m.key, row_cells(m, keys, options))
                for m in groups[name]
                if options.matches(m.sock)
            ),
            key=lambda c: (c[0], c[1]),
        )
        if user_sort and options.reverse:
            chosen.reverse()
        out[name] = [(key, tuple(str(c) for c in cells)) for _, key, cells in chosen]
    return out


STATES = ["ESTABLISHED", "TIME_WAIT", "CLOSE_WAIT", "SYN_SENT", "FIN_WAIT2"]


def random_socket(rng: random.Random, listen_ports: list[int]) -> Socket:
    kind = rng.random()
    pid = rng.choice([None, 100, 200, 300])
    others: list[Owner] = ["kernel", "hidden"]
    owner: Owner = "process" if pid else rng.choice(others)
    if kind < 0.1:
        return Socket(
            "tcp",
            rng.choice(["0.0.0.0", "127.0.0.1"]),
            rng.choice(listen_ports),
            None,
            None,
            "LISTEN",
            pid=pid,
            process="srv" if pid else None,
            owner=owner,
            recv_q=rng.choice([0, 0, 1]),
            user="u",
        )
    if kind < 0.2:
        return Socket(
            rng.choice(["udp", "udp6"]),
            "0.0.0.0" if rng.random() < 0.5 else "::",
            rng.randrange(1024, 65535),
            None,
            None,
            "NONE",
            pid=pid,
            process="udp" if pid else None,
            owner=owner,
            user="u",
        )
    local = rng.choice(listen_ports + [rng.randrange(30000, 60000)])
    return Socket(
        "tcp",
        "127.0.0.1",
        local,
        "127.0.0.1",
        rng.randrange(30000, 60000),
        rng.choice(STATES),
        pid=pid,
        process="cli" if pid else None,
        owner=owner,
        service=rng.choice([None, "x11"]),
        user=rng.choice([None, "u"]),
    )


class Tables(App[None]):
    def compose(self) -> ComposeResult:
        for name, columns in TABLES.items():
            yield KeyedTable(columns, id=name)


@pytest.mark.parametrize("budget", [None, 7])
async def test_the_feed_ends_where_a_full_rebuild_every_poll_ends(  # noqa: C901 - a test
    budget: int | None,
) -> None:
    """With a budget the rows are handed over a few at a time (as the screen does, a
    slice per turn of the event loop), and options may change between slices."""
    rng = random.Random(10)
    ports = [6000, 16000, 45321]
    app = Tables()
    feed, reference = SocketFeed(TABLES), ReferenceMarks()
    options = ViewOptions()
    sockets: dict[str, Socket] = {}
    now = 1000.0
    async with app.run_test() as pilot:
        for round_ in range(40):
            # Churn: some go, some come, some change (a new object), the rest stay the same.
            for key in [k for k in sockets if rng.random() < 0.08]:
                del sockets[key]
            for key in [k for k in sockets if rng.random() < 0.05]:
                old = sockets[key]
                sockets[key] = replace(
                    old,
                    recv_q=old.recv_q + 1,
                    state=rng.choice(STATES) if old.remote_addr else old.state,
                    owner=rng.choice(["kernel", old.owner]),
                )
            for _ in range(rng.randrange(0, 30 if round_ else 300)):
                s = random_socket(rng, ports)
                sockets.setdefault(s.key, s)
            if round_ == 12:
                ports.append(7000)  # a new listening port: the pairs reorder
            now += rng.choice([0.5, 1.0, 1.0, 2.0])
            snap = Snapshot(now, tuple(sockets.values()))
            marked = reference.update(snap)
            feed.update(snap)
            if round_ in (8, 9, 10):
                options = replace(
                    options, text=("127.0.0.1:3", "127.0.0.1:30", "127.0.0.1:3")[round_ - 8]
                )
            elif round_ == 15:
                options = replace(options, text="", sort="peer")
            elif round_ == 20:
                options = replace(options, reverse=True, numeric=True)
            elif round_ == 25:
                options = replace(options, sort=None, reverse=False, family=6)
            elif round_ == 30:
                options = replace(options, family=None, text="time-wait")
            for name in TABLES:
                feed.show(name, app.query_one(f"#{name}", KeyedTable), options, budget)
            if budget is not None and round_ % 5 == 4 and feed.busy:
                options = replace(options, numeric=not options.numeric)  # mid-way
            while feed.busy:
                for name in TABLES:
                    feed.show(name, app.query_one(f"#{name}", KeyedTable), options, budget)
            await pilot.pause()
            want = reference_rows(marked, options)
            for name in TABLES:
                table = app.query_one(f"#{name}", KeyedTable)
                got = [(k, tuple(str(c) for c in table.get_row(k))) for k in table.keys]
                assert got == want[name], (round_, name)
                # Each column as wide as its widest cell, at least its header (the mark 6).
                least = [max(len(label), 6 if key == "mark" else 0) for label, key in TABLES[name]]
                assert table.column_widths == [
                    max([least[i], *(len(cells[i]) for _, cells in want[name])])
                    for i in range(len(least))
                ], (round_, name)
                members = feed.tables[name]
                assert len(members.members) == sum(table_of(m.sock) == name for m in marked)
                assert members.gone == sum(
                    m.mark == GONE_MARK and table_of(m.sock) == name for m in marked
                )
            assert {m.key: (m.sock, m.mark) for m in marked} == {
                k: (m.sock, m.mark) for k, m in feed.marked.items()
            }
            assert feed.counts == snap.counts()


async def test_a_poll_with_nothing_changed_touches_no_table() -> None:
    rng = random.Random(3)
    app = Tables()
    feed = SocketFeed(TABLES)
    sockets = {s.key: s for s in (random_socket(rng, [6000]) for _ in range(500))}
    async with app.run_test() as pilot:
        for t in (1000.0, 1001.0):
            feed.update(Snapshot(t, tuple(sockets.values())))
            for name in TABLES:
                feed.show(name, app.query_one(f"#{name}", KeyedTable), ViewOptions())
        await pilot.pause()
        updates = {name: app.query_one(f"#{name}", KeyedTable).updates for name in TABLES}
        # Later polls: the very same socket objects. Nothing is marked, shown or drawn.
        for t in (1005.0, 1006.0):
            assert feed.update(Snapshot(t, tuple(sockets.values()))) == 0
            for name in TABLES:
                feed.show(name, app.query_one(f"#{name}", KeyedTable), ViewOptions())
        assert updates == {name: app.query_one(f"#{name}", KeyedTable).updates for name in TABLES}


def test_the_backlog_index_kept_per_change_equals_one_made_from_scratch() -> None:
    rng = random.Random(5)
    ports = [6000, 16000]
    panel = BacklogPanel()
    sockets: dict[str, Socket] = {}
    first_seen: dict[str, float] = {}
    for round_ in range(30):
        for key in [k for k in sockets if rng.random() < 0.1]:
            del sockets[key]
        for key in [k for k in sockets if rng.random() < 0.05]:
            sockets[key] = replace(sockets[key], recv_q=sockets[key].recv_q + 1)
        for _ in range(rng.randrange(0, 40 if round_ else 200)):
            s = random_socket(rng, ports)
            sockets.setdefault(s.key, s)
        if round_ == 10:
            ports.append(45321)
        snap = Snapshot(1000.0 + round_, tuple(sockets.values()))
        panel._index(snap)
        # From scratch, as update_snapshot did before.
        listening = {s.local_port for s in snap.sockets if s.state == "LISTEN"}
        want: dict[int, set[str]] = {}
        seen = {}
        for s in snap.sockets:
            if s.local_port in listening and s.state != "LISTEN" and s.is_tcp:
                want.setdefault(s.local_port, set()).add(s.key)
                seen[s.key] = first_seen.get(s.key, snap.taken_at)
        first_seen = seen
        got = {port: {s.key for s in socks} for port, socks in panel.by_port.items()}
        assert got == want, round_
        assert all(s is snap.by_key[s.key] for socks in panel.by_port.values() for s in socks)
        assert panel.first_seen == first_seen, round_


def test_marks_end_when_the_clock_goes_back() -> None:
    """A GONE (or NEW) row ends MARK_SECONDS after it began, or at the next poll when the
    clock was set back to before it began: not an hour later, when the clock catches up."""
    from app.ui.feed import Marks

    a = Socket("tcp", "127.0.0.1", 6000, None, None, "LISTEN", pid=1)
    b = Socket("tcp", "127.0.0.1", 6001, None, None, "LISTEN", pid=1)
    marks = Marks()
    t = 1_000_000.0
    marks.update(Snapshot(t, (a,)))
    marks.update(Snapshot(t + 1, (b,)))  # a went, b came
    assert marks.marked[a.key].mark == GONE_MARK and marks.marked[b.key].mark == NEW_MARK
    changed = marks.update(Snapshot(t + 1.5 - 3600, (b,)))  # the clock: an hour back
    assert changed == {a.key: None, b.key: Marked(b.key, b, "")}
    assert a.key not in marks.marked and marks.marked[b.key].mark == ""
    marks.update(Snapshot(t + 2 - 3600, (a, b)))  # marks go on from the new time
    assert marks.marked[a.key].mark == NEW_MARK
    marks.update(Snapshot(t + 2 - 3600 + MARK_SECONDS, (a, b)))
    assert marks.marked[a.key].mark == ""
