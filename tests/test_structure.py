"""DESIGN section 4: structure — parents, children, implicit joins and groups."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import threading
import time
from asyncio import CancelledError

import pytest
from helpers import T, forever

import asyncfork as af


async def within(aw, seconds=T):
    """Await ``aw`` with a deadline so that a deadlock fails instead of hanging."""
    cm = asyncio.timeout(seconds)
    try:
        async with cm:
            return await aw
    finally:
        if cm.expired():
            pytest.fail(f"not done within {seconds}s")


async def stall():
    """Wait "forever" in a group body; after T seconds a TimeoutError fails the group."""
    async with asyncio.timeout(T):
        await forever()


def set_on_done(fut, event):
    fut.add_done_callback(lambda _f: event.set())


@contextlib.contextmanager
def watchdog(g):
    """Cancel sync group ``g`` after T seconds, so that a hanging exit fails the test."""
    fired = []

    def fire():
        fired.append(True)
        g.cancel()

    timer = threading.Timer(T, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if fired:
            pytest.fail(f"the group did not exit within {T}s")


async def ticks(n=10):
    for _ in range(n):
        await asyncio.sleep(0)


# -- implicit scope ------------------------------------------------------------------


async def test_fork_inside_coroutine_fork_is_its_child():
    """A fork made while coroutine fork P runs is a child of P."""

    async def child():
        return 1

    async def parent():
        return af.fork(child), af.current()

    p = af.fork(parent)
    c, cur = await within(p)
    assert cur is p
    assert c.parent is p
    assert p.parent is None


async def test_fork_inside_sync_fork_thread_is_its_child():
    """A fork made in a sync fork's worker thread (sync or coroutine) is a child of P."""

    async def achild():
        return 1

    def schild():
        return 2

    def parent():
        return af.fork(achild), af.fork(schild), af.current()

    p = af.fork(parent)
    a, s, cur = await within(p)
    assert cur is p
    assert a.parent is p
    assert s.parent is p
    assert await within(a) == 1
    assert await within(s) == 2


async def test_coroutine_parent_resolves_only_after_children():
    """Implicit join: P's Future resolves only after all its children have finished."""
    release = asyncio.Event()
    body_returned = asyncio.Event()

    async def child():
        await release.wait()
        return "child"

    async def parent():
        af.fork(child)
        body_returned.set()
        return "parent"

    p = af.fork(parent)
    await within(body_returned.wait())
    await ticks()
    assert not p.done()
    release.set()
    assert await within(p) == "parent"


async def test_sync_parent_resolves_only_after_children():
    """Implicit join for a sync fork: its Future waits for its children."""
    release = threading.Event()
    body_returned = threading.Event()

    def child():
        assert release.wait(T)
        return "child"

    def parent():
        af.fork(child)
        body_returned.set()
        return "parent"

    p = af.fork(parent)
    assert await asyncio.to_thread(body_returned.wait, T)
    await ticks()
    assert not p.done()
    release.set()
    assert await within(p) == "parent"


# -- failures in an implicit scope ---------------------------------------------------


async def test_child_failure_does_not_interrupt_parent_and_is_raised_at_join():
    """A child's failure does not interrupt P; unretrieved, it is raised at P's join."""
    err = ValueError("child")
    progress = []

    async def child():
        raise err

    async def parent():
        c = af.fork(child)
        failed = asyncio.Event()
        set_on_done(c, failed)
        await failed.wait()
        progress.append("after child failed")
        await ticks()
        progress.append("still running")
        return "parent"

    p = af.fork(parent)
    with pytest.raises(ExceptionGroup) as ei:
        await within(p)
    assert progress == ["after child failed", "still running"]
    assert ei.value.exceptions == (err,)


