"""Shared parts of the UI benchmarks: a private network namespace, a process that holds
loopback connection pairs and changes them on command, CPU time read from /proc.

The benchmarks run in a network namespace of their own (``unshare -n`` as root,
``unshare -Urn`` otherwise) with only its loopback up, so the dashboard sees
exactly the sockets the benchmark made, whatever else the machine runs; the
processes (and their /proc/PID/fd, which the owner lookup walks) are the
machine's.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRIVATE = "OBSERVATORY_BENCH_NETNS"

HOLDER = r"""
import resource, socket, struct, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(4096)
pairs = []
RESET = struct.pack('ii', 1, 0)  # SO_LINGER 0: close with RST, no TIME_WAIT left behind

def open_pairs(n):
    for _ in range(n):
        c = socket.socket(); c.connect(srv.getsockname()); a, _ = srv.accept()
        pairs.append((c, a))

def close_pairs(n):
    for _ in range(min(n, len(pairs))):
        for s in pairs.pop(0):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET); s.close()

open_pairs(int(sys.argv[1]))
print('ready', srv.getsockname()[1], flush=True)
for line in sys.stdin:
    word, _, arg = line.strip().partition(' ')
    if word == 'close':
        close_pairs(len(pairs))
    elif word == 'open':
        open_pairs(int(arg))
    elif word == 'churn':
        close_pairs(int(arg)); open_pairs(int(arg))
    print('done', len(pairs), flush=True)
"""


def in_private_netns() -> None:
    """Re-run this script in a network namespace of its own, with loopback up."""
    if os.environ.get(PRIVATE):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise SystemExit("needs unshare (util-linux) and ip (iproute2)")
    flags = ["-n"] if os.geteuid() == 0 else ["-Urn"]
    env = {**os.environ, PRIVATE: "1"}
    done = subprocess.run(["unshare", *flags, sys.executable, *sys.argv], env=env)
    raise SystemExit(done.returncode)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Holder:
    """Another process holding N loopback pairs; ``close``, ``open N``, ``churn N`` on command."""

    def __init__(self, pairs: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(pairs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        word, _, port = self.proc.stdout.readline().partition(" ")
        if word != "ready":
            raise SystemExit(f"the holder of {pairs} pairs did not start")
        self.port = int(port)

    def send(self, command: str) -> int:
        """Run one command; returns how many pairs are held after it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline().split()[1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_percent(pid: int, seconds: float) -> float:
    """Share of one core the process used over the next ``seconds`` (CPU time, not wall)."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - start)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
