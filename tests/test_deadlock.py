"""DeadlockError: blocking on a loop thread, or waiting on oneself or an ancestor."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import T, forever, within

import asyncfork as af


def test_deadlock_error_is_a_runtime_error():
    """af.DeadlockError(RuntimeError)."""
    assert issubclass(af.DeadlockError, RuntimeError)


# -- blocking on a loop thread -------------------------------------------------------------


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


async def test_as_completed_for_in_loop_thread_is_deadlock_error():
    """Blocking `for` over as_completed in a loop thread raises DeadlockError saying `async for`."""
    fut = af.fork(forever)
    try:
        with pytest.raises(af.DeadlockError, match="async for"):
            for _ in af.as_completed([fut]):
                pass
    finally:
        fut.cancel()
    await within(asyncio.wait([fut]))


# -- waiting on oneself or an ancestor -----------------------------------------------------


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