@pytest.mark.parametrize("how", ["await", "af.wait"])
async def test_failure_retrieved_by_coroutine_parent_is_not_raised_again(how):
    """If P retrieves a child's failure, P handles it; it is not raised again at P's join."""
    handled = []

    async def child():
        raise ValueError("child")

    async def parent():
        c = af.fork(child)
        try:
            if how == "await":
                await c
            else:
                await af.wait(c)
        except ValueError as exc:
            handled.append(exc)
        return "parent"

    assert await within(af.fork(parent)) == "parent"
    assert len(handled) == 1


@pytest.mark.parametrize("how", ["af.wait", "result", "exception"])
async def test_failure_retrieved_by_sync_parent_is_not_raised_again(how):
    """Retrieval by wait(), result() or exception() in a sync P counts too."""
    handled = []

    def child():
        raise ValueError("child")

    def parent():
        c = af.fork(child)
        if how == "exception":
            handled.append(c.exception(timeout=T))
            return "parent"
        try:
            if how == "af.wait":
                af.wait(c, timeout=T)
            else:
                c.result(timeout=T)
        except ValueError as exc:
            handled.append(exc)
        return "parent"

    assert await within(af.fork(parent)) == "parent"
    assert len(handled) == 1
    assert isinstance(handled[0], ValueError)


async def test_failure_retrieved_by_another_waiter_is_not_raised_again():
    """'Retrieved' means by anyone: a failure another waiter saw is not raised at P's join."""
    children = []
    go_on = asyncio.Event()
    forked = asyncio.Event()

    async def child():
        raise ValueError("child")

    async def parent():
        children.append(af.fork(child))
        forked.set()
        await go_on.wait()
        return "parent"

    p = af.fork(parent)
    await within(forked.wait())
    with pytest.raises(ValueError):
        await within(children[0])
    go_on.set()
    assert await within(p) == "parent"


async def test_parent_error_comes_first_in_group_with_unretrieved_child_failures():
    """P's own error is included, first, with its children's unretrieved failures."""
    child_err = ValueError("child")
    own_err = KeyError("parent")

    async def child():
        raise child_err

    async def parent():
        c = af.fork(child)
        failed = asyncio.Event()
        set_on_done(c, failed)
        await failed.wait()
        raise own_err

    with pytest.raises(ExceptionGroup) as ei:
        await within(af.fork(parent))
    assert ei.value.exceptions == (own_err, child_err)


async def test_parent_error_without_unretrieved_child_failure_is_unwrapped():
    """P's own error, with no unretrieved child failure, is raised as it is."""
    own_err = KeyError("parent")

    async def ok():
        return 1

    async def bad():
        raise ValueError("seen")

    async def parent():
        af.fork(ok)
        c = af.fork(bad)
        with pytest.raises(ValueError):
            await c
        raise own_err

    with pytest.raises(KeyError) as ei:
        await within(af.fork(parent))
    assert ei.value is own_err


async def test_parent_raising_cancels_and_joins_unfinished_children():
    """If P's body raises, its unfinished children are cancelled, then joined."""
    started = asyncio.Event()
    seen = []
    holder = []

    async def child():
        started.set()
        try:
            await forever()
        except CancelledError:
            seen.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.01)  # cleanup work
            seen.append(("cleanup, parent done:", holder[0].done()))

    async def parent():
        holder.append(af.fork(child))
        await started.wait()
        raise KeyError("parent")

    p = af.fork(parent)
    with pytest.raises(KeyError):
        await within(p)
    assert seen == ["cancelled", ("cleanup, parent done:", False)]
    assert holder[0].cancelled()


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


