"""af.Future: its methods, callbacks, name, parent, repr, errors and asyncio likeness."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import sys
import threading
import time
import traceback
from asyncio import CancelledError
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import (
    T,
    coro_fork_fn,
    double,
    forever,
    fork_left_on_a_closed_loop,
    gated,
    sync_fork_fn,
    three,
    ticks,
    within,
)

import asyncfork as af

# -- helpers -------------------------------------------------------------------------------

AF_DIR = os.path.dirname(af.__file__)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("callback_var", default="unset")


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


# -- value, exception, done, cancelled -----------------------------------------------------


async def test_await_returns_value() -> None:
    """`await fut` returns the fork's value."""
    assert await af.fork(double, 21) == 42


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


async def test_exception_of_a_cancelled_future_raises_cancelled_error():
    """exception() on a cancelled Future raises asyncio.CancelledError."""
    fut = af.fork(forever)
    fut.cancel("stop")
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    with pytest.raises(asyncio.CancelledError, match="stop"):
        fut.exception()


def test_done_and_cancelled(loop_kind: str) -> None:
    """done() is True once finished; cancelled() only for a cancelled fork."""
    gate = threading.Event()
    fut = af.fork(gated(gate))
    assert (fut.done(), fut.cancelled()) == (False, False)
    gate.set()
    fut.result(timeout=T)
    assert (fut.done(), fut.cancelled()) == (True, False)


def test_future_has_no_public_constructor() -> None:
    """af.Future has no public constructor."""
    with pytest.raises(TypeError):
        af.Future()


# -- cancel() ------------------------------------------------------------------------------


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


# -- done-callbacks ------------------------------------------------------------------------


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


async def test_done_callbacks_run_synchronously_when_the_fork_settles():
    """Done-callbacks run on the loop thread when the fork settles, not one iteration later."""
    order = []

    async def body():
        asyncio.get_running_loop().call_soon(order.append, "next iteration")
        return 1

    fut = af.fork(body)
    fut.add_done_callback(lambda f: order.append(("callback", threading.get_ident())))
    assert await within(fut) == 1
    await ticks(2)
    assert order == [("callback", threading.get_ident()), "next iteration"]


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


def test_done_callback_with_context_runs_in_that_context(loop_kind):
    """add_done_callback(fn, context=ctx) on a finished Future: called at once, in ctx."""
    fut = af.fork(three)
    assert af.wait(fut, timeout=T) == 3
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "in ctx")
    seen = []
    fut.add_done_callback(lambda f: seen.append((f, VAR.get())), context=ctx)
    assert seen == [(fut, "in ctx")]
    assert VAR.get() == "unset"


async def test_done_callback_runs_in_the_context_of_the_code_that_added_it():
    """A done-callback sees the adding code's context (as asyncio does), not the fork's."""
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    seen = asyncio.get_running_loop().create_future()

    async def child():
        var.set("inside the fork")
        return 1

    var.set("adder")
    fut = af.fork(child)
    fut.add_done_callback(lambda f: seen.set_result((var.get(), af.current())))
    assert await fut == 1
    value, current = await asyncio.wait_for(seen, T)
    assert value == "adder"
    assert current is None  # not the finished fork: forking from the callback is allowed


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


async def test_remove_done_callback_from_a_foreign_thread_while_pending():
    """remove_done_callback from any thread returns how many registrations it removed."""
    gate = asyncio.Event()

    async def body():
        await gate.wait()

    fut = af.fork(body)
    called = []
    fut.add_done_callback(called.append)
    fut.add_done_callback(called.append)
    assert await within(asyncio.to_thread(fut.remove_done_callback, called.append)) == 2
    assert fut.remove_done_callback(print) == 0  # on the loop, nothing registered
    gate.set()
    await within(fut)
    assert called == []


