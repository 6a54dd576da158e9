"""The main screen: socket tables, lab processes, events, interfaces."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from app.core import conninfo, diag, portuse
from app.core.interfaces import Interface
from app.core.model import Snapshot, Socket
from app.core.procs import ProcessExited, ProcessInfo, ProcessStarted
from app.ui.cells import (
    ESTABLISHED_COLUMNS,
    INTERFACE_COLUMNS,
    LISTEN_COLUMNS,
    OTHER_COLUMNS,
    UDP_COLUMNS,
    interface_rows,
    with_host,
)
from app.ui.feed import SocketFeed, gc_paused, settle_heap
from app.ui.messages import (
    LessonStepDone,
    PollFailed,
    PollResult,
    ProcessEventMessage,
    SnapshotReady,
)
from app.ui.poller import Poller
from app.ui.requests import (
    CloseRequested,
    KillAllRequested,
    KillRequested,
    LaunchRequested,
    LessonOpenRequested,
    QuitRequested,
    RestartRequested,
    ScenarioRequested,
)
from app.ui.rows import Marked, ViewOptions, lab_scope
from app.ui.screens.dialogs import ConfirmDialog, PathDialog, post_if_yes
from app.ui.screens.keys import ACTING, LIVE_ONLY, MAIN_BINDINGS, TAB_KEYS
from app.ui.screens.launch import LaunchDialog, LaunchRequest
from app.ui.widgets.backlog import BacklogPanel
from app.ui.widgets.bytes_panel import BytesPanel
from app.ui.widgets.events import MAX_EVENTS, EventsPanel, Timeline, TimelineEntry, lab_entries
from app.ui.widgets.instrument import InstrumentPanel
from app.ui.widgets.keyed_table import KeyedTable
from app.ui.widgets.lab_panel import LabPanel
from app.ui.widgets.lesson_panel import LessonPanel
from app.ui.widgets.scan_panel import ScanPanel
from app.ui.widgets.tabstrip import TabStrip
from app.ui.widgets.tcp_machine import StateMachinePanel, mirror_key
from app.ui.words import (
    close_question,
    command_of,
    events_title,
    kill_refusal,
    owner_hints,
    socket_words,
    status_line,
    table_title,
)

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
# The instrument panels' tabs (app.ui.widgets.instrument.InstrumentPanel), by tab id.
PANELS: tuple[tuple[str, type[InstrumentPanel]], ...] = (
    ("tab-scan", ScanPanel),
    ("tab-bytes", BytesPanel),
    ("tab-machine", StateMachinePanel),
    ("tab-backlog", BacklogPanel),
)


class MainScreen(Screen[None]):
    """The socket tables, the side column's tabs, the status and "why" lines.

    Args:
        poller: the app's poller (its interval, pause and back-pressure).
        clock: the time shown in the status line.
        output: a lab process's stored output lines, by name.
        recording: where the session record goes, if anywhere.
        hosts: the tables have a Host column (lab hosts' sockets are shown).
        live: False for a replay of a record: the keys that would act on the machine
            (LIVE_ONLY) and the Lab tab's buttons are hidden.
    """

    BINDINGS: ClassVar[list[BindingType]] = MAIN_BINDINGS

    # Frozen: the tables hold a still frame and the poller pauses.
    frozen: var[bool] = var(False, init=False)
    # Which of ACTING can act now: the footer is redrawn when it changes (a process
    # starts, a row that can be killed or closed is highlighted), not only on a focus
    # change, which is when Textual asks check_action again by itself.
    _acting: var[tuple[bool, ...]] = var((), bindings=True)

    def __init__(
        self,
        poller: Poller,
        *,
        clock: Callable[[], float] = time.time,
        output: Callable[[str], list[str]] = lambda name: [],
        recording: Path | None = None,
        hosts: bool = False,
        live: bool = True,
    ) -> None:
        super().__init__(classes="" if live else "-replay")
        self.live = live
        self.poller = poller
        # With lab hosts, every socket table says whose socket each row is (Host).
        self.tables = {n: with_host(c) if hosts else c for n, c in SOCKET_TABLES.items()}
        self._clock = clock
        self._recording = recording
        self.feed = SocketFeed(self.tables)
        self.options = ViewOptions()
        self.timeline = Timeline()
        self.snapshot: Snapshot | None = None
        self.marked: dict[str, Marked] = self.feed.marked  # kept up to date by the feed
        self.interfaces: list[Interface] = []  # as the poller read them last
        self.poll_error: str | None = None
        self._last_selected: Socket | None = None
        self._rates = conninfo.RateMeter()  # bytes per second of the highlighted connection
        self._focus_before_zoom: Widget | None = None
        self._counts: dict[str, int] = {}
        self._seeing: str | None = None  # what the event stream sees, as last said
        self._aware: list[InstrumentPanel] | None = None
        self._more_planned = False  # a slice of rows is due after the next refresh
        self._made = 0  # rows changed since the heap was last settled
        self._lab_listen_ports: set[int] = set()  # every port a lab process listened on
        self.lab = LabPanel(output, id="lab")  # (made here: check_action asks it early)
        self.lesson = LessonPanel(id="lesson")  # hidden until a lesson is loaded

    @property
    def processes(self) -> list[ProcessInfo]:
        """The lab processes, as the last poll found them (the Lab tab keeps them)."""
        return self.lab.processes

    @property
    def selected_process(self) -> str | None:
        """The lab process whose output the Lab tab shows."""
        return self.lab.selected

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("Connection Observatory", id="status")
        yield self.lesson
        with Horizontal(id="main"):
            with Vertical(id="tables"):
                listen = KeyedTable(self.tables["listen"], id="listen")
                listen.border_title = "LISTEN  (like netstat -tulpn)"
                yield listen
                est = KeyedTable(self.tables["established"], id="established")
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
                        yield self.lab
                    with TabPane("Events", id="tab-events"):
                        yield EventsPanel(self.timeline, id="events")
                    with TabPane("Other states", id="tab-other"):
                        yield KeyedTable(self.tables["other"], id="other")
                    with TabPane("UDP", id="tab-udp"):
                        yield KeyedTable(self.tables["udp"], id="udp")
                    with TabPane("Interfaces", id="tab-interfaces"):
                        yield KeyedTable(INTERFACE_COLUMNS, id="interfaces")
                    titles = {tab_id: title for _key, tab_id, title in TAB_KEYS}
                    for tab_id, panel in PANELS:
                        yield TabPane(titles[tab_id], panel(), id=tab_id)
                yield Static(id="events-mini")
        yield Input(placeholder="filter: type text, Enter to keep, Esc to clear", id="filter")
        yield Static(id="why")
        # The palette key is named on the status line instead: docked right here, it
        # covered the end of the overflowing key list and left a stray letter beside it.
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#events-mini", Static).border_title = events_title(None)
        if self._recording is not None:
            self.query_one(
                "#events", EventsPanel
            ).border_subtitle = f"recording to {self._recording}"
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

    # -- polls (posted by the poller's thread) --------------------------------------------
    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        result = message.result
        for note in result.notes:
            self.notify(note, title="Cleaned up", timeout=10)
        try:
            with gc_paused():
                self._apply(result)
        finally:
            if not self.feed.busy:  # else the last slice of rows says so (_show_more)
                self.poller.consumed()  # the poller may take the next snapshot

    def _apply(self, result: PollResult) -> None:
        self.poll_error = None
        if result.interfaces is not None:
            self.interfaces = result.interfaces
            self.query_one("#interfaces", KeyedTable).apply(interface_rows(result.interfaces))
            for aware in self._socket_aware():
                aware.update_interfaces(result.interfaces)
        self.lab.show(result.processes)
        self._refresh_keys()
        if self.frozen:
            return
        self.snapshot = result.snapshot
        if result.seeing != self._seeing:  # what the stream sees, where students look
            self._seeing = result.seeing
            self.query_one("#events-mini", Static).border_title = events_title(result.seeing)
        self.lesson.update_world(result.snapshot, result.processes)
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
        for name in self.tables:
            table = self.query_one(f"#{name}", KeyedTable)
            feed = self.feed.show(name, table, self.options, SLICE)
            table.set_title(table_title(name, table.row_count, len(feed.members), feed.gone))
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
            self.poller.consumed()

    # -- process events (posted by the manager's threads) -------------------------------
    def on_process_event_message(self, message: ProcessEventMessage) -> None:
        event = message.event
        self.lab.show_event(event)
        match event:
            case ProcessStarted() as started:
                text = started.describe(command_of(started))
                self.timeline.add(TimelineEntry(started.at, "!", text, started.pid, lab=True))
            case ProcessExited() as exited:
                # with the reason: the last error line, who holds a port
                text = exited.describe()
                self.timeline.add(TimelineEntry(exited.at, "!", text, exited.pid, lab=True))
            case _:
                return  # an output line: the Lab tab's alone
        self.query_one("#events", EventsPanel).refresh_log()
        self._update_mini()
        self.poller.poll_now()

    # -- status lines -------------------------------------------------------------
    def _update_status(self) -> None:
        status = status_line(
            self._counts if self.snapshot is not None else None,
            self.options,
            self.poller.interval,
            self.poller.last_duration,
            self.frozen,
            self.poll_error,
            self._clock(),
        )
        self.query_one("#status", Static).update(status, layout=False)

    def _update_mini(self) -> None:
        self.query_one("#events-mini", Static).update(
            self.timeline.render(limit=8, wrap=False), layout=False
        )

    def _focused_socket(self) -> Socket | None:
        focused = self.focused
        if isinstance(focused, KeyedTable) and focused.id in self.tables:
            key = focused.selected_key()
            if key and key in self.marked:
                return self.marked[key].sock
        return None

    def _refresh_keys(self) -> None:
        """The footer greys what cannot act now (see ``_acting``)."""
        self._acting = tuple(bool(self.check_action(a, ())) for a in ACTING)

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
            why.update(owner_hints(m.sock for m in self.marked.values()), layout=False)
            return
        text = socket_words(sock)
        # The second line: what only the kernel knows (sock_diag's tcp_info, the backlog).
        at = self.snapshot.taken_at if self.snapshot is not None else time.time()
        kernel = conninfo.describe(sock, self._rates.observe(sock, at))
        why.update(f"{text}\n{kernel}", layout=False)

    @on(KeyedTable.RowHighlighted)
    def _row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.data_table.id == "processes":
            self._refresh_keys()  # (the Lab tab shows the process: LabPanel)
        else:
            self._update_why()

    def on_descendant_focus(self) -> None:
        self._update_why()

    # -- actions ------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.live and action in LIVE_ONLY:
            return False  # a replay: nothing here acts on the record shown
        if action in ("lesson_next", "lesson_previous"):
            return self.lesson.shown
        if self.lesson.shown and (action == "numeric" or parameters == ("tab-lab",)):
            return False  # n and p are the lesson's steps now
        if action == "tab":
            return bool(self.query(f"#{parameters[0]}")) or None
        if action in ("kill", "kill9"):
            return self._kill_target() is not None or None
        if action == "restart":
            return self.lab.selected_info() is not None or None
        if action == "kill_all":
            return any(p.running for p in self.processes) or None
        if action == "close_connection":
            return self._close_target() is not None or None
        return True

    def _kill_target(self) -> Socket | ProcessInfo | None:
        """What k / K act on: the focused socket row's owner, or the focused lab process.

        Nothing when focus is elsewhere (a scan result, a button): a letter typed
        there must never kill the lab process selected out of sight.
        """
        focused = self.focused
        if isinstance(focused, KeyedTable) and focused.id in self.tables:
            return self._focused_socket()
        if isinstance(focused, KeyedTable) and focused.id == "processes":
            p = self.lab.selected_info()
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
        self.app.push_screen(
            ConfirmDialog(
                f"Close {sock.local} → {sock.remote}?", close_question(sock, peer), yes="Close it"
            ),
            post_if_yes(self, CloseRequested(sock)),
        )

    def action_quit(self) -> None:
        self.post_message(QuitRequested([p.name for p in self.processes if p.running]))

    def action_launch(self) -> None:
        addresses = ["127.0.0.1", "0.0.0.0", "::1", "::"]
        for iface in self.interfaces:
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
            self.lab.expect(request.name)  # its output is shown as soon as it starts
            self.post_message(LaunchRequested(request))

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
            self.post_message(KillRequested(target.pid, sig))
        else:
            self.post_message(KillRequested(target.name, sig))

    def action_restart(self) -> None:
        p = self.lab.selected_info()
        if p is not None:
            self.post_message(RestartRequested(p.name))

    def action_kill_all(self) -> None:
        self.post_message(KillAllRequested())

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

    def watch_frozen(self, frozen: bool) -> None:
        self.poller.set_paused(frozen)
        self._update_status()

    def action_faster(self) -> None:
        self._step_interval(-1)

    def action_slower(self) -> None:
        self._step_interval(1)

    def _step_interval(self, direction: int) -> None:
        now = self.poller.interval
        if direction < 0:
            choices = [i for i in INTERVALS if i < now]
            new = choices[-1] if choices else INTERVALS[0]
        else:
            choices = [i for i in INTERVALS if i > now]
            new = choices[0] if choices else INTERVALS[-1]
        self.poller.set_interval(new)
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
        if table is None or table.id not in self.tables:
            table = self.query_one("#listen", KeyedTable)
        keys = [k for _, k in self.tables[table.id or "listen"] if k != "mark"]
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

    def action_scenario(self) -> None:
        self.app.push_screen(
            PathDialog("Load a scenario file", "scenarios/session4.toml"), self._load_scenario
        )

    def _load_scenario(self, path: str | None) -> None:
        if path:
            self.post_message(ScenarioRequested(path))

    # -- the lesson (app.ui.widgets.lesson_panel) ------------------------------------------
    def action_lesson(self) -> None:
        if self.lesson.lesson is None:
            dialog = PathDialog(
                "Open a lesson (a path, or session4: the lecture's, shipped with the app)",
                "session4",
                placeholder="the path of a .toml lesson file, or session4",
            )
            self.app.push_screen(dialog, self._open_lesson)
            return
        self.lesson.toggle()
        self.refresh_bindings()

    def _open_lesson(self, path: str | None) -> None:
        if path:
            self.post_message(LessonOpenRequested(path))

    def action_lesson_next(self) -> None:
        self.lesson.next_step()

    def action_lesson_previous(self) -> None:
        self.lesson.previous_step()

    def on_lesson_step_done(self, message: LessonStepDone) -> None:
        self.lesson.step_done(message.step, message.notes, message.scan, message.error)

    def _lab_scope(self) -> dict[str, Any]:
        pids, ports = lab_scope(self.processes, self.marked.values(), self._lab_listen_ports)
        return {"lab_pids": pids, "lab_ports": ports}

    def show_timeline(self, entries: list[TimelineEntry]) -> None:
        """The Events tab and box from ``entries`` alone (a replay stepping back)."""
        self.timeline.entries.clear()
        self.timeline.entries.extend(entries[-MAX_EVENTS:])
        self.query_one("#events", EventsPanel).refresh_log()
        self._update_mini()

    def _scope_timeline(self) -> None:
        """The Events tab and box follow the lab-only view."""
        o = self.options
        self.timeline.scope = None if o.lab_pids is None else lab_entries(o.lab_pids, o.lab_ports)
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
