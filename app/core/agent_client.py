"""A client of one machine's agent (``observatory agent``): ``GET /api/snapshot`` over
HTTP with the standard library's ``http.client``, on one connection kept open from one
question to the next (an agent closing it while idle is asked again on a new one),
the whole exchange within one timeout (an answer that trickles in is cut at it), the
answer checked whole (:func:`parse_snapshot`). Every way it can fail (refused, no
route, no answer, 401 with or without a token, not HTTP, not JSON, not a snapshot)
is a :class:`FetchError` with the reason in words and in two (for a table cell).
The class view (app.core.classroom) asks each machine through one of these.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import time
from dataclasses import dataclass, field

from app.core.model import Socket

SNAPSHOT_PATH = "/api/snapshot"
DEFAULT_TIMEOUT = 2.0  # seconds for one request: connect, ask, read the whole answer
MAX_BODY = 64 * 1024 * 1024  # a machine with 16,000 sockets answers about 7 MB
CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """A machine's agent: where to connect (an address without brackets, or a name)."""

    host: str
    port: int

    @property
    def text(self) -> str:
        """``pc07:8765``, ``127.0.0.2:8765``, ``[::1]:8765``: the row's name."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """One answer of an agent: its machine's name, when it looked, what it saw."""

    host: str
    taken_at: float
    sockets: tuple[Socket, ...]
    processes: tuple[dict[str, object], ...] = ()
    raw: tuple[object, ...] = field(default=(), compare=False, repr=False)  # as they came


class FetchError(Exception):
    """Why a machine gave no snapshot: ``short`` for a table cell, ``words`` to read."""

    def __init__(self, short: str, words: str) -> None:
        super().__init__(words)
        self.short = short
        self.words = words


