"""Cancellation, timeouts, blocking and deadlocks, ``wait`` and ``as_completed``.

DESIGN sections 5 (Cancellation), 6 (Timeouts), 7 (Blocking and deadlocks) and the
``wait`` / ``as_completed`` rows of section 2. Every test waits with a bound, so a
deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import inspect
import logging
import math
import threading
import time

import pytest
from helpers import T, forever

import asyncfork as af

# -- helpers ---------------------------------------------------------------------------


def flush_background_loop() -> None:
    """Return once the background loop has run every callback posted before this call."""

    async def noop() -> None:
        return None

    af.wait(af.fork(noop), timeout=T)


# == 5. Cancellation ==================================================================


async def test_cancel_running_coroutine_fork_from_its_loop() -> None:
    """fut.cancel() from the fork's own loop: the fork gets CancelledError at its await."""
    started = asyncio.Event()
    seen: list[str] = []

    async def body() -> None:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            seen.append("cancelled at await")
            raise

    fut = af.fork(body)
    await started.wait()
    assert fut.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert fut.cancelled()
    assert seen == ["cancelled at await"]
    assert fut.cancel() is False  # already finished


async def test_cancel_running_coroutine_fork_from_a_plain_thread() -> None:
    """fut.cancel() from any thread: a plain thread cancels a fork on this loop."""
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await forever()

    fut = af.fork(body)
    await started.wait()
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(fut.cancel()))
    thread.start()
    await asyncio.to_thread(thread.join, T)
    assert answer == [True]
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fut, T)
    assert fut.cancelled()


def test_cancel_background_fork_from_a_plain_thread(loop_kind: str) -> None:
    """fut.cancel() from a thread that is neither the fork's loop nor the forking thread."""
    started = threading.Event()

    async def body() -> None:
        started.set()
        await forever()

    fut = af.fork(body)
    assert started.wait(T)
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(fut.cancel()))
    thread.start()
    thread.join(T)
    assert answer == [True]
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert fut.cancelled()


async def test_coroutine_fork_cancelled_before_start_never_runs() -> None:
    """A coroutine fork that has not started never runs."""
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    fut = af.fork(body)
    assert fut.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await fut
    for _ in range(5):  # give the loop every chance to (wrongly) step it
        await asyncio.sleep(0)
    assert ran == []
    assert fut.cancelled()


def test_background_coroutine_fork_cancelled_before_start_never_runs(loop_kind: str) -> None:
    """A coroutine fork forked onto the background loop and cancelled at once never runs."""
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    # Hold the background loop in one step, so that the fork cannot start before the
    # cancel arrives (from this thread, "right after fork" is otherwise a race).
    holding = threading.Event()
    release = threading.Event()

    async def hold_the_loop() -> None:
        holding.set()
        release.wait(T)

    holder = af.fork(hold_the_loop)
    assert holding.wait(T)
    fut = af.fork(body)
    assert fut.cancel() is True
    release.set()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    holder.result(timeout=T)
    flush_background_loop()
    assert ran == []


async def test_cancelled_only_after_all_cleanup_of_fork_and_children() -> None:
    """A running fork's children are cancelled; its Future is cancelled when all cleanup ends."""
    log: list[str] = []
    ready = asyncio.Event()
    child_futs: list[af.Future[None]] = []

    async def child() -> None:
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            log.append("child cleanup")

    async def parent() -> None:
        child_futs.append(af.fork(child))
        ready.set()
        try:
            await forever()
        except asyncio.CancelledError:
            log.append("parent got CancelledError")
            raise
        finally:
            await asyncio.sleep(0.01)
            log.append("parent cleanup")

    fut = af.fork(parent)
    await ready.wait()
    await asyncio.sleep(0)  # let the child start its body
    at_done: list[list[str]] = []
    fut.add_done_callback(lambda f: at_done.append(sorted(log)))
    assert fut.cancel()
    assert not fut.done()  # the cleanup has not run yet
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fut, T)
    assert at_done == [["child cleanup", "parent cleanup", "parent got CancelledError"]]
    assert child_futs[0].cancelled()


