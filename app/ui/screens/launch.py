"""The launch dialog: a built-in lab program with its fields, or any command."""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from app.core import cprograms
from app.core.procs import NAME_PATTERN, NAME_RULE
from app.core.programs import PROGRAMS, LabUsageError, validate, whole_number
from app.core.terminal_text import printable

COMMAND = "command"
UDP_HOLD_SECONDS = 30  # a udp-client launched here keeps its socket this long
SHORT = 32  # lines: below this the port warning keeps to four lines (styles/dialogs.tcss)
# The longest command line and client message taken (the kernel's own limit for one
# argument is 128 KiB; a pasted page is a mistake, said here rather than by execve()).
MAX_COMMAND = 4096
MAX_MESSAGE = 1024

# Why the server about to start will not (or may not) bind its port, in words; None when
# nothing holds it. Called as port_check(bind_address, port, "tcp" or "udp", reuseaddr):
# reuseaddr is whether the new server sets SO_REUSEADDR, None when unknown (a command).
PortCheck = Callable[[str, int, str, bool | None], str | None]

# The lecture's own command lines, one key away: ./tcp_server1 6000 binds INADDR_ANY and its
# handle_client() spins in while(1); ./tcp_client1 127.0.0.1 hello 6000 connects to it.
LECTURE_SERVER = {"program": "tcp-server", "port": "6000", "bind": "0.0.0.0", "handler": "busy"}
LECTURE_CLIENT = {
    "program": "tcp-client",
    "target": "127.0.0.1",
    "message": "hello",
    "port": "6000",
}
# The same, run as the lecture ran them: its own C programs (app/labs/c), where cc exists.
LECTURE_SERVER_C = {"program": "tcp_server1", "port": "6000"}
LECTURE_CLIENT_C = {
    "program": "tcp_client1",
    "target": "127.0.0.1",
    "message": "hello",
    "port": "6000",
}
C_SERVER, C_CLIENT = cprograms.NAMES
NO_CC_NOTE = "F2/F3 run the Python tcp-server/tcp-client: no C compiler here (apt install gcc)"

_BASES = {
    "tcp-server": "server",
    "tcp-client": "client",
    C_SERVER: "server",
    C_CLIENT: "client",
    "udp-server": "udpserver",
    "udp-client": "udpclient",
}


@dataclass(frozen=True)
class LaunchRequest:
    name: str
    program: str | None  # a built-in, or None for a command
    args: tuple[str, ...]  # a built-in's arguments, or the command's whole argv
    # One of the lecture's C programs (cprograms.NAMES): args are its arguments, and the app
    # compiles it (in a worker) and runs it as a command.
    c_program: str | None = None


