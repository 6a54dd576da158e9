"""Start, watch and stop the lab's processes: one manager owns every child.

The dashboard and ``observatory lab up`` start servers and clients through a
:class:`ProcessManager`. It guarantees what a projected lab needs:

* every child runs in its own session and process group, with stdin from
  ``/dev/null`` and stdout/stderr piped (an inherited terminal would corrupt
  the dashboard's screen);
* output is read line by line into a bounded buffer (a fixed number of lines,
  each cut to a maximum length), so a child printing without end never grows
  the observatory's memory;
* no child outlives the observatory. Caught exits (``shutdown()``, ``atexit``,
  SIGTERM/SIGHUP/SIGINT through :meth:`ProcessManager.install_signal_handlers`)
  stop every process group. For SIGKILL, which cannot be caught, every child
  asks the kernel for a parent-death signal (``PR_SET_PDEATHSIG``): built-in
  lab programs do it themselves (and also watch a "lifeline" pipe; they start
  no processes of their own). An arbitrary command may start children, which
  the kernel does not give that signal, so it runs under a supervisor
  (:mod:`app.core.shim`): a child subreaper with the parent-death signal that
  takes the command's whole tree down when the observatory dies, and stops
  what the command leaves behind when it ends. The pid the manager shows is
  the command's own (the supervisor reports it), not the supervisor's;
* it never signals a process it did not start, except through the explicit
  :meth:`ProcessManager.kill_foreign`.

Thread model
------------
``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, not
the process. So every ``Popen`` happens on ONE long-lived "launcher" thread
owned by the manager; ``launch_*`` hands it a request and blocks until the
child has started (or raises). Per child there are two reader threads (stdout,
stderr) and one waiter thread. All are daemon threads.

Subscriber callbacks (:meth:`ProcessManager.subscribe`) are called on the
caller's thread for :class:`ProcessStarted`, on the reader threads for
:class:`OutputLine` and on the waiter thread for :class:`ProcessExited`: never
on a UI loop. A UI must marshal them itself (Textual: ``app.call_from_thread``
or ``post_message``). Callbacks must be quick and must not wait for a process
(a slow callback slows the reader, which in turn slows the child: that is
back-pressure, not loss). Output lines of one stream arrive in order; the
exit event of a process comes after its output (when the pipes close within
half a second of the exit). For headless use, :meth:`ProcessManager.drain_events`
returns the most recent events (a bounded backlog).

Modules
-------
:mod:`~app.core.procs.manager` holds :class:`ProcessManager`, which composes
the rest: :mod:`~app.core.procs.launch` (the launch in small steps and the
launcher thread), :mod:`~app.core.procs.records` (each child's record and its
:class:`ProcessInfo` snapshot), :mod:`~app.core.procs.output` (the bounded
output buffer), :mod:`~app.core.procs.events` (the events and their
subscribers), :mod:`~app.core.procs.exits` (how a process ended, in words),
:mod:`~app.core.procs.foreign` (signalling a process the dashboard did not
start) and :mod:`~app.core.procs.errors`. Import the names below from
``app.core.procs`` itself.
"""

from app.core.procs.errors import LaunchError, ProcessError
from app.core.procs.events import (
    OutputLine,
    ProcessEvent,
    ProcessExited,
    ProcessStarted,
    Stream,
    Subscriber,
)
from app.core.procs.exits import explain_failure, state_text
from app.core.procs.foreign import ForeignProcess
from app.core.procs.launch import (
    ENV_LIFELINE_FD,
    ENV_PARENT_PID,
    ENV_PID_FD,
    NAME_PATTERN,
    NAME_RULE,
    SHIM_PATH,
    executable_problem,
)
from app.core.procs.manager import ProcessManager
from app.core.procs.output import LineGate
from app.core.procs.records import ProcessInfo, Target

__all__ = [
    "ENV_LIFELINE_FD",
    "ENV_PARENT_PID",
    "ENV_PID_FD",
    "NAME_PATTERN",
    "NAME_RULE",
    "SHIM_PATH",
    "ForeignProcess",
    "LaunchError",
    "LineGate",
    "OutputLine",
    "ProcessError",
    "ProcessEvent",
    "ProcessExited",
    "ProcessInfo",
    "ProcessManager",
    "ProcessStarted",
    "Stream",
    "Subscriber",
    "Target",
    "executable_problem",
    "explain_failure",
    "state_text",
]
