"""The dashboard as a real process in a real terminal (tmux), with thousands of sockets.

Everything runs in a network namespace of its own (see ``uiutil``), so the
dashboard sees exactly: one listener and N loopback connection pairs held by
another process. Measured, as the issue states them (CPU as process CPU time
from /proc/PID/stat over a window, not wall clock; medians of windows):

* idle: ~200 sockets, 1 s interval: share of one core;
* N pairs (2N + 1 sockets): share of one core with nothing changing, and with
  1% of the pairs replaced every second (``churn``); RSS;
* first filled table: seconds from the command to the ESTABLISHED table
  showing all 2N connections;
* key press to repaint (``down``/``up`` in the focused ESTABLISHED table; time
  until tmux shows the cursor on the next row), p95, under that load, while
  all N pairs vanish at once and come back, and while a filter is typed
  (time until the status line shows the text typed so far);
* ``q`` under load: seconds until the process is gone.

Run: ``make bench`` or ``python bench/ui_dashboard.py [--pairs 8000] [--window 10]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uiutil import (  # noqa: E402
    Holder,
    cpu_percent,
    in_private_netns,
    median,
    p95,
    raise_nofile,
    rss_mb,
)

TARGETS = {
    "idle_cpu": 2.0,
    "load_cpu": 10.0,
    "churn_cpu": 10.0,
    "rss": 150.0,
    "first": 1.0,
    "rss_max": 150.0,
    "key": 0.050,
    "key_mass": 0.050,
    "key_filter": 0.050,
    "quit": 3.0,
}
SGR = re.compile(r"\x1b\[([0-9;]*)m")
FOCUSED_CURSOR = {(255, 212, 0), (254, 212, 0)}  # the projector theme's cursor, focused


def cells(line: str) -> list[tuple[str, tuple[int, int, int] | None]]:
    """The characters of one ``capture-pane -e`` line with the background of each."""
    out: list[tuple[str, tuple[int, int, int] | None]] = []
    bg: tuple[int, int, int] | None = None
    pos = 0
    for match in SGR.finditer(line):
        out.extend((ch, bg) for ch in line[pos : match.start()])
        params = [int(p) if p else 0 for p in match.group(1).split(";")]
        i = 0
        while i < len(params):
            p = params[i]
            if p == 0 or p == 49:
                bg = None
            elif p == 48 and i + 4 < len(params) + 1 and params[i + 1] == 2:
                bg = tuple(params[i + 2 : i + 5])  # type: ignore[assignment]
                i += 4
            elif p in (38, 48) and i + 1 < len(params) and params[i + 1] == 5:
                i += 2
            elif p == 38 and i + 1 < len(params) and params[i + 1] == 2:
                i += 4
            i += 1
        pos = match.end()
    out.extend((ch, bg) for ch in line[pos:])
    return out


def cursor_row(pane: str) -> str | None:
    """The text of the focused table's cursor row (its addresses), or None."""
    for line in pane.splitlines():
        chars = cells(line)
        run = "".join(ch for ch, bg in chars if bg in FOCUSED_CURSOR)
        if "127.0.0.1" in run:
            words = run.split()
            return " ".join(w for w in words if ":" in w and w[0].isdigit())
    return None


