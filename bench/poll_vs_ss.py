"""One full poll of the observatory against ``ss -tanp``, side by side.

For N loopback connection pairs held open by this process (N = 100, 1000,
8000 by default), time in the same loop:

* ``ss -tanp`` run as a command (what a person types; includes its start-up),
* the observatory's poll with a warm owner cache (what the dashboard does
  every interval: /proc/net parsed, owners already known),
* a cold poll (a new source: the full /proc/*/fd walk, as a first poll),
* ``psutil.net_connections("tcp")`` for reference.

Prints medians in milliseconds and each as a ratio to ``ss -tanp``
(below 1.0 means faster than ss). Run: ``make bench`` or
``python bench/poll_vs_ss.py [--sizes 100 1000 8000] [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from app.core.sockets import ProcNetSource  # noqa: E402


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def open_pairs(n: int) -> list[socket.socket]:
    """N client sockets connected to one loopback listener, and N accepted ends."""
    held: list[socket.socket] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    held.append(srv)
    addr = srv.getsockname()
    for _ in range(n):
        c = socket.socket()
        c.connect(addr)
        held.append(c)
        a, _ = srv.accept()
        held.append(a)
    return held


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_ss() -> None:
    subprocess.run(["ss", "-tanp"], stdout=subprocess.DEVNULL, check=True)


def bench(n: int, rounds: int) -> dict[str, float]:
    held = open_pairs(n)
    try:
        warm = ProcNetSource()
        warm.poll()  # fill the owner cache once
        times: dict[str, list[float]] = {"ss": [], "warm": [], "cold": [], "psutil": []}
        for _ in range(rounds):
            times["ss"].append(timed(run_ss))
            times["warm"].append(timed(warm.poll))
            times["cold"].append(timed(lambda: ProcNetSource().poll()))
            times["psutil"].append(timed(lambda: psutil.net_connections("tcp")))
        sockets = len(warm.poll().sockets)
    finally:
        for s in held:
            s.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    med["sockets"] = sockets
    return med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 8000])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("ss") is None:
        print("ss is not installed (apt-get install iproute2)", file=sys.stderr)
        return 1
    limit = raise_nofile(2 * max(args.sizes) + 100)
    print(f"RLIMIT_NOFILE raised to {limit}; {args.rounds} rounds per size; medians in ms; "
          f"ratio = time / ss -tanp time")
    print(f"{'pairs':>6} {'sockets':>8} {'ss -tanp':>9} {'warm poll':>10} {'ratio':>6} "
          f"{'cold poll':>10} {'ratio':>6} {'psutil':>8} {'ratio':>6}")
    for n in args.sizes:
        if 2 * n + 50 > limit:
            print(f"{n:>6}  skipped: needs {2 * n + 50} file descriptors, limit is {limit}")
            continue
        m = bench(n, args.rounds)
        ss = m["ss"]
        print(f"{n:>6} {int(m['sockets']):>8} {ss * 1e3:>9.1f} {m['warm'] * 1e3:>10.1f} "
              f"{m['warm'] / ss:>6.2f} {m['cold'] * 1e3:>10.1f} {m['cold'] / ss:>6.2f} "
              f"{m['psutil'] * 1e3:>8.1f} {m['psutil'] / ss:>6.2f}")
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
