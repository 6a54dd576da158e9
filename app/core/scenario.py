"""Scenario files: a lecture's set of processes in one TOML file.

Format (a fixed contract)::

    [[process]]
    name = "server1"                 # unique; shown as [server1] before its output
    program = "tcp-server"           # a built-in lab program, or the lecture's C program
    args = ["6000", "--bind", "0.0.0.0"]   # tcp_server1 / tcp_client1 (compiled at start)

    [[process]]
    name = "client1"
    command = ["./tcp_client1", "127.0.0.1", "hello", "6000"]   # ... or any program
    delay = 1.0                      # seconds after the previous process started

    [[host]]                         # optional: a lab host (a network namespace)
    name = "server"                  # 1 to 10 of a-z, 0-9, '-': part of obs<PID>-server
    address = "10.0.2.15/24"         # CIDR; or a list: ["10.0.2.15/24", "fd00::15/64"]

    [[process]]
    name = "server2"
    host = "server"                  # runs on that lab host (without: on this machine)
    program = "tcp-server"
    args = ["7000", "--bind", "10.0.2.15"]

Everything is checked before anything starts (:func:`load_scenario`): TOML
syntax, unknown keys, names, each built-in's arguments, that each command
exists, delays, each host's addresses, that each process's host exists. All
mistakes are collected, each as one line naming the file, the entry and the
key::

    session4.toml: process #2 "client1": key "args": tcp-client needs IP MESSAGE PORT
    session4.toml: host #1 "server": key "address": "10.0.2.15" has no prefix: ...

Paths in a scenario are relative to the file's folder, and every command
starts in that folder.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core.cidr import IPAddress, parse_host_address
from app.core.netns import SWITCH
from app.core.netns import LabHost as LabHost  # a checked [[host]] table
from app.core.procs import (
    NAME_PATTERN,
    NAME_RULE,
    LaunchError,
    executable_problem,
)
from app.core.small_files import SmallFileError, read_small_text

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]

ENTRY_KEYS = ("name", "program", "args", "command", "delay", "host")
HOST_KEYS = ("name", "address")
# The lecture's C programs (app.core.cprograms), compiled when they start, with the built-in
# whose arguments they take: ./tcp_server1 PORT and ./tcp_client1 IP MESSAGE PORT.
C_PROGRAMS = {"tcp_server1": "tcp-server", "tcp_client1": "tcp-client"}
_C_ARGS = {"tcp_server1": "PORT", "tcp_client1": "IP MESSAGE PORT"}
TABLES = ("process", "host")  # the top level holds these arrays of tables only
# A classroom types anything: what a scenario may hold is bounded, and each bound is named
# in the refusal. The lecture's scenarios are a few hundred bytes and a few processes.
MAX_BYTES = 256 * 1024  # the file
MAX_PROCESSES = 200  # [[process]] tables: each a process, with threads and pipes of its own
MAX_HOSTS = 16
MAX_DELAY = 3600.0  # seconds one process waits for the one before
MAX_NAME = 40  # characters of a process's name (NAME_RULE), as messages name the table
SHOWN = 60  # the most of a file's text (a program, a key, a host) a message quotes
PATH_MAX = 4096  # Linux's longest path, with its NUL
MAX_ADDRESS = 64  # characters of one [[host]] address ("fd00::15/64" is 11)
# A host's name becomes part of its network namespace's name, obs<PID>-<name>, and of
# its links' names (at most 15 characters in Linux): short, and safe in any of them.
HOST_NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,9}")
HOST_NAME_RULE = (
    "a host name is 1 to 10 small letters, digits or '-', starting with a letter "
    "(it becomes part of a network namespace's name, obs<PID>-<name>)"
)


class ScenarioError(Exception):
    """A scenario file that cannot start; ``errors`` holds one line per mistake."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        first = self.errors[0] if self.errors else "invalid scenario"
        more = len(self.errors) - 1
        super().__init__(first if more <= 0 else f"{first} (and {more} more)")