async def test_cancelled_parent_with_unretrieved_child_failure_raises_group():
    """When P was cancelled but a child failed unretrieved, the failure wins (ExceptionGroup)."""
    err = ValueError("child")
    failed = asyncio.Event()

    async def child():
        raise err

    async def parent():
        set_on_done(af.fork(child), failed)
        await forever()

    p = af.fork(parent)
    await within(failed.wait())
    p.cancel()
    with pytest.raises(ExceptionGroup) as ei:
        await within(p)
    assert ei.value.exceptions == (err,)
    assert not p.cancelled()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_child_base_exception_makes_base_exception_group(exc_type):
    """KeyboardInterrupt/SystemExit from children make P's failure a BaseExceptionGroup."""
    err = exc_type()

    async def child():
        raise err

    async def parent():
        c = af.fork(child)
        failed = asyncio.Event()
        set_on_done(c, failed)
        await failed.wait()
        return "parent"

    caught = None
    try:
        await within(af.fork(parent))
    except BaseException as exc:  # a KeyboardInterrupt must not escape
        caught = exc
    assert type(caught) is BaseExceptionGroup
    assert caught.exceptions == (err,)


async def test_sync_fork_join_does_not_hold_worker_thread():
    """A sync fork's join does not hold its worker thread: it is free when the function returns."""
    release = asyncio.Event()

    async def child():
        await release.wait()

    threads = []

    def first():
        af.fork(child)
        threads.append(threading.get_ident())
        return "first"

    def second():
        threads.append(threading.get_ident())
        return "second"

    af.configure(workers=1)
    try:
        f1 = af.fork(first)
        f2 = af.fork(second)
        assert await within(f2) == "second"
        assert not f1.done()  # still joining its child
        assert threads[0] == threads[1]  # the very thread that ran `first` ran `second`
        release.set()
        assert await within(f1) == "first"
    finally:
        af.configure(workers=None)


async def test_fork_in_context_of_finished_coroutine_parent_raises():
    """A fork made in P's context after P has completed raises RuntimeError."""
    called = []

    async def child():
        called.append(True)

    async def parent():
        return contextvars.copy_context()

    p = af.fork(parent)
    ctx = await within(p)
    with pytest.raises(RuntimeError):
        ctx.run(af.fork, child)
    await ticks()
    gc.collect()
    assert called == []


def test_fork_from_thread_left_behind_by_sync_parent_raises(loop_kind):
    """A fork from a thread that outlives its sync parent raises RuntimeError."""
    parent_done = threading.Event()
    outcome = []

    def child():
        return 1

    def abandoned():
        assert parent_done.wait(T)
        try:
            af.fork(child)
        except RuntimeError as exc:
            outcome.append(exc)

    def parent():
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(abandoned,))
        t.start()
        return t

    p = af.fork(parent)
    t = p.result(timeout=T)
    parent_done.set()
    t.join(T)
    assert not t.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)


# -- group(): fail-fast --------------------------------------------------------------


async def test_group_first_failure_cancels_body_and_other_children():
    """group(): the first child failure cancels the body and the others; exit waits for all."""
    err = ValueError("boom")
    seen = []
    started = asyncio.Event()

    async def sibling():
        started.set()
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)  # cleanup work the exit must wait for
            seen.append("sibling cleaned up")

    async def failing():
        await started.wait()
        raise err

    children = []

    async def body():
        async with af.group() as g:
            children.append(g.fork(sibling))
            g.fork(failing)
            try:
                await stall()
            except CancelledError:
                seen.append("body cancelled")
                raise
            seen.append("body not cancelled")

    with pytest.raises(ExceptionGroup) as ei:
        await within(body())
    s = children[0]
    assert type(ei.value) is ExceptionGroup
    assert ei.value.exceptions == (err,)
    assert seen == ["body cancelled", "sibling cleaned up"] or seen == [
        "sibling cleaned up",
        "body cancelled",
    ]
    assert s.cancelled()
    assert asyncio.current_task().cancelling() == 0


