"""The Scan tab's form: what to scan, the Run and Cancel buttons, and how the scan goes.

:class:`ScanForm` holds the fields (where from, target, typed target, ports,
scan type), the buttons, the progress bar with its status line, the message
box (a refusal in words) and the nmap command line. It keeps its choices up
to date from the polls (the default ports, this machine's addresses, the lab
hosts and theirs), never polling anything itself. The From choice (this
machine, or a running lab host) shows only while lab hosts exist: their names
come from the snapshots' ``Socket.host`` and the app's interface list
(``host/eth0``), or from the screen (:meth:`ScanForm.set_lab_hosts`). Running
the scan is the panel's job: Run, Cancel and Enter in a field bubble up to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalGroup
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from app.core.interfaces import Interface
from app.core.model import Snapshot
from app.core.scan import ScanType, ScanTypeInfo, default_ports, nmap_missing_reason
from app.core.terminal_text import printable
from app.ui.widgets.scan.formatting import (
    LECTURE,
    THIS_MACHINE,
    from_options,
    lab_hosts_of,
    ports_placeholder,
    target_options,
    target_tooltip,
    type_label,
    unavailable,
)

DEFAULTS_EVERY = 2.0  # seconds between recomputing the default ports from snapshots


def field_row(label: str, field: Widget) -> Horizontal:
    """One line of the form: a short label, then its field."""
    return Horizontal(Label(label, classes="scan-label"), field, classes="scan-row")


class ScanForm(VerticalGroup):
    """The fields, buttons and status of the Scan tab.

    Args:
        types: the scan types offered.
    """

    def __init__(self, types: Sequence[ScanTypeInfo], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.types = tuple(types)
        self.listening: frozenset[int] = frozenset()  # TCP LISTEN ports, as of the defaults
        self._snapshot: Snapshot | None = None
        self._selected_port: int | None = None
        self._defaults_at = 0.0
        self._defaults: str | None = None
        self._targets: list[tuple[str, str]] = []
        self._interfaces: list[Interface] = []  # as the poller read them last
        self._given_hosts: tuple[str, ...] | None = None  # from the screen, when it says
        self.lab_hosts: tuple[str, ...] = ()  # the lab hosts offered in From

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="scan-nmap-missing", classes="-hidden")
        yield Static("Click or Tab to type · Esc to leave a field", id="scan-keys")
        yield from self._fields()
        yield self._buttons()
        yield Horizontal(
            ProgressBar(total=100, show_eta=False, id="scan-progress"),
            Label("idle", id="scan-elapsed"),
            classes="scan-row",
            id="scan-progress-row",
        )
        yield Static(id="scan-message", classes="-hidden")
        yield Static(id="scan-command", classes="-hidden")

    def _fields(self) -> ComposeResult:
        # type_to_search off: an open list would take every letter (b, m, s...) as a search.
        origin = Select(
            from_options(()),
            allow_blank=False,
            value=THIS_MACHINE,
            compact=True,
            id="scan-from",
            type_to_search=False,
            tooltip="Where nmap runs: this machine, or inside a lab host (its network namespace)",
        )
        row = field_row("From", origin)
        row.id = "scan-from-row"
        row.add_class("-hidden")  # shown once lab hosts exist
        yield row
        target = Select(
            target_options(()),
            allow_blank=False,
            value="127.0.0.1",
            compact=True,
            id="scan-target",
            type_to_search=False,
            tooltip="This machine's addresses (typed text below wins)",
        )
        yield field_row("Target", target)
        typed = Input(
            placeholder="type a host, IP or network/CIDR", compact=True, id="scan-target-text"
        )
        yield field_row("  or", typed)
        ports = Input(
            placeholder=ports_placeholder(self._defaults),
            compact=True,
            id="scan-ports",
            tooltip=f"Like 22,80,6000-6010; empty: what listens now + the lecture's {LECTURE}",
        )
        yield field_row("Ports", ports)
        kinds = Select(
            [(type_label(t), t.name) for t in self.types],
            allow_blank=False,
            value="connect",
            compact=True,
            id="scan-type",
            type_to_search=False,
        )
        yield field_row("Type", kinds)

    @staticmethod
    def _buttons() -> Horizontal:
        return Horizontal(
            Button(
                "Run",
                id="scan-run",
                variant="success",
                compact=True,
                tooltip="Start nmap (Enter in a field does the same)",
            ),
            Button(
                "Cancel",
                id="scan-cancel",
                variant="error",
                compact=True,
                disabled=True,
                tooltip="Stop nmap now",
            ),
            Button(
                "Port of row",
                id="scan-use-selected",
                compact=True,
                disabled=True,
                tooltip="Scan the port of the highlighted socket row",
            ),
            classes="scan-row",
            id="scan-buttons",
        )

    def on_mount(self) -> None:
        self.query_one("#scan-progress", ProgressBar).update(progress=0)
        self.check_nmap()

    # -- what the fields say ------------------------------------------------------------
    def target_text(self) -> str:
        """What will be scanned: the typed text when there is some, else the chosen address."""
        typed = self.query_one("#scan-target-text", Input).value.strip()
        if typed:
            return typed
        value = self.query_one("#scan-target", Select).value
        return value if isinstance(value, str) else "127.0.0.1"

    def chosen_origin(self) -> str | None:
        """The lab host chosen in From; None: this machine (also while From is hidden)."""
        if not self.lab_hosts:
            return None
        value = self.query_one("#scan-from", Select).value
        return value if isinstance(value, str) and value in self.lab_hosts else None

    def ports_text(self) -> str:
        return self.query_one("#scan-ports", Input).value

    def chosen_type(self) -> ScanTypeInfo | None:
        return self._type_info(self.query_one("#scan-type", Select).value)

    def _type_info(self, name: object) -> ScanTypeInfo | None:
        return next((t for t in self.types if t.name == name), None)

    # -- choices, from the polls --------------------------------------------------------
    def update_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the latest snapshot; recompute the defaults, hosts and targets now and then."""
        self._snapshot = snapshot
        now = time.monotonic()
        if now - self._defaults_at >= DEFAULTS_EVERY:
            self._defaults_at = now
            self._refresh_hosts()
            self._refresh_defaults()

    def set_lab_hosts(self, hosts: Sequence[str] | None) -> None:
        """The running lab hosts, as the screen knows them (None: find them in the polls)."""
        self._given_hosts = None if hosts is None else tuple(hosts)
        self._refresh_hosts()

    def set_interfaces(self, interfaces: Sequence[Interface]) -> None:
        """The interfaces the poller read last (``host/eth0`` for a lab host's): the
        targets offered and the lab hosts come from them (nothing is read on the UI loop)."""
        self._interfaces = list(interfaces)
        self._refresh_hosts()
        self._refresh_targets()

    def _refresh_hosts(self) -> None:
        """Offer From when lab hosts exist (and hide it when none is left)."""
        if self._given_hosts is not None:
            hosts = self._given_hosts
        else:
            sockets = self._snapshot.sockets if self._snapshot is not None else ()
            hosts = lab_hosts_of(sockets, self._interfaces)
        if hosts == self.lab_hosts:
            return
        self.lab_hosts = hosts
        select: Select[str] = self.query_one("#scan-from", Select)
        value = select.value
        select.set_options(from_options(hosts))
        select.value = value if isinstance(value, str) and value in hosts else THIS_MACHINE
        self.query_one("#scan-from-row").set_class(not hosts, "-hidden")
        self._refresh_targets()

    def _refresh_targets(self, moved: bool = False) -> None:
        """The target list for From's choice; ``moved``: From has just changed."""
        origin = self.chosen_origin()
        options = target_options(self._interfaces, origin)
        if options == self._targets:
            return
        self._targets = options
        select: Select[str] = self.query_one("#scan-target", Select)
        value = select.value
        select.set_options(options)
        select.tooltip = target_tooltip(origin)
        if (
            origin is not None
            and len(options) > 1
            and (moved or value not in dict(options).values())
        ):
            select.value = options[1][1]  # another host's address: what scanning from one is for
        elif any(v == value for _, v in options):
            select.value = value

    @on(Select.Changed, "#scan-from")
    def _from_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.say(None)
        self._refresh_targets(moved=True)
        self._defaults_at = 0.0
        self._refresh_defaults()

    def _refresh_defaults(self) -> None:
        if self._snapshot is None:
            return
        scan_type = self.query_one("#scan-type", Select).value
        kind: ScanType = "udp" if scan_type == "udp" else "connect"
        hosts: frozenset[str | None] = (
            frozenset({None}) if self.chosen_origin() is None else frozenset(self.lab_hosts)
        )
        ports = default_ports(kind, self._snapshot, hosts=hosts)
        self.listening = frozenset(
            s.local_port for s in self._snapshot.sockets if s.state == "LISTEN"
        )
        if ports != self._defaults:
            self._defaults = ports
            self.query_one("#scan-ports", Input).placeholder = ports_placeholder(ports)

    def offer_port(self, port: int) -> None:
        """The "Port of row" button offers ``port`` (of the highlighted socket row)."""
        self._selected_port = port
        button = self.query_one("#scan-use-selected", Button)
        button.label = f"Port {port}"
        button.disabled = False

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
            self.say(unavailable(info))
        else:
            self.say(None)
        self._defaults_at = 0.0
        self._refresh_defaults()

    # -- what the form shows ------------------------------------------------------------
    def check_nmap(self) -> bool:
        """Show the install line when nmap is not on PATH (looked up now)."""
        missing = nmap_missing_reason()
        line = self.query_one("#scan-nmap-missing", Static)
        line.update(missing or "")
        line.set_class(missing is None, "-hidden")
        return missing is None

    def say(self, text: str | None, error: bool = True) -> None:
        """Show ``text`` in the message box (an error unless ``error`` is False); None hides it."""
        box = self.query_one("#scan-message", Static)
        # A refusal quotes what was typed: shown as text ("[/b]" is no markup, ESC no escape).
        box.update(Content(printable(text or "")))
        box.set_class(not text, "-hidden")
        box.set_class(not error, "-info")

    def set_running(self, running: bool) -> None:
        run = self.query_one("#scan-run", Button)
        cancel = self.query_one("#scan-cancel", Button)
        # Keep the keyboard where it was: Enter on Run, then Enter again cancels.
        move_focus = (run if running else cancel).has_focus
        run.disabled = running
        cancel.disabled = not running
        if move_focus:
            (cancel if running else run).focus()

    def status(self, text: str, percent: float | None = None) -> None:
        """The status line beside the progress bar; ``percent`` moves the bar too."""
        if percent is not None:
            self.query_one("#scan-progress", ProgressBar).update(progress=percent)
        self.query_one("#scan-elapsed", Label).update(text)

    def show_command(self, command: str) -> None:
        line = self.query_one("#scan-command", Static)
        line.update(Content(printable(command)))
        line.remove_class("-hidden")
