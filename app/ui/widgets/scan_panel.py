"""The Scan tab: nmap on demand, joined with what this machine knows of its own sockets.

:class:`ScanPanel` composes three rooms of :mod:`app.ui.widgets.scan`: the
form (what to scan, Run/Cancel, progress), the results (nmap's table plus a
LOCAL column, the explanation box, the compare table) and the history (past
scans, marks, "vs previous"). The panel itself runs the scans and passes what
happens between the rooms.

It validates what the user typed (``ScanRequest.create``) on the UI loop, which
is cheap and never polls, then runs the scan in a Textual thread worker (group
``scan``). From a lab host (the form's From), ``find_origin`` looks the host
and its lab's addresses up first (a directory listing and one short thread per
host that reads its interfaces inside its namespace: milliseconds), and the
request allows only the lab's addresses; from this machine, a running lab's
address is refused with the host to scan from. nmap and ip are never run
here: ``Scan`` does, in the worker. The thread reports progress with ``post_message``, which is
thread-safe in Textual 8 (``loop.call_soon_threadsafe``; it raises only once the
loop is closed, which we ignore: the app is gone). The outcome comes back as
the worker's ``StateChanged``: its result, or its exception told in words,
never a traceback. Only one scan runs at a time; unmounting the panel
(quitting the app) cancels it and waits at most ~1 s, which is enough for
``Scan`` to SIGTERM/SIGKILL nmap's process group and reap it.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Button, Input, Select
from textual.worker import Worker, WorkerState

from app.core.interfaces import Interface
from app.core.model import Snapshot, Socket, SocketEvent
from app.core.scan import (
    LabOrigin,
    Scan,
    ScanError,
    ScanProgress,
    ScanRequest,
    ScanResult,
    ScanTypeInfo,
    available_types,
    find_origin,
    running_labs,
)
from app.ui.widgets.instrument import (
    InstrumentPanel,
    give_keys_back,
    home_after_hidden_blur,
    keep_focus_out_of_hidden,
)
from app.ui.widgets.scan.form import ScanForm
from app.ui.widgets.scan.formatting import unavailable
from app.ui.widgets.scan.history import ScanHistoryView
from app.ui.widgets.scan.results import ScanResultsView

UNMOUNT_WAIT = 1.0  # seconds the panel waits for a cancelled scan when it goes away
FINAL_STATES = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)


def failure_words(error: BaseException | None) -> str:
    """What went wrong, in one line: the exception's own words, else its name."""
    if error is None:
        return "the scan failed"
    return str(error) or type(error).__name__


