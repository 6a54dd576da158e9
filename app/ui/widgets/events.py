"""The events timeline (newest first, filterable) and socket counts over time."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Sparkline, Static

from app.core.model import SocketEvent
from app.core.watch import WatchEvent
from app.ui.themes import ORANGE, SKY_BLUE

MAX_EVENTS = 2000
HISTORY = 180  # samples kept for the sparklines (3 minutes at 1 s)

SPARK_STATES = ("LISTEN", "ESTABLISHED", "TIME_WAIT")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    sign: str  # "+", "-", "~", "!" (process), "·" (note)
    text: str
    # What the lab-only view asks of an entry: the process it is about, its ports,
    # and whether it is about a lab process for certain (a start or an exit).
    pid: int | None = None
    ports: tuple[int, ...] = ()
    lab: bool = False

    @classmethod
    def of(cls, event: SocketEvent | WatchEvent) -> TimelineEntry:
        """A change two samples showed, or one the event stream reported, as kept here."""
        if isinstance(event, WatchEvent):
            pid, ports = event.pid, (event.local_port, event.remote_port or 0)
        else:
            s = event.socket
            pid, ports = s.pid, (s.local_port, s.remote_port or 0)
        return cls(event.at, event.sign, event.text, pid, ports)

    def render(self) -> Text:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        style = {"+": f"bold {SKY_BLUE}", "-": f"bold {ORANGE}", "!": "bold"}.get(self.sign, "")
        line = Text(f"{stamp} ")
        line.append(f"{self.sign} ", style=style)
        line.append(self.text)
        return line


class Timeline:
    """Bounded list of entries, newest first when rendered."""

    def __init__(self) -> None:
        self.entries: deque[TimelineEntry] = deque(maxlen=MAX_EVENTS)
        # Which entries are shown (the lab-only view): None shows every entry.
        self.scope: Callable[[TimelineEntry], bool] | None = None

    def add(self, entry: TimelineEntry) -> None:
        self.entries.append(entry)

    def render(self, text_filter: str = "", limit: int = 300, wrap: bool = True) -> Text:
        out = Text(no_wrap=not wrap, overflow="ellipsis")
        needle = text_filter.lower()
        scope = self.scope
        shown = 0
        for entry in reversed(self.entries):
            if needle and needle not in entry.text.lower():
                continue
            if scope is not None and not scope(entry):
                continue
            if shown:
                out.append("\n")
            out.append_text(entry.render())
            shown += 1
            if shown >= limit:
                break
        if not shown:
            if needle:
                out.append(f"(no event matches {text_filter!r})")
            elif scope is not None and self.entries:
                out.append("(no event of the lab processes yet; a: every socket's events)")
            else:
                out.append("(no events yet: start a server with l)")
        return out


class EventsPanel(Vertical):
    """Sparklines of socket counts, a filter, and the timeline."""

    def __init__(self, timeline: Timeline, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.timeline = timeline
        self.history: dict[str, deque[float]] = {
            s: deque([0.0], maxlen=HISTORY) for s in SPARK_STATES
        }
        self._labels: dict[str, str] = {}
        self._log_stale = False

    def compose(self) -> ComposeResult:
        for state in SPARK_STATES:
            with Horizontal(classes="spark-row"):
                yield Label(f"{state:<12}", classes="spark-label", id=f"spark-label-{state}")
                yield Sparkline([0.0], id=f"spark-{state}", classes="spark")
        yield Input(placeholder="filter events (e.g. 6000, LISTEN, killed)", id="event-filter")
        with VerticalScroll(id="event-scroll"):
            yield Static(id="event-log")

    def on_mount(self) -> None:
        self.refresh_log()

    def record_counts(self, counts: dict[str, int]) -> None:
        for state in SPARK_STATES:
            value = counts.get(state, 0)
            self.history[state].append(float(value))
            self.query_one(f"#spark-{state}", Sparkline).data = list(self.history[state])
            label = f"{state:<12}{value:>5} "
            if self._labels.get(state) != label:  # a new text means a layout pass: only then
                self._labels[state] = label
                self.query_one(f"#spark-label-{state}", Label).update(label)

    def refresh_log(self) -> None:
        if not self.is_on_screen:  # on a hidden tab: rendered when shown (on_show)
            self._log_stale = True
            return
        self._log_stale = False
        text_filter = self.query_one("#event-filter", Input).value
        self.query_one("#event-log", Static).update(self.timeline.render(text_filter))

    def on_show(self) -> None:
        if self._log_stale:
            self.refresh_log()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "event-filter":
            self.refresh_log()


def lab_entries(pids: frozenset[int], ports: frozenset[int]) -> Callable[[TimelineEntry], bool]:
    """The lab-only view of the timeline: the lab's processes, and what touched the ports the
    lab's sockets use (a client of a lab server, a lab TIME_WAIT no process holds)."""

    def belongs(entry: TimelineEntry) -> bool:
        return entry.lab or entry.pid in pids or any(p in ports for p in entry.ports if p)

    return belongs
