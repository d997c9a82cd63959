"""Cancellation: fut.cancel(), what never runs, on_cancel, and a cancelled fork's children."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import logging
import threading
from asyncio import CancelledError

import pytest
from helpers import (
    T,
    cancelling_sync_part,
    closed_unstarted,
    double,
    flush_background_loop,
    forever,
    handler_calls,
    noop,
    three,
    ticks,
    within,
)

import asyncfork as af

# -- helpers -------------------------------------------------------------------------------


def window_scenario(loop, tail):
    """A sync fork whose cancel() reaches the loop right after its returned coroutine's Task
    was made, before that Task's first step.

    The body blocks the loop, forks `poster` (queued behind it on the only worker) and
    returns; `poster` runs once the body's outcome has been posted, posts the cancel, then
    unblocks the loop: the loop sees [settle (makes the Task), cancel, Task step].
    """
    loop_blocked = threading.Event()
    cancel_posted = threading.Event()
    blocked_ok: list[bool] = []
    made: list = []
    children: list = []

    def block_loop():
        loop_blocked.set()
        blocked_ok.append(cancel_posted.wait(T))

    def poster(parent):
        assert parent.cancel()
        cancel_posted.set()

    def body():
        children.append(af.fork(forever))  # an async child of the sync part
        loop.call_soon_threadsafe(block_loop)
        assert loop_blocked.wait(T)
        children.append(af.fork(poster, af.current()))
        coro = tail()
        made.append(coro)
        return coro

    return body, made, children, blocked_ok


# -- cancelling a coroutine fork -----------------------------------------------------------


async def test_cancel_running_coroutine_fork_from_its_loop() -> None:
    """fut.cancel() from the fork's own loop: the fork gets CancelledError at its await."""
    started = asyncio.Event()
    seen: list[str] = []

    async def body() -> None:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            seen.append("cancelled at await")
            raise

    fut = af.fork(body)
    await started.wait()
    assert fut.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert fut.cancelled()
    assert seen == ["cancelled at await"]
    assert fut.cancel() is False  # already finished


async def test_cancel_running_coroutine_fork_from_a_plain_thread() -> None:
    """fut.cancel() from any thread: a plain thread cancels a fork on this loop."""
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await forever()

    fut = af.fork(body)
    await started.wait()
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(fut.cancel()))
    thread.start()
    await asyncio.to_thread(thread.join, T)
    assert answer == [True]
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fut, T)
    assert fut.cancelled()


def test_cancel_background_fork_from_a_plain_thread(loop_kind: str) -> None:
    """fut.cancel() from a thread that is neither the fork's loop nor the forking thread."""
    started = threading.Event()

    async def body() -> None:
        started.set()
        await forever()

    fut = af.fork(body)
    assert started.wait(T)
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(fut.cancel()))
    thread.start()
    thread.join(T)
    assert answer == [True]
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert fut.cancelled()


async def test_coroutine_fork_swallowing_cancelled_error_ends_with_its_value():
    """A coroutine fork whose body swallows its CancelledError and returns ends with that value."""
    started = asyncio.Event()

    async def body():
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            return "swallowed"

    fut = af.fork(body)
    await within(started.wait())
    assert fut.cancel()
    assert await within(fut) == "swallowed"
    assert not fut.cancelled()


def test_cancellation_exception_is_asyncio_cancelled_error_in_sync_code(loop_kind: str) -> None:
    """result() and wait() raise asyncio.CancelledError (not concurrent.futures')."""
    fut = af.fork(forever)
    fut.cancel()
    for call in (lambda: fut.result(timeout=T), lambda: af.wait(fut, timeout=T)):
        with pytest.raises(BaseException) as info:
            call()
        assert type(info.value) is asyncio.CancelledError
        assert not isinstance(info.value, concurrent.futures.CancelledError)
    with pytest.raises(BaseException) as info:
        af.wait([fut], timeout=T)
    assert type(info.value) is asyncio.CancelledError