class LabNetworkNeeded(LaunchError):
    """A scenario with ``[[host]]`` tables was started without its lab network:
    nothing was started."""


@dataclass(frozen=True, slots=True)
class ScenarioEntry:
    """One ``[[process]]`` table, checked."""

    index: int  # 1-based position in the file
    name: str
    program: str | None  # a built-in or a C program (C_PROGRAMS), or None for a command
    args: tuple[str, ...]  # the built-in's arguments (empty for a command)
    command: tuple[str, ...] | None  # argv of any program, or None for a built-in
    delay: float  # seconds after the previous process started
    host: str | None = None  # the [[host]] it runs on; None: this machine

    @property
    def c_program(self) -> bool:
        """One of the lecture's C programs (compiled when it starts), not a built-in."""
        return self.program in C_PROGRAMS

    @property
    def command_line(self) -> str:
        if self.c_program:
            return shlex.join([f"./{self.program}", *self.args])
        if self.program is not None:
            return shlex.join([self.program, *self.args])
        return shlex.join(self.command or ())


@dataclass(frozen=True, slots=True)
class Scenario:
    """A checked scenario: every entry can be started."""

    path: Path
    entries: tuple[ScenarioEntry, ...]
    hosts: tuple[LabHost, ...] = ()  # the [[host]] tables, in the file's order

    @property
    def folder(self) -> Path:
        """Where commands start and relative paths point."""
        return self.path.resolve().parent

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def quoted(text: str, limit: int = SHOWN) -> str:
    """A file's text as a message quotes it: ``repr``, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def key_shown(key: str) -> str:
    """A table's key as a message names it (a key is any text in TOML: cut)."""
    return key if len(key) <= SHOWN else key[: SHOWN - 3] + "..."


def kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _as_words(value: object, what: str) -> tuple[list[str] | None, str | None]:
    """A TOML list of text (whole numbers accepted, as text) -> list[str], or an error."""
    if not isinstance(value, list):
        return None, f'must be a list of {what}, like ["6000"], not {kind_of(value)}'
    out: list[str] = []
    for position, item in enumerate(value, start=1):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))  # args = ["127.0.0.1", "hello", 6000] is fine
        else:
            return None, (
                f"item {position} must be text in quotes or a whole number, not {kind_of(item)}"
            )
    return out, None


def _usage(program: str) -> str:
    """``tcp-client IP MESSAGE PORT [--bind ADDR] ...`` from the program's own parser."""
    import importlib

    from app.labs import PROGRAMS

    try:
        parser = importlib.import_module(PROGRAMS[program]).build_parser()
        text = str(parser.format_usage())
    except Exception:  # only a hint: never let it hide the real message
        return program
    return " ".join(text.replace("usage:", "", 1).split())


def _c_program_problem(program: str, args: Sequence[str]) -> tuple[str, str] | None:
    """(key, words) when the C program ``program`` would refuse ``args``: the same count
    and port rules as its Python twin, and an IPv4 address for the client."""
    wanted = _C_ARGS[program]
    if len(args) != len(wanted.split()):
        return "args", f"{program} needs {wanted}, like the lecture's ./{program} {wanted}"
    if program == "tcp_client1":
        try:
            ipaddress.IPv4Address(args[0])
        except ValueError:
            return (
                "args",
                f"{program} needs an IPv4 address first (e.g. 127.0.0.1), not {quoted(args[0])}",
            )
    return _builtin_problem(C_PROGRAMS[program], args)


