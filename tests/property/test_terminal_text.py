"""What reaches a terminal: printable() and safe_json() leave nothing a terminal acts on."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from app.cliutil import MAX_MESSAGE, one_line, safe_json
from app.core.terminal_text import printable
from tests.property.strategies import FAST, no_control, tally, text

# Anything JSON can hold, with every character (lone surrogates aside: not UTF-8).
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(), text.filter(str.isprintable)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=10,
)


@FAST
@given(st.one_of(text, st.text()))
def test_printable_leaves_no_control_character(typed: str) -> None:
    tally("terminal_text.printable")
    shown = printable(typed)
    no_control(shown)
    if typed.isprintable():
        assert shown == typed  # what needs no escape is left alone


@FAST
@given(st.one_of(text, st.text()))
def test_one_line_is_one_short_safe_line(typed: str) -> None:
    tally("cliutil.one_line")
    line = one_line(typed)
    no_control(line)
    assert len(line) <= MAX_MESSAGE


@FAST
@given(json_values, st.booleans())
def test_safe_json_means_the_same_and_shows_nothing_raw(value: object, indent: bool) -> None:
    tally("cliutil.safe_json")
    encoded = json.dumps(value, ensure_ascii=False, indent=2 if indent else None)
    safe = safe_json(encoded)
    no_control(safe, allowed="\n")
    assert json.loads(safe) == json.loads(encoded)
