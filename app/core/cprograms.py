"""The lecture's own C programs, ``tcp_server1`` and ``tcp_client1``: shipped as source
(``app/labs/c/*.c``) and compiled on first use into a per-user cache folder
(``$XDG_CACHE_HOME/connection-observatory/c/<hash of the source>/``).

Headless: the dashboard calls :func:`build` in a worker, never on its UI loop, and
:func:`compiler` (a PATH lookup, cheap) to know whether to offer them at all.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("tcp_server1", "tcp_client1")
SOURCES = Path(__file__).resolve().parent.parent / "labs" / "c"
FLAGS = ("-O2", "-Wall", "-Wextra", "-std=c11", "-D_DEFAULT_SOURCE")
INSTALL_HINT = (
    "the lecture's C programs need a C compiler: apt install gcc (Debian/Ubuntu), "
    "dnf install gcc (Fedora), or xcode-select --install (macOS)"
)
COMPILE_SECONDS = 60
ERROR_LINES = 5  # of the compiler's output, in the error


class CProgramUnavailable(Exception):
    """A C program cannot be built here: no compiler, or it did not compile (in words)."""


def compiler() -> list[str] | None:
    """The compiler's command: ``$CC`` when set, else ``cc``, ``gcc`` or ``clang`` found on
    PATH; None when there is none."""
    words = shlex.split(os.environ.get("CC", ""))
    if words:
        return words if shutil.which(words[0]) else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def cache_dir() -> Path:
    """Where the programs are compiled: ``$XDG_CACHE_HOME/connection-observatory/c``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "connection-observatory" / "c"


def source(name: str) -> Path:
    if name not in NAMES:
        raise CProgramUnavailable(f"{name} is not one of the lecture's C programs ({NAMES})")
    return SOURCES / f"{name}.c"


def build(name: str) -> Path:
    """The compiled program ``name``, built now when this source (and these flags) were
    never built here: each version goes into a folder named by a hash of them, so an
    upgrade that changes a source compiles it again. The new binary is renamed into place,
    so two dashboards never see half of one.

    Raises:
        CProgramUnavailable: no compiler (with how to install one), a cache folder that
            cannot be written, or a compile error (with the compiler's first lines).
    """
    src = source(name)
    digest = hashlib.sha256(src.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    out = cache_dir() / digest / name
    if os.access(out, os.X_OK):
        _check_own(out)
        return out
    cc = compiler()
    if cc is None:
        raise CProgramUnavailable(INSTALL_HINT)
    try:
        for folder in (out.parent.parent, out.parent):  # the cache, and this build's
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out.parent)
    except OSError as exc:  # a home this user cannot write (nobody's /nonexistent)
        raise CProgramUnavailable(
            f"{name} is compiled into {out.parent}, which cannot be written here "
            f"({exc.strerror or exc}); set XDG_CACHE_HOME to a folder you can write"
        ) from None
    os.close(fd)
    try:
        _compile(cc, src, Path(tmp))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _check_own(out)  # (a cache folder made by someone else before: refused here too)
    return out


def _check_own(program: Path) -> None:
    """A program already compiled in the cache is run only when it and its folders up to
    the cache are this user's and nobody else may write them: another user's binary
    planted in a shared ``$XDG_CACHE_HOME`` would run as you."""
    top = cache_dir()
    for path in (program, *program.parents):
        info = path.stat()
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise CProgramUnavailable(
                f"{program} is not run: {path} is not yours alone (owner uid {info.st_uid}, "
                f"mode {info.st_mode & 0o777:o}); remove it, or set XDG_CACHE_HOME to a "
                "folder of your own"
            )
        if path == top:
            return


def _compile(cc: list[str], src: Path, out: Path) -> None:
    argv = [*cc, *FLAGS, "-o", str(out), str(src)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMPILE_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CProgramUnavailable(f"{shlex.join(argv)} could not run: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()[:ERROR_LINES]
        raise CProgramUnavailable(
            f"{src.name} did not compile ({cc[0]} exit {done.returncode}): " + "\n".join(lines)
        )