async def test_group_holds_only_real_failures_never_cancellations():
    """The group's ExceptionGroup holds every real failure and no CancelledError."""
    e1, e2 = ValueError("a"), KeyError("b")
    gate = asyncio.Event()

    async def fail_on_cancel():
        try:
            await forever()
        finally:
            raise e2  # a failure during cleanup is a real one

    async def failing():
        await gate.wait()
        raise e1

    async def waiter():
        await forever()

    async def body():
        async with af.group() as g:
            g.fork(fail_on_cancel)
            g.fork(waiter)
            g.fork(failing)
            await asyncio.sleep(0)
            gate.set()

    with pytest.raises(ExceptionGroup) as ei:
        await within(body())
    assert set(map(id, ei.value.exceptions)) == {id(e1), id(e2)}
    assert not any(isinstance(e, CancelledError) for e in ei.value.exceptions)


async def test_group_body_error_is_wrapped_with_child_failures():
    """A body error joins the group's ExceptionGroup and cancels the children."""
    err = KeyError("body")
    children = []

    async def body():
        async with af.group() as g:
            children.append(g.fork(forever))
            await asyncio.sleep(0)
            raise err

    with pytest.raises(ExceptionGroup) as ei:
        await within(body())
    assert ei.value.exceptions == (err,)
    assert children[0].cancelled()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_group_body_base_exception_propagates_unwrapped(exc_type):
    """KeyboardInterrupt and SystemExit from the body propagate unwrapped."""
    err = exc_type()
    children = []
    caught = None
    try:
        async with af.group() as g:
            children.append(g.fork(forever))
            await asyncio.sleep(0)
            raise err
    except BaseException as exc:  # a KeyboardInterrupt must not escape
        caught = exc
    assert caught is err
    assert children[0].cancelled()


async def test_nested_groups_keep_their_nesting():
    """Nested groups keep their nesting in the exception groups."""
    err = ValueError("inner")

    async def failing():
        raise err

    async def inner():
        async with af.group() as g:
            g.fork(failing)

    with pytest.raises(ExceptionGroup) as ei:
        async with af.group() as outer:
            outer.fork(inner)
    assert len(ei.value.exceptions) == 1
    nested = ei.value.exceptions[0]
    assert isinstance(nested, ExceptionGroup)
    assert nested.exceptions == (err,)


async def test_nested_group_in_body_keeps_nesting():
    """A group nested directly in a group's body nests its ExceptionGroup too."""
    err = ValueError("inner")

    async def failing():
        raise err

    async def body():
        async with af.group(), af.group() as inner:
            inner.fork(failing)

    with pytest.raises(ExceptionGroup) as ei:
        await within(body())
    nested = ei.value.exceptions[0]
    assert isinstance(nested, ExceptionGroup)
    assert nested.exceptions == (err,)


async def test_plain_fork_and_g_fork_both_join_the_group():
    """Inside `async with af.group() as g`, g.fork(...) and af.fork(...) both join g."""
    finished = []

    async def work(tag):
        await asyncio.sleep(0.02)
        finished.append(tag)

    async with af.group() as g:
        a = g.fork(work, "g.fork")
        b = af.fork(work, "af.fork")
    assert a.done()
    assert b.done()
    assert sorted(finished) == ["af.fork", "g.fork"]


async def test_plain_fork_in_group_body_is_fail_fast():
    """A plain af.fork(...) in the group body fails the group like g.fork(...)."""
    err = ValueError("x")

    async def failing():
        raise err

    async def body():
        async with af.group():
            af.fork(failing)
            await stall()

    with pytest.raises(ExceptionGroup) as ei:
        await within(body())
    assert ei.value.exceptions == (err,)


# -- sync group ----------------------------------------------------------------------


def test_sync_group_runs_children_on_background_loop_and_workers(loop_kind):
    """`with af.group()` from a plain thread: children on B and workers; exit blocks."""
    where = {}

    async def coro():
        await asyncio.sleep(0.02)
        where["coro"] = threading.current_thread().name

    def sync():
        time.sleep(0.02)
        where["sync"] = threading.current_thread().name

    g = af.group()
    with watchdog(g), g:
        a = g.fork(coro)
        b = g.fork(sync)
        c = af.fork(coro)
    assert a.done()
    assert b.done()
    assert c.done()
    assert where["coro"] == "asyncfork-loop"
    assert where["sync"].startswith("asyncfork-worker")


