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
