"""asyncfork: ``fork`` work, ``wait`` for it — on asyncio, from async and sync code alike.

``af.fork(func, *args, **kwargs)`` starts a coroutine function as a task on an
event loop, or a sync callable in a worker thread, and returns a
:class:`Future` at once; ``af.wait(fut)`` (or ``await fut``) gets its value.
Forks nest: a fork's children are joined before it completes.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from ._analysis import TraceSummary as TraceSummary
from ._errors import DeadlockError as DeadlockError
from ._fork import Forker as Forker
from ._fork import fork as fork
from ._future import Future as Future
from ._group import Group as Group
from ._group import group as group
from ._run import check_cancelled as check_cancelled
from ._run import configure as configure
from ._run import current as current
from ._run import run as run
from ._run import shutdown as shutdown
from ._trace import ForkRecord as ForkRecord
from ._trace import Trace as Trace
from ._trace import WaitRecord as WaitRecord
from ._trace import trace as trace
from ._tree import tree as tree
from ._wait import AsCompleted as AsCompleted
from ._wait import as_completed as as_completed
from ._wait import wait as wait

__all__ = (
    "AsCompleted",
    "DeadlockError",
    "ForkRecord",
    "Forker",
    "Future",
    "Group",
    "Trace",
    "TraceSummary",
    "WaitRecord",
    "as_completed",
    "check_cancelled",
    "configure",
    "current",
    "fork",
    "group",
    "run",
    "shutdown",
    "trace",
    "tree",
    "wait",
)

__version__ = "0.1.0"
