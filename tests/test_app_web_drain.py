"""``af.drain``: wait for (or cancel) the forks of the running loop, with a deadline.

On the test's own loop (pytest-asyncio's, asyncio and uvloop), which asyncfork does not own,
as a web server's loop is not.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import T, forever, ticks, within

import asyncfork as af


async def test_drain_with_no_fork_returns_at_once() -> None:
    assert await within(af.drain(timeout=T)) is None


async def test_drain_waits_for_root_forks_sync_and_coroutine_and_their_children() -> None:
    gate = threading.Event()
    done: list[str] = []

    async def child() -> None:
        await asyncio.to_thread(gate.wait, T)
        done.append("coroutine child")

    async def root() -> None:
        af.fork(child)
        done.append("coroutine root body")

    def sync_root() -> None:
        af.fork(child)
        gate.wait(T)
        done.append("sync root")

    af.fork(root)
    sync = af.fork(sync_root)
    draining = asyncio.ensure_future(af.drain(timeout=T))
    await ticks()  # the roots run, and the drain still waits
    assert not draining.done()
    gate.set()
    await within(draining)
    assert sorted(done) == [
        "coroutine child",
        "coroutine child",
        "coroutine root body",
        "sync root",
    ]
    assert sync.done()


async def test_drain_waits_for_forks_made_while_it_waits() -> None:
    second_done = asyncio.Event()
    release = asyncio.Event()

    async def second() -> None:
        await release.wait()
        second_done.set()

    async def first() -> None:
        await asyncio.sleep(0)
        af.fork.options(detached=True)(second)  # a new root fork, made during the drain

    af.fork(first)
    draining = asyncio.ensure_future(af.drain(timeout=T))
    await ticks()
    assert not draining.done()
    release.set()
    await within(draining)
    assert second_done.is_set()


async def test_drain_timeout_says_how_many_are_running_and_leaves_them_running() -> None:
    futs = [af.fork(forever), af.fork(forever)]
    with pytest.raises(TimeoutError, match=r"2 forks of this loop still running after 0\.05s"):
        await within(af.drain(timeout=0.05))
    assert not any(fut.done() for fut in futs)  # they go on
    await within(af.drain(cancel=True, timeout=T))
    assert all(fut.cancelled() for fut in futs)


async def test_drain_cancel_lets_cleanup_run() -> None:
    cleaned = []

    async def with_cleanup() -> None:
        try:
            await forever()
        finally:
            await asyncio.sleep(0)
            cleaned.append(True)

    fut = af.fork(with_cleanup)
    await asyncio.sleep(0)
    await within(af.drain(cancel=True))
    assert fut.cancelled()
    assert cleaned == [True]


async def test_drain_cancel_waits_for_a_running_sync_call_within_its_deadline() -> None:
    started, gate = threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        gate.wait(T)
        return "returned"

    fut = af.fork(blocking)
    assert await within(asyncio.to_thread(started.wait, T))
    with pytest.raises(TimeoutError, match=r"1 forks of this loop were still finishing"):
        await within(af.drain(cancel=True, timeout=0.05))
    gate.set()
    await within(af.drain(cancel=True, timeout=T))
    assert fut.cancelled()  # on_cancel="wait": the result is dropped once it returns


async def test_drain_cancels_daemon_forks_and_drains_the_rest() -> None:
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "drained"

    daemon = af.fork.options(daemon=True)(forever)
    normal = af.fork(work)
    draining = asyncio.ensure_future(af.drain(timeout=T))
    await within(asyncio.gather(daemon, return_exceptions=True))  # cancelled by the drain
    assert daemon.cancelled()
    assert not normal.done()
    assert not draining.done()
    release.set()
    await within(draining)
    assert normal.result() == "drained"


async def test_a_failed_root_fork_does_not_fail_the_drain_and_stays_retrievable() -> None:
    async def fails() -> None:
        raise ValueError("kept")

    fut = af.fork(fails)
    assert await within(af.drain(timeout=T)) is None
    with pytest.raises(ValueError, match="kept"):
        fut.result()


async def test_drain_inside_a_fork_or_group_of_this_loop_is_a_deadlock_error() -> None:
    async def drains() -> None:
        await af.drain(timeout=T)

    with pytest.raises(af.DeadlockError, match="would wait for itself"):
        await within(af.fork(drains))
    async with af.group():
        with pytest.raises(af.DeadlockError, match="would wait for itself"):
            await af.drain(timeout=T)


async def test_drain_does_not_wait_for_other_loops() -> None:
    gate = threading.Event()
    background = await asyncio.to_thread(af.fork, gate.wait, T)  # the background loop's
    try:
        await within(af.drain(timeout=T))
        assert not background.done()
    finally:
        gate.set()
    await within(background)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timeout": -1}, ValueError, r"drain\(timeout=\.\.\.\) must be >= 0"),
        ({"timeout": "1"}, TypeError, r"drain\(timeout=\.\.\.\) must be a number"),
        ({"cancel": "yes"}, TypeError, r"drain\(cancel=\.\.\.\) must be True or False"),
    ],
)
async def test_drain_rejects_bad_options(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await af.drain(**kwargs)


def test_drain_without_a_running_loop_says_what_it_needs() -> None:
    coro = af.drain()
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        coro.send(None)
