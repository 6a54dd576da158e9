"""Lesson files: a lecture as steps, each with what to start and what must then be true.

Format (TOML)::

    title = "Session 4: TCP sockets"      # optional

    [[host]]                              # optional lab hosts, exactly as in a scenario
    name = "server"
    address = "10.0.2.15/24"

    [[step]]
    title = "A server in the background"
    say = "./tcp_server1 6000 &: the server binds INADDR_ANY."   # text for the class
    stop = ["client1"]                    # SIGTERM these (started by earlier steps)
    kill = ["server2"]                    # SIGKILL these
    scan = "6000,16000"                   # a connect scan of 127.0.0.1, after the starts
    timeout = 10                          # seconds each expectation may take (optional)
    expect = [
        "listen 6000 on 0.0.0.0 by server1",
        "scan 6000 open",
    ]

    [[step.process]]                      # exactly the keys of a scenario's [[process]]
    name = "server1"
    program = "tcp-server"
    args = ["6000", "--bind", "0.0.0.0"]

The sentences of ``expect`` are :mod:`app.core.lesson_sentence`'s (and ``lessons/README.md``).

Everything is checked before anything starts (:func:`load_lesson`): every mistake is one
line naming the file, the step (number and title) and the key or the sentence::

    session4.toml: step 3 "Scan": expect #2 "scan 6000 opn": ... open, closed or filtered

Headless: no textual, no rich. :mod:`app.core.lesson_check` judges a sentence against a
poll; :mod:`app.core.lesson_run` runs the steps.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core import scenario as _scenario
from app.core.lesson_sentence import Expectation, Known, SentenceRefused, closest, parse_sentence
from app.core.netns import LabHost as LabHost
from app.core.scenario import ScenarioEntry, ScenarioError
from app.core.small_files import SmallFileError, read_small_text
from app.core.targets import PortsError, parse_ports

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]

LESSON_KEYS = ("title", "step", "host")
STEP_KEYS = ("title", "say", "process", "stop", "kill", "scan", "timeout", "expect")

# Limits: a lesson is one lecture, written by hand.
MAX_BYTES = 256 * 1024
MAX_STEPS = 100
MAX_PROCESSES = 20  # per step
MAX_SENTENCES = 50  # per step
MAX_TITLE = 200
MAX_SAY = 4000
MAX_SCAN_PORTS = 1000
MAX_TIMEOUT = 120.0


class LessonError(Exception):
    """A lesson file that cannot run; ``errors`` holds one line per mistake."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        first = self.errors[0] if self.errors else "invalid lesson"
        more = len(self.errors) - 1
        super().__init__(first if more <= 0 else f"{first} (and {more} more)")


@dataclass(frozen=True, slots=True)
class Step:
    """One ``[[step]]`` table, checked."""

    index: int  # 1-based
    title: str
    say: str
    processes: tuple[ScenarioEntry, ...]
    stop: tuple[str, ...]
    kill: tuple[str, ...]
    scan: str | None  # canonical ports ("6000,16000"), or None: no scan
    expect: tuple[Expectation, ...]
    timeout: float | None = None  # seconds each expectation may take; None: the runner's
    needs_hosts: bool = False  # starts, signals or looks at something on a lab host
    needs_compiler: bool = False  # starts, signals or looks at one of the C programs
    uses: tuple[str, ...] = ()  # the lab processes it signals or looks at

    @property
    def needs_nmap(self) -> bool:
        return self.scan is not None

    @property
    def scan_ports(self) -> frozenset[int]:
        return frozenset(_ports_of(self.scan)) if self.scan else frozenset()


@dataclass(frozen=True, slots=True)
class Lesson:
    """A checked lesson: every step can be run (where its needs are met)."""

    path: Path
    title: str
    steps: tuple[Step, ...]
    hosts: tuple[LabHost, ...] = ()
    expectation_count: int = field(default=0, compare=False)

    @property
    def folder(self) -> Path:
        """Where commands start and relative paths point: the file's folder."""
        return self.path.resolve().parent


def _ports_of(canonical: str) -> list[int]:
    out: list[int] = []
    for item in canonical.split(","):
        start, _, end = item.partition("-")
        out.extend(range(int(start), int(end or start) + 1))
    return out


_kind = _scenario.kind_of  # "a whole number", "text", ... for messages


# ------------------------------------------------------------------ the file


