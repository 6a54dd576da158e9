"""Built-in lab programs: the lecture's servers and clients, standard library only.

Each program is a module with ``build_parser()`` (an argparse parser whose
``error`` raises :class:`LabUsageError` instead of exiting) and
``main(argv) -> int``. ``python -m app.labs.tcp_server 6000`` runs one alone.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Sequence

# Program name (as typed and as shown in ps/ss) -> module.
PROGRAMS: dict[str, str] = {
    "tcp-server": "app.labs.tcp_server",
    "tcp-client": "app.labs.tcp_client",
    "udp-server": "app.labs.udp_server",
    "udp-client": "app.labs.udp_client",
}


# The most digits (leading zeros aside) a number read by whole_number() may have.
MAX_DIGITS = 18


class LabUsageError(ValueError):
    """Arguments a lab program would refuse; the message is one line of words."""


def whole_number(text: str) -> int | None:
    """The value of ``text`` when it is a whole number written in the digits 0-9; else None.

    Spaces around it are allowed. ``int()`` also takes Arabic-Indic (``٧٤٠٠``)
    and full-width (``７４００``) digits, a sign and underscores (``6_000``):
    none of these is how a port or a count is written on a command line, and
    ``bind()`` in C would never see them as one. Every number parser of the
    observatory (labs, core, commands) goes through this one check. More than
    :data:`MAX_DIGITS` digits (leading zeros aside) is None too: every caller then
    says its range, and ``int()`` is never asked for a number of 5,000 digits.
    """
    stripped = text.strip()
    if stripped and stripped.isascii() and stripped.isdigit():
        significant = stripped.lstrip("0")
        # int() refuses more than 4300 digits (a ValueError of its own words); no port,
        # count or pid has more than MAX_DIGITS: such a number is none of them.
        if len(significant) > MAX_DIGITS:
            return None
        return int(significant or "0")
    return None


def digits_hint(text: str) -> str:
    """`` (write it with the digits 0-9)`` when ``text`` holds digits of another script."""
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        return " (write it with the digits 0-9)"
    return ""


def validate(program: str, args: Sequence[str]) -> None:
    """Check a built-in's name and arguments without running it.

    Raises:
        LabUsageError: naming what is wrong, in words.
    """
    if program not in PROGRAMS:
        known = ", ".join(PROGRAMS)
        raise LabUsageError(f"there is no built-in program {program!r} (known: {known})")
    module = importlib.import_module(PROGRAMS[program])
    # -h/--help would print the help and exit instead of running: refuse it here.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            module.build_parser().parse_args(list(args))
        except SystemExit:
            raise LabUsageError(
                f"{program} would only print its help (-h/--help) instead of running"
            ) from None
