"""Implicit scopes: a fork's children, the parent's join, unretrieved failures, detached forks."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import weakref
from asyncio import CancelledError

import pytest
from helpers import T, forever, logged_records, noop, set_on_done, ticks, within

import asyncfork as af

# -- who is a child ------------------------------------------------------------------------


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


async def test_fork_from_thread_with_forks_copied_context_is_its_child():
    """A thread started with fork P's copied context forks onto P's loop, as P's child."""
    release = asyncio.Event()
    seen = {}

    async def child():
        seen["loop"] = asyncio.get_running_loop()
        await release.wait()
        return "child"

    async def parent():
        made = []
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(lambda: made.append(af.fork(child)),))
        t.start()
        await asyncio.to_thread(t.join, T)
        seen["child"] = made[0]
        forked.set()
        return "parent"

    forked = asyncio.Event()
    p = af.fork(parent)
    await within(forked.wait())
    c = seen["child"]
    assert c.parent is p
    await ticks()
    assert not p.done()  # joins the child
    release.set()
    assert await within(p) == "parent"
    assert c.result() == "child"
    assert seen["loop"] is asyncio.get_running_loop()


async def test_fork_made_from_thread_while_parent_runs_is_joined_by_it():
    """A fork made (from a thread with P's context) while P still runs is P's child: P joins it."""
    ran = []

    async def child():
        await asyncio.sleep(0)
        ran.append(True)
        return "child"

    async def parent():
        made = []
        forked = threading.Event()
        ctx = contextvars.copy_context()

        def in_thread():
            made.append(af.fork(child))
            forked.set()

        threading.Thread(target=ctx.run, args=(in_thread,)).start()
        # Block P's own step until the thread's fork() has returned: P is still running.
        assert forked.wait(T)
        return made[0]

    p = af.fork(parent)
    c = await within(p)
    assert c.parent is p
    assert c.done()  # P resolves only after all its children have finished
    assert c.result() == "child"
    assert ran == [True]


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


# -- the implicit join ---------------------------------------------------------------------


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


# -- children's failures -------------------------------------------------------------------


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


# -- detached forks ------------------------------------------------------------------------


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


# -- never-retrieved root failures ---------------------------------------------------------


@pytest.mark.asyncfork_no_leak_check  # its subject is a failure nobody retrieves
async def test_unretrieved_root_failure_is_logged_once_on_gc(caplog):
    """A root fork that fails and is never retrieved is reported once when collected."""

    async def failing():
        raise ValueError("lost")

    caplog.set_level(logging.ERROR, logger="asyncfork")
    fut = af.fork(failing)
    done = asyncio.Event()
    set_on_done(fut, done)
    await within(done.wait())
    assert logged_records(caplog) == []
    del fut
    gc.collect()
    gc.collect()
    records = logged_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


@pytest.mark.asyncfork_no_leak_check  # its subject is a failure nobody retrieves
@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_never_retrieved_root_failure_is_logged_without_cyclic_gc(loop_kind, kind, caplog):
    """Root forks that fail and are never retrieved are reported once, through the logger
    `asyncfork`, when their Future is garbage-collected -- with `gc.disable()` too."""
    caplog.set_level(logging.ERROR, logger="asyncfork")

    async def aboom():
        raise ValueError("nobody looked at me")

    def sboom():
        raise ValueError("nobody looked at me")

    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        settled = threading.Event()
        name = f"unretrieved-{kind}-{loop_kind}"  # unique: other tests' leftovers may log too
        fut = af.fork.options(name=name)(aboom if kind == "coroutine" else sboom)
        fut.add_done_callback(lambda _: settled.set())
        assert settled.wait(T)
        ref = weakref.ref(fut)
        del fut
        # Round trips until the loop and the worker that ran it have moved on (a busy
        # machine may not schedule that worker at once). A cycle would never clear:
        # the cyclic GC is off.
        for _ in range(200):
            if ref() is None:
                break
            assert af.wait(af.fork(noop), timeout=T) is None
        assert ref() is None, "the failed Future is kept alive by a reference cycle"
        # The thread that freed it clears the weak reference before the report is logged.
        for _ in range(200):
            records = [r for r in caplog.records if name in r.getMessage()]
            if records:
                break
            assert af.wait(af.fork(noop), timeout=T) is None
        assert len(records) == 1
        assert "never retrieved" in records[0].getMessage()
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()  # a leaked Future logs now, in this test, not in a later one


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
    assert logged_records(caplog) == []


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
    assert logged_records(caplog) == []