def _short(text: str, limit: int = 60) -> str:
    """A sentence or title as a message quotes it: one line, not too long."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _title_of(table: dict[str, object]) -> str:
    raw = table.get("title")
    return _short(raw) if isinstance(raw, str) and raw.strip() else ""


@dataclass(slots=True)
class _Checker:
    """Checks the steps in order, keeping what earlier steps started."""

    label: str
    base: str
    env: Mapping[str, str] | None
    hosts: tuple[str, ...]
    errors: list[str] = field(default_factory=list)
    # Processes started so far: name -> (on a lab host, a C program); those still running.
    started: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    sentences: int = 0

    def step(self, table: object, index: int) -> Step | None:
        if not isinstance(table, dict):
            self.errors.append(f"{self.label}: step {index}: must be a [[step]] table")
            return None
        title = _title_of(table)
        where = f'{self.label}: step {index} "{title}"' if title else f"{self.label}: step {index}"
        before = len(self.errors)
        self._unknown_keys(table, where)
        title_text = self._text(table, "title", where, MAX_TITLE, required=True)
        say = self._text(table, "say", where, MAX_SAY, required=False)
        stop = self._names(table, "stop", where)
        kill = self._names(table, "kill", where)
        for name in (*stop, *kill):
            self.running.discard(name)
        processes = self._processes(table.get("process"), where)
        scan = self._scan(table, where)
        timeout = self._timeout(table, where)
        known = Known(
            dict(self.started),
            self.hosts,
            frozenset(_ports_of(scan)) if scan else None,
        )
        expect = self._expect(table, where, known)
        if len(self.errors) > before:
            return None
        uses = _uses(stop, kill, expect)
        looked_at = [self.started[name] for name in uses if name in self.started]
        return Step(
            index=index,
            title=title_text,
            say=say,
            processes=processes,
            stop=stop,
            kill=kill,
            scan=scan,
            expect=expect,
            timeout=timeout,
            needs_hosts=any(p.host for p in processes)
            or any(e.host for e in expect)
            or any(on_host for on_host, _ in looked_at),
            needs_compiler=any(p.c_program for p in processes) or any(c for _, c in looked_at),
            uses=uses,
        )

    def _unknown_keys(self, table: dict[str, object], where: str) -> None:
        for key in table:
            if key not in STEP_KEYS:
                near = difflib.get_close_matches(key, STEP_KEYS, n=1)
                hint = f'did you mean "{near[0]}"?' if near else "known: " + ", ".join(STEP_KEYS)
                self.errors.append(f'{where}: key "{key}": unknown key ({hint})')

    def _text(
        self, table: dict[str, object], key: str, where: str, limit: int, required: bool
    ) -> str:
        raw = table.get(key)
        if raw is None:
            if required:
                self.errors.append(f'{where}: key "{key}": missing (every step needs a {key})')
            return ""
        if not isinstance(raw, str):
            self.errors.append(f'{where}: key "{key}": must be text, not {_kind(raw)}')
            return ""
        if required and not raw.strip():
            self.errors.append(f'{where}: key "{key}": is empty')
        if len(raw) > limit:
            self.errors.append(f'{where}: key "{key}": at most {limit} characters, not {len(raw)}')
        return raw.strip()

    def _names(self, table: dict[str, object], key: str, where: str) -> tuple[str, ...]:
        raw = table.get(key)
        if raw is None:
            return ()
        signal = "SIGTERM" if key == "stop" else "SIGKILL"
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            self.errors.append(
                f'{where}: key "{key}": must be a list of process names, like ["server1"] '
                f"(each gets {signal}), not {_kind(raw)}"
            )
            return ()
        names: list[str] = []
        for name in raw:
            if name not in self.running:
                started = ", ".join(sorted(self.running)) or "none"
                why = (
                    "was stopped or killed by an earlier step"
                    if name in self.started
                    else "is not started by an earlier step"
                )
                self.errors.append(
                    f'{where}: key "{key}": {name!r} {why} (running then: {started})'
                    f"{closest(name, sorted(self.running))}"
                )
            elif name in names:
                self.errors.append(f'{where}: key "{key}": {name!r} is given twice')
            else:
                names.append(name)
        return tuple(names)

    def _processes(self, raw: object, where: str) -> tuple[ScenarioEntry, ...]:
        if raw is None:
            return ()
        if isinstance(raw, dict):
            self.errors.append(
                f"{where}: write [[step.process]] with two brackets for each process"
            )
            return ()
        if not isinstance(raw, list):
            self.errors.append(f'{where}: "process" must be a list of [[step.process]] tables')
            return ()
        if len(raw) > MAX_PROCESSES:
            self.errors.append(
                f"{where}: {len(raw)} processes: a step starts at most {MAX_PROCESSES}"
            )
            return ()
        # A name may be used again once an earlier step stopped or killed it.
        seen: dict[str, int] = {}
        entries: list[ScenarioEntry] = []
        for position, table in enumerate(raw, start=1):
            name = table.get("name") if isinstance(table, dict) else None
            if isinstance(name, str) and name in self.running:
                self.errors.append(
                    f'{where}: process #{position} "{name}": key "name": a process '
                    "of that name is still running from an earlier step (stop or kill it "
                    "first, or choose another name)"
                )
                continue
            entry, problems = _scenario.check_entry(
                table, position, where, seen, self.base, self.env, self.hosts
            )
            self.errors.extend(problems)
            if entry is not None:
                entries.append(entry)
                self.started[entry.name] = (entry.host is not None, entry.c_program)
                self.running.add(entry.name)
            elif isinstance(name, str) and name not in self.started:
                # Refused already: a sentence naming it is not refused a second time.
                self.started[name] = (False, False)
                self.running.add(name)
        return tuple(entries)

    def _scan(self, table: dict[str, object], where: str) -> str | None:
        raw = table.get("scan")
        if raw is None:
            return None
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            self.errors.append(
                f'{where}: key "scan": must be ports as text, like "6000,16000", not {_kind(raw)}'
            )
            return None
        try:
            canonical = parse_ports(raw)
        except PortsError as exc:
            self.errors.append(f'{where}: key "scan": {exc}')
            return None
        if len(_ports_of(canonical)) > MAX_SCAN_PORTS:
            self.errors.append(
                f'{where}: key "scan": at most {MAX_SCAN_PORTS} ports in a step\'s scan'
            )
            return None
        return canonical

    def _timeout(self, table: dict[str, object], where: str) -> float | None:
        raw = table.get("timeout")
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            self.errors.append(
                f'{where}: key "timeout": must be a number of seconds, not {_kind(raw)}'
            )
        elif not math.isfinite(raw) or not 0 < raw <= MAX_TIMEOUT:
            self.errors.append(
                f'{where}: key "timeout": seconds, more than 0 and at most {MAX_TIMEOUT:g}, '
                f"not {raw}"
            )
        else:
            return float(raw)
        return None

    def _expect(
        self, table: dict[str, object], where: str, known: Known
    ) -> tuple[Expectation, ...]:
        raw = table.get("expect")
        if raw is None:
            return ()
        if isinstance(raw, str):
            self.errors.append(
                f'{where}: key "expect": must be a list of sentences, like expect = ["{raw}"]'
            )
            return ()
        if not isinstance(raw, list):
            self.errors.append(
                f'{where}: key "expect": must be a list of sentences, not {_kind(raw)}'
            )
            return ()
        if len(raw) > MAX_SENTENCES:
            self.errors.append(
                f'{where}: key "expect": {len(raw)} sentences: a step has at most {MAX_SENTENCES}'
            )
            return ()
        found: list[Expectation] = []
        for position, sentence in enumerate(raw, start=1):
            if not isinstance(sentence, str):
                self.errors.append(
                    f"{where}: expect #{position}: must be a sentence in quotes, "
                    f"not {_kind(sentence)}"
                )
                continue
            try:
                found.append(parse_sentence(sentence.strip(), known))
            except SentenceRefused as exc:
                self.errors.append(f'{where}: expect #{position} "{_short(sentence)}": {exc}')
        self.sentences += len(found)
        return tuple(found)


def _uses(
    stop: Sequence[str], kill: Sequence[str], expect: Sequence[Expectation]
) -> tuple[str, ...]:
    names = [*stop, *kill, *(e.name for e in expect if e.name is not None)]
    return tuple(dict.fromkeys(names))


def _top_level(data: dict[str, object], label: str, errors: list[str]) -> str:
    for key in data:
        if key not in LESSON_KEYS:
            near = difflib.get_close_matches(key, LESSON_KEYS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            errors.append(
                f'{label}: key "{key}": unknown; a lesson holds a title, [[step]] tables '
                f"and [[host]] tables{hint}"
            )
    raw = data.get("title")
    if raw is None:
        return ""
    if not isinstance(raw, str):
        errors.append(f'{label}: key "title": must be text, not {_kind(raw)}')
        return ""
    if len(raw) > MAX_TITLE:
        errors.append(f'{label}: key "title": at most {MAX_TITLE} characters, not {len(raw)}')
    return raw.strip()


def _step_tables(data: dict[str, object], label: str, errors: list[str]) -> list[object]:
    tables = data.get("step")
    if tables is None:
        errors.append(f"{label}: no [[step]] table: a lesson is a list of [[step]] tables")
        raise LessonError(errors)
    if isinstance(tables, dict):
        errors.append(f"{label}: write [[step]] with two brackets for each step, not [step]")
        raise LessonError(errors)
    if not isinstance(tables, list) or not tables:
        errors.append(f'{label}: "step" must be a list of [[step]] tables')
        raise LessonError(errors)
    if len(tables) > MAX_STEPS:
        errors.append(f"{label}: {len(tables)} steps: a lesson has at most {MAX_STEPS}")
        raise LessonError(errors)
    return tables


def _hosts(
    raw: object, label: str, errors: list[str]
) -> tuple[tuple[LabHost, ...], tuple[str, ...]]:
    """The [[host]] tables, checked as a scenario checks them (the same words)."""
    if raw is None:
        return (), ()
    hosts, names = _scenario.check_hosts(raw, label, errors)
    return tuple(hosts), tuple(names)


def parse_lesson(
    text: str,
    label: str = "lesson",
    folder: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Lesson:
    """Check a lesson's text; ``label`` names it in messages (usually the path).

    Raises:
        LessonError: with every mistake found, one line each.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise LessonError([f"{label}: a lesson file is at most {MAX_BYTES // 1024} KiB"])
    base = os.fspath(folder) if folder is not None else os.getcwd()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LessonError([f"{label}: not valid TOML: {exc}"]) from None
    except RecursionError:  # [[[[...]]]] thousands deep: tomllib recurses once a bracket
        raise LessonError([f"{label}: not valid TOML: lists or tables nested too deeply"]) from None
    errors: list[str] = []
    title = _top_level(data, label, errors)
    hosts, host_names = _hosts(data.get("host"), label, errors)
    tables = _step_tables(data, label, errors)
    checker = _Checker(label, base, env, host_names, errors)
    steps = [checker.step(table, index) for index, table in enumerate(tables, start=1)]
    if errors:
        raise LessonError(errors)
    return Lesson(
        path=path or Path(label),
        title=title or Path(label).stem,
        steps=tuple(s for s in steps if s is not None),
        hosts=hosts,
        expectation_count=checker.sentences,
    )


