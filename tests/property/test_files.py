"""Scenario files, lesson files and session records, written by anyone.

A file is read, or refused with every mistake in words (one line each once printable:
a name may hold a newline), never an exception of Python's. Random text, and random
TOML with tables of the right names holding values of every type.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import scenario as scenario_module
from app.core.lesson import LessonError, parse_lesson
from app.core.record import RecordError, read_session
from app.core.replay import build
from app.core.scenario import ScenarioError, parse_scenario
from app.core.terminal_text import printable
from tests.property.strategies import (
    FAST,
    SLOW,
    assert_words,
    process_tables,
    scenario_documents,
    tally,
    text,
    toml_document,
    toml_value,
    toml_values,
)

FOLDER = tempfile.gettempdir()  # where a scenario's relative commands would start


def refused_with_lines(name: str, call, errors) -> object:  # type: ignore[no-untyped-def]
    """``call()``, or None when it raised ``errors`` whose every line is words."""
    tally(name)
    try:
        return call()
    except errors as exc:
        assert exc.errors, "a refusal without a mistake"
        for line in exc.errors:
            assert_words(printable(line), limit=2000)
        assert_words(printable(str(exc)), limit=2100)
        return None


@FAST
@given(text)
def test_scenario_of_any_text(content: str) -> None:
    refused_with_lines(
        "scenario.parse_scenario (any text)",
        lambda: parse_scenario(content, "s.toml", folder=FOLDER),
        ScenarioError,
    )


@FAST
@given(scenario_documents)
def test_scenario_of_any_tables(document: str) -> None:
    found = refused_with_lines(
        "scenario.parse_scenario (any tables)",
        lambda: parse_scenario(document, "s.toml", folder=FOLDER),
        ScenarioError,
    )
    if found is not None:
        assert 1 <= len(found.entries) <= scenario_module.MAX_PROCESSES  # type: ignore[attr-defined]


@SLOW
@given(
    st.lists(process_tables, max_size=3),
    st.sampled_from(["say", "title", "expect", "scan"]),
    toml_values,
)
def test_lesson_of_any_tables(processes: list[dict[str, object]], key: str, value: object) -> None:
    step: dict[str, object] = {"title": "one", key: value}
    document = toml_document({"step": [step]}, {"title": "t"})
    for table in processes:
        document += "[[step.process]]\n"
        document += "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items())
    try:
        document.encode("utf-8")
    except UnicodeEncodeError:
        return
    refused_with_lines(
        "lesson.parse_lesson (any tables)",
        lambda: parse_lesson(document, "l.toml", folder=FOLDER),
        (LessonError, ScenarioError),
    )


@FAST
@given(text)
def test_lesson_of_any_text(content: str) -> None:
    refused_with_lines(
        "lesson.parse_lesson (any text)",
        lambda: parse_lesson(content, "l.toml", folder=FOLDER),
        (LessonError, ScenarioError),
    )


@pytest.mark.parametrize("depth", [50, 5_000, 100_000])
def test_scenario_nested_too_deeply(depth: int) -> None:
    """tomllib recurses once a bracket: 100,000 of them were a RecursionError."""
    content = "x = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(content, "s.toml", folder=FOLDER)
    assert_words(caught.value.errors[0])


@SLOW
@given(
    st.lists(
        st.one_of(st.binary(max_size=200), text.map(lambda t: t.encode("utf-8", "surrogatepass"))),
        max_size=8,
    )
)
def test_session_record_of_any_bytes(lines: list[bytes]) -> None:
    """A record is JSON Lines: any bytes are read (broken lines counted), or refused."""
    tally("record.read_session + replay.build (any bytes)")
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\n".join(lines))
        try:
            build(read_session(path))
        except RecordError as exc:
            assert_words(str(exc))
    finally:
        os.unlink(path)
