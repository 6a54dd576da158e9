"""The Scan tab: nmap on demand, joined with what this machine knows of its own sockets.

The panel validates what the user typed (``ScanRequest.create``) on the UI
loop, which is cheap and never polls, then runs the scan in a thread of its
own. That thread talks back only through messages: in Textual 8,
``MessagePump.post_message`` from another thread goes through
``loop.call_soon_threadsafe``, and it raises only once the loop is closed,
which we ignore (the app is gone). Only one scan runs at a time; unmounting
the panel (quitting the app) cancels it and waits at most ~1 s, which is
enough for ``Scan`` to SIGTERM/SIGKILL nmap's process group and reap it.

Results look like nmap's own table (PORT, STATE, SERVICE) plus a LOCAL
column: the process that listens on that port here, from the same join the
``observatory scan`` command prints. Past scans are kept in a history;
choosing two (or "vs previous") shows a Zenmap-like compare table in which
a changed row carries a sign and a word.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static

from app.core.model import Snapshot, Socket, SocketEvent
from app.core.scan import (
    LECTURE_PORTS,
    CompareRow,
    PortResult,
    Scan,
    ScanError,
    ScanHistory,
    ScanProgress,
    ScanRequest,
    ScanResult,
    ScanType,
    ScanTypeInfo,
    available_types,
    compare,
    default_ports,
    nmap_missing_reason,
)
from app.core.targets import expand_ports
from app.ui.themes import ORANGE, REDDISH_PURPLE, SKY_BLUE
from app.ui.widgets.instrument import (
    InstrumentPanel,
    give_keys_back,
    home_after_hidden_blur,
    keep_focus_out_of_hidden,
)

UNMOUNT_WAIT = 1.0  # seconds the panel waits for a cancelled scan when it goes away
HISTORY_SHOWN = 50  # past scans listed (the oldest go first)
DEFAULTS_EVERY = 2.0  # seconds between recomputing the default ports from snapshots
INTERFACES_EVERY = 10.0  # seconds between refreshing the target list

LECTURE = ",".join(str(p) for p in LECTURE_PORTS)

# Okabe-Ito colours (as in the events panel); the words carry the meaning anyway.
STATE_STYLES = {
    "open": f"bold {SKY_BLUE}",
    "closed": f"bold {ORANGE}",
    "filtered": f"bold {REDDISH_PURPLE}",
}


def state_text(state: str | None) -> Text:
    """nmap's state word, coloured; ``-`` for a port the scan did not list."""
    if state is None:
        return Text("-", style="dim")
    style = STATE_STYLES.get(state.split("|", 1)[0], "")
    return Text(state, style=style)


def summarize(result: ScanResult) -> str:
    """``3 open, 1 closed``: every port, those folded into "Not shown" included."""
    if result.status == "cancelled":
        return "cancelled"
    if result.status == "failed":
        return "failed"
    counts: Counter[str] = Counter(p.state for p in result.ports)
    for host in result.hosts:
        for group in host.not_shown:
            counts[group.state] += group.count
    order = ["open", "closed", "filtered"]
    states = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    text = ", ".join(f"{counts[s]} {s}" for s in states) or "no ports"
    if result.status == "timeout":
        text += " (timed out)"
    if len(result.hosts) > 1:
        text = f"{len(result.hosts)} hosts: {text}"
    return text


def change_text(row: CompareRow) -> Text:
    """The compare view's last column: a sign AND a word, never colour alone."""
    if not row.changed:
        return Text("= same", style="dim")
    if row.state_a is None:
        return Text("+ added", style="bold")
    if row.state_b is None:
        return Text("- removed", style="bold")
    return Text("≠ changed", style="bold reverse")


def compare_cell(state: str | None, port: int, result: ScanResult) -> Text:
    """A state in the compare view; a missing one says whether the port was asked for."""
    if state is not None:
        return state_text(state)
    asked = port in expand_ports(result.requested_ports) if result.requested_ports else True
    return Text("-" if asked else "not scanned", style="dim")


