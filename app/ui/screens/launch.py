"""The launch dialog: a built-in lab program with its fields, or any command."""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from app.labs import PROGRAMS, LabUsageError, validate

COMMAND = "command"


@dataclass(frozen=True)
class LaunchRequest:
    name: str
    program: str | None  # a built-in, or None for a command
    args: tuple[str, ...]  # a built-in's arguments, or the command's whole argv


def command_problem(argv: list[str]) -> str | None:
    """Why ``argv`` cannot start, in words; None when it can."""
    if not argv:
        return "Type a command, e.g. nc -vn 127.0.0.1 7000"
    exe = argv[0]
    if os.sep in exe:
        if not os.path.exists(exe):
            return f"{exe} does not exist (a path is relative to {os.getcwd()})"
        if not os.access(exe, os.X_OK):
            return f"{exe} is not executable (chmod +x {exe})"
        return None
    if shutil.which(exe) is None:
        return f"{exe}: command not found on PATH"
    return None


class LaunchDialog(ModalScreen[LaunchRequest | None]):
    """Fields are checked as they are typed; Launch stays off until they are right."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, bind_addresses: list[str], taken_names: set[str],
                 program: str = "tcp-server") -> None:
        super().__init__()
        self._addresses = bind_addresses
        self._taken = taken_names
        self._program = program

    def compose(self) -> ComposeResult:
        programs = [(p, p) for p in PROGRAMS] + [("any command…", COMMAND)]
        binds = [(f"{a}  (INADDR_ANY: every address)" if a == "0.0.0.0" else a, a)
                 for a in self._addresses]
        with Vertical(id="dialog", classes="dialog launch"):
            yield Label("Launch a lab process", id="dialog-title")
            with VerticalScroll(id="launch-fields"):
                yield Label("Program")
                yield Select(programs, value=self._program, allow_blank=False, id="program")
                yield Label("Name (shown in the tables)")
                yield Input(placeholder="automatic", id="name")
                yield Label("Server IP", classes="client")
                yield Input("127.0.0.1", id="target", classes="client")
                yield Label("Message", classes="client")
                yield Input("hello", id="message", classes="client")
                yield Label("Port (1-65535)", classes="builtin")
                yield Input("6000", id="port", classes="builtin")
                yield Label("Bind address", classes="server")
                yield Select(binds, value="127.0.0.1", allow_blank=False, id="bind",
                             classes="server")
                yield Label("Handler (what the server does with a client)", classes="tcp-server")
                yield Select([("hold: read and discard", "hold"), ("echo: send back", "echo"),
                              ("busy: spin like the lecture's while(1)", "busy")],
                             value="hold", allow_blank=False, id="handler", classes="tcp-server")
                yield Checkbox("concurrent: one thread per client (the fix)", id="concurrent",
                               classes="tcp-server")
                yield Label("Command (any program and its arguments)", classes="command")
                yield Input(placeholder="nc -vn 127.0.0.1 7000", id="command",
                            classes="command")
            yield Static("", id="launch-preview")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch", variant="success", id="launch")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._refresh()
        self.query_one("#program", Select).focus()

    # -- the request the fields describe -----------------------------------------
    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def _program_value(self) -> str:
        value = self.query_one("#program", Select).value
        return str(value)

    def request(self) -> tuple[LaunchRequest | None, str]:
        """The request, or None and the reason in words."""
        program = self._program_value()
        name = self._value("name") or self._auto_name(program)
        if name in self._taken:
            return None, f"The name {name!r} is taken by a running process: choose another."
        if program == COMMAND:
            try:
                argv = shlex.split(self._value("command"))
            except ValueError as exc:
                return None, f"The command does not parse: {exc}"
            problem = command_problem(argv)
            if problem:
                return None, problem
            return LaunchRequest(name, None, tuple(argv)), shlex.join(argv)
        port = self._value("port")
        if program.endswith("server"):
            args = [port, "--bind", str(self.query_one("#bind", Select).value)]
            if program == "tcp-server":
                args += ["--handler", str(self.query_one("#handler", Select).value)]
                if self.query_one("#concurrent", Checkbox).value:
                    args.append("--concurrent")
        else:
            args = [self._value("target"), self._value("message") or "hello", port]
        try:
            validate(program, args)
        except LabUsageError as exc:
            return None, str(exc)
        return LaunchRequest(name, program, tuple(args)), shlex.join([program, *args])

    def _auto_name(self, program: str) -> str:
        base = {"tcp-server": "server", "tcp-client": "client", "udp-server": "udpserver",
                "udp-client": "udpclient"}.get(program, "cmd")
        n = 1
        while f"{base}{n}" in self._taken:
            n += 1
        return f"{base}{n}"

    def _refresh(self) -> None:
        program = self._program_value()
        box = self.query_one("#dialog")
        box.set_class(program == COMMAND, "-command")
        box.set_class(program != COMMAND, "-builtin")
        box.set_class(program.endswith("server"), "-server")
        box.set_class(program.endswith("client"), "-client")
        box.set_class(program == "tcp-server", "-tcp-server")
        request, text = self.request()
        preview = self.query_one("#launch-preview", Static)
        preview.set_class(request is None, "error")
        preview.update(("Will run: " + text) if request else ("✗ " + text))
        self.query_one("#launch", Button).disabled = request is None

    def on_input_changed(self) -> None:
        self._refresh()

    def on_select_changed(self) -> None:
        self._refresh()

    def on_checkbox_changed(self) -> None:
        self._refresh()

    def on_input_submitted(self) -> None:
        self._launch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self._launch()
        else:
            self.dismiss(None)

    def _launch(self) -> None:
        request, _ = self.request()
        if request is not None:
            self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
