"""``wait`` with no traps: an awaitable only in a coroutine body, else ``result()``'s rules.

Sync code on a thread whose loop runs (a notebook cell, a sync helper called from a
coroutine, a loop callback) used to get a coroutine object back from ``af.wait``; it now
gets the values of Futures already done, and ``DeadlockError`` for unfinished ones.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import T, forever, gated, three, within

import asyncfork as af

# The part of every loop-thread DeadlockError that says what to write in the two
# common places: it is built in one place, so all four blocking calls share it.
NOTEBOOK_HINT = "in a notebook cell, await at top level"
HELPER_HINT = "`await af.fork(helper)`"


def _open_gate(gate: threading.Event, *futs: af.Future[Any]) -> None:
    gate.set()
    for fut in futs:
        fut.cancel()


# -- sync code on a loop thread ----------------------------------------------------------


async def test_wait_in_a_sync_helper_raises_deadlock_error() -> None:
    """A sync helper called from a coroutine gets DeadlockError, not a coroutine object."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 7))

    def helper() -> object:
        return af.wait(fut)

    try:
        with pytest.raises(af.DeadlockError) as info:
            helper()
    finally:
        gate.set()
    message = str(info.value)
    assert message.startswith("af.wait() on an unfinished Future would block the event loop")
    assert "`await fut`" in message
    assert "`await af.wait_async(futs)`" in message
    assert NOTEBOOK_HINT in message
    assert HELPER_HINT in message
    assert not fut.done()  # nothing waited, nothing cancelled
    assert await within(fut) == 7


async def test_wait_over_several_in_a_sync_helper_raises_deadlock_error() -> None:
    """A list with one unfinished Future raises too, with or without return_exceptions."""
    gate = threading.Event()
    done, slow = af.fork(three), af.fork(gated(gate))
    await done

    def helper(return_exceptions: bool) -> object:
        return af.wait([done, slow], return_exceptions=return_exceptions)

    try:
        with pytest.raises(af.DeadlockError):
            helper(False)
        with pytest.raises(af.DeadlockError):
            helper(True)
    finally:
        gate.set()
    assert await af.wait_async([done, slow]) == [3, "value"]


async def test_wait_in_a_loop_callback_raises_deadlock_error() -> None:
    """A callback run by the loop cannot block it either."""
    fut = af.fork(forever)
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def callback() -> None:
        try:
            af.wait(fut)
        except BaseException as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    asyncio.get_running_loop().call_soon(callback)
    try:
        assert isinstance(await within(outcome), af.DeadlockError)
    finally:
        fut.cancel()


async def test_wait_in_sync_code_returns_what_is_done() -> None:
    """Futures already done give their values there, as fut.result() does."""
    one, two = af.fork(three), af.fork(three)
    await af.wait_async([one, two])

    def helper() -> tuple[int, list[int], int]:
        return af.wait(one), af.wait([one, two], timeout=0), one.wait()

    assert helper() == (3, [3, 3], 3)


async def test_wait_in_sync_code_raises_a_failure_that_is_done() -> None:
    """Fail-fast needs no blocking when a failure is there already: it is raised as it is."""

    async def boom() -> None:
        raise KeyError("boom")

    gate = threading.Event()
    failed, slow = af.fork(boom), af.fork(gated(gate))
    await asyncio.wait([failed])

    def helper() -> object:
        return af.wait([slow, failed])

    try:
        with pytest.raises(KeyError, match="boom"):
            helper()
    finally:
        gate.set()
    await within(slow)


async def test_future_wait_method_follows_the_same_rule() -> None:
    """fut.wait(): DeadlockError in sync code on a loop thread, an awaitable in a coroutine."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 5))

    def helper() -> object:
        return fut.wait()

    try:
        with pytest.raises(af.DeadlockError, match=r"^fut\.wait\(\) on an unfinished Future"):
            helper()
    finally:
        gate.set()
    pending = fut.wait()  # in this coroutine body: a coroutine, to be awaited
    assert inspect.iscoroutine(pending)
    assert await within(pending) == 5
    assert helper() == 5  # done: its value, also in sync code


def test_future_wait_method_blocks_in_a_plain_thread() -> None:
    """In a thread without a running loop fut.wait() is af.wait(fut): it blocks."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 9))
    threading.Timer(0.01, gate.set).start()
    assert fut.wait() == 9


