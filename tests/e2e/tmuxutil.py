"""Drive the real dashboard in a real terminal: a private tmux server per test.

Each :class:`Tmux` uses its own tmux socket (``tmux -L NAME``) and an empty
configuration, so a test never touches the user's tmux server or settings.
The command runs under ``sh -c '...; echo "EXITED $?"'`` with
``remain-on-exit`` on: once the program ends, its exit status stays readable
on the pane.

:class:`ProcessTracker` records every descendant of a process while it runs
(pid and start time, so a recycled pid is never mistaken for ours), to prove
afterwards that nothing the dashboard started outlived it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
EXIT_RE = re.compile(r"EXITED (\d+)")


def observatory_argv() -> tuple[list[str], Path | None]:
    """The venv's ``observatory`` script, else ``python -m app`` run from the repository.

    Returns:
        The argv prefix and the working directory it needs (None: any).
    """
    script = Path(sys.executable).parent / "observatory"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], None
    return [sys.executable, "-m", "app"], REPO


def require_tmux() -> str:
    exe = shutil.which("tmux")
    if exe is None:
        # .ci/run installs tmux: in CI a missing tmux is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "tmux is not installed (apt-get install tmux)"
        )
    return exe


class Tmux:
    """One detached tmux session on a private server, running one command.

    Args:
        name: session name; also names the private server socket, so use one
            per test.
    """

    def __init__(self, name: str) -> None:
        self.exe = require_tmux()
        self.name = f"{name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.socket_name = f"obs-e2e-{self.name}"
        self._conf = Path(f"/tmp/{self.socket_name}.conf")
        self.last_capture = ""
        self.started = False

    # -- tmux itself ------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        env["TERM"] = "xterm-256color"
        return env

    def tmux(self, *args: str, check: bool = True, timeout: float = 10) -> str:
        """Run one tmux command against this test's private server; returns stdout."""
        argv = [self.exe, "-L", self.socket_name, "-f", str(self._conf), *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self._env()
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(
        self,
        command: Sequence[str],
        *,
        width: int = 120,
        height: int = 40,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start ``command`` in a new detached session of ``width`` x ``height`` cells.

        Its stderr stays on the terminal (Textual draws there); once it ends,
        ``EXITED <status>`` is printed below and the pane stays open.
        """
        # remain-on-exit: keep the pane (and what it shows) after the shell ends.
        # Not here: default-terminal and window-size, which crash tmux 3.3a's
        # server at the first window; TERM is set on the command instead.
        self._conf.write_text(
            "set -g remain-on-exit on\n"
            f"set -g default-size {width}x{height}\n"
            "set -g history-limit 2000\n"
            "set -g status off\n"
        )
        assignments = {"TERM": "xterm-256color", "COLORTERM": "truecolor", **(env or {})}
        inner = shlex.join(command) + '; echo "EXITED $?"'
        shell = shlex.join(
            ["env", *(f"{k}={v}" for k, v in assignments.items()), "sh", "-c", inner]
        )
        if cwd is not None:
            shell = f"cd {shlex.quote(str(cwd))} && exec {shell}"
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), shell)
        self.started = True

    def pane_pid(self) -> int:
        return int(self.tmux("display", "-p", "-t", self.name, "#{pane_pid}").strip())

    def send_keys(self, *keys: str) -> None:
        """Send tmux key names (``Tab``, ``BSpace``, ``Enter``, ``q``) one by one.

        One tmux call per key: Textual runs a binding (backspace) after the
        printable keys that arrived in the same read, so ``BSpace 8`` sent
        together would type 8 first and then delete it.
        """
        for key in keys:
            self.tmux("send-keys", "-t", self.name, key)
            time.sleep(0.05)

    def type_text(self, text: str) -> None:
        """Type ``text`` literally (no key-name lookup)."""
        self.tmux("send-keys", "-t", self.name, "-l", text)

    def capture(self, history: bool = False) -> str:
        """The visible pane as plain text lines; with ``history``, the scrolled-off part too."""
        extra = ["-S", "-"] if history else []
        self.last_capture = self.tmux("capture-pane", "-p", *extra, "-t", self.name)
        return self.last_capture

    def wait_for(
        self,
        expected: str | re.Pattern[str] | Callable[[str], object],
        timeout: float = 15.0,
        what: str | None = None,
        history: bool = False,
    ) -> object:
        """Poll the pane every 0.1 s until ``expected`` shows.

        Args:
            expected: plain text, a compiled regex, or a predicate on the pane.
            timeout: seconds before the test fails, with the last pane in the message.
            what: words for the failure message.
            history: search the lines scrolled off the top as well.

        Returns:
            The regex match, the predicate's value, or True for text.
        """
        deadline = time.monotonic() + timeout
        while True:
            pane = self.capture(history)
            if isinstance(expected, str):
                found: object = expected in pane
            elif isinstance(expected, re.Pattern):
                found = expected.search(pane)
            else:
                found = expected(pane)
            if found:
                return found
            if time.monotonic() > deadline:
                label = what or (
                    expected
                    if isinstance(expected, str)
                    else getattr(expected, "pattern", repr(expected))
                )
                pytest.fail(
                    f"not on screen within {timeout} s: {label}\n"
                    f"--- last pane ---\n{pane}\n--- end of pane ---"
                )
            time.sleep(0.1)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for ``EXITED <status>`` on the pane; returns the status.

        The line may have scrolled into the history (tmux's "Pane is dead" note
        is written below it), so the history is searched too.
        """
        match = self.wait_for(
            EXIT_RE, timeout, what="the program's exit (EXITED <status>)", history=True
        )
        assert isinstance(match, re.Match)
        return int(match.group(1))

    def kill(self) -> None:
        """End the private tmux server (its panes get SIGHUP); remove its socket and config."""
        if self.started:
            self.tmux("kill-server", check=False)
            self.started = False
        # tmux does not always unlink its socket when the server ends.
        for leftover in (self._socket_path(), self._conf):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def _socket_path(self) -> Path:
        base = os.environ.get("TMUX_TMPDIR") or "/tmp"
        return Path(base) / f"tmux-{os.getuid()}" / self.socket_name

    def find_child(self, timeout: float = 10.0) -> psutil.Process:
        """The program the pane's shell started (the shell forks it; it is not exec'd)."""
        shell = psutil.Process(self.pane_pid())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = shell.children()
            if children:
                return children[0]
            time.sleep(0.05)
        pytest.fail(
            f"the pane's shell (pid {shell.pid}) started no program within {timeout} s\n"
            f"{self.capture()}"
        )


# -- reading the screen ---------------------------------------------------------------------
def box_rows(pane: str, title_word: str) -> list[str] | None:
    """The inner lines of the bordered box whose top border contains ``title_word``.

    Only for wide layouts, where tables have a full ``╭ ... ╮`` border. Each line
    is the text between the box's left ``│`` and the next ``│``.
    Returns None when no such box is on screen.
    """
    lines = pane.splitlines()
    for i, line in enumerate(lines):
        col = line.find("╭")
        if col < 0:
            continue
        end = line.find("╮", col)
        top = line[col : end if end > 0 else None]
        if title_word not in top:
            continue
        rows = []
        for below in lines[i + 1 :]:
            if len(below) <= col or below[col] != "│":
                break
            rest = below[col + 1 :]
            stop = rest.find("│")
            rows.append(rest if stop < 0 else rest[:stop])
        return rows
    return None


def rows_with(pane: str, title_word: str, *needles: str) -> list[str]:
    """Rows of the box titled ``title_word`` that contain every one of ``needles``."""
    rows = box_rows(pane, title_word) or []
    return [r for r in rows if all(n in r for n in needles)]


# -- processes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    pid: int
    created: float
    name: str


def _is_alive(seen: Seen) -> bool:
    try:
        proc = psutil.Process(seen.pid)
        if abs(proc.create_time() - seen.created) > 0.05:
            return False  # the pid was recycled: ours is gone
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def describe(seen: Seen) -> str:
    """``pid/name`` with its state and thread count: a hang and a spin look different."""
    try:
        proc = psutil.Process(seen.pid)
        return f"{seen.pid}/{seen.name} ({proc.status()}, {proc.num_threads()} threads)"
    except psutil.Error:
        return f"{seen.pid}/{seen.name}"


class ProcessTracker:
    """Records, every 0.1 s on a thread, every descendant of ``root`` while it lives."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.root_seen = Seen(root.pid, root.create_time(), root.name())
        self.seen: dict[int, Seen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="e2e-tracker")

    def __enter__(self) -> ProcessTracker:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()

    def sample(self) -> None:
        try:
            found = self.root.children(recursive=True)
        except psutil.Error:
            return
        for proc in found:
            try:
                entry = Seen(proc.pid, proc.create_time(), proc.name())
            except psutil.Error:
                continue
            with self._lock:
                # Keep the latest name: a lab program renames itself (prctl) after start,
                # so the first sighting may still say "python".
                known = self.seen.get(proc.pid)
                if known is None or abs(known.created - entry.created) <= 0.05:
                    self.seen[proc.pid] = entry

    def named(self, name: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen.values() if s.name == name]

    def wait_named(self, name: str, timeout: float = 10.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sample()
            found = self.named(name)
            if found:
                return found
            time.sleep(0.1)
        pytest.fail(
            f"no descendant named {name!r} of pid {self.root.pid} within {timeout} s; "
            f"seen: {sorted((s.pid, s.name) for s in self.seen.values())}"
        )

    def alive(self) -> list[Seen]:
        with self._lock:
            everything = list(self.seen.values())
        return [s for s in everything if _is_alive(s)]

    def assert_all_gone(self, timeout: float = 5.0, include_root: bool = True) -> None:
        """Fail unless the root (optionally) and every recorded descendant end in time."""
        self.stop()
        root = self.root_seen if include_root else None
        deadline = time.monotonic() + timeout
        while True:
            left = self.alive() + ([root] if root is not None and _is_alive(root) else [])
            if not left:
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"still alive {timeout} s after the dashboard ended: "
                    + ", ".join(describe(s) for s in left)
                )
            time.sleep(0.1)

    def kill_leftovers(self) -> None:
        """Teardown: SIGKILL what is left of the recorded processes, by pid."""
        self.stop()
        for seen in [*self.alive(), self.root_seen]:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(seen.pid)
                if abs(proc.create_time() - seen.created) <= 0.05:
                    proc.kill()