def _builtin_problem(program: str, args: Sequence[str]) -> tuple[str, str] | None:
    """(key, words) when a built-in (or one of the lecture's C programs) or its
    arguments would be refused."""
    if program in C_PROGRAMS:
        return _c_program_problem(program, args)
    try:
        from app.labs import PROGRAMS, LabUsageError, validate
    except ImportError as exc:  # pragma: no cover - the labs package ships with the app
        return "program", f"the built-in programs are not available ({exc})"
    if program not in PROGRAMS:
        known = ", ".join(PROGRAMS)
        close = difflib.get_close_matches(program, list(PROGRAMS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known += f", or the lecture's C programs {' and '.join(C_PROGRAMS)}"
        return "program", f"there is no built-in program {quoted(program)} (known: {known}){hint}"
    try:
        validate(program, list(args))
    except LabUsageError as exc:
        message = str(exc)
        if "required" in message or "unrecognized" in message:
            message += f" (usage: {_usage(program)})"
        return "args", message
    except ImportError as exc:
        return "program", f"the built-in program {quoted(program)} is not available ({exc})"
    return None


Problems = list[tuple[str, str]]  # (key, words) of one [[process]] table


def parse_scenario(
    text: str,
    label: str = "scenario",
    folder: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Scenario:
    """Check a scenario's text; ``label`` names it in messages (usually the path).

    Raises:
        ScenarioError: with every mistake found, one line each.
    """
    base = os.fspath(folder) if folder is not None else os.getcwd()
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise ScenarioError(
            [f"{label}: {size} bytes: a scenario file is at most {MAX_BYTES // 1024} KiB"]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{label}: not valid TOML: {exc}"]) from None
    except RecursionError:  # [[[[...]]]] thousands deep: tomllib recurses once a bracket
        raise ScenarioError(
            [f"{label}: not valid TOML: lists or tables nested too deeply"]
        ) from None
    errors = _top_level_problems(data, label)
    hosts, host_names = check_hosts(data.get("host"), label, errors)
    tables = _process_tables(data, label, errors)

    entries: list[ScenarioEntry] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables, start=1):
        entry, entry_errors = check_entry(table, index, label, seen, base, env, host_names)
        errors.extend(entry_errors)
        if entry is not None:
            entries.append(entry)
    if errors:
        raise ScenarioError(errors)
    return Scenario(path=path or Path(label), entries=tuple(entries), hosts=tuple(hosts))


def check_entry(
    table: object,
    index: int,
    label: str,
    seen: dict[str, int],
    base: str,
    env: Mapping[str, str] | None,
    host_names: Sequence[str],
) -> tuple[ScenarioEntry | None, list[str]]:
    """One [[process]] table: the entry (None when wrong) and its mistakes. ``seen`` maps
    the names taken so far to their table's number; ``base`` is where commands start.
    (Lesson files check their ``[[step.process]]`` tables with it too.)"""
    if not isinstance(table, dict):
        return None, [f"{label}: process #{index}: must be a [[process]] table"]
    name, where, entry_errors = _check_name(table, index, label, seen)
    problems = _unknown_keys(table)
    program, args, command = _check_what_runs(table, base, env, problems)
    delay = _check_delay(table, problems)
    host = _check_host(table, host_names, problems)
    entry_errors.extend(f'{where}: key "{key_shown(key)}": {words}' for key, words in problems)
    if entry_errors or name is None:
        return None, entry_errors
    entry = ScenarioEntry(
        index=index,
        name=name,
        program=program,
        args=tuple(args) if program is not None else (),
        command=tuple(command) if command is not None else None,
        delay=delay,
        host=host,
    )
    return entry, []


def _top_level_problems(data: dict[str, object], label: str) -> list[str]:
    """A line for each top-level key that is neither [[process]] nor [[host]]."""
    errors: list[str] = []
    for key in data:
        if key not in TABLES:
            near = difflib.get_close_matches(key, TABLES, n=1)
            suggestion = f" (did you mean [[{near[0]}]]?)" if near else ""
            errors.append(
                f'{label}: key "{key_shown(key)}": unknown; a scenario holds only [[process]] and '
                f"[[host]] tables{suggestion}"
            )
    return errors


def _process_tables(data: dict[str, object], label: str, errors: list[str]) -> list[object]:
    """The [[process]] tables; raises, with ``errors`` and its own, when there is
    nothing to check further."""
    tables = data.get("process")
    if tables is None:
        errors.append(f"{label}: no [[process]] table: nothing to start")
        raise ScenarioError(errors)
    if isinstance(tables, dict):
        errors.append(
            f"{label}: write [[process]] with two brackets for each process, not [process]"
        )
        raise ScenarioError(errors)
    if not isinstance(tables, list) or not tables:
        errors.append(f'{label}: "process" must be a list of [[process]] tables')
        raise ScenarioError(errors)
    if len(tables) > MAX_PROCESSES:
        errors.append(
            f"{label}: {len(tables)} [[process]] tables: a scenario starts at most "
            f"{MAX_PROCESSES} processes"
        )
        raise ScenarioError(errors)
    return tables


def _check_name(
    table: dict[str, object],
    index: int,
    label: str,
    seen: dict[str, int],
    kind: str = "process",
    pattern: re.Pattern[str] = NAME_PATTERN,
    rule: str = NAME_RULE,
) -> tuple[str | None, str, list[str]]:
    """The entry's name (None when wrong), how messages name the entry, and the name's
    mistakes; ``seen`` (name -> index) gains the name when it is new and right.
    ``kind`` is the table's ("process" or "host"), ``pattern`` and ``rule`` its names'."""
    raw_name = table.get("name")
    where = f"{label}: {kind} #{index}"
    if raw_name is None:
        return None, where, [f'{where}: key "name": missing (every {kind} needs a name)']
    if not isinstance(raw_name, str):
        return None, where, [f'{where}: key "name": must be text, not {kind_of(raw_name)}']
    if len(raw_name) > MAX_NAME:  # never valid: named by its start and its length
        where = f'{label}: {kind} #{index} "{raw_name[: MAX_NAME - 3]}..."'
        return (
            None,
            where,
            [f'{where}: key "name": {len(raw_name)} characters: {rule}'],
        )
    where = f'{label}: {kind} #{index} "{raw_name}"'
    if not pattern.fullmatch(raw_name):
        return None, where, [f'{where}: key "name": {rule}']
    if raw_name in seen:
        return (
            None,
            where,
            [f'{where}: key "name": "{raw_name}" is already the name of {kind} #{seen[raw_name]}'],
        )
    seen[raw_name] = index
    return raw_name, where, []


def _unknown_keys(table: dict[str, object], known: Sequence[str] = ENTRY_KEYS) -> Problems:
    problems: Problems = []
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "known: " + ", ".join(known)
            problems.append((key, f"unknown key ({hint})"))
    return problems


def _check_what_runs(
    table: dict[str, object], base: str, env: Mapping[str, str] | None, problems: Problems
) -> tuple[str | None, list[str], list[str] | None]:
    """(program, args, command): a built-in with its arguments, or any command."""
    has_program, has_command = "program" in table, "command" in table
    if has_program and has_command:
        problems.append(
            ("command", 'give either "program" (a built-in) or "command" (any program), not both')
        )
    elif not has_program and not has_command:
        problems.append(
            (
                "program",
                'missing: give "program" (a built-in such as tcp-server) '
                'or "command" (any program, as a list)',
            )
        )
    elif has_program:
        program, args = _check_builtin(table, problems)
        return program, args, None
    else:
        return None, [], _check_command(table, base, env, problems)
    return None, [], None


def _check_builtin(table: dict[str, object], problems: Problems) -> tuple[str | None, list[str]]:
    raw_program = table["program"]
    program: str | None = None
    args: list[str] = []
    if not isinstance(raw_program, str):
        problems.append(("program", f'must be text like "tcp-server", not {kind_of(raw_program)}'))
    else:
        program = raw_program
    if "args" in table:
        parsed, error = _as_words(table["args"], "arguments")
        if error:
            problems.append(("args", error))
            program = None  # do not check arguments we could not read
        else:
            args = parsed or []
    if program is not None:
        found = _builtin_problem(program, args)
        if found:
            problems.append(found)
    return program, args


def _check_command(
    table: dict[str, object], base: str, env: Mapping[str, str] | None, problems: Problems
) -> list[str] | None:
    raw_command = table["command"]
    command: list[str] | None = None
    if isinstance(raw_command, str):
        try:
            words = shlex.split(raw_command)
        except ValueError:
            words = raw_command.split()
        shown = "[" + ", ".join(f'"{part}"' for part in words) + "]"
        shown = shown if len(shown) <= SHOWN * 2 else shown[: SHOWN * 2 - 4] + "...]"
        problems.append(("command", f"must be a list, one item per argument: command = {shown}"))
    else:
        parsed, error = _as_words(raw_command, "the program and its arguments")
        if error:
            problems.append(("command", error))
        elif not parsed:
            problems.append(("command", "is empty: give the program and its arguments"))
        else:
            too_long = len(parsed[0].encode("utf-8", "surrogatepass")) >= PATH_MAX
            missing = (
                f"the program's path is {len(parsed[0])} characters long: at most {PATH_MAX - 1}"
                if too_long
                else executable_problem(parsed[0], base, env)
            )
            if missing:
                problems.append(("command", missing))
            command = parsed
    if "args" in table:
        problems.append(
            ("args", 'only goes with "program"; put a command\'s arguments inside "command"')
        )
    return command


def _check_delay(table: dict[str, object], problems: Problems) -> float:
    if "delay" not in table:
        return 0.0
    raw_delay = table["delay"]
    if isinstance(raw_delay, bool) or not isinstance(raw_delay, (int, float)):
        problems.append(("delay", f"must be a number of seconds, not {kind_of(raw_delay)}"))
    elif not math.isfinite(raw_delay) or raw_delay < 0:
        problems.append(("delay", f"must be a number of seconds, 0 or more, not {raw_delay}"))
    elif raw_delay > MAX_DELAY:
        problems.append(
            ("delay", f"must be at most {MAX_DELAY:g} seconds (an hour), not {raw_delay:.6g}")
        )
    else:
        return float(raw_delay)
    return 0.0


def _check_host(
    table: dict[str, object], host_names: Sequence[str], problems: Problems
) -> str | None:
    """A process's ``host``: the name of one of the file's [[host]] tables, or None."""
    if "host" not in table:
        return None
    raw_host = table["host"]
    if not isinstance(raw_host, str):
        problems.append(
            ("host", f'must be text naming a [[host]], like "server", not {kind_of(raw_host)}')
        )
        return None
    if raw_host in host_names:
        return raw_host
    raw_host = raw_host if len(raw_host) <= SHOWN else raw_host[: SHOWN - 3] + "..."
    if not host_names:
        problems.append(
            (
                "host",
                f'there is no [[host]] named "{raw_host}": this file has no [[host]] tables '
                f'(add one: [[host]] name = "{raw_host}" address = "10.0.2.15/24")',
            )
        )
        return None
    close = difflib.get_close_matches(raw_host, host_names, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    known = ", ".join(f'"{key_shown(name)}"' for name in host_names[:MAX_HOSTS])
    problems.append(("host", f'there is no [[host]] named "{raw_host}" (known: {known}){hint}'))
    return None


# ------------------------------------------------------------------ [[host]] tables


def check_hosts(raw: object, label: str, errors: list[str]) -> tuple[list[LabHost], list[str]]:
    """The [[host]] tables checked, their mistakes added to ``errors``: the hosts, and
    every name a host table gives, right or wrong (a process on a host whose table is
    wrong is not refused a second time for it)."""
    tables = _host_tables(raw, label, errors)
    hosts: list[LabHost] = []
    names: list[str] = []
    seen: dict[str, int] = {}
    taken: dict[IPAddress, str] = {}  # an address -> how messages name its host
    for index, table in enumerate(tables, start=1):
        if not isinstance(table, dict):
            errors.append(f"{label}: host #{index}: must be a [[host]] table")
            continue
        raw_name = table.get("name")
        if isinstance(raw_name, str) and raw_name not in names:
            names.append(raw_name)
        name, where, host_errors = _check_name(
            table, index, label, seen, "host", HOST_NAME_PATTERN, HOST_NAME_RULE
        )
        problems = _unknown_keys(table, HOST_KEYS)
        if name == SWITCH:
            problems.append(("name", f'"{SWITCH}" is the lab network\'s switch: choose another'))
        addresses = _check_addresses(table, where.removeprefix(f"{label}: "), taken, problems)
        host_errors.extend(f'{where}: key "{key_shown(key)}": {words}' for key, words in problems)
        errors.extend(host_errors)
        if not host_errors and name is not None:
            hosts.append(LabHost(name=name, addresses=tuple(addresses)))
    return hosts, names


def _host_tables(raw: object, label: str, errors: list[str]) -> list[object]:
    """The [[host]] tables (none when the file has none), at most MAX_HOSTS."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        errors.append(f"{label}: write [[host]] with two brackets for each host, not [host]")
        return []
    if not isinstance(raw, list):
        errors.append(f'{label}: "host" must be a list of [[host]] tables')
        return []
    if len(raw) > MAX_HOSTS:
        errors.append(
            f"{label}: {len(raw)} [[host]] tables: a scenario holds at most {MAX_HOSTS} hosts"
        )
    return raw


def _check_addresses(
    table: dict[str, object], host: str, taken: dict[IPAddress, str], problems: Problems
) -> list[str]:
    """A host's ``address``: one CIDR text or a list of them; each written as
    ``ip addr`` shows it ("10.0.2.15/24"). ``taken`` (address -> host) gains each."""
    if "address" not in table:
        problems.append(
            ("address", 'missing (every host needs an address in CIDR, like "10.0.2.15/24")')
        )
        return []
    addresses: list[str] = []
    for text in _address_texts(table["address"], problems):
        if len(text) > MAX_ADDRESS:  # an IPv6 address with its zone and prefix is shorter
            problems.append(
                (
                    "address",
                    f"{quoted(text)} is {len(text)} characters long: an address with its "
                    f'prefix is at most {MAX_ADDRESS}, like "10.0.2.15/24"',
                )
            )
            continue
        interface, why = parse_host_address(text)
        if interface is None:
            problems.append(("address", why))
            continue
        owner = taken.get(interface.ip)
        if owner == host:
            problems.append(("address", f"{interface.ip} is given twice"))
        elif owner is not None:
            problems.append(("address", f"{interface.ip} is already an address of {owner}"))
        else:
            taken[interface.ip] = host
            addresses.append(interface.with_prefixlen)
    return addresses


def _address_texts(raw: object, problems: Problems) -> list[str]:
    """``address``'s texts: one, or a list of them (as ``ip addr add`` gives several)."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        problems.append(
            (
                "address",
                f'must be text like "10.0.2.15/24", or a list of them, not {kind_of(raw)}',
            )
        )
        return []
    if not raw:
        problems.append(("address", 'is empty: give at least one, like "10.0.2.15/24"'))
        return []
    texts: list[str] = []
    for position, item in enumerate(raw, start=1):
        if isinstance(item, str):
            texts.append(item)
        else:
            problems.append(
                (
                    "address",
                    f'item {position} must be text like "10.0.2.15/24", not {kind_of(item)}',
                )
            )
    return texts


def load_scenario(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Scenario:
    """Read and check a scenario file.

    Raises:
        ScenarioError: the file is missing or unreadable, or has mistakes
            (every one of them, one line each).
    """
    label = os.fspath(path)
    file = Path(path)
    try:
        text = read_small_text(file, MAX_BYTES, "scenario")
    except ValueError:  # a NUL in the path
        raise ScenarioError([f"{label!r}: not a file name (it holds a NUL)"]) from None
    except SmallFileError as exc:
        raise ScenarioError([f"{label}: {exc}"]) from None
    return parse_scenario(text, label, folder=file.resolve().parent, env=env, path=file)


def check_scenario(path: str | os.PathLike[str]) -> list[str]:
    """Every mistake in a scenario file, one line each (empty when it can start)."""
    try:
        load_scenario(path)
    except ScenarioError as exc:
        return list(exc.errors)
    return []
