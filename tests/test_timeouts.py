"""Timeouts: a fork's deadline, the observe-only timeouts of waits, bad timeout values."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import queue
import threading
from collections.abc import Callable

import pytest
from helpers import (
    T,
    cancelling_sync_part,
    closed_unstarted,
    double,
    flush_background_loop,
    forever,
    gated,
    noop,
    three,
    within,
)

import asyncfork as af

# -- fork.options(timeout=s) ---------------------------------------------------------------


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


async def test_fork_timeout_not_reached_keeps_the_value():
    """fork.options(timeout=s): a fork that finishes in time keeps its value."""
    fut = af.fork.options(timeout=T)(three)
    assert await within(fut) == 3
    assert not fut.cancelled()
    assert fut.exception() is None


async def test_sync_fork_returning_coroutine_timed_out_while_it_runs_raises_timeout_error():
    """At `fork.options(timeout=s)` the work is cancelled and the Future raises `TimeoutError`
    whose `__cause__` is the `CancelledError` (a returned coroutine is closed)."""
    started = threading.Event()
    made: list = []
    tail_ran = []

    async def tail():
        tail_ran.append(True)

    fut = af.fork.options(timeout=0.05)(cancelling_sync_part(started, made, tail))
    with pytest.raises(TimeoutError) as info:
        await within(fut)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert tail_ran == []
    assert closed_unstarted(made[0])


def test_fork_timeout_reaches_the_children_of_a_sync_group_in_a_sync_fork(loop_kind):
    """fork.options(timeout=s) on a sync fork cancels the children of a `with af.group()`
    open in it at the deadline, as it cancels its own children: the fork ends with
    TimeoutError then, not once the slowest grandchild is done."""
    started = threading.Event()

    def body():
        with af.group() as g:
            g.fork(forever)
            g.fork(started.set)

    fut = af.fork.options(timeout=0.05)(body)
    assert started.wait(T)
    with pytest.raises(TimeoutError) as info:
        fut.result(timeout=T)
    assert fut.done()  # the fork's own timeout, not result()'s
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


# -- a timeout <= 0: the fork never starts -------------------------------------------------


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


def test_timeout_zero_fork_waited_on_by_a_worker_never_runs(loop_kind):
    """A timeout <= 0 on a fork that has not started: it never starts -- even when a worker
    that waits on it could help (run queued forks inline)."""
    ran = []

    def side_effect():
        ran.append(True)

    def worker_body():
        f = af.fork.options(timeout=0)(side_effect)
        with pytest.raises(TimeoutError):
            af.wait(f, timeout=T)
        return f

    f = af.wait(af.fork(worker_body), timeout=T)
    assert ran == []
    with pytest.raises(TimeoutError):
        f.result(timeout=T)


# -- waiting with a timeout only observes --------------------------------------------------


def test_result_with_timeout_observes_only(loop_kind: str) -> None:
    """result(timeout) raises TimeoutError while the work goes on, then returns the value."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 7))
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.01)
    assert not fut.done()
    assert not fut.cancelled()
    gate.set()
    assert fut.result(timeout=T) == 7
    assert fut.done()


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


_WAITS_WITH_A_TIMEOUT: dict[str, Callable[[af.Future[str], float], object]] = {
    "wait": lambda fut, seconds: af.wait(fut, timeout=seconds),
    "wait_list": lambda fut, seconds: af.wait([fut], timeout=seconds),
    "result": lambda fut, seconds: fut.result(timeout=seconds),
    "exception": lambda fut, seconds: fut.exception(timeout=seconds),
}


@pytest.mark.parametrize("seconds", [0, 0.02])
@pytest.mark.parametrize("how", sorted(_WAITS_WITH_A_TIMEOUT))
def test_worker_waiting_with_a_timeout_does_not_run_a_queued_fork_inline(
    loop_kind: str, one_worker: None, how: str, seconds: float
) -> None:
    """With the pool saturated, a worker's wait with a timeout on a queued sync fork raises
    TimeoutError on time: it does not run that fork inline, which could outlast the timeout.
    The fork runs in another worker, on the slot the waiter lends."""
    release = threading.Event()
    timed_out = threading.Event()

    def slow() -> str:
        assert release.wait(T)
        return "slow"

    def outer() -> af.Future[str]:
        fut = af.fork(slow)  # queued: this worker holds the only slot
        with pytest.raises(TimeoutError):
            _WAITS_WITH_A_TIMEOUT[how](fut, seconds)
        timed_out.set()
        return fut

    waiter = af.fork(outer)
    try:
        assert timed_out.wait(T), "the wait ran the queued fork inline and ignored its timeout"
    finally:
        release.set()
    assert waiter.result(timeout=T).result(timeout=T) == "slow"


# -- a timeout too large for a lock wait means no timeout ----------------------------------