async def test_cancelling_a_waiter_task_does_not_cancel_the_awaited_future() -> None:
    """Cancelling a task awaiting a Future leaves the Future (and its other waiters) alone."""
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 42

    fut = af.fork(work)

    async def waiter() -> int:
        return await fut

    first = asyncio.create_task(waiter())
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # both are now awaiting fut
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not fut.done()
    release.set()
    assert await asyncio.wait_for(second, T) == 42
    assert not fut.cancelled()
    assert fut.result() == 42


async def test_cancelling_a_waiter_fork_does_not_cancel_the_awaited_future() -> None:
    """Same rule when the waiter is itself a fork (a sibling, not the parent)."""
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "value"

    fut = af.fork(work)

    async def waiter() -> str:
        waiting.set()
        return await fut

    w1 = af.fork(waiter)
    w2 = af.fork(waiter)
    await waiting.wait()
    await asyncio.sleep(0)
    w1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(w1, T)
    assert not fut.done()
    release.set()
    assert await asyncio.wait_for(w2, T) == "value"
    assert not fut.cancelled()


# -- sync forks -------------------------------------------------------------------------


def test_queued_sync_fork_never_runs(loop_kind: str, one_worker: None) -> None:
    """A sync fork still queued for a worker, when cancelled, never runs."""
    release = threading.Event()
    started = threading.Event()
    ran: list[bool] = []

    def blocker() -> None:
        started.set()
        release.wait(T)

    def queued() -> None:
        ran.append(True)

    try:
        first = af.fork(blocker)
        assert started.wait(T)
        second = af.fork(queued)
        assert second.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            second.result(timeout=T)  # cancelled while the worker is still blocked
    finally:
        release.set()
    first.result(timeout=T)
    assert af.wait(af.fork(lambda: "after"), timeout=T) == "after"  # the worker is free again
    assert ran == []


def test_running_sync_fork_on_cancel_wait_settles_when_function_returns(loop_kind: str) -> None:
    """on_cancel="wait": cancelled only when the function returns; its result is discarded."""
    started = threading.Event()
    release = threading.Event()
    returned: list[bool] = []

    def body() -> str:
        started.set()
        release.wait(T)
        returned.append(True)
        return "discarded"

    fut = af.fork(body)
    try:
        assert started.wait(T)
        assert fut.cancel() is True
        flush_background_loop()  # the cancellation request has been handled
        assert not fut.done()
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert returned == [True]
    assert fut.cancelled()


def test_cancelled_sync_fork_that_raises_fails_with_its_error(loop_kind: str) -> None:
    """A cancelled sync fork that raises (not CancelledError) fails with that error."""
    started = threading.Event()
    release = threading.Event()
    error = ValueError("not lost")

    def body() -> None:
        started.set()
        release.wait(T)
        raise error

    fut = af.fork(body)
    try:
        assert started.wait(T)
        assert fut.cancel()
        flush_background_loop()
    finally:
        release.set()
    with pytest.raises(ValueError) as info:
        fut.result(timeout=T)
    assert info.value is error
    assert not fut.cancelled()


def test_check_cancelled_in_sync_fork(loop_kind: str) -> None:
    """check_cancelled() returns None before cancel, raises CancelledError after it."""
    started = threading.Event()
    cancel_handled = threading.Event()
    seen: list[object] = []

    def body() -> str:
        seen.append(af.check_cancelled())
        started.set()
        assert cancel_handled.wait(T)
        try:
            af.check_cancelled()
        except BaseException as exc:
            seen.append(type(exc))
            raise
        return "not cancelled?"

    fut = af.fork(body)
    try:
        assert started.wait(T)
        assert fut.cancel()
        flush_background_loop()
    finally:
        cancel_handled.set()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert seen == [None, asyncio.CancelledError]
    assert fut.cancelled()


def test_check_cancelled_outside_a_sync_fork_raises_runtime_error() -> None:
    """check_cancelled() anywhere but a sync fork's worker thread raises RuntimeError."""
    with pytest.raises(RuntimeError):
        af.check_cancelled()
    errors: list[BaseException] = []

    def in_plain_thread() -> None:
        try:
            af.check_cancelled()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_plain_thread)
    thread.start()
    thread.join(T)
    assert len(errors) == 1


async def test_check_cancelled_in_a_coroutine_fork_raises_runtime_error() -> None:
    """check_cancelled() in a coroutine fork raises RuntimeError (cancellation comes at await)."""

    async def body() -> None:
        af.check_cancelled()

    with pytest.raises(RuntimeError):
        await af.fork(body)


