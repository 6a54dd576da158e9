"""The sentences of a lesson step's ``expect``: their words, checked and parsed into an
:class:`Expectation` (:mod:`app.core.lesson_check` judges one against a poll)::

    listen PORT [on ADDR] [by PROGRAM] [at HOST]      no listen PORT [...]
    established PORT [on ADDR] [from ADDR] [by PROGRAM] [count N] [at HOST]
                                                      no established PORT [...]
    backlog PORT N [on ADDR] [at HOST]                (connections waiting to be accepted)
    state STATE port PORT [at HOST]                   no state STATE port PORT [...]
    udp PORT [on ADDR] [by PROGRAM] [at HOST]         no udp PORT [...]
    scan PORT open|closed|filtered                    (the step's own scan)
    cpu NAME above|below PERCENT
    output NAME contains TEXT
    service PORT NAME                                 (a port's name, or "unknown")

A sentence that cannot be read raises :class:`SentenceRefused` with one line of words;
:mod:`app.core.lesson` puts the file and the step before it.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.model import TCP_STATES

MAX_SENTENCE = 300  # characters of one sentence
KINDS = (
    "listen",
    "established",
    "backlog",
    "state",
    "udp",
    "scan",
    "cpu",
    "output",
    "service",
)
NEGATABLE = ("listen", "established", "udp", "state")
SCAN_STATES = ("open", "closed", "filtered")
# A TCP state as ss and the snapshot name it (NEW_SYN_RECV is shown as SYN_RECV).
STATES = tuple(s for s in TCP_STATES if s != "NEW_SYN_RECV")
# The qualifiers each kind of sentence takes after its own words.
QUALIFIERS: dict[str, tuple[str, ...]] = {
    "listen": ("on", "by", "at"),
    "established": ("on", "from", "by", "count", "at"),
    "backlog": ("on", "at"),
    "state": ("at",),
    "udp": ("on", "by", "at"),
    "scan": (),
    "cpu": (),
    "output": (),
    "service": (),
}
FORMS = {
    "listen": "listen PORT [on ADDR] [by PROGRAM] [at HOST]",
    "established": "established PORT [on ADDR] [from ADDR] [by PROGRAM] [count N] [at HOST]",
    "backlog": "backlog PORT N [on ADDR] [at HOST]",
    "state": "state STATE port PORT [at HOST]",
    "udp": "udp PORT [on ADDR] [by PROGRAM] [at HOST]",
    "scan": "scan PORT open|closed|filtered",
    "cpu": "cpu NAME above|below PERCENT",
    "output": "output NAME contains TEXT",
    "service": "service PORT NAME",
}
_WORD = re.compile(r"[A-Za-z0-9_.+-]{1,64}")  # a program's name, a service's name


@dataclass(frozen=True, slots=True)
class Expectation:
    """One sentence of a step's ``expect``, checked and parsed.

    ``kind`` is its first word (after ``no``); the other fields are those its
    words give, None where the sentence does not say.
    """

    text: str  # the sentence as written
    kind: str  # one of KINDS
    negated: bool = False  # "no listen 6000"
    port: int | None = None
    address: str | None = None  # on ADDR: the address of the end on PORT
    peer: str | None = None  # from ADDR: the other end's address
    program: str | None = None  # by PROGRAM
    host: str | None = None  # at HOST: a lab host's sockets; None: this machine's
    count: int | None = None  # established ... count N; backlog PORT N
    state: str | None = None  # a TCP state (state ...), or open/closed/filtered (scan ...)
    name: str | None = None  # the lab process of cpu/output
    percent: float | None = None  # cpu ... PERCENT
    above: bool = True  # cpu NAME above (True) or below (False)
    contains: str | None = None  # output NAME contains TEXT
    service: str | None = None  # service PORT NAME ("unknown": no name)


class SentenceRefused(ValueError):
    """One sentence's mistake, in words."""


@dataclass(slots=True)
class Known:
    """What a sentence may name: the processes started so far (name -> on a lab host, a C
    program), the lesson's hosts, the step's scanned ports."""

    processes: dict[str, tuple[bool, bool]]
    hosts: tuple[str, ...]
    scan_ports: frozenset[int] | None  # None: the step has no scan


def _port(word: str, what: str = "a port") -> int:
    from app.labs import digits_hint, whole_number

    value = whole_number(word)
    if value is None:
        raise SentenceRefused(
            f"{what} is a number from 1 to 65535, not {word!r}{digits_hint(word)}"
        )
    if not 1 <= value <= 65535:
        raise SentenceRefused(f"{what} is a number from 1 to 65535; {value} is outside that range")
    return value


