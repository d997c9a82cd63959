"""The Future and the bad-input table: DESIGN sections 2 and 8, asyncio interop, af.current().

Every blocking call is bounded by a timeout; synchronisation uses events, never sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import os
import threading
import traceback
import warnings
from asyncio import CancelledError
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import T

import asyncfork as af

AF_DIR = os.path.dirname(af.__file__)


async def double(x: int) -> int:
    return 2 * x


class Jobs:
    async def method(self) -> str:
        return "method"


def run_threads(n: int, target: Callable[[int], None]) -> None:
    """Run target(i) in n plain threads at once; re-raise the first error."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T * 2)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def gated(gate: threading.Event, value: Any = "value") -> Callable[[], Any]:
    """A sync function that returns value once gate is set."""

    def body() -> Any:
        assert gate.wait(T)
        return value

    return body


# -- the Future's methods -------------------------------------------------------------


async def test_await_returns_value() -> None:
    """`await fut` returns the fork's value."""
    assert await af.fork(double, 21) == 42


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


def test_exception_method(loop_kind: str) -> None:
    """exception(timeout): the exception, None after a value, TimeoutError while pending."""
    gate = threading.Event()

    def failing() -> None:
        assert gate.wait(T)
        raise KeyError("k")

    bad = af.fork(failing)
    with pytest.raises(TimeoutError):
        bad.exception(timeout=0.01)
    gate.set()
    exc = bad.exception(timeout=T)
    assert isinstance(exc, KeyError)
    assert af.fork(double, 1).exception(timeout=T) is None


def test_done_and_cancelled(loop_kind: str) -> None:
    """done() is True once finished; cancelled() only for a cancelled fork."""
    gate = threading.Event()
    fut = af.fork(gated(gate))
    assert (fut.done(), fut.cancelled()) == (False, False)
    gate.set()
    fut.result(timeout=T)
    assert (fut.done(), fut.cancelled()) == (True, False)


async def test_cancel_returns_true_when_unfinished_false_when_finished() -> None:
    """cancel(msg) returns True when the fork had not finished, False when it had."""

    async def forever() -> None:
        await asyncio.Event().wait()

    fut = af.fork(forever)
    assert fut.cancel("stop it") is True
    with pytest.raises(CancelledError) as info:
        await fut
    assert "stop it" in info.value.args
    assert fut.cancelled()
    assert fut.done()
    assert fut.cancel() is False
    finished = af.fork(double, 2)
    assert await finished == 4
    assert finished.cancel() is False
    assert not finished.cancelled()


def test_cancel_from_another_thread_returns_true(loop_kind: str) -> None:
    """cancel() from a thread other than the loop's: True, then the Future is cancelled."""

    async def forever() -> None:
        await asyncio.Event().wait()

    fut = af.fork(forever)
    assert fut.cancel() is True
    with pytest.raises(CancelledError):
        fut.result(timeout=T)
    assert fut.cancelled()


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_done_callback_called_once_on_the_forks_loop_thread(loop_kind: str, kind: str) -> None:
    """Done-callbacks are called once each, with the Future, on the thread of the fork's loop."""
    gate = threading.Event()
    loop_thread: list[int] = []

    async def coro_body() -> str:
        loop_thread.append(threading.get_ident())
        await asyncio.to_thread(gate.wait, T)
        return "c"

    def sync_body() -> str:
        async def host_ident() -> int:
            return threading.get_ident()

        loop_thread.append(af.wait(af.fork(host_ident), timeout=T))
        assert gate.wait(T)
        return "s"

    calls: list[tuple[object, int]] = []
    called = threading.Event()

    def callback(f: af.Future[str]) -> None:
        calls.append((f, threading.get_ident()))
        called.set()

    fut = af.fork(coro_body if kind == "coroutine" else sync_body)
    fut.add_done_callback(callback)
    gate.set()
    assert called.wait(T)
    fut.result(timeout=T)
    af.wait(af.fork(double, 0), timeout=T)  # one more round trip through the loop
    assert len(calls) == 1
    assert calls[0][0] is fut
    assert calls[0][1] == loop_thread[0] != threading.get_ident()


