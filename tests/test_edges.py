"""Edge paths of DESIGN.md and docs/design.md that the other test files left unchecked.

Found from the branch-coverage report: each test checks a real rule (named in its
docstring) whose code path no other test reached: bad inputs, options, executor
cancellation, closed loops, group exits, ``af.run``'s interrupts and ``shutdown``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import T, forever

import asyncfork as af

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("edges_var", default="unset")


# -- helpers ---------------------------------------------------------------------------


async def within(aw, seconds=T):
    """Await ``aw`` with a deadline so that a deadlock fails instead of hanging."""
    return await asyncio.wait_for(aw, seconds)


async def three():
    return 3


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


def _new_user_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop()


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True)


@contextlib.contextmanager
def handler_calls() -> Iterator[list[dict]]:
    """Records what reaches the running loop's exception handler."""
    calls: list[dict] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: calls.append(context))
    try:
        yield calls
    finally:
        loop.set_exception_handler(previous)


# == classifying the callable (DESIGN §2, §8) =============================================


class AsyncCallable:
    async def __call__(self, x):
        return (x, asyncio.current_task() is not None)


class AsyncGenCallable:
    async def __call__(self):
        yield 1


async def test_callable_instance_with_async_call_is_a_coroutine_fork():
    """fork schedules a coroutine function as a task: an instance whose __call__ is async too."""
    fut = af.fork(AsyncCallable(), 4)
    assert await within(fut) == (4, True)  # ran as a task on the loop, not in a worker
    assert fut.name == "AsyncCallable"  # no __qualname__: the type's name


async def test_partial_of_coroutine_function_is_a_coroutine_fork():
    """A functools.partial of a coroutine function is forked as a coroutine (on the loop)."""

    async def add(a, b):
        return (a + b, threading.current_thread() is threading.main_thread())

    fut = af.fork(functools.partial(add, 1), 2)
    assert await within(fut) == (3, True)


def test_instance_with_async_generator_call_is_type_error():
    """An async generator function is rejected with a TypeError naming it (§8)."""
    with pytest.raises(TypeError, match="async generator function AsyncGenCallable"):
        af.fork(AsyncGenCallable())


def test_finished_coroutine_object_is_type_error():
    """fork(f(x)) is a TypeError even for a coroutine object that has already run (§8)."""
    coro = three()
    coro.close()
    with pytest.raises(TypeError, match=r"not a coroutine object.*af\.fork\(three\)"):
        af.fork(coro)  # type: ignore[call-overload]


def test_fork_options_of_the_wrong_type_are_type_errors():
    """Options are validated at once, and the error names the option."""
    with pytest.raises(TypeError, match=r"name=\.\.\.\) must be a str"):
        af.fork.options(name=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"executor=\.\.\.\) must be a concurrent\.futures"):
        af.fork.options(executor=object())  # type: ignore[arg-type]


def test_timeout_and_limit_of_the_wrong_type_are_type_errors(loop_kind):
    """A non-number timeout or a non-int limit is rejected, naming the option."""
    fut = af.fork(three)
    with pytest.raises(TypeError, match=r"wait\(timeout=\.\.\.\) must be a number"):
        af.wait(fut, timeout="1")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"group\(limit=\.\.\.\) must be an int"):
        af.group(limit=1.5)  # type: ignore[arg-type]
    assert af.wait(fut, timeout=T) == 3


async def test_fork_reprs_say_where_they_fork():
    """`af.fork` and `g.fork` show what they fork into."""
    assert repr(af.fork) == "<asyncfork.fork>"
    async with af.group(name="g1") as g:
        assert repr(g.fork).startswith("<fork into <asyncfork.group 'g1' open")


# == configure(loop=...) (DESIGN §3) ======================================================


def test_configure_loop_with_a_factory_makes_asyncforks_loops():
    """configure(loop=<callable>): af.run's loop comes from that callable."""
    made: list[asyncio.AbstractEventLoop] = []

    def factory():
        loop = asyncio.SelectorEventLoop()
        made.append(loop)
        return loop

    async def root():
        return asyncio.get_running_loop()

    af.configure(loop=factory)
    try:
        assert af.run(root) is made[0]
    finally:
        af.configure(loop=None)
    assert len(made) == 1


