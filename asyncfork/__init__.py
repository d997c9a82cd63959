"""asyncfork: ``fork`` work, ``wait`` for it — on asyncio, from async and sync code alike.

``af.fork(func, *args, **kwargs)`` starts a coroutine function as a task on an
event loop, or a sync callable in a worker thread, and returns a
:class:`Future` at once; ``af.wait(fut)`` (or ``await fut``) gets its value.
Forks nest: a fork's children are joined before it completes.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from typing import TYPE_CHECKING, Any

from ._carriers import Carrier as Carrier
from ._carriers import Carrying as Carrying
from ._carriers import carry as carry
from ._drain import drain as drain
from ._entry import run as run
from ._errors import DeadlockError as DeadlockError
from ._explore import explore as explore
from ._fork import Forker as Forker
from ._fork import fork as fork
from ._future import Future as Future
from ._group import Group as Group
from ._group import group as group
from ._instruments import Installation as Installation
from ._instruments import Instrument as Instrument
from ._instruments import instrument as instrument
from ._run import check_cancelled as check_cancelled
from ._run import configure as configure
from ._run import current as current
from ._run import shutdown as shutdown
from ._serial import Serial as Serial
from ._serial import serial as serial
from ._tree import tree as tree
from ._version import __version__ as __version__
from ._wait import AsCompleted as AsCompleted
from ._wait import as_completed as as_completed
from ._wait import wait as wait
from ._wait import wait_async as wait_async

if TYPE_CHECKING:
    from ._tracing.analysis import TraceSummary as TraceSummary
    from ._tracing.recorder import ForkRecord as ForkRecord
    from ._tracing.recorder import Trace as Trace
    from ._tracing.recorder import WaitRecord as WaitRecord
    from ._tracing.recorder import trace as trace

# Tracing (and attrs, which its records use) loads on first use, not at import.
_TRACING_NAMES = ("ForkRecord", "Trace", "TraceSummary", "WaitRecord", "trace")


def __getattr__(name: str) -> Any:
    if name not in _TRACING_NAMES:
        raise AttributeError(f"module 'asyncfork' has no attribute {name!r}")
    from ._tracing import analysis, recorder

    value = getattr(analysis if name == "TraceSummary" else recorder, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TRACING_NAMES))


__all__ = (
    "AsCompleted",
    "Carrier",
    "Carrying",
    "DeadlockError",
    "ForkRecord",
    "Forker",
    "Future",
    "Group",
    "Installation",
    "Instrument",
    "Serial",
    "Trace",
    "TraceSummary",
    "WaitRecord",
    "as_completed",
    "carry",
    "check_cancelled",
    "configure",
    "current",
    "drain",
    "explore",
    "fork",
    "group",
    "instrument",
    "run",
    "serial",
    "shutdown",
    "trace",
    "tree",
    "wait",
    "wait_async",
)
