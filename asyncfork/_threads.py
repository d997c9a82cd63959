"""The worker pool that runs sync forks: reuse, a limit, helping and slot lending.

Workers count against the limit only while they run a fork's code. A worker
that blocks in ``wait`` lends its slot out (another worker may start), and a
worker that waits on a queued fork runs it inline ("helping"), so recursive
sync fork/wait cannot starve the pool. Threads beyond what the limit and the
lent slots need exit after ``IDLE_SECONDS`` idle.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import Context
from typing import TYPE_CHECKING, Any

from . import _carriers, _instruments
from ._instruments import HOOKS

if TYPE_CHECKING:
    from ._future import Future

CREATED = 0  # not yet handed to the pool (being launched, or waiting for a group slot)
QUEUED = 1
RUNNING = 2
DROPPED = 3  # cancelled before it started: never runs
FINISHED = 4  # the function has returned (or raised)
_EXIT = object()  # tells a worker thread to end


# The default worker limit: anyio's and trio's thread offload default. Threads in Python are
# for blocking I/O, so the limit is not tied to the number of CPUs.
DEFAULT_LIMIT = 40

# How long a parked worker waits for work before it exits, if the pool has more threads
# than the limit and the lent slots need (anyio's and trio's idle time).
IDLE_SECONDS = 10.0

# The most queued forks one thread runs inline, nested (helping): past it a waiting worker
# blocks and lends its slot instead, so a deep chain of sync fork/wait spreads over threads
# rather than growing one thread's stack (about 5 frames a level) into a RecursionError.
MAX_HELP_DEPTH = 32

# How often the main thread wakes while it blocks, to notice a Ctrl-C that the kernel
# delivered to another thread (a blocked lock wait is interrupted only in the thread
# that received the signal). Ctrl-C must raise KeyboardInterrupt within 0.2 s.
_MAIN_THREAD_SLICE = 0.05

_TIMEOUT_MAX = threading.TIMEOUT_MAX


def wait_in_slices(attempt: Callable[[float], bool], timeout: float | None) -> bool:
    """Call ``attempt(seconds)`` (a blocking wait) until it succeeds or ``timeout`` passes.

    Off the main thread it is one wait; on the main thread, slices of at most
    ``_MAIN_THREAD_SLICE``, so that Python gets to run a pending Ctrl-C handler.
    A timeout too large for a lock wait (``threading.TIMEOUT_MAX``, about 292
    years; ``inf``) means no timeout.
    """
    if timeout is not None and timeout >= _TIMEOUT_MAX:
        timeout = None
    if _local.turn is not None:  # a sync fork run by schedule exploration: its loop decides
        return bool(_local.turn.wait(attempt, timeout))
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
    return DEFAULT_LIMIT


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
        cpu = helped = 0.0
        try:
            if hooked:  # inside the try: a hook's interrupt is this fork's outcome
                cpu = time.thread_time()
                helped = _local.helped_cpu
                # In the fork's own context, so an instrument may set context for its code.
                self.context.run(
                    _instruments.call, "fork_started", self.future, threading.current_thread().name
                )
            carried = self.future._carried
            if carried is None:
                value = self.context.run(self.func, *self.args, **self.kwargs)
            else:  # thread-bound state from fork(); this thread's own is restored after
                entered = _carriers.enter(carried)
                try:
                    value = self.context.run(self.func, *self.args, **self.kwargs)
                finally:
                    _carriers.exit_(entered)
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
                try:
                    # Not the CPU of forks this thread ran inline meanwhile: theirs are theirs.
                    busy = time.thread_time() - cpu - (_local.helped_cpu - helped)
                    _instruments.call("fork_busy", self.future, busy)
                except BaseException as exc:  # a Ctrl-C landing in a hook
                    error = error or exc
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
    helping = 0  # how many queued forks this thread runs inline, nested
    helped_cpu = 0.0  # CPU seconds of the forks it ran inline (read only by instruments)
    # A slot this thread lends while it blocks, if it is another pool's (a Dask task's
    # thread running its fork: asyncfork.dask), with lend_slot() and reclaim_slot().
    lender: Any = None
    # On a thread schedule exploration runs a sync fork in: its turn (asyncfork._explore_loop).
    turn: Any = None


_local = _Local()


def running_item() -> WorkItem | None:
    """The work item whose code runs on this thread, if it is a sync fork's thread."""
    return _local.item