class Dashboard:
    """The observatory in a private tmux server."""

    def __init__(self, name: str, data_dir: Path) -> None:
        from tests.e2e.tmuxutil import Tmux  # the e2e tests' tmux driver

        self.term = Tmux(name)
        self.started = time.monotonic()
        argv = [str(Path(sys.executable).parent / "observatory"), "--theme", "projector"]
        self.term.start(argv, env={"OBSERVATORY_DATA_DIR": str(data_dir)})
        self.pid = self.term.find_child().pid

    def pane(self, escapes: bool = False) -> str:
        flags = ["-e"] if escapes else []
        return self.term.tmux("capture-pane", "-p", *flags, "-t", self.term.name)

    def wait(
        self, predicate: Callable[[str], object], timeout: float = 30.0, escapes: bool = False
    ) -> float:
        """Seconds until ``predicate(pane)`` holds (polling the pane)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate(self.pane(escapes)):
                return time.monotonic() - start
            time.sleep(0.005)
        raise SystemExit(f"timed out after {timeout} s; the pane:\n{self.pane()}")

    def key(self, name: str, literal: bool = False) -> None:
        args = ["-l", name] if literal else [name]
        self.term.tmux("send-keys", "-t", self.term.name, *args)

    def cursor_move(self, key: str, timeout: float = 10.0) -> float | None:
        """Press ``key``; seconds until tmux shows the cursor on another row.

        None when no cursor row is on screen to move (an empty table); ``timeout``
        when it never moved.
        """
        before = cursor_row(self.pane(escapes=True))
        if before is None:
            return None
        start = time.monotonic()
        self.key(key)
        while time.monotonic() - start < timeout:
            row = cursor_row(self.pane(escapes=True))
            if row is not None and row != before:
                break
            time.sleep(0.005)
        return time.monotonic() - start

    def quit(self) -> float:
        start = time.monotonic()
        self.key("q")
        while os.path.exists(f"/proc/{self.pid}") and time.monotonic() - start < 30:
            time.sleep(0.01)
        return time.monotonic() - start

    def close(self) -> None:
        self.term.kill()


def established_shows(count: int, every: bool = False) -> Callable[[str], bool]:
    """The ESTABLISHED title counts ``count`` and rows fill the screen; with ``every``,
    all of them are in the table (no "· N shown": rows come a slice at a time)."""
    title = f"ESTABLISHED  (like ss -n state established) · {count}"

    def shown(pane: str) -> bool:
        if title not in pane or pane.count("127.0.0.1:") <= 20:
            return False
        return not every or re.search(re.escape(title) + r" [─━]", pane) is not None

    return shown


def cpu_windows(pid: int, windows: int, seconds: float) -> list[float]:
    return [cpu_percent(pid, seconds) for _ in range(windows)]


def moves(dash: Dashboard, count: int) -> list[float]:
    """``count`` cursor moves, down and up in turn, each timed."""
    out = []
    for i in range(count):
        took = dash.cursor_move("down" if i % 2 == 0 else "up")
        if took is not None:
            out.append(took)
        time.sleep(0.05)
    return out


def keys_while(dash: Dashboard, busy: Callable[[], None], seconds: float) -> list[float]:
    """Cursor moves timed while ``busy`` runs on a thread and for ``seconds`` after it
    starts (moments with no row on screen to move are skipped)."""
    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    out: list[float] = []
    deadline = time.monotonic() + seconds
    down = True
    while time.monotonic() < deadline or worker.is_alive():
        took = dash.cursor_move("down" if down else "up", timeout=5.0)
        if took is None:
            time.sleep(0.02)
            continue
        out.append(took)
        down = not down
        time.sleep(0.05)
    worker.join()
    return out


def measure(pairs: int, window: float, windows: int, data: Path) -> dict[str, float]:
    got: dict[str, float] = {}
    print(f"idle: 100 pairs (~200 sockets), {windows} windows of {window:g} s", flush=True)
    holder = Holder(100)
    dash = Dashboard("bench-idle", data)
    try:
        dash.wait(established_shows(200))
        time.sleep(3)
        got["idle_cpu"] = median(cpu_windows(dash.pid, windows, window))
        got["idle_rss"] = rss_mb(dash.pid)
        dash.quit()
    finally:
        dash.close()
        holder.stop()

    print(f"load: {pairs} pairs ({2 * pairs + 1} sockets)", flush=True)
    holder = Holder(pairs)
    dash = Dashboard("bench-load", data)
    try:
        dash.wait(established_shows(2 * pairs))
        got["first"] = time.monotonic() - dash.started
        dash.wait(established_shows(2 * pairs, every=True))
        got["first_all"] = time.monotonic() - dash.started
        time.sleep(3)
        got["load_cpu"] = median(cpu_windows(dash.pid, windows, window))
        got["rss"] = rss_mb(dash.pid)
        rss = [got["rss"]]

        churn = max(1, pairs // 100)
        stop = threading.Event()

        def churning() -> None:
            while not stop.wait(1.0):
                holder.send(f"churn {churn}")

        worker = threading.Thread(target=churning, daemon=True)
        worker.start()
        time.sleep(2)
        got["churn_cpu"] = median(cpu_windows(dash.pid, windows, window))
        stop.set()
        worker.join()
        time.sleep(4)  # the last churn's GONE rows leave

        dash.key("Tab")  # focus the ESTABLISHED table
        dash.wait(lambda p: cursor_row(p) is not None, escapes=True)
        moves(dash, 2)
        got["key"] = p95(moves(dash, 30))
        rss.append(rss_mb(dash.pid))

        # All pairs close (their rows stay 3 s, marked GONE, then go), then all come back.
        mass = keys_while(dash, lambda: holder.send("close"), 2.5)
        dash.wait(lambda p: "ESTABLISHED  (like ss -n state established) · 0 " in p)
        mass += keys_while(dash, lambda: holder.send(f"open {pairs}"), 5.0)
        got["key_mass"] = p95(mass)
        rss.append(rss_mb(dash.pid))

        typed: list[float] = []
        for text in ("4242", "127.0.0.1:3", "python"):
            dash.key("/")
            dash.wait(lambda p: "filter: type text" in p)
            for i in range(1, len(text) + 1):
                start = time.monotonic()
                dash.key(text[i - 1], literal=True)
                wanted = f"filter: {text[:i]}"
                dash.wait(lambda p, w=wanted: p.splitlines()[0].find(w + " ·") >= 0)
                typed.append(time.monotonic() - start)
            dash.key("Escape")
            dash.wait(lambda p: "filter:" not in p.splitlines()[0])
        got["key_filter"] = p95(typed)
        rss.append(rss_mb(dash.pid))
        got["rss_max"] = max(rss)
        print(
            "RSS MB after: first fill, churn, all closed and back, filters:",
            " ".join(f"{r:.0f}" for r in rss),
            flush=True,
        )
        got["quit"] = dash.quit()
    finally:
        dash.close()
        holder.stop()
    return got


ROWS = (
    ("idle_cpu", "idle, ~200 sockets, 1 s: CPU % of one core", "{:.1f}"),
    ("idle_rss", "idle: RSS MB", "{:.0f}"),
    ("load_cpu", "{S} sockets, 1 s, nothing changing: CPU %", "{:.1f}"),
    ("churn_cpu", "{S} sockets, 1% replaced every s: CPU %", "{:.1f}"),
    ("rss", "{S} sockets: RSS MB", "{:.0f}"),
    ("rss_max", "{S} sockets: RSS MB, most seen (all closed, back)", "{:.0f}"),
    ("first", "first filled table after start: s", "{:.2f}"),
    ("first_all", "all {S} rows in the table after start: s", "{:.2f}"),
    ("key", "key to repaint p95, under load: ms", "{:.0f}"),
    ("key_mass", "key to repaint p95, {P} pairs vanish/appear: ms", "{:.0f}"),
    ("key_filter", "key to repaint p95, filter typed: ms", "{:.0f}"),
    ("quit", "q under load: s until gone", "{:.2f}"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8000)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per CPU window")
    parser.add_argument("--windows", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("ui_dashboard: skipped, tmux is not installed (apt-get install tmux)")
        return 0
    in_private_netns()
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="observatory-bench-") as data:  # session records
        got = measure(args.pairs, args.window, args.windows, Path(data))
    sockets = 2 * args.pairs + 1
    print(f"\n{'':<52} {'measured':>9} {'target':>8}")
    for key, label, fmt in ROWS:
        value = got[key]
        scale = 1000 if key.startswith("key") else 1
        target = TARGETS.get(key)
        shown = fmt.format(value * scale)
        goal = "" if target is None else fmt.format(target * scale)
        verdict = "" if target is None else ("ok" if value <= target else "OVER")
        print(f"{label.format(S=sockets, P=args.pairs):<52} {shown:>9} {goal:>8} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
