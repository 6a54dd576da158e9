"""What a classroom types: text of every script, control characters, NUL, other scripts'
digits, markup, options, and huge strings; and the checks every refusal must pass."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st

from tests.property.conftest import TRIED

T = TypeVar("T")

# deadline=None: a loaded CI machine is slow now and then; derandomize: CI sees the same
# inputs each run (a failure found here is one anyone can run again).
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)
SLOW = settings(max_examples=40, deadline=None, derandomize=True, database=None)

TRICKY = [
    "٧٤٠٠",  # Arabic-Indic digits: int() reads 7400
    "７４００",  # full-width digits
    "६०००",  # Devanagari
    "²",
    "\x00",
    "\x1b[2J",  # clear the screen
    "\x1b]0;owned\x07",  # set the terminal's title
    "\x9b2J",  # a C1 CSI
    "\u202e",  # right-to-left override
    "\u2028",
    "\ufeff",
    "\udcff",  # a byte that is not UTF-8, as argv carries it (surrogateescape)
    "\r",
    "\n",
    "\t",
    " ",
    "\u00a0",
    "-",
    "--",
    "-oN /tmp/x",
    "0x",
    "[",
    "]",
    ":",
    "::",
    "%",
    "/",
    ",",
    "=",
    ".",
    "..",
    "[/b]",
    "[@click=app.quit]",
    "1_0",
    "nan",
    "inf",
    "1e999",
    "-1",
    "0",
    "00",
    "1",
    "65535",
    "65536",
    "4294967296",
    "127.0.0.1",
    "::1",
    "fe80::1%lo",
    "localhost",
    "10.0.0.0/8",
    "127.0.0.0/24",
    "9" * 30,
    "é",
    "🙂",
    "'",
    '"',
    "\\",
    "$(reboot)",
]

_PIECE = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=6),
    st.integers(-5, 70000).map(str),
)
_HUGE = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["9", "0", "a", "1,", "[", "٧", "\x00", " ", "-", ".", "[0]=47,"]),
    st.integers(1_000, 20_000),
)

# Text a student could type or a file could hold: mostly small, now and then huge.
text = st.one_of(
    st.text(max_size=40),
    st.lists(_PIECE, max_size=8).map("".join),
    _HUGE,
)
# Lists of such words, as argv or a TOML list gives them.
words = st.lists(text, max_size=6)


def tally(name: str) -> None:
    TRIED[name] += 1


_WORD = re.compile(r"[A-Za-z]{2,}")


def assert_words(message: str, limit: int = 1500) -> None:
    """A refusal in words: not empty, at least two words, one line, short, and not one of
    Python's own (a traceback, int()'s digit limit, a missing key)."""
    assert message.strip(), "an empty refusal"
    assert len(_WORD.findall(message)) >= 2, f"not words: {message!r}"
    assert "\n" not in message, f"more than one line: {message[:300]!r}"
    assert len(message) <= limit, f"{len(message)} characters: {message[:200]!r}..."
    for python in ("Traceback", "Exceeds the limit", "integer string conversion"):
        assert python not in message, message[:300]


def refused_or(
    name: str, call: Callable[[], T], errors: type[BaseException] | tuple[type[BaseException], ...]
) -> T | None:
    """``call()``'s result, or None when it raised one of ``errors`` in words; any other
    exception fails the property."""
    tally(name)
    try:
        return call()
    except errors as exc:
        assert_words(str(exc))
        return None


def no_control(text: str, allowed: str = "") -> None:
    """Nothing in ``text`` a terminal acts on (C0 and C1 controls, DEL, format characters,
    line separators), but what ``allowed`` lists."""
    bad = [ch for ch in text if not (ch.isprintable() or ch == " " or ch in allowed)]
    assert not bad, f"raw {bad[:5]!r} in {text[:200]!r}"


# TOML values of every type, for scenario and lesson tables.
toml_scalars = st.one_of(
    text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["name", "x", "args", "title"]), inner, max_size=3),
    ),
    max_leaves=8,
)


def toml_value(value: object) -> str:
    """``value`` written as TOML (a string as a basic string, a table inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(tables: dict[str, list[dict[str, object]]], top: dict[str, object]) -> str:
    """Top-level keys, then each array of tables (``[[process]]``) with its keys."""
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in top.items()]
    for name, items in tables.items():
        for table in items:
            lines.append(f"[[{name}]]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _no_surrogates(value: object) -> bool:
    """A UTF-8 file cannot hold a lone surrogate (what argv can)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


PROGRAM_NAMES = [
    "tcp-server",
    "tcp-client",
    "udp-server",
    "udp-client",
    "tcp_server1",
    "tcp_client1",
    "tcp-servr",
    "sh",
]
process_tables = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(
            st.sampled_from(["s1", "server1", "a.b-c_d", "x" * 41]), text, toml_values
        ),
        "program": st.one_of(st.sampled_from(PROGRAM_NAMES), toml_values),
        "args": st.one_of(
            st.lists(st.one_of(st.sampled_from(TRICKY), text, st.integers(-1, 70000)), max_size=5),
            toml_values,
        ),
        "command": st.one_of(
            st.lists(
                st.one_of(st.sampled_from(["true", "/bin/true", "./x", ""]), text), max_size=4
            ),
            toml_values,
        ),
        "delay": st.one_of(st.floats(), st.integers(-10, 10**6), toml_values),
        "host": st.one_of(st.sampled_from(["server", "client"]), text),
        "nmae": toml_values,
    },
)
host_tables = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["server", "client", "switch", "Server"]), text),
        "address": st.one_of(
            st.sampled_from(["10.0.2.15/24", "10.0.2.15", "fd00::15/64", "300.1.1.1/24"]),
            st.lists(st.sampled_from(["10.0.2.16/24", "10.0.2.15/24", "::1/128"]), max_size=3),
            text,
            toml_values,
        ),
    },
)
scenario_documents = st.builds(
    lambda procs, hosts, top: toml_document({"process": procs, "host": hosts}, top),
    st.lists(process_tables, max_size=4),
    st.lists(host_tables, max_size=3),
    st.dictionaries(st.sampled_from(["proces", "title", "x"]), toml_values, max_size=1),
).filter(lambda doc: _no_surrogates(doc))