def load_lesson(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Lesson:
    """Read and check a lesson file.

    Raises:
        LessonError: the file is missing, unreadable, too large, or has mistakes (every
            one of them, one line each).
    """
    label = os.fspath(path)
    file = Path(path)
    try:
        text = read_small_text(file, MAX_BYTES, "lesson")  # (/dev/zero: answered at once)
    except ValueError:  # a NUL in the path
        raise LessonError([f"{label!r}: not a file name (it holds a NUL)"]) from None
    except SmallFileError as exc:
        hint = _shipped_hint(label) if str(exc) == "no such file" else ""
        raise LessonError([f"{label}: {exc}{hint}"]) from None
    return parse_lesson(text, label, folder=file.resolve().parent, env=env, path=file)


# ------------------------------------------------------------------ finding a lesson


def lessons_dir() -> Path:
    """``app/lessons`` inside an installed wheel, else ``lessons/`` of the source tree."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "lessons"
    return packaged if packaged.is_dir() else here.parent / "lessons"


def shipped_lessons() -> list[str]:
    """The names of the lessons that come with the observatory (``session4``, ...)."""
    try:
        return sorted(p.stem for p in lessons_dir().glob("*.toml"))
    except OSError:
        return []


def _shipped_hint(label: str) -> str:
    names = shipped_lessons()
    if not names:
        return ""
    return f" (the lessons that come with the observatory: {', '.join(names)})"


def find_lesson(text: str) -> Path:
    """The file a user means: a path as given; else a bare name (``session4``) of a lesson
    that comes with the observatory. A name that is neither is returned as given (so
    that loading it says "no such file")."""
    given = Path(text)
    if given.exists() or os.sep in text or text.endswith(".toml"):
        return given
    shipped = lessons_dir() / f"{text}.toml"
    return shipped if shipped.is_file() else given


def check_lesson(path: str | os.PathLike[str]) -> list[str]:
    """Every mistake in a lesson file, one line each (empty when it can run)."""
    try:
        load_lesson(path)
    except (LessonError, ScenarioError) as exc:
        return list(exc.errors)
    return []
