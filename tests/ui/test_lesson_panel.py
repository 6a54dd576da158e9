"""The Lesson band, driven as a teacher does: a real lesson file, a real dashboard polling
real sockets, a real server started and stopped by the steps, and keys n, p and L."""

from __future__ import annotations

from pathlib import Path

from app.core.lesson import load_lesson
from app.core.procs import ProcessManager
from app.core.sockets import ProcNetSource
from app.ui.app import ObservatoryApp
from app.ui.widgets.lesson_panel import LessonPanel
from tests.conftest import free_port, until

LESSON = """
title = "A server, then none"

[[step]]
title = "A server in the background"
say = "tcp-server {port}: it binds 127.0.0.1 and listens."
expect = ["listen {port} on 127.0.0.1 by server1"]

[[step.process]]
name = "server1"
program = "tcp-server"
args = ["{port}"]

[[step]]
title = "Stop it"
stop = ["server1"]
expect = ["no listen {port}", "established {port} count 3"]
"""


def band_text(app: ObservatoryApp) -> str:
    """What the band draws now: its title line and its body, as plain text."""
    panel = app.screen.query_one(LessonPanel)
    assert panel._shown is not None
    title, body = panel._shown
    return f"{title}\n{body.plain}"


async def test_a_teacher_steps_through_a_lesson(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "lesson.toml"
    path.write_text(LESSON.format(port=port), encoding="utf-8")
    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(ProcNetSource(), manager, interval=0.2, lesson=load_lesson(path))
    try:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await pilot.pause()
            panel = app.screen.query_one(LessonPanel)
            assert panel.display and panel.position == 0
            assert "A server, then none" in band_text(app)
            assert "2 steps, 3 things to see happen. Press n to begin" in band_text(app)
            assert not manager.processes()  # the cover starts nothing

            await pilot.press("n")  # step 1 starts server1, and its line is ticked live
            await until(pilot, lambda: f"✓ listen {port} on 127.0.0.1 by server1" in band_text(app))
            text = band_text(app)
            assert text.startswith("1. A server in the background\n")
            assert f"tcp-server {port}: it binds 127.0.0.1 and listens." in text
            assert "It holds. Press n for step 2: Stop it" in text
            assert panel.border_subtitle == "step 1 of 2 · n next · p back · L hide"
            pid = manager.get("server1").pid

            await pilot.press("n")  # step 2 stops it; one line holds, one cannot
            await until(pilot, lambda: f"✓ no listen {port}" in band_text(app))
            text = band_text(app)
            assert f"✗ established {port} count 3   now: " in text
            assert "hold" not in text.rsplit("\n", 1)[-1]  # no "all hold" under a ✗
            assert not manager.get("server1").running

            await pilot.press("p")  # back to step 1: shown again, judged now, not re-run
            await until(pilot, lambda: f"✗ listen {port} on 127.0.0.1 by server1" in band_text(app))
            assert manager.get("server1").pid == pid and not manager.get("server1").running
            assert [p.name for p in manager.processes()] == ["server1"]

            await pilot.press("L")  # hidden: n is Numeric again
            assert not panel.display
            numeric = app.screen.options.numeric
            await pilot.press("n")
            assert app.screen.options.numeric != numeric and panel.position == 1
            await pilot.press("L")
            assert panel.display and panel.position == 1
    finally:
        manager.shutdown()


async def test_a_lesson_that_does_not_check_is_refused_in_words(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[step]]\ntitle = "x"\nexpect = ["listen 70000"]\n', encoding="utf-8")
    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(ProcNetSource(), manager, interval=0.2)
    try:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await pilot.pause()
            await pilot.press("L")  # no lesson yet: L asks for a file
            await until(pilot, lambda: app.screen.query("#path"))
            field = app.screen.query_one("#path")
            field.value = str(path)  # type: ignore[attr-defined]
            await pilot.press("enter")
            await until(pilot, lambda: any(n.title == "Lesson refused" for n in app._notifications))
            toast = next(n for n in app._notifications if n.title == "Lesson refused")
            assert 'step 1 "x"' in toast.message and "70000" in toast.message
            assert not app.screen.query_one(LessonPanel).display
    finally:
        manager.shutdown()


SLOW = """
[[step]]
title = "A server after a pause"
expect = ["listen {port}"]

[[step.process]]
name = "server1"
program = "tcp-server"
args = ["{port}"]
delay = 1.5

[[step]]
title = "Stop it"
stop = ["server1"]
expect = ["no listen {port}"]
"""


async def test_one_step_at_a_time(tmp_path: Path) -> None:
    """n while a step still starts its processes waits: a later step's stop must not race
    an earlier step's start (the server would be started after it was stopped)."""
    port = free_port()
    path = tmp_path / "slow.toml"
    path.write_text(SLOW.format(port=port), encoding="utf-8")
    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(ProcNetSource(), manager, interval=0.2, lesson=load_lesson(path))
    try:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await pilot.pause()
            panel = app.screen.query_one(LessonPanel)
            await pilot.press("n", "n")
            assert panel.position == 1 and panel.running is not None
            assert any(
                "Step 1 is still doing what it says" in str(n.message) for n in app._notifications
            )
            await until(pilot, lambda: f"✓ listen {port}" in band_text(app), timeout=10)
            assert panel.running is None
            await pilot.press("n")
            await until(pilot, lambda: f"✓ no listen {port}" in band_text(app), timeout=10)
            assert not manager.get("server1").running
    finally:
        manager.shutdown()