def test_on_cancel_abandon(
    loop_kind: str, one_worker: None, caplog: pytest.LogCaptureFixture
) -> None:
    """on_cancel="abandon": children cancelled and joined, then cancelled; thread left behind."""
    caplog.set_level(logging.DEBUG, logger="asyncfork")
    started = threading.Event()
    child_started = threading.Event()
    release = threading.Event()
    log: list[str] = []

    async def child() -> None:
        child_started.set()
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            log.append("child cleanup")

    def blocked() -> str:
        af.fork(child)
        started.set()
        release.wait(T)
        log.append("thread returned")
        return "dropped"

    try:
        fut = af.fork.options(on_cancel="abandon")(blocked)
        assert started.wait(T)
        assert child_started.wait(T)
        at_done: list[list[str]] = []
        fut.add_done_callback(lambda f: at_done.append(list(log)))
        assert fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            fut.result(timeout=T)  # while the function is still blocked
        assert at_done == [["child cleanup"]]
        # The thread keeps its worker slot until it returns.
        ran = threading.Event()
        after = af.fork(ran.set)
        assert not ran.wait(0.1)
    finally:
        release.set()
    assert after.result(timeout=T) is None  # settled after the abandoned result was dropped
    assert log == ["child cleanup", "thread returned"]
    assert fut.cancelled()
    del fut
    gc.collect()
    assert [r for r in caplog.records if r.name.startswith("asyncfork")] == []


# -- the cancellation exception ------------------------------------------------------


def test_cancellation_exception_is_asyncio_cancelled_error_in_sync_code(loop_kind: str) -> None:
    """result() and wait() raise asyncio.CancelledError (not concurrent.futures')."""
    fut = af.fork(forever)
    fut.cancel()
    for call in (lambda: fut.result(timeout=T), lambda: af.wait(fut, timeout=T)):
        with pytest.raises(BaseException) as info:
            call()
        assert type(info.value) is asyncio.CancelledError
        assert not isinstance(info.value, concurrent.futures.CancelledError)
    with pytest.raises(BaseException) as info:
        af.wait([fut], timeout=T)
    assert type(info.value) is asyncio.CancelledError


async def test_cancellation_exception_is_asyncio_cancelled_error_in_async_code() -> None:
    """await fut and await af.wait(fut) raise asyncio.CancelledError."""
    fut = af.fork(forever)
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    with pytest.raises(asyncio.CancelledError):
        await af.wait(fut)
    with pytest.raises(asyncio.CancelledError):
        await af.wait([fut])
    # The test's own task is not left cancelled.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


# == 6. Timeouts =======================================================================


def test_wait_and_result_timeout_only_observe(loop_kind: str) -> None:
    """wait(timeout=) and result(timeout=) raise TimeoutError; the work goes on."""
    release = threading.Event()

    def work() -> int:
        release.wait(T)
        return 7

    fut = af.fork(work)
    try:
        with pytest.raises(TimeoutError):
            af.wait(fut, timeout=0.02)
        with pytest.raises(TimeoutError):
            af.wait([fut], timeout=0.02)
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.02)
        assert not fut.done()
    finally:
        release.set()
    assert fut.result(timeout=T) == 7


async def test_awaited_wait_timeout_only_observes() -> None:
    """await af.wait(..., timeout=) raises TimeoutError; the work goes on."""
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 8

    fut = af.fork(work)
    with pytest.raises(TimeoutError):
        await af.wait(fut, timeout=0.02)
    assert not fut.done()
    release.set()
    assert await asyncio.wait_for(fut, T) == 8


async def test_fork_timeout_cancels_coroutine_after_cleanup() -> None:
    """fork.options(timeout=) cancels at the deadline; TimeoutError from CancelledError."""
    log: list[str] = []

    async def slow() -> None:
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            log.append("cleanup")

    fut = af.fork.options(timeout=0.05)(slow)
    at_done: list[list[str]] = []
    fut.add_done_callback(lambda f: at_done.append(list(log)))
    with pytest.raises(TimeoutError) as info:
        await asyncio.wait_for(fut, T)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert at_done == [["cleanup"]]


