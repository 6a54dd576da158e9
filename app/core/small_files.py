"""Reading a file a user named, when it should be small (a scenario, a hosts file, a token).

:func:`read_limited` never waits and never reads without end: a path that names
/dev/zero, a FIFO nobody writes to or a 2 GB log is answered at once, with at most
``limit`` + 1 bytes read.
"""

from __future__ import annotations

import errno
import os
import stat


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The bytes of ``path``, or None when it holds more than ``limit``.

    A FIFO is opened without waiting for a writer (with none it reads as empty);
    /dev/zero stops at ``limit`` + 1 bytes.

    Raises:
        OSError: as open() and read() do (IsADirectoryError for a folder).
        ValueError: a NUL in ``path``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        os.set_blocking(fd, True)
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


class SmallFileError(Exception):
    """A small text file that cannot be read; ``str()`` is the reason in words, to follow
    the file's name (``"no such file"``, ``"is a folder, not a lesson file"``, ...)."""


def read_small_text(path: str | os.PathLike[str], limit: int, kind: str) -> str:
    """The UTF-8 text of ``path``, a ``kind`` file ("scenario", "lesson") of at most
    ``limit`` bytes.

    Raises:
        SmallFileError: missing, a folder, unreadable, too big, or not UTF-8 (in words).
    """
    try:
        raw = read_limited(path, limit)
    except FileNotFoundError:
        raise SmallFileError("no such file") from None
    except IsADirectoryError:
        raise SmallFileError(f"is a folder, not a {kind} file") from None
    except PermissionError:
        raise SmallFileError("permission denied (cannot read it)") from None
    except OSError as exc:
        raise SmallFileError(f"cannot read it ({exc.strerror or exc})") from None
    if raw is None:
        size = f"{limit // 1024} KiB"
        raise SmallFileError(f"more than {size}: a {kind} file is at most {size}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SmallFileError(
            f"not a text file in UTF-8 (bad byte at position {exc.start})"
        ) from None
