"""Capturing the fork/wait graph: a :class:`Trace` records forks and waits while active.

The recorder is an instrument like any other: ``with af.trace()`` installs it and
its exit removes it. Every fork made meanwhile gets a :class:`ForkRecord`,
coroutine forks are timed step by step, sync forks by their thread's CPU time,
forks run on a remote worker (a Dask cluster) by their run there, and every wait
on an unfinished Future gets a :class:`WaitRecord`.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import weakref
from asyncio import AbstractEventLoop
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from asyncfork import _instruments
from asyncfork._instruments import Instrument
from asyncfork._runner import loop_label
from asyncfork._scope import current_fork

if TYPE_CHECKING:
    from asyncfork._future import Future

    from .analysis import TraceSummary

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
    busy: float = 0.0  # its steps' time (coroutine), thread CPU time (sync), remote run
    steps: int = 0
    # A fork that ran on a remote worker: the worker's address, and the run's start and
    # stop there (the worker's wall clock, turned into seconds since the trace started).
    worker: str | None = None
    remote_start: float | None = None
    remote_stop: float | None = None


@attrs.define(eq=False)
class WaitRecord:
    """Code (a fork, or ``waiter=None`` for code outside forks) waiting on a Future."""

    waiter: int | None
    awaited: int
    thread: str
    start: float
    end: float | None = None


# The trace being recorded, if any: traces do not nest.
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
        self.wall_origin = 0.0  # time.time() at the same moment: remote runs' times are wall
        self.duration: float | None = None
        self._recorder: _Recorder | None = None

    # -- switching on and off ----------------------------------------------------------

    def start(self) -> Trace:
        """Start recording (``with`` does this); raises RuntimeError if a trace is active."""
        global active
        with _active_lock:
            if active is not None:
                raise RuntimeError("a trace is already active; traces do not nest")
            self.origin = _clock()
            self.wall_origin = time.time()
            self.duration = None
            self._recorder = _Recorder(self)
            _instruments.add(self._recorder)
            active = self
        return self

    def stop(self) -> None:
        """Stop recording (``with`` does this at its exit); forks go on, unrecorded."""
        global active
        with _active_lock:
            if active is self:
                active = None
                self.duration = _clock() - self.origin
                assert self._recorder is not None
                _instruments.remove(self._recorder)
                self._recorder.close()

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

    @property
    def recording(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._recorder is not None and self.duration is None

    # -- views and exports (each in its own module) --------------------------------------

    def summary(self, *, show: bool = True) -> TraceSummary:
        """The time view and the work/span profile; printed too unless ``show=False``."""
        from .analysis import summarize

        result = summarize(self)
        if show:
            print(result.text())
        return result

    def to_chrome_trace(self, path: str | os.PathLike[str]) -> bool:
        """Write Trace Event Format JSON (Perfetto, chrome://tracing); False if it failed."""
        from .export import write_chrome_trace

        return _export_safely("the Chrome trace export", write_chrome_trace, self, path)

    def to_html(self, path: str | os.PathLike[str]) -> bool:
        """Write one self-contained HTML page: timeline, fork tree, summary; False if failed."""
        from .html import write_html

        return _export_safely("the HTML export", write_html, self, path)

    def to_dot(self, path: str | os.PathLike[str]) -> bool:
        """Write the fork/wait graph for Graphviz; False if it failed."""
        from .export import write_dot

        return _export_safely("the Graphviz export", write_dot, self, path)


class _Recorder(Instrument):
    """The instrument that fills one :class:`Trace` (kept apart so that Trace has no hooks).

    Per-fork records live in a side table keyed by the Future, from its
    ``fork_made`` to its ``fork_finished``: only pending forks are held (they are
    alive anyway), so a trace keeps no finished fork's value alive. Forks made
    before the trace started are not in it, and are not recorded. Hooks run in
    many threads at once; each touches its own record, and the shared tables
    change only by single dict and list operations, which the GIL makes atomic.
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.records: dict[Future[Any], ForkRecord] = {}
        # Finished forks, for the waits on them that come later (each is recorded, as
        # taking no time); weakly, so the trace keeps no Future alive.
        self.finished: weakref.WeakKeyDictionary[Future[Any], ForkRecord] = (
            weakref.WeakKeyDictionary()
        )
        self.open_waits: dict[tuple[int, int], list[WaitRecord]] = {}
        self.ids = itertools.count(1)
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.records = {}
        self.finished = weakref.WeakKeyDictionary()
        self.open_waits = {}

    def fork_made(self, fut: Future[Any]) -> None:
        if self.closed:
            return
        scope = fut._scope
        group = None
        if scope is not None and not scope._admits_at_once:  # a group
            group = getattr(scope, "_name", None) or f"group 0x{id(scope):x}"
        parent = fut._parent
        parent_record = None if parent is None else self.records.get(parent)
        record = ForkRecord(
            id=next(self.ids),
            parent=None if parent_record is None else parent_record.id,
            group=group,
            name=fut.name,
            kind=fut._kind,
            loop=_loop_label(fut._loop),
            created=self.trace.now(),
        )
        self.records[fut] = record
        self.trace.forks.append(record)

    def fork_started(self, fut: Future[Any], where: str) -> None:
        record = self.records.get(fut)
        if record is not None:
            record.started = self.trace.now()
            record.thread = where

    def fork_busy(self, fut: Future[Any], seconds: float) -> None:
        record = self.records.get(fut)
        if record is not None:
            record.busy += seconds
            record.steps += 1

    def fork_finished(self, fut: Future[Any], exc: BaseException | None) -> None:
        record = self.records.pop(fut, None)
        if record is None:
            return
        self.finished[fut] = record
        record.outcome = (
            "cancelled" if fut.cancelled() else "value" if exc is None else type(exc).__name__
        )
        record.finished = self.trace.now()

    def fork_ran_remotely(self, fut: Future[Any], worker: str, start: float, stop: float) -> None:
        record = self.records.get(fut)
        if record is None:
            return
        # Wall-clock times from the worker, on the trace's clock: a remote machine's clock
        # skew shows as it is. Its run there is its busy time (nothing else is measured).
        origin = self.trace.wall_origin
        record.worker = worker
        record.remote_start = start - origin
        record.remote_stop = stop - origin
        record.busy += max(stop - start, 0.0)

    def wait_began(self, fut: Future[Any]) -> None:
        record = self.records.get(fut) or self.finished.get(fut)
        if record is None:
            return  # a Future made before this trace started
        waiter = current_fork()
        waiter_record = None if waiter is None else self.records.get(waiter)
        wait = WaitRecord(
            waiter=None if waiter_record is None else waiter_record.id,
            awaited=record.id,
            thread=threading.current_thread().name,
            start=self.trace.now(),
        )
        self.trace.waits.append(wait)
        self.open_waits.setdefault(_wait_key(fut), []).append(wait)

    def wait_ended(self, fut: Future[Any]) -> None:
        key = _wait_key(fut)
        waits = self.open_waits.get(key)
        if not waits:
            return
        wait = waits.pop()
        if not waits:
            self.open_waits.pop(key, None)
        wait.end = self.trace.now()


def _wait_key(fut: Future[Any]) -> tuple[int, int]:
    """Who waits on ``fut``: the running task, else the thread (pairs began with ended)."""
    loop = asyncio._get_running_loop()
    task = None if loop is None else asyncio.current_task(loop)
    return (threading.get_ident() if task is None else id(task)), id(fut)


def _loop_label(loop: AbstractEventLoop) -> str:
    label = _loop_labels.get(loop)
    if label is None:
        label = _loop_labels[loop] = loop_label(loop)
    return label


# Loop -> its label; weak, so a closed loop is not kept alive by having been traced.
_loop_labels: weakref.WeakKeyDictionary[AbstractEventLoop, str] = weakref.WeakKeyDictionary()


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


def trace() -> Trace:
    """Record every fork and wait while active: ``with af.trace() as t: ...``.

    Then ``t.summary()`` prints and returns the work/span profile,
    ``t.to_chrome_trace(path)``, ``t.to_html(path)`` and ``t.to_dot(path)`` export
    it. One trace can be active at a time.

    Raises:
        RuntimeError: entering it while another trace is active.
    """
    return Trace()


def run_traced(
    run_root: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    trace_dir: str,
) -> Any:
    """``af.run`` under ``ASYNCFORK_TRACE=DIR``: trace the run, write its files at the end."""
    if active is not None:  # the caller traces already: theirs wins
        return run_root(func, args, kwargs)
    with trace() as recorded:
        try:
            return run_root(func, args, kwargs)
        finally:
            recorded.stop()
            _write_trace(recorded, trace_dir)


def _write_trace(recorded: Trace, trace_dir: str) -> None:
    """Write the run's trace; a failure is logged, never raised over the run's outcome."""
    try:
        os.makedirs(trace_dir, exist_ok=True)
    except OSError:
        logger.exception("asyncfork tracing: cannot create %s", trace_dir)
        return
    recorded.to_chrome_trace(os.path.join(trace_dir, "trace.json"))
    recorded.to_html(os.path.join(trace_dir, "trace.html"))