def test_configure_loop_bad_value_is_value_error():
    """A bad configure(loop=...) value is a ValueError naming it."""
    with pytest.raises(ValueError, match="'trio'"):
        af.configure(loop="trio")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["configure", "env"])
def test_uvloop_asked_for_but_missing_is_runtime_error(monkeypatch, how):
    """ASYNCFORK_LOOP=uvloop or configure(loop="uvloop") without uvloop: a clear error."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails
    called = []
    af.configure(loop="uvloop" if how == "configure" else None)
    if how == "env":
        monkeypatch.setenv("ASYNCFORK_LOOP", "uvloop")
    try:
        with pytest.raises(RuntimeError, match="pip install uvloop"):
            af.run(called.append, 1)
    finally:
        af.configure(loop=None)
    assert called == []


def test_default_loop_without_uvloop_is_asyncios(monkeypatch):
    """Loops asyncfork creates use uvloop when installed, else the default asyncio loop."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.delenv("ASYNCFORK_LOOP", raising=False)
    af.configure(loop=None)

    async def root():
        return type(asyncio.get_running_loop())

    assert issubclass(af.run(root), asyncio.BaseEventLoop)


# == executor forks (DESIGN §9, §5) =======================================================


async def test_executor_that_refuses_the_call_fails_the_future():
    """An Executor whose submit raises: the Future fails with that error; nothing hangs."""
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    ex.shutdown()
    fut = af.fork.options(executor=ex)(time.monotonic)
    with pytest.raises(RuntimeError, match="after shutdown"):
        await within(fut)


async def test_executor_fork_cancelled_while_running_waits_and_discards(executor):
    """on_cancel="wait": the Future is cancelled when the function returns, its value dropped."""
    started, go = threading.Event(), threading.Event()

    def work():
        started.set()
        assert go.wait(T)
        return "value"

    fut = af.fork.options(executor=executor)(work)
    assert await asyncio.to_thread(started.wait, T)
    assert fut.cancel() is True
    assert not fut.done()  # it waits for the running function
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert fut.cancelled()


async def test_executor_fork_abandoned_while_running_is_cancelled_at_once(executor):
    """on_cancel="abandon": cancelled at once; the later result is dropped without noise."""
    started, go = threading.Event(), threading.Event()

    def work():
        started.set()
        assert go.wait(T)
        return "late"

    with handler_calls() as calls:
        fut = af.fork.options(executor=executor, on_cancel="abandon")(work)
        assert await asyncio.to_thread(started.wait, T)
        assert fut.cancel() is True
        assert fut.cancelled()  # settled at once, while `work` still runs
        go.set()
        await asyncio.to_thread(executor.shutdown, wait=True)  # `work` has returned
        await asyncio.sleep(0)  # let its (posted) outcome reach the loop
    assert fut.cancelled()
    assert calls == []


async def test_executor_fork_cancelled_before_submission_never_runs(executor):
    """A fork that has not started never runs: an executor fork queued behind group(limit=1)."""
    calls = []
    gate = asyncio.Event()

    async def blocker():
        await gate.wait()

    async with af.group(limit=1) as g:
        g.fork(blocker)
        queued = g.fork.options(executor=executor)(calls.append, 1)
        assert queued.cancel() is True
        assert queued.cancelled()
        gate.set()
    assert calls == []


# == Future API (DESIGN §2) ===============================================================


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


async def test_exception_of_a_cancelled_future_raises_cancelled_error():
    """exception() on a cancelled Future raises asyncio.CancelledError (§5)."""
    fut = af.fork(forever)
    fut.cancel("stop")
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    with pytest.raises(asyncio.CancelledError, match="stop"):
        fut.exception()


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


async def test_waiter_cancelled_as_the_future_settles_causes_no_error():
    """A waiter cancelled in the iteration its Future settles: no error, the Future goes on."""
    gate = asyncio.Event()
    registered = asyncio.Event()

    async def blocker():
        await gate.wait()

    with handler_calls() as calls:
        await _cancel_waiter_and_future_together(blocker, gate, registered)
    assert calls == []