class _RaisingEq:
    """A done-callback whose ``__eq__`` raises, as some callables' (numpy-like) do."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def __call__(self, fut: object) -> None:
        self.calls.append(fut)

    def __eq__(self, other: object) -> bool:
        raise TypeError("no comparing this")

    __hash__ = object.__hash__


def _in_daemon_thread(fn: Callable[[], object]) -> list[object]:
    """Run fn in a daemon thread, bounded: a hang fails the test and cannot block exit."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(T)
    assert not thread.is_alive(), "the call hung"
    return out


async def test_remove_done_callback_from_a_foreign_thread_with_a_raising_eq():
    """A registered callback whose __eq__ raises counts as unequal: removal from another
    thread neither hangs nor raises, and the identical object is still found."""
    gate = asyncio.Event()

    async def body() -> int:
        await gate.wait()
        return 1

    fut = af.fork(body)
    raising = _RaisingEq()
    others: list[object] = []
    fut.add_done_callback(raising)
    fut.add_done_callback(others.append)
    assert await asyncio.to_thread(_in_daemon_thread, lambda: fut.remove_done_callback(print)) == [
        0
    ]
    assert await asyncio.to_thread(
        _in_daemon_thread, lambda: fut.remove_done_callback(others.append)
    ) == [1]
    assert fut.remove_done_callback(raising) == 1  # by identity, on the loop
    gate.set()
    assert await within(fut) == 1
    await ticks()
    assert raising.calls == []
    assert others == []


async def test_cancelled_await_with_a_raising_eq_callback_raises_its_timeout():
    """A waiter leaving (here at a timeout) is not tripped by another callback's __eq__."""
    gate = asyncio.Event()

    async def body() -> int:
        await gate.wait()
        return 1

    fut = af.fork(body)
    raising = _RaisingEq()
    fut.add_done_callback(raising)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await fut
    gate.set()
    assert await within(fut) == 1
    await ticks()
    assert raising.calls == [fut]


def _watched(base: type[asyncio.AbstractEventLoop]) -> type[asyncio.AbstractEventLoop]:
    """A loop class that sets ``posted`` whenever another thread posts a call to it."""

    class Watched(base):  # type: ignore[misc,valid-type]
        posted: threading.Event | None = None

        def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
            handle = super().call_soon_threadsafe(callback, *args, context=context)
            if self.posted is not None:
                self.posted.set()
            return handle

    return Watched


