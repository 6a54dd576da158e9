"""The screen's requests, as the app runs them in its workers: what a key asks for is done
off the UI loop, a refusal comes back in words (never a traceback), and a success says so."""

from __future__ import annotations

import signal

from app.core.procs import ProcessManager
from app.ui.app import ObservatoryApp
from app.ui.requests import KillRequested, LaunchRequested, RestartRequested
from app.ui.screens.launch import LaunchRequest
from tests.conftest import free_port, until
from tests.ui.conftest import rows


def said(app: ObservatoryApp, words: str) -> bool:
    return any(words in str(n.message) for n in app._notifications)


async def test_requests_run_in_workers_and_say_their_outcome(
    dashboard: tuple[ObservatoryApp, ProcessManager],
) -> None:
    app, manager = dashboard
    port = free_port()
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause()
        screen = app.screen
        request = LaunchRequest("server1", "tcp-server", (str(port),))
        screen.post_message(LaunchRequested(request))
        await until(pilot, lambda: any(f":{port}" in r for r in rows(app, "listen")))
        assert manager.get("server1").running

        # A refusal of the manager comes back as a toast in its words, titled by the action.
        screen.post_message(KillRequested("nosuch", signal.SIGTERM))
        await until(pilot, lambda: said(app, "no process named 'nosuch' was started here"))
        toast = next(n for n in app._notifications if "nosuch" in str(n.message))
        assert toast.severity == "error" and toast.title == "Kill nosuch"
        assert app.is_running  # (exit_on_error=False: a refusal never ends the dashboard)

        # A success that has something to say says it, and the tables are polled at once.
        pid = manager.get("server1").pid
        screen.post_message(RestartRequested("server1"))
        await until(pilot, lambda: said(app, "server1 restarted."), timeout=15)
        assert manager.get("server1").pid != pid and manager.get("server1").running
        await until(pilot, lambda: any("server1" in r for r in rows(app, "processes")))