async def _cancel_waiter_and_future_together(blocker, gate, registered):
    async with af.group(limit=1) as g:
        g.fork(blocker)
        queued = g.fork(three)  # waits for a slot: never started

        async def waiter():
            registered.set()
            return await queued

        w = asyncio.ensure_future(waiter())
        await within(registered.wait())  # `w` awaits `queued` now
        w.cancel()
        assert queued.cancel() is True  # settles at once: `w`'s waiter is already cancelled
        gate.set()
    with pytest.raises(asyncio.CancelledError):
        await within(w)
    assert queued.cancelled()


async def test_fork_timeout_not_reached_keeps_the_value():
    """fork.options(timeout=s): a fork that finishes in time keeps its value."""
    fut = af.fork.options(timeout=T)(three)
    assert await within(fut) == 3
    assert not fut.cancelled()
    assert fut.exception() is None


# == forks whose loop has closed ===========================================================


class _LoopClosedUnder:
    """A sync fork, running in a worker, whose (user's) loop is closed under it."""

    def __init__(self, kind: str, body) -> None:
        self.loop = _new_user_loop(kind)
        self.started, self.go, self.settled = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

        def fork_body():
            self.started.set()
            assert self.go.wait(T)
            return body()

        async def main():
            fut = af.fork(fork_body)
            fut.add_done_callback(lambda f: self.settled.set())
            return fut

        self.fut = self.loop.run_until_complete(main())
        assert self.started.wait(T)
        self.loop.close()

    def finish(self):
        self.go.set()
        assert self.settled.wait(T)
        return self.fut


async def _never_called():  # pragma: no cover - must not run
    raise AssertionError("forked onto a closed loop")


@pytest.mark.parametrize("child", [_never_called, time.monotonic], ids=["coroutine", "sync"])
def test_fork_onto_a_closed_loop_is_runtime_error_naming_it(loop_kind, child):
    """A fork onto a loop that has closed raises RuntimeError naming it; the parent still ends."""
    errors = []

    def body():
        try:
            af.fork(child)
        except RuntimeError as exc:
            errors.append(exc)
        return "parent done"

    case = _LoopClosedUnder(loop_kind, body)
    fut = case.finish()
    assert fut.result(timeout=T) == "parent done"  # not stuck waiting for a child
    assert len(errors) == 1
    assert "closed" in str(errors[0])
    assert repr(case.loop) in str(errors[0])


def test_cancel_after_the_loop_closed_is_not_requested(loop_kind):
    """cancel() returns True only when the cancellation was requested: not on a closed loop."""
    case = _LoopClosedUnder(loop_kind, lambda: "value")
    assert case.fut.cancel() is False
    assert case.finish().result(timeout=T) == "value"  # indeed not cancelled


def test_sync_fork_returning_a_coroutine_after_its_loop_closed_fails_cleanly(loop_kind):
    """A returned coroutine is never left un-awaited: with no loop left, the fork fails."""
    returned = []

    def body():
        coro = three()
        returned.append(coro)
        return coro

    fut = _LoopClosedUnder(loop_kind, body).finish()
    with pytest.raises(RuntimeError, match="returned a coroutine after its loop closed"):
        fut.result(timeout=T)
    assert inspect.getcoroutinestate(returned[0]) == inspect.CORO_CLOSED


def test_executor_fork_finishing_after_its_loop_closed_still_settles(loop_kind, executor):
    """An executor fork outliving its loop still settles with its value; nothing hangs."""
    loop = _new_user_loop(loop_kind)
    started, go, settled = threading.Event(), threading.Event(), threading.Event()

    def work():
        started.set()
        assert go.wait(T)
        return "value"

    async def main():
        fut = af.fork.options(executor=executor)(work)
        fut.add_done_callback(lambda f: settled.set())
        return fut

    fut = loop.run_until_complete(main())
    assert started.wait(T)
    loop.close()
    go.set()
    assert settled.wait(T)
    assert fut.result(timeout=T) == "value"


# == implicit scopes (DESIGN §4) ===========================================================