async def test_cancellation_exception_is_asyncio_cancelled_error_in_async_code() -> None:
    """await fut and await af.wait(fut) raise asyncio.CancelledError."""
    fut = af.fork(forever)
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    with pytest.raises(asyncio.CancelledError):
        await af.wait(fut)
    with pytest.raises(asyncio.CancelledError):
        await af.wait([fut])
    # The test's own task is not left cancelled.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


# -- a fork that has not started never runs ------------------------------------------------


async def test_coroutine_fork_cancelled_before_start_never_runs() -> None:
    """A coroutine fork that has not started never runs."""
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    fut = af.fork(body)
    assert fut.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await fut
    for _ in range(5):  # give the loop every chance to (wrongly) step it
        await asyncio.sleep(0)
    assert ran == []
    assert fut.cancelled()


def test_background_coroutine_fork_cancelled_before_start_never_runs(loop_kind: str) -> None:
    """A coroutine fork forked onto the background loop and cancelled at once never runs."""
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    # Hold the background loop in one step, so that the fork cannot start before the
    # cancel arrives (from this thread, "right after fork" is otherwise a race).
    holding = threading.Event()
    release = threading.Event()

    async def hold_the_loop() -> None:
        holding.set()
        release.wait(T)

    holder = af.fork(hold_the_loop)
    assert holding.wait(T)
    fut = af.fork(body)
    assert fut.cancel() is True
    release.set()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    holder.result(timeout=T)
    flush_background_loop()
    assert ran == []


def test_queued_sync_fork_never_runs(loop_kind: str, one_worker: None) -> None:
    """A sync fork still queued for a worker, when cancelled, never runs."""
    release = threading.Event()
    started = threading.Event()
    ran: list[bool] = []

    def blocker() -> None:
        started.set()
        release.wait(T)

    def queued() -> None:
        ran.append(True)

    try:
        first = af.fork(blocker)
        assert started.wait(T)
        second = af.fork(queued)
        assert second.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            second.result(timeout=T)  # cancelled while the worker is still blocked
    finally:
        release.set()
    first.result(timeout=T)
    assert af.wait(af.fork(lambda: "after"), timeout=T) == "after"  # the worker is free again
    assert ran == []


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


# -- a cancelled fork's children -----------------------------------------------------------


async def test_cancelled_only_after_all_cleanup_of_fork_and_children() -> None:
    """A running fork's children are cancelled; its Future is cancelled when all cleanup ends."""
    log: list[str] = []
    ready = asyncio.Event()
    child_futs: list[af.Future[None]] = []

    async def child() -> None:
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            log.append("child cleanup")

    async def parent() -> None:
        child_futs.append(af.fork(child))
        ready.set()
        try:
            await forever()
        except asyncio.CancelledError:
            log.append("parent got CancelledError")
            raise
        finally:
            await asyncio.sleep(0.01)
            log.append("parent cleanup")

    fut = af.fork(parent)
    await ready.wait()
    await asyncio.sleep(0)  # let the child start its body
    at_done: list[list[str]] = []
    fut.add_done_callback(lambda f: at_done.append(sorted(log)))
    assert fut.cancel()
    assert not fut.done()  # the cleanup has not run yet
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fut, T)
    assert at_done == [["child cleanup", "parent cleanup", "parent got CancelledError"]]
    assert child_futs[0].cancelled()


async def test_cancelled_parent_cancels_and_joins_children():
    """If P is cancelled, its children are cancelled and their cleanup runs before P is done."""
    started = asyncio.Event()
    seen = []
    ps = []

    async def child():
        started.set()
        try:
            await forever()
        except CancelledError:
            seen.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.01)  # cleanup work
            seen.append(("cleanup, parent done:", ps[0].done()))

    async def parent():
        af.fork(child)
        await forever()

    p = af.fork(parent)
    ps.append(p)
    await within(started.wait())
    assert p.cancel()
    with pytest.raises(CancelledError):
        await within(p)
    assert p.cancelled()
    assert seen == ["cancelled", ("cleanup, parent done:", False)]


