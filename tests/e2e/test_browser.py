"""``observatory serve``: the real server, a real browser, the real dashboard behind it.

The browser test drives Debian's chromium (headless) over the DevTools
protocol, on loopback only: it opens the page, waits until the terminal in
the page received the dashboard's first bytes, takes screenshots, types keys
into the page, and loads a scenario that starts a lab server from inside the
served dashboard. The terminal is drawn on a canvas, so its text is not in
the DOM; what proves the dashboard runs is the process tree (textual-serve
starts ``python -m app`` when the page's websocket connects), the page's own
"first byte" flag, and screenshots that change when a key is pressed.

Without chromium the browser test is skipped, unless
OBSERVATORY_REQUIRE_CHROMIUM=1 (CI), where it fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import free_port, wait_for

SERVE_TIMEOUT = 20.0


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET a loopback URL: (status, body)."""
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


class Tracker:
    """Every process under ``root`` seen while watching (pid + start time, never reused)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[tuple[int, float], list[str]] = {}

    def scan(self) -> list[psutil.Process]:
        try:
            procs = [psutil.Process(self.root), *psutil.Process(self.root).children(True)]
        except psutil.NoSuchProcess:
            return []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault((p.pid, p.create_time()), p.cmdline())
        return procs

    def alive(self) -> list[str]:
        left = []
        for (pid, started), cmdline in self.seen.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {' '.join(cmdline)}")
        return left


@contextlib.contextmanager
def served(port: int) -> Iterator[tuple[subprocess.Popen[str], Tracker]]:
    """``observatory serve --port PORT`` until the block ends; then SIGTERM and check."""
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tracker = Tracker(server.pid)
    try:
        wait_for(
            lambda: server.poll() is not None or _answers(port),
            SERVE_TIMEOUT,
            "the server answers /",
        )
        assert server.poll() is None, server.communicate()
        yield server, tracker
    finally:
        tracker.scan()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            for p in [psutil.Process(server.pid), *psutil.Process(server.pid).children(True)]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            server.communicate()
            raise AssertionError("observatory serve did not stop on SIGTERM") from None
    assert server.returncode == 0
    wait_for(lambda: not tracker.alive(), 10, f"processes left: {tracker.alive()}")


def _answers(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/")[0] == 200
    except OSError:
        return False


# -- the command line, no browser ----------------------------------------------------------


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--port", "0"], "1 to 65535"),
        (["--port", "http"], "not 'http'"),
        (["--host", "example.org"], "IP address"),
        (["--host", "192.0.2.77"], "not an address of this machine"),
    ],
)
def test_serve_refuses_in_one_line(args: list[str], words: str) -> None:
    out = serve(*args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_serve_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = serve("--port", str(port))
    assert out.returncode == 2
    assert out.stderr == (
        f"observatory serve: port {port} on 127.0.0.1 is already in use "
        "(another server listens there); choose another with --port\n"
    )


def test_page_is_served_and_guarded() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with served(port) as (server, tracker):
        status, html = get(base + "/")
        assert status == 200
        assert 'class="textual-terminal"' in html and "Connection Observatory" in html
        assert f'data-session-websocket-url="ws://127.0.0.1:{port}/ws"' in html
        # Nothing is fetched from another site: every link and script is ours.
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert url.startswith(base + "/static/"), url
        assert "fonts/RobotoMono" in html
        status, _ = get(base + "/static/js/textual.js")
        assert status == 200
        # A name that is not this machine's address (DNS rebinding) gets nothing.
        status, body = get(base + "/", {"Host": f"rebound.example:{port}"})
        assert status == 403 and "IP address" in body
        # A websocket from another site's page is refused before any dashboard starts.
        ws_headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGVzdHRlc3R0ZXN0dGVzdA==",
        }
        status, _ = get(base + "/ws", {**ws_headers, "Origin": "http://evil.example"})
        assert status == 403
        time.sleep(0.5)
        assert not [p for p in tracker.scan() if p.pid != server.pid]


# -- the browser -----------------------------------------------------------------------------


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and os.path.exists("/usr/bin/chromium"):
        path = "/usr/bin/chromium"
    if path is None:
        if os.environ.get("OBSERVATORY_REQUIRE_CHROMIUM") == "1":
            pytest.fail(
                "chromium is required here (OBSERVATORY_REQUIRE_CHROMIUM=1) but not "
                "installed: apt-get install chromium"
            )
        pytest.skip(
            "chromium is not installed (apt-get install chromium); "
            "OBSERVATORY_REQUIRE_CHROMIUM=1 makes this a failure"
        )
    return path


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1280,900",
    # Loopback only, whatever a page asks for: names resolve to nothing, and any
    # address but 127.0.0.1 (an IP literal needs no name) goes to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
    "--remote-debugging-port=0",
]


class Page:
    """The smallest DevTools-protocol client: one page, calls answered in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        async for message in self.ws:
            data = json.loads(message.data)
            if data.get("id") == my_id:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                return data["result"]  # type: ignore[no-any-return]
        raise AssertionError("the browser closed its DevTools connection")

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(data)
        return data

    async def type(self, text: str) -> None:
        """Keys as a user types them into the terminal in the page."""
        for ch in text:
            if ch == "\n":
                await self.call(
                    "Input.dispatchKeyEvent",
                    type="keyDown",
                    key="Enter",
                    code="Enter",
                    windowsVirtualKeyCode=13,
                    text="\r",
                )
                await self.call(
                    "Input.dispatchKeyEvent",
                    type="keyUp",
                    key="Enter",
                    code="Enter",
                    windowsVirtualKeyCode=13,
                )
            else:
                await self.call("Input.dispatchKeyEvent", type="keyDown", key=ch, text=ch)
                await self.call("Input.dispatchKeyEvent", type="keyUp", key=ch)


