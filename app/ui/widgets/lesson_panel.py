"""The Lesson band: the lesson's current step above the tables, ticked live.

A lesson (:mod:`app.core.lesson`) is a list of steps. The band shows one at a time:
its number and title in a wide bold band, the text for the class, and each
expectation with ``✓`` (it holds now) or ``✗`` and, in words, what is there instead.
Every poll re-judges the shown step (:func:`app.core.lesson_check.judge`: pure,
microseconds), so a tick appears the moment the kernel makes it true.

``n`` goes to the next step and asks the app (:class:`LessonStepRequested`) to do
what it says: stop and kill processes, start its own, scan. That happens once per
step, the first time it is reached; ``p`` only shows earlier steps again. The app
answers with :class:`app.ui.messages.LessonStepDone`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from app.core.lesson import Lesson, Step
from app.core.lesson_check import Verdict, World, judge
from app.core.model import Snapshot
from app.core.procs import ProcessInfo
from app.core.terminal_text import printable

HELD, NOT_YET = "✓", "✗"


def _shown(text: str) -> str:
    """A file's or a process's text as the band shows it: its lines kept, nothing in them
    that could move the cursor (an escape sequence in a process's output)."""
    return "\n".join(printable(line) for line in text.splitlines())


class LessonStepRequested(Message):
    """Do what a lesson step says (its stops, kills, processes and scan), in a worker."""

    def __init__(self, step: Step, folder: Path) -> None:
        super().__init__()
        self.step = step
        self.folder = folder  # the lesson's: where its commands start


@dataclass
class _StepState:
    """What happened to one step's actions."""

    ran: bool = False  # asked for (once)
    done: bool = False  # the app answered
    error: str | None = None  # its actions failed, in words
    notes: list[str] = field(default_factory=list)
    scan: Mapping[int, str] | None = None  # port -> open/closed/filtered


class LessonPanel(Vertical):
    """The lesson's band; hidden until a lesson is loaded (:meth:`load`)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.lesson: Lesson | None = None
        self.position = 0  # 0: the cover; 1..n: a step
        self._skips: dict[int, str] = {}
        self._states: dict[int, _StepState] = {}
        self._snapshot: Snapshot | None = None
        self._processes: Sequence[ProcessInfo] = ()
        self._world: World | None = None  # of the last poll and the shown step's scan
        self._shown: tuple[str, Text] | None = None  # what the band draws now

    def compose(self) -> ComposeResult:
        yield Static(id="lesson-title")
        yield Static(id="lesson-body")

    def on_mount(self) -> None:
        self.display = self.lesson is not None
        self._draw()

    # -- what the screen and the app tell it -----------------------------------------
    def load(self, lesson: Lesson, skips: Mapping[int, str] | None = None) -> None:
        """Show ``lesson`` from its cover; ``skips``: step index -> why it cannot run here."""
        self.lesson = lesson
        self.position = 0
        self._skips = dict(skips or {})
        self._states = {step.index: _StepState() for step in lesson.steps}
        self._shown = None
        self.display = True
        self._draw()

    @property
    def shown(self) -> bool:
        return self.lesson is not None and bool(self.display)

    def toggle(self) -> None:
        if self.lesson is not None:
            self.display = not self.display

    def update_world(self, snapshot: Snapshot, processes: Sequence[ProcessInfo]) -> None:
        """A poll: judge the shown step again (redrawn only when a line changed)."""
        self._snapshot, self._processes = snapshot, processes
        self._world = None
        if self.shown:
            self._draw()

    def step_done(
        self,
        step: Step,
        notes: Sequence[str],
        scan: Mapping[int, str] | None,
        error: str | None,
    ) -> None:
        """The app did ``step``'s actions (or could not: ``error``)."""
        if self.lesson is None or step not in self.lesson.steps:
            return  # a step of a lesson since replaced
        state = self._states[step.index]
        state.done, state.notes, state.scan, state.error = True, list(notes), scan, error
        self._world = None
        self._draw()

    @property
    def running(self) -> Step | None:
        """The step whose actions were asked for and have not come back yet."""
        if self.lesson is None:
            return None
        for step in self.lesson.steps:
            state = self._states[step.index]
            if state.ran and not state.done:
                return step
        return None

    # -- n and p -------------------------------------------------------------------------
    def next_step(self) -> None:
        lesson = self.lesson
        if lesson is None:
            return
        if self.position >= len(lesson.steps):
            self.notify("That was the last step of the lesson.", timeout=4)
            return
        busy = self.running
        if busy is not None:  # one step at a time: a later stop must not race its starts
            self.notify(
                f"Step {busy.index} is still doing what it says; press n again once it is done.",
                timeout=4,
            )
            return
        self.position += 1
        step = self.step
        assert step is not None
        state = self._states[step.index]
        if not state.ran and step.index not in self._skips:
            state.ran = True
            self.post_message(LessonStepRequested(step, lesson.folder))
        self._draw()

    def previous_step(self) -> None:
        if self.lesson is not None and self.position > 0:
            self.position -= 1
            self._draw()

    @property
    def step(self) -> Step | None:
        if self.lesson is None or self.position == 0:
            return None
        return self.lesson.steps[self.position - 1]

    # -- drawing -------------------------------------------------------------------------
    def verdicts(self) -> list[tuple[str, Verdict | None]]:
        """Each expectation of the shown step with its verdict now; None while the step's
        actions (or its scan) have not come back, so nothing can be judged yet."""
        step = self.step
        if step is None:
            return []
        state = self._states[step.index]
        if self._snapshot is None or (state.ran and not state.done):
            return [(e.text, None) for e in step.expect]
        if self._world is None or self._world.scan is not state.scan:
            self._world = World(self._snapshot, self._processes, state.scan)
        return [(e.text, judge(e, self._world)) for e in step.expect]

    def _draw(self) -> None:
        if not self.is_mounted or self.lesson is None:
            return
        title, body = self._cover_text() if self.step is None else self._step_text(self.step)
        if self._shown is not None and self._shown[0] == title and self._shown[1] == body:
            return  # nothing changed: no redraw, no flicker on the projector
        self._shown = (title, body)
        self.query_one("#lesson-title", Static).update(Text(title))
        self.query_one("#lesson-body", Static).update(body)
        self.border_title = Text(f"Lesson: {_shown(self.lesson.title)}")  # (no markup)
        total = len(self.lesson.steps)
        where = "cover" if self.position == 0 else f"step {self.position} of {total}"
        self.border_subtitle = f"{where} · n next · p back · L hide"

    def _cover_text(self) -> tuple[str, Text]:
        assert self.lesson is not None
        lesson = self.lesson
        body = Text()
        count = sum(len(s.expect) for s in lesson.steps)
        body.append(f"{len(lesson.steps)} steps, {count} things to see happen. ")
        body.append("Press n to begin", style="bold")
        body.append(": each step starts what it needs, and each line below it is ticked ")
        body.append(f"{HELD} the moment the kernel makes it true.")
        for index, why in sorted(self._skips.items()):
            body.append(f"\nStep {index} will be skipped here: {why}")
        return _shown(lesson.title), body

    def _step_text(self, step: Step) -> tuple[str, Text]:
        state = self._states[step.index]
        body = Text()
        if step.say:
            body.append(_shown(step.say.strip()) + "\n")
        skip = self._skips.get(step.index)
        if skip is not None:
            body.append(f"Skipped here: {skip}", style="bold")
            return f"{step.index}. {_shown(step.title)}", body
        if state.error is not None:
            body.append(
                f"This step could not do what it says: {_shown(state.error)}\n", style="bold"
            )
        for note in state.notes:
            body.append(f"{_shown(note)}\n")
        verdicts = self.verdicts()
        for sentence, verdict in verdicts:
            text = _shown(sentence)
            if verdict is None:
                body.append(f"… {text}", style="bold")
                body.append("   (waiting for the step's processes and scan)\n")
            elif verdict.held:
                body.append(f"{HELD} {text}\n", style="bold")
            else:
                body.append(f"{NOT_YET} {text}", style="bold")
                body.append(f"   now: {_shown(verdict.why)}\n")
        if verdicts and all(v is not None and v.held for _t, v in verdicts):
            body.append(self._all_hold(step, len(verdicts)), style="bold")
        body.rstrip()
        return f"{step.index}. {_shown(step.title)}", body if body.plain else Text(
            "(nothing to check)"
        )

    def _all_hold(self, step: Step, count: int) -> str:
        assert self.lesson is not None
        every = "it holds" if count == 1 else f"all {count} hold"
        if step.index >= len(self.lesson.steps):
            return f"{every.capitalize()}: that was the last step."
        following = self.lesson.steps[step.index]
        return (
            f"{every.capitalize()}. Press n for step {following.index}: {_shown(following.title)}"
        )