async def test_cancelled_parent_cancels_children_of_sync_fork():
    """A cancelled sync P's children are cancelled and joined before P is done."""
    started = threading.Event()
    release = threading.Event()
    seen = []

    async def child():
        started.set()
        try:
            await forever()
        except CancelledError:
            seen.append("cancelled")
            raise

    def parent():
        af.fork(child)
        assert release.wait(T)

    p = af.fork(parent)
    assert await asyncio.to_thread(started.wait, T)
    p.cancel()
    await ticks()
    assert seen == ["cancelled"]
    assert not p.done()  # on_cancel="wait": the function has not returned
    release.set()
    with pytest.raises(CancelledError):
        await within(p)


async def test_cancellation_during_join_cancels_children_and_ends_cancelled():
    """A cancel arriving after P's body returned (P joining) cancels its children; P cancelled."""
    child_started = asyncio.Event()
    body_returned = asyncio.Event()
    log = []

    async def child():
        child_started.set()
        try:
            await forever()
        finally:
            log.append("child cleanup")

    async def parent():
        af.fork(child)
        body_returned.set()
        return "value"

    p = af.fork(parent)
    await within(child_started.wait())
    await within(body_returned.wait())
    assert not p.done()
    assert p.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(p)
    assert p.cancelled()
    assert log == ["child cleanup"]


async def test_cancel_of_running_sync_fork_cancels_its_children_at_once_abandon_too():
    """fut.cancel() of a running sync fork cancels its children at once, in both on_cancel modes."""
    for mode in ("wait", "abandon"):
        child_started = threading.Event()
        child_cancelled = asyncio.Event()
        release = threading.Event()

        async def child(started=child_started, cancelled=child_cancelled):
            started.set()
            try:
                await forever()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        def parent(started=child_started, release=release):
            af.fork(child)
            assert started.wait(T)
            assert release.wait(T)

        p = af.fork.options(on_cancel=mode)(parent)
        assert await asyncio.to_thread(child_started.wait, T)
        p.cancel()
        try:
            await within(child_cancelled.wait())  # while the function is still blocked
        finally:
            release.set()
        with pytest.raises(asyncio.CancelledError):
            await within(p)


@pytest.mark.parametrize("on_cancel", ["wait", "abandon"])
async def test_child_forked_after_its_sync_parent_was_cancelled_never_starts(on_cancel):
    """A cancelled fork's children are cancelled; a fork made in a cancelled parent's scope
    never starts (or raises RuntimeError once the parent has completed)."""
    started = threading.Event()
    go = threading.Event()
    finished = threading.Event()
    child_ran = []
    made: list = []

    async def child():
        child_ran.append(True)

    def body():
        started.set()
        try:
            assert go.wait(T)
            try:
                made.append(af.fork(child))
            except RuntimeError as exc:  # the parent has completed (abandon)
                made.append(exc)
            return "x"
        finally:
            finished.set()

    fut = af.fork.options(on_cancel=on_cancel)(body)
    assert await within(asyncio.to_thread(started.wait, T))
    assert fut.cancel()
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert await within(asyncio.to_thread(finished.wait, T))
    if isinstance(made[0], af.Future):
        with pytest.raises(asyncio.CancelledError):
            await within(made[0])
    else:
        assert isinstance(made[0], RuntimeError)
    assert child_ran == []


# -- groups open in a cancelled fork --------------------------------------------------------


def _grandchild(started: threading.Event, cancelled: threading.Event):
    async def grandchild():
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return grandchild


