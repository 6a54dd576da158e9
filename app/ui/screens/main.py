"""The main screen: socket tables, lab processes, events, interfaces."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import (
    Button,
    Footer,
    Input,
    RichLog,
    Static,
    TabbedContent,
    TabPane,
)

from app.core import conninfo, diag, portuse
from app.core.model import Snapshot, Socket, owner_help
from app.core.procs import OutputLine, ProcessExited, ProcessStarted
from app.ui.cells import (
    ESTABLISHED_COLUMNS,
    LISTEN_COLUMNS,
    OTHER_COLUMNS,
    UDP_COLUMNS,
)
from app.ui.feed import SocketFeed, gc_paused, settle_heap
from app.ui.messages import PollFailed, PollResult, ProcessEventMessage, SnapshotReady
from app.ui.rows import Marked, ViewOptions
from app.ui.screens.dialogs import ConfirmDialog, PathDialog
from app.ui.screens.launch import LaunchDialog, LaunchRequest
from app.ui.widgets.events import MAX_EVENTS, EventsPanel, Timeline, TimelineEntry
from app.ui.widgets.instrument import InstrumentPanel
from app.ui.widgets.keyed_table import KeyedTable, TableRow
from app.ui.widgets.tabstrip import TabStrip
from app.ui.widgets.tcp_machine import StateMachinePanel, mirror_key

if TYPE_CHECKING:
    from app.ui.app import ObservatoryApp

# CPU% before State: a long state must never push it out of the narrow side column
# (the full state is on the output's title and in the Events).
PROCESS_COLUMNS = [
    ("Name", "name"),
    ("PID", "pid"),
    ("CPU%", "cpu"),
    ("State", "state"),
    ("Command", "command"),
]
INTERFACE_COLUMNS = [
    ("Interface", "name"),
    ("State", "state"),
    ("IPv4", "ipv4"),
    ("IPv6", "ipv6"),
    ("MTU", "mtu"),
]
SOCKET_TABLES = {
    "listen": LISTEN_COLUMNS,
    "established": ESTABLISHED_COLUMNS,
    "other": OTHER_COLUMNS,
    "udp": UDP_COLUMNS,
}
INTERVALS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
SLICE = 1500  # rows handed to each socket table per turn of the event loop (~20 ms)
NARROW = 110  # columns: below this the side column goes under the tables
WIDE = 150  # columns: from here the side column takes more room (its panels wrap less)
# Every tab of the side column has a key (the palette lists them too), in strip order.
TAB_KEYS = (
    ("p", "tab-lab", "Lab"),
    ("e", "tab-events", "Events"),
    ("h", "tab-other", "Other states"),
    ("u", "tab-udp", "UDP"),
    ("i", "tab-interfaces", "Interfaces"),
    ("s", "tab-scan", "Scan"),
    ("b", "tab-bytes", "Bytes"),
    ("m", "tab-machine", "TCP states"),
    ("w", "tab-backlog", "Backlog"),
)


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [  # type: ignore[assignment]
        Binding(key, action, description, id=action, tooltip=tooltip)
        for key, action, description, tooltip in (
            ("q", "quit", "Quit", "Quit (asks about running lab processes)"),
            ("l", "launch", "Launch", "Start a lab server, client or any command"),
            ("k", "kill", "Kill", "SIGTERM the selected process or the socket's owner"),
            ("K", "kill9", "Kill -9", "SIGKILL, like kill -9 PID"),
            ("r", "restart", "Restart", "Stop and start the selected lab process"),
            ("X", "kill_all", "Kill all", "SIGTERM every lab process"),
            ("c", "close_connection", "Close", "End the selected TCP connection, as ss -K (root)"),
            ("slash", "filter", "Filter", "Show only rows containing some text"),
            ("space", "freeze", "Freeze", "Hold a still frame for the class"),
            ("plus,equals_sign", "faster", "Faster", "Poll more often"),
            ("minus", "slower", "Slower", "Poll less often"),
            ("a", "lab_only", "Lab only", "Only sockets of lab processes, or all"),
            ("f", "family", "IPv4/6", "Cycle IPv4 and IPv6, IPv4 only, IPv6 only"),
            ("n", "numeric", "Numeric", "Hide or show service names"),
            ("o", "sort", "Sort", "Sort the focused table by its next column"),
            ("t", "theme", "Theme", "Switch the default and projector themes"),
            ("O", "scenario", "Scenario", "Load a scenario file"),
            ("z", "zoom", "Zoom", "Give the side column the whole screen, or not"),
            ("ctrl+s", "screenshot", "Screenshot", "Save an SVG screenshot for a handout"),
        )
    ] + [
        # Not in the footer: the tab strip shows each tab's key on the tab itself.
        Binding(key, f"tab('{tab}')", title, id=tab, tooltip=f"Show the {title} tab", show=False)
        for key, tab, title in TAB_KEYS
    ]

    def __init__(self) -> None:
        super().__init__()
        self.feed = SocketFeed(SOCKET_TABLES)
        self.options = ViewOptions()
        self.timeline = Timeline()
        self.snapshot: Snapshot | None = None
        self.marked: dict[str, Marked] = self.feed.marked  # kept up to date by the feed
        self.processes: list[Any] = []
        self.frozen = False
        self.poll_error: str | None = None
        self.selected_process: str | None = None
        self._last_selected: Socket | None = None
        self._rates = conninfo.RateMeter()  # bytes per second of the highlighted connection
        self._focus_before_zoom: Widget | None = None
        self._counts: dict[str, int] = {}
        self._aware: list[InstrumentPanel] | None = None
        self._more_planned = False  # a slice of rows is due after the next refresh
        self._made = 0  # rows changed since the heap was last settled
        self._lab_listen_ports: set[int] = set()  # every port a lab process listened on
        self._launched: set[str] = set()  # names launched from the dialog, not started yet
        self._key_state: tuple[bool | None, ...] = ()  # what check_action said last

    @property
    def oapp(self) -> ObservatoryApp:
        return self.app  # type: ignore[return-value]

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("Connection Observatory", id="status")
        with Horizontal(id="main"):
            with Vertical(id="tables"):
                listen = KeyedTable(LISTEN_COLUMNS, id="listen")
                listen.border_title = "LISTEN  (like netstat -tulpn)"
                yield listen
                est = KeyedTable(ESTABLISHED_COLUMNS, id="established")
                est.border_title = "ESTABLISHED  (like ss -n state established)"
                yield est
            with Vertical(id="side"):
                yield TabStrip(
                    [(tab, title, key) for key, tab, title in TAB_KEYS],
                    active="tab-lab",
                    id="tab-strip",
                )
                with TabbedContent(id="tabs", initial="tab-lab"):
                    with TabPane("Lab", id="tab-lab"):
                        procs = KeyedTable(PROCESS_COLUMNS, id="processes")
                        yield procs
                        with Horizontal(id="process-buttons"):
                            yield Button("Launch", id="btn-launch", variant="success")
                            yield Button("Kill", id="btn-kill", variant="warning")
                            yield Button("Kill -9", id="btn-kill9", variant="error")
                            yield Button("Restart", id="btn-restart")
                            yield Button("Kill all", id="btn-kill-all", variant="error")
                        # min_width: RichLog renders at 78 columns by default and the side
                        # column is narrower, so lines were cut instead of wrapped.
                        yield RichLog(
                            id="output", max_lines=1000, wrap=True, markup=False, min_width=20
                        )
                    with TabPane("Events", id="tab-events"):
                        yield EventsPanel(self.timeline, id="events")
                    with TabPane("Other states", id="tab-other"):
                        yield KeyedTable(OTHER_COLUMNS, id="other")
                    with TabPane("UDP", id="tab-udp"):
                        yield KeyedTable(UDP_COLUMNS, id="udp")
                    with TabPane("Interfaces", id="tab-interfaces"):
                        yield KeyedTable(INTERFACE_COLUMNS, id="interfaces")
                    yield from self.oapp.extra_tabs()
                yield Static(id="events-mini")
        yield Input(placeholder="filter: type text, Enter to keep, Esc to clear", id="filter")
        yield Static(id="why")
        # The palette key is named on the status line instead: docked right here, it
        # covered the end of the overflowing key list and left a stray letter beside it.
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#output", RichLog).border_title = "output"
        self.query_one("#events-mini", Static).border_title = "Events (newest first)"
        if self.oapp.recorder is not None:
            self.query_one(
                "#events", EventsPanel
            ).border_subtitle = f"recording to {self.oapp.recorder.path}"
        self.query_one("#filter", Input).display = False
        self.query_one("#listen", KeyedTable).focus()
        self._layout_for(self.size.width)
        self._update_status()
        self._update_mini()
        settle_heap()  # the modules and widgets of start-up stay: out of the GC's walks

    def on_resize(self, event: Any) -> None:
        self._layout_for(event.size.width)

    def _layout_for(self, width: int) -> None:
        self.set_class(width < NARROW, "-narrow")
        self.set_class(width >= WIDE, "-wide")

    # -- polls ------------------------------------------------------------------
    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        try:
            with gc_paused():
                self._apply(message.result)
        finally:
            if not self.feed.busy:  # else the last slice of rows says so (_show_more)
                self.oapp.poller.consumed()  # the poller may take the next snapshot

    def _apply(self, result: PollResult) -> None:
        self.poll_error = None
        if result.interfaces is not None:
            self._show_interfaces(result.interfaces)
        self.processes = result.processes
        self._show_processes()
        if self.frozen:
            return
        self.snapshot = result.snapshot
        self._add_to_timeline(result)
        changed = self.feed.update(result.snapshot)
        options = self.options
        if self.options.lab_pids is not None:  # lab processes come and go
            self.options = replace(self.options, **self._lab_scope())
            if self.options != options:
                self._scope_timeline()
        with self.app.batch_update():
            if changed or self.options != options:  # a poll with nothing new costs nothing
                self._show_sockets()
            for aware in self._socket_aware():
                if isinstance(aware, StateMachinePanel):  # the path: every transition seen
                    aware.update_snapshot(
                        result.snapshot,
                        result.events,
                        result.transitions if result.seeing else None,
                        result.seeing,
                    )
                else:
                    aware.update_snapshot(result.snapshot, result.events)
            panel = self.query_one("#events", EventsPanel)
            self._counts = self.feed.counts  # kept per change: status line and sparklines
            panel.record_counts(self._counts)
            if result.events or result.transitions:
                panel.refresh_log()
                self._update_mini()
        self._update_status()
        self._update_why()
        self._made += changed
        if not self.feed.busy:
            settle_heap(self._made)
            self._made = 0

    def _add_to_timeline(self, result: PollResult) -> None:
        """The poll's changes; with the event stream, every transition it reported instead
        (the sampled changes are among them), and the accept()s only a sample sees."""
        # The timeline keeps the newest MAX_EVENTS: older ones of a big poll (16,000
        # connections closing) would be worded only to be dropped.
        if result.seeing is None:
            for event in result.events[-MAX_EVENTS:]:
                self.timeline.add(TimelineEntry.of(event))
            return
        transitions = result.transitions[-MAX_EVENTS:]
        accepts = [c for c in result.events if c.kind == "owner-changed"]
        for change in accepts[max(0, len(accepts) + len(transitions) - MAX_EVENTS) :]:
            self.timeline.add(TimelineEntry.of(change))
        for e in transitions:
            self.timeline.add(TimelineEntry.of(e))

    def _socket_aware(self) -> list[InstrumentPanel]:
        """The instrument panels that follow the polls (found once: a query walks the DOM)."""
        if self._aware is not None:
            return self._aware
        found = list(self.query(InstrumentPanel))
        if found and self.is_mounted:
            self._aware = found
        return found

    def on_poll_failed(self, message: PollFailed) -> None:
        self.poll_error = message.error
        self._update_status()

    def _show_sockets(self) -> None:
        # Only the rows that changed since the last call are redone (all of them
        # when the options changed), SLICE rows per table per turn of the event loop:
        # the top of a big table is drawn at once, and keys are answered in between.
        for name in SOCKET_TABLES:
            table = self.query_one(f"#{name}", KeyedTable)
            feed = self.feed.show(name, table, self.options, SLICE)
            self._title_count(table, name, table.row_count, len(feed.members), feed.gone)
        if self.feed.busy and not self._more_planned:
            self._more_planned = True
            self.call_after_refresh(self._show_more)

    def _show_more(self) -> None:
        """The next slice of rows; once all are in, the poller may poll again."""
        self._more_planned = False
        with gc_paused(), self.app.batch_update():
            self._show_sockets()
        if not self.feed.busy:
            settle_heap(self._made)
            self._made = 0
            self.oapp.poller.consumed()

    def _title_count(self, table: KeyedTable, name: str, shown: int, total: int, gone: int) -> None:
        # Count what is open now, as the status line does; rows still shown as
        # "- GONE" are counted apart.
        count = f"{total - gone}" + (f" (+{gone} gone)" if gone else "")
        if shown < total:
            count += f" · {shown} shown"
        if name == "listen":
            table.set_title(f"LISTEN  (like netstat -tulpn) · {count}")
        elif name == "established":
            table.set_title(f"ESTABLISHED  (like ss -n state established) · {count}")
        else:
            table.set_title(f"{count} sockets")

    def _show_processes(self) -> None:
        # Running ones first, in the order they started; then the ended, newest first:
        # what a student just killed is next to what still runs, not buried at the top.
        live = [p for p in self.processes if not p.ended]
        ended = sorted(
            (p for p in self.processes if p.ended), key=lambda p: p.ended_at or 0.0, reverse=True
        )
        rows = []
        for p in live + ended:
            cpu = "" if p.cpu_percent is None else f"{p.cpu_percent:.0f}%"
            rows.append(
                TableRow(
                    p.name, (p.name, str(p.pid or ""), cpu, short_state(p.state), p.command_line)
                )
            )
        table = self.query_one("#processes", KeyedTable)
        table.apply(rows)
        table.set_title(f"Lab processes · {len(live)} running")
        self._refresh_keys()
        key = self.selected_process
        if key is not None and table.selected_key() != key and key in table.rows:
            table.move_cursor(row=table.get_row_index(key))  # a new launch was selected
        if self.selected_process is None and rows:
            self._select_process(rows[0].key)
        else:
            self._title_output()

    def _title_output(self) -> None:
        """The output box names its process and, whole, the state the table shortens."""
        p = self._selected_process_info()
        log = self.query_one("#output", RichLog)
        title = f"{self.selected_process} output" + (f" · {p.state}" if p is not None else "")
        if log.border_title != title:
            log.border_title = title

    def _show_interfaces(self, interfaces: list[Any]) -> None:
        def addresses(iface: Any, family: int) -> str:
            # As `ip addr` writes them: address/prefix length.
            found = [
                f"{a.address}/{a.prefixlen}" if a.prefixlen is not None else a.address
                for a in iface.addresses
                if a.family == family
            ]
            return " ".join(found) or "-"

        rows = [
            TableRow(
                i.name,
                (
                    i.name,
                    "UP" if i.up else "DOWN",
                    addresses(i, 4),
                    addresses(i, 6),
                    str(i.mtu or ""),
                ),
            )
            for i in interfaces
        ]
        self.query_one("#interfaces", KeyedTable).apply(rows)

    # -- process events -----------------------------------------------------------
    def on_process_event_message(self, message: ProcessEventMessage) -> None:
        match message.event:
            case OutputLine(name=name, text=line):
                if name == self.selected_process:
                    self.query_one("#output", RichLog).write(line)
                return
            case ProcessStarted() as started:
                if started.name in self._launched:  # what the student just launched
                    self._launched.discard(started.name)
                    # Not replayed: its lines come after this event, each as an OutputLine
                    # (a replay of those already stored would show them twice).
                    self._select_process(started.name, replay=False)
                if started.replaced is not None and started.name == self.selected_process:
                    self.query_one("#output", RichLog).clear()  # the ended one's lines go
                text = started.describe(self.oapp.command_of(started))
                self.timeline.add(TimelineEntry(started.at, "!", text, started.pid, lab=True))
            case ProcessExited() as exited:
                # with the reason: the last error line, who holds a port
                self.timeline.add(
                    TimelineEntry(exited.at, "!", exited.describe(), exited.pid, lab=True)
                )
        self.query_one("#events", EventsPanel).refresh_log()
        self._update_mini()
        self.oapp.poll_now()

    # -- status lines -------------------------------------------------------------
    def _update_status(self) -> None:
        parts = [Text("Observatory", style="bold")]
        if self.snapshot is not None:
            counts = self._counts
            for state in ("LISTEN", "ESTABLISHED", "TIME_WAIT"):
                parts.append(Text(f"{counts.get(state, 0)} {state}"))
            if self.options.lab_pids is not None:
                parts.append(Text("lab only", style="bold"))
            if self.options.family:
                parts.append(Text(f"IPv{self.options.family} only", style="bold"))
            if self.options.text:
                parts.append(Text(f"filter: {self.options.text}", style="bold"))
        parts.append(Text(f"every {self.oapp.interval:g} s"))
        slow = self.oapp.last_poll_duration()
        if slow > max(0.5, self.oapp.interval):
            parts.append(Text(f"slow poll {slow:.1f} s", style="bold reverse"))
        if self.frozen:
            parts.append(Text("FROZEN (space to resume)", style="bold reverse"))
        if self.poll_error:
            parts.append(Text(self.poll_error, style="bold reverse"))
        stamp = self.oapp.clock()
        parts.append(Text(time.strftime("%H:%M:%S", time.localtime(stamp))))
        parts.append(Text("ctrl+p: every key", style="bold"))
        self.query_one("#status", Static).update(Text(" · ").join(parts), layout=False)

    def _update_mini(self) -> None:
        self.query_one("#events-mini", Static).update(
            self.timeline.render(limit=8, wrap=False), layout=False
        )

    def _focused_socket(self) -> Socket | None:
        focused = self.focused
        if isinstance(focused, KeyedTable) and focused.id in SOCKET_TABLES:
            key = focused.selected_key()
            if key and key in self.marked:
                return self.marked[key].sock
        return None

    def _refresh_keys(self) -> None:
        """The footer greys what cannot act now: redrawn when that changes (a process
        starts, a row that can be killed or closed is highlighted), not only on a focus
        change, which is when Textual asks check_action again by itself."""
        state = tuple(
            self.check_action(a, ()) for a in ("kill", "restart", "kill_all", "close_connection")
        )
        if state != self._key_state:
            self._key_state = state
            self.refresh_bindings()

    def _update_why(self) -> None:
        self._refresh_keys()
        sock = self._focused_socket()
        zoomed = self.has_class("-zoom")  # the tables are hidden: nobody picks a row
        if sock is not None and sock is not self._last_selected and not zoomed:
            self._last_selected = sock
            for aware in self._socket_aware():
                aware.select_socket(sock)
        why = self.query_one("#why", Static)
        if sock is None:
            kinds = {m.sock.owner for m in self.marked.values()} - {"process"}
            hint = "  ".join(f"{k}: {owner_help(k)}." for k in sorted(kinds))
            why.update(hint, layout=False)
            return
        if sock.owner == "process":
            text = (
                f"{sock.local} {sock.state}: pid {sock.pid} {sock.process} ({sock.user}): "
                f"{' '.join(sock.cmdline) or sock.process}"
            )
        elif sock.waiting_in_backlog:
            text = (
                f"{sock.local} ← {sock.remote}: handshake done, waiting in the listener's "
                "backlog; no process has accept()ed it yet."
            )
        elif sock.state == "TIME_WAIT":
            text = (
                f"{sock.local} → {sock.remote}: TIME_WAIT. This side closed first; the "
                "kernel keeps it about 60 s so late packets cannot confuse a new connection."
            )
        else:
            text = f"{sock.local}: {sock.owner}: {owner_help(sock.owner)}."
        # The second line: what only the kernel knows (sock_diag's tcp_info, the backlog).
        at = self.snapshot.taken_at if self.snapshot is not None else time.time()
        kernel = conninfo.describe(sock, self._rates.observe(sock, at))
        why.update(f"{text}\n{kernel}", layout=False)

    @on(KeyedTable.RowHighlighted)
    def _row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.data_table.id == "processes":
            # (a process table row key is the process name)
            key = event.row_key.value
            if key and key != self.selected_process:
                self._select_process(key)
        else:
            self._update_why()

    def on_descendant_focus(self) -> None:
        self._update_why()

    def _select_process(self, name: str, replay: bool = True) -> None:
        self.selected_process = name
        log = self.query_one("#output", RichLog)
        log.clear()
        self._title_output()
        if replay:
            for line in self.oapp.process_output(name):
                log.write(line)

    # -- actions ------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "tab":
            return bool(self.query(f"#{parameters[0]}")) or None
        if action in ("kill", "kill9"):
            return self._kill_target() is not None or None
        if action == "restart":
            return self._selected_process_info() is not None or None
        if action == "kill_all":
            return any(p.running for p in self.processes) or None
        if action == "close_connection":
            return self._close_target() is not None or None
        return True

    def _selected_process_info(self) -> Any:
        for p in self.processes:
            if p.name == self.selected_process:
                return p
        return None

    def _kill_target(self) -> Socket | Any | None:
        """What k / K act on: the focused socket row's owner, or the focused lab process.

        Nothing when focus is elsewhere (a scan result, a button): a letter typed
        there must never kill the lab process selected out of sight.
        """
        focused = self.focused
        if isinstance(focused, KeyedTable) and focused.id in SOCKET_TABLES:
            return self._focused_socket()
        if isinstance(focused, KeyedTable) and focused.id == "processes":
            p = self._selected_process_info()
            return p if p is not None and p.running else None
        return None

    def _close_target(self) -> Socket | None:
        """The focused row, if it is an ESTABLISHED connection: what the dialog's words are
        true of (a TIME_WAIT or backlog entry has no owner whose recv() could be aborted)."""
        sock = self._focused_socket()
        if sock is None or not sock.is_tcp or sock.state != "ESTABLISHED":
            return None
        return sock

    def action_close_connection(self) -> None:
        sock = self._close_target()
        if sock is None:
            self.notify("Select an ESTABLISHED connection first.", severity="warning")
            return
        refusal = diag.close_refusal()
        if refusal is not None:
            self.notify(refusal[:1].upper() + refusal[1:] + ".", severity="warning", timeout=8)
            return
        mirror = mirror_key(sock)
        peer = self.snapshot.by_key.get(mirror) if self.snapshot and mirror else None
        body = (
            f"End this TCP connection, as ss -K does?\n\n"
            f"  this end:  {sock.local}  {sock.state}  {sock.owner_label}\n"
            f"  the peer:  {sock.remote}"
            + (f"  {peer.state}  {peer.owner_label}" if peer is not None else "")
            + "\n\nThe owner's blocked recv() gets ECONNABORTED; the peer gets a reset."
        )
        self.app.push_screen(
            ConfirmDialog(f"Close {sock.local} → {sock.remote}?", body, yes="Close it"),
            lambda yes: self.oapp.close_connection(sock) if yes else None,
        )

    def action_quit(self) -> None:
        self.oapp.request_quit()

    def action_launch(self) -> None:
        addresses = ["127.0.0.1", "0.0.0.0", "::1", "::"]
        for iface in self.oapp.interfaces_now():
            for a in iface.ipv4 + iface.ipv6:
                if a not in addresses and not a.startswith("fe80"):
                    addresses.append(a)
        taken = {p.name for p in self.processes}  # an ended one's output is still shown
        running = {p.name for p in self.processes if p.running}
        self.app.push_screen(
            LaunchDialog(addresses, taken, running_names=running, port_check=self._port_check),
            self._launch,
        )

    def _port_check(
        self, address: str, port: int, proto: str, reuseaddr: bool | None
    ) -> str | None:
        """Why a server's bind() of address:port would fail, from the last poll (the
        launch dialog says it before launching)."""
        if self.snapshot is None:
            return None
        return portuse.bind_conflict(
            self.snapshot.sockets, address, port, proto=proto, reuseaddr=reuseaddr
        )

    def _launch(self, request: LaunchRequest | None) -> None:
        if request is not None:
            self._launched = {request.name}  # its output is shown as soon as it starts
            self.oapp.launch(request)

    def action_kill(self) -> None:
        self._kill(signal.SIGTERM)

    def action_kill9(self) -> None:
        self._kill(signal.SIGKILL)

    def _kill(self, sig: int) -> None:
        target = self._kill_target()
        if target is None:
            self.notify(
                "Select a socket row, or a running process in the Lab tab, first.",
                severity="warning",
            )
            return
        if isinstance(target, Socket):
            refusal = kill_refusal(target)
            if refusal is not None:
                self.notify(refusal, severity="warning", timeout=6)
                return
            assert target.pid is not None  # kill_refusal passes only a process with a pid
            self.oapp.kill_pid(target.pid, sig)
        else:
            self.oapp.kill_process(target.name, sig)

    def action_restart(self) -> None:
        p = self._selected_process_info()
        if p is not None:
            self.oapp.restart_process(p.name)

    def action_kill_all(self) -> None:
        self.oapp.kill_all()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_options(text=event.value.strip())

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.display = False
        self.query_one("#listen", KeyedTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:
            box.value = ""
            box.display = False
            self.query_one("#listen", KeyedTable).focus()

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.oapp.set_paused(self.frozen)
        self._update_status()

    def action_faster(self) -> None:
        self._step_interval(-1)

    def action_slower(self) -> None:
        self._step_interval(1)

    def _step_interval(self, direction: int) -> None:
        now = self.oapp.interval
        if direction < 0:
            choices = [i for i in INTERVALS if i < now]
            new = choices[-1] if choices else INTERVALS[0]
        else:
            choices = [i for i in INTERVALS if i > now]
            new = choices[0] if choices else INTERVALS[-1]
        self.oapp.set_poll_interval(new)
        self._update_status()

    def action_lab_only(self) -> None:
        if self.options.lab_pids is None:
            self._set_options(**self._lab_scope())
            self.notify("Showing only sockets of lab processes (a: all sockets).")
        else:
            self._set_options(lab_pids=None)

    def action_family(self) -> None:
        nxt = {None: 4, 4: 6, 6: None}[self.options.family]
        self._set_options(family=nxt)

    def action_numeric(self) -> None:
        self._set_options(numeric=not self.options.numeric)

    def action_sort(self) -> None:
        table = self.focused if isinstance(self.focused, KeyedTable) else None
        if table is None or table.id not in SOCKET_TABLES:
            table = self.query_one("#listen", KeyedTable)
        keys = [k for _, k in SOCKET_TABLES[table.id or "listen"] if k != "mark"]
        # Cycle through the columns, then back to the natural order (None).
        cycle: list[str | None] = [*keys, None]
        current = self.options.sort
        nxt = cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else keys[0]
        self._set_options(sort=nxt)
        self.notify(f"Sorted by {nxt}" if nxt else "Natural order: connection pairs together")

    def action_tab(self, tab_id: str) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        # Focus inside the tab being hidden would fall on a neighbour in it (the Lab
        # tab's output), and that tab would come straight back: the keys go home first.
        if self.focused is not None and tabs in self.focused.ancestors:
            self.set_focus(self.query_one("#listen", KeyedTable))
        tabs.active = tab_id

    @on(TabStrip.Chosen)
    def _tab_clicked(self, event: TabStrip.Chosen) -> None:
        self.action_tab(event.tab_id)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self.query_one(TabStrip).set_active(event.pane.id)

    def action_screenshot(self) -> None:
        self.oapp.save_screen()

    def action_zoom(self) -> None:
        # Hiding the tables moves focus onto a hidden table (and its cursor row,
        # which nobody chose): remember the focus and give it back on the way out.
        if self.has_class("-zoom"):
            self.remove_class("-zoom")
            if self._focus_before_zoom is not None and self._focus_before_zoom.is_attached:
                self._focus_before_zoom.focus()
        else:
            self._focus_before_zoom = self.focused
            self.add_class("-zoom")

    def action_theme(self) -> None:
        self.oapp.toggle_theme()

    def action_scenario(self) -> None:
        self.app.push_screen(
            PathDialog("Load a scenario file", "scenarios/session4.toml"), self._load_scenario
        )

    def _load_scenario(self, path: str | None) -> None:
        if path:
            self.oapp.load_scenario(path)

    def _lab_scope(self) -> dict[str, Any]:
        """The lab's pids (ended ones too: what a kill left, its GONE rows) and the ports
        their sockets use, with every port a lab process ever listened on: the killed
        server's FIN_WAIT2 and TIME_WAIT stay on its port after its LISTEN row is gone."""
        pids = self.oapp.lab_pids()
        ports: set[int] = set()
        for m in self.marked.values():
            if m.sock.pid in pids:
                ports.add(m.sock.local_port)
                if m.sock.state == "LISTEN":
                    self._lab_listen_ports.add(m.sock.local_port)
        ports |= self._lab_listen_ports
        return {"lab_pids": pids, "lab_ports": frozenset(ports)}

    def _scope_timeline(self) -> None:
        """The Events tab and box follow the lab-only view."""
        o = self.options
        self.timeline.scope = None if o.lab_pids is None else _lab_entry(o.lab_pids, o.lab_ports)
        self.query_one("#events", EventsPanel).refresh_log()
        self._update_mini()

    def _set_options(self, **changes: Any) -> None:
        if "lab_pids" not in changes and self.options.lab_pids is not None:
            changes.update(self._lab_scope())
        before = self.options
        self.options = replace(self.options, **changes)
        if (before.lab_pids, before.lab_ports) != (self.options.lab_pids, self.options.lab_ports):
            self._scope_timeline()
        if self.snapshot is not None:
            with self.app.batch_update():
                self._show_sockets()
        if self.options.view_differs(before):
            # The rows the side panels followed may be hidden now: they follow the cursor.
            for aware in self._socket_aware():
                if aware.follow is not None:  # (the Scan tab follows no row)
                    aware.follow.reset()
            self._last_selected = None
            self._update_why()
        self._update_status()

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {
            "btn-launch": self.action_launch,
            "btn-kill-all": self.action_kill_all,
            "btn-restart": self.action_restart,
        }
        if event.button.id in actions:
            actions[event.button.id]()
        elif event.button.id in ("btn-kill", "btn-kill9"):
            p = self._selected_process_info()
            if p is None or not p.running:
                self.notify("Select a running lab process first.", severity="warning")
                return
            sig = signal.SIGKILL if event.button.id == "btn-kill9" else signal.SIGTERM
            self.oapp.kill_process(p.name, sig)

    def confirm_foreign_kill(self, describe: Any, sig: int) -> None:
        """Ask before signalling a process the dashboard did not start."""
        name = "SIGKILL" if sig == signal.SIGKILL else "SIGTERM"
        body = (
            f"pid {describe.pid} was not started by the observatory.\n\n"
            f"  user:    {describe.user or '?'}\n  command: {describe.command_line}\n\n"
            f"Send it {name}?"
        )
        self.app.push_screen(
            ConfirmDialog(f"Kill pid {describe.pid}?", body, yes=f"Send {name}"),
            lambda yes: self.oapp.kill_foreign(describe, sig) if yes else None,
        )