def local_cell(port: PortResult, host_is_local: bool) -> Text:
    """The LOCAL column: ``2759/tcp-server on 0.0.0.0``, or why there is nothing."""
    if port.listener is not None:
        return Text(port.listener.label)
    if not host_is_local:
        return Text("(not this machine)", style="dim")
    return Text("-", style="dim")


def describe_port(port: PortResult, host_is_local: bool) -> Text:
    """The full story of one result row, for the box under the table."""
    out = Text()
    out.append(f"{port.port}/{port.proto} {port.state}", style="bold")
    if port.address:
        out.append(f" on {port.address}")
    out.append(f" · {port.service}")
    if port.reason:
        out.append(f" · nmap's reason: {port.reason}")
    if port.version:
        out.append(f"\nversion: {port.version}")
    if port.listener is not None:
        out.append(f"\nLOCAL: {port.listener.who} listens on {port.listener.endpoint}")
    elif not host_is_local:
        out.append("\nLOCAL: not this machine, so nothing is known of its processes")
    if port.explanation:
        out.append("\n")
        out.append(port.explanation)
    return out


def first_interesting(result: ScanResult, previous: ScanResult | None = None) -> int:
    """The row to explain first: a port that changed since ``previous``, else an open
    or listened-on port, else the first row."""
    ports = result.ports
    if previous is not None:
        for i, p in enumerate(ports):
            if previous.state_of(p.port, p.proto, p.address) != p.state:
                return i
    for i, p in enumerate(ports):
        if p.state == "open" or p.listener is not None:
            return i
    return 0