@pytest.fixture(params=["asyncio", "uvloop"])
def user_loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A loop of the user's, run in steps by the test (stopped between them), closed after.

    Its ``posted`` event, when set to one, is set as another thread posts a call to it.
    """
    import uvloop

    base = asyncio.SelectorEventLoop if request.param == "asyncio" else uvloop.Loop
    loop = _watched(base)()
    try:
        yield loop
    finally:
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _fork_on(loop: asyncio.AbstractEventLoop, func: Callable[[], object]) -> af.Future[object]:
    """Fork a sync ``func`` on ``loop`` (as a root), then leave the loop stopped."""

    async def make() -> af.Future[object]:
        return af.fork(func)

    return loop.run_until_complete(make())


def test_remove_done_callback_does_not_wait_for_a_loop_that_is_not_running(user_loop):
    """From a thread not running the Future's loop, removal returns its exact count at once,
    even while that loop is stopped (here: by the very thread that would have to run it)."""
    gate = threading.Event()
    fut = _fork_on(user_loop, gated(gate, 5))
    calls: list[object] = []
    fut.add_done_callback(calls.append)  # posted: the stopped loop has not taken it in
    fut.add_done_callback(calls.append)
    assert _in_daemon_thread(lambda: fut.remove_done_callback(calls.append)) == [2]
    assert fut.remove_done_callback(calls.append) == 0
    kept: list[object] = []
    fut.add_done_callback(kept.append)
    gate.set()

    async def settled() -> object:
        return await asyncio.wait_for(fut, T)

    assert user_loop.run_until_complete(settled()) == 5
    user_loop.run_until_complete(asyncio.sleep(0))
    assert calls == []
    assert kept == [fut]


def _race_removals_against_the_settle(threads: int) -> None:
    """One round: each thread adds a callback, then removes it as the fork settles."""
    gate = threading.Event()
    fut = af.fork(gated(gate))
    ran: list[int] = []
    removed: list[int] = []
    start = threading.Barrier(threads + 1, timeout=T)
    accounted = threading.Semaphore(0)  # released once per registration run or removed

    def remover(i: int) -> None:
        def cb(_f: object) -> None:
            ran.append(i)
            accounted.release()

        fut.add_done_callback(cb)
        start.wait()
        if fut.remove_done_callback(cb):
            removed.append(i)
            accounted.release()

    workers = [threading.Thread(target=remover, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    start.wait()
    gate.set()
    for t in workers:
        t.join(T)
    assert fut.result(timeout=T) == "value"
    for _ in range(threads):  # the callbacks run on the loop, maybe after result() returned
        assert accounted.acquire(timeout=T)
    af.wait(af.fork(double, 0), timeout=T)  # a loop round trip: nothing runs twice after
    assert sorted(ran + removed) == list(range(threads))


def test_callbacks_removed_while_the_fork_settles_run_or_count_never_both(loop_kind):
    """Removals from many threads race the settling loop: each registration is either run
    once or counted as removed, never both and never neither."""
    for _ in range(20):
        _race_removals_against_the_settle(8)


# -- a sync fork whose loop closed ---------------------------------------------------------


def test_wait_on_a_sync_fork_still_running_after_asyncio_run_gets_its_value():
    """The rule: a sync fork still running when its loop closes finishes in its thread, and
    waiting on it then gets its value (never "loop is closed", then a value later)."""
    gate, started = threading.Event(), threading.Event()

    def body() -> int:
        started.set()
        assert gate.wait(T)
        return 42

    async def main() -> af.Future[int]:
        fut = af.fork(body)
        await asyncio.to_thread(started.wait, T)
        return fut

    fut = asyncio.run(main())  # closes its loop while the fork runs
    with pytest.raises(TimeoutError):
        af.wait(fut, timeout=0.01)  # watched like any other fork: it is still running
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.01)
    called = threading.Event()
    fut.add_done_callback(lambda _f: called.set())
    waited: list[object] = []
    waiter = threading.Thread(target=lambda: waited.append(af.wait(fut, timeout=T)))
    waiter.start()
    gate.set()
    waiter.join(T)
    assert waited == [42]
    assert called.wait(T)
    assert af.wait(fut, timeout=T) == 42


async def test_await_from_another_loop_on_a_sync_fork_whose_loop_closed():
    """Awaiting from another loop follows the same rule: the value arrives."""
    gate, started = threading.Event(), threading.Event()

    def body() -> str:
        started.set()
        assert gate.wait(T)
        return "late"

    async def main() -> af.Future[str]:
        fut = af.fork(body)
        await asyncio.to_thread(started.wait, T)
        return fut

    fut = await asyncio.to_thread(asyncio.run, main())
    waiting = asyncio.ensure_future(within(fut))
    await ticks()
    gate.set()
    assert await waiting == "late"


def test_outcome_posted_as_the_loop_closes_reaches_its_waiters(user_loop):
    """A sync fork's outcome posted to a stopped loop that then closes without running it
    is not lost: the close settles the Future with it, and its waiters get it."""
    gate = threading.Event()
    fut = _fork_on(user_loop, gated(gate, "kept"))
    user_loop.posted = threading.Event()
    gate.set()
    assert user_loop.posted.wait(T)  # the outcome is posted; the stopped loop never runs it
    user_loop.close()
    assert fut.done()  # settled as the close dropped the queued call
    assert af.wait(fut, timeout=T) == "kept"
    assert fut.result() == "kept"


async def test_raising_done_callback_goes_to_exception_handler_others_still_run():
    """A done-callback's exception goes to the loop's exception handler; the others still run."""
    loop = asyncio.get_running_loop()
    handled = []
    err = ValueError("callback failed")
    calls = []

    def bad(f):
        raise err

    loop.set_exception_handler(lambda _loop, ctx: handled.append(ctx))
    try:
        fut = af.fork(double, 1)
        fut.add_done_callback(calls.append)
        fut.add_done_callback(bad)
        fut.add_done_callback(calls.append)
        assert await within(fut) == 2
        await ticks(2)
    finally:
        loop.set_exception_handler(None)
    assert calls == [fut, fut]
    assert len(handled) == 1
    assert handled[0]["exception"] is err


def test_raising_done_callback_on_background_loop_does_not_stop_others(loop_kind):
    """The same on the background loop: the error is handled, later callbacks run."""
    gate = threading.Event()
    called = threading.Event()

    async def body():
        await asyncio.to_thread(gate.wait, T)
        return "v"

    def bad(f):
        raise ValueError("callback failed")

    fut = af.fork(body)
    fut.add_done_callback(bad)
    fut.add_done_callback(lambda f: called.set())
    gate.set()
    assert fut.result(timeout=T) == "v"
    assert called.wait(T)
    # The loop survives it and keeps serving forks.
    assert af.wait(af.fork(double, 4), timeout=T) == 8


def test_done_callback_raising_system_exit_does_not_stop_other_waiters(loop_kind):
    """The background loop survives any exception, `KeyboardInterrupt` and `SystemExit`
    included, and a raising done-callback does not stop the others."""
    gate = threading.Event()
    later = threading.Event()
    in_thread: list = []

    async def work():
        await asyncio.to_thread(gate.wait, T)
        return 1

    fut = af.fork(work)
    fut.add_done_callback(lambda _: sys.exit("from a done-callback"))
    fut.add_done_callback(lambda _: later.set())
    waiter = threading.Thread(target=lambda: in_thread.append(fut.result(timeout=T)))
    waiter.start()
    gate.set()
    assert later.wait(T)
    waiter.join(T)
    assert not waiter.is_alive()
    assert in_thread == [1]
    # The background loop survived it and keeps serving forks.
    assert af.wait(af.fork(double, 4), timeout=T) == 8


def test_done_callback_raising_system_exit_leaves_no_task_noise(loop_kind, caplog):
    """No 'Task was destroyed but it is pending', 'Exception in thread' or 'never retrieved'
    noise for work that was handled -- the fork's own Task does not end with a
    callback's SystemExit and log "Task exception was never retrieved"."""
    caplog.set_level(logging.ERROR)
    gate = threading.Event()

    async def work():
        await asyncio.to_thread(gate.wait, T)
        return 1

    fut = af.fork(work)
    fut.add_done_callback(lambda _: sys.exit("from a done-callback"))
    gate.set()
    assert fut.result(timeout=T) == 1
    del fut
    assert af.wait(af.fork(double, 4), timeout=T) == 8
    gc.collect()
    noise = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert noise == []