def on_worker_thread() -> Pool | None:
    """The pool this thread works for, or None if it is not an asyncfork worker."""
    return _local.pool


def slot_lender() -> Any:
    """Who lends this thread's slot while it blocks: its asyncfork pool, the Dask slot of a
    task running asyncfork code (asyncfork.dask), or None."""
    return _local.pool or _local.lender


def help_run(item: WorkItem) -> bool:
    """On a worker thread: run the queued ``item`` right here, if it is still queued.

    False if another thread took it, or if this thread already runs ``MAX_HELP_DEPTH``
    helped forks nested (the caller then blocks and lends its slot instead).
    """
    pool = _local.pool
    if pool is None or _local.helping >= MAX_HELP_DEPTH or not pool.claim(item):
        return False
    _local.helping += 1
    helped, start = _local.helped_cpu, time.thread_time()
    try:
        item.run()
    finally:
        _local.helping -= 1
        # The whole inline call, forks it helped included, once: not counted twice.
        _local.helped_cpu = helped + time.thread_time() - start
    return True


class Pool:
    """asyncfork's worker threads. All bookkeeping happens under one lock."""

    def __init__(self, limit: int) -> None:
        # Shared by every pool: after af.shutdown() the old pool's workers finish its
        # items while cancel() finds them through the new pool, so one lock must guard an
        # item's state, whichever pool it was queued in.
        self._lock = _items_lock
        self._queue: deque[WorkItem] = deque()
        self._idle: list[threading.Lock] = []
        self._limit = limit
        self._active = 0  # workers running a fork's code and not blocked in wait
        self._waking = 0  # workers woken or started that have not yet looked at the queue
        self._lent = 0  # workers blocked in a wait, their slots lent out
        self._stopping = False
        self._names = itertools.count(1)
        self.threads: set[threading.Thread] = set()

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self._limit = limit
            failed = self._dispatch_locked()
        if failed:
            _fail(failed)

    def submit(self, item: WorkItem) -> None:
        if explore_submit is not None and explore_submit(item):
            return  # a fork of an exploring loop: that loop runs it (asyncfork._explore_loop)
        with self._lock:
            if item.state != CREATED:
                return  # dropped (cancelled) on its way here
            item.state = QUEUED
            self._queue.append(item)
            failed = self._dispatch_locked()
        if failed:
            _fail(failed)

    def _dispatch_locked(self) -> list[tuple[WorkItem, BaseException]] | None:
        """Wake or start workers for queued items while slots are free.

        If a thread cannot be started (``can't start new thread``), the queued items
        wait for a worker that is running a fork's code or about to look at the queue;
        if there is none, nobody would ever run them: they are taken off the queue and
        returned, with the error, to be failed once the lock is released.
        """
        while self._active + self._waking < self._limit and self._waking < len(self._queue):
            self._waking += 1
            if self._idle:
                self._idle.pop().release()
                continue
            thread = threading.Thread(
                target=self._work,
                name=f"asyncfork-worker-{next(self._names)}",
                daemon=True,
            )
            self.threads.add(thread)
            try:
                thread.start()
            except Exception as exc:  # a thread or memory limit
                self._waking -= 1
                self.threads.discard(thread)
                if self._active + self._waking:
                    return None  # a worker comes back to the queue: the items wait for it
                return self._unqueue_locked(exc)
        return None

    def _unqueue_locked(self, exc: BaseException) -> list[tuple[WorkItem, BaseException]]:
        """Take every queued item off the queue: they will never run."""
        failed: list[tuple[WorkItem, BaseException]] = []
        queue = self._queue
        while queue:
            item = queue.popleft()
            if item.state == QUEUED:
                item.state = FINISHED
                error = RuntimeError(
                    f"fork {item.future.name!r} could not start: "
                    f"no worker thread could be started ({exc})"
                )
                error.__cause__ = exc
                failed.append((item, error))
        return failed

    def _work(self) -> None:
        _local.pool = self
        wake = threading.Lock()
        lock = self._lock
        with lock:
            self._waking -= 1
            item = self._next_locked(wake)
        while item is not _EXIT:
            if item is None:
                # Parked: until submit() or stop() releases `wake`, or the idle time passes.
                if wake.acquire(timeout=IDLE_SECONDS):
                    wake.release()
                    with lock:
                        self._waking -= 1
                        item = self._next_locked(wake)
                else:
                    with lock:
                        if self._reap_locked(wake):
                            return
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

    def _reap_locked(self, wake: threading.Lock) -> bool:
        """A worker idle for ``IDLE_SECONDS``: True if it is not needed and is to exit.

        The pool keeps as many threads as the limit and the lent slots need.
        """
        if len(self.threads) <= self._limit + self._lent:
            return False
        try:
            self._idle.remove(wake)
        except ValueError:
            return False  # woken meanwhile: `wake` is released, and it has work to look at
        self.threads.discard(threading.current_thread())
        return True

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
            self._lent += 1
            failed = self._dispatch_locked()
        if failed:
            _fail(failed)

    def reclaim_slot(self) -> None:
        with self._lock:
            self._active += 1
            self._lent -= 1

    def stop(self) -> None:
        """Let idle workers exit; busy ones exit once the queue is empty."""
        with self._lock:
            self._stopping = True
            while self._idle:
                self._waking += 1
                self._idle.pop().release()


