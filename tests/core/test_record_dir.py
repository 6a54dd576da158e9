"""With no usable home (nobody's /nonexistent), sessions go to a private runtime folder."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from app.core.record import RecordError, SessionRecorder, fallback_dirs, try_start

NO_HOME = "/nonexistent-observatory-home"


def test_no_home_falls_back_to_the_runtime_folder(tmp_path: Path) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    env = {"HOME": NO_HOME, "XDG_RUNTIME_DIR": str(runtime)}
    recorder, warning = try_start(env=env)
    assert warning is None and recorder is not None
    with recorder:
        assert recorder.path.parent == runtime / "connection-observatory" / "sessions"
        assert recorder.note == (
            f"recording in {recorder.path.parent} (cannot create the session folder "
            f"{NO_HOME}/.local/share/connection-observatory/sessions: the home folder "
            f"{NO_HOME} does not exist)"
        )
        assert recorder.record_note("hello")
    assert not Path(NO_HOME).exists()  # not even root creates a missing home


def test_without_a_runtime_folder_a_private_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = {"HOME": NO_HOME}
    with SessionRecorder.start(env=env) as recorder:
        base = tmp_path / f"connection-observatory-{os.geteuid()}"
        assert recorder.path.parent == base / "sessions"
        for folder in (base, base / "sessions"):
            info = folder.stat()
            assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
        assert recorder.note is not None and recorder.note.startswith(f"recording in {base}")


def test_a_temp_folder_others_may_enter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    base = tmp_path / f"connection-observatory-{os.geteuid()}"
    base.mkdir()
    base.chmod(0o777)  # someone made it for us, open to all: never record there
    with pytest.raises(RecordError) as caught:
        SessionRecorder.start(env={"HOME": NO_HOME})
    assert f"others may enter {base} (mode 777): not recording there" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (base / "sessions").exists()


def test_an_explicit_folder_is_not_replaced(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    recorder, warning = try_start(blocker / "sessions", env={"HOME": NO_HOME})
    assert recorder is None and warning is not None and "not a directory" in warning
    env = {"OBSERVATORY_DATA_DIR": str(blocker), "XDG_RUNTIME_DIR": str(tmp_path)}
    recorder, warning = try_start(env=env)
    assert recorder is None and warning is not None and "not a directory" in warning


def test_fallback_dirs_order(tmp_path: Path) -> None:
    uid = os.geteuid()
    temp = Path(tempfile.gettempdir()) / f"connection-observatory-{uid}" / "sessions"
    assert fallback_dirs({"XDG_RUNTIME_DIR": "/run/user/7"}) == [
        Path("/run/user/7/connection-observatory/sessions"),
        temp,
    ]
    assert fallback_dirs({"XDG_RUNTIME_DIR": "relative"}) == [temp]


def test_as_nobody_with_no_home(as_nobody: Any) -> None:
    code = (
        "import os, stat\n"
        "os.environ['HOME'] = '/nonexistent'\n"
        "os.environ.pop('XDG_RUNTIME_DIR', None)\n"
        "from app.core.record import try_start\n"
        "rec, warning = try_start()\n"
        "print(warning)\n"
        "print(rec.note)\n"
        "print(rec.path)\n"
        "st = os.stat(rec.path.parent.parent)\n"
        "print(oct(stat.S_IMODE(st.st_mode)), st.st_uid == os.geteuid())\n"
    )
    out = as_nobody("-c", code)
    assert out.returncode == 0, out.stderr
    warning, note, path, mode = out.stdout.splitlines()
    assert warning == "None"
    base = Path(tempfile.gettempdir()) / "connection-observatory-65534"
    assert note.startswith(
        f"recording in {base}/sessions (cannot create the session folder "
        "/nonexistent/.local/share/connection-observatory/sessions"
    )
    assert Path(path).parent == base / "sessions"
    assert mode == "0o700 True"
    Path(path).unlink()
    for folder in (base / "sessions", base):  # leave /tmp as it was, when nothing else is there
        with contextlib.suppress(OSError):
            folder.rmdir()