# -- name, parent, repr --------------------------------------------------------------------


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


async def test_repr_shows_each_state():
    """repr shows the name and the state: pending, running, cancelling, cancelled, failed."""
    started, cleanup = asyncio.Event(), asyncio.Event()

    async def body():
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            await cleanup.wait()
            raise

    fut = af.fork.options(name="job")(body)
    assert repr(fut) == "<asyncfork.Future 'job' pending>"
    await within(started.wait())
    assert repr(fut) == "<asyncfork.Future 'job' running>"
    fut.cancel()
    assert repr(fut) == "<asyncfork.Future 'job' cancelling>"
    cleanup.set()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert repr(fut) == "<asyncfork.Future 'job' cancelled>"

    async def fail():
        raise KeyError("k")

    failed = af.fork.options(name="bad")(fail)
    with pytest.raises(KeyError):
        await within(failed)
    assert repr(failed) == "<asyncfork.Future 'bad' failed KeyError>"


# -- thread safety -------------------------------------------------------------------------


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


# -- errors --------------------------------------------------------------------------------


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


# -- an asyncio-like Future ----------------------------------------------------------------


async def test_future_is_asyncio_future_like():
    """asyncio.isfuture(fut) is true; ensure_future and asyncio.wait take it as it is."""
    fut = af.fork(double, 2)
    assert asyncio.isfuture(fut)
    assert asyncio.ensure_future(fut) is fut
    done, pending = await asyncio.wait([fut], timeout=T)
    assert pending == set()
    assert done == {fut}
    assert next(iter(done)) is fut


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