def _shown(text: str, limit: int = 40) -> str:
    """A field's text as a refusal quotes it: cut, and terminal-safe."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def plain(text: str) -> Content:
    """``text`` as a Static shows it: never markup (a typed ``[/b]`` would end the app
    with a MarkupError, a ``[@click=...]`` run an action), no control character."""
    return Content(printable(text))


def command_problem(argv: list[str]) -> str | None:
    """Why ``argv`` cannot start, in words; None when it can."""
    if not argv:
        return "Type a command, e.g. nc -vn 127.0.0.1 7000"
    if any("\0" in word for word in argv):
        return "A command cannot hold a NUL character (\\0): no program would receive it"
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
    """Fields are checked as they are typed; Launch stays off until they are right.

    The whole dialog scrolls under its docked head (the lecture's presets) and foot (what
    will run, a warning about the port, Launch and Cancel), so the foot stays in view on a
    terminal as small as 80x24.

    ``taken_names`` are the names the process manager knows, running or ended: the
    automatic name avoids all of them. ``running_names`` (default: all of ``taken_names``)
    says which of them still run, for the words of the refusal.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("f2", "preset('server')", "Lecture's server"),
        Binding("f3", "preset('client')", "Lecture's client"),
    ]

    def __init__(
        self,
        bind_addresses: list[str],
        taken_names: set[str],
        program: str = "tcp-server",
        *,
        running_names: set[str] | None = None,
        port_check: PortCheck | None = None,
    ) -> None:
        super().__init__()
        self._addresses = list(bind_addresses)
        if "0.0.0.0" not in self._addresses:  # the lecture's preset needs it
            self._addresses.append("0.0.0.0")
        self._taken_names = set(taken_names)
        self._running_names = set(taken_names if running_names is None else running_names)
        self._program = program
        self._port_check = port_check
        self._warning_shown: str | None = None  # the warning's text on screen
        self._has_cc = cprograms.compiler() is not None  # a PATH lookup, not a compile

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="dialog launch", can_focus=False):
            with Horizontal(id="launch-presets"):
                yield Label("Lecture's:")
                yield Button("F2 tcp_server1 6000", id="preset-server", compact=True)
                yield Button(
                    "F3 tcp_client1 127.0.0.1 hello 6000", id="preset-client", compact=True
                )
            with Vertical(id="launch-fields"):
                yield from self._program_fields()
                yield from self._client_fields()
                yield from self._address_fields()
                yield from self._tcp_server_fields()
                with Horizontal(classes="field command"):
                    yield Label("Command")
                    yield Input(placeholder="nc -vn 127.0.0.1 7000", id="command")
            # Docked at the foot, after the fields so that Tab reaches the fields first.
            with Vertical(id="launch-foot"):
                yield Static("", id="launch-preview")
                yield Static("", id="launch-warning")
                yield Static(NO_CC_NOTE, id="launch-note")
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Launch", variant="success", id="launch")
                    yield Button("Cancel (Esc)", id="cancel")

    def _program_fields(self) -> ComposeResult:
        """What to run, and under which name."""
        programs = [(p, p) for p in PROGRAMS]
        programs += [(f"{c} (C)", c) for c in cprograms.NAMES] + [("any command…", COMMAND)]
        with Horizontal(classes="field"):
            yield Label("Program")
            yield Select(programs, value=self._program, allow_blank=False, id="program")
        with Horizontal(classes="field"):
            yield Label("Name")
            yield Input(placeholder="automatic", id="name")

    def _client_fields(self) -> ComposeResult:
        """A client's server address and message."""
        with Horizontal(classes="field client"):
            yield Label("Server IP")
            yield Input("127.0.0.1", id="target")
        with Horizontal(classes="field client"):
            yield Label("Message")
            yield Input("hello", id="message")

    def _address_fields(self) -> ComposeResult:
        """The port of every built-in, and the address a server binds."""
        binds = [
            (f"{a}  (INADDR_ANY: every address)" if a == "0.0.0.0" else a, a)
            for a in self._addresses
        ]
        with Horizontal(classes="field builtin"):
            yield Label("Port")
            yield Input("6000", placeholder="1-65535", id="port")
        with Horizontal(classes="field server"):
            yield Label("Bind address")
            yield Select(binds, value="127.0.0.1", allow_blank=False, id="bind")

    def _tcp_server_fields(self) -> ComposeResult:
        """The tcp-server's handler, its clients one at a time or at once, SO_REUSEADDR."""
        with Horizontal(classes="field tcp-server"):
            yield Label("Handler")
            yield Select(
                [
                    ("hold: read and discard", "hold"),
                    ("echo: send back", "echo"),
                    ("busy: spin like the lecture's while(1)", "busy"),
                ],
                value="hold",
                allow_blank=False,
                id="handler",
            )
        with Horizontal(classes="field tcp-server"):
            yield Label("Clients")
            yield Checkbox("concurrent: one thread per client (the fix)", id="concurrent")
        with Horizontal(classes="field tcp-server"):
            yield Label("Restart")
            yield Checkbox(
                "SO_REUSEADDR: bind again at once after a kill", value=True, id="reuseaddr"
            )

    def on_resize(self) -> None:
        self.set_class(self.size.height < SHORT, "-short")

    def on_mount(self) -> None:
        self.on_resize()
        self.query_one("#dialog").border_title = "Launch a lab process"
        self.query_one("#launch-note").display = not self._has_cc
        self._refresh()
        self.query_one("#program", Select).focus()
        # What holds a port changes while the dialog is open (a TIME_WAIT ends after ~60 s).
        if self._port_check is not None:
            self.set_interval(1.0, self._refresh_warning)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Textual's own scroll on focus counts the docked foot as view and leaves a field
        # under it; scroll_visible keeps the field clear of the head and the foot.
        if event.widget.parent is not None and event.widget.parent.has_class("field"):
            event.widget.scroll_visible(animate=False)

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
        problem = self._name_problem(name)
        if problem:
            return None, problem
        if program == COMMAND:
            typed = self._value("command")
            if len(typed) > MAX_COMMAND:
                return None, (f"The command is {len(typed)} characters long: at most {MAX_COMMAND}")
            try:
                argv = shlex.split(typed)
            except ValueError as exc:
                return None, f"The command does not parse: {exc}"
            problem = command_problem(argv)
            if problem:
                return None, problem
            return LaunchRequest(name, None, tuple(argv)), shlex.join(argv)
        if program in cprograms.NAMES:
            return self._c_request(name, program)
        port = self._value("port")
        if program.endswith("server"):
            args = [port, "--bind", str(self.query_one("#bind", Select).value)]
            if program == "tcp-server":
                args += ["--handler", str(self.query_one("#handler", Select).value)]
                if self.query_one("#concurrent", Checkbox).value:
                    args.append("--concurrent")
                if not self.query_one("#reuseaddr", Checkbox).value:
                    args.append("--no-reuseaddr")
        else:
            problem = self._message_problem()
            if problem:
                return None, problem
            args = [self._value("target"), self._value("message") or "hello", port]
            if program == "udp-client":
                # A UDP client sends and exits at once: nobody would see its socket.
                # Held for a while, it shows in the UDP tab (experiment 13).
                args += ["--hold", str(UDP_HOLD_SECONDS)]
        try:
            validate(program, args)
        except LabUsageError as exc:
            return None, str(exc)
        return LaunchRequest(name, program, tuple(args)), shlex.join([program, *args])

    def _c_request(self, name: str, program: str) -> tuple[LaunchRequest | None, str]:
        """One of the lecture's C programs: ``tcp_server1 PORT`` or ``tcp_client1 IP MESSAGE
        PORT``; refused in words where no compiler exists."""
        if not self._has_cc:
            return None, cprograms.INSTALL_HINT
        port = self._value("port")
        number = whole_number(port)
        if number is None or not 1 <= number <= 65535:
            return None, f"Port must be a number 1-65535, not {_shown(port)}"
        args = [port]
        if program == C_CLIENT:
            target = self._value("target")
            try:
                ipaddress.IPv4Address(target)
            except ValueError:
                return None, (
                    f"{program} takes an IPv4 address (e.g. 127.0.0.1), not {_shown(target)}"
                )
            problem = self._message_problem()
            if problem:
                return None, problem
            args = [target, self._value("message") or "hello", port]
        request = LaunchRequest(name, None, tuple(args), c_program=program)
        return request, shlex.join([f"./{program}", *args]) + "  (C, compiled on first use)"

    def _free_name(self, base: str) -> str:
        n = 1
        while f"{base}{n}" in self._taken_names:
            n += 1
        return f"{base}{n}"

    def _auto_name(self, program: str) -> str:
        return self._free_name(_BASES.get(program, "cmd"))

    def _message_problem(self) -> str | None:
        """Why a client's message cannot be sent as an argument, in words; None if it can."""
        message = self._value("message")
        if len(message) > MAX_MESSAGE:
            return f"The message is {len(message)} characters long: at most {MAX_MESSAGE}"
        if "\0" in message:
            return "A message cannot hold a NUL character (\\0): no program would receive it"
        return None

    def _name_problem(self, name: str) -> str | None:
        """Why ``name`` cannot be used, in words; None when it can."""
        if not NAME_PATTERN.fullmatch(name):
            return f"{_shown(name)} cannot be a name: {NAME_RULE}"
        if name not in self._taken_names:
            return None
        other = self._free_name(name.rstrip("0123456789") or name)
        if name in self._running_names:
            return f"{name} is running: choose another name, e.g. {other}"
        return f"{name} ended; its output is still shown: choose another name, e.g. {other}"

    def _port_warning(self) -> str | None:
        """What ``port_check`` says of the server's port (a command's one port argument, as
        ``./tcp_server1 6000``, bound on every address); None for clients."""
        program = self._program_value()
        if self._port_check is None:
            return None
        reuseaddr: bool | None
        if program == COMMAND:
            try:
                argv = shlex.split(self._value("command"))
            except ValueError:
                return None
            numbers = [n for n in map(whole_number, argv[1:]) if n is not None and 0 < n < 65536]
            if len(numbers) != 1:
                return None  # no port, or no telling which is the port
            port, bind, proto, reuseaddr = numbers[0], "0.0.0.0", "tcp", None
        elif program == C_SERVER:  # INADDR_ANY, no SO_REUSEADDR
            number = whole_number(self._value("port"))
            if number is None or not 1 <= number <= 65535:
                return None
            port, bind, proto, reuseaddr = number, "0.0.0.0", "tcp", False
        elif program.endswith("server"):
            number = whole_number(self._value("port"))
            if number is None or not 1 <= number <= 65535:
                return None  # the error line already says what is wrong with it
            port, bind = number, str(self.query_one("#bind", Select).value)
            proto = "udp" if program.startswith("udp") else "tcp"
            reuseaddr = self.query_one("#reuseaddr", Checkbox).value if proto == "tcp" else False
        else:
            return None
        try:
            return self._port_check(bind, port, proto, reuseaddr)
        except Exception as exc:  # noqa: BLE001 - a failing check must not close the dialog
            return f"Could not check whether port {port} is free ({exc})."

    def _refresh_warning(self) -> None:
        warning = self._port_warning()
        text = f"⚠ {warning}" if warning else ""
        if text == self._warning_shown:  # every second: a new text only when it changed
            return
        self._warning_shown = text
        box = self.query_one("#launch-warning", Static)
        box.display = bool(warning)
        box.update(plain(text))

    def _refresh(self) -> None:
        program = self._program_value()
        box = self.query_one("#dialog")
        box.set_class(program == COMMAND, "-command")
        box.set_class(program != COMMAND, "-builtin")
        box.set_class(program.endswith("server"), "-server")
        box.set_class(program.endswith("client") or program == C_CLIENT, "-client")
        box.set_class(program == "tcp-server", "-tcp-server")
        self.query_one("#name", Input).placeholder = f"automatic: {self._auto_name(program)}"
        request, text = self.request()
        preview = self.query_one("#launch-preview", Static)
        preview.set_class(request is None, "error")
        # What was typed, shown as text: "[/b]" is no markup, ESC no escape sequence.
        preview.update(plain(("Will run: " + text) if request else ("✗ " + text)))
        self.query_one("#launch", Button).disabled = request is None
        self._refresh_warning()

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
        elif event.button.id in ("preset-server", "preset-client"):
            self.action_preset(event.button.id.removeprefix("preset-"))
        else:
            self.dismiss(None)

    def action_preset(self, which: str) -> None:
        """Fill the fields with the lecture's server or client; Enter then launches it."""
        if self._has_cc:
            preset = LECTURE_SERVER_C if which == "server" else LECTURE_CLIENT_C
        else:
            preset = LECTURE_SERVER if which == "server" else LECTURE_CLIENT
        self.query_one("#program", Select).value = preset["program"]
        self.query_one("#name", Input).value = ""
        for field in ("target", "message", "port"):
            if field in preset:
                self.query_one(f"#{field}", Input).value = preset[field]
        if "bind" in preset:
            self.query_one("#bind", Select).value = preset["bind"]
            self.query_one("#handler", Select).value = preset["handler"]
            # tcp_server1 sets no SO_REUSEADDR either: a restart waits out what a kill left.
            self.query_one("#reuseaddr", Checkbox).value = False
            self.query_one("#concurrent", Checkbox).value = False
        self._refresh()
        launch = self.query_one("#launch", Button)
        if not launch.disabled:
            launch.focus()

    def _launch(self) -> None:
        request, _ = self.request()
        if request is not None:
            self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