def when(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    key: str
    result: ScanResult


class ScanPanel(InstrumentPanel):
    """nmap scans of a chosen target, their history and a compare view.

    Args:
        types: the scan types offered (default: :func:`available_types` for
            this user; tests pass another user's view).
    """

    DEFAULT_CSS = """
    ScanPanel {
        height: 1fr;
        padding: 0 1 0 0;
        scrollbar-size-vertical: 1;
    }
    ScanPanel .scan-row {
        height: 1;
        width: 1fr;
    }
    ScanPanel .scan-label {
        width: 7;
        padding: 0 1 0 0;
        color: $text-muted;
        text-style: bold;
    }
    ScanPanel .scan-row Select, ScanPanel .scan-row Input {
        width: 1fr;
    }
    ScanPanel #scan-buttons {
        margin: 1 0 0 0;
    }
    ScanPanel #scan-buttons Button {
        width: auto;
        min-width: 5;
        margin: 0 1 0 0;
        text-style: bold;
    }
    ScanPanel #scan-progress-row ProgressBar {
        width: auto;
    }
    ScanPanel #scan-progress-row Bar {
        width: 16;
    }
    ScanPanel #scan-elapsed {
        width: 1fr;
        padding: 0 0 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ScanPanel #scan-message {
        height: auto;
        color: $error;
        text-style: bold;
    }
    ScanPanel #scan-message.-info {
        color: $foreground;
        text-style: none;
    }
    ScanPanel #scan-keys {
        height: auto;
        color: $text-muted;
    }
    ScanPanel #scan-nmap-missing {
        height: auto;
        color: $error;
        text-style: bold;
    }
    ScanPanel #scan-command {
        height: auto;
        color: $text-muted;
    }
    ScanPanel .scan-title {
        height: auto;
        margin: 1 0 0 0;
        text-style: bold;
    }
    ScanPanel DataTable {
        height: auto;
        max-height: 14;
        scrollbar-size-horizontal: 1;
    }
    ScanPanel #scan-why {
        height: auto;
        padding: 0 1;
        border-left: outer $primary;
    }
    ScanPanel #scan-notshown {
        height: auto;
        color: $text-muted;
    }
    ScanPanel #scan-compare-buttons {
        height: 1;
    }
    ScanPanel #scan-compare-buttons Button {
        width: auto;
        min-width: 5;
        margin: 0 1 0 0;
    }
    ScanPanel .-hidden {
        display: none;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: an open drop-down list would take Escape for itself (close the list)
        # and keep the focus; one Escape closes it and gives the keys back.
        Binding("escape", "leave_input", "Leave the field", show=False, priority=True),
        Binding("enter", "enter_fields", "Type in the fields", show=False),
    ]

    class Progressed(Message):
        """A running scan reported progress (from its thread). Latest wins."""

        def __init__(self, scan: Scan, progress: ScanProgress) -> None:
            super().__init__()
            self.scan = scan
            self.progress = progress

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ScanPanel.Progressed) and message.scan is self.scan

    class Finished(Message):
        """A scan ended: ``result`` is set, or ``error`` says in words what went wrong."""

        def __init__(self, scan: Scan, result: ScanResult | None, error: str | None) -> None:
            super().__init__()
            self.scan = scan
            self.result = result
            self.error = error

    def __init__(self, types: Sequence[ScanTypeInfo] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.types = tuple(types) if types is not None else available_types()
        self.scan: Scan | None = None  # the running scan, if any
        self._thread: threading.Thread | None = None
        self._snapshot: Snapshot | None = None
        self._selected_port: int | None = None
        self._listening: frozenset[int] = frozenset()  # TCP LISTEN ports, as of the defaults
        self._defaults_at = 0.0
        self._defaults: str | None = None
        self._interfaces_at = 0.0
        self._targets: list[tuple[str, str]] = []
        self.history = ScanHistory()
        self.entries: list[HistoryEntry] = []
        self._next_key = 0
        self._marked: list[str] = []
        self._shown: ScanResult | None = None

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="scan-nmap-missing", classes="-hidden")
        yield Static("Click or Tab to type · Esc to leave a field", id="scan-keys")
        # type_to_search off: an open list would take every letter (b, m, s...) as a search.
        with Horizontal(classes="scan-row"):
            yield Label("Target", classes="scan-label")
            yield Select(
                self._target_options(with_interfaces=False),
                allow_blank=False,
                value="127.0.0.1",
                compact=True,
                id="scan-target",
                type_to_search=False,
                tooltip="This machine's addresses (typed text below wins)",
            )
        with Horizontal(classes="scan-row"):
            yield Label("  or", classes="scan-label")
            yield Input(
                placeholder="type a host, IP or network/CIDR", compact=True, id="scan-target-text"
            )
        with Horizontal(classes="scan-row"):
            yield Label("Ports", classes="scan-label")
            yield Input(
                placeholder=self._ports_placeholder(),
                compact=True,
                id="scan-ports",
                tooltip=f"Like 22,80,6000-6010; empty: what listens now + the lecture's {LECTURE}",
            )
        with Horizontal(classes="scan-row"):
            yield Label("Type", classes="scan-label")
            yield Select(
                [(self._type_label(t), t.name) for t in self.types],
                allow_blank=False,
                value="connect",
                compact=True,
                id="scan-type",
                type_to_search=False,
            )
        with Horizontal(classes="scan-row", id="scan-buttons"):
            yield Button(
                "Run",
                id="scan-run",
                variant="success",
                compact=True,
                tooltip="Start nmap (Enter in a field does the same)",
            )
            yield Button(
                "Cancel",
                id="scan-cancel",
                variant="error",
                compact=True,
                disabled=True,
                tooltip="Stop nmap now",
            )
            yield Button(
                "Port of row",
                id="scan-use-selected",
                compact=True,
                disabled=True,
                tooltip="Scan the port of the highlighted socket row",
            )
        with Horizontal(classes="scan-row", id="scan-progress-row"):
            yield ProgressBar(total=100, show_eta=False, id="scan-progress")
            yield Label("idle", id="scan-elapsed")
        yield Static(id="scan-message", classes="-hidden")
        yield Static(id="scan-command", classes="-hidden")
        yield Static("Results", classes="scan-title", id="scan-results-title")
        results: DataTable[Text] = DataTable(
            id="scan-results", cursor_type="row", zebra_stripes=False
        )
        yield results
        yield Static(id="scan-notshown", classes="-hidden")
        yield Static(
            "Run a scan: each port's row says here why nmap saw what it saw.", id="scan-why"
        )
        yield Static("Compare", classes="scan-title -hidden", id="scan-compare-title")
        compared: DataTable[Text] = DataTable(
            id="scan-compare", cursor_type="row", zebra_stripes=False, classes="-hidden"
        )
        yield compared
        yield Static(
            "History (Enter marks two to compare)", classes="scan-title", id="scan-history-title"
        )
        history: DataTable[Text] = DataTable(
            id="scan-history", cursor_type="row", zebra_stripes=False
        )
        yield history
        with Horizontal(id="scan-compare-buttons"):
            yield Button(
                "vs previous",
                id="scan-compare-prev",
                compact=True,
                disabled=True,
                tooltip="Compare the highlighted scan with the scan of the same target before it",
            )
            yield Button(
                "Compare marked",
                id="scan-compare-marked",
                compact=True,
                disabled=True,
                tooltip="Compare the two marked scans",
            )

    def on_mount(self) -> None:
        self.query_one("#scan-results", DataTable).add_columns("PORT", "STATE", "SERVICE", "LOCAL")
        self.query_one("#scan-history", DataTable).add_columns(
            " ", "TIME", "TARGET", "TYPE", "RESULT"
        )
        self.query_one("#scan-progress", ProgressBar).update(progress=0)
        self._check_nmap()

    # Opening the tab (key s) leaves the focus where it was: a field took the next
    # letter typed (l for Launch went into Ports). A field is entered on purpose:
    # a click, Tab, or Enter on the panel.
    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        keep_focus_out_of_hidden(self, event)

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        home_after_hidden_blur(self)

    def on_unmount(self) -> None:
        # Quitting mid-scan: nmap lives in its own session, so a daemon thread dying
        # with Python would leave it running. Cancel, and give Scan ~1 s to reap it.
        scan, thread = self.scan, self._thread
        if scan is not None:
            scan.cancel()
        if thread is not None:
            thread.join(timeout=UNMOUNT_WAIT)

    # -- InstrumentPanel: what the screen calls -----------------------------------------
    def update_snapshot(self, snapshot: Snapshot, events: list[SocketEvent]) -> None:
        """Keep the latest snapshot (for the default ports); cheap, throttled work only."""
        self._snapshot = snapshot
        now = time.monotonic()
        if now - self._defaults_at >= DEFAULTS_EVERY:
            self._defaults_at = now
            self._refresh_defaults()
        if now - self._interfaces_at >= INTERFACES_EVERY:
            self._interfaces_at = now
            self._refresh_targets()

    def select_socket(self, sock: Socket) -> None:
        """Offer the highlighted socket's server port: its own when it is a server's
        (LISTEN, UDP, or accepted on a listening port), else its peer's (a client)."""
        port = sock.local_port
        if sock.state != "LISTEN" and sock.remote_port and sock.local_port not in self._listening:
            port = sock.remote_port
        self._selected_port = port
        button = self.query_one("#scan-use-selected", Button)
        button.label = f"Port {port}"
        button.disabled = False

    # -- choices ----------------------------------------------------------------------
    def _target_options(self, with_interfaces: bool = True) -> list[tuple[str, str]]:
        """127.0.0.1 first, then the interfaces' addresses, then ::1.

        The interfaces come from the app's cache, filled by its poller; before the
        first poll (``with_interfaces=False``) only loopback is offered, so that
        nothing reads the machine's interfaces on the UI loop.
        """
        options = [("127.0.0.1 (loopback)", "127.0.0.1")]
        seen = {"127.0.0.1", "::1"}
        interfaces: list[Any] = []
        if with_interfaces and self.is_attached:
            getter = getattr(self.app, "interfaces_now", None)
            if getter is not None:
                with contextlib.suppress(Exception):
                    interfaces = list(getter())
        for iface in interfaces:
            for address in [*iface.ipv4, *iface.ipv6]:
                # Link-local IPv6 needs a zone; the ones the kernel names may not be valid here.
                if address in seen or address.lower().startswith("fe80"):
                    continue
                seen.add(address)
                options.append((f"{address} ({iface.name})", address))
        options.append(("::1 (loopback)", "::1"))
        return options

    def _refresh_targets(self) -> None:
        options = self._target_options()
        if options == self._targets:
            return
        self._targets = options
        select: Select[str] = self.query_one("#scan-target", Select)
        value = select.value
        select.set_options(options)
        if any(v == value for _, v in options):
            select.value = value

    @staticmethod
    def _type_label(info: ScanTypeInfo) -> str:
        if info.enabled:
            return info.label
        return f"{info.label} — needs root"

    def _type_info(self, name: object) -> ScanTypeInfo | None:
        return next((t for t in self.types if t.name == name), None)

    def _ports_placeholder(self) -> str:
        if self._defaults:
            return f"default: {self._defaults}"
        return f"default: listening + {LECTURE}"

    def _refresh_defaults(self) -> None:
        if self._snapshot is None:
            return
        scan_type = self.query_one("#scan-type", Select).value
        kind: ScanType = "udp" if scan_type == "udp" else "connect"
        ports = default_ports(kind, self._snapshot)
        self._listening = frozenset(
            s.local_port for s in self._snapshot.sockets if s.state == "LISTEN"
        )
        if ports != self._defaults:
            self._defaults = ports
            self.query_one("#scan-ports", Input).placeholder = self._ports_placeholder()

    def _check_nmap(self) -> bool:
        """Show the install line when nmap is not on PATH (looked up now)."""
        missing = nmap_missing_reason()
        line = self.query_one("#scan-nmap-missing", Static)
        line.update(missing or "")
        line.set_class(missing is None, "-hidden")
        return missing is None

    # -- messages to the user -----------------------------------------------------------
    def _say(self, text: str | None, error: bool = True) -> None:
        box = self.query_one("#scan-message", Static)
        box.update(text or "")
        box.set_class(not text, "-hidden")
        box.set_class(not error, "-info")

    def _set_running(self, running: bool) -> None:
        run = self.query_one("#scan-run", Button)
        cancel = self.query_one("#scan-cancel", Button)
        # Keep the keyboard where it was: Enter on Run, then Enter again cancels.
        move_focus = (run if running else cancel).has_focus
        run.disabled = running
        cancel.disabled = not running
        if move_focus:
            (cancel if running else run).focus()

    # -- running ------------------------------------------------------------------------
    @on(Input.Submitted, "#scan-target-text, #scan-ports")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run_scan()

    @on(Button.Pressed, "#scan-run")
    def _run_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.run_scan()

    @on(Button.Pressed, "#scan-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.cancel_scan()

    @on(Button.Pressed, "#scan-use-selected")
    def _use_selected(self, event: Button.Pressed) -> None:
        event.stop()
        if self._selected_port is not None:
            self.query_one("#scan-ports", Input).value = str(self._selected_port)
            self.query_one("#scan-ports", Input).focus()

    @on(Select.Changed, "#scan-type")
    def _type_changed(self, event: Select.Changed) -> None:
        event.stop()
        info = self._type_info(event.value)
        if info is not None and not info.enabled:
            self._say(self._unavailable(info))
        else:
            self._say(None)
        self._defaults_at = 0.0
        self._refresh_defaults()

    @staticmethod
    def _unavailable(info: ScanTypeInfo) -> str:
        return f"{info.reason}; run the dashboard as root, or choose TCP connect."

    def target_text(self) -> str:
        """What will be scanned: the typed text when there is some, else the chosen address."""
        typed = self.query_one("#scan-target-text", Input).value.strip()
        if typed:
            return typed
        value = self.query_one("#scan-target", Select).value
        return value if isinstance(value, str) else "127.0.0.1"

    def run_scan(self) -> None:
        """Validate the fields and start nmap in a thread; refusals show in words."""
        if self.scan is not None:
            self._say("A scan is already running: wait for it, or Cancel it.")
            return
        if not self._check_nmap():
            self._say(None)
            return
        info = self._type_info(self.query_one("#scan-type", Select).value)
        if info is None:
            self._say("Choose a scan type.")
            return
        if not info.enabled:
            self._say(self._unavailable(info))
            return
        ports = self.query_one("#scan-ports", Input).value
        # Never let ScanRequest poll /proc itself on the UI loop: before the first
        # snapshot, the defaults are the lecture's ports only.
        snapshot = self._snapshot or Snapshot(taken_at=time.time(), sockets=())
        try:
            request = ScanRequest.create(self.target_text(), ports, info.name, snapshot=snapshot)
            scan = Scan(request, on_progress=lambda p: self._from_thread(self.Progressed(scan, p)))
            scan.preflight()
        except ScanError as exc:
            self._say(str(exc))
            return
        self._say(None)
        self.scan = scan
        self._set_running(True)
        self.query_one("#scan-progress", ProgressBar).update(total=100, progress=0)
        self.query_one("#scan-elapsed", Label).update("starting nmap…")
        command = self.query_one("#scan-command", Static)
        command.update(f"$ {shlex.join(scan.command)}")
        command.remove_class("-hidden")
        thread = threading.Thread(
            target=self._work, args=(scan,), name="observatory-scan-ui", daemon=True
        )
        self._thread = thread
        thread.start()

    def _work(self, scan: Scan) -> None:
        """The scan's thread: run it, then hand the outcome to the UI loop."""
        try:
            result = scan.run()
        except Exception as exc:  # a refusal in words, never a traceback
            self._from_thread(self.Finished(scan, None, str(exc) or type(exc).__name__))
        else:
            self._from_thread(self.Finished(scan, result, None))

    def _from_thread(self, message: Message) -> None:
        # post_message is thread-safe in Textual 8 (call_soon_threadsafe); once the
        # app has ended its loop is closed and there is no one left to tell.
        with contextlib.suppress(RuntimeError):
            self.post_message(message)

    def cancel_scan(self) -> None:
        if self.scan is not None:
            self.scan.cancel()
            self.query_one("#scan-elapsed", Label).update("cancelling…")

    def on_scan_panel_progressed(self, message: ScanPanel.Progressed) -> None:
        if message.scan is not self.scan:
            return
        p = message.progress
        self.query_one("#scan-progress", ProgressBar).update(progress=p.percent)
        task = f"{p.task} · " if p.task else ""
        cancelling = " · cancelling…" if message.scan.cancelled else ""
        self.query_one("#scan-elapsed", Label).update(f"{task}{p.elapsed:.1f} s{cancelling}")

    def on_scan_panel_finished(self, message: ScanPanel.Finished) -> None:
        if message.scan is not self.scan:
            return
        self.scan = None
        self._thread = None
        self._set_running(False)
        elapsed = self.query_one("#scan-elapsed", Label)
        result = message.result
        if result is None:
            elapsed.update("failed")
            self._say(message.error)
            return
        if result.status == "cancelled":
            elapsed.update(f"cancelled after {result.duration:.1f} s")
            self._say(result.error, error=False)
            return
        self.query_one("#scan-progress", ProgressBar).update(progress=100)
        elapsed.update(f"{result.status} in {result.duration:.2f} s")
        self._say(result.error)
        if not result.hosts:
            return
        previous = self.history.latest(result.target)
        self.history.add(result)
        self._add_history(result)
        note = ""
        if previous is not None:
            changed = self.show_compare(previous, result)
            note = f"{changed} changed (Compare ↓)"
        self.show_result(result, note, previous)
        # On a short screen (80x24) the form fills the panel: bring the results up.
        # (after the refresh: the table's new height is known only then)
        self.call_after_refresh(
            self.scroll_to_widget, self.query_one("#scan-results"), animate=False
        )

    # -- results ---------------------------------------------------------------------------
    def show_result(
        self, result: ScanResult, note: str = "", previous: ScanResult | None = None
    ) -> None:
        """Fill the results table (nmap's columns + LOCAL) with one scan.

        Args:
            result: the scan to show.
            note: added to the title (what changed since the previous scan).
            previous: the scan before it; the cursor starts on the first port that
                changed since, so its explanation is the one shown.
        """
        self._shown = result
        table: DataTable[Text] = self.query_one("#scan-results", DataTable)
        # Columns too: auto widths only grow, and a long LOCAL of an older scan would stay.
        table.clear(columns=True)
        table.add_columns("PORT", "STATE", "SERVICE", "LOCAL")
        local = {h.address: h.local for h in result.hosts}
        several = len(result.hosts) > 1
        for i, p in enumerate(result.ports):
            port = f"{p.port}/{p.proto}"
            if several:
                port = f"{p.address} {port}"
            table.add_row(
                Text(port),
                state_text(p.state),
                Text(p.service),
                local_cell(p, local.get(p.address, False)),
                key=str(i),
            )
        title = self.query_one("#scan-results-title", Static)
        title.update(
            f"Results {when(result.started_at)} · {result.target} · {result.type}"
            + (f" · {note}" if note else "")
        )
        folded = [
            f"{h.address}: {g.describe()}" if several else g.describe()
            for h in result.hosts
            for g in h.not_shown
        ]
        notshown = self.query_one("#scan-notshown", Static)
        notshown.update("\n".join(folded))
        notshown.set_class(not folded, "-hidden")
        if result.ports:
            first = first_interesting(result, previous)
            table.move_cursor(row=first)
            self._explain(first)
        else:
            self.query_one("#scan-why", Static).update("nmap listed no port: see the line above.")

    def _explain(self, index: int) -> None:
        result = self._shown
        if result is None or not 0 <= index < len(result.ports):
            return
        port = result.ports[index]
        local = next((h.local for h in result.hosts if h.address == port.address), False)
        self.query_one("#scan-why", Static).update(describe_port(port, local))

    @on(DataTable.RowHighlighted, "#scan-results")
    def _result_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._explain(event.cursor_row)

    # -- history and compare -------------------------------------------------------------------
    def _add_history(self, result: ScanResult) -> None:
        key = f"h{self._next_key}"
        self._next_key += 1
        self.entries.append(HistoryEntry(key, result))
        del self.entries[: max(0, len(self.entries) - HISTORY_SHOWN)]
        self._marked = []
        # Newest first; at most HISTORY_SHOWN rows, so rebuilding is cheap.
        table: DataTable[Text] = self.query_one("#scan-history", DataTable)
        table.clear()
        for entry in reversed(self.entries):
            r = entry.result
            table.add_row(
                Text(" "),
                Text(when(r.started_at)),
                Text(r.target),
                Text(r.type),
                Text(summarize(r)),
                key=entry.key,
            )
        table.move_cursor(row=0)
        self._update_compare_buttons()

    def _entry(self, key: str | None) -> HistoryEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def _highlighted_entry(self) -> HistoryEntry | None:
        table: DataTable[Text] = self.query_one("#scan-history", DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self._entry(row_key.value)

    def _previous_of(self, entry: HistoryEntry) -> HistoryEntry | None:
        index = self.entries.index(entry)
        for other in reversed(self.entries[:index]):
            if other.result.target == entry.result.target:
                return other
        return None

    def _set_marks(self, keys: list[str]) -> None:
        table: DataTable[Text] = self.query_one("#scan-history", DataTable)
        for key in set(self._marked) | set(keys):
            if self._entry(key) is None:
                continue
            sign = "●" if key in keys else " "
            table.update_cell(key, table.ordered_columns[0].key, Text(sign, style="bold"))
        self._marked = list(keys)
        self._update_compare_buttons()

    def _update_compare_buttons(self) -> None:
        entry = self._highlighted_entry()
        self.query_one("#scan-compare-prev", Button).disabled = (
            entry is None or self._previous_of(entry) is None
        )
        self.query_one("#scan-compare-marked", Button).disabled = len(self._marked) != 2

    @on(DataTable.RowSelected, "#scan-history")
    def _history_selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click) on a past scan marks it; two marks compare at once."""
        event.stop()
        key = event.row_key.value
        if key is None:
            return
        marks = [k for k in self._marked if k != key]
        if key not in self._marked:
            marks = [*marks, key][-2:]
        self._set_marks(marks)
        entry = self._entry(key)
        if entry is not None:
            self.show_result(entry.result)
        if len(marks) == 2:
            self.compare_marked()

    @on(DataTable.RowHighlighted, "#scan-history")
    def _history_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_compare_buttons()

    @on(Button.Pressed, "#scan-compare-prev")
    def _compare_prev(self, event: Button.Pressed) -> None:
        event.stop()
        self.compare_with_previous()

    @on(Button.Pressed, "#scan-compare-marked")
    def _compare_marked(self, event: Button.Pressed) -> None:
        event.stop()
        self.compare_marked()

    def compare_with_previous(self) -> None:
        entry = self._highlighted_entry()
        previous = self._previous_of(entry) if entry is not None else None
        if entry is None or previous is None:
            self._say("No earlier scan of this target to compare with.")
            return
        self.show_compare(previous.result, entry.result)

    def compare_marked(self) -> None:
        entries = [e for e in self.entries if e.key in self._marked]  # oldest first
        if len(entries) != 2:
            self._say("Mark two scans in the history (Enter on each) to compare them.")
            return
        self.show_compare(entries[0].result, entries[1].result)

    def show_compare(self, before: ScanResult, after: ScanResult) -> int:
        """Zenmap's compare in the terminal: PORT | before | after | sign + word."""
        rows = compare(before, after)
        table: DataTable[Text] = self.query_one("#scan-compare", DataTable)
        table.clear(columns=True)
        table.add_columns("PORT", "before", "after", "change")
        several = len({r.address for r in rows}) > 1
        for i, row in enumerate(rows):
            port = f"{row.port}/{row.proto}"
            if several:
                port = f"{row.address} {port}"
            style = "bold" if row.changed else ""
            table.add_row(
                Text(port, style=style),
                compare_cell(row.state_a, row.port, before),
                compare_cell(row.state_b, row.port, after),
                change_text(row),
                key=str(i),
            )
        changed = sum(r.changed for r in rows)
        targets = "" if before.target == after.target else (f" · {before.target} → {after.target}")
        title = self.query_one("#scan-compare-title", Static)
        title.update(
            f"Compare {when(before.started_at)} → {when(after.started_at)} · "
            f"{changed} changed{targets}"
        )
        title.remove_class("-hidden")
        table.remove_class("-hidden")
        self._say(None)
        return changed

    # -- keys -------------------------------------------------------------------------------------
    def action_leave_input(self) -> None:
        """Esc anywhere in the panel (field, list, table, button): the keys go back to the
        dashboard's tables, where s b m w e i and the action keys work again."""
        for select in self.query(Select):
            select.expanded = False
        give_keys_back(self)

    def action_enter_fields(self) -> None:
        """Enter on the panel itself (reached with Tab): into the Ports field."""
        self.query_one("#scan-ports", Input).focus()