async def test_done_callback_on_same_loop_called_once_with_future() -> None:
    """A done-callback added on the fork's own loop is called once, with the Future."""
    calls: list[object] = []
    fut = af.fork(double, 3)
    fut.add_done_callback(calls.append)
    await fut
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert calls == [fut]


def test_done_callback_added_to_finished_future_runs_at_once_in_adding_thread(
    loop_kind: str,
) -> None:
    """A callback added to a finished Future is called at once, in the adding thread."""
    fut = af.fork(double, 5)
    fut.result(timeout=T)
    calls: list[tuple[object, int]] = []
    fut.add_done_callback(lambda f: calls.append((f, threading.get_ident())))
    assert calls == [(fut, threading.get_ident())]

    def other_thread() -> None:
        fut.add_done_callback(lambda f: calls.append((f, threading.get_ident())))
        assert calls[-1] == (fut, threading.get_ident())

    run_threads(1, lambda _: other_thread())
    assert len(calls) == 2


def test_remove_done_callback_returns_count(loop_kind: str) -> None:
    """remove_done_callback(fn) removes every registration and returns how many."""
    gate = threading.Event()
    fut = af.fork(gated(gate))
    removed_calls: list[object] = []
    kept_calls: list[object] = []

    def removed(f: object) -> None:
        removed_calls.append(f)

    def kept(f: object) -> None:
        kept_calls.append(f)

    fut.add_done_callback(removed)
    fut.add_done_callback(kept)
    fut.add_done_callback(removed)
    assert fut.remove_done_callback(removed) == 2
    assert fut.remove_done_callback(removed) == 0
    gate.set()
    fut.result(timeout=T)
    af.wait(af.fork(double, 0), timeout=T)  # let the loop run the callbacks
    assert kept_calls == [fut]
    assert removed_calls == []


async def test_remove_done_callback_on_own_loop() -> None:
    """remove_done_callback works on the fork's own loop too."""
    calls: list[object] = []
    fut = af.fork(double, 1)
    fut.add_done_callback(calls.append)
    assert fut.remove_done_callback(calls.append) == 1
    await fut
    await asyncio.sleep(0)
    assert calls == []


async def test_name_defaults_to_qualified_name_and_can_be_set() -> None:
    """name: fork.options(name=...), or the callable's qualified name."""

    async def local() -> None:
        pass

    f1 = af.fork(double, 1)
    f2 = af.fork(local)
    f3 = af.fork(Jobs().method)
    f4 = af.fork.options(name="my job")(double, 1)
    await asyncio.gather(f1, f2, f3, f4)
    assert f1.name == "double"
    assert f2.name == local.__qualname__
    assert f3.name == "Jobs.method"
    assert f4.name == "my job"


async def test_parent() -> None:
    """parent: the fork this one was forked from, or None for a root fork."""
    seen: dict[str, object] = {}

    def sync_child() -> None:
        seen["sync"] = af.current().parent  # type: ignore[union-attr]

    async def child() -> None:
        seen["coro"] = af.current().parent  # type: ignore[union-attr]

    async def parent() -> tuple[af.Future, af.Future]:
        a, b = af.fork(child), af.fork(sync_child)
        await asyncio.gather(a, b)
        return a, b

    root = af.fork(parent)
    a, b = await root
    assert root.parent is None
    assert a.parent is root
    assert b.parent is root
    assert seen == {"coro": root, "sync": root}