async def test_sync_group_on_loop_thread_raises_deadlock_error():
    """A sync `with af.group()` on a thread that runs a loop raises DeadlockError."""
    with pytest.raises(af.DeadlockError), af.group():
        pass


def test_sync_group_failing_fork_raises_cancelled_in_body(loop_kind):
    """Once a sync group is failing, a fork into it raises CancelledError, swallowed at exit."""
    err = ValueError("x")
    failed = threading.Event()
    reached = []
    called = []

    def failing():
        raise err

    async def late():
        called.append(True)

    def body():
        g = af.group()
        with watchdog(g), g:
            set_on_done(g.fork(failing), failed)
            assert failed.wait(T)
            try:
                g.fork(late)
            except CancelledError:
                reached.append("cancelled")
                raise
            reached.append("forked")

    with pytest.raises(ExceptionGroup) as ei:
        body()
    assert ei.value.exceptions == (err,)
    assert reached == ["cancelled"]
    gc.collect()
    assert called == []


def test_sync_group_fail_fast_cancels_siblings(loop_kind):
    """A sync group's first failure cancels the other children; the exit waits for them."""
    err = ValueError("x")
    cleaned = []

    async def sibling():
        try:
            await forever()
        finally:
            await asyncio.sleep(0.01)
            cleaned.append(True)

    def failing():
        raise err

    children = []

    def body():
        g = af.group()
        with watchdog(g), g:
            children.append(g.fork(sibling))
            g.fork(failing)

    with pytest.raises(ExceptionGroup) as ei:
        body()
    s = children[0]
    assert ei.value.exceptions == (err,)
    assert s.cancelled()
    assert cleaned == [True]


# -- a child's KeyboardInterrupt / SystemExit ----------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_group_child_base_exception_reraised_as_is(exc_type):
    """A child's KeyboardInterrupt/SystemExit cancels the others and is re-raised as it is."""
    err = exc_type()
    started = asyncio.Event()
    body = []

    async def sibling():
        started.set()
        await forever()

    async def failing():
        await started.wait()
        raise err

    caught = None
    try:
        async with af.group() as g:
            s = g.fork(sibling)
            g.fork(failing)
            try:
                await stall()
            except CancelledError:
                body.append("cancelled")
                raise
    except BaseException as exc:  # a KeyboardInterrupt must not escape
        caught = exc
    assert caught is err
    assert s.cancelled()
    assert body == ["cancelled"]


# -- g.cancel() ----------------------------------------------------------------------


async def test_group_cancel_cancels_children_and_body_quietly():
    """g.cancel() cancels every child and the body at its next await; the exit is quiet."""
    body = []
    started = asyncio.Event()

    async def child():
        started.set()
        await forever()

    async with af.group() as g:
        a = g.fork(child)
        b = g.fork(child)
        await started.wait()
        g.cancel()
        try:
            await asyncio.sleep(0)
            body.append("not cancelled")
        except CancelledError:
            body.append("cancelled")
            raise
    assert body == ["cancelled"]
    assert a.cancelled()
    assert b.cancelled()
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0)  # the task is not left cancelled


async def test_group_cancel_from_another_thread():
    """g.cancel() may be called from any thread."""
    body = []

    async with af.group() as g:
        a = g.fork(forever)
        t = threading.Thread(target=g.cancel)
        t.start()
        try:
            await stall()
        except CancelledError:
            body.append("cancelled")
            raise
        finally:
            t.join(T)
    assert body == ["cancelled"]
    assert a.cancelled()
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0)