async def test_two_unretrieved_child_failures_are_both_raised_at_the_join():
    """At P's join, every unretrieved child failure is raised in one ExceptionGroup."""

    async def fail(exc):
        raise exc

    first, second = ValueError("a"), KeyError("b")

    async def parent():
        af.fork(fail, first)
        af.fork(fail, second)

    with pytest.raises(ExceptionGroup) as info:
        await within(af.fork(parent))
    assert set(map(id, info.value.exceptions)) == {id(first), id(second)}


async def test_fork_cancelled_on_its_way_from_another_thread_never_runs():
    """A fork cancelled before it starts never runs, and its parent's join does not wait for it."""
    ran = []

    async def child():  # pragma: no cover - must not run
        ran.append(1)

    async def parent():
        ctx = contextvars.copy_context()  # the parent's context, for another thread
        box = []
        t = threading.Thread(target=lambda: box.append(ctx.run(af.fork, child)))
        t.start()
        t.join(T)  # blocks the loop: the fork is still on its way to it
        assert box[0].parent is af.current()
        assert box[0].cancel() is True
        return box[0]

    fut = await within(af.fork(parent))
    assert fut.cancelled()
    assert ran == []


# == wait / as_completed (DESIGN §2, §7) ===================================================


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


def test_worker_blocked_in_as_completed_lends_its_slot(loop_kind):
    """While a worker is blocked (here in `for ... in as_completed`), its slot is lent out."""

    def inner():
        return "inner ran"

    async def middle():  # a coroutine fork: nothing a worker could run inline
        return await af.fork(inner)  # needs a worker slot

    def outer():
        return [f.result() for f in af.as_completed([af.fork(middle)])]

    af.configure(workers=1)
    try:
        assert af.wait(af.fork(outer), timeout=T) == ["inner ran"]
    finally:
        af.configure(workers=None)


# == groups (DESIGN §4) ===================================================================


def test_sync_group_timeout_cancels_children_and_raises_timeout_error(loop_kind):
    """Sync group(timeout=s): at the deadline the children are cancelled; TimeoutError."""
    cleaned = threading.Event()

    async def slow():
        try:
            await forever()
        finally:
            cleaned.set()

    with pytest.raises(TimeoutError) as info, af.group(timeout=0.05) as g:
        g.fork(slow)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert cleaned.is_set()


async def test_group_cancel_before_entry_or_after_exit_does_nothing():
    """g.cancel() on a group that was never entered or has exited is a no-op."""
    g = af.group()
    g.cancel()  # never entered
    async with g:
        fut = g.fork(three)
    assert fut.result() == 3
    g.cancel()  # exited
    assert fut.result() == 3
    assert not fut.cancelled()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_group_cannot_be_entered_twice():
    """A group is used once: entering it again is a RuntimeError."""
    g = af.group()
    async with g:
        pass
    with pytest.raises(RuntimeError, match="entered already"):
        async with g:
            pass  # pragma: no cover


