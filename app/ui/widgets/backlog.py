"""The Backlog tab: who waits in a listener's accept queue, and why.

Experiment 6 of the lecture: the iterative server accepts one client and
never calls ``accept()`` again; a second client's ``connect()`` still
succeeds, because the kernel completes the handshake by itself and parks the
connection in the listener's backlog. ``ss -ltn`` shows it as Recv-Q on the
LISTEN row; its server-side socket is ESTABLISHED with no process at all.

This panel puts names on that number: the peers that wait (sockets on the
listener's port whose owner is the kernel), since when the dashboard saw
them, and the connections the server did accept.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from app.core.model import Snapshot, Socket, SocketEvent
from app.ui.widgets.instrument import Follow, InstrumentPanel, render_plain

WILDCARDS = ("0.0.0.0", "::")
MAX_SHOWN = 50  # peers listed per group; the rest are counted
# States of an accepted (or acceptable) connection on the listener's port.
CONNECTED = (
    "ESTABLISHED",
    "SYN_RECV",
    "CLOSE_WAIT",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "CLOSING",
    "LAST_ACK",
)


def serves(listener: Socket, sock: Socket) -> bool:
    """True when ``sock`` is a connection that ``listener`` accepted or will accept."""
    return (
        sock.state != "LISTEN"
        and sock.is_tcp
        and sock.proto == listener.proto
        and sock.local_port == listener.local_port
        and (listener.local_addr in WILDCARDS or sock.local_addr == listener.local_addr)
    )


def listener_for(sock: Socket, listeners: list[Socket]) -> Socket | None:
    """The LISTEN socket behind ``sock``: itself, the server end's, or the one a client reached."""
    if sock.state == "LISTEN":
        return sock
    for lst in listeners:  # the server's end of a connection
        if serves(lst, sock):
            return lst
    for lst in listeners:  # a client on this machine connected to a local listener
        if (
            lst.proto == sock.proto
            and lst.local_port == sock.remote_port
            and (lst.local_addr in WILDCARDS or lst.local_addr == sock.remote_addr)
        ):
            return lst
    return None


@dataclass(frozen=True, slots=True)
class Queue:
    """One listener's accept queue as the kernel has it now."""

    listener: Socket
    waiting: list[Socket]  # handshake done, no process holds it yet
    accepted: list[Socket]  # held by a process (the server, or a child it forked)

    @property
    def recv_q(self) -> int:
        return self.listener.recv_q


def queue_of(listener: Socket, sockets: Iterable[Socket]) -> Queue:
    waiting: list[Socket] = []
    accepted: list[Socket] = []
    for s in sockets:
        if not serves(listener, s):
            continue
        if s.waiting_in_backlog:
            waiting.append(s)
        elif s.owner != "kernel" and s.state in CONNECTED:
            accepted.append(s)
    return Queue(listener, waiting, accepted)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


def lesson(queue: Queue) -> str:
    """The iterative server's lesson, in the words that fit what is on screen now."""
    server = queue.listener.process or "the server"
    port = queue.listener.local_port
    if queue.waiting and queue.accepted:
        first = queue.accepted[0].remote
        return (
            f"{server} accepted {first} and is busy with it: an iterative server (the "
            "lecture's, whose handle_client() never returns) does not call accept() "
            f"again. The kernel still completed the handshake of the {len(queue.waiting)} "
            "client(s) waiting above: their connect() succeeded and they wait in the "
            "backlog, but nothing reads what they send. A concurrent server (tcp-server "
            f"{port} --concurrent) accepts each client at once: the queue stays at 0."
        )
    if queue.waiting:
        return (
            f"Nobody has called accept() on port {port} yet: the kernel completes each "
            "client's handshake by itself and queues the connection until the program "
            "accepts it (listen(fd, N) allows about N of them). When the queue is full, "
            "new clients' SYNs are dropped and their connect() waits."
        )
    if queue.accepted:
        return (
            f"The queue is empty: {server} accepted every client that connected. Against "
            "an iterative server, start a second client: it waits here until the first "
            "one is done."
        )
    return (
        f"No connection on port {port} yet. Start a client (l): its handshake completes "
        "even before the server calls accept(); until then it waits here."
    )


