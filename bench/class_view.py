"""What watching a class of thirty machines costs the teacher's laptop.

``observatory class`` runs in a real terminal (tmux, 120x40) against thirty
TARGETs on loopback, asking each once a second, for ``--seconds`` (60): three
real agents (``python -m app agent`` on 127.0.0.2-4) and 27 stand-ins on
127.0.0.5 (one process of this benchmark: a minimal ``http.server`` per port
that answers ``GET /api/snapshot`` with a body recorded from a real agent, its
``taken_at`` made fresh). A holder process keeps ``--pairs`` loopback connection
pairs open, so that each answer is the size of a busy lab machine's (2 x pairs
+ 1 sockets, and whatever the namespace has). Measured with psutil, once a
second: the class view's CPU (share of one core, all its threads) and RSS;
reported: the median and the highest of the per-second CPU samples, and the
RSS at the end; and each real agent's CPU while it is asked (a student's
machine pays that). Everything runs in a network namespace of its own (see
``uiutil``) and is stopped, by its pid, before the benchmark ends.

Run: ``python bench/class_view.py [--seconds 60] [--pairs 50]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uiutil import REPO, Holder, in_private_netns, raise_nofile  # noqa: E402

REAL = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
STAND_IN_ADDRESS = "127.0.0.5"
STAND_INS = 27
TMUX = ["tmux", "-L", "bench-class"]  # a server of its own, started in this namespace

# The stand-ins: one process, one ThreadingHTTPServer per port; the recorded body has
# "@@TAKEN_AT@@" where the time goes, put in fresh for every answer.
STAND_IN = r"""
import http.server, sys, threading, time
body = open(sys.argv[1], 'rb').read()
head, tail = body.split(b'"@@TAKEN_AT@@"')

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # as the agent: one connection for question after question
    def do_GET(self):
        data = head + repr(time.time()).encode() + tail
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass

ports = []
for _ in range(int(sys.argv[3])):
    server = http.server.ThreadingHTTPServer((sys.argv[2], 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports.append(server.server_address[1])
print(' '.join(map(str, ports)), flush=True)
sys.stdin.read()
"""


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def start_agent(address: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port(address)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "agent", "--host", address, "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((address, port)) == 0:
                return proc, f"{address}:{port}"
        if proc.poll() is not None:
            raise SystemExit(f"the agent on {address} ended (exit {proc.returncode})")
        time.sleep(0.1)
    raise SystemExit(f"the agent on {address}:{port} did not listen within 30 s")


def record(target: str, where: Path) -> tuple[int, int]:
    """A real agent's /api/snapshot, saved for the stand-ins; (bytes, sockets)."""
    with urllib.request.urlopen(f"http://{target}/api/snapshot", timeout=10) as answer:
        data = json.loads(answer.read())
    data["taken_at"] = "@@TAKEN_AT@@"
    data["host"] = "stand-in"
    body = json.dumps(data).encode()
    where.write_bytes(body)
    return len(body), len(data["sockets"])


def class_view_pid(pane_pid: int) -> int:
    """The observatory class process in the tmux pane (the pane's shell, or a child)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for proc in [psutil.Process(pane_pid), *psutil.Process(pane_pid).children(True)]:
            with_args = " ".join(proc.cmdline())
            if "app" in with_args and " class " in f" {with_args} ":
                return int(proc.pid)
        time.sleep(0.1)
    raise SystemExit("observatory class did not start in tmux")


def measure(pid: int, agents: list[int], seconds: int) -> dict[str, object]:
    view = psutil.Process(pid)
    watched = [psutil.Process(p) for p in agents]
    view.cpu_percent(None)
    for agent in watched:
        agent.cpu_percent(None)
    samples: list[float] = []
    agent_samples: list[float] = []
    rss: list[float] = []
    for _ in range(seconds):
        time.sleep(1.0)
        samples.append(view.cpu_percent(None))
        agent_samples += [a.cpu_percent(None) for a in watched]
        rss.append(view.memory_info().rss / 2**20)
    tens = [samples[i : i + 10] for i in range(0, len(samples), 10)]
    return {
        "cpu_median_by_10s": [statistics.median(t) for t in tens],
        "rss_mb_by_10s": [round(rss[min(i + 9, len(rss) - 1)], 1) for i in range(0, len(rss), 10)],
        "cpu_median_percent": round(statistics.median(samples), 2),
        "cpu_max_percent": round(max(samples), 2),
        "cpu_mean_percent": round(statistics.fmean(samples), 2),
        "rss_mb": round(view.memory_info().rss / 2**20, 1),
        "threads": view.num_threads(),
        "agent_cpu_median_percent": round(statistics.median(agent_samples), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("needs tmux")
    in_private_netns()
    raise_nofile()
    holder = Holder(args.pairs)
    agents: list[subprocess.Popen[bytes]] = []
    stand_in: subprocess.Popen[str] | None = None
    body = Path(f"/tmp/observatory-bench-class-{os.getpid()}.json")
    try:
        targets = []
        for address in REAL:
            proc, target = start_agent(address)
            agents.append(proc)
            targets.append(target)
        size, count = record(targets[0], body)
        stand_in = subprocess.Popen(
            [sys.executable, "-c", STAND_IN, str(body), STAND_IN_ADDRESS, str(STAND_INS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert stand_in.stdout is not None
        targets += [f"{STAND_IN_ADDRESS}:{p}" for p in stand_in.stdout.readline().split()]
        result = run_view(targets, [a.pid for a in agents], args.seconds)
        result.update(
            machines=len(targets),
            real_agents=len(REAL),
            answer_bytes=size,
            answer_sockets=count,
            seconds=args.seconds,
        )
        print(json.dumps(result, indent=2))
    finally:
        for proc in agents:
            proc.terminate()
        if stand_in is not None and stand_in.stdin is not None:
            stand_in.stdin.close()
            stand_in.wait(10)
        for proc in agents:
            proc.wait(10)
        holder.stop()
        body.unlink(missing_ok=True)


def run_view(targets: list[str], agents: list[int], seconds: int) -> dict[str, object]:
    """``observatory class`` in tmux over ``targets``; measured; its screen checked."""
    command = [sys.executable, "-m", "app", "class", "--interval", "1", *targets]
    subprocess.run(
        [*TMUX, "new-session", "-d", "-s", "class", "-x", "120", "-y", "40", "-c", str(REPO)]
        + [" ".join(command)],
        check=True,
    )
    try:
        pane = subprocess.run(
            [*TMUX, "list-panes", "-t", "class", "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        )
        pid = class_view_pid(int(pane.stdout.split()[0]))
        time.sleep(3)  # the first answers in
        result = measure(pid, agents, seconds)
        screen = subprocess.run(
            [*TMUX, "capture-pane", "-p", "-t", "class"], capture_output=True, text=True
        ).stdout
        result["status_line"] = screen.splitlines()[0].strip()
        return result
    finally:
        subprocess.run([*TMUX, "kill-server"], check=False)


if __name__ == "__main__":
    main()