async def test_repr_shows_name_and_state() -> None:
    """repr shows the name and the state."""
    gate = asyncio.Event()

    async def waiting() -> None:
        await gate.wait()

    async def failing() -> None:
        raise ValueError("x")

    fut = af.fork.options(name="job-1")(waiting)
    assert "job-1" in repr(fut)
    assert "pending" in repr(fut)
    await asyncio.sleep(0)
    assert "running" in repr(fut)
    gate.set()
    await fut
    assert "job-1" in repr(fut)
    assert "finished" in repr(fut)
    bad = af.fork(failing)
    with pytest.raises(ValueError):
        await bad
    assert "failing" in repr(bad)
    assert "ValueError" in repr(bad)
    cancelled = af.fork(waiting)
    cancelled.cancel()
    with pytest.raises(CancelledError):
        await cancelled
    assert "cancelled" in repr(cancelled)


def test_future_has_no_public_constructor() -> None:
    """af.Future has no public constructor."""
    with pytest.raises(TypeError):
        af.Future()


def test_every_method_from_many_threads_at_once(loop_kind: str) -> None:
    """Thread-safe: every method may be called from any thread, at once."""
    gate = threading.Event()
    fut = af.fork.options(name="shared")(gated(gate, 99))
    ready = threading.Barrier(8, timeout=T)
    released = threading.Barrier(9, timeout=T)
    counts = [0] * 8
    lock = threading.Lock()

    def hammer(i: int) -> None:
        def cb(f: object) -> None:
            assert f is fut
            with lock:
                counts[i] += 1

        def never(f: object) -> None:
            raise AssertionError("removed callback was called")

        ready.wait()
        for _ in range(20):
            assert not fut.done()
            assert not fut.cancelled()
            assert "shared" in repr(fut)
            assert fut.name == "shared"
            assert fut.parent is None
            fut.add_done_callback(never)
            assert fut.remove_done_callback(never) == 1
        fut.add_done_callback(cb)
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.001)
        released.wait()
        assert fut.result(timeout=T) == 99
        assert fut.exception(timeout=T) is None
        assert fut.cancel() is False

    waiter = threading.Thread(target=lambda: (released.wait(), gate.set()))
    waiter.start()
    run_threads(8, hammer)
    waiter.join(T)
    af.wait(af.fork(double, 0), timeout=T)
    assert counts == [1] * 8


def test_cancel_from_many_threads_at_once(loop_kind: str) -> None:
    """Concurrent cancel() calls: the fork is cancelled once; every waiter sees CancelledError."""

    async def forever() -> None:
        await asyncio.Event().wait()

    fut = af.fork(forever)
    start = threading.Barrier(8, timeout=T)
    answers: list[bool] = []

    def canceller(_: int) -> None:
        start.wait()
        answers.append(fut.cancel())
        with pytest.raises(CancelledError):
            fut.result(timeout=T)

    run_threads(8, canceller)
    assert fut.cancelled()
    assert True in answers


# -- errors ---------------------------------------------------------------------------------


def _frames(exc: BaseException) -> list[tuple[str, str]]:
    return [(fs.filename, fs.name) for fs in traceback.extract_tb(exc.__traceback__)]


def _assert_tb_starts_in_fork_function(exc: BaseException, func_name: str) -> None:
    frames = _frames(exc)
    assert frames[-1][1] == "innermost", frames
    names = [name for _, name in frames]
    assert func_name in names, frames
    # Between the waiter and the fork's function: no asyncfork scheduling wrapper.
    after = frames[names.index(func_name) - 1 :]
    internal = [
        (f, n) for f, n in after if f.startswith(AF_DIR) and n in {"_drive", "run", "_launch"}
    ]
    assert not internal, f"asyncfork's wrapper frames in the fork's traceback: {frames}"
    for filename, name in frames:
        assert not (filename.startswith(AF_DIR) and name in {"_drive", "run"}), frames


def innermost() -> None:
    raise ValueError("from the fork")


async def coro_fork_fn() -> None:
    await asyncio.sleep(0)
    innermost()