class BacklogPanel(InstrumentPanel):
    """The accept queue of the selected listener (or of every listener with one)."""

    DEFAULT_CSS = """
    BacklogPanel {
        height: 1fr;
        padding: 0 1;
    }
    BacklogPanel > Static {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.selected: Socket | None = None
        self.snapshot: Snapshot | None = None
        self.first_seen: dict[str, float] = {}
        self.follow: Follow = Follow()
        self._shown: object = None
        self._stale = False  # something changed while the panel was not on screen
        # Kept per change: the last poll's sockets, connections on listening ports by
        # port (in the order first seen), and how many LISTEN sockets each port has.
        self._last: dict[str, Socket] = {}
        self._last_sockets: tuple[Socket, ...] = ()
        self._on_port: dict[int, dict[str, Socket]] = {}
        self._listening: Counter[int] = Counter()

    def compose(self) -> ComposeResult:
        yield Static(id="backlog-view")

    def on_mount(self) -> None:
        self._show(force=True)

    def on_show(self) -> None:
        if self._stale:
            self._show(force=True)

    # -- the main screen's interface ---------------------------------------------------
    def select_socket(self, sock: Socket) -> None:
        if not self.follow.accept(self, sock):
            return
        self.selected = sock
        self._show()

    def update_snapshot(self, snapshot: Snapshot, events: list[SocketEvent]) -> None:
        self.snapshot = snapshot
        self.follow.seen(snapshot)
        self._index(snapshot)
        if self.selected is not None:
            self.selected = snapshot.by_key.get(self.selected.key, self.selected)
        self._show()

    @property
    def by_port(self) -> dict[int, list[Socket]]:
        """Connections on listening ports, by port."""
        return {port: list(socks.values()) for port, socks in self._on_port.items()}

    def _peers(self, port: int) -> list[Socket]:
        return list(self._on_port.get(port, {}).values())

    def _index(self, snapshot: Snapshot) -> None:
        """Connections on listening ports and when each was first seen ("waiting since").

        The source hands back the same object for a socket that did not change, so
        only the sockets that changed are looked at (all of them when the set of
        listening ports changed). Vanished ones are forgotten.
        """
        new, old = snapshot.by_key, self._last
        if snapshot.sockets == self._last_sockets:  # the same objects: one comparison in C
            self._last = new
            return
        self._last_sockets = snapshot.sockets
        changed = [(k, s) for k, s in new.items() if old.get(k) is not s]
        added = sum(1 for k, _ in changed if k not in old)
        gone = [k for k in old if k not in new] if len(old) + added != len(new) else []
        ports_before = set(self._listening)
        for key, sock in changed:
            prev = old.get(key)
            if prev is not None and prev.state == "LISTEN":
                self._listening[prev.local_port] -= 1
            if sock.state == "LISTEN":
                self._listening[sock.local_port] += 1
        for key in gone:
            if old[key].state == "LISTEN":
                self._listening[old[key].local_port] -= 1
        self._listening = +self._listening  # drop ports no listener has any more
        self._last = new
        now = snapshot.taken_at
        if set(self._listening) != ports_before:  # every socket may be on a new side
            first_seen = self.first_seen
            self._on_port, self.first_seen = {}, {}
            changed = list(new.items())
            gone = []
        else:
            first_seen = self.first_seen
        for key in gone:
            sock = old[key]
            self._on_port.get(sock.local_port, {}).pop(key, None)
            self.first_seen.pop(key, None)
        for key, sock in changed:
            prev = old.get(key)
            if prev is not None and prev.local_port != sock.local_port:
                self._on_port.get(prev.local_port, {}).pop(key, None)
            if sock.local_port in self._listening and sock.state != "LISTEN" and sock.is_tcp:
                self._on_port.setdefault(sock.local_port, {})[key] = sock
                self.first_seen[key] = first_seen.get(key, now)
            else:
                peers = self._on_port.get(sock.local_port)
                if peers is not None:
                    peers.pop(key, None)
                self.first_seen.pop(key, None)
        for port in [p for p, socks in self._on_port.items() if not socks]:
            del self._on_port[port]

    # -- what is shown ---------------------------------------------------------------------
    def queue(self) -> Queue | None:
        """The selected listener's queue; None with nothing (or no listener) selected."""
        if self.selected is None or self.snapshot is None:
            return None
        listeners = self.snapshot.listening()
        listener = listener_for(self.selected, listeners)
        if listener is None:
            return None
        if listener.key in self.snapshot.by_key:
            listener = self.snapshot.by_key[listener.key]
        return queue_of(listener, self._peers(listener.local_port))

    def queues(self) -> list[Queue]:
        """Every listener whose queue is not empty."""
        if self.snapshot is None:
            return []
        out = []
        for lst in self.snapshot.listening():
            q = queue_of(lst, self._peers(lst.local_port))
            if q.recv_q or q.waiting:
                out.append(q)
        return out

    def _show(self, force: bool = False) -> None:
        if not self.is_mounted:
            return
        if not self.is_on_screen:  # drawn when its tab is shown (on_show)
            self._stale = True
            return
        self._stale = False
        content = self._content()
        # Compare the plain text (and a coarse clock for the "N s" ages): cheap, and
        # the Static is only touched when something visible changed.
        signature = render_plain([content], 200)
        if signature == self._shown and not force:
            return
        self._shown = signature
        self.query_one("#backlog-view", Static).update(content)

    def _now(self) -> float:
        return self.snapshot.taken_at if self.snapshot is not None else time.time()

    def _peer_lines(self, title: str, socks: list[Socket], owner: bool) -> Text:
        out = Text(title, style="bold")
        now = self._now()
        if not socks:
            out.append("\n  (none)")
            return out
        for s in socks[:MAX_SHOWN]:
            out.append(f"\n  {s.remote}", style="bold")
            out.append(f"  {s.state}")
            since = self.first_seen.get(s.key)
            if owner:
                out.append(f"\n    held by {s.owner_label}")
            if since is not None:
                stamp = time.strftime("%H:%M:%S", time.localtime(since))
                out.append(f"\n    seen since {stamp} ({_ago(now - since)})")
        if len(socks) > MAX_SHOWN:
            out.append(f"\n  … and {len(socks) - MAX_SHOWN} more")
        return out

    def _content(self) -> RenderableType:
        if self.snapshot is None:
            return Text("Waiting for the first poll…")
        queue = self.queue()
        if queue is None:
            return self._overview()
        lst = queue.listener
        head = Text()
        head.append(f"Listener {lst.local}", style="bold")
        head.append(f"  {lst.proto} · {lst.owner_label}")
        count = Text()
        n = queue.recv_q
        count.append(f"Recv-Q {n}", style="bold reverse" if n else "bold")
        count.append(
            f" (as ss -ltn shows it): {n} connection{'s' if n != 1 else ''} "
            f"finished the handshake and wait{'s' if n == 1 else ''} for accept()."
        )
        if len(queue.waiting) < n:
            count.append(
                f" Listed below: {len(queue.waiting)}. The others' clients already "
                "gave up (reset, as an nmap -sT scan does): the kernel no longer lists "
                "their sockets, but they stay counted until accept() takes them."
            )
        elif len(queue.waiting) > n:
            count.append(
                f" Listed below: {len(queue.waiting)} (the two readings are a few "
                "milliseconds apart)."
            )
        parts: list[RenderableType] = [head, count]
        if self.selected is not None and self.selected.state != "LISTEN":
            parts.append(
                Text(
                    f"(the listener of the selected connection {self.selected.local}"
                    f" → {self.selected.remote})"
                )
            )
        parts.append(Text())
        parts.append(
            self._peer_lines(
                "Waiting in the backlog (peers; no process holds them):", queue.waiting, owner=False
            )
        )
        parts.append(self._peer_lines("Accepted (peers):", queue.accepted, owner=True))
        parts.append(Text())
        parts.append(Text(lesson(queue)))
        return Group(*parts)

    def _overview(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.selected is not None:
            parts.append(
                Text(
                    f"{self.selected.local} is not a listener, nor a connection to "
                    "one on this machine."
                )
            )
        queues = self.queues()
        if not queues:
            parts.append(Text("No listener has connections waiting to be accepted."))
        else:
            table = Text("Listeners with a queue (Recv-Q = waiting for accept()):", style="bold")
            for q in queues:
                table.append(f"\n  {q.listener.local}", style="bold")
                table.append(f"  Recv-Q {q.recv_q}  {q.listener.owner_label}")
                for s in q.waiting[:MAX_SHOWN]:
                    table.append(f"\n    waiting: {s.remote}")
            parts.append(table)
        parts.append(
            Text(
                "Select a LISTEN row (or one of its connections) to see which "
                "clients wait in its backlog and which the server accepted."
            )
        )
        parts.append(
            Text(
                "The lecture's iterative server accepts one client and stays busy "
                "with it; a second client's handshake still completes, and it waits "
                "here (ss -ltn: Recv-Q 1) until the server calls accept()."
            )
        )
        return Group(*parts)

    # -- for tests and the report -------------------------------------------------------
    def text(self, width: int | None = None) -> str:
        return render_plain([self._content()], width or max(self.content_size.width, 20))
