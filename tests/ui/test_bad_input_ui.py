"""Bad input in every field of the dashboard (issue 16), typed with Textual's Pilot.

Each refusal is an inline message in words (the Launch dialog's preview line, the path
dialog's error line, the Scan tab's message box) and the dashboard goes on: no field's
text is read as markup (``[/b]`` was a MarkupError that ended the whole app), and no
control character is drawn raw.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Button, Input, Select, Static

from app.ui.screens.dialogs import ConfirmDialog, PathDialog
from app.ui.screens.launch import COMMAND, LaunchDialog
from tests.conftest import until

ADDRESSES = ["127.0.0.1", "0.0.0.0"]
MARKUP = ["[/b]", "a [/] b", "[@click=app.quit]quit[/]", "[red]x", "[link=file:///etc]y"]
# Set as values (a key press of ESC would close the dialog): what a paste can hold.
PASTED = ["\x1b[2J", "\x00", "\u202e", "٧٤٠٠", "７４００", "x" * 20000, "9" * 5000, "-oN /tmp/x"]


def text_of(widget: Static) -> str:
    return str(widget.render())


def preview(dialog: LaunchDialog) -> str:
    return text_of(dialog.query_one("#launch-preview", Static))


def no_raw_controls(text: str) -> None:
    assert all(ch.isprintable() or ch in " \n" for ch in text), repr(text[:200])


async def type_into(pilot: Any, field: Input, text: str) -> None:
    """Type ``text`` key by key, as a student does (printable characters only)."""
    field.value = ""
    field.focus()
    await pilot.pause()
    await pilot.press(*text)
    await pilot.pause()


async def launch_dialog(pilot: Any, program: str) -> LaunchDialog:
    dialog = LaunchDialog(ADDRESSES, {"server1"}, program)
    pilot.app.push_screen(dialog)
    await pilot.pause()
    return dialog


REFUSED = [
    # (program, field, typed, words of the refusal)
    ("tcp-server", "name", "[/b]", "cannot be a name"),
    ("tcp-server", "name", "a [/] b", "cannot be a name"),
    ("tcp-server", "name", "../x", "cannot be a name"),
    ("tcp-server", "port", "[/b]", "port must be a number from 1 to 65535"),
    ("tcp-server", "port", "70000", "port must be a number from 1 to 65535, not 70000"),
    ("tcp-server", "port", "-1", "port must be a number from 1 to 65535"),
    ("tcp-client", "target", "[@click=app.quit]q[/]", "is not an IP address"),
    ("tcp-client", "target", "localhost", "names such as localhost are not looked up"),
    ("tcp-client", "port", "[red]", "port must be a number"),
    ("udp-client", "port", "0", "port must be a number from 1 to 65535"),
    (COMMAND, "command", "'unclosed", "The command does not parse"),
    (COMMAND, "command", "[b]x --y", "command not found"),
    (COMMAND, "command", "./[/b]", "does not exist"),
]


async def test_launch_dialog_refuses_typed_values_inline(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for program, field, typed, words in REFUSED:
            dialog = await launch_dialog(pilot, program)
            await type_into(pilot, dialog.query_one(f"#{field}", Input), typed)
            shown = preview(dialog)
            assert shown.startswith("✗ ") and words in shown, (program, field, typed, shown)
            assert dialog.query_one("#launch", Button).disabled
            await pilot.press("enter")  # Enter in the field: nothing launches
            await pilot.pause()
            assert app.screen is dialog and app.is_running
            app.pop_screen()
            await pilot.pause()


PASTED_REFUSALS = [
    ("tcp-server", "name", "\x1b[2J", "cannot be a name"),
    ("tcp-server", "name", "\x00", "cannot be a name"),
    ("tcp-server", "name", "x" * 20000, "cannot be a name"),
    ("tcp-server", "name", "n" * 41, "1 to 40 letters"),
    ("tcp-server", "port", "٧٤٠٠", "write it with the digits 0-9"),
    ("tcp-server", "port", "７４００", "write it with the digits 0-9"),
    ("tcp-server", "port", "9" * 5000, "port must be a number from 1 to 65535"),
    ("tcp-server", "port", "\x1b[2J", "port must be a number"),
    ("tcp_server1", "port", "٧٤٠٠", "Port must be a number 1-65535"),
    ("tcp_client1", "target", "\x1b[2J", "takes an IPv4 address"),
    ("tcp-client", "message", "a\x00b", "cannot hold a NUL character"),
    ("tcp-client", "message", "m" * 2000, "at most 1024"),
    ("udp-client", "target", "\u202e127.0.0.1", "is not an IP address"),
    (COMMAND, "command", "sleep \x00", "cannot hold a NUL character"),
    (COMMAND, "command", "sleep " + "1" * 5000, "at most 4096"),
]


async def test_launch_dialog_refuses_pasted_values_inline(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for program, field, pasted, words in PASTED_REFUSALS:
            dialog = await launch_dialog(pilot, program)
            if program in ("tcp_server1", "tcp_client1") and not dialog._has_cc:
                words = "apt install"  # no C compiler: refused before their fields
            dialog.query_one(f"#{field}", Input).value = pasted
            await pilot.pause()
            shown = preview(dialog)
            assert shown.startswith("✗ ") and words in shown, (program, field, shown[:300])
            assert len(shown) < 400, shown[:300]
            no_raw_controls(shown)
            assert dialog.query_one("#launch", Button).disabled
            assert app.is_running
            app.pop_screen()
            await pilot.pause()


# The fields each program shows.
FIELDS = {
    "tcp-server": ("name", "port"),
    "tcp-client": ("name", "target", "message", "port"),
    "udp-server": ("name", "port"),
    "udp-client": ("name", "target", "message", "port"),
    COMMAND: ("name", "command"),
}


async def test_every_field_of_every_program_survives_anything(dashboard) -> None:  # type: ignore[no-untyped-def]
    """Whatever a field holds, the dialog shows a line (Will run or ✗) and goes on."""
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        dialog = await launch_dialog(pilot, "tcp-server")
        tried = 0
        values = [*MARKUP, "\x1b[2J", "\x00", "٧٤٠٠", "9" * 5000]
        for program, fields in FIELDS.items():
            dialog.query_one("#program", Select).value = program
            await pilot.pause()
            for field in fields:
                box = dialog.query_one(f"#{field}", Input)
                before = box.value
                for value in values:
                    box.value = value
                    await pilot.pause()
                    shown = preview(dialog)
                    assert shown.startswith(("✗ ", "Will run: ")), shown[:200]
                    no_raw_controls(shown)
                    tried += 1
                box.value = before
        assert app.is_running and tried == sum(map(len, FIELDS.values())) * len(values)


async def test_markup_in_a_launched_name_is_no_markup(dashboard) -> None:  # type: ignore[no-untyped-def]
    """A valid request whose words hold brackets: shown as typed."""
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        dialog = await launch_dialog(pilot, "tcp-client")
        dialog.query_one("#message", Input).value = "[/b] [@click=app.quit]q[/]"
        await pilot.pause()
        assert preview(dialog) == (
            "Will run: tcp-client 127.0.0.1 '[/b] [@click=app.quit]q[/]' 6000"
        )
        assert not dialog.query_one("#launch", Button).disabled


async def test_confirm_dialog_shows_a_command_line_as_text(dashboard) -> None:  # type: ignore[no-untyped-def]
    """A foreign process's command line (anyone's to choose) in the kill question."""
    app, _ = dashboard
    body = (
        "pid 7 was not started by the observatory.\n\n"
        "  command: sleep [/b] \x1b[2J [@click=app.quit]q[/]"
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        answers: list[bool | None] = []
        app.push_screen(ConfirmDialog("Kill pid 7 [/i]?", body), answers.append)
        await pilot.pause()
        shown = text_of(app.screen.query_one("#dialog-body", Static))
        assert "sleep [/b] \\x1b[2J [@click=app.quit]q[/]" in shown
        assert "[/i]" in str(app.screen.query_one("#dialog-title").render())
        await pilot.press("n")
        await until(pilot, lambda: answers == [False])
        assert app.is_running


async def test_path_dialog_refuses_inline(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        answers: list[str | None] = []
        dialog = PathDialog("Load a scenario file [/b]", "", error="[/i] \x1b[2J")
        app.push_screen(dialog, answers.append)
        await pilot.pause()
        assert "[/i] \\x1b[2J" in text_of(dialog.query_one("#dialog-error", Static))
        for typed, words in (
            ("", "Type the path of a file."),
            ("   ", "Type the path of a file."),
            ("a\x00b.toml", "cannot hold a NUL character"),
            ("x" * 5000, "a path is at most 4095 bytes"),
        ):
            dialog.query_one("#path", Input).value = typed
            await pilot.press("enter")
            await pilot.pause()
            assert answers == [] and app.screen is dialog
            error = text_of(dialog.query_one("#dialog-error", Static))
            assert words in error, error


async def test_a_scenario_path_of_markup_and_escapes_is_refused_in_words(dashboard) -> None:  # type: ignore[no-untyped-def]
    """Typed into the dialog (O): the file does not exist; the app says so and goes on."""
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for typed in ("[/b]", "\x1b[2J.toml", "٧٤٠٠.toml", "/dev/zero", "/"):
            await pilot.press("O")
            await until(pilot, lambda: isinstance(app.screen, PathDialog))
            await pilot.pause()
            app.screen.query_one("#path", Input).value = typed
            await pilot.press("enter")
            await until(pilot, lambda: not isinstance(app.screen, PathDialog))
            await pilot.pause(0.3)
            assert app.is_running
        assert not app.screen.query("PathDialog")


# -- the Scan tab's form ---------------------------------------------------------------------


SCAN_REFUSALS = [
    ("[/b]", "", "is not a network"),
    ("[b]x [@click=app.quit]", "", "one target at a time, without spaces"),
    ("[b]x", "", "is not an IP address"),
    ("\x1b[2J", "", "is not an IP address"),
    ("127.0.0.1", "٧٤٠٠", "write it with the digits 0-9"),
    ("127.0.0.1", "７４００", "write it with the digits 0-9"),
    ("127.0.0.1", "9" * 5000, "at most 1000"),
    ("127.0.0.1", "9" * 900, "is outside that range"),
    ("127.0.0.1", "[/b]", "ports are numbers from 1 to 65535"),
    ("a" * 400, "", "a target is at most 300"),
    ("-oN /tmp/x", "", "cannot start with '-'"),
]


async def test_scan_form_refuses_in_words(dashboard) -> None:  # type: ignore[no-untyped-def]
    from tests.nmaputil import nmap_processes_of, require_nmap

    require_nmap()
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("s")
        await pilot.pause()
        from app.ui.widgets.scan_panel import ScanPanel

        panel = app.screen.query_one(ScanPanel)
        for target, ports, words in SCAN_REFUSALS:
            panel.query_one("#scan-target-text", Input).value = target
            panel.query_one("#scan-ports", Input).value = ports
            panel.query_one("#scan-ports", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            message = panel.query_one("#scan-message", Static)
            said = text_of(message)
            assert message.display and words in said, (target[:30], ports[:30], said)
            no_raw_controls(said)
            assert len(said) < 400 and panel.scan is None
        assert nmap_processes_of() == [] and app.is_running


# -- the filter and the bytes panel ----------------------------------------------------------


async def test_the_filter_takes_anything(dashboard) -> None:  # type: ignore[no-untyped-def]
    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("slash")
        await pilot.pause()
        box = app.screen.query_one("#filter", Input)
        if not box.has_focus:  # the filter key of this dashboard
            app.screen.action_filter()
            await pilot.pause()
        for typed in MARKUP[:3]:
            await type_into(pilot, box, typed)
            await pilot.pause(0.25)  # a poll with it
        for pasted in PASTED:
            box.value = pasted
            await pilot.pause(0.25)
        box.value = ""
        await pilot.pause(0.3)
        assert app.is_running


async def test_the_bytes_panel_refuses_in_words(dashboard) -> None:  # type: ignore[no-untyped-def]
    from app.ui.widgets.bytes_panel import BytesPanel

    app, _ = dashboard
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        panel = app.screen.query_one(BytesPanel)
        for typed, words in (
            ("127.0.0.1:٧٤٠٠", "uses other digits"),
            ("fe80::1%" + "1" * 5000 + " 80", "32-bit interface index"),
            ("[::1]:" + "9" * 5000, "is too big"),
            ("[/b]:80", "is not an IPv4 or IPv6 address"),
        ):
            panel.query_one("#bytes-address", Input).value = typed
            await pilot.pause()
            said = text_of(panel.query_one("#bytes-address-error", Static))
            assert words in said, said[:300]
            assert len(said) < 400
        for typed, words in (
            ("00 " * 65, "give at most 64"),
            ("0" * 5000, "at most 1024 characters"),
            ("[٠]=47", "is not hexadecimal"),
            ("[/b]", "is not hexadecimal"),
        ):
            panel.query_one("#endian-input", Input).value = typed
            await pilot.pause()
            said = text_of(panel.query_one("#endian-error", Static))
            assert words in said, said[:300]
        assert app.is_running