def sync_fork_fn() -> None:
    innermost()


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_error_is_the_same_object_for_every_waiter_across_threads(
    loop_kind: str, kind: str
) -> None:
    """The exception a fork raised reaches every waiter as the same object, across threads."""
    fut = af.fork(coro_fork_fn if kind == "coroutine" else sync_fork_fn)
    seen: list[BaseException] = []
    lock = threading.Lock()

    def waiter(i: int) -> None:
        try:
            if i % 2:
                fut.result(timeout=T)
            else:
                af.wait(fut, timeout=T)
        except ValueError as exc:
            with lock:
                seen.append(exc)

    run_threads(6, waiter)
    assert len(seen) == 6
    assert all(e is seen[0] for e in seen)
    assert fut.exception(timeout=T) is seen[0]


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
async def test_error_is_the_same_object_for_awaiters(kind: str) -> None:
    """Several awaiters of one failed fork get the same exception object."""
    fut = af.fork(coro_fork_fn if kind == "coroutine" else sync_fork_fn)
    results = await asyncio.gather(fut, fut, return_exceptions=True)
    with pytest.raises(ValueError) as info:
        await fut
    assert results[0] is results[1] is info.value is fut.exception()


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
async def test_traceback_starts_in_the_fork_function_when_awaited(kind: str) -> None:
    """The traceback reaches the fork's function with no asyncfork wrapper frame in between."""
    name = "coro_fork_fn" if kind == "coroutine" else "sync_fork_fn"
    with pytest.raises(ValueError) as info:
        await af.fork(coro_fork_fn if kind == "coroutine" else sync_fork_fn)
    _assert_tb_starts_in_fork_function(info.value, name)


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_traceback_starts_in_the_fork_function_across_threads(loop_kind: str, kind: str) -> None:
    """Across threads too: the waiter's traceback holds the fork's function, innermost last."""
    name = "coro_fork_fn" if kind == "coroutine" else "sync_fork_fn"
    fut = af.fork(coro_fork_fn if kind == "coroutine" else sync_fork_fn)
    with pytest.raises(ValueError) as info:
        fut.result(timeout=T)
    _assert_tb_starts_in_fork_function(info.value, name)
    exc = fut.exception(timeout=T)
    assert exc is not None
    tb = exc.__traceback__
    assert tb is not None
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "innermost"


def test_stopiteration_from_sync_fork_becomes_runtimeerror(loop_kind: str) -> None:
    """StopIteration escaping a fork becomes RuntimeError."""

    def stops() -> None:
        raise StopIteration("done?")

    with pytest.raises(RuntimeError) as info:
        af.fork(stops).result(timeout=T)
    assert isinstance(info.value.__cause__, StopIteration)


async def test_stopiteration_from_coroutine_fork_becomes_runtimeerror() -> None:
    """StopIteration escaping a coroutine fork becomes RuntimeError."""

    async def stops() -> None:
        raise StopIteration

    with pytest.raises(RuntimeError):
        await af.fork(stops)


async def test_coroutine_fork_returning_an_awaitable_returns_it() -> None:
    """A coroutine fork that returns an awaitable returns that object (no auto-await)."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[int] = loop.create_future()
    coro = double(1)

    async def returns_future() -> asyncio.Future[int]:
        return pending

    async def returns_coroutine() -> Any:
        return coro

    async def returns_af_future() -> af.Future[int]:
        return af.fork(double, 4)

    try:
        assert await af.fork(returns_future) is pending
        assert not pending.done()
        assert await af.fork(returns_coroutine) is coro
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
        inner = await af.fork(returns_af_future)
        assert isinstance(inner, af.Future)
        assert await inner == 8
    finally:
        pending.cancel()
        coro.close()


# -- the bad-input table ----------------------------------------------------------------


def test_fork_of_coroutine_object_is_typeerror_showing_right_call() -> None:
    """fork(f(x)): TypeError showing fork(f, x); the coroutine is closed (no warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = double(3)
        with pytest.raises(TypeError) as info:
            af.fork(coro)  # type: ignore[call-overload]
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        del coro
        gc.collect()
    assert "fork(double, 3)" in str(info.value)
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_fork_of_non_callable_is_typeerror_naming_it() -> None:
    """A non-callable: TypeError naming it."""
    with pytest.raises(TypeError, match="int") as info:
        af.fork(12345)  # type: ignore[call-overload]
    assert "12345" in str(info.value)


def test_fork_of_async_generator_function_is_typeerror_naming_it() -> None:
    """An async generator function: TypeError naming it."""

    async def agen_numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="agen_numbers"):
        af.fork(agen_numbers)


