"""Capturing the fork/wait graph: records of forks and waits while a trace is active.

Switched off, the runtime pays one check per fork (and one per blocking wait):
``active is None``. Switched on, every fork gets a :class:`ForkRecord` (held by its
Future), coroutine forks are timed step by step, sync forks by their thread's CPU
time, and every wait on an unfinished Future gets a :class:`WaitRecord`.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from asyncio import AbstractEventLoop
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from ._scope import CURRENT

if TYPE_CHECKING:
    from ._analysis import TraceSummary
    from ._future import Future

logger = logging.getLogger("asyncfork")
_clock = time.perf_counter


@attrs.define(eq=False)
class ForkRecord:
    """One fork, as the trace saw it. Times are seconds since the trace started."""

    id: int
    parent: int | None
    group: str | None
    name: str
    kind: str  # "coroutine", "thread" or "executor"
    loop: str  # the loop (and its thread) the fork belongs to
    created: float
    thread: str | None = None  # where its code ran: the loop's thread or a worker's
    started: float | None = None
    finished: float | None = None
    outcome: str | None = None  # "value", "cancelled", or the exception's type name
    busy: float = 0.0  # time its steps ran (coroutine) or its thread's CPU time (sync)
    steps: int = 0
    # The trace that made this record: a fork that outlives it is not stamped with the
    # clock (or the ids) of a later trace.
    owner: Trace | None = attrs.field(default=None, repr=False)


@attrs.define(eq=False)
class WaitRecord:
    """Code (a fork, or ``waiter=None`` for code outside forks) waiting on a Future."""

    waiter: int | None
    awaited: int
    thread: str
    start: float
    end: float | None = None


# The trace being recorded, if any.
active: Trace | None = None
_active_lock = threading.Lock()


class Trace:
    """The forks and waits recorded while ``with af.trace() as t:`` was active.

    Use it as ``with`` or ``async with``. Afterwards: :meth:`summary`,
    :meth:`to_chrome_trace`, :meth:`to_html`, :meth:`to_dot`.
    """

    __module__ = "asyncfork"

    def __init__(self) -> None:
        self.forks: list[ForkRecord] = []
        self.waits: list[WaitRecord] = []
        self.origin = 0.0  # perf_counter() at the start
        self.duration: float | None = None
        self._ids = itertools.count(1)

    # -- switching on and off ----------------------------------------------------------

    def start(self) -> Trace:
        """Start recording (``with`` does this); raises RuntimeError if a trace is active."""
        global active
        with _active_lock:
            if active is not None:
                raise RuntimeError("a trace is already active; traces do not nest")
            self.origin = _clock()
            active = self
        return self

    def stop(self) -> None:
        """Stop recording (``with`` does this at its exit); forks go on, unrecorded."""
        global active
        with _active_lock:
            if active is self:
                active = None
                self.duration = _clock() - self.origin

    def __enter__(self) -> Trace:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Trace:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the trace started."""
        return _clock() - self.origin

    # -- views and exports (each in its own module) --------------------------------------

    def summary(self, *, show: bool = True) -> TraceSummary:
        """The time view and the work/span profile; printed too unless ``show=False``."""
        from ._analysis import summarize

        result = summarize(self)
        if show:
            print(result.text())
        return result

    def to_chrome_trace(self, path: str | os.PathLike[str]) -> bool:
        """Write Trace Event Format JSON (Perfetto, chrome://tracing); False if it failed."""
        from ._export import write_chrome_trace

        return _export_safely("the Chrome trace export", write_chrome_trace, self, path)

    def to_html(self, path: str | os.PathLike[str]) -> bool:
        """Write one self-contained HTML page: timeline, fork tree, summary; False if failed."""
        from ._html import write_html

        return _export_safely("the HTML export", write_html, self, path)

    def to_dot(self, path: str | os.PathLike[str]) -> bool:
        """Write the fork/wait graph for Graphviz; False if it failed."""
        from ._export import write_dot

        return _export_safely("the Graphviz export", write_dot, self, path)

    # -- recording (called by the runtime) ----------------------------------------------

    def _fork_made(self, fut: Future[Any], kind: str, group: str | None) -> None:
        parent = fut._parent
        parent_record = parent._record if parent is not None else None
        record = ForkRecord(
            id=next(self._ids),
            parent=self._id_of(parent_record),
            group=group,
            name=fut.name,
            kind=kind,
            loop=_loop_label(fut),
            created=self.now(),
            owner=self,
        )
        fut._record = record
        self.forks.append(record)

    def _wait_began(self, fut: Future[Any]) -> WaitRecord | None:
        record = fut._record
        if record is None or record.owner is not self:
            return None  # a Future made before this trace started
        node = CURRENT.get()
        waiter = None if node is None else node._owner_fork()
        wait = WaitRecord(
            waiter=self._id_of(waiter._record if waiter is not None else None),
            awaited=record.id,
            thread=threading.current_thread().name,
            start=self.now(),
        )
        self.waits.append(wait)
        return wait

    def _wait_ended(self, wait: WaitRecord | None) -> None:
        if wait is not None:
            wait.end = self.now()

    def _id_of(self, record: ForkRecord | None) -> int | None:
        """A record's id in this trace, or None if it belongs to no trace or another one."""
        return record.id if record is not None and record.owner is self else None


