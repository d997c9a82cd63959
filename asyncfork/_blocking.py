"""Blocking a thread until Futures are done, without deadlocks and with Ctrl-C let through.

A worker thread that blocks lends its pool slot out, and first runs inline the
queued sync forks it is about to wait on ("helping"), so recursive sync fork/wait
cannot starve the pool. It helps only where that cannot make the wait end late or
out of order: see ``help_before_blocking``.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import _instruments, _threads
from ._caller import trio_token
from ._errors import DeadlockError, blocks_the_loop
from ._instruments import HOOKS
from ._reenter import hidden_loop, wait_for_lock
from ._scope import CURRENT, check_not_waiting_on_itself

if TYPE_CHECKING:
    from ._future import Future

_get_running_loop = asyncio._get_running_loop


def blocking_acquire(lock: threading.Lock, timeout: float | None) -> bool:
    """Block on ``lock``; an asyncfork worker lends its pool slot out meanwhile."""
    pool: Any = _threads.on_worker_thread()
    if pool is None:
        pool = _threads._local.lender  # a Dask task's thread (asyncfork.dask), else None
        if pool is None:
            loop = hidden_loop()  # a serial sync fork on its loop's thread: step that loop
            if loop is not None:
                return wait_for_lock(lock, timeout, loop)
            return _threads.acquire(lock, timeout)
        if lock.acquire(blocking=False):
            return True  # no need to block: keep the slot
    pool.lend_slot()
    try:
        return _threads.acquire(lock, timeout)
    finally:
        pool.reclaim_slot()


def failed(fut: Future[Any]) -> bool:
    return fut.cancelled() or fut._exception is not None


class Waker:
    """A done-callback that counts completions and fires once: all done, or a failure.

    Futures of several loops call it from several threads, and it takes no lock:
    every call but the last takes a token with ``pop()``, one atomic step, so
    exactly one call finds none left; firing is claimed the same way.
    """

    __slots__ = ("_tokens", "_unfired", "fail_fast", "fire", "first_failure")

    def __init__(self, remaining: int, fail_fast: bool, fire: Any) -> None:
        self._tokens = [None] * (remaining - 1)
        self._unfired = [None]
        self.fail_fast = fail_fast
        self.first_failure: Future[Any] | None = None
        self.fire = fire  # None once the waiter has gone

    def __call__(self, fut: Future[Any]) -> None:
        if self.fail_fast and failed(fut):
            self._fire(fut)
            return
        try:
            self._tokens.pop()
        except IndexError:
            self._fire(None)  # the last one

    def _fire(self, failure: Future[Any] | None) -> None:
        try:
            self._unfired.pop()
        except IndexError:
            return  # fired already
        if failure is not None:
            self.first_failure = failure
        fire = self.fire
        if fire is not None:
            fire()


def done_failure(futs: Sequence[Future[Any]]) -> Future[Any] | None:
    """The first of ``futs`` (in input order) that is done and failed, if any."""
    for fut in futs:
        if fut.done() and failed(fut):
            return fut
    return None


def prepare(futs: Sequence[Future[Any]], what: str) -> list[Future[Any]]:
    if CURRENT.get() is not None:  # else no fork's code runs here: it waits on no ancestor
        for fut in futs:
            if not fut.done():
                check_not_waiting_on_itself(fut, what)
    return [fut for fut in futs if not fut.done()]


def help_before_blocking(pending: list[Future[Any]], fail_fast: bool) -> bool:
    """On a worker thread, about to block without a timeout: run queued ``pending`` forks here.

    A call run inline ends before the wait can look at anything else, so a worker
    helps only a wait that could not end before that call does: one that needs every
    pending Future (one left, or ``return_exceptions=True``, not fail-fast). A
    fail-fast wait over several unfinished Futures, and any wait with a timeout,
    block and lend the slot instead. So does a thread already ``MAX_HELP_DEPTH``
    helped forks deep. True if it ran any.
    """
    if fail_fast and len(pending) > 1:
        return False
    if _threads.on_worker_thread() is None:
        return False  # plain threads never help: sync forks always run in worker threads
    helped = False
    for fut in pending:
        item = fut._item
        if type(item) is _threads.WorkItem and item.state == _threads.QUEUED:
            helped = _threads.help_run(item) or helped
    return helped


def block_until_done(
    futs: Sequence[Future[Any]], timeout: float | None, what: str, fail_fast: bool = True
) -> Future[Any] | None:
    """Block this thread until every Future is done (or, fail-fast, one has failed).

    Returns the first failure seen in completion order, if any.
    """
    if _get_running_loop() is not None:
        raise _would_block(what)
    pending = prepare(futs, what)
    if not HOOKS:
        return _block(futs, pending, timeout, what, fail_fast)
    # Announced before any helping, so the wait's record spans the inline runs too.
    with Announced(futs):
        return _block(futs, pending, timeout, what, fail_fast)


def _block(
    futs: Sequence[Future[Any]],
    pending: list[Future[Any]],
    timeout: float | None,
    what: str,
    fail_fast: bool,
) -> Future[Any] | None:
    if not pending:
        return None
    if fail_fast and (failure := done_failure(futs)) is not None:
        return failure
    if trio_token() is not None:  # sync code on trio's thread: blocking it freezes trio
        raise _would_block(what)
    if timeout is None and help_before_blocking(pending, fail_fast):
        pending = [fut for fut in pending if not fut.done()]
        if fail_fast and (failure := done_failure(futs)) is not None:
            return failure
        if not pending:
            return None
    released = threading.Lock()
    released.acquire()
    waker = Waker(len(pending), fail_fast, released.release)
    try:
        with Registered(pending, waker):
            if not blocking_acquire(released, timeout):
                raise timed_out(futs, timeout, what)
    except KeyboardInterrupt:
        for fut in pending:
            fut.cancel("KeyboardInterrupt while waiting")
        raise
    return waker.first_failure


def _would_block(what: str) -> DeadlockError:
    return blocks_the_loop(
        f"{what} on an unfinished Future",
        "write `await fut`, or `await af.wait_async(futs)` for several",
    )


def timed_out(futs: Sequence[Future[Any]], seconds: float | None, what: str) -> TimeoutError:
    """The TimeoutError of a wait on ``futs`` that gave up: the forks go on."""
    unfinished = sum(not fut.done() for fut in futs)
    return TimeoutError(
        f"{what} timed out after {seconds}s with {unfinished} of {len(futs)} "
        "Futures unfinished (they go on running)"
    )


class Announced:
    """A wait on ``futs``, announced to instruments for the ``with`` block.

    Every Future waited on is announced, finished or not, so a trace's graph does not
    depend on timing; the callers enter it only ``if HOOKS:``. A Future that is done
    already is waited on for no time: see :func:`waited_at_once`.
    """

    __slots__ = ("futs",)

    def __init__(self, futs: Sequence[Future[Any]]) -> None:
        self.futs = futs

    def __enter__(self) -> Announced:
        try:
            wait_hooks("wait_began", self.futs)
        except BaseException:  # a Ctrl-C in a hook: close what was opened
            wait_hooks("wait_ended", self.futs)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        wait_hooks("wait_ended", self.futs)


def waited_at_once(futs: Sequence[Future[Any]]) -> None:
    """A wait that found every Future done: announce it as one that began and ended at once."""
    with Announced(futs):
        pass


class Registered:
    """A wait's ``waker`` on each of its ``pending`` Futures, for the ``with`` block.

    On entry the waker is added to each Future (one that raises, its loop closed,
    still ends the wait); on exit it is disarmed and taken back. Every way of waiting
    (a blocked thread, an asyncio task, a trio task) registers through it; the wait
    is announced to instruments around it, by :class:`Announced`.
    """

    __slots__ = ("entries", "pending", "waker")

    def __init__(self, pending: Sequence[Future[Any]], waker: Waker) -> None:
        self.pending = pending
        self.waker = waker
        self.entries: list[list[Any]] = []

    def __enter__(self) -> Registered:
        try:
            for fut in self.pending:
                self.entries.append(fut._add_waker(self.waker))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.waker.fire = None  # no later wake-ups for a waiter that has gone
        leave(self.pending[: len(self.entries)], self.entries)


def forget(futs: Iterable[Future[Any]], callback: object) -> None:
    """A waiter is leaving: take its callback off the Futures that are still pending."""
    for fut in futs:
        fut._discard_callback(callback)


def leave(futs: Sequence[Future[Any]], entries: Sequence[list[Any]]) -> None:
    """A wait is leaving: take its wakers (``_add_waker``'s entries) off the pending Futures."""
    for fut, entry in zip(futs, entries, strict=True):
        if not fut.done():  # else its settle runs the entry, or has
            fut._drop_waker(entry)


def wait_hooks(name: str, futs: Iterable[Future[Any]]) -> None:
    for fut in futs:
        _instruments.call(name, fut)