async def test_sync_callable_returning_coroutine_runs_it_on_host_loop() -> None:
    """A sync callable returning a coroutine: it runs on the host loop, its value is the value."""
    seen: dict[str, object] = {}

    async def where(x: int) -> int:
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.get_ident()
        return x + 1

    def make() -> Any:
        seen["maker_thread"] = threading.get_ident()
        return where(41)

    assert await af.fork(make) == 42
    assert seen["loop"] is asyncio.get_running_loop()
    assert seen["thread"] == threading.get_ident() != seen["maker_thread"]


def test_sync_callable_returning_coroutine_from_plain_thread(loop_kind: str) -> None:
    """From a plain thread, the returned coroutine runs on B (the host loop)."""

    async def where() -> str:
        return threading.current_thread().name

    assert af.fork(lambda: where()).result(timeout=T) == "asyncfork-loop"


def test_coroutine_function_with_executor_is_typeerror() -> None:
    """A coroutine function with any executor=: TypeError at fork, naming it."""
    with ThreadPoolExecutor(max_workers=1) as ex, pytest.raises(TypeError, match="double"):
        af.fork.options(executor=ex)(double, 1)


@pytest.mark.parametrize("bad", [5, "text", None, 1.5])
def test_wait_of_non_future_is_typeerror_naming_its_type(bad: object) -> None:
    """wait(x) with something that is not an asyncfork Future: TypeError naming its type."""
    with pytest.raises(TypeError, match=type(bad).__name__):
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


def test_bad_on_cancel_and_limit_are_valueerror_naming_the_option() -> None:
    """on_cancel="x" and limit=0: ValueError naming the option."""
    with pytest.raises(ValueError, match="on_cancel"):
        af.fork.options(on_cancel="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        af.group(limit=0)
    with pytest.raises(ValueError, match="limit"):
        af.group(limit=-3)


# -- asyncio interop ---------------------------------------------------------------------


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


async def test_background_future_awaited_from_another_loop_does_not_block_it() -> None:
    """A Future of B awaited from another loop: that loop keeps running meanwhile."""
    gate = threading.Event()

    async def on_background() -> tuple[bool, str]:
        released = await asyncio.to_thread(gate.wait, T)
        return released, threading.current_thread().name

    fut = await asyncio.to_thread(af.fork, on_background)  # a plain thread: B
    assert fut.get_loop() is not asyncio.get_running_loop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 5:
                gate.set()
            await asyncio.sleep(0)

    tick_task = asyncio.create_task(ticker())
    try:
        released, thread = await fut
    finally:
        tick_task.cancel()
    assert released, "the awaiting loop was blocked: the ticker never released the fork"
    assert thread == "asyncfork-loop"
    assert ticks >= 5


# -- af.current() ------------------------------------------------------------------------


async def test_current_is_none_outside_forks_in_async_code() -> None:
    """af.current() is None outside forks (a plain asyncio task)."""
    assert af.current() is None


def test_current_is_none_in_plain_sync_code() -> None:
    """af.current() is None in sync code that is not a fork."""
    assert af.current() is None


async def test_current_is_the_future_inside_forks() -> None:
    """af.current() is the running fork's Future, in coroutine forks and sync forks' threads."""

    async def coro() -> object:
        await asyncio.sleep(0)
        return af.current()

    def sync() -> object:
        return af.current()

    c, s = af.fork(coro), af.fork(sync)
    assert await c is c
    assert await s is s
