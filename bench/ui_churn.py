"""What the screen costs per poll, by how much changed: nothing, 1%, everything.

A helper process holds N loopback connection pairs (in a network namespace of
the benchmark's own, see ``uiutil``); the app runs headless (Textual's
run_test) with no poller, and this script hands it real polls from the
dashboard's default socket source: the first (every row new), polls where
nothing changed, polls where 1% of the pairs were replaced, all connections
closing at once (rows marked GONE), the GONE rows leaving, all coming back, a
typed filter and a sort. For each it prints the UI's CPU time (this process,
the poll itself excluded: it is taken before) until the screen is drawn, the
median of several rounds, and the share of a full refresh (the first poll).
Run: ``python bench/ui_churn.py [--pairs 8000] [--rounds 5] [--profile STEP]``
(``--profile steady`` prints cProfile's top functions for that step: first,
steady, churn, gone, leave, appear, filter, sort, down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uiutil import Holder, in_private_netns, raise_nofile  # noqa: E402

from app.core.diff import diff  # noqa: E402
from app.core.model import Snapshot  # noqa: E402
from app.core.sockets import default_source  # noqa: E402
from app.ui.app import ObservatoryApp  # noqa: E402
from app.ui.messages import PollResult  # noqa: E402

PROFILE: str | None = None


@contextlib.contextmanager
def profiled(step: str) -> Iterator[None]:
    """cProfile around the step named by ``--profile``; its top functions on stdout."""
    if step != PROFILE:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        print(f"--- profile of {step!r} (cumulative) ---")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(35)


async def run(pairs: int, rounds: int) -> list[tuple[str, float, int]]:
    holder = Holder(pairs)
    source = default_source()
    app = ObservatoryApp(source, None, poll=False, interfaces=lambda: [])
    rows: list[tuple[str, float, int]] = []
    previous: Snapshot | None = None
    try:
        async with app.run_test(size=(120, 40)) as pilot:

            async def step(snap: Snapshot, name: str) -> float:
                nonlocal previous
                events = diff(previous, snap) if previous is not None else []
                with profiled(name):
                    started = time.process_time()
                    app.deliver(PollResult(snap, events, [], None))
                    await settled()
                    took = time.process_time() - started
                previous = snap
                return took

            async def settled() -> None:
                """Until every slice of rows is in the tables and drawn."""
                await pilot.pause()
                screen = app.main_screen()
                while screen is not None and screen.feed.busy:
                    await pilot.pause()

            def poll() -> Snapshot:
                return source.poll()

            async def timed_keys(*keys: str, name: str = "") -> float:
                with profiled(name):
                    started = time.process_time()
                    await pilot.press(*keys)
                    await settled()
                    return time.process_time() - started

            first = poll()
            full = await step(first, "first")
            rows.append(("first poll: every row new", full, len(first.sockets)))
            steady = []
            for _ in range(rounds):
                await asyncio.sleep(0.2)
                steady.append(await step(poll(), "steady"))
            rows.append(
                (
                    "a poll with nothing changed",
                    statistics.median(steady),
                    len(previous.sockets) if previous else 0,
                )
            )
            churn = []
            for _ in range(rounds):
                holder.send(f"churn {max(1, pairs // 100)}")
                churn.append(await step(poll(), "churn"))
            rows.append(
                (
                    "1% of the pairs replaced",
                    statistics.median(churn),
                    len(previous.sockets) if previous else 0,
                )
            )
            await asyncio.sleep(3.1)  # their GONE rows leave
            await step(poll(), "")
            holder.send("close")
            rows.append(
                (
                    "all pairs closed at once (GONE)",
                    await step(poll(), "gone"),
                    len(previous.sockets) if previous else 0,
                )
            )
            await asyncio.sleep(3.1)
            rows.append(("the GONE rows leave", await step(poll(), "leave"), 0))
            holder.send(f"open {pairs}")
            rows.append(
                (
                    f"{pairs} pairs appear at once",
                    await step(poll(), "appear"),
                    len(previous.sockets) if previous else 0,
                )
            )
            await asyncio.sleep(3.1)
            await step(poll(), "")  # their NEW marks go
            await timed_keys("slash")
            typed = [await timed_keys(ch, name="filter") for ch in "127.0.0.1:4"]
            rows.append(("filter typed: each key (median)", statistics.median(typed), 0))
            rows.append(("filter typed: slowest key", max(typed), 0))
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("tab")  # the ESTABLISHED table
            sorts = [await timed_keys("o", name="sort") for _ in range(5)]
            rows.append(("sort by the next column (median)", statistics.median(sorts), 0))
            rows.append(
                (
                    "cursor down",
                    statistics.median(
                        [await timed_keys("down", name="down") for _ in range(rounds)]
                    ),
                    0,
                )
            )
            rows.append(("End: the last row", await timed_keys("end"), 0))
    finally:
        holder.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", metavar="STEP", help="profile one step (see above)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    in_private_netns()
    raise_nofile()
    rows = asyncio.run(run(args.pairs, args.rounds))
    full = rows[0][1]
    print(f"{args.pairs} pairs; UI CPU time until drawn (ms), and as a share of the first poll")
    for name, seconds, sockets in rows:
        count = f"{sockets} sockets" if sockets else ""
        print(f"  {name:<36} {seconds * 1e3:8.1f} ms {100 * seconds / full:6.1f}%  {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
