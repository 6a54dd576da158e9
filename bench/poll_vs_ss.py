"""The observatory's socket reading against ``ss -tanp``, side by side, in the same loop.

For N loopback connection pairs held open by ANOTHER process (N = 100, 1000,
8000 by default; a lab machine's sockets are not the observatory's own), time
in one loop, round after round:

* ``ss -tanp`` run as a command (what a person types; includes its start-up);
* ``observatory snapshot --all`` as a whole process: text, ``--json``, and
  ``--json`` with ``PYTHONUNBUFFERED=1`` in the environment (as many images
  and CI runners set it);
* the dashboard's poll with a warm owner cache (sock_diag; /proc/net beside
  it for reference) and a cold poll (a new source: the full /proc/*/fd walk);
* ``psutil.net_connections("tcp")`` for reference.

Prints medians in milliseconds and each as a ratio to ``ss -tanp`` (below 1.0
means faster than ss), with the issue's target beside the ones that have one.
Run: ``make bench`` or ``python bench/poll_vs_ss.py [--sizes 100 1000 8000]
[--rounds 15]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from app.core.sockets import DiagSource, ProcNetSource  # noqa: E402

# The targets of issue 9, as ratios to ss -tanp in the same run.
TARGETS = {"snapshot": 1.0, "json": 1.0, "json_unbuffered": 1.0, "warm": 0.3}


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


def hold_pairs(n: int) -> subprocess.Popen[str]:
    """Another process holding N pairs until its stdin closes."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from poll_vs_ss import open_pairs, raise_nofile;"
        "raise_nofile(2 * int(sys.argv[2]) + 100); held = open_pairs(int(sys.argv[2]));"
        "print('ready', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(REPO / "bench"), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the holder of {n} pairs did not start")
    return proc


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def command(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], object]:
    def run() -> None:
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)

    return run


def bench(n: int, rounds: int) -> dict[str, float]:
    holder = hold_pairs(n)
    observatory = [sys.executable, "-m", "app", "snapshot", "--all"]
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    unbuffered = {**plain, "PYTHONUNBUFFERED": "1"}
    runs: dict[str, Callable[[], object]] = {
        "ss": command(["ss", "-tanp"]),
        "snapshot": command(observatory, plain),
        "json": command([*observatory, "--json"], plain),
        "json_unbuffered": command([*observatory, "--json"], unbuffered),
    }
    try:
        warm, warm_proc = DiagSource(), ProcNetSource()
        warm.poll()  # fill the owner caches once
        warm_proc.poll()
        runs.update(
            {
                "warm": warm.poll,
                "cold": lambda: DiagSource().poll(),
                "warm_proc": warm_proc.poll,
                "psutil": lambda: psutil.net_connections("tcp"),
            }
        )
        times: dict[str, list[float]] = {k: [] for k in runs}
        os.chdir(REPO)
        for _ in range(rounds):
            for name, fn in runs.items():
                times[name].append(timed(fn))
        sockets = len(warm.poll().sockets)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    med["sockets"] = sockets
    return med


COLUMNS = (
    ("snapshot", "snapshot"),
    ("json", "--json"),
    ("json_unbuffered", "--json unbuf"),
    ("warm", "warm poll"),
    ("cold", "cold poll"),
    ("warm_proc", "/proc warm"),
    ("psutil", "psutil"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 8000])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("ss") is None:
        print("ss is not installed (apt-get install iproute2)", file=sys.stderr)
        return 1
    # As installed (pip compiles the package): with PYTHONDONTWRITEBYTECODE=1, as set
    # on these machines, an editable checkout would compile every module at each run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "app")], check=True)
    limit = raise_nofile(2 * max(args.sizes) + 100)
    print(
        f"{args.rounds} rounds per size, medians in ms; (ratio) = time / ss -tanp time in "
        f"the same rounds; [target] from issue 9; holder of the pairs: another process"
    )
    print(
        f"{'pairs':>6} {'sockets':>8} {'ss -tanp':>9}"
        + "".join(f" {label:>20}" for _, label in COLUMNS)
    )
    for n in args.sizes:
        if 2 * n + 100 > limit:
            print(f"{n:>6}  skipped: needs {2 * n + 100} file descriptors, limit is {limit}")
            continue
        m = bench(n, args.rounds)
        ss = m["ss"]
        cells = []
        for key, _ in COLUMNS:
            ratio = m[key] / ss
            target = TARGETS.get(key)
            mark = (
                ""
                if target is None
                else (f" [{target:.1f} ok]" if ratio <= target else f" [{target:.1f} NO]")
            )
            cells.append(f"{m[key] * 1e3:.1f} ({ratio:.2f}){mark}")
        print(
            f"{n:>6} {int(m['sockets']):>8} {ss * 1e3:>9.1f}" + "".join(f" {c:>20}" for c in cells)
        )
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