async def test_every_blocking_call_shares_the_message() -> None:
    """result(), wait, sync groups and `for` over as_completed say the same about notebooks."""
    fut = af.fork(forever)

    def with_group() -> None:
        with af.group():
            pass

    def iterate() -> None:
        for _ in af.as_completed([fut]):
            pass

    calls = [
        fut.result,
        fut.exception,
        lambda: af.wait(fut),
        lambda: fut.wait(),
        with_group,
        iterate,
    ]
    try:
        for call in calls:
            with pytest.raises(af.DeadlockError) as info:
                call()
            message = str(info.value)
            assert "would block the event loop running in this thread" in message
            assert NOTEBOOK_HINT in message
            assert HELPER_HINT in message
    finally:
        fut.cancel()
    await asyncio.wait([fut])


# -- coroutine bodies: the awaitable ---------------------------------------------------------


async def test_wait_in_a_coroutine_body_is_awaitable() -> None:
    """`await af.wait(...)` keeps working, even where nothing would need to block."""
    fut = af.fork(three)
    pending = af.wait(fut)
    assert inspect.isawaitable(pending)
    assert await pending == 3
    assert await af.wait([fut, fut]) == [3, 3]


async def test_wait_in_an_async_generator_body_is_awaitable() -> None:
    """An async generator's body is a coroutine body too."""

    async def values(futs: list[af.Future[int]]) -> AsyncIterator[int]:
        for fut in futs:
            yield await af.wait(fut)  # type: ignore[misc]  # runtime spelling under test

    got = [v async for v in values([af.fork(three), af.fork(three)])]
    assert got == [3, 3]


async def test_wait_in_a_comprehension_in_a_coroutine_body_is_awaitable() -> None:
    """A comprehension is part of the body that holds it (its own function on 3.11)."""
    futs = [af.fork(three), af.fork(three)]
    awaitables = [af.wait(fut) for fut in futs]
    assert all(inspect.isawaitable(a) for a in awaitables)
    assert await within(asyncio.gather(*awaitables)) == [3, 3]


async def test_a_coroutine_fork_may_wait_in_its_body() -> None:
    """A fork's coroutine awaiting a sibling through af.wait, on the fork's own loop."""
    first = af.fork(three)

    async def second() -> int:
        return await af.wait(first) + 1  # type: ignore[no-any-return,misc]  # runtime spelling

    assert await within(af.fork(second)) == 4


# -- wait_async: the typed awaitable ---------------------------------------------------------


async def test_wait_async_has_waits_rules() -> None:
    """Values in input order, return_exceptions, a timeout that only observes."""
    gate = threading.Event()

    async def boom() -> int:
        raise ValueError("no")

    one, bad, slow = af.fork(three), af.fork(boom), af.fork(gated(gate, 1))
    assert await within(af.wait_async(one)) == 3
    with pytest.raises(ValueError, match="no"):
        await within(af.wait_async([one, bad, slow]))
    with pytest.raises(TimeoutError, match=r"af\.wait_async\(\) timed out after 0\.01s"):
        await af.wait_async([one, slow], timeout=0.01)
    assert not slow.done()
    gate.set()
    results = await within(af.wait_async([one, bad, slow], return_exceptions=True))
    assert results[0] == 3
    assert isinstance(results[1], ValueError)
    assert results[2] == 1


async def test_wait_async_rejects_bad_arguments_at_the_call() -> None:
    """Wrong input raises at the call, before any await; a rejected coroutine is closed."""
    with pytest.raises(TypeError, match=r"wait_async\(\) takes"):
        af.wait_async(three())  # type: ignore[call-overload]
    fut = af.fork(three)
    with pytest.raises(ValueError, match=r"wait_async\(timeout=\.\.\.\)"):
        af.wait_async(fut, timeout=-1)
    assert await fut == 3


async def test_cancelling_wait_async_leaves_the_forks_running() -> None:
    """Cancelling the awaiting task never cancels the forks, and takes its wakers back."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 2))
    waiter = asyncio.ensure_future(af.wait_async([fut]))
    await asyncio.sleep(0)  # one loop step: the waiter registers and sleeps
    assert fut._wakers
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(waiter)
    assert not fut.done()
    assert not fut._wakers
    gate.set()
    assert await within(fut) == 2


def test_wait_async_in_a_plain_thread_has_no_loop_to_await_on() -> None:
    """Awaited where no event loop runs, it says so (a plain coroutine send)."""
    gate = threading.Event()
    fut = af.fork(gated(gate))
    coro = af.wait_async(fut)
    try:
        with pytest.raises(RuntimeError, match="needs a running event loop"):
            coro.send(None)
    finally:
        gate.set()
    assert af.wait(fut, timeout=T) == "value"