class Server:
    """The calling thread serving ``pool``'s queue as one more worker, until :meth:`finish`.

    For an exit where no worker thread can be started (Python 3.12): the thread
    that drains takes part in the pool as a worker does, parked in its idle list
    so that a queued fork wakes it.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.wake = threading.Lock()
        self.finished = threading.Event()
        self._woken_by_finish = False

    def finish(self) -> None:
        """From any thread: stop serving; a parked server returns at once."""
        self.finished.set()
        with self.pool._lock:
            try:
                self.pool._idle.remove(self.wake)
            except ValueError:
                return  # not parked: it looks at `finished` before it parks again
            self._woken_by_finish = True
            self.wake.release()

    def run(self) -> None:
        """Run queued forks on this thread until :meth:`finish` is called."""
        pool, wake = self.pool, self.wake
        lock = pool._lock
        previous = _local.pool
        _local.pool = pool  # a served fork that waits helps, as on a worker
        with lock:
            # One more running worker over one more slot: a failed thread start then
            # leaves forks queued for it (the pool fails them only when no worker runs),
            # even while a fork it serves lends its slot in a wait.
            pool._limit += 1
            pool._active += 1
        try:
            while True:
                with lock:
                    if self.finished.is_set():
                        return
                    item = pool._next_locked(wake)
                if isinstance(item, WorkItem):
                    item.run()
                    with lock:
                        pool._active -= 1
                    continue
                if item is not None:  # the pool is stopping (a racing shutdown): just wait
                    wait_in_slices(self.finished.wait, None)
                    return
                try:
                    acquire(wake, None)
                finally:
                    with lock:
                        if wake in pool._idle:  # interrupted while parked
                            pool._idle.remove(wake)
                        elif not self._woken_by_finish:
                            pool._waking -= 1  # woken by the pool for a queued fork
                        self._woken_by_finish = False
                wake.release()
        finally:
            _local.pool = previous
            with lock:
                pool._limit -= 1
                pool._active -= 1


def can_start_threads() -> bool:
    """Whether this interpreter still starts threads (Python 3.12 refuses at exit)."""
    try:
        probe = threading.Thread(target=_nothing, name="asyncfork-exit-probe", daemon=True)
        probe.start()
    except RuntimeError:
        return False
    probe.join()
    return True


def _fail(failed: list[tuple[WorkItem, BaseException]]) -> None:
    """Fail items no worker thread could be started for (outside the pool's lock)."""
    for item, error in failed:
        item.func = _nothing
        item.args = ()
        item.kwargs = {}
        item.finish(item, None, error)


# Set while an exploring loop is open: True if it took the item (that loop runs it).
explore_submit: Callable[[WorkItem], bool] | None = None

_pool: Pool | None = None
_pool_lock = threading.Lock()
_items_lock = threading.Lock()  # every pool's bookkeeping, and every work item's state
_limit: int | None = None


def busy_workers() -> int:
    """How many of the pool's workers run a sync call (or lend their slot in a wait), plus
    the sync forks queued for one: what may still post an outcome to a loop."""
    current = _pool
    if current is None:
        return 0
    with current._lock:
        queued = sum(1 for item in current._queue if item.state == QUEUED)
        return current._active + current._lent + queued


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
    global _pool, _pool_lock, _items_lock
    _pool = None
    _pool_lock = threading.Lock()
    _items_lock = threading.Lock()
    _local.item = None
    _local.pool = None