def test_fork_timeout_cancels_background_coroutine_after_cleanup(loop_kind: str) -> None:
    """The same from sync code: result() raises TimeoutError after the fork's finally ran."""
    log: list[str] = []

    async def slow() -> None:
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            log.append("cleanup")

    fut = af.fork.options(timeout=0.05)(slow)
    with pytest.raises(TimeoutError) as info:
        fut.result(timeout=T)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert log == ["cleanup"]


def test_fork_timeout_sync_fork_raises_when_function_returns(loop_kind: str) -> None:
    """A timed-out running sync fork (on_cancel="wait") raises TimeoutError once it returns."""
    timed_out = threading.Event()
    release = threading.Event()

    async def watcher() -> None:  # a child: cancelled when its parent is
        try:
            await forever()
        finally:
            timed_out.set()

    def body() -> str:
        af.fork(watcher)
        release.wait(T)
        return "discarded"

    fut = af.fork.options(timeout=0.05)(body)
    try:
        assert timed_out.wait(T)  # the deadline has passed and the fork was cancelled
        flush_background_loop()
        assert not fut.done()  # the function has not returned yet
    finally:
        release.set()
    with pytest.raises(TimeoutError) as info:
        fut.result(timeout=T)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


def test_fork_timeout_counts_queueing_time(loop_kind: str, one_worker: None) -> None:
    """The deadline counts from fork(): a sync fork queued behind a busy worker times out."""
    started = threading.Event()
    release = threading.Event()
    ran: list[bool] = []

    def blocker() -> None:
        started.set()
        release.wait(T)

    def queued() -> None:
        ran.append(True)

    try:
        first = af.fork(blocker)
        assert started.wait(T)
        fut = af.fork.options(timeout=0.05)(queued)
        with pytest.raises(TimeoutError) as info:
            fut.result(timeout=T)  # raised while the only worker is still blocked
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert not first.done()
    finally:
        release.set()
    first.result(timeout=T)
    assert af.wait(af.fork(lambda: 1), timeout=T) == 1  # the worker has moved on
    assert ran == []


async def test_timeout_zero_coroutine_fork_never_starts() -> None:
    """timeout=0 on a coroutine fork: it never starts and raises TimeoutError."""
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    fut = af.fork.options(timeout=0)(body)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fut, T)
    for _ in range(5):
        await asyncio.sleep(0)
    assert ran == []


def test_timeout_zero_sync_fork_never_starts(loop_kind: str) -> None:
    """timeout=0 on a sync fork: it never starts and raises TimeoutError."""
    ran: list[bool] = []

    def body() -> None:
        ran.append(True)

    fut = af.fork.options(timeout=0)(body)
    with pytest.raises(TimeoutError):
        fut.result(timeout=T)
    assert af.wait(af.fork(lambda: 1), timeout=T) == 1
    flush_background_loop()
    assert ran == []


@pytest.mark.parametrize("bad", [-1.0, -0.5, math.nan], ids=["minus1", "minus_half", "nan"])
def test_negative_or_nan_timeout_is_value_error(loop_kind: str, bad: float) -> None:
    """Negative or NaN timeouts on any call: ValueError."""
    release = threading.Event()

    def work() -> int:
        release.wait(0.5)  # bounded: a bad timeout that blocks instead of raising fails, not hangs
        return 1

    fut = af.fork(work)
    try:
        with pytest.raises(ValueError):
            af.fork.options(timeout=bad)
        with pytest.raises(ValueError):
            af.wait(fut, timeout=bad)
        with pytest.raises(ValueError):
            af.wait([fut], timeout=bad)
        with pytest.raises(ValueError):
            af.group(timeout=bad)
        with pytest.raises(ValueError):
            af.as_completed([fut], timeout=bad)
        with pytest.raises(ValueError):
            fut.result(timeout=bad)
        with pytest.raises(ValueError):
            fut.exception(timeout=bad)
    finally:
        release.set()
    assert fut.result(timeout=T) == 1


def test_negative_timeout_on_finished_future_result_is_value_error(loop_kind: str) -> None:
    """Negative timeouts on any call raise ValueError, even result() of a finished Future."""
    fut = af.fork(lambda: 1)
    assert fut.result(timeout=T) == 1
    with pytest.raises(ValueError):
        fut.result(timeout=-1)
    with pytest.raises(ValueError):
        af.wait(fut, timeout=-1)


