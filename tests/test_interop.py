"""Futures in asyncio's combinators and in anyio's code."""

from __future__ import annotations

import asyncio
import sys
import threading

import anyio
import anyio.to_thread
import pytest
from helpers import T, coro_fork_fn, double, forever, ticks, within

import asyncfork as af

# -- helpers -------------------------------------------------------------------------------

# Shorter bound for same-loop asyncio combinators that finish within one iteration or two.
SHORT = 1.0


async def yield_then_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


# -- asyncio.gather, asyncio.wait, asyncio.wait_for ----------------------------------------


async def test_asyncio_gather_wait_and_wait_for_take_futures() -> None:
    """asyncio.gather, asyncio.wait and asyncio.wait_for work with af.Futures on their loop."""
    f1, f2 = af.fork(double, 1), af.fork(double, 2)
    assert await asyncio.gather(f1, f2) == [2, 4]
    f3, f4 = af.fork(double, 3), af.fork(double, 4)
    done, pending = await asyncio.wait([f3, f4], timeout=T)
    assert pending == set()
    assert len(done) == 2
    assert any(d is f3 for d in done)
    assert any(d is f4 for d in done)
    assert await asyncio.wait_for(af.fork(double, 5), T) == 10


async def test_asyncio_gather_propagates_fork_error() -> None:
    """asyncio.gather re-raises a fork's exception, the same object."""
    bad = af.fork(coro_fork_fn)
    with pytest.raises(ValueError) as info:
        await asyncio.gather(bad, af.fork(double, 1))
    assert info.value is bad.exception()


async def test_cancelled_gather_cancels_the_fork():
    """A cancelled asyncio.gather cancels the Futures it gathers, as it does Tasks."""
    started = asyncio.Event()
    cleanup = []

    async def body():
        started.set()
        try:
            await forever()
        finally:
            cleanup.append(True)

    fut = af.fork(body)
    gathered = asyncio.gather(fut)
    await within(started.wait())
    gathered.cancel()
    # asyncio.wait, not wait_for: a gather that never finishes must fail, not hang.
    await asyncio.wait([gathered], timeout=SHORT)
    assert gathered.done()
    with pytest.raises(asyncio.CancelledError):
        gathered.result()
    assert fut.cancelled()
    assert cleanup == [True]


async def test_gather_of_a_cancelled_fork():
    """asyncio.gather treats a cancelled Future like a cancelled Task (raise, or list it)."""
    started = asyncio.Event()

    async def body():
        started.set()
        await forever()

    fut = af.fork(body)
    listed = asyncio.gather(fut, return_exceptions=True)
    raised = asyncio.gather(fut)
    await within(started.wait())
    fut.cancel()
    await asyncio.wait([listed, raised], timeout=SHORT)
    assert fut.cancelled()
    assert listed.done()
    assert raised.done()
    assert [type(x) for x in listed.result()] == [asyncio.CancelledError]
    with pytest.raises(asyncio.CancelledError):
        raised.result()


async def test_gather_of_an_already_finished_fork():
    """asyncio.gather takes a finished Future as it is, as it does a finished Task."""
    ok = af.fork(double, 1)
    cancelled = af.fork(forever)
    cancelled.cancel()
    await asyncio.wait([ok, cancelled], timeout=SHORT)
    assert ok.done()
    assert cancelled.done()
    gathered = asyncio.gather(ok, cancelled, return_exceptions=True)
    await asyncio.wait([gathered], timeout=SHORT)
    assert gathered.done()
    values = gathered.result()
    assert values[0] == 2
    assert type(values[1]) is asyncio.CancelledError


async def test_wait_for_timeout_on_a_future_follows_the_python_version():
    """asyncio.wait_for at its timeout cancels the fork on 3.11; on 3.12+ it only awaits it."""
    started = asyncio.Event()

    async def body():
        started.set()
        await forever()

    fut = af.fork(body)
    await within(started.wait())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fut, 0.01)
    if sys.version_info < (3, 12):
        await within(asyncio.wait([fut]))
        assert fut.cancelled()
    else:
        await ticks()
        assert not fut.done()
        fut.cancel()
        await within(asyncio.wait([fut]))


# -- Futures hosted by another loop ---------------------------------------------------------


def _gated_on_background(gate: threading.Event, value: int) -> af.Future[int]:
    """From a plain thread: a coroutine fork on the background loop, done once ``gate`` is set."""

    async def body() -> int:
        await asyncio.to_thread(gate.wait, T)
        return value

    return af.fork(body)


