"""Table cells for the dashboard's socket tables: text and style, never colour alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set

from rich.text import Text

from app.core.interfaces import Interface
from app.core.model import Socket
from app.ui.rows import (
    GONE_MARK,
    HERE,
    NEW_MARK,
    Marked,
    ViewOptions,
    backlog_text,
    pair_order,
)
from app.ui.themes import ORANGE, SKY_BLUE
from app.ui.widgets.keyed_table import Cell, TableRow

# Okabe-Ito colours: told apart by colour-blind readers; always with a word or sign.
NEW_STYLE = f"bold {SKY_BLUE}"
GONE_STYLE = f"bold {ORANGE}"
KERNEL_STYLE = "italic"
HIDDEN_STYLE = "italic"

# Column order follows the tools: netstat -tulpn for LISTEN, ss for ESTABLISHED. The
# user, the full command line and why a row has no pid are on the line under the
# tables for the highlighted row (a projected table must stay narrow).
LISTEN_COLUMNS = [
    ("", "mark"),
    ("Proto", "proto"),
    ("Local address", "local"),
    ("Service", "service"),
    ("PID/Program", "owner"),
    ("Queue", "queue"),
]
ESTABLISHED_COLUMNS = [
    ("", "mark"),
    ("Proto", "proto"),
    ("Local", "local"),
    ("Peer", "peer"),
    ("PID/Program", "owner"),
]
OTHER_COLUMNS = [
    ("", "mark"),
    ("Proto", "proto"),
    ("State", "state"),
    ("Local", "local"),
    ("Peer", "peer"),
    ("PID/Program", "owner"),
]
UDP_COLUMNS = [
    ("", "mark"),
    ("Proto", "proto"),
    ("Local", "local"),
    ("Peer", "peer"),
    ("PID/Program", "owner"),
    ("Service", "service"),
]


def with_host(columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The columns with Host after the mark: a lab with hosts shows whose socket it is."""
    return [columns[0], ("Host", "host"), *columns[1:]]


def mark_cell(mark: str) -> Cell:
    if mark == NEW_MARK:
        return Text(mark, style=NEW_STYLE)
    if mark == GONE_MARK:
        return Text(mark, style=GONE_STYLE)
    return ""


def owner_cell(sock: Socket) -> Cell:
    label = sock.owner_label
    if sock.owner == "kernel":
        return Text(label, style=KERNEL_STYLE)
    if sock.owner == "hidden":
        # Shorter than the CLI's "hidden (user root)": a projected table is narrow, and
        # the line under the tables says what hidden means.
        return Text(f"hidden: {sock.user}" if sock.user else "hidden", style=HIDDEN_STYLE)
    return label


SERVICE_WIDTH = 8


def _service(sock: Socket, options: ViewOptions) -> str:
    if options.numeric:
        return ""
    name = sock.service or "-"
    return name if len(name) <= SERVICE_WIDTH else name[: SERVICE_WIDTH - 1] + "…"


def _cell_value(key: str, sock: Socket, options: ViewOptions) -> Cell:
    if key == "proto":
        return sock.proto
    if key == "local":
        return sock.local
    if key == "peer":
        return sock.remote
    if key == "service":
        return _service(sock, options)
    if key == "owner":
        return owner_cell(sock)
    if key == "queue":
        return Text(backlog_text(sock), style="bold" if sock.recv_q else "")
    if key == "state":
        return sock.state
    if key == "host":
        return sock.host or HERE
    return ""


def _user_sort(column: str) -> Callable[[Marked], tuple[object, ...]]:
    def key(m: Marked) -> tuple[object, ...]:
        s = m.sock
        if column in ("local", "proto"):
            return (s.local_addr, s.local_port)
        if column == "peer":
            return (s.remote_addr or "", s.remote_port or 0)
        if column == "owner":
            # A blank pid is normal (TIME_WAIT, backlog, other users): sort it last, never
            # compare None with an int.
            return (s.pid is None, s.pid or 0, s.owner_label)
        if column == "service":
            return (s.service or "~", s.local_port)
        if column == "state":
            return (s.state, s.local_port)
        if column == "queue":
            return (-s.recv_q,)
        if column == "host":
            return (s.host or "", s.local_addr, s.local_port)
        return (m.mark,)

    return key


def row_cells(m: Marked, column_keys: Sequence[str], options: ViewOptions) -> tuple[Cell, ...]:
    """One row's cells, in the order of ``column_keys``."""
    return tuple(
        mark_cell(m.mark) if k == "mark" else _cell_value(k, m.sock, options) for k in column_keys
    )


def sort_function(
    user_sort: str | None, listen_ports: Set[int]
) -> Callable[[Marked], tuple[object, ...]]:
    """The sort key of a row: by the user's column, else the two ends of a connection
    together, the server's end first (which ports listen decides which end that is)."""
    if user_sort:
        return _user_sort(user_sort)
    pair = pair_order(set(listen_ports))

    def natural(m: Marked) -> tuple[object, ...]:
        return pair(m.sock)

    return natural


INTERFACE_COLUMNS = [
    ("Interface", "name"),
    ("State", "state"),
    ("IPv4", "ipv4"),
    ("IPv6", "ipv6"),
    ("MTU", "mtu"),
]


def interface_rows(interfaces: Sequence[Interface]) -> list[TableRow]:
    """The Interfaces tab: one row per interface, its addresses as ``ip addr`` writes them
    (address/prefix length)."""

    def addresses(iface: Interface, family: int) -> str:
        found = [
            f"{a.address}/{a.prefixlen}" if a.prefixlen is not None else a.address
            for a in iface.addresses
            if a.family == family
        ]
        return " ".join(found) or "-"

    return [
        TableRow(
            i.name,
            (i.name, "UP" if i.up else "DOWN", addresses(i, 4), addresses(i, 6), str(i.mtu or "")),
        )
        for i in interfaces
    ]
