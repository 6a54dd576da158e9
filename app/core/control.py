"""What a front end may ask of the process manager, as a typing Protocol.

:class:`app.core.procs.ProcessManager` is the one implementation; the dashboard
and the scenario runner are typed against this, so a layout snapshot's stand-in
(tests/ui/fakes.py) is checked against the same list, and a method the manager
renames is a type error where it is called, not an AttributeError in a worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from app.core.procs import ForeignProcess, ProcessEvent, ProcessInfo

Target = str | int  # a lab process's name, or its pid


class ProcessControl(Protocol):
    """Start, watch, signal and stop the lab's processes (see ProcessManager's methods)."""

    def subscribe(self, callback: Callable[[ProcessEvent], None]) -> Callable[[], None]: ...

    def processes(self) -> list[ProcessInfo]: ...

    def names(self) -> list[str]: ...

    def get(self, target: Target) -> ProcessInfo: ...

    def output(self, target: Target) -> list[str]: ...

    def is_managed(self, pid: int) -> bool: ...

    def launch_builtin(
        self,
        name: str,
        program: str,
        args: Sequence[str] = (),
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
    ) -> ProcessInfo: ...

    def launch_command(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
    ) -> ProcessInfo: ...

    def kill(self, target: Target, sig: int = ...) -> ProcessInfo: ...

    def kill_all(self, sig: int = ...) -> list[str]: ...

    def restart(self, target: Target, timeout: float = ...) -> ProcessInfo: ...

    def describe_foreign(self, pid: int) -> ForeignProcess: ...

    def kill_foreign(self, pid: int, sig: int = ..., *, created: float | None = None) -> None: ...

    def shutdown(self, timeout: float = ...) -> None: ...
