"""``observatory serve``: the dashboard in a web browser, through textual-serve.

textual-serve answers ``/`` with a page holding a terminal (xterm.js); when
the page's websocket connects, it starts the command it was given in a
subprocess, with pipes and its own driver (env ``TEXTUAL_DRIVER``) instead
of a terminal. Every browser tab gets a dashboard process of its own, with
its own lab processes; closing the tab quits that dashboard, which stops
them. Lab processes never share the dashboard's stdin/stdout (the process
manager gives them DEVNULL and pipes), so they cannot disturb the page.

Whoever can open the page can start and kill processes as this user, so:

* the default host is 127.0.0.1, and another one prints a warning;
* the page and its websocket are only served to a browser that asked for
  this machine by IP address or ``localhost`` (a DNS name that suddenly
  points here, "DNS rebinding", is refused), and the websocket only to a
  page of the same origin (another web site cannot drive the dashboard);
* the page loads nothing from the internet (textual-serve's page asks a font
  service for its font; the font is shipped with textual-serve, so it is
  served from here instead).

Only the standard library and :mod:`app.cliutil` are imported at module
level: ``observatory --help`` must not pay for aiohttp.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import re
import shlex
import signal
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.cliutil import UsageError, port_number

if TYPE_CHECKING:
    from aiohttp import web

HELP = "the dashboard in a web browser (textual-serve), on http://127.0.0.1:8000/"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
TITLE = "Connection Observatory"
STOP_SECONDS = 5.0  # grace for the served dashboards to stop their lab processes

# A Host header we may put into the page: a name or IP literal, an optional port.
_HOST_HEADER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?$")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help=HELP,
        description=(
            "Serve the dashboard to a web browser: open the printed address. Each "
            "browser tab runs a dashboard of its own. Anyone who can open the page "
            "can start and kill processes as you: keep the default host "
            "(127.0.0.1) unless the whole network may."
        ),
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        metavar="HOST",
        help="IP address to listen on (default 127.0.0.1, this machine only; "
        "0.0.0.0 = every address: anyone on the network)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"TCP port, 1-65535 (default {DEFAULT_PORT})",
    )


# -- checks, in words ---------------------------------------------------------------------


def parse_host(text: str) -> str:
    """An IP literal (brackets allowed around IPv6) or ``localhost``; never another name.

    Raises:
        UsageError: anything else, in one line.
    """
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return "localhost"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise UsageError(
            f"--host takes an IP address of this machine, like 127.0.0.1 or 0.0.0.0, not "
            f"{text!r} (names are not looked up)"
        ) from None


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def url_for(host: str, port: int) -> str:
    """The address to open in a browser (a wildcard host means: this machine, too)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def check_can_listen(host: str, port: int) -> None:
    """Bind once, now, so that a taken port is one line in words, not a traceback later.

    Raises:
        UsageError: the port is taken, privileged, or the address is not this machine's.
    """
    addr = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        # aiohttp binds with SO_REUSEADDR too: a port with only TIME_WAIT left is fine.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((addr, port))
    except OSError as exc:
        raise UsageError(listen_error(host, port, exc)) from None
    finally:
        probe.close()


def listen_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another server listens there); "
            "choose another with --port"
        )
    if exc.errno == errno.EACCES and port < 1024:
        return f"port {port} is below 1024: only root may listen there; choose --port 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (see `ip addr`)"
    return f"cannot listen on {host} port {port}: {exc.strerror or exc}"


def served_command() -> str:
    """The shell command textual-serve runs per browser tab: this Python's dashboard.

    ``exec`` makes the dashboard the shell's own process, so that signals sent
    to the pid textual-serve knows reach the dashboard itself.
    """
    return f"exec {shlex.quote(sys.executable)} -m app"


def host_allowed(host_header: str) -> bool:
    """True for a Host header naming this machine by IP address or ``localhost``.

    A browser sends the name it was asked to open. Any other name may be a
    DNS name an attacker pointed at 127.0.0.1 (DNS rebinding), which would
    make their page same-origin with ours.
    """
    match = _HOST_HEADER.match(host_header or "")
    if match is None:
        return False
    name = match.group(1).strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(origin: str | None, host_header: str) -> bool:
    """A websocket may come from our own page only (or from a client that is no browser)."""
    if origin is None:
        return True  # browsers always send Origin with a websocket; curl and tests may not
    for scheme in ("http://", "https://"):
        if origin.startswith(scheme):
            return origin[len(scheme) :].rstrip("/") == host_header
    return False


# -- the server ------------------------------------------------------------------------------

_FONT_FACES = """
    <style>
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf");
        font-style: normal;
      }
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf");
        font-style: italic;
      }
    </style>
"""
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>\s*", re.IGNORECASE)