# == 7. Blocking and deadlocks =========================================================


async def test_wait_in_loop_thread_returns_an_awaitable() -> None:
    """wait in a thread that runs an event loop returns an awaitable instead of blocking."""

    async def work() -> int:
        return 3

    fut = af.fork(work)
    pending = af.wait(fut)
    assert inspect.isawaitable(pending)
    assert await pending == 3
    assert await af.wait([fut, fut]) == [3, 3]


async def test_unawaited_wait_awaitable_warns() -> None:
    """An awaitable from wait that is never awaited produces a RuntimeWarning."""

    async def work() -> int:
        return 3

    def create_and_drop(fut: af.Future[int]) -> None:
        pending = af.wait(fut)
        del pending
        gc.collect()

    fut = af.fork(work)
    with pytest.warns(RuntimeWarning):
        create_and_drop(fut)
    assert await fut == 3


async def test_result_on_unfinished_future_in_loop_thread_is_deadlock_error() -> None:
    """result() of an unfinished Future in a loop thread raises DeadlockError at once."""

    def work() -> int:
        time.sleep(0.2)  # simulated work: if result() blocked, it would return after this
        return 1

    fut = af.fork(work)
    with pytest.raises(af.DeadlockError, match="await"):
        fut.result()
    assert not fut.done()
    assert await asyncio.wait_for(fut, T) == 1


async def test_result_on_finished_future_in_loop_thread_is_allowed() -> None:
    """result() on a finished Future is always allowed, in a loop thread too."""

    async def work() -> int:
        return 5

    fut = af.fork(work)
    await fut
    assert fut.result() == 5
    assert fut.exception() is None


async def test_sync_group_in_loop_thread_is_deadlock_error() -> None:
    """A sync `with af.group()` on a thread that runs an event loop raises DeadlockError."""
    entered: list[bool] = []
    with pytest.raises(af.DeadlockError), af.group():
        entered.append(True)
    assert entered == []


def test_recursive_sync_fib_with_two_workers(loop_kind: str, two_workers: None) -> None:
    """No pool deadlock from nesting: recursive sync fork/wait fib(15) with 2 workers."""

    def fib(n: int) -> int:
        if n < 2:
            return n
        a = af.fork(fib, n - 1)
        b = af.fork(fib, n - 2)
        return af.wait(a, timeout=T) + af.wait(b, timeout=T)

    assert af.fork(fib, 15).result(timeout=15) == 610


def test_worker_blocked_in_wait_lends_its_slot(loop_kind: str, one_worker: None) -> None:
    """While a worker is blocked in wait its slot is lent: another sync fork can run."""
    gate: concurrent.futures.Future[str] = concurrent.futures.Future()
    first_started = threading.Event()

    async def until_open() -> str:
        return await asyncio.wrap_future(gate)

    def first() -> str:
        inner = af.fork(until_open)
        first_started.set()
        return af.wait(inner, timeout=T)  # blocks the only worker...

    def opener() -> str:  # ...so this one can run only on the lent slot
        gate.set_result("open")
        return "opened"

    f1 = af.fork(first)
    assert first_started.wait(T)
    f3 = af.fork(opener)
    assert f3.result(timeout=T) == "opened"
    assert f1.result(timeout=T) == "open"


def test_worker_waiting_on_queued_sync_fork_runs_it_inline(
    loop_kind: str, one_worker: None
) -> None:
    """A worker that waits on a sync fork that has not started runs it inline (helping)."""

    def inner() -> str:
        return threading.current_thread().name

    def outer() -> tuple[str, str]:
        return threading.current_thread().name, af.wait(af.fork(inner), timeout=T)

    outer_thread, inner_thread = af.fork(outer).result(timeout=T)
    assert outer_thread == inner_thread


async def test_coroutine_fork_awaiting_its_own_future_is_deadlock_error() -> None:
    """A fork that waits on its own Future raises DeadlockError instead of hanging."""

    async def body() -> None:
        me = af.current()
        assert me is not None
        await me

    async def body_wait() -> None:
        me = af.current()
        assert me is not None
        await af.wait(me)

    with pytest.raises(af.DeadlockError):
        await asyncio.wait_for(af.fork(body), T)
    with pytest.raises(af.DeadlockError):
        await asyncio.wait_for(af.fork(body_wait), T)


