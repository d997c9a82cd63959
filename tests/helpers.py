"""Small helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import asyncfork as af

# Seconds: the bound on every blocking call or await that should return promptly, so that a
# deadlock fails the test instead of hanging it.
T = 5.0

# The name of asyncfork's worker threads.
WORKER_NAME = re.compile(r"asyncfork-worker-\d+")


async def forever() -> None:
    """Await something that never happens (until cancelled)."""
    await asyncio.get_running_loop().create_future()


async def within(aw: Any, seconds: float = T) -> Any:
    """Await ``aw`` with a deadline, so that a deadlock fails the test instead of hanging it."""
    cm = asyncio.timeout(seconds)
    try:
        async with cm:
            return await aw
    finally:
        if cm.expired():
            pytest.fail(f"not done within {seconds}s")


async def ticks(n: int = 10) -> None:
    """Let the running loop go round ``n`` times."""
    for _ in range(n):
        await asyncio.sleep(0)


async def noop() -> None:
    return None


async def three() -> int:
    return 3


async def double(x: int) -> int:
    return 2 * x


def flush_background_loop() -> None:
    """Return once the background loop has run every callback posted before this call."""
    af.wait(af.fork(noop), timeout=T)


def set_on_done(fut: af.Future[Any], event: asyncio.Event | threading.Event) -> None:
    """Set ``event`` when ``fut`` finishes."""
    fut.add_done_callback(lambda _f: event.set())


def gated(gate: threading.Event, value: Any = "value") -> Callable[[], Any]:
    """A sync function that returns value once gate is set."""

    def body() -> Any:
        assert gate.wait(T)
        return value

    return body


def closed_unstarted(coro: Any) -> bool:
    """True if the coroutine object was closed without ever running a step."""
    return inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED and coro.cr_frame is None


def cancelling_sync_part(
    started: threading.Event, made: list[Any], tail: Callable[[], Any]
) -> Callable[[], Any]:
    """A sync fork body: runs until it sees its cancellation, then returns a coroutine."""

    def body() -> Any:
        started.set()
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            try:
                af.check_cancelled()
            except asyncio.CancelledError:
                break
            time.sleep(0.002)  # work
        coro = tail()
        made.append(coro)
        return coro

    return body


@contextlib.contextmanager
def handler_calls() -> Iterator[list[dict[str, Any]]]:
    """Records what reaches the running loop's exception handler."""
    calls: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: calls.append(context))
    try:
        yield calls
    finally:
        loop.set_exception_handler(previous)


def logged_records(caplog: pytest.LogCaptureFixture) -> list[Any]:
    """The records the ``asyncfork`` logger emitted."""
    return [r for r in caplog.records if r.name == "asyncfork"]


# -- a fork function that raises from a nested call --------------------------------------


def innermost() -> None:
    raise ValueError("from the fork")


async def coro_fork_fn() -> None:
    await asyncio.sleep(0)
    innermost()


def sync_fork_fn() -> None:
    innermost()


# -- tracing -----------------------------------------------------------------------------


def spin(seconds: float) -> None:
    """Busy CPU work in the current step: ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def named(name: str) -> Any:
    """``af.fork`` with the fork's name set."""
    return af.fork.options(name=name)


def by_name(t: af.Trace) -> dict[str, af.ForkRecord]:
    """A trace's records by fork name (the names must be unique)."""
    records = {r.name: r for r in t.forks}
    assert len(records) == len(t.forks), "names must be unique in this test"
    return records


async def chain_trace() -> af.Trace:
    """A awaits B awaits C, each spinning 5 ms of CPU after its wait; futures made up front."""

    async def c():
        await asyncio.sleep(0.01)  # so that B and A find their Futures unfinished
        spin(0.005)
        return 1

    async def b(fc):
        v = await fc
        spin(0.005)
        return v + 1

    async def a(fb):
        v = await fb
        spin(0.005)
        return v + 1

    with af.trace() as t:
        fc = named("C")(c)
        fb = named("B")(b, fc)
        fa = named("A")(a, fb)
        assert await within(fa) == 3
    return t


def fork_left_on_a_closed_loop(kind: str = "asyncio") -> af.Future[None]:
    """A coroutine fork left pending on a loop that then closed: it can never finish.

    The caller marks it retrieved at the end (its task was dropped with the loop).
    """
    import uvloop

    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.SelectorEventLoop()
    gate = asyncio.Event()

    async def stuck() -> None:
        await gate.wait()

    async def make() -> af.Future[None]:
        return af.fork(stuck)

    fut = loop.run_until_complete(make())
    loop.set_exception_handler(lambda _loop, _context: None)  # its task is dropped pending
    loop.close()
    return fut
