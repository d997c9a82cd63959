"""af.wait and af.as_completed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import T, double, forever, gated, within

import asyncfork as af

# -- helpers -------------------------------------------------------------------------------


def _chained(n: int) -> tuple[list[threading.Event], list[af.Future[int]]]:
    events = [threading.Event() for _ in range(n)]

    def work(i: int) -> int:
        events[i].wait(T)
        return i

    return events, [af.fork(work, i) for i in range(n)]


# -- wait ----------------------------------------------------------------------------------


def test_wait_of_empty_list_returns_empty_list():
    """wait(iterable) returns the list of values: [] for no Futures."""
    assert af.wait([]) == []
    assert af.wait([], timeout=0) == []


async def test_awaited_wait_of_empty_list_returns_empty_list():
    """await af.wait([]) is [] too."""
    assert await within(af.wait([])) == []


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

    async def create_and_drop(fut: af.Future[int], spelling: str) -> None:
        # In a coroutine body: the awaitable form, dropped without an await.
        if spelling == "af.wait":
            pending: object = af.wait(fut)
        elif spelling == "af.wait_async":
            pending = af.wait_async(fut)
        else:
            pending = fut.wait()
        del pending
        gc.collect()

    fut = af.fork(work)
    for spelling in ("af.wait", "af.wait_async", "Future.wait"):
        # The warning names what was called, not a private helper.
        with pytest.warns(RuntimeWarning, match=f"coroutine '{spelling}' was never awaited"):
            await create_and_drop(fut, spelling)
    assert await fut == 3


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


async def test_awaited_wait_on_a_future_of_another_loop():
    """await af.wait(fut) works for a Future that runs on another loop (the background one)."""
    go = threading.Event()

    def work():
        assert go.wait(T)
        return 7

    fut = await asyncio.to_thread(af.fork, work)  # from a plain thread: loop B
    assert fut.get_loop() is not asyncio.get_running_loop()
    asyncio.get_running_loop().call_soon(go.set)  # after the waiter is registered
    assert await af.wait(fut, timeout=T) == 7  # registers before `go` is set


# -- wait: fail-fast and return_exceptions -------------------------------------------------


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


async def test_awaited_wait_fails_fast_with_the_first_failure_in_completion_order():
    """Fail-fast: the first failure in completion order (not input order) is raised as it is."""
    later, first = ValueError("later"), KeyError("first")

    async def fail_later():
        await asyncio.sleep(0)
        raise later

    async def fail_now():
        raise first

    f_later = af.fork(fail_later)
    f_now = af.fork(fail_now)
    with pytest.raises(KeyError) as info:
        await af.wait([f_later, f_now], timeout=T)  # the waiter registers before both run
    assert info.value is first
    assert await within(af.wait(f_later, return_exceptions=True)) is later


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


def test_blocking_wait_return_exceptions_puts_the_failure_in_the_list(loop_kind):
    """wait(..., return_exceptions=True) blocks for all and lists the exception in input order."""
    error = ValueError("bad")

    def ok():
        time.sleep(0.05)  # work: still running when wait blocks
        return 1

    def bad():
        time.sleep(0.02)
        raise error

    assert af.wait([af.fork(ok), af.fork(bad)], timeout=T, return_exceptions=True) == [1, error]


@pytest.mark.parametrize("value", ["no", "", 0, 1, None])
def test_wait_return_exceptions_must_be_a_bool(loop_kind: str, value: object) -> None:
    """return_exceptions="no" must not switch collecting on: a TypeError naming the option."""

    def fails() -> None:
        raise ValueError("raised, not listed")

    fut = af.fork(fails)
    with pytest.raises(TypeError) as info:
        af.wait(fut, timeout=T, return_exceptions=value)  # type: ignore[call-overload]
    assert str(info.value).startswith("wait(return_exceptions=...) must be True or False, not ")
    with pytest.raises(ValueError, match="raised, not listed"):
        af.wait(fut, timeout=T, return_exceptions=False)


async def test_awaited_wait_return_exceptions_must_be_a_bool() -> None:
    """In async code the TypeError comes from the call, before anything is awaited."""
    fut = af.fork(double, 2)
    with pytest.raises(TypeError, match=r"^wait\(return_exceptions=\.\.\.\) must be True or"):
        af.wait([fut], return_exceptions="no")  # type: ignore[arg-type]
    assert await within(af.wait([fut], return_exceptions=True)) == [4]


# -- wait: bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, "text", None, 1.5])
def test_wait_of_non_future_is_typeerror_naming_its_type(bad: object) -> None:
    """wait(x) with something that is not an asyncfork Future: TypeError naming its type."""
    with pytest.raises(TypeError, match="None" if bad is None else type(bad).__name__):
        af.wait(bad)  # type: ignore[call-overload]


def test_wait_of_coroutine_is_typeerror_naming_its_type() -> None:
    """wait(coroutine object): TypeError naming 'coroutine'."""
    coro = double(1)
    try:
        with pytest.raises(TypeError, match="coroutine"):
            af.wait(coro)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="coroutine"):
            af.wait([coro])  # type: ignore[list-item]
    finally:
        coro.close()


@pytest.mark.parametrize("state", ["pending", "done"])
async def test_wait_of_asyncio_future_is_typeerror_naming_its_type(state: str) -> None:
    """wait(asyncio.Future) is not an asyncfork Future: TypeError naming its type."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    if state == "done":
        fut.set_result(1)
    returned: object = None
    try:
        with pytest.raises(TypeError, match="Future"):
            returned = af.wait(fut)  # type: ignore[call-overload]
    finally:
        fut.cancel()
        if inspect.iscoroutine(returned):
            returned.close()  # a wrong implementation returned an awaitable: no extra noise


