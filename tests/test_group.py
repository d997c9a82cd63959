"""af.group(): fail-fast, cancel, limit, timeout, nesting, the sync form and its misuse."""

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
from helpers import T, forever, logged_records, set_on_done, three, ticks, within

import asyncfork as af
import asyncfork._group as af_group

# -- helpers -------------------------------------------------------------------------------


async def stall():
    """Wait "forever" in a group body; after T seconds a TimeoutError fails the group."""
    async with asyncio.timeout(T):
        await forever()


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


class Peak:
    """Counts how many jobs run at once (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.order: list[int] = []

    def enter(self, i: int = -1) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.order.append(i)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


# -- the group's lifecycle -----------------------------------------------------------------


async def test_group_repr_shows_name_and_state():
    """repr of a group shows its name and state (new, open, cancelling, closed)."""
    g = af.group(name="jobs")
    assert "jobs" in repr(g)
    assert "new" in repr(g)
    async with g:
        assert "open" in repr(g)
        g.cancel()
        assert "cancelling" in repr(g)
        await ticks(1)  # the body is cancelled at its next await; the group swallows it
    assert "closed" in repr(g)
    assert "jobs" in repr(g)


@pytest.mark.parametrize("value", [123, b"jobs", ["jobs"]])
def test_group_name_must_be_a_str(value: object) -> None:
    """group(name=123) is a TypeError naming the option, not a name shown by repr."""
    with pytest.raises(TypeError) as info:
        af.group(name=value)  # type: ignore[arg-type]
    assert str(info.value).startswith("group(name=...) must be a str, or None for no name, not ")
    assert "<asyncfork.group new" in repr(af.group(name=None))


async def test_group_name_of_a_str_subclass_is_kept_as_a_plain_str():
    """A str subclass whose repr raises: the group's repr and errors still work."""

    class Loud(str):
        def __repr__(self) -> str:
            raise ValueError("repr of the name")

    g = af.group(name=Loud("jobs"), timeout=0)
    assert repr(g) == "<asyncfork.group 'jobs' new, 0 running>"
    with pytest.raises(TimeoutError, match=r"^group 'jobs' timed out after 0\.0s$"):
        async with g:
            await within(forever())


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


# -- joining: g.fork and a plain af.fork ---------------------------------------------------


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


# -- fail-fast -----------------------------------------------------------------------------


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
    assert logged_records(caplog) == []


# -- nesting -------------------------------------------------------------------------------


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


# -- g.cancel() and the owner's cancellation -----------------------------------------------


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


async def test_outside_cancel_of_owner_after_g_cancel_propagates_from_group():
    """`group()` follows asyncio.TaskGroup's rules: after `g.cancel()` the owning task is not
    left cancelled by the group's own cancel, but an outside `task.cancel()` propagates."""
    after_group = []

    async def owner():
        async with af.group() as g:
            g.fork(forever)
            g.cancel()
            asyncio.current_task().cancel()  # e.g. an outer asyncio.timeout / shutdown
            await forever()
        after_group.append(True)

    task = asyncio.create_task(owner())
    with pytest.raises(asyncio.CancelledError):
        await within(task)
    assert task.cancelled()
    assert after_group == []


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


# -- limit ---------------------------------------------------------------------------------


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


async def test_plain_fork_in_async_group_respects_its_limit():
    """Inside `async with af.group() as g` a plain `af.fork(...)` joins `g` as `g.fork(...)`
    does, so `group(limit=n)` holds for it too: at most n children run at once."""
    peak = Peak()

    async def job(i):
        peak.enter(i)
        await ticks(5)
        peak.leave()

    async with af.group(limit=1):
        for i in range(4):
            af.fork(job, i)
    assert peak.peak == 1
    assert peak.order == [0, 1, 2, 3]


def test_plain_fork_in_sync_group_respects_its_limit(loop_kind):
    """`group(limit=n)`: at most n children run at once, the rest start in fork order -- for
    a plain `af.fork` of a sync callable in a sync `with af.group()` too."""
    peak = Peak()

    def job(i):
        peak.enter(i)
        time.sleep(0.02)  # work
        peak.leave()

    with af.group(limit=1):
        futs = [af.fork(job, i) for i in range(4)]
    assert all(f.done() for f in futs)
    assert peak.peak == 1
    assert peak.order == [0, 1, 2, 3]


def test_waiting_worker_does_not_run_limited_group_children_inline(loop_kind):
    """`group(limit=n)`: at most n children run at once, the rest start in fork order --
    helping (a waiting worker runs a queued fork inline) does not bypass it."""
    peak = Peak()

    def job(i):
        peak.enter(i)
        time.sleep(0.02)  # work
        peak.leave()

    def body():
        with af.group(limit=1) as g:
            futs = [g.fork(job, i) for i in range(4)]
            af.wait(futs, timeout=T)

    af.wait(af.fork(body), timeout=T)
    assert peak.peak == 1
    assert peak.order == [0, 1, 2, 3]


async def test_failing_limited_group_never_starts_its_queued_children():
    """Once a group is failing its queued children are cancelled and their callables never
    called: `group(limit=n)` children waiting for a slot never start."""
    calls = []

    def job():
        calls.append(True)

    waiting: list = []

    async def failing_group():
        async with af.group(limit=4) as g:
            for _ in range(4):
                g.fork(asyncio.sleep, T)  # admitted; their Tasks have not stepped yet
            waiting.extend(g.fork(job) for _ in range(300))  # wait for a slot
            raise ValueError("body fails at once")

    with pytest.raises(ExceptionGroup) as info:
        await failing_group()
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert calls == []
    assert all(f.cancelled() for f in waiting)