# -- a sync fork on a user's loop that is stopped, then closed -----------------------------


def _user_loop_that_signals_posts(kind: str, posted: threading.Event) -> asyncio.AbstractEventLoop:
    """A user's loop of ``kind`` that sets ``posted`` after each call_soon_threadsafe."""
    import uvloop

    base: type[asyncio.AbstractEventLoop] = (
        uvloop.Loop if kind == "uvloop" else asyncio.SelectorEventLoop  # type: ignore[assignment]
    )

    class Signalling(base):  # type: ignore[valid-type,misc]
        def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
            handle = super().call_soon_threadsafe(*args, **kwargs)
            posted.set()
            return handle

    return Signalling()  # type: ignore[no-any-return]


def _sync_fork_left_on_a_stopped_loop(
    kind: str,
) -> tuple[asyncio.AbstractEventLoop, af.Future[str]]:
    """A sync fork on a user's loop that stopped; its call has returned and posted its outcome."""
    posted = threading.Event()
    gate = threading.Event()
    loop = _user_loop_that_signals_posts(kind, posted)

    def work() -> str:
        assert gate.wait(T)
        return "kept"

    async def start() -> af.Future[str]:
        return af.fork.options(detached=True)(work)

    fut = loop.run_until_complete(start())
    posted.clear()
    gate.set()  # the call returns while the loop is stopped (not closed)
    assert posted.wait(T)
    assert not fut.done()
    return loop, fut


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_sync_fork_on_a_stopped_user_loop_settles_at_close(kind: str) -> None:
    """The outcome posted to a stopped user loop is not lost when the loop closes: it settles."""
    loop, fut = _sync_fork_left_on_a_stopped_loop(kind)
    seen: list[str] = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    loop.close()
    assert fut.done()
    assert fut.result() == "kept"
    assert seen == ["kept"]


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_sync_fork_on_a_stopped_user_loop_settles_when_it_runs_again(kind: str) -> None:
    """The same outcome settles on the loop when the loop runs again."""
    loop, fut = _sync_fork_left_on_a_stopped_loop(kind)
    try:
        assert loop.run_until_complete(asyncio.wait_for(fut, T)) == "kept"
    finally:
        loop.close()
    assert fut.result() == "kept"


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_wait_blocked_before_the_close_wakes_with_the_dropped_outcome(kind: str) -> None:
    """A plain thread already blocked on the fork when the stopped loop closes (dropping
    the posted outcome) wakes with the outcome, settled by the close."""
    loop, fut = _sync_fork_left_on_a_stopped_loop(kind)
    waited: list[object] = []
    waiter = threading.Thread(target=lambda: waited.append(af.wait(fut, timeout=T)))
    waiter.start()
    deadline = time.monotonic() + T
    while not fut._wakers and time.monotonic() < deadline:  # until the waiter has registered
        time.sleep(0.001)
    assert fut._wakers, "the waiter never registered"
    loop.close()
    waiter.join(T)
    assert waited == ["kept"]


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_waits_on_a_coroutine_fork_whose_loop_closed_unfinished_raise_at_once(kind: str) -> None:
    """A coroutine fork left pending on a loop that closed can never finish: a wait on it
    from a plain thread, or from another loop, raises RuntimeError at once (never hangs)."""
    fut = fork_left_on_a_closed_loop(kind)
    try:
        with pytest.raises(RuntimeError, match="can never finish"):
            af.wait(fut, timeout=T)
        with pytest.raises(RuntimeError, match="can never finish"):
            fut.result(timeout=T)

        async def from_another_loop() -> None:
            await af.wait(fut, timeout=T)

        with pytest.raises(RuntimeError, match="can never finish"):
            asyncio.run(from_another_loop())
        assert not fut._wakers  # the refused waits left nothing behind
    finally:
        fut._mark_retrieved()  # its task, dropped with the loop, closes its coroutine