def test_wait_of_concurrent_future_is_typeerror_naming_its_type() -> None:
    """wait(concurrent.futures.Future): TypeError naming its type."""
    with ThreadPoolExecutor(max_workers=1) as ex:
        cf = ex.submit(int, 1)
        with pytest.raises(TypeError, match="Future"):
            af.wait(cf)  # type: ignore[call-overload]


# -- as_completed --------------------------------------------------------------------------


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


async def test_async_for_as_completed_on_futures_of_another_loop():
    """async for over as_completed(timeout=) takes Futures of another loop too."""
    go = threading.Event()

    def work():
        assert go.wait(T)
        return 8

    fut = await asyncio.to_thread(af.fork, work)
    asyncio.get_running_loop().call_soon(go.set)
    got = [f async for f in af.as_completed([fut], timeout=T)]
    assert got == [fut]
    assert fut.result() == 8


def test_as_completed_rejects_non_futures() -> None:
    """as_completed with something that is not an asyncfork Future raises TypeError."""
    with pytest.raises(TypeError):
        af.as_completed([1])  # type: ignore[list-item]
    cf: concurrent.futures.Future[int] = concurrent.futures.Future()
    with pytest.raises(TypeError):
        af.as_completed([cf])  # type: ignore[list-item]


# -- waits leave nothing behind, and race the settle safely --------------------------------


def _leftover_wakers(fut: af.Future[object]) -> list[object]:
    """Registrations of waits still on the Future, not run and not taken back."""
    return [entry for entry in fut._wakers or () if entry]


async def test_awaited_waits_that_time_out_leave_no_waker_on_the_future():
    """`await af.wait(..., timeout=)` only observes: one that times out takes its registration
    back (blocking waits: test_timeouts.py), on the fork's loop and on another one."""
    here = af.fork(forever)
    gate = threading.Event()

    def blocked() -> int:
        assert gate.wait(T)
        return 1

    there = await asyncio.to_thread(af.fork, blocked)  # a root fork of the background loop
    try:
        for _ in range(50):
            for fut in (here, there):
                with pytest.raises(TimeoutError):
                    await af.wait(fut, timeout=0.0001)
        assert here._wakers == []
        assert there._wakers == []
    finally:
        here.cancel()
        gate.set()
    assert await within(af.wait(there)) == 1


def _waits_racing_the_settle(waiters: int) -> None:
    """One round: threads wait (half of them polling with tiny timeouts) as the fork settles."""
    gate = threading.Event()
    fut = af.fork(gated(gate, "v"))
    start = threading.Barrier(waiters + 1, timeout=T)
    got: list[object] = []

    def waiter(polling: bool) -> None:
        start.wait()
        while polling:
            try:
                got.append(af.wait(fut, timeout=0.0002))
                return
            except TimeoutError:
                continue
        got.append(fut.result(timeout=T))

    threads = [threading.Thread(target=waiter, args=(i % 2 == 0,)) for i in range(waiters)]
    for thread in threads:
        thread.start()
    start.wait()
    gate.set()
    for thread in threads:
        thread.join(T)
    assert got == ["v"] * waiters
    assert _leftover_wakers(fut) == []


def test_waits_racing_the_settle_all_wake(loop_kind):
    """Threads that wait with and without timeouts while the fork settles: every wait ends
    with the value (a polling one after timeouts before it); none hangs, none is left."""
    for _ in range(20):
        _waits_racing_the_settle(8)


def _wait_over_two_loops(loop: asyncio.AbstractEventLoop, fail: bool) -> None:
    """One round: forks on ``loop`` and on the background loop, released at once."""
    gate = threading.Event()

    def work(i: int) -> int:
        assert gate.wait(T)
        if fail and i == 7:
            raise ValueError(i)
        return i

    async def fork_there() -> list[af.Future[int]]:
        return [af.fork(work, i) for i in range(0, 40, 2)]

    there = asyncio.run_coroutine_threadsafe(fork_there(), loop).result(T)
    here = [af.fork(work, i) for i in range(1, 40, 2)]  # the background loop's
    futs = [f for pair in zip(there, here, strict=True) for f in pair]
    threading.Timer(0.001, gate.set).start()
    if fail:
        with pytest.raises(ValueError, match="7"):
            af.wait(futs, timeout=T)
        af.wait(futs, timeout=T, return_exceptions=True)
    else:
        assert af.wait(futs, timeout=T) == list(range(40))


def test_wait_over_forks_of_two_loops_settling_at_once(loop_kind):
    """One wait counts Futures settled in two loop threads at the same time: it wakes once
    all are done (or, fail-fast, at the failure), every time."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for round_ in range(20):
            _wait_over_two_loops(loop, fail=round_ % 4 == 3)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(T)
        loop.close()