async def test_coroutine_fork_awaiting_its_ancestor_is_deadlock_error() -> None:
    """A fork that waits on an ancestor's Future raises DeadlockError instead of hanging."""

    async def grandchild(ancestor: af.Future[None]) -> None:
        await ancestor

    async def child(ancestor: af.Future[None]) -> None:
        await af.fork(grandchild, ancestor)

    async def parent() -> None:
        me = af.current()
        assert me is not None
        await af.fork(child, me)

    with pytest.raises(af.DeadlockError):
        await asyncio.wait_for(af.fork(parent), T)


def test_sync_fork_waiting_on_its_own_future_is_deadlock_error(loop_kind: str) -> None:
    """A sync fork that waits on its own Future raises DeadlockError instead of hanging."""

    def body() -> None:
        me = af.current()
        assert me is not None
        af.wait(me, timeout=T)

    def body_result() -> None:
        me = af.current()
        assert me is not None
        me.result(timeout=T)

    with pytest.raises(af.DeadlockError):
        af.fork(body).result(timeout=T)
    with pytest.raises(af.DeadlockError):
        af.fork(body_result).result(timeout=T)


def test_sync_fork_waiting_on_its_parent_is_deadlock_error(loop_kind: str) -> None:
    """A sync fork that waits on its parent's Future raises DeadlockError instead of hanging."""

    def child(parent: af.Future[None]) -> None:
        af.wait(parent, timeout=T)

    def parent() -> None:
        me = af.current()
        assert me is not None
        af.wait(af.fork(child, me), timeout=T)

    with pytest.raises(af.DeadlockError):
        af.fork(parent).result(timeout=T)


# == 2. wait ============================================================================


def test_wait_returns_values_in_input_order(loop_kind: str) -> None:
    """wait(list) returns values in input order, not completion order."""
    release = threading.Event()

    def last() -> str:
        release.wait(T)
        return "last"

    def first() -> str:
        return "first"

    a = af.fork(last)
    b = af.fork(first)
    assert b.result(timeout=T) == "first"  # b completed before a
    release.set()
    assert af.wait([a, b], timeout=T) == ["last", "first"]
    assert af.wait((f for f in [b, a]), timeout=T) == ["first", "last"]


def test_wait_fails_fast_with_the_first_failure_as_is(loop_kind: str) -> None:
    """wait raises the first failure in completion order, as it is; the others go on."""
    release = threading.Event()
    early = KeyError("early")
    late = ValueError("late")

    def slow_ok() -> int:
        release.wait(T)
        return 1

    def slow_fail() -> None:
        release.wait(T)
        raise late

    def fast_fail() -> None:
        raise early

    a = af.fork(slow_ok)
    c = af.fork(slow_fail)
    b = af.fork(fast_fail)
    try:
        with pytest.raises(KeyError) as info:
            af.wait([a, c, b], timeout=T)
        assert info.value is early
        assert not a.done()
        assert not c.done()
    finally:
        release.set()
    assert a.result(timeout=T) == 1
    assert c.exception(timeout=T) is late


async def test_awaited_wait_fails_fast_with_the_first_failure_as_is() -> None:
    """await af.wait fails fast too: the first failure as it is, the others go on."""
    release = asyncio.Event()
    early = KeyError("early")

    async def slow_ok() -> int:
        await release.wait()
        return 1

    async def fast_fail() -> None:
        raise early

    a = af.fork(slow_ok)
    b = af.fork(fast_fail)
    with pytest.raises(KeyError) as info:
        await asyncio.wait_for(af.wait([a, b]), T)
    assert info.value is early
    assert not a.done()
    release.set()
    assert await asyncio.wait_for(a, T) == 1


def test_wait_return_exceptions_puts_errors_and_cancellations_in_list(loop_kind: str) -> None:
    """return_exceptions=True: exceptions (and CancelledError for cancelled forks) in the list."""
    error = ValueError("in the list")

    def ok() -> int:
        return 1

    def fails() -> None:
        raise error

    a = af.fork(ok)
    b = af.fork(fails)
    c = af.fork(forever)
    c.cancel()
    values = af.wait([a, b, c], timeout=T, return_exceptions=True)
    assert values[:2] == [1, error]
    assert values[1] is error
    assert type(values[2]) is asyncio.CancelledError


