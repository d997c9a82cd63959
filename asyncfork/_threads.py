"""The worker pool that runs sync forks: reuse, a limit, helping and slot lending.

Workers count against the limit only while they run a fork's code. A worker
that blocks in ``wait`` lends its slot out (another worker may start), and a
worker that waits on a queued fork runs it inline ("helping"), so recursive
sync fork/wait cannot starve the pool.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import Context
from typing import TYPE_CHECKING, Any

from . import _instruments
from ._instruments import HOOKS

if TYPE_CHECKING:
    from ._future import Future

CREATED = 0  # not yet handed to the pool (being launched, or waiting for a group slot)
QUEUED = 1
RUNNING = 2
DROPPED = 3  # cancelled before it started: never runs
FINISHED = 4  # the function has returned (or raised)
_EXIT = object()  # tells a worker thread to end


# How often the main thread wakes while it blocks, to notice a Ctrl-C that the kernel
# delivered to another thread (a blocked lock wait is interrupted only in the thread
# that received the signal). the rule is KeyboardInterrupt within 0.2 s.
_MAIN_THREAD_SLICE = 0.05


def wait_in_slices(attempt: Callable[[float], bool], timeout: float | None) -> bool:
    """Call ``attempt(seconds)`` (a blocking wait) until it succeeds or ``timeout`` passes.

    Off the main thread it is one wait; on the main thread, slices of at most
    ``_MAIN_THREAD_SLICE``, so that Python gets to run a pending Ctrl-C handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return attempt(-1 if timeout is None else timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        slice_ = _MAIN_THREAD_SLICE
        if deadline is not None:
            slice_ = min(slice_, max(0.0, deadline - time.monotonic()))
        if attempt(slice_):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def acquire(lock: threading.Lock, timeout: float | None) -> bool:
    """``lock.acquire`` that lets Ctrl-C through promptly on the main thread."""
    return wait_in_slices(lambda seconds: lock.acquire(timeout=seconds), timeout)


def default_limit() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class WorkItem:
    """One sync call waiting for (or running in) a worker thread."""

    __slots__ = ("args", "context", "finish", "func", "future", "kwargs", "state")

    def __init__(
        self,
        future: Future[Any],
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: Context,
        finish: Callable[[WorkItem, Any, BaseException | None], None],
    ) -> None:
        self.future = future
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.context = context
        self.finish = finish
        self.state = CREATED

    def run(self) -> None:
        """Run the call in this thread and report its outcome through ``finish``."""
        previous = _local.item
        _local.item = self
        value: Any = None
        error: BaseException | None = None
        hooked = bool(HOOKS)
        cpu = 0.0
        if hooked:
            # In the fork's own context, so an instrument may set context for its code.
            self.context.run(
                _instruments.call, "fork_started", self.future, threading.current_thread().name
            )
            cpu = time.thread_time()
        try:
            value = self.context.run(self.func, *self.args, **self.kwargs)
        except StopIteration as exc:
            error = RuntimeError(f"fork {self.future.name!r} raised StopIteration")
            error.__cause__ = exc
        except BaseException as exc:
            # Start the traceback in the fork's own function, not in this frame.
            error = exc.with_traceback(exc.__traceback__.tb_next if exc.__traceback__ else None)
        finally:
            _local.item = previous
            self.state = FINISHED
            if hooked:
                _instruments.call("fork_busy", self.future, time.thread_time() - cpu)
        # Drop references before reporting, so a finished Future keeps no arguments alive.
        self.func = _nothing
        self.args = ()
        self.kwargs = {}
        self.finish(self, value, error)
        del self, value, error  # the traceback reaches this frame: no cycle through it


def _nothing() -> None:
    pass


class _Local(threading.local):
    item: WorkItem | None = None
    pool: Pool | None = None  # set on asyncfork's worker threads


_local = _Local()


def running_item() -> WorkItem | None:
    """The work item whose code runs on this thread, if it is a sync fork's thread."""
    return _local.item


def on_worker_thread() -> Pool | None:
    """The pool this thread works for, or None if it is not an asyncfork worker."""
    return _local.pool


class Pool:
    """asyncfork's worker threads. All bookkeeping happens under one lock."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._queue: deque[WorkItem] = deque()
        self._idle: list[threading.Lock] = []
        self._limit = limit
        self._active = 0  # workers running a fork's code and not blocked in wait
        self._waking = 0  # workers woken or started that have not yet looked at the queue
        self._stopping = False
        self._names = itertools.count(1)
        self.threads: set[threading.Thread] = set()

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self._limit = limit
            self._dispatch_locked()

    def submit(self, item: WorkItem) -> None:
        with self._lock:
            if item.state != CREATED:
                return  # dropped (cancelled) on its way here
            item.state = QUEUED
            self._queue.append(item)
            self._dispatch_locked()

    def _dispatch_locked(self) -> None:
        """Wake or start workers for queued items while slots are free."""
        while self._active + self._waking < self._limit and self._waking < len(self._queue):
            self._waking += 1
            if self._idle:
                self._idle.pop().release()
            else:
                thread = threading.Thread(
                    target=self._work,
                    name=f"asyncfork-worker-{next(self._names)}",
                    daemon=True,
                )
                self.threads.add(thread)
                thread.start()

    def _work(self) -> None:
        _local.pool = self
        wake = threading.Lock()
        lock = self._lock
        with lock:
            self._waking -= 1
            item = self._next_locked(wake)
        while item is not _EXIT:
            if item is None:
                wake.acquire()  # parked: blocks until submit() or stop() releases it
                wake.release()
                with lock:
                    self._waking -= 1
                    item = self._next_locked(wake)
                continue
            assert isinstance(item, WorkItem)
            item.run()
            with lock:
                self._active -= 1
                item = self._next_locked(wake)

    def _next_locked(self, wake: threading.Lock) -> WorkItem | object | None:
        """The next item to run; else park this worker (None), or tell it to exit."""
        item = self._take_locked()
        if item is not None:
            return item
        if self._stopping:
            self.threads.discard(threading.current_thread())
            return _EXIT
        wake.acquire()
        self._idle.append(wake)
        return None

    def _take_locked(self) -> WorkItem | None:
        if self._active >= self._limit:
            return None
        queue = self._queue
        while queue:
            item = queue.popleft()
            if item.state == QUEUED:
                item.state = RUNNING
                self._active += 1
                return item
        return None

    def claim(self, item: WorkItem) -> bool:
        """Take a queued item to run it on this thread (helping); False if it is taken."""
        with self._lock:
            if item.state != QUEUED:
                return False
            item.state = RUNNING
            return True

    def drop(self, item: WorkItem) -> bool:
        """Make a queued (or not yet queued) item never run; False if it has started."""
        with self._lock:
            if item.state not in (CREATED, QUEUED):
                return False
            item.state = DROPPED
            return True

    def lend_slot(self) -> None:
        """This worker is about to block: let another worker use its slot."""
        with self._lock:
            self._active -= 1
            self._dispatch_locked()

    def reclaim_slot(self) -> None:
        with self._lock:
            self._active += 1

    def stop(self) -> None:
        """Let idle workers exit; busy ones exit once the queue is empty."""
        with self._lock:
            self._stopping = True
            while self._idle:
                self._waking += 1
                self._idle.pop().release()


_pool: Pool | None = None
_pool_lock = threading.Lock()
_limit: int | None = None


def pool() -> Pool:
    current = _pool
    if current is not None:
        return current
    return _start_pool()


def _start_pool() -> Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool(_limit or default_limit())
        return _pool


def set_worker_limit(limit: int | None) -> None:
    global _limit
    _limit = limit
    if _pool is not None:
        _pool.set_limit(limit or default_limit())


def stop_pool() -> Pool | None:
    global _pool
    with _pool_lock:
        old, _pool = _pool, None
    if old is not None:
        old.stop()
    return old


def reset_after_fork() -> None:
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()
    _local.item = None
    _local.pool = None
