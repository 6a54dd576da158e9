"""The agent: this machine's sockets, lab processes and events over read-only HTTP, for a class.

``observatory agent`` runs :class:`Agent`, a standard-library
``ThreadingHTTPServer`` (a thread per connection, each with a socket timeout of
:data:`CONNECTION_TIMEOUT` s, at most :data:`MAX_CONNECTIONS` at once) with
three endpoints: ``GET /api/snapshot`` (an object with ``host``, ``taken_at``,
``sockets``, the objects of ``snapshot --json``, and ``processes``, see
:mod:`app.core.labprocs`), ``GET /api/events`` (server-sent events, one
``data:`` line of ``watch --json``'s object per event, see
:mod:`app.core.agent_events`) and ``GET /metrics`` (Prometheus' text format,
see :mod:`app.core.metrics`). One socket source serves them all, read at most
once per :data:`REUSE_SECONDS` however many clients ask (:class:`Observer`).
The agent's own sockets (its listener and the connections to it) are left out
of all three, so that a teacher polling the room does not see the polling. It
is read-only by construction: GET and HEAD are the only methods (any other
gets 405), and nothing in it can start, stop or signal a process. With a token
every request needs ``Authorization: Bearer TOKEN`` (compared in constant
time; 401 otherwise); without one it serves loopback only
(:func:`check_host`). Successful requests are not logged; each refused or
failed one is, as one line on stderr.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from app.core.agent_auth import (
    AgentRefused,
    bearer_refusal,
    check_host,
    host_header_refusal,
    load_token,
)
from app.core.agent_events import EventHub, Subscription
from app.core.labprocs import LabProcess, LabProcessFinder
from app.core.metrics import CONTENT_TYPE as METRICS_TYPE
from app.core.metrics import registry_for, render
from app.core.model import Snapshot
from app.core.select import Selection
from app.core.select import select as chosen
from app.core.sockets import SocketSource, default_source
from app.core.terminal_text import printable
from app.core.watch import WatchEvent

__all__ = [
    "Agent",
    "AgentRefused",
    "Observer",
    "check_host",
    "load_token",
]

REUSE_SECONDS = 0.2  # a poll younger than this is served again
CONNECTION_TIMEOUT = 10.0  # seconds a connection may take for each read or write
# Seconds a request's line and headers may take, all told: a client that sends one byte
# every few seconds (each read within CONNECTION_TIMEOUT) is cut off all the same.
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
HEARTBEAT_SECONDS = 15.0  # an event stream with nothing to say sends a comment this often
ENDPOINTS = ("/api/snapshot", "/api/events", "/metrics")
MAX_QUERY_FIELDS = 100  # /api/events?port=N&port=M...
_ALL = Selection(state="all", udp=True)


# ------------------------------------------------------------------ observations


class Observer:
    """The sockets and lab processes, shared by every request: a poll younger than
    ``reuse`` seconds is served again, and concurrent requests wait for one poll.

    Args:
        source: the socket table; default :func:`app.core.sockets.default_source`.
        finder: the lab processes; default a new :class:`LabProcessFinder`.
        exclude: sockets left out (the agent's own).
    """

    def __init__(
        self,
        source: SocketSource | None = None,
        finder: LabProcessFinder | None = None,
        exclude: Callable[[str, str, int], bool] | None = None,
        reuse: float = REUSE_SECONDS,
    ) -> None:
        self.host = socket.gethostname()
        self._source = source if source is not None else default_source()
        self._finder = finder if finder is not None else LabProcessFinder()
        self._exclude = exclude
        self._reuse = reuse
        self._poll_lock = threading.Lock()
        self._procs_lock = threading.Lock()
        self._snap: tuple[float, Snapshot] | None = None
        self._procs: tuple[float, list[LabProcess]] | None = None
        self._body: tuple[Snapshot, list[LabProcess], bytes] | None = None

    def poll(self) -> Snapshot:
        """The current snapshot (what :class:`~app.core.watch.EventStream` samples)."""
        cached = self._snap
        if cached is not None and time.monotonic() - cached[0] < self._reuse:
            return cached[1]
        with self._poll_lock:
            cached = self._snap
            if cached is not None and time.monotonic() - cached[0] < self._reuse:
                return cached[1]
            snap = self._source.poll()
            if self._exclude is not None:
                out = self._exclude
                kept = tuple(
                    s for s in snap.sockets if not out(s.proto, s.local_addr, s.local_port)
                )
                snap = Snapshot(taken_at=snap.taken_at, sockets=kept, duration=snap.duration)
            self._snap = (time.monotonic(), snap)
            return snap

    def processes(self) -> list[LabProcess]:
        """The lab processes running now (at most ``reuse`` seconds old)."""
        cached = self._procs
        if cached is not None and time.monotonic() - cached[0] < self._reuse:
            return cached[1]
        with self._procs_lock:
            cached = self._procs
            if cached is not None and time.monotonic() - cached[0] < self._reuse:
                return cached[1]
            procs = self._finder.find()
            self._procs = (time.monotonic(), procs)
            return procs

    def counts(self) -> tuple[Snapshot, int]:
        """The snapshot and the number of lab processes (what /metrics reads)."""
        return self.poll(), len(self.processes())

    def snapshot_json(self) -> bytes:
        """``/api/snapshot``'s body: ``{"host", "taken_at", "sockets", "processes"}``."""
        snap, procs = self.poll(), self.processes()
        cached = self._body
        if cached is not None and cached[0] is snap and cached[1] is procs:
            return cached[2]
        body = {
            "host": self.host,
            "taken_at": snap.taken_at,
            "sockets": [s.to_json() for s in chosen(snap.sockets, _ALL)],
            "processes": [p.to_json() for p in procs],
        }
        data = json.JSONEncoder(ensure_ascii=False).encode(body).encode("utf-8") + b"\n"
        self._body = (snap, procs, data)
        return data

    def close(self) -> None:
        closer = getattr(self._source, "close", None)
        if callable(closer):
            with contextlib.suppress(OSError):
                closer()


# ------------------------------------------------------------------ the server


class AgentServer(ThreadingHTTPServer):
    """The HTTP server: connections counted and closable, errors as one line."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], agent: Agent) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.agent = agent
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, AgentHandler)

    def server_bind(self) -> None:
        # Not HTTPServer's: it asks DNS for the address's name (socket.getfqdn), slow offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            full = len(self._conns) >= MAX_CONNECTIONS
            if not full:
                self._conns.add(request)
        if full:
            body = b'{"error": "too many connections to this agent; try again later"}\n'
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            self.agent.log(f"{client_address[0]}: refused, {MAX_CONNECTIONS} connections open")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut every open connection down (their threads' reads and writes end at once)."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # the client went, or was too slow: nothing to say
        self.agent.log(f"{client_address[0]}: {type(exc).__name__}: {exc}")


class _HeadReader(io.RawIOBase):
    """The connection's reads, each one bounded by what is left of the handler's
    ``head_deadline`` (while a request's line and headers come in), else by its timeout."""

    def __init__(self, handler: AgentHandler) -> None:
        super().__init__()
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        conn: socket.socket = handler.connection
        deadline = handler.head_deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request line and headers took too long")
            conn.settimeout(min(handler.timeout, left))
        return conn.recv_into(buffer)


class AgentHandler(BaseHTTPRequestHandler):
    """One connection's requests: GET/HEAD of the three endpoints, nothing else."""

    server: AgentServer
    protocol_version = "HTTP/1.1"
    server_version = "observatory-agent"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT
    request_timeout = REQUEST_TIMEOUT
    head_deadline: float | None = None  # while a request's head is read: when it must end
    _headers_sent = False
    _reason = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own file: closed, or the socket outlives us
        self.rfile = io.BufferedReader(_HeadReader(self))

    def handle_one_request(self) -> None:
        # The line and headers of this request (and the wait for them on a kept-alive
        # connection) must come within request_timeout, however slowly they drip.
        self.head_deadline = time.monotonic() + self.request_timeout
        try:
            super().handle_one_request()
        finally:
            self.head_deadline = None

    # -------------------------------------------------------------- methods

    def do_GET(self) -> None:
        self._get(with_body=True)

    def do_HEAD(self) -> None:
        self._get(with_body=False)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>: every other method is refused, with 405.
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)

    def _refuse_method(self) -> None:
        self._error(
            405,
            f"the agent is read-only: {printable(self.command[:20])} is refused, only GET",
            {"Allow": "GET, HEAD"},
        )

    def version_string(self) -> str:
        return self.server_version

    # -------------------------------------------------------------- answers

    def end_headers(self) -> None:
        self._headers_sent = True
        super().end_headers()

    def _get(self, with_body: bool) -> None:
        self._headers_sent = False
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a GET with a body: do not read it as the next request
        elsewhere = host_header_refusal(self.headers.get("Host"), self.server.agent.token)
        if elsewhere is not None:
            self._error(403, elsewhere)
            return
        refusal = self._authorised()
        if refusal is not None:
            self._error(401, refusal, {"WWW-Authenticate": 'Bearer realm="observatory"'})
            return
        try:
            url = urlsplit(self.path)
        except ValueError:  # "//[": an IPv6 host that never closes
            self._error(400, f"not a path: {self.path[:40]!r}")
            return
        try:
            self._route(url, with_body)
        except Exception as exc:  # a poll that failed: said, never a traceback
            if not self._headers_sent:
                self._error(500, f"{type(exc).__name__}: {exc}"[:300])
            else:
                raise

    def _route(self, url: SplitResult, with_body: bool) -> None:
        agent = self.server.agent
        if url.path == "/api/snapshot":
            self._send(200, agent.observer.snapshot_json(), "application/json", with_body)
        elif url.path == "/metrics":
            self._send(200, render(agent.registry), METRICS_TYPE, with_body)
        elif url.path == "/api/events":
            self._events(url.query, with_body)
        elif url.path == "/":
            index = {"agent": "observatory", "host": agent.observer.host, "endpoints": ENDPOINTS}
            self._send(200, _json(index), "application/json", with_body)
        else:
            self._error(404, f"no such endpoint; there are {', '.join(ENDPOINTS)}")

    def _authorised(self) -> str | None:
        """None when the request may be answered, else why not, in words."""
        return bearer_refusal(self.headers.get_all("Authorization") or [], self.server.agent.token)

    def _send(self, code: int, body: bytes, kind: str, with_body: bool = True) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _error(self, code: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self._reason = reason
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        body = _json({"error": reason})
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (400 malformed, 414, 431, 505), as JSON and one log line;
        # with a status line and headers even when the request line was not HTTP/1.x.
        reason = message or self.responses.get(code, ("error",))[0]
        self.request_version = "HTTP/1.1"
        self._error(code, reason)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self.head_deadline = None  # the head is in: the answer has the timeout of any write
        self.connection.settimeout(self.timeout)
        if self.request_version == "HTTP/0.9":  # "GET /" alone: no headers, so no token
            self.send_error(400, "HTTP/0.9 is not served: send GET PATH HTTP/1.1")
            return False
        return True

    # -------------------------------------------------------------- events

    def _events(self, query: str, with_body: bool) -> None:
        ports = _ports(query)
        if isinstance(ports, str):
            self._error(400, ports)
            return
        if not with_body:
            self._send(200, b"", "text/event-stream")
            return
        hub = self.server.agent.hub
        try:
            sub = hub.join(ports)
        except (RuntimeError, OSError, ValueError) as exc:
            self._error(503, f"no event stream: {exc}")
            return
        try:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self._stream(sub)
        except (OSError, ValueError):
            pass  # the client went, or was too slow to read
        finally:
            hub.leave(sub)

    def _stream(self, sub: Subscription) -> None:
        agent = self.server.agent
        out = self.wfile
        out.write(f": observatory agent on {agent.observer.host}: {agent.hub.seeing}\n\n".encode())
        out.flush()
        last = time.monotonic()
        while not agent.stopping:
            events: list[WatchEvent] = sub.get(1.0)
            if sub.ended:
                if sub.dropped:
                    out.write(b": dropped: this client read too slowly; reconnect\n\n")
                return
            kept = [e for e in events if not agent.own(e.proto, e.local_addr, e.local_port)]
            if kept:
                out.write(b"".join(_sse(e) for e in kept))
            elif time.monotonic() - last >= HEARTBEAT_SECONDS:
                out.write(b": keep-alive\n\n")
            else:
                if self._client_gone():
                    return
                continue
            out.flush()
            last = time.monotonic()

    def _client_gone(self) -> bool:
        conn = self.connection
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if not readable:
                return False
            data: bytes = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return not data
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    # -------------------------------------------------------------- logging

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if str(code).isdigit() else 0
        if status >= 400:
            what = f"{self.command or '-'} {self.path[:80]!r}" if self.command else "request"
            why = getattr(self, "_reason", "")
            self.server.agent.log(
                f"{self.client_address[0]}: {what} -> {status}" + (f" ({why})" if why else "")
            )

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's other messages (a timed-out request): one quiet line.
        self.server.agent.log(f"{self.client_address[0]}: {(format % args)[:200]}")


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n"


def _sse(event: WatchEvent) -> bytes:
    return b"data: " + json.dumps(event.to_json(), ensure_ascii=False).encode("utf-8") + b"\n\n"


def _ports(query: str) -> frozenset[int] | str:
    """The ``port`` parameters of ``/api/events?port=N&port=M``, or why they are wrong."""
    ports: set[int] = set()
    try:
        given = parse_qs(query, max_num_fields=MAX_QUERY_FIELDS).get("port", [])
    except ValueError:  # more fields than that
        return f"at most {MAX_QUERY_FIELDS} query parameters"
    for text in given:
        # At most 5 digits before int(): int() refuses 4,301 with words of its own.
        if not (text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536):
            return f"a port is a number from 1 to 65535, not {text[:20]!r}"
        ports.add(int(text))
    return frozenset(ports)


# ------------------------------------------------------------------ the agent


class Agent:
    """A running agent: it binds when made, serves from :meth:`start` (a thread of its own),
    and ends with :meth:`close`, to be called on every way out.

    Args:
        host, port: where to listen (port 0: any free one; see :attr:`address`).
        token: the token every request must bear, or None (loopback only).
        source, finder: for tests; see :class:`Observer`.
        log: where refused and failed requests are said, one line each.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: bytes | None = None,
        source: SocketSource | None = None,
        finder: LabProcessFinder | None = None,
        log: IO[str] | None = None,
    ) -> None:
        check_host(host, token)
        self.token = token
        self.stopping = False
        self._log = log if log is not None else sys.stderr
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        self.server = AgentServer((host, port), self)  # OSError when the port is taken
        bound = self.server.server_address
        self.address: tuple[str, int] = (str(bound[0]), int(bound[1]))
        self._wildcard = ipaddress.ip_address(self.address[0]).is_unspecified
        try:
            self.observer = Observer(source, finder, exclude=self.own)
            self.hub = EventHub(self.observer)
            self.registry = registry_for(self.observer.counts)
        except BaseException:
            self.server.server_close()
            raise

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def own(self, proto: str, local_addr: str, local_port: int) -> bool:
        """A socket of the agent itself: its listener or a connection to it."""
        if not proto.startswith("tcp") or local_port != self.address[1]:
            return False
        return self._wildcard or local_addr == self.address[0]

    def log(self, line: str) -> None:
        # A line quotes what a client sent (its method, its path): ESC shows as \x1b.
        line = printable(line)
        with self._log_lock, contextlib.suppress(OSError, ValueError):
            self._log.write(f"observatory agent: {line}\n")
            self._log.flush()

    def start(self) -> Agent:
        """Serve in a thread of its own until :meth:`close`; returns self."""
        self._serving = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.2,), name="agent", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end the event streams, release the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stopping = True
        if self._serving:
            self.server.shutdown()
        self.hub.close()
        self.server.drop_connections()
        self.server.server_close()  # joins the connections' threads
        self.observer.close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