def _loop_label(fut: Future[Any]) -> str:
    loop = fut._loop
    label = _loop_labels.get(loop)
    if label is None:
        label = _loop_labels[loop] = f"{type(loop).__module__.split('.')[0]} loop 0x{id(loop):x}"
    return label


# Loop -> its label; weak, so a closed loop is not kept alive by having been traced.
_loop_labels: weakref.WeakKeyDictionary[AbstractEventLoop, str] = weakref.WeakKeyDictionary()


def _live_owner(record: ForkRecord) -> Trace | None:
    """The record's trace while it is still recording, else None (its times are closed)."""
    owner = record.owner
    return owner if owner is not None and owner is active else None


def now_of(wait: WaitRecord) -> float | None:
    """The time to end ``wait`` with, or None if the trace has stopped meanwhile."""
    trace = active
    return None if trace is None else trace.now()


# The hooks below run inside the runtime: a failure in one is reported and switches
# tracing off; it never reaches the user's code or leaves a Future unsettled.


def started(record: ForkRecord, thread: str) -> None:
    try:
        trace = _live_owner(record)
        if trace is not None:
            record.started = trace.now()
            record.thread = thread
    except Exception:
        report_failure("recording a fork's start")


def settled(record: ForkRecord, outcome: str) -> None:
    try:
        record.outcome = outcome
        trace = _live_owner(record)
        if trace is not None:  # else it settled after its trace stopped: its end is unknown
            record.finished = trace.now()
    except Exception:
        report_failure("recording a fork's outcome")


def timed(awaitable: Any, record: ForkRecord) -> Any:
    """``awaitable``, timed step by step into ``record`` if its trace is still recording."""
    try:
        trace = _live_owner(record)
        if trace is None:
            return awaitable
        return TimedAwait(awaitable, record)
    except Exception:
        report_failure("timing a coroutine fork")
        return awaitable


class TimedAwait:
    """Awaits ``awaitable`` and adds the time of each of its steps to ``record.busy``."""

    __slots__ = ("awaitable", "record")

    def __init__(self, awaitable: Any, record: ForkRecord) -> None:
        self.awaitable = awaitable
        self.record = record

    def __await__(self) -> Generator[Any, Any, Any]:
        record = self.record
        started(record, threading.current_thread().name)
        inner = self.awaitable.__await__()
        send_value: Any = None
        to_throw: BaseException | None = None
        while True:
            began = _clock()
            try:
                yielded = inner.send(send_value) if to_throw is None else inner.throw(to_throw)
            except StopIteration as stop:
                record.busy += _clock() - began
                record.steps += 1
                return stop.value
            except BaseException:
                record.busy += _clock() - began
                record.steps += 1
                raise
            record.busy += _clock() - began
            record.steps += 1
            to_throw = None
            try:
                send_value = yield yielded
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:
                to_throw = exc


def _export_safely(
    what: str,
    write: Callable[[Trace, str | os.PathLike[str]], None],
    trace: Trace,
    path: str | os.PathLike[str],
) -> bool:
    """Run an exporter; a failure is logged through the asyncfork logger, never raised."""
    try:
        write(trace, path)
    except Exception:
        logger.exception("asyncfork tracing: %s to %s failed", what, os.fspath(path))
        return False
    return True


def report_failure(what: str) -> None:
    """A hook or exporter failed: log it once, switch tracing off, never raise."""
    global active
    logger.exception("asyncfork tracing: %s failed; tracing is switched off", what)
    with _active_lock:
        active = None


def trace() -> Trace:
    """Record every fork and wait while active: ``with af.trace() as t: ...``.

    Then ``t.summary()`` prints and returns the work/span profile,
    ``t.to_chrome_trace(path)``, ``t.to_html(path)`` and ``t.to_dot(path)`` export
    it. One trace can be active at a time.
    """
    return Trace()