def parse_snapshot(body: bytes, where: str, previous: AgentSnapshot | None = None) -> AgentSnapshot:
    """An agent's answer, checked whole; FetchError in words for anything else. A socket
    whose JSON object is the one at its place in ``previous`` keeps its Socket."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FetchError(
            "not JSON",
            f"{where} answered, but not with JSON: is it an observatory agent, "
            "not another web server?",
        ) from None
    try:
        if not isinstance(data, dict):
            raise ValueError(f"the answer is a JSON {type(data).__name__}, not an object")
        host, taken_at = data.get("host"), data.get("taken_at")
        sockets, processes = data.get("sockets"), data.get("processes", [])
        if not isinstance(host, str):
            raise ValueError("it has no 'host' (the machine's name)")
        if isinstance(taken_at, bool) or not isinstance(taken_at, (int, float)):
            raise ValueError("it has no 'taken_at' (when it looked)")
        if not isinstance(sockets, list) or not isinstance(processes, list):
            raise ValueError("its 'sockets' and 'processes' must be lists")
        return AgentSnapshot(
            host=host,
            taken_at=float(taken_at),
            sockets=_sockets(sockets, previous),
            processes=tuple(p for p in processes if isinstance(p, dict)),
            raw=tuple(sockets),
        )
    except ValueError as exc:
        raise FetchError(
            "not a snapshot",
            f"{where} answered JSON that is not an agent's snapshot ({exc}): "
            "is it an observatory agent of this version?",
        ) from None


def _sockets(raw: list[object], previous: AgentSnapshot | None) -> tuple[Socket, ...]:
    """The answer's sockets. Most of a lab machine's stay as they were from one second
    to the next, in the same order: a JSON object equal to the one at its place before
    (one comparison in C) keeps its Socket, and only the others are read anew (reading
    them all was half of the view's CPU time at thirty machines)."""
    if previous is None:
        return tuple(map(Socket.from_json, raw))
    old_raw, old = previous.raw, previous.sockets
    known = min(len(old_raw), len(old))
    return tuple(
        old[i] if i < known and old_raw[i] == item else Socket.from_json(item)
        for i, item in enumerate(raw)
    )


class AgentClient:
    """One machine's agent, asked over one HTTP/1.1 connection kept open between two
    questions (a new connection each second would leave a TIME_WAIT a second on both
    ends: thousands on the teacher's laptop). Used by one thread at a time.

    Args:
        target: the machine's agent.
        token: the bearer token, or None.
        timeout: seconds one question may take: connect, ask, read the whole answer.
    """

    def __init__(self, target: Target, token: str | None, timeout: float) -> None:
        self.target = target
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def snapshot(self, previous: AgentSnapshot | None = None) -> AgentSnapshot:
        """The agent's snapshot (``previous``: its answer before, see
        :func:`parse_snapshot`). Raises FetchError in words for every way that fails."""
        where, timeout = self.target.text, self.timeout
        try:
            status, reason, body = self._exchange()
        except TimeoutError:
            raise FetchError(
                "no answer",
                f"{where} gave no answer within {timeout:g} s: the machine or its agent is "
                "busy or asleep, or a firewall drops the traffic (--timeout waits longer)",
            ) from None
        except _TooBig:
            raise FetchError(
                "too big",
                f"{where} answered more than {MAX_BODY // 2**20} MB: is it an observatory agent?",
            ) from None
        except http.client.HTTPException:
            raise FetchError(
                "not HTTP",
                f"{where} did not answer in HTTP: is it an observatory agent, not another server?",
            ) from None
        except OSError as exc:
            raise _network_error(self.target, exc) from None
        if status != 200:
            raise _refusal(where, status, reason, self.token is not None)
        return parse_snapshot(body, where, previous)

    def _exchange(self) -> tuple[int, str, bytes]:
        """One question and its answer; on a kept connection that the agent closed while
        idle (its read timeout), once more on a new one. Any failure closes it."""
        deadline = time.monotonic() + self.timeout
        reused = self._conn is not None
        try:
            try:
                return self._ask(deadline)
            except (http.client.RemoteDisconnected, ConnectionError):
                if not reused:
                    raise
                self.close()
                return self._ask(deadline)
        except BaseException:
            self.close()
            raise

    def _ask(self, deadline: float) -> tuple[int, str, bytes]:
        """GET the snapshot, each read given what is left of the deadline (an agent that
        answers a byte at a time cannot hold us past it)."""
        if self._conn is None:
            left = max(0.01, deadline - time.monotonic())
            self._conn = http.client.HTTPConnection(
                self.target.host, self.target.port, timeout=left
            )
        conn = self._conn
        headers = {"Accept": "application/json", "User-Agent": "observatory-class"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if conn.sock is not None:
            conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
        conn.request("GET", SNAPSHOT_PATH, headers=headers)
        response = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = response.read1(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY:
                raise _TooBig
            chunks.append(chunk)
        response.close()  # read to its end: the connection can ask again (http.client)
        if response.will_close:
            self.close()
        return response.status, response.reason, b"".join(chunks)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _TooBig(Exception):
    pass


def fetch_snapshot(target: Target, token: str | None, timeout: float) -> AgentSnapshot:
    """Ask ``target``'s agent once for its snapshot (a connection of its own, closed
    after). Raises FetchError in words."""
    client = AgentClient(target, token, timeout)
    try:
        return client.snapshot()
    finally:
        client.close()


def _refusal(where: str, status: int, reason: str, with_token: bool) -> FetchError:
    if status == 401 and not with_token:
        return FetchError(
            "needs token",
            f"the agent wants a token: --token-file FILE, the file {where}'s agent "
            "was started with (its --token-file).",
        )
    if status == 401:
        return FetchError(
            "wrong token",
            f"{where}'s agent refused the token: --token-file must hold the token that "
            "agent was started with.",
        )
    return FetchError(
        f"HTTP {status}",
        f"{where} answered HTTP {status} {reason}: is it an observatory agent "
        "(observatory agent --port PORT)?",
    )


def _network_error(target: Target, exc: OSError) -> FetchError:
    where = target.text
    if isinstance(exc, socket.gaierror):
        return FetchError(
            "unknown name",
            f"the name {target.host!r} is not known here: check it, or give the machine's address.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return FetchError(
            "no agent",
            f"nothing listens on {where} (connection refused): is `observatory agent "
            f"--port {target.port}` running on that machine?",
        )
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return FetchError(
            "no route",
            f"{target.host} cannot be reached (no route): is the machine on, and on this network?",
        )
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return FetchError(
            "closed",
            f"{where} closed the connection without an answer: is it an observatory agent?",
        )
    return FetchError("error", f"cannot ask {where}: {exc.strerror or exc}.")