def local_page(template: str) -> str:
    """textual-serve's page without requests to other sites (its font is served from here)."""
    stripped, removed = _REMOTE_LINK.subn("", template)
    if removed:
        stripped = stripped.replace("</head>", _FONT_FACES + "  </head>", 1)
    return stripped


def refusal_of(headers: Mapping[str, str], websocket: bool, host: str, port: int) -> str | None:
    """Why a request for the page (or its websocket) is refused with 403; None if it is not."""
    host_header = headers.get("Host", "")
    if not host_allowed(host_header):
        return (
            f"Open the observatory by IP address (like {url_for(host, port)}) "
            "or localhost, not by a name.\n"
        )
    if websocket and not origin_allowed(headers.get("Origin"), host_header):
        return "Only the observatory's own page may connect here.\n"
    return None


def ready_line(host: str, port: int) -> str:
    """What the server prints once it listens: where to open it, and how to stop it."""
    others = (
        " (from other machines: this machine's address, see `ip addr`)"
        if host in ("0.0.0.0", "::")
        else ""
    )
    return (
        f"Connection Observatory: open {url_for(host, port)} in a web browser{others}; each tab "
        "runs its own dashboard. Ctrl+C stops it."
    )


def _serve_local_page(app: web.Application, templates_path: str | os.PathLike[str]) -> None:
    """Serve textual-serve's page template as :func:`local_page` makes it."""
    from pathlib import Path

    import aiohttp_jinja2
    import jinja2

    page = (Path(templates_path) / "app_index.html").read_text(encoding="utf-8")
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.DictLoader({"app_index.html": local_page(page)}),
        autoescape=jinja2.select_autoescape(default=True),
    )


def make_server(host: str, port: int) -> Any:
    """A textual-serve Server for the dashboard, with the checks described above."""
    import asyncio

    from aiohttp import web
    from textual_serve.server import Server

    sessions: set[asyncio.Task[Any]] = set()

    class ObservatoryServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            _serve_local_page(app, self.templates_path)
            return app

        def _check(self, request: web.Request, websocket: bool) -> None:
            refusal = refusal_of(request.headers, websocket, host, port)
            if refusal is not None:
                raise web.HTTPForbidden(text=refusal)

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            self._check(request, websocket=False)
            # Links in the page follow the address the browser used, so that a
            # server on 0.0.0.0 works from every address of the machine.
            self.public_url = f"http://{request.headers['Host']}"
            return await super().handle_index(request)

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            self._check(request, websocket=True)
            task = asyncio.current_task()
            if task is not None:
                sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                sessions.discard(task)

        async def on_shutdown(self, app: web.Application) -> None:
            # aiohttp would wait for every open page's websocket to end by itself
            # (heartbeats, up to its shutdown timeout). Cancelled, textual-serve's
            # handler tells its dashboard to quit and waits for it: quick and clean.
            for task in list(sessions):
                task.cancel()

        async def on_startup(self, app: web.Application) -> None:
            print(ready_line(host, port), flush=True)

    return ObservatoryServer(served_command(), host=host, port=port, title=TITLE)


def stop_children(timeout: float = STOP_SECONDS) -> None:
    """Stop every dashboard this server started (they stop their own lab processes)."""
    import psutil

    me = psutil.Process()
    children = me.children(recursive=False)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()  # the dashboard handles SIGTERM: stops its labs, then exits
    _, alive = psutil.wait_procs(children, timeout=timeout)
    leftovers = alive + [p for p in me.children(recursive=True) if p not in alive]
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=timeout)


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def run(args: argparse.Namespace) -> int:
    host = parse_host(args.host)
    port = args.port
    check_can_listen(host, port)
    try:
        server = make_server(host, port)
    except ImportError as exc:
        sys.stderr.write(
            f"observatory serve: textual-serve is missing ({exc.name}); install "
            "the project again with its dependencies\n"
        )
        return 1
    if not is_loopback(host):
        user = _user_name()
        sys.stderr.write(
            f"observatory serve: warning: listening on {host}, not only on this machine: "
            f"anyone who can reach port {port} can start and kill processes as {user}\n"
        )
    # The dashboard refuses to start without a terminal unless it knows it is served.
    os.environ["OBSERVATORY_SERVED"] = "1"
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # textual-serve handles SIGINT and SIGTERM; a closed terminal (SIGHUP) too.
    loop.add_signal_handler(signal.SIGHUP, server.request_exit)
    try:
        server.serve()
    except OSError as exc:  # lost a race for the port since the check
        sys.stderr.write(f"observatory serve: {listen_error(host, port, exc)}\n")
        return 2
    finally:
        stop_children()
        loop.close()
    return 0