async def test_asyncio_combinators_take_a_future_of_another_loop() -> None:
    """asyncio.wait, gather and wait_for work on a Future whose fork runs on another loop."""
    gate = threading.Event()
    futs = [await asyncio.to_thread(_gated_on_background, gate, n) for n in range(3)]
    loop = asyncio.get_running_loop()
    assert all(f.get_loop() is not loop for f in futs)
    assert asyncio.isfuture(futs[0]) is False  # an awaitable here: combinators wrap it
    waiting = asyncio.ensure_future(asyncio.wait([futs[0]], timeout=T))
    gathered = asyncio.gather(futs[1], futs[0])
    waited_for = asyncio.ensure_future(asyncio.wait_for(futs[2], T))
    await ticks()
    assert not waiting.done()
    gate.set()
    done, pending = await within(waiting)
    assert pending == set()
    assert [d.result() for d in done] == [0]
    if sys.version_info >= (3, 12):  # 3.11's asyncio.wait wraps every awaitable in a Task
        assert next(iter(done)) is futs[0]
    assert await within(gathered) == [1, 0]
    assert await within(waited_for) == 2


async def test_asyncio_wait_timeout_on_a_future_of_another_loop_leaves_the_fork() -> None:
    """A timed-out asyncio.wait or wait_for on another loop's Future leaves the fork running."""
    gate = threading.Event()
    fut = await asyncio.to_thread(_gated_on_background, gate, 5)
    done, pending = await within(asyncio.wait([fut], timeout=0.01))
    assert done == set()
    assert len(pending) == 1
    with pytest.raises(TimeoutError):
        await within(asyncio.wait_for(fut, 0.01))
    assert not fut.done()
    gate.set()
    assert await within(fut) == 5


async def test_done_callback_added_on_another_loop_runs_on_that_loop() -> None:
    """A done-callback added on a loop that does not host the fork runs on the adding loop."""
    gate = threading.Event()
    fut = await asyncio.to_thread(_gated_on_background, gate, 1)
    loop = asyncio.get_running_loop()
    ran: asyncio.Future[tuple[object, object]] = loop.create_future()
    removed_calls: list[object] = []

    def callback(f: object) -> None:
        ran.set_result((f, asyncio._get_running_loop()))

    def removed(f: object) -> None:
        removed_calls.append(f)

    fut.add_done_callback(callback)
    fut.add_done_callback(removed)
    assert fut.remove_done_callback(removed) == 1
    gate.set()
    got, on_loop = await within(ran)
    assert got is fut
    assert on_loop is loop
    await within(fut)
    await ticks()
    assert removed_calls == []


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_asyncio_combinators_from_asyncio_run_on_background_futures(
    loop_kind: str, use_uvloop: bool
) -> None:
    """From a plain thread's fork, awaited under asyncio.run: wait, gather, wait_for finish."""
    gate = threading.Event()
    futs = [_gated_on_background(gate, n) for n in range(3)]

    async def main() -> tuple[list[int], list[int], int]:
        waiting = asyncio.ensure_future(asyncio.wait([futs[0]], timeout=T))
        gathered = asyncio.gather(futs[0], futs[1])
        waited_for = asyncio.ensure_future(asyncio.wait_for(futs[2], T))
        await ticks()
        gate.set()
        done, _ = await waiting
        return [d.result() for d in done], await gathered, await waited_for

    def loop_factory() -> asyncio.AbstractEventLoop:
        if use_uvloop:
            import uvloop

            return uvloop.new_event_loop()
        return asyncio.SelectorEventLoop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == ([0], [0, 1], 2)


# -- anyio (asyncio backend) ---------------------------------------------------------------


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_forks_in_an_anyio_task_group(use_uvloop: bool) -> None:
    """Forks made in anyio tasks run on anyio's loop and are awaitable there."""

    async def main() -> list[int]:
        results: list[int] = []

        async def child(n: int) -> None:
            results.append(await af.fork(yield_then_double, n))

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(child, n)
        return sorted(results)

    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": use_uvloop}) == [
        0,
        2,
        4,
        6,
        8,
    ]


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_wait_from_an_anyio_worker_thread(use_uvloop: bool) -> None:
    """Sync code offloaded by anyio can block in af.wait on a fork of the loop's code."""

    async def main() -> int:
        fut = af.fork(yield_then_double, 21)
        return await anyio.to_thread.run_sync(lambda: af.wait(fut, timeout=5))

    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": use_uvloop}) == 42