class ScanPanel(InstrumentPanel):
    """nmap scans of a chosen target, their history and a compare view.

    Args:
        types: the scan types offered (default: :func:`available_types` for
            this user; tests pass another user's view).
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

    def __init__(self, types: Sequence[ScanTypeInfo] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.types = tuple(types) if types is not None else available_types()
        self.scan: Scan | None = None  # the running scan, if any
        self._worker: Worker[ScanResult] | None = None  # the thread that runs it
        self._snapshot: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield ScanForm(self.types, id="scan-form")
        yield ScanResultsView(id="scan-report")
        yield ScanHistoryView(id="scan-past")

    @property
    def form(self) -> ScanForm:
        return self.query_one(ScanForm)

    @property
    def report(self) -> ScanResultsView:
        return self.query_one(ScanResultsView)

    @property
    def past(self) -> ScanHistoryView:
        return self.query_one(ScanHistoryView)

    # Opening the tab (key s) leaves the focus where it was: a field took the next
    # letter typed (l for Launch went into Ports). A field is entered on purpose:
    # a click, Tab, or Enter on the panel.
    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        keep_focus_out_of_hidden(self, event)

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        home_after_hidden_blur(self)

    def on_unmount(self) -> None:
        # Quitting mid-scan: nmap lives in its own session, so a thread that outlived
        # the app would leave it running. Cancel, and give Scan ~1 s to reap it.
        scan = self.scan
        if scan is not None:
            scan.cancel()
            with contextlib.suppress(Exception):  # its failure is nobody's business now
                scan.wait(UNMOUNT_WAIT)

    # -- InstrumentPanel: what the screen calls -----------------------------------------
    def update_snapshot(self, snapshot: Snapshot, events: list[SocketEvent]) -> None:
        """Keep the latest snapshot (for the default ports and the lab hosts); cheap,
        throttled work only."""
        self._snapshot = snapshot
        self.form.update_snapshot(snapshot)

    def update_interfaces(self, interfaces: Sequence[Interface]) -> None:
        self.form.set_interfaces(interfaces)

    def set_lab_hosts(self, hosts: Sequence[str] | None) -> None:
        """The running lab hosts From offers, as the screen knows them (None, the
        default: the hosts of the snapshots' sockets and of the app's interfaces)."""
        self.form.set_lab_hosts(hosts)

    def select_socket(self, sock: Socket) -> None:
        """Offer the highlighted socket's server port: its own when it is a server's
        (LISTEN, UDP, or accepted on a listening port), else its peer's (a client)."""
        port = sock.local_port
        listening = self.form.listening
        if sock.state != "LISTEN" and sock.remote_port and sock.local_port not in listening:
            port = sock.remote_port
        self.form.offer_port(port)

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

    def run_scan(self) -> None:
        """Validate the fields and start nmap in a worker thread; refusals show in words."""
        form = self.form
        if self.scan is not None:
            form.say("A scan is already running: wait for it, or Cancel it.")
            return
        if not form.check_nmap():
            form.say(None)
            return
        info = form.chosen_type()
        if info is None:
            form.say("Choose a scan type.")
            return
        if not info.enabled:
            form.say(unavailable(info))
            return
        # Never let ScanRequest poll /proc itself on the UI loop: before the first
        # snapshot, the defaults are the lecture's ports only.
        snapshot = self._snapshot or Snapshot(taken_at=time.time(), sockets=())
        try:
            request = self._request(info.name, snapshot)
            scan = Scan(request, on_progress=lambda p: self._from_thread(self.Progressed(scan, p)))
            scan.preflight()
        except ScanError as exc:
            form.say(str(exc))
            return
        form.say(None)
        self.scan = scan
        form.set_running(True)
        form.status("starting nmap…", 0)
        form.show_command(f"$ {shlex.join(scan.full_command)}")
        self._worker = self._work(scan)

    def _request(self, scan_type: str, snapshot: Snapshot) -> ScanRequest:
        """The form's scan, validated: from the lab host chosen in From, or from this
        machine (where, while lab hosts run, their addresses are refused in words).

        Raises:
            ScanError: in words.
        """
        form = self.form
        from_host = form.chosen_origin()
        origin: LabOrigin | None = None
        labs: list[LabOrigin] = []
        if from_host is not None:
            origin = find_origin(from_host)
        elif form.lab_hosts:
            labs = running_labs()
        return ScanRequest.create(
            form.target_text(),
            form.ports_text(),
            scan_type,
            snapshot=snapshot,
            origin=origin,
            labs=labs,
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan", name="scan")
    def _work(self, scan: Scan) -> ScanResult:
        """The worker's thread: run the scan; its end reaches the UI as the worker's state."""
        return scan.run()

    def _from_thread(self, message: Message) -> None:
        # post_message is thread-safe in Textual 8 (call_soon_threadsafe); once the
        # app has ended its loop is closed and there is no one left to tell.
        with contextlib.suppress(RuntimeError):
            self.post_message(message)

    def cancel_scan(self) -> None:
        if self.scan is not None:
            self.scan.cancel()
            self.form.status("cancelling…")

    def on_scan_panel_progressed(self, message: ScanPanel.Progressed) -> None:
        if message.scan is not self.scan:
            return
        p = message.progress
        task = f"{p.task} · " if p.task else ""
        cancelling = " · cancelling…" if message.scan.cancelled else ""
        self.form.status(f"{task}{p.elapsed:.1f} s{cancelling}", p.percent)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The scan's worker ended: show its result, or what went wrong in words."""
        worker = event.worker
        if worker is not self._worker or event.state not in FINAL_STATES:
            return
        self.scan = self._worker = None
        self.form.set_running(False)
        if event.state == WorkerState.SUCCESS and worker.result is not None:
            self._show_outcome(worker.result)
        elif event.state == WorkerState.ERROR:
            self._show_failure(failure_words(worker.error))
        else:
            self._show_failure("the scan was stopped before it ended")

    def _show_failure(self, words: str) -> None:
        self.form.status("failed")
        self.form.say(words)

    def _show_outcome(self, result: ScanResult) -> None:
        form = self.form
        if result.status == "cancelled":
            form.status(f"cancelled after {result.duration:.1f} s")
            form.say(result.error, error=False)
            return
        form.status(f"{result.status} in {result.duration:.2f} s", 100)
        form.say(result.error)
        if not result.hosts:
            return
        previous = self.past.add(result)
        note = ""
        if previous is not None:
            changed = self.show_compare(previous, result)
            note = f"{changed} changed (Compare ↓)"
        self.report.show_result(result, note, previous)
        # On a short screen (80x24) the form fills the panel: bring the results up.
        # (after the refresh: the table's new height is known only then)
        self.call_after_refresh(
            self.scroll_to_widget, self.query_one("#scan-results"), animate=False
        )

    # -- history and compare ------------------------------------------------------------
    def show_compare(self, before: ScanResult, after: ScanResult) -> int:
        """Show the compare of two scans; returns how many rows changed."""
        changed = self.report.show_compare(before, after)
        self.form.say(None)
        return changed

    def on_scan_history_view_chosen(self, message: ScanHistoryView.Chosen) -> None:
        self.report.show_result(message.result)

    def on_scan_history_view_compare_asked(self, message: ScanHistoryView.CompareAsked) -> None:
        self.show_compare(message.before, message.after)

    def on_scan_history_view_refused(self, message: ScanHistoryView.Refused) -> None:
        self.form.say(message.reason)

    # -- keys -------------------------------------------------------------------------------
    def action_leave_input(self) -> None:
        """Esc anywhere in the panel (field, list, table, button): the keys go back to the
        dashboard's tables, where s b m w e i and the action keys work again."""
        for select in self.query(Select):
            select.expanded = False
        give_keys_back(self)

    def action_enter_fields(self) -> None:
        """Enter on the panel itself (reached with Tab): into the Ports field."""
        self.query_one("#scan-ports", Input).focus()
