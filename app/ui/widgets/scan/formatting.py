"""The Scan tab's words and table rows, built from the core's scan results; no widget.

nmap's state words in colour, the one-line summary of a scan, the rows of the
results, compare and history tables with their titles, the story of one port
for the box under the results, and the labels of the form's choices (targets,
scan types, the default ports). Everything here is a pure function of its
arguments, built with rich ``Text`` and the colours of ``app.ui.themes`` only,
so it can be read and tested without an app.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence

from rich.text import Text

from app.core.interfaces import Interface
from app.core.model import Socket
from app.core.scan import LECTURE_PORTS, CompareRow, PortResult, ScanResult, ScanTypeInfo
from app.core.targets import expand_ports
from app.ui.themes import ORANGE, REDDISH_PURPLE, SKY_BLUE

LECTURE = ",".join(str(p) for p in LECTURE_PORTS)

RESULT_COLUMNS = ("PORT", "STATE", "SERVICE", "LOCAL")
COMPARE_COLUMNS = ("PORT", "before", "after", "change")
HISTORY_COLUMNS = (" ", "TIME", "TARGET", "TYPE", "RESULT")
THIS_MACHINE = ""  # the From choice's value for this machine (a host name is never empty)

Row = tuple[Text, ...]

# Okabe-Ito colours (as in the events panel); the words carry the meaning anyway.
STATE_STYLES = {
    "open": f"bold {SKY_BLUE}",
    "closed": f"bold {ORANGE}",
    "filtered": f"bold {REDDISH_PURPLE}",
}


def when(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def state_text(state: str | None) -> Text:
    """nmap's state word, coloured; ``-`` for a port the scan did not list."""
    if state is None:
        return Text("-", style="dim")
    style = STATE_STYLES.get(state.split("|", 1)[0], "")
    return Text(state, style=style)


def summarize(result: ScanResult) -> str:
    """``3 open, 1 closed``: every port, those folded into "Not shown" included."""
    if result.status == "cancelled":
        return "cancelled"
    if result.status == "failed":
        return "failed"
    counts: Counter[str] = Counter(p.state for p in result.ports)
    for host in result.hosts:
        for group in host.not_shown:
            counts[group.state] += group.count
    order = ["open", "closed", "filtered"]
    states = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    text = ", ".join(f"{counts[s]} {s}" for s in states) or "no ports"
    if result.status == "timeout":
        text += " (timed out)"
    if len(result.hosts) > 1:
        text = f"{len(result.hosts)} hosts: {text}"
    return text


def port_label(port: int, proto: str, address: str, several_hosts: bool) -> str:
    """``22/tcp``; with the host in front when the scan covered several."""
    label = f"{port}/{proto}"
    return f"{address} {label}" if several_hosts else label


# -- the results table ------------------------------------------------------------------
def local_cell(port: PortResult, host_is_local: bool) -> Text:
    """The LOCAL column: ``2759/tcp-server on 0.0.0.0`` (``server: ...`` on a lab host),
    or why there is nothing (``host_is_local``: the port was joined with listeners)."""
    if port.listener is not None:
        return Text(port.listener.label)
    if not host_is_local:
        return Text("(not this machine)", style="dim")
    return Text("-", style="dim")


def result_rows(result: ScanResult) -> list[Row]:
    """The results table, as nmap prints it (PORT, STATE, SERVICE) plus LOCAL."""
    local = {h.address: h.joined for h in result.hosts}
    several = len(result.hosts) > 1
    return [
        (
            Text(port_label(p.port, p.proto, p.address, several)),
            state_text(p.state),
            Text(p.service),
            local_cell(p, local.get(p.address, False)),
        )
        for p in result.ports
    ]


def results_title(result: ScanResult, note: str = "") -> str:
    title = f"Results {when(result.started_at)} · {result.scanned} · {result.type}"
    return title + (f" · {note}" if note else "")


def not_shown_lines(result: ScanResult) -> list[str]:
    """nmap's "Not shown: 97 closed tcp ports" lines, with the host when there are several."""
    several = len(result.hosts) > 1
    return [
        f"{h.address}: {g.describe()}" if several else g.describe()
        for h in result.hosts
        for g in h.not_shown
    ]


def host_is_local(result: ScanResult, address: str) -> bool:
    """The scanned host at ``address`` is this machine, or in a scan from a lab host a
    host of its lab: its ports were joined with listeners."""
    return next((h.joined for h in result.hosts if h.address == address), False)


def describe_port(port: PortResult, host_is_local: bool) -> Text:
    """The full story of one result row, for the box under the table."""
    out = Text()
    out.append(f"{port.port}/{port.proto} {port.state}", style="bold")
    if port.address:
        out.append(f" on {port.address}")
    out.append(f" · {port.service}")
    if port.reason:
        out.append(f" · nmap's reason: {port.reason}")
    if port.version:
        out.append(f"\nversion: {port.version}")
    if port.listener is not None:
        on = "" if port.listener.host is None else f"on host {port.listener.host}, "
        out.append(f"\nLOCAL: {on}{port.listener.who} listens on {port.listener.endpoint}")
    elif not host_is_local:
        out.append("\nLOCAL: not this machine, so nothing is known of its processes")
    if port.explanation:
        out.append("\n")
        out.append(port.explanation)
    return out


def first_interesting(result: ScanResult, previous: ScanResult | None = None) -> int:
    """The row to explain first: a port that changed since ``previous``, else an open
    or listened-on port, else the first row."""
    ports = result.ports
    if previous is not None:
        for i, p in enumerate(ports):
            if previous.state_of(p.port, p.proto, p.address) != p.state:
                return i
    for i, p in enumerate(ports):
        if p.state == "open" or p.listener is not None:
            return i
    return 0