async def test_async_group_outside_a_task_is_runtime_error():
    """`async with af.group()` must run inside a task (not a plain loop callback)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[BaseException] = loop.create_future()

    def from_callback():
        try:
            af.group().__aenter__().send(None)
        except BaseException as exc:
            got.set_result(exc)

    loop.call_soon(from_callback)
    exc = await within(got)
    assert isinstance(exc, RuntimeError)
    assert "inside a task" in str(exc)


def test_nested_sync_groups_keep_their_nesting(loop_kind):
    """Nested groups keep their nesting in the ExceptionGroups (sync form)."""
    error = ValueError("inner")

    def fail():
        raise error

    def nested():
        with af.group(name="outer"), af.group(name="inner") as inner:
            inner.fork(fail)

    with pytest.raises(ExceptionGroup) as info:
        nested()
    (inner_group,) = info.value.exceptions
    assert isinstance(inner_group, ExceptionGroup)
    assert inner_group.exceptions == (error,)


def test_sync_group_exited_in_another_context_still_joins(loop_kind):
    """A sync group exited in another context than it was entered in still joins its children."""

    def scenario():
        g = af.group()
        g.__enter__()
        fut = g.fork(three)
        assert contextvars.Context().run(g.__exit__, None, None, None) is False
        return fut

    fut = contextvars.copy_context().run(scenario)
    assert fut.done()
    assert fut.result() == 3


async def test_group_owner_cancelled_from_outside_during_the_exit():
    """Cancelling the owning task while the exit waits cancels the children and propagates."""
    started, cleaned = asyncio.Event(), asyncio.Event()
    after = []

    async def child():
        started.set()
        try:
            await forever()
        finally:
            cleaned.set()

    async def owner():
        async with af.group() as g:
            g.fork(child)
        after.append(1)  # pragma: no cover

    task = asyncio.ensure_future(owner())
    await within(started.wait())  # the body has ended: the exit is waiting for `child`
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)
    assert task.cancelled()
    assert cleaned.is_set()
    assert after == []


async def test_group_owner_cancelled_from_outside_during_the_body():
    """Cancelling the owning task while the body runs cancels the children and propagates."""
    started, cleaned = asyncio.Event(), asyncio.Event()

    async def child():
        started.set()
        try:
            await forever()
        finally:
            cleaned.set()

    async def owner():
        async with af.group() as g:
            g.fork(child)
            await forever()

    task = asyncio.ensure_future(owner())
    await within(started.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)
    assert task.cancelled()
    assert cleaned.is_set()


async def test_fork_after_g_cancel_from_another_thread_is_refused_and_swallowed():
    """After g.cancel() from any thread, a fork raises CancelledError in the body; quiet exit."""
    called = []

    async def owner():
        async with af.group() as g:
            t = threading.Thread(target=g.cancel)
            t.start()
            t.join(T)  # blocks the loop: the cancellation has not reached it yet
            g.fork(called.append, 1)  # refused at once
            called.append("body went on")  # pragma: no cover
        return asyncio.current_task().cancelling()  # type: ignore[union-attr]

    assert await within(af.fork(owner)) == 0  # the owning task is not left cancelled
    assert called == []


async def test_fork_refused_after_g_cancel_can_be_caught_in_the_body():
    """The refusal is a CancelledError in the body; the group then exits quietly."""
    called = []

    async def owner():
        async with af.group() as g:
            t = threading.Thread(target=g.cancel)
            t.start()
            t.join(T)
            with pytest.raises(asyncio.CancelledError):
                g.fork(called.append, 1)
        return "after"

    assert await within(af.fork(owner)) == "after"
    assert called == []


async def test_group_deadline_during_failure_cleanup_raises_the_failure():
    """A group that timed out while already failing raises the real failure, not TimeoutError."""
    error = ValueError("real")

    async def slow_cleanup():
        try:
            await forever()
        except asyncio.CancelledError:
            await asyncio.sleep(0.15)  # cleanup work that outlasts the deadline
            raise

    async def fail():
        await asyncio.sleep(0)  # after slow_cleanup has started
        raise error

    async def body():
        async with af.group(timeout=0.05) as g:
            g.fork(slow_cleanup)
            g.fork(fail)

    with pytest.raises(ExceptionGroup) as info:
        await body()
    assert info.value.exceptions == (error,)


# == worker pool (DESIGN §9) ===============================================================


def test_raising_the_worker_limit_starts_queued_forks(loop_kind):
    """configure(workers=n) applies at once: forks queued under the old limit start."""
    release, a_started, b_started = threading.Event(), threading.Event(), threading.Event()

    def a():
        a_started.set()
        assert release.wait(T)

    af.configure(workers=1)
    try:
        fa = af.fork(a)
        assert a_started.wait(T)
        fb = af.fork(b_started.set)
        assert not b_started.wait(0.05)  # queued: the one slot is taken
        af.configure(workers=2)
        assert b_started.wait(T)  # started while `a` still runs
        release.set()
        af.wait([fa, fb], timeout=T)
    finally:
        release.set()
        af.configure(workers=None)


# == af.run (DESIGN §2; docs: shutdown and exit) ===========================================


def test_run_with_a_sync_root_that_raises_raises_it_as_is(loop_kind):
    """af.run(func): the root fork's error is raised as it is, for a sync root too."""
    error = LookupError("root")

    def root():
        raise error

    with pytest.raises(LookupError) as info:
        af.run(root)
    assert info.value is error