async def test_awaited_wait_return_exceptions() -> None:
    """await af.wait(..., return_exceptions=True) puts exceptions in the list, in input order."""
    error = ValueError("x")

    async def ok() -> int:
        return 1

    async def fails() -> None:
        raise error

    c = af.fork(forever)
    c.cancel()
    values = await af.wait([af.fork(fails), af.fork(ok), c], return_exceptions=True)
    assert values[0] is error
    assert values[1] == 1
    assert type(values[2]) is asyncio.CancelledError


async def test_wait_mixes_futures_of_background_and_running_loop() -> None:
    """wait takes Futures of several loops at once, awaited and blocking."""

    async def here() -> str:
        await asyncio.sleep(0.01)
        return "here"

    async def there() -> str:
        return "there"

    local = af.fork(here)
    remote = await asyncio.to_thread(af.fork, there)  # from a plain thread: background loop
    assert remote.get_loop() is not asyncio.get_running_loop()
    assert await asyncio.wait_for(af.wait([local, remote]), T) == ["here", "there"]
    local2 = af.fork(here)
    remote2 = await asyncio.to_thread(af.fork, there)
    blocking = await asyncio.to_thread(af.wait, [remote2, local2], timeout=T)
    assert blocking == ["there", "here"]


# == 2. as_completed ==================================================================


def _chained(n: int) -> tuple[list[threading.Event], list[af.Future[int]]]:
    events = [threading.Event() for _ in range(n)]

    def work(i: int) -> int:
        events[i].wait(T)
        return i

    return events, [af.fork(work, i) for i in range(n)]


def test_as_completed_for_yields_in_completion_order(loop_kind: str) -> None:
    """for fut in as_completed(...) yields Futures in completion order."""
    events, futs = _chained(3)
    order = [2, 0, 1]
    try:
        events[order[0]].set()
        seen = []
        for k, fut in enumerate(af.as_completed(futs, timeout=T)):
            seen.append(fut)
            if k + 1 < len(order):
                events[order[k + 1]].set()
        assert seen == [futs[i] for i in order]
        assert all(a is b for a, b in zip(seen, [futs[i] for i in order], strict=True))
    finally:
        for ev in events:
            ev.set()


async def test_as_completed_async_for_yields_in_completion_order() -> None:
    """async for fut in as_completed(...) yields Futures in completion order."""
    events = [asyncio.Event() for _ in range(3)]

    async def work(i: int) -> int:
        await events[i].wait()
        return i

    futs = [af.fork(work, i) for i in range(3)]
    order = [1, 2, 0]
    events[order[0]].set()
    seen = []
    async for fut in af.as_completed(futs, timeout=T):
        seen.append(fut)
        assert fut.done()
        if len(seen) < len(order):
            events[order[len(seen)]].set()
    assert [f.result() for f in seen] == order
    assert all(a is futs[i] for a, i in zip(seen, order, strict=True))


def test_as_completed_timeout_raises_timeout_error(loop_kind: str) -> None:
    """as_completed(timeout=) raises TimeoutError (the work goes on)."""
    release = threading.Event()

    def slow() -> int:
        release.wait(T)
        return 1

    fut = af.fork(slow)
    try:
        with pytest.raises(TimeoutError):
            for _ in af.as_completed([fut], timeout=0.02):
                pass
        assert not fut.done()
    finally:
        release.set()
    assert fut.result(timeout=T) == 1


async def test_as_completed_async_timeout_raises_timeout_error() -> None:
    """async for over as_completed(timeout=) raises TimeoutError (the work goes on)."""
    release = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        return 1

    fut = af.fork(slow)
    with pytest.raises(TimeoutError):
        async for _ in af.as_completed([fut], timeout=0.02):
            pass
    assert not fut.done()
    release.set()
    assert await asyncio.wait_for(fut, T) == 1


def test_as_completed_rejects_non_futures() -> None:
    """as_completed with something that is not an asyncfork Future raises TypeError."""
    with pytest.raises(TypeError):
        af.as_completed([1])  # type: ignore[list-item]
    cf: concurrent.futures.Future[int] = concurrent.futures.Future()
    with pytest.raises(TypeError):
        af.as_completed([cf])  # type: ignore[list-item]