def _count(word: str, what: str) -> int:
    from app.labs import whole_number

    value = whole_number(word)
    if value is None or value > 100_000:
        raise SentenceRefused(f"{what} is a whole number from 0 to 100000, not {word!r}")
    return value


def _address(word: str) -> str:
    try:
        return str(ipaddress.ip_address(word))
    except ValueError:
        raise SentenceRefused(
            f"{word!r} is not an IP address (write it as numbers, like 0.0.0.0 or 10.0.2.15)"
        ) from None


def closest(word: str, choices: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _process_name(word: str, known: Known) -> str:
    if word not in known.processes:
        started = ", ".join(known.processes) or "none yet"
        raise SentenceRefused(
            f"no process named {word!r} is started by this step or an earlier one "
            f"(started: {started}){closest(word, list(known.processes))}"
        )
    return word


def _qualifiers(
    kind: str, words: list[str], known: Known, found: dict[str, object]
) -> dict[str, object]:
    """``on ADDR``, ``by PROGRAM``, ``count N``, ... after a sentence's own words."""
    allowed = QUALIFIERS[kind]
    position = 0
    while position < len(words):
        key = words[position]
        if key not in allowed:
            if allowed:
                what = ", ".join(f"{q!r}" for q in allowed)
                raise SentenceRefused(
                    f"{key!r} does not belong here; after its own words a {kind} sentence "
                    f"takes only {what} (the form: {FORMS[kind]})"
                )
            raise SentenceRefused(f"{key!r} is one word too many (the form: {FORMS[kind]})")
        if key in found:
            raise SentenceRefused(f"{key!r} is given twice")
        if position + 1 >= len(words):
            raise SentenceRefused(f"{key!r} needs a value after it (the form: {FORMS[kind]})")
        value = words[position + 1]
        found[key] = _qualifier_value(key, value, known)
        position += 2
    return found


def _qualifier_value(key: str, value: str, known: Known) -> object:
    if key in ("on", "from"):
        return _address(value)
    if key == "count":
        return _count(value, "a count")
    if key == "by":
        if not _WORD.fullmatch(value):
            raise SentenceRefused(f"'by' names a process or program, like server1, not {value!r}")
        return value
    # at HOST
    if value not in known.hosts:
        if not known.hosts:
            raise SentenceRefused(
                f"there is no lab host {value!r}: this lesson has no [[host]] tables "
                f'(add one: [[host]] name = "{value}" address = "10.0.2.15/24")'
            )
        names = ", ".join(known.hosts)
        raise SentenceRefused(
            f"there is no lab host {value!r} (hosts: {names}){closest(value, known.hosts)}"
        )
    return value


def parse_sentence(text: str, known: Known) -> Expectation:
    """One sentence -> its Expectation. Raises SentenceRefused (words) when it is not one."""
    if len(text) > MAX_SENTENCE:
        raise SentenceRefused(f"a sentence is at most {MAX_SENTENCE} characters, not {len(text)}")
    words = text.split()
    if not words:
        raise SentenceRefused("is empty: write a sentence such as 'listen 6000'")
    negated = words[0] == "no"
    if negated:
        words = words[1:]
        if not words:
            raise SentenceRefused("'no' needs a sentence after it, such as 'no listen 6000'")
    kind = words[0]
    if kind not in KINDS:
        raise SentenceRefused(
            f"unknown sentence: it starts with {kind!r}; a sentence starts with one of "
            f"{', '.join(KINDS)}{closest(kind, KINDS)}"
        )
    if negated and kind not in NEGATABLE:
        raise SentenceRefused(f"'no' goes only before {', '.join(NEGATABLE)}, not before {kind!r}")
    rest = words[1:]
    if kind == "output":
        return _output(text, rest, known)
    return _SENTENCES[kind](text, kind, negated, rest, known)


def _need(rest: list[str], count: int, kind: str) -> None:
    if len(rest) < count:
        raise SentenceRefused(f"is not complete (the form: {FORMS[kind]})")


def _sockets_sentence(
    text: str, kind: str, negated: bool, rest: list[str], known: Known
) -> Expectation:
    _need(rest, 1, kind)
    port = _port(rest[0])
    found = _qualifiers(kind, rest[1:], known, {})
    count = found.get("count")
    if negated and count is not None:
        raise SentenceRefused("'no established' takes no count: write 'established PORT count 0'")
    return Expectation(
        text=text,
        kind=kind,
        negated=negated,
        port=port,
        address=_opt_str(found.get("on")),
        peer=_opt_str(found.get("from")),
        program=_opt_str(found.get("by")),
        host=_opt_str(found.get("at")),
        count=count if isinstance(count, int) else None,
    )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _backlog(text: str, kind: str, negated: bool, rest: list[str], known: Known) -> Expectation:
    _need(rest, 2, "backlog")
    port = _port(rest[0])
    count = _count(rest[1], "the number waiting")
    found = _qualifiers("backlog", rest[2:], known, {})
    return Expectation(
        text=text,
        kind="backlog",
        port=port,
        count=count,
        address=_opt_str(found.get("on")),
        host=_opt_str(found.get("at")),
    )


def _state(text: str, kind: str, negated: bool, rest: list[str], known: Known) -> Expectation:
    _need(rest, 3, "state")
    state = rest[0].upper()
    if state not in STATES:
        raise SentenceRefused(
            f"{rest[0]!r} is not a TCP state; one of {', '.join(STATES)}{closest(state, STATES)}"
        )
    if rest[1] != "port":
        raise SentenceRefused(f"write 'port' before the port number (the form: {FORMS['state']})")
    port = _port(rest[2])
    found = _qualifiers("state", rest[3:], known, {})
    return Expectation(
        text=text,
        kind="state",
        negated=negated,
        state=state,
        port=port,
        host=_opt_str(found.get("at")),
    )


def _scan(text: str, kind: str, negated: bool, rest: list[str], known: Known) -> Expectation:
    _need(rest, 2, "scan")
    port = _port(rest[0])
    state = rest[1].lower()
    if state not in SCAN_STATES:
        raise SentenceRefused(
            f"nmap's word for a port is open, closed or filtered, not {rest[1]!r}"
            f"{closest(state, SCAN_STATES)}"
        )
    _qualifiers("scan", rest[2:], known, {})
    if known.scan_ports is None:
        raise SentenceRefused(f'this step scans nothing: give it a scan, like scan = "{port}"')
    if port not in known.scan_ports:
        raise SentenceRefused(f"{port} is not among the ports this step scans")
    return Expectation(text=text, kind="scan", port=port, state=state)


def _cpu(text: str, kind: str, negated: bool, rest: list[str], known: Known) -> Expectation:
    _need(rest, 3, "cpu")
    name = _process_name(rest[0], known)
    if rest[1] not in ("above", "below"):
        raise SentenceRefused(
            f"write 'above' or 'below', not {rest[1]!r} (the form: {FORMS['cpu']})"
        )
    try:
        percent = float(rest[2].removesuffix("%"))
    except ValueError:
        percent = math.nan
    if not math.isfinite(percent) or not 0 <= percent <= 10_000:
        raise SentenceRefused(f"a CPU share is a number of percent, like 50, not {rest[2]!r}")
    _qualifiers("cpu", rest[3:], known, {})
    return Expectation(text=text, kind="cpu", name=name, percent=percent, above=rest[1] == "above")


def _output(text: str, rest: list[str], known: Known) -> Expectation:
    _need(rest, 3, "output")
    name = _process_name(rest[0], known)
    if rest[1] != "contains":
        raise SentenceRefused(f"write 'contains' after the name (the form: {FORMS['output']})")
    # The text is the rest of the sentence as written (its spaces kept), quotes taken off.
    after = text.split("contains", 1)[1].strip()
    if len(after) >= 2 and after[0] == after[-1] and after[0] in "\"'":
        after = after[1:-1]
    if not after:
        raise SentenceRefused("give the text to look for after 'contains'")
    return Expectation(text=text, kind="output", name=name, contains=after)


def _service(text: str, kind: str, negated: bool, rest: list[str], known: Known) -> Expectation:
    _need(rest, 2, "service")
    port = _port(rest[0])
    if not _WORD.fullmatch(rest[1]):
        raise SentenceRefused(f"a service's name is one word like x11 or unknown, not {rest[1]!r}")
    _qualifiers("service", rest[2:], known, {})
    return Expectation(text=text, kind="service", port=port, service=rest[1])


_SENTENCES = {
    "listen": _sockets_sentence,
    "established": _sockets_sentence,
    "udp": _sockets_sentence,
    "backlog": _backlog,
    "state": _state,
    "scan": _scan,
    "cpu": _cpu,
    "service": _service,
}