@contextlib.contextmanager
def browser(exe: str, profile: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Headless chromium with a fresh profile; yields it and its DevTools HTTP address."""
    proc = subprocess.Popen(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        devtools = None
        while devtools is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            match = re.search(r"DevTools listening on ws://(127\.0\.0\.1:\d+)/", line)
            if match:
                devtools = f"http://{match.group(1)}"
        assert devtools is not None, "chromium did not start its DevTools endpoint"
        yield proc, devtools
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what chromium writes) into rows of RGB bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = depth = colour = 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if chunk == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif chunk == b"IDAT":
            idat += body
        elif chunk == b"IEND":
            break
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    prev = bytearray(stride)
    rows: list[bytes] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(
            bytes(line)
            if bpp == 3
            else bytes(v for i in range(0, stride, 4) for v in line[i : i + 3])
        )
        prev = line
    return width, height, rows


def colours(rows: list[bytes], step: int = 3) -> dict[bytes, int]:
    """How often each colour occurs, on every ``step``-th pixel of every ``step``-th row."""
    count: dict[bytes, int] = {}
    for row in rows[::step]:
        for i in range(0, len(row), 3 * step):
            px = row[i : i + 3]
            count[px] = count.get(px, 0) + 1
    return count


def differing(a: list[bytes], b: list[bytes]) -> float:
    """Share of sampled rows that differ between two screenshots."""
    pairs = list(zip(a[::2], b[::2], strict=True))
    return sum(x != y for x, y in pairs) / len(pairs)


def fd_target(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def test_dashboard_in_chromium(tmp_path: Path) -> None:
    exe = chromium()
    import aiohttp  # textual-serve's own dependency: the DevTools websocket client

    port, lab_port = free_port(), free_port()
    scenario = tmp_path / "served-lab.toml"
    scenario.write_text(
        f'[[process]]\nname = "served-lab"\nprogram = "tcp-server"\nargs = ["{lab_port}"]\n'
    )
    shots = tmp_path / "shots"
    shots.mkdir()

    def dashboards(tracker: Tracker, server_pid: int) -> list[psutil.Process]:
        out = []
        for p in tracker.scan():
            with contextlib.suppress(psutil.Error):
                if p.ppid() == server_pid and p.cmdline()[1:] == ["-m", "app"]:
                    out.append(p)
        return out

    with served(port) as (server, tracker):
        assert not dashboards(tracker, server.pid)  # nothing runs before a page connects
        with browser(exe, tmp_path / "profile") as (chrome, devtools):
            targets = json.loads(urllib.request.urlopen(devtools + "/json/list").read())
            page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

            async def drive() -> dict[str, Any]:
                seen: dict[str, Any] = {}
                async with (
                    aiohttp.ClientSession() as session,
                    session.ws_connect(page_ws, max_msg_size=0) as ws,
                ):
                    page = Page(ws)
                    await page.call("Page.enable")
                    await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
                    # textual.js sets -first-byte once the dashboard's output arrives.
                    await page.until(
                        "document.body && document.body.classList.contains('-first-byte')",
                        30,
                        "the dashboard's first bytes",
                    )
                    await asyncio.sleep(2.0)  # a poll or two: the tables fill
                    seen["first"] = await page.screenshot(shots / "dashboard.png")
                    seen["dashboards"] = [p.pid for p in dashboards(tracker, server.pid)]

                    await page.js("document.querySelector('.xterm-helper-textarea').focus()")
                    await page.type("m")  # the TCP states tab
                    await asyncio.sleep(1.5)
                    seen["machine"] = await page.screenshot(shots / "tcp-states.png")

                    # Load a scenario from inside the served dashboard: a lab server starts.
                    # Keys typed before the dialog is up would go to the main screen, so a
                    # slow machine gets another try (Escape closes whatever opened).
                    for attempt in range(3):
                        await page.type("O")
                        await asyncio.sleep(1.0 + attempt)
                        await page.type(str(scenario))
                        await asyncio.sleep(0.5)
                        await page.screenshot(shots / "scenario-dialog.png")
                        await page.type("\n")
                        seen["lab"] = await asyncio.to_thread(
                            _wait_lab, tracker, lab_port, 10 + 5 * attempt
                        )
                        if seen["lab"] is not None:
                            break
                        await page.call(
                            "Input.dispatchKeyEvent",
                            type="keyDown",
                            key="Escape",
                            code="Escape",
                            windowsVirtualKeyCode=27,
                        )
                        await asyncio.sleep(1.0)
                    assert seen["lab"] is not None, "no lab server started from the browser"
                    await asyncio.sleep(2.0)
                    seen["after_lab"] = await page.screenshot(shots / "with-lab.png")
                    seen["classes"] = await page.js("document.body.className")
                    await page.type("w")  # still answering keys
                    await asyncio.sleep(1.5)
                    seen["backlog"] = await page.screenshot(shots / "backlog.png")
                    await page.call("Page.navigate", url="about:blank")  # close the session
                return seen

            seen = asyncio.run(drive())

        # One dashboard, started by the server when the page's websocket connected.
        assert len(seen["dashboards"]) == 1, seen["dashboards"]
        dashboard_pid = seen["dashboards"][0]
        lab = seen["lab"]
        assert dashboard_pid in lab["ancestors"]
        # The lab process shares neither the dashboard's input nor its output.
        assert lab["stdin"] == "/dev/null"
        assert lab["stdout"] != lab["dashboard_stdout"]
        assert lab["dashboard_stdout"].startswith("pipe:")  # textual-serve's pipe
        assert "-closed" not in seen["classes"] and "-first-byte" in seen["classes"]

        width, height, first = png_pixels(seen["first"])
        assert width >= 1000 and height >= 600
        counts = colours(first)
        assert len(counts) > 30, "the page looks blank"
        assert max(counts.values()) < 0.95 * sum(counts.values())
        # Each key changed what the page shows: input went in, the screen came back.
        _, _, machine = png_pixels(seen["machine"])
        _, _, backlog = png_pixels(seen["backlog"])
        assert differing(first, machine) > 0.05
        assert differing(machine, backlog) > 0.05

        # The page went away: its dashboard quit and stopped its lab server.
        wait_for(lambda: not running(dashboard_pid), 20, "the dashboard quits when its page closes")
        wait_for(lambda: not running(lab["pid"]), 20, "the lab server stops with it")

        # Stopping the server (Ctrl+C, SIGTERM) while a page is open ends its dashboard too.
        with browser(exe, tmp_path / "profile2") as (chrome, devtools):
            request = urllib.request.Request(
                devtools + f"/json/new?http://127.0.0.1:{port}/", method="PUT"
            )
            urllib.request.urlopen(request).read()
            second = wait_for(
                lambda: dashboards(tracker, server.pid), 30, "a dashboard for the second page"
            )
            t0 = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            assert server.returncode == 0
            assert time.monotonic() - t0 < 15, "Ctrl+C must not keep the class waiting"
            wait_for(
                lambda: not running(second[0].pid),
                10,
                "the open page's dashboard stops with the server",
            )
    print(f"screenshots in {shots}")


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_lab(tracker: Tracker, port: int, timeout: float) -> dict[str, Any] | None:
    """The lab server on ``port`` under the served dashboard, described while it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in tracker.scan():
            try:
                cmd = p.cmdline()
                if str(port) not in cmd or not any(
                    "tcp_server" in c or "tcp-server" in c for c in cmd
                ):
                    continue
                ancestors = [a.pid for a in p.parents()]
                dashboard = next(a for a in p.parents() if a.cmdline()[1:] == ["-m", "app"])
                return {
                    "pid": p.pid,
                    "ancestors": ancestors,
                    "stdin": fd_target(p.pid, 0),
                    "stdout": fd_target(p.pid, 1),
                    "dashboard_stdout": fd_target(dashboard.pid, 1),
                }
            except (psutil.Error, OSError, StopIteration):
                continue
        time.sleep(0.2)
    return None