# -- the compare table ------------------------------------------------------------------
def change_text(row: CompareRow) -> Text:
    """The compare view's last column: a sign AND a word, never colour alone."""
    if not row.changed:
        return Text("= same", style="dim")
    if row.state_a is None:
        return Text("+ added", style="bold")
    if row.state_b is None:
        return Text("- removed", style="bold")
    return Text("≠ changed", style="bold reverse")


def compare_cell(state: str | None, port: int, result: ScanResult) -> Text:
    """A state in the compare view; a missing one says whether the port was asked for."""
    if state is not None:
        return state_text(state)
    asked = port in expand_ports(result.requested_ports) if result.requested_ports else True
    return Text("-" if asked else "not scanned", style="dim")


def compare_rows(rows: Sequence[CompareRow], before: ScanResult, after: ScanResult) -> list[Row]:
    """Zenmap's compare in the terminal: PORT | before | after | sign + word."""
    several = len({r.address for r in rows}) > 1
    return [
        (
            Text(port_label(row.port, row.proto, row.address, several), style=_bold(row.changed)),
            compare_cell(row.state_a, row.port, before),
            compare_cell(row.state_b, row.port, after),
            change_text(row),
        )
        for row in rows
    ]


def _bold(changed: bool) -> str:
    return "bold" if changed else ""


def compare_title(before: ScanResult, after: ScanResult, changed: int) -> str:
    targets = "" if before.scanned == after.scanned else f" · {before.scanned} → {after.scanned}"
    return (
        f"Compare {when(before.started_at)} → {when(after.started_at)} · {changed} changed{targets}"
    )


# -- the history table ------------------------------------------------------------------
def history_row(result: ScanResult) -> Row:
    """A past scan: its mark (blank), time, target, type and summary."""
    return (
        Text(" "),
        Text(when(result.started_at)),
        Text(result.scanned),
        Text(result.type),
        Text(summarize(result)),
    )


def mark_text(marked: bool) -> Text:
    """The history's first column: ``●`` on a scan marked for the compare."""
    return Text("●" if marked else " ", style="bold")


# -- the form's choices -----------------------------------------------------------------
def target_options(
    interfaces: Iterable[Interface], origin: str | None = None
) -> list[tuple[str, str]]:
    """What From can reach. From this machine: 127.0.0.1 first, then its interfaces'
    addresses, then ::1. From lab host ``origin``: 127.0.0.1 (its own loopback), then
    the lab hosts' addresses (the app lists a lab host's interfaces as ``host/eth0``),
    the other hosts' first."""
    if origin is not None:
        return _lab_targets(interfaces, origin)
    options = [("127.0.0.1 (loopback)", "127.0.0.1")]
    seen = {"127.0.0.1", "::1"}
    for iface in interfaces:
        if "/" in iface.name:  # a lab host's: this machine has no route there
            continue
        for address in [*iface.ipv4, *iface.ipv6]:
            # Link-local IPv6 needs a zone; the ones the kernel names may not be valid here.
            if address in seen or address.lower().startswith("fe80"):
                continue
            seen.add(address)
            options.append((f"{address} ({iface.name})", address))
    options.append(("::1 (loopback)", "::1"))
    return options


def _lab_targets(interfaces: Iterable[Interface], origin: str) -> list[tuple[str, str]]:
    found: list[tuple[bool, str, str]] = []
    seen = {"127.0.0.1", "::1"}
    for iface in interfaces:
        host, slash, _ = iface.name.partition("/")
        if not slash:
            continue
        for address in [*iface.ipv4, *iface.ipv6]:
            low = address.lower()
            if address in seen or low.startswith("fe80") or address.startswith("127."):
                continue
            seen.add(address)
            found.append((host == origin, address, host))
    found.sort(key=lambda f: f[0])  # stable: the other hosts' first, in the app's order
    options = [(f"127.0.0.1 ({origin}'s own loopback)", "127.0.0.1")]
    options += [(f"{address} ({host})", address) for _, address, host in found]
    return options


def target_tooltip(origin: str | None) -> str:
    if origin is None:
        return "This machine's addresses (typed text below wins)"
    return f"The lab's addresses, as lab host {origin} reaches them (typed text below wins)"


def from_options(hosts: Iterable[str]) -> list[tuple[str, str]]:
    """The From choice: this machine (:data:`THIS_MACHINE`), then each running lab host."""
    return [("this machine", THIS_MACHINE)] + [(f"lab host {h}", h) for h in hosts]


def lab_hosts_of(sockets: Iterable[Socket], interfaces: Iterable[Interface]) -> tuple[str, ...]:
    """The lab hosts the polls show: the hosts of the sockets, and of the interfaces the
    app lists as ``host/eth0``; sorted."""
    hosts = {s.host for s in sockets if s.host is not None}
    hosts |= {i.name.partition("/")[0] for i in interfaces if "/" in i.name}
    return tuple(sorted(hosts))


def type_label(info: ScanTypeInfo) -> str:
    if info.enabled:
        return info.label
    return f"{info.label} — needs root"


def unavailable(info: ScanTypeInfo) -> str:
    return f"{info.reason}; run the dashboard as root, or choose TCP connect."


def ports_placeholder(defaults: str | None) -> str:
    if defaults:
        return f"default: {defaults}"
    return f"default: listening + {LECTURE}"