def test_run_ctrl_c_outside_any_fork_cancels_everything_and_runs_cleanup(loop_kind):
    """Ctrl-C while the loop runs no fork's code: every fork is cancelled, cleaned up, KI raised."""
    cleaned = []

    async def child():
        try:
            await forever()
        finally:
            cleaned.append("child")

    async def root():
        af.fork(child)
        asyncio.get_running_loop().call_soon(_raise_keyboard_interrupt)
        try:
            await forever()
        finally:
            cleaned.append("root")

    with pytest.raises(KeyboardInterrupt):
        af.run(root)
    assert sorted(cleaned) == ["child", "root"]


def test_run_second_ctrl_c_abandons_the_cleanup(loop_kind):
    """A second Ctrl-C during the cleanup abandons it; KeyboardInterrupt is raised promptly."""
    finished_cleanup = []

    async def root():
        try:
            await forever()
        except asyncio.CancelledError:
            asyncio.get_running_loop().call_soon(_raise_keyboard_interrupt)  # Ctrl-C again
            await asyncio.sleep(T)  # a long cleanup
            finished_cleanup.append(1)  # pragma: no cover
            raise

    def first_interrupt():
        raise KeyboardInterrupt

    async def main():
        af.fork(root)
        asyncio.get_running_loop().call_soon(first_interrupt)
        await forever()

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        af.run(main)
    assert time.monotonic() - start < T / 2
    assert finished_cleanup == []


def test_run_cancels_plain_tasks_left_behind(loop_kind):
    """As asyncio.run: tasks that are not forks, still pending at the end, are cancelled."""
    cleaned, tasks = [], []

    async def plain():
        try:
            await forever()
        finally:
            cleaned.append(1)

    async def root():
        tasks.append(asyncio.ensure_future(plain()))
        await asyncio.sleep(0)
        return "root"

    assert af.run(root) == "root"
    assert cleaned == [1]
    assert tasks[0].cancelled()


def test_run_with_two_interrupting_forks_raises_the_first(loop_kind):
    """A fork's KeyboardInterrupt ends af.run; a second interrupt meanwhile does not replace it."""

    async def interrupt():
        raise KeyboardInterrupt

    async def exit_():
        raise SystemExit(3)

    async def root():
        af.fork(interrupt)
        af.fork(exit_)
        await forever()

    with pytest.raises(KeyboardInterrupt):
        af.run(root)


# == shutdown (DESIGN §2, §9) ==============================================================


def test_shutdown_with_zero_timeout_when_nothing_runs(loop_kind):
    """shutdown(timeout=0) with no pending fork returns: there is nothing to wait for."""
    assert af.wait(af.fork(three), timeout=T) == 3  # the background loop runs, idle
    af.shutdown(timeout=0)
    af.shutdown(timeout=0)  # and with no background loop at all


def test_shutdown_cancels_plain_tasks_left_on_the_background_loop(loop_kind):
    """Plain tasks left on the background loop are cancelled at shutdown and finish cleanup."""
    cleaned = threading.Event()
    tasks = []

    async def plain():
        try:
            await forever()
        finally:
            cleaned.set()

    async def starter():
        tasks.append(asyncio.ensure_future(plain()))
        await asyncio.sleep(0)

    af.wait(af.fork(starter), timeout=T)
    af.shutdown(timeout=T)
    assert cleaned.is_set()


def test_shutdown_timeout_holds_while_the_background_loop_is_busy(loop_kind):
    """shutdown(timeout=s) raises TimeoutError after s, even if the loop is stuck in a step."""
    busy, release = threading.Event(), threading.Event()

    async def hog():
        busy.set()
        release.wait(2)  # blocks the background loop itself (a user's mistake)

    fut = af.fork(hog)
    assert busy.wait(T)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            af.shutdown(timeout=0.05)
        assert time.monotonic() - start < 1.0
    finally:
        release.set()
    af.wait(fut, timeout=T)