def kill_refusal(sock: Socket) -> str | None:
    """Why ``k`` cannot kill the owner of ``sock``, in words; None when it can."""
    if sock.owner == "process" and sock.pid is not None:
        return None
    if sock.owner == "hidden" or sock.pid is None and sock.owner != "kernel":
        return f"Cannot kill the owner of {sock.local}: {owner_help('hidden')}."
    why = {
        "TIME_WAIT": "it is in TIME_WAIT; the kernel ends it by itself within about 60 s.",
        "SYN_RECV": "it is a handshake the kernel answers for the listening server.",
    }.get(sock.state)
    if why is None and sock.waiting_in_backlog:
        why = "it waits in a backlog; kill the server that listens instead."
    if why is None and sock.state in ("FIN_WAIT1", "FIN_WAIT2"):
        why = (
            f"its process closed it (or was killed); the kernel finishes the close "
            f"({sock.state}) and drops it about 60 s later, or, if the peer closes "
            "meanwhile, keeps it about 60 s more in TIME_WAIT."
        )
    if why is None and sock.state in ("CLOSING", "LAST_ACK"):
        why = f"both ends have closed ({sock.state}); it goes away within moments."
    return f"No process holds {sock.local}: " + (why or f"{owner_help('kernel')}.")


def short_state(state: str) -> str:
    """A process state short enough for the Lab table: ``stopped by SIGTERM (exit 143)`` is
    ``SIGTERM``, ``killed by SIGKILL`` is ``SIGKILL``, ``exited 1`` is ``exit 1``."""
    if state.startswith(("stopped by ", "killed by ")):
        return state.split(" by ", 1)[1].split(" (")[0]
    if state.startswith("exited "):
        return "exit " + state.split()[1]
    return state


def _lab_entry(pids: frozenset[int], ports: frozenset[int]) -> Callable[[TimelineEntry], bool]:
    """The lab-only view of the timeline: the lab's processes, and what touched the ports the
    lab's sockets use (a client of a lab server, a lab TIME_WAIT no process holds)."""

    def belongs(entry: TimelineEntry) -> bool:
        return entry.lab or entry.pid in pids or any(p in ports for p in entry.ports if p)

    return belongs
