"""Modal dialogs: yes/no confirmation, quit, scenario file."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from app.core.terminal_text import printable

PATH_MAX = 4096  # Linux's longest path, with its NUL


def plain(text: str) -> Content:
    """``text`` shown as it is: never markup (a ``[/b]`` in a foreign process's command
    line would end the app with a MarkupError), no control character."""
    return Content("\n".join(printable(line) for line in text.split("\n")))


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot name a file, in words; None when it may."""
    if not text:
        return "Type the path of a file."
    if "\0" in text:
        return "A path cannot hold a NUL character (\\0)."
    if len(text.encode("utf-8", "surrogatepass")) >= PATH_MAX:
        return f"The path is {len(text)} characters long: a path is at most {PATH_MAX - 1} bytes."
    return None


def post_if_yes(node: MessagePump, message: Message) -> Callable[[bool | None], None]:
    """A ConfirmDialog's callback that posts ``message`` from ``node`` on a yes."""

    def answered(yes: bool | None) -> None:
        if yes:
            node.post_message(message)

    return answered


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True for yes.

    The buttons say their keys: ``y`` for yes, ``n`` or Escape for no. ``default`` is the
    button that has the focus, so Enter presses it: ``"no"`` (the safe one) unless the
    key that opened the dialog already asked for the yes, as ``q`` asks to quit.
    """

    BINDINGS = [
        Binding("escape", "no", "Cancel"),
        Binding("y", "yes", "Yes", show=False),
        Binding("n", "no", "No", show=False),
    ]

    def __init__(
        self,
        title: str,
        body: str,
        yes: str = "Yes",
        no: str = "Cancel",
        *,
        default: Literal["yes", "no"] = "no",
    ) -> None:
        super().__init__()
        self._title, self._body, self._yes, self._no = title, body, yes, no
        self._default_button = default

    def compose(self) -> ComposeResult:
        # A long body (a foreign process's command line) scrolls; the buttons, docked at
        # the foot, stay in view.
        with VerticalScroll(id="dialog", classes="dialog", can_focus=False):
            yield Label(plain(self._title), id="dialog-title")
            yield Static(plain(self._body), id="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._yes} (y)", variant="error", id="yes")
                yield Button(f"{self._no} (n, Esc)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one(f"#{self._default_button}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class PathDialog(ModalScreen[str | None]):
    """Ask for a file path (a scenario to load); ``value`` is already typed in, Enter takes it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        value: str = "",
        error: str = "",
        placeholder: str = "the path of a .toml scenario file",
    ) -> None:
        super().__init__()
        self._title, self._value, self._error = title, value, error
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(plain(self._title), id="dialog-title")
            yield Input(self._value, placeholder=self._placeholder, id="path")
            yield Static(plain(f"A relative path starts from {os.getcwd()}"), id="dialog-hint")
            yield Static(plain(self._error), id="dialog-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Load", variant="primary", id="ok")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self) -> None:
        self._finish()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._finish()
        else:
            self.dismiss(None)

    def _finish(self) -> None:
        value = self.query_one(Input).value.strip()
        problem = path_problem(value)
        if problem:
            self.query_one("#dialog-error", Static).update(plain(problem))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