async def test_fork_after_group_cancel_raises_cancelled_in_body_swallowed():
    """After g.cancel(), a fork into the group raises CancelledError, which the group swallows."""
    called = []
    reached = []

    async def late():
        called.append(True)

    async with af.group() as g:
        g.cancel()
        try:
            g.fork(late)
        except CancelledError:
            reached.append("cancelled")
            raise
        reached.append("forked")
    assert reached == ["cancelled"]
    await ticks()
    gc.collect()
    assert called == []
    assert asyncio.current_task().cancelling() == 0


def test_sync_group_cancel_is_quiet(loop_kind):
    """g.cancel() on a sync group cancels its children; the exit is quiet; later forks raise."""
    reached = []
    called = []

    def late():
        called.append(True)

    g = af.group()
    with watchdog(g), g:
        a = g.fork(forever)
        g.cancel()
        try:
            g.fork(late)
        except CancelledError:
            reached.append("cancelled")
            raise
    assert a.cancelled()
    assert reached == ["cancelled"]
    assert called == []


# -- limit and timeout ---------------------------------------------------------------


async def test_group_limit_caps_concurrency_and_keeps_fork_order():
    """group(limit=n): at most n children run at once; the rest start in fork order."""
    running = 0
    peak = 0
    order = []

    async def work(i):
        nonlocal running, peak
        order.append(i)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1

    async with af.group(limit=2) as g:
        for i in range(6):
            g.fork(work, i)
    assert peak == 2
    assert order == list(range(6))


async def test_group_limit_applies_to_sync_children():
    """group(limit=n) caps sync children (worker threads) too, starting them in fork order."""
    lock = threading.Lock()
    running = 0
    peak = 0
    order = []

    def work(i):
        nonlocal running, peak
        with lock:
            order.append(i)
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    async with af.group(limit=2) as g:
        for i in range(5):
            g.fork(work, i)
    assert peak == 2
    assert order == list(range(5))


async def test_group_timeout_cancels_and_raises_timeout_error():
    """group(timeout=s): at the deadline children and body are cancelled; TimeoutError."""
    body = []

    children = []

    async def run():
        async with af.group(timeout=0.05) as g:
            children.append(g.fork(forever))
            try:
                await stall()
            except CancelledError:
                body.append("cancelled")
                raise

    with pytest.raises(TimeoutError) as ei:
        await within(run())
    a = children[0]
    assert type(ei.value) is TimeoutError
    assert body == ["cancelled"]
    assert a.cancelled()
    assert asyncio.current_task().cancelling() == 0


def test_sync_group_timeout_raises_timeout_error(loop_kind):
    """A sync group(timeout=s) cancels its children at the deadline and raises TimeoutError."""
    children = []

    def body():
        g = af.group(timeout=0.05)
        with watchdog(g), g:
            children.append(g.fork(forever))

    with pytest.raises(TimeoutError) as ei:
        body()
    a = children[0]
    assert type(ei.value) is TimeoutError
    assert a.cancelled()


def test_fork_into_timed_out_sync_group_raises_cancelled(loop_kind):
    """Forking into a timed-out group raises CancelledError in the body; the group says timeout."""
    reached = []
    called = []

    def late():
        called.append(True)

    def body():
        g = af.group(timeout=0.05)
        with watchdog(g), g:
            done = threading.Event()
            set_on_done(g.fork(forever), done)
            assert done.wait(T)
            try:
                g.fork(late)
            except CancelledError:
                reached.append("cancelled")
                raise

    with pytest.raises(TimeoutError):
        body()
    assert reached == ["cancelled"]
    assert called == []


# -- forking into a group that is not open -------------------------------------------


async def test_fork_into_group_never_entered_raises_runtime_error():
    """Forking into a group that was never entered raises RuntimeError; nothing is called."""
    called = []

    async def coro():
        called.append(True)

    g = af.group()
    with pytest.raises(RuntimeError):
        g.fork(coro)
    gc.collect()
    await ticks()
    assert called == []


