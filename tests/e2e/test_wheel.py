"""The built wheel works on its own: styles inside the package, the app starts, the CLI runs.

Builds the wheel, installs it into a fresh venv (its dependencies come from
the package index, so this is slow), and runs everything from a folder
outside the source tree, so nothing is imported from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.tmuxutil import REPO

pytestmark = pytest.mark.timeout(600)

STYLE_FILES = {p.name for p in (REPO / "styles").glob("*.tcss")}

# Runs inside the fresh venv: the dashboard headless (Textual's pilot), with a
# real socket source and no process manager.
HEADLESS = textwrap.dedent("""\
    import asyncio, socket, sys
    from pathlib import Path

    import app
    from app.core.sockets import ProcNetSource
    from app.ui.app import ObservatoryApp, STYLES

    here = Path(app.__file__).resolve().parent
    assert "site-packages" in str(here), f"imported from {here}, not the installed wheel"
    assert STYLES.resolve() == (here / "styles").resolve(), STYLES

    async def main() -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            port = server.getsockname()[1]
            obs = ObservatoryApp(ProcNetSource(), None, interval=0.2)
            async with obs.run_test(size=(120, 40)) as pilot:
                listen = obs.screen.query_one("#listen")
                for _ in range(100):
                    await pilot.pause(0.1)
                    rows = [" ".join(str(c) for c in listen.get_row_at(i))
                            for i in range(listen.row_count)]
                    if any(f"127.0.0.1:{port}" in r for r in rows):
                        break
                else:
                    sys.exit(f"no LISTEN row for 127.0.0.1:{port}: {rows}")
                assert "LISTEN" in str(listen.border_title), listen.border_title
                # A rule only main.tcss sets: without the stylesheet it is "auto".
                status = obs.screen.query_one("#status")
                assert str(status.styles.height) == "1", status.styles.height
                sources = {Path(p).name for p, _ in obs.stylesheet.source}
                assert "main.tcss" in sources, sources
        print("HEADLESS OK")

    asyncio.run(main())
    """)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv (no system site-packages) with only the built wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=base,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list(dist.glob("connection_observatory-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())

    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheels[0]),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=base,
    )
    if pip.returncode != 0 and "Could not find a version" in pip.stderr:
        pytest.skip(f"the package index is out of reach: {pip.stderr.strip()[-300:]}")
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    yield env_dir


def clean_env() -> dict[str, str]:
    """No PYTHONPATH or TEXTUAL_* from the test run: the venv must stand on its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("TEXTUAL")
    }


def test_styles_are_inside_the_installed_package(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", "import app, pathlib; print(pathlib.Path(app.__file__).parent)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert found.returncode == 0, found.stderr
    package = Path(found.stdout.strip())
    assert package.is_relative_to(installed), package
    shipped = {p.name for p in (package / "styles").glob("*.tcss")}
    assert STYLE_FILES, "the source tree has no styles/*.tcss"
    assert shipped == STYLE_FILES, (shipped, STYLE_FILES)


def test_installed_app_starts_headless_with_its_stylesheet(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", HEADLESS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "HEADLESS OK" in done.stdout


def test_installed_snapshot_command_runs(installed: Path, tmp_path: Path) -> None:
    script = installed / "bin" / "observatory"
    assert script.is_file()
    done = subprocess.run(
        [str(script), "snapshot", "--listen"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_installed_dashboard_refuses_unknown_theme(installed: Path, tmp_path: Path) -> None:
    script = installed / "bin" / "observatory"
    done = subprocess.run(
        [str(script), "--theme", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done
    assert len(done.stderr.splitlines()) == 1 and "nosuch" in done.stderr, done.stderr


def test_installed_lesson_is_found_by_its_name(installed: Path, tmp_path: Path) -> None:
    """`observatory lesson check session4` far from the source tree: the lecture's lesson
    ships inside the package (app/lessons), with every step checked."""
    script = installed / "bin" / "observatory"
    done = subprocess.run(
        [str(script), "lesson", "check", "session4"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/app/lessons/session4.toml" in done.stdout
    assert "14 steps" in done.stdout and "Traceback" not in done.stderr
