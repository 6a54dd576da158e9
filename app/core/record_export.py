"""Session records as handouts: Markdown or CSV (``observatory record export``).

Only the events, processes and notes of a record (:mod:`app.core.record`) are
exported; its snapshot lines are for the replay.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from app.core.record import Entry, RecordError, in_words, read_session

CSV_COLUMNS = (
    "time",
    "type",
    "kind",
    "text",
    "proto",
    "local",
    "remote",
    "state",
    "old_state",
    "new_state",
    "pid",
    "process",
    "user",
    "owner",
    "key",
    "at",
)


def _endpoint(addr: object, port: object) -> str:
    if addr is None:
        return ""
    shown = f"[{addr}]" if ":" in str(addr) else str(addr)
    return f"{shown}:{'*' if port is None else port}"


def _process_text(entry: Entry) -> str:
    data = entry.get("data")
    if not isinstance(data, dict):
        return str(entry.get("kind", ""))
    for key in ("text", "line", "message", "describe"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return ", ".join(f"{k}={v}" for k, v in data.items() if k != "kind")


def flatten(entry: Entry) -> dict[str, str]:
    """One entry as the export columns (:data:`CSV_COLUMNS`), every value text."""
    row = dict.fromkeys(CSV_COLUMNS, "")
    kind = entry.get("type", "")
    row["type"] = str(kind)
    row["at"] = str(entry.get("at", ""))
    time_text = str(entry.get("time", ""))
    # "2026-05-09T14:03:07.123+02:00" -> "14:03:07" for handouts.
    row["time"] = time_text[11:19] if len(time_text) >= 19 else time_text
    row["key"] = str(entry.get("key", "") or "")
    if kind == "socket":
        sock = entry.get("socket") if isinstance(entry.get("socket"), dict) else {}
        assert isinstance(sock, dict)
        row["kind"] = str(entry.get("kind", ""))
        row["text"] = str(entry.get("text", ""))
        row["proto"] = str(sock.get("proto") or "")
        row["local"] = _endpoint(sock.get("local_addr"), sock.get("local_port"))
        row["remote"] = _endpoint(sock.get("remote_addr"), sock.get("remote_port"))
        row["state"] = str(sock.get("state") or "")
        row["old_state"] = str(entry.get("old_state") or "")
        row["new_state"] = str(entry.get("new_state") or "")
        row["pid"] = "" if sock.get("pid") is None else str(sock.get("pid"))
        row["process"] = str(sock.get("process") or "")
        row["user"] = str(sock.get("user") or "")
        row["owner"] = str(sock.get("owner") or "")
    elif kind == "process":
        row["kind"] = str(entry.get("kind", ""))
        row["text"] = _process_text(entry)
        data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
        assert isinstance(data, dict)
        row["pid"] = "" if data.get("pid") is None else str(data.get("pid"))
        name = data.get("process", data.get("name"))
        row["process"] = "" if name is None else str(name)
    elif kind == "note":
        row["kind"] = "note"
        row["text"] = str(entry.get("text", ""))
    else:
        row["kind"] = str(entry.get("kind", kind))
        row["text"] = str(entry.get("started", ""))
    return row


def _md_cell(text: str) -> str:
    # A pipe ends a cell and a newline ends the row: escape one, flatten the other.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _events_only(entries: Iterable[Entry]) -> list[Entry]:
    # A handout lists what happened: not the header, nor the replay's full snapshots.
    return [e for e in entries if e.get("type") not in ("session", "snapshot")]


def to_markdown(entries: Iterable[Entry], title: str | None = None) -> str:
    """A Markdown table for handouts: time, what happened, state, owner."""
    rows = [flatten(e) for e in _events_only(entries)]
    out = []
    if title:
        out += [f"# {title}", ""]
    out.append("| time | event | what happened | state | pid/program |")
    out.append("|---|---|---|---|---|")
    for r in rows:
        state = r["state"]
        if r["old_state"] and r["new_state"]:
            state = f"{r['old_state']} → {r['new_state']}"
        owner = f"{r['pid']}/{r['process']}" if r["pid"] else r["process"] or r["owner"]
        event = r["type"] if r["type"] == "note" else f"{r['type']}: {r['kind']}"
        cells = (r["time"], event, r["text"], state, owner)
        out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(out) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(entries: Iterable[Entry], *, spreadsheet_safe: bool = True) -> str:
    """CSV with :data:`CSV_COLUMNS` as header.

    Args:
        entries: what :func:`read_session` returned.
        spreadsheet_safe: prefix cells that start with ``= + - @`` with ``'``
            so a spreadsheet shows them as text instead of running a formula
            (``describe()`` lines start with ``+`` and ``-``).
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in _events_only(entries):
        row = flatten(entry)
        if spreadsheet_safe:
            row = {k: ("'" + v if v.startswith(_FORMULA_START) else v) for k, v in row.items()}
        writer.writerow(row)
    return buf.getvalue()


def export_session(
    path: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a session as ``md`` or ``csv`` next to it (or to ``out``).

    Returns:
        The path written.

    Raises:
        RecordError: unknown format, or a file that cannot be read or written.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt in ("markdown",):
        fmt = "md"
    if fmt not in ("md", "csv"):
        raise RecordError(f"cannot export to {fmt!r}: the formats are md and csv")
    log = read_session(path)
    target = Path(out) if out is not None else log.path.with_suffix(f".{fmt}")
    if fmt == "md":
        text = to_markdown(log.entries, title=f"Session {log.path.stem}")
    else:
        text = to_csv(log.entries)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RecordError(in_words(exc, "write", target)) from None
    return target