async def test_fork_into_exited_group_raises_runtime_error():
    """Forking into a group that has exited raises RuntimeError; nothing is called."""
    called = []

    async def coro():
        called.append(True)

    def sync():
        called.append(True)

    async with af.group() as g:
        pass
    with pytest.raises(RuntimeError):
        g.fork(coro)
    with pytest.raises(RuntimeError):
        g.fork(sync)
    gc.collect()
    await ticks()
    assert called == []


async def test_fork_into_failing_group_from_child_raises_cancelled():
    """Forking into a failing group raises CancelledError in the forking child."""
    err = ValueError("x")
    failed = threading.Event()
    seen = []
    called = []

    async def late():
        called.append(True)

    def failing():
        raise err

    def forker(g):
        assert failed.wait(T)
        try:
            g.fork(late)
        except CancelledError:
            seen.append("cancelled")
            raise
        seen.append("forked")

    async def body():
        async with af.group() as g:
            g.fork(forker, g)
            set_on_done(g.fork(failing), failed)

    with pytest.raises(ExceptionGroup) as ei:
        await within(body())
    assert ei.value.exceptions == (err,)
    assert seen == ["cancelled"]
    gc.collect()
    await ticks()
    assert called == []


# -- detached ------------------------------------------------------------------------


async def test_detached_fork_is_a_root_fork():
    """fork.options(detached=True) makes a root fork; P can finish while it still runs."""
    release = asyncio.Event()

    async def background():
        await release.wait()
        return "bg"

    async def parent():
        return af.fork.options(detached=True)(background)

    p = af.fork(parent)
    d = await within(p)
    assert d.parent is None
    assert p.done()
    assert not d.done()
    release.set()
    assert await within(d) == "bg"


def test_detached_fork_from_sync_fork_is_a_root_fork(loop_kind):
    """A detached fork from a sync fork's thread is a root fork too."""
    release = threading.Event()

    def background():
        assert release.wait(T)
        return "bg"

    def parent():
        return af.fork.options(detached=True)(background)

    p = af.fork(parent)
    d = p.result(timeout=T)
    assert d.parent is None
    assert not d.done()
    release.set()
    assert d.result(timeout=T) == "bg"


# -- never-retrieved root failures ---------------------------------------------------


def _records(caplog):
    return [r for r in caplog.records if r.name == "asyncfork"]


async def test_unretrieved_root_failure_is_logged_once_on_gc(caplog):
    """A root fork that fails and is never retrieved is reported once when collected."""

    async def failing():
        raise ValueError("lost")

    caplog.set_level(logging.ERROR, logger="asyncfork")
    fut = af.fork(failing)
    done = asyncio.Event()
    set_on_done(fut, done)
    await within(done.wait())
    assert _records(caplog) == []
    del fut
    gc.collect()
    gc.collect()
    records = _records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


async def test_retrieved_root_failure_is_not_logged(caplog):
    """A root failure that was retrieved is not reported."""

    async def failing():
        raise ValueError("seen")

    caplog.set_level(logging.ERROR, logger="asyncfork")
    fut = af.fork(failing)
    with pytest.raises(ValueError):
        await within(fut)
    del fut
    gc.collect()
    assert _records(caplog) == []


async def test_child_failures_are_not_logged(caplog):
    """Child failures are raised at the parent's join, not logged."""

    async def failing():
        raise ValueError("child")

    async def parent():
        af.fork(failing)

    caplog.set_level(logging.ERROR, logger="asyncfork")
    p = af.fork(parent)
    with pytest.raises(ExceptionGroup):
        await within(p)
    del p
    gc.collect()
    assert _records(caplog) == []


async def test_group_child_failure_is_not_logged_separately(caplog):
    """A group child's failure is raised by the group and not logged separately."""

    async def failing():
        raise ValueError("child")

    caplog.set_level(logging.ERROR, logger="asyncfork")

    async def body():
        async with af.group() as g:
            g.fork(failing)

    with pytest.raises(ExceptionGroup):
        await within(body())
    gc.collect()
    assert _records(caplog) == []