@pytest.mark.parametrize("on_cancel", ["wait", "abandon"])
async def test_cancelling_a_sync_fork_reaches_the_children_of_a_sync_group_inside_it(on_cancel):
    """A running sync fork's children are cancelled at once: the children of a `with
    af.group()` open in it too. Forks into the group are refused from then on, and its exit
    raises CancelledError (the code after the block never runs), so the fork ends cancelled."""
    started, cancelled = threading.Event(), threading.Event()
    grandchild = _grandchild(started, cancelled)
    after: list[object] = []

    def body():
        with af.group() as g:
            g.fork(grandchild)
            assert started.wait(T)
            assert cancelled.wait(T)  # cancelled while the body still runs
            try:
                g.fork(grandchild)
            except asyncio.CancelledError:
                after.append("refused")
        after.append("after the group")

    fut = af.fork.options(on_cancel=on_cancel)(body)
    assert await within(asyncio.to_thread(started.wait, T))
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    # "abandon" settles without the group's children (the thread and its group run on).
    assert await within(asyncio.to_thread(cancelled.wait, T))
    if on_cancel == "wait":
        assert after == ["refused"]


def test_cancelling_a_sync_fork_reaches_a_group_entered_after_the_cancel(loop_kind):
    """A group entered in a fork that is being cancelled is cancelled at once: forks into it
    are refused (func never runs) and its exit raises CancelledError."""
    started = threading.Event()
    ran: list[object] = []

    def body():
        child = af.fork(forever)
        started.set()
        af.wait(child, return_exceptions=True, timeout=T)  # cancelled with this fork
        with af.group() as g:
            g.fork(ran.append, "grandchild")
        ran.append("after the group")

    fut = af.fork(body)
    assert started.wait(T)
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert ran == []


def test_cancelling_a_sync_group_reaches_a_sync_group_nested_in_it(loop_kind):
    """g.cancel() of a sync group cancels the children of a sync group nested in its body;
    the inner exit raises CancelledError, which the cancelled outer group swallows."""
    started, cancelled = threading.Event(), threading.Event()
    grandchild = _grandchild(started, cancelled)
    after: list[object] = []
    with af.group() as outer:
        inner = af.group()
        fired: list[bool] = []
        timer = threading.Timer(T, lambda: (fired.append(True), inner.cancel()))
        timer.daemon = True
        timer.start()
        try:
            with inner:
                inner.fork(grandchild)
                assert started.wait(T)
                outer.cancel()
            after.append("after the inner group")
        finally:
            timer.cancel()
    assert not fired, "the inner group's child was not cancelled"
    assert cancelled.is_set()
    assert after == []


async def test_cancelling_a_coroutine_fork_reaches_the_children_of_its_async_group():
    """The coroutine form needs nothing more: the fork's task is cancelled at its await in
    the group, whose exit cancels the children and lets the CancelledError through."""
    started, cancelled = threading.Event(), threading.Event()
    grandchild = _grandchild(started, cancelled)
    after: list[object] = []

    async def body():
        async with af.group() as g:
            g.fork(grandchild)
            await forever()
        after.append("after the group")

    fut = af.fork(body)
    assert await within(asyncio.to_thread(started.wait, T))
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert cancelled.is_set()
    assert after == []


# -- waiters -------------------------------------------------------------------------------


async def test_cancelling_a_waiter_task_does_not_cancel_the_awaited_future() -> None:
    """Cancelling a task awaiting a Future leaves the Future (and its other waiters) alone."""
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 42

    fut = af.fork(work)

    async def waiter() -> int:
        return await fut

    first = asyncio.create_task(waiter())
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # both are now awaiting fut
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not fut.done()
    release.set()
    assert await asyncio.wait_for(second, T) == 42
    assert not fut.cancelled()
    assert fut.result() == 42


async def test_cancelling_a_waiter_fork_does_not_cancel_the_awaited_future() -> None:
    """Same rule when the waiter is itself a fork (a sibling, not the parent)."""
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "value"

    fut = af.fork(work)

    async def waiter() -> str:
        waiting.set()
        return await fut

    w1 = af.fork(waiter)
    w2 = af.fork(waiter)
    await waiting.wait()
    await asyncio.sleep(0)
    w1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(w1, T)
    assert not fut.done()
    release.set()
    assert await asyncio.wait_for(w2, T) == "value"
    assert not fut.cancelled()


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