@pytest.mark.parametrize("huge", [math.inf, 1e10, threading.TIMEOUT_MAX])
def test_huge_timeout_is_no_timeout_off_the_main_thread(loop_kind: str, huge: float) -> None:
    """timeout=inf, or any timeout too large for a lock wait (threading.TIMEOUT_MAX), waits
    without a timeout in any thread: wait, result, exception, as_completed, shutdown."""
    gates: queue.SimpleQueue[tuple[concurrent.futures.Future[int], int] | None]
    gates = queue.SimpleQueue()

    async def until(gate: concurrent.futures.Future[int]) -> int:
        return await asyncio.wrap_future(gate)

    def blocked_on(value: int) -> af.Future[int]:
        gate: concurrent.futures.Future[int] = concurrent.futures.Future()
        fut = af.fork(until, gate)
        gates.put((gate, value))  # the main thread opens it while this thread waits
        return fut

    outcome: list[object] = []

    def waits() -> None:
        try:
            got = [
                af.wait(blocked_on(1), timeout=huge),
                af.wait([blocked_on(2)], timeout=huge),
                blocked_on(3).result(timeout=huge),
                blocked_on(4).exception(timeout=huge),
                *(f.result() for f in af.as_completed([blocked_on(5)], timeout=huge)),
            ]
            af.shutdown(timeout=huge)
            outcome.append(got)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            gates.put(None)

    thread = threading.Thread(target=waits)
    thread.start()
    while (gate := gates.get(timeout=T)) is not None:
        gate[0].set_result(gate[1])
    thread.join(T)
    assert outcome == [[1, [2], 3, None, 5]]


def test_polling_wait_with_timeout_does_not_pile_callbacks_on_the_future(loop_kind):
    """`wait(..., timeout=)`, `result(timeout=)` and `exception(timeout=)` only observe -- a
    waiter that timed out takes its registration back, and leaves no callback behind on the
    pending Future, so polling a long fork piles nothing on it."""
    fut = af.fork(forever)
    try:
        for _ in range(100):
            with pytest.raises(TimeoutError):
                af.wait(fut, timeout=0.0001)
            with pytest.raises(TimeoutError):
                fut.result(timeout=0.0001)
            with pytest.raises(TimeoutError):
                fut.exception(timeout=0.0001)
        assert fut._wakers == []
        assert af.wait(af.fork(noop), timeout=T) is None  # the loop processed the discards
        assert len(fut._callbacks or []) <= 1
    finally:
        fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)


async def test_polling_awaited_wait_with_timeout_does_not_pile_callbacks_on_the_future():
    """`wait(..., timeout=)` only observes -- `await af.wait(f, timeout=)` that timed out
    leaves no callback behind on the pending Future."""
    fut = af.fork(forever)
    try:
        for _ in range(100):
            with pytest.raises(TimeoutError):
                await af.wait(fut, timeout=0.0001)
        await asyncio.sleep(0)
        assert len(fut._callbacks or []) <= 1
    finally:
        fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)


# -- bad timeout values --------------------------------------------------------------------


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


@pytest.mark.parametrize("value", [-1, -0.5, math.nan])
def test_bad_timeouts_are_valueerror_naming_the_option(loop_kind: str, value: float) -> None:
    """Negative or NaN timeouts on any call: ValueError naming the option."""
    with pytest.raises(ValueError, match="timeout"):
        af.fork.options(timeout=value)
    with pytest.raises(ValueError, match="timeout"):
        af.group(timeout=value)
    fut = af.fork(double, 1)
    fut.result(timeout=T)
    with pytest.raises(ValueError, match="timeout"):
        af.wait(fut, timeout=value)
    with pytest.raises(ValueError, match="timeout"):
        af.as_completed([fut], timeout=value)


@pytest.mark.parametrize("value", [-1, math.nan])
@pytest.mark.parametrize("method", ["result", "exception"])
def test_bad_timeout_on_result_is_valueerror(loop_kind: str, value: float, method: str) -> None:
    """result/exception(timeout=<negative or NaN>) on a pending Future: ValueError naming it."""
    gate = threading.Event()
    fut = af.fork(gated(gate))
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            getattr(fut, method)(timeout=value)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    caller.join(1)  # a ValueError is immediate; a wrong implementation blocks here
    gate.set()  # unblock a caller that wrongly blocks
    caller.join(T)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ValueError), f"no ValueError: {outcome[0]!r}"
    assert "timeout" in str(outcome[0])
    fut.result(timeout=T)


def test_negative_timeout_on_finished_future_result_is_value_error(loop_kind: str) -> None:
    """Negative timeouts on any call raise ValueError, even result() of a finished Future."""
    fut = af.fork(lambda: 1)
    assert fut.result(timeout=T) == 1
    with pytest.raises(ValueError):
        fut.result(timeout=-1)
    with pytest.raises(ValueError):
        af.wait(fut, timeout=-1)


@pytest.mark.parametrize("value", [-1, math.nan])
@pytest.mark.parametrize("method", ["result", "exception"])
def test_bad_timeout_on_finished_future_is_valueerror(
    loop_kind: str, value: float, method: str
) -> None:
    """Negative or NaN timeouts on *any* call are ValueError, a finished Future's too."""
    fut = af.fork(double, 1)
    fut.result(timeout=T)
    with pytest.raises(ValueError, match="timeout"):
        getattr(fut, method)(timeout=value)
