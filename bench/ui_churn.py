"""How fast the dashboard's screen takes thousands of sockets appearing and vanishing.

A helper process holds N loopback connection pairs; the app runs headless
(Textual's run_test) with no poller, and this script hands it real polls:
the first (every row new), steady polls, all connections closed at once
(rows marked GONE), the GONE rows removed, and a typed filter. Prints wall
seconds for each step. Run: ``python bench/ui_churn.py [--pairs 8000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.diff import diff  # noqa: E402
from app.core.sockets import ProcNetSource  # noqa: E402
from app.ui.app import ObservatoryApp  # noqa: E402
from app.ui.messages import PollResult  # noqa: E402

HOLDER = """
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(4096)
held = []
for _ in range(int(sys.argv[1])):
    c = socket.socket(); c.connect(srv.getsockname()); a, _ = srv.accept(); held += [c, a]
print('ready', flush=True); sys.stdin.readline()
"""


async def run(pairs: int) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(pairs)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdout.readline()
    source = ProcNetSource()
    app = ObservatoryApp(source, None, poll=False, interfaces=lambda: [])
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            async def step(name: str, previous: object, snap: object) -> None:
                started = time.perf_counter()
                app.deliver(PollResult(snap, diff(previous, snap), [], None))  # type: ignore[arg-type]
                await pilot.pause()
                print(f"{name:<34} {time.perf_counter() - started:6.2f} s")

            first = source.poll()
            await step(f"first poll ({len(first.sockets)} sockets)", None, first)
            previous = first
            for i in range(3):
                await asyncio.sleep(1.0)
                snap = source.poll()
                await step(f"steady poll {i + 1}", previous, snap)
                previous = snap
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait()
            await asyncio.sleep(0.3)
            snap = source.poll()
            await step("all connections closed (GONE)", previous, snap)
            previous = snap
            await asyncio.sleep(3.2)
            snap = source.poll()
            await step("GONE rows removed", previous, snap)
            started = time.perf_counter()
            await pilot.press("slash", "4", "2")
            await pilot.pause()
            print(f"{'filter typed':<34} {time.perf_counter() - started:6.2f} s")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8000)
    asyncio.run(run(parser.parse_args().pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