async def _sibling() -> str:
    return "sibling"


@pytest.mark.parametrize("waiter", ["itself", "its own child"])
async def test_child_awaiting_a_sibling_queued_for_its_only_slot_raises_deadlock_error(waiter):
    """A child of `group(limit=1)` that waits on a sibling queued for the slot it holds (or a
    fork of its own that does) gets DeadlockError instead of hanging: the sibling can only
    start once it finishes. The group fails with it and the sibling never runs."""
    queued: list[af.Future[str]] = []

    async def wait_on_sibling():
        return await queued[0]

    async def child():
        queued.append(g.fork(_sibling))
        if waiter == "itself":
            return await wait_on_sibling()
        return await af.fork(wait_on_sibling)

    g = af.group(limit=1)

    async def run_group():
        async with g:
            g.fork(child)

    with pytest.raises(ExceptionGroup) as info:
        await within(run_group())
    assert info.group_contains(af.DeadlockError)
    assert queued[0].cancelled()


def test_sync_child_waiting_on_a_sibling_queued_for_its_only_slot_raises_deadlock_error(
    loop_kind,
):
    """The same for a sync child blocking in result(): DeadlockError at once, not a hang
    until result()'s timeout. The sibling is still on its way to the loop, queued all the
    same."""
    queued: list[af.Future[str]] = []

    def child():
        queued.append(g.fork(_sibling))
        return queued[0].result(timeout=T)

    g = af.group(limit=1)
    with pytest.raises(ExceptionGroup) as info, watchdog(g), g:
        g.fork(child)
    assert info.group_contains(af.DeadlockError)
    assert queued[0].cancelled()


async def test_child_awaiting_a_queued_sibling_while_another_child_holds_a_slot_waits():
    """With slots held by other children the wait is no deadlock: the queued sibling starts
    when one of them finishes, so `group(limit=2)` gives its value."""
    release = asyncio.Event()

    async def holder():
        await release.wait()

    async def child():
        b = g.fork(_sibling)  # both slots are held: b is queued
        release.set()
        return await b

    async with af.group(limit=2) as g:
        g.fork(holder)
        fa = g.fork(child)
        await within(fa)
    assert fa.result() == "sibling"


async def test_child_queued_behind_limit_sees_the_context_of_its_own_fork_call():
    """Every fork runs in a copy of the caller's context taken at `fork` time -- also a child
    that waits for a `group(limit=1)` slot, not its sibling's context."""

    async def a():
        var.set("set-by-sibling-a")
        await ticks(5)

    async def b():
        return var.get()

    async with af.group(limit=1) as g:
        var.set("for-a")
        g.fork(a)
        var.set("for-b")
        fb = g.fork(b)
        var.set("later")
    assert fb.result() == "for-b"


# -- timeout -------------------------------------------------------------------------------


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


async def test_group_timeout_error_cause_is_cancelled_error():
    """group(timeout=s) raises TimeoutError whose __cause__ is the CancelledError."""

    async def run():
        async with af.group(timeout=0.01) as g:
            g.fork(forever)
            await stall()

    with pytest.raises(TimeoutError) as ei:
        await within(run())
    assert isinstance(ei.value.__cause__, asyncio.CancelledError)


async def test_group_timed_out_with_real_failure_raises_the_failure():
    """If a group both timed out and had real failures, the failures win (ExceptionGroup)."""
    err = ValueError("cleanup failed")

    async def child():
        try:
            await forever()
        except asyncio.CancelledError:
            raise err from None

    async def run():
        async with af.group(timeout=0.02) as g:
            g.fork(child)
            await stall()

    with pytest.raises(ExceptionGroup) as ei:
        await within(run())
    assert ei.value.exceptions == (err,)
    assert asyncio.current_task().cancelling() == 0


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


def test_sync_group_timeout_error_cause_is_cancelled_error(loop_kind):
    """A sync group's TimeoutError has the CancelledError as its __cause__ too."""

    def run():
        with af.group(timeout=0.01) as g:
            g.fork(forever)

    with pytest.raises(TimeoutError) as ei:
        run()
    assert isinstance(ei.value.__cause__, asyncio.CancelledError)


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


def test_sync_group_timeout_timer_is_cancelled_on_the_loop_thread(loop_kind, monkeypatch):
    """A Future is only ever settled, and its callbacks and children only touched, on the
    thread of its loop -- a sync group's timeout timer likewise."""
    cancels: list[str] = []
    original = af_group.Group._arm_timer

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def cancel(self):
            cancels.append(threading.current_thread().name)
            self.handle.cancel()

    def arm(self, deadline):
        original(self, deadline)
        if self._timer is not None:
            self._timer = Spy(self._timer)

    monkeypatch.setattr(af_group.Group, "_arm_timer", arm)
    with af.group(timeout=T) as g:
        g.fork(time.sleep, 0.01)
    assert cancels == ["asyncfork-loop"]


# -- the sync form: with af.group() --------------------------------------------------------


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


async def test_sync_group_on_loop_thread_raises_deadlock_error():
    """A sync `with af.group()` on a thread that runs a loop raises DeadlockError."""
    with pytest.raises(af.DeadlockError), af.group():
        pass


async def test_sync_group_in_loop_thread_is_deadlock_error() -> None:
    """A sync `with af.group()` on a thread that runs an event loop raises DeadlockError."""
    entered: list[bool] = []
    with pytest.raises(af.DeadlockError), af.group():
        entered.append(True)
    assert entered == []


async def test_sync_group_deadlock_error_says_what_to_write():
    """A sync `with af.group()` on a loop thread: DeadlockError saying `async with`."""
    with pytest.raises(af.DeadlockError, match="async with"), af.group():
        pass