# -- running sync forks: on_cancel="wait" and "abandon" ------------------------------------


def test_running_sync_fork_on_cancel_wait_settles_when_function_returns(loop_kind: str) -> None:
    """on_cancel="wait": cancelled only when the function returns; its result is discarded."""
    started = threading.Event()
    release = threading.Event()
    returned: list[bool] = []

    def body() -> str:
        started.set()
        release.wait(T)
        returned.append(True)
        return "discarded"

    fut = af.fork(body)
    try:
        assert started.wait(T)
        assert fut.cancel() is True
        flush_background_loop()  # the cancellation request has been handled
        assert not fut.done()
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert returned == [True]
    assert fut.cancelled()


def test_cancelled_sync_fork_that_raises_fails_with_its_error(loop_kind: str) -> None:
    """A cancelled sync fork that raises (not CancelledError) fails with that error."""
    started = threading.Event()
    release = threading.Event()
    error = ValueError("not lost")

    def body() -> None:
        started.set()
        release.wait(T)
        raise error

    fut = af.fork(body)
    try:
        assert started.wait(T)
        assert fut.cancel()
        flush_background_loop()
    finally:
        release.set()
    with pytest.raises(ValueError) as info:
        fut.result(timeout=T)
    assert info.value is error
    assert not fut.cancelled()


def test_on_cancel_abandon(
    loop_kind: str, one_worker: None, caplog: pytest.LogCaptureFixture
) -> None:
    """on_cancel="abandon": children cancelled and joined, then cancelled; thread left behind."""
    caplog.set_level(logging.DEBUG, logger="asyncfork")
    started = threading.Event()
    child_started = threading.Event()
    release = threading.Event()
    log: list[str] = []

    async def child() -> None:
        child_started.set()
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            log.append("child cleanup")

    def blocked() -> str:
        af.fork(child)
        started.set()
        release.wait(T)
        log.append("thread returned")
        return "dropped"

    try:
        fut = af.fork.options(on_cancel="abandon")(blocked)
        assert started.wait(T)
        assert child_started.wait(T)
        at_done: list[list[str]] = []
        fut.add_done_callback(lambda f: at_done.append(list(log)))
        assert fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            fut.result(timeout=T)  # while the function is still blocked
        assert at_done == [["child cleanup"]]
        # The thread keeps its worker slot until it returns.
        ran = threading.Event()
        after = af.fork(ran.set)
        assert not ran.wait(0.1)
    finally:
        release.set()
    assert after.result(timeout=T) is None  # settled after the abandoned result was dropped
    assert log == ["child cleanup", "thread returned"]
    assert fut.cancelled()
    del fut
    gc.collect()
    assert [r for r in caplog.records if r.name.startswith("asyncfork")] == []


def test_abandoned_sync_fork_error_is_dropped_without_log(loop_kind, one_worker, caplog):
    """on_cancel="abandon": an error the thread raises later is dropped without a log line."""
    caplog.set_level(logging.DEBUG, logger="asyncfork")
    started = threading.Event()
    release = threading.Event()

    def body():
        started.set()
        assert release.wait(T)
        raise ValueError("too late")

    fut = af.fork.options(on_cancel="abandon")(body)
    assert started.wait(T)
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    release.set()
    # The one worker runs this only after the abandoned function has returned.
    assert af.fork(lambda: "after").result(timeout=T) == "after"
    assert af.wait(af.fork(double, 0), timeout=T) == 0  # one more loop round trip
    assert fut.cancelled()
    del fut
    gc.collect()
    assert [r for r in caplog.records if r.name.startswith("asyncfork")] == []


async def test_abandon_cancel_while_joining_after_an_error_keeps_the_error():
    """Errors are never lost: a sync fork (on_cancel="abandon") that raised and is joining
    its children when cancel() arrives still fails with its error."""
    child_started = threading.Event()
    cleaning = asyncio.Event()
    release = asyncio.Event()

    async def slow_child():
        child_started.set()
        try:
            await forever()
        finally:
            cleaning.set()
            await release.wait()  # cleanup takes a while

    def parent():
        af.fork(slow_child)
        assert child_started.wait(T)
        raise ValueError("important failure")

    fut = af.fork.options(on_cancel="abandon")(parent)
    await within(cleaning.wait())  # the parent raised; its child is being cancelled, joined
    assert not fut.done()
    assert fut.cancel()
    release.set()
    with pytest.raises(ValueError, match="important failure"):
        await within(fut)


# -- a cancelled sync fork that returns a coroutine ----------------------------------------


async def test_sync_fork_returning_coroutine_cancelled_while_it_runs_ends_cancelled():
    """A cancelled sync fork's Future ends cancelled; a coroutine it returns is never left
    un-awaited: it is closed, not run, and no warning is shown."""
    started = threading.Event()
    made: list = []
    tail_ran = []

    async def tail():
        tail_ran.append(True)
        return "tail value"

    fut = af.fork(cancelling_sync_part(started, made, tail))
    assert await within(asyncio.to_thread(started.wait, T))
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert fut.cancelled()
    assert tail_ran == []
    assert closed_unstarted(made[0])


async def test_sync_fork_returning_coroutine_cancelled_before_its_first_step_ends_cancelled(
    one_worker,
):
    """A coroutine fork that has not started never runs and its Future ends cancelled: the
    coroutine a sync fork returned is closed, never left un-awaited."""
    tail_ran = []

    async def tail():
        tail_ran.append(True)

    body, made, children, blocked_ok = window_scenario(asyncio.get_running_loop(), tail)
    fut = af.fork(body)
    try:
        with pytest.raises(asyncio.CancelledError):
            await within(fut)
        assert blocked_ok == [True]
        assert fut.cancelled()
        assert tail_ran == []
        assert closed_unstarted(made[0])
    finally:
        for child in children:
            child.cancel()
        await within(asyncio.gather(*children, return_exceptions=True))


async def test_sync_fork_returning_coroutine_cancelled_before_its_first_step_joins_children(
    one_worker,
):
    """If P's body raises or P is cancelled, P's unfinished children are cancelled, then
    joined -- also when P is cancelled before its returned coroutine's first step."""

    async def tail():
        return None

    body, _made, children, blocked_ok = window_scenario(asyncio.get_running_loop(), tail)
    fut = af.fork(body)
    try:
        with pytest.raises(asyncio.CancelledError):
            await within(fut)
        assert blocked_ok == [True]
        async_child, poster = children
        # P resolved only after its children had finished; its async child was cancelled.
        assert poster.done()
        assert async_child.done(), "the parent settled while its child was still running"
        assert async_child.cancelled()
    finally:
        for child in children:
            child.cancel()
        await within(asyncio.gather(*children, return_exceptions=True))


def test_abandoned_sync_fork_returning_coroutine_closes_it_without_warning(loop_kind, one_worker):
    """With `on_cancel="abandon"` the result is dropped without noise; a returned coroutine
    is never left un-awaited (closed: no "never awaited" warning)."""
    started = threading.Event()
    go = threading.Event()
    made: list = []
    tail_ran = []

    async def tail():
        tail_ran.append(True)

    def body():
        started.set()
        assert go.wait(T)
        coro = tail()
        made.append(coro)
        return coro

    fut = af.fork.options(on_cancel="abandon")(body)
    assert started.wait(T)
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    go.set()
    # The only worker runs this after body returned, whose outcome reached the loop first.
    assert af.wait(af.fork(lambda: "after"), timeout=T) == "after"
    assert af.wait(af.fork(noop), timeout=T) is None
    assert tail_ran == []
    assert closed_unstarted(made[0])
