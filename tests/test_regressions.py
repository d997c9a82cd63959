"""Regression tests for the bugs a review found in the core (reproducers r1-r18).

Each test is named after the DESIGN.md (or docs/design.md) rule the bug broke and quotes it
in its docstring. They are deterministic: events, not sleeps, order the steps; sleeps only
simulate work.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest
from helpers import T, forever

import asyncfork as af
import asyncfork._group as af_group

# -- helpers ---------------------------------------------------------------------------


async def within(aw, seconds=T):
    """Await ``aw`` with a deadline so that a deadlock fails instead of hanging."""
    return await asyncio.wait_for(aw, seconds)


async def ticks(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


async def noop():
    return None


async def double(x):
    return 2 * x


def closed_unstarted(coro) -> bool:
    """True if the coroutine object was closed without ever running a step."""
    return inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED and coro.cr_frame is None


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


def cancelling_sync_part(started: threading.Event, made: list, tail):
    """A sync fork body: runs until it sees its cancellation, then returns a coroutine."""

    def body():
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


# == r3/r4: a sync fork that returns a coroutine ==========================================


async def test_sync_fork_returning_coroutine_cancelled_while_it_runs_ends_cancelled():
    """DESIGN 5/8: a cancelled sync fork's Future becomes cancelled; a returned coroutine is
    "never left un-awaited" (closed, not run, no warning)."""
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


async def test_sync_fork_returning_coroutine_timed_out_while_it_runs_raises_timeout_error():
    """DESIGN 6: at `fork.options(timeout=s)` the work is cancelled and the Future raises
    `TimeoutError` whose `__cause__` is the `CancelledError` (a returned coroutine is closed)."""
    started = threading.Event()
    made: list = []
    tail_ran = []

    async def tail():
        tail_ran.append(True)

    fut = af.fork.options(timeout=0.05)(cancelling_sync_part(started, made, tail))
    with pytest.raises(TimeoutError) as info:
        await within(fut)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert tail_ran == []
    assert closed_unstarted(made[0])


def window_scenario(loop, tail):
    """A sync fork whose cancel() reaches the loop right after its returned coroutine's Task
    was made, before that Task's first step (the r3 window).

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


async def test_sync_fork_returning_coroutine_cancelled_before_its_first_step_ends_cancelled(
    one_worker,
):
    """DESIGN 5: "A coroutine fork that has not started never runs" and its Future ends
    cancelled; the returned coroutine is closed ("never left un-awaited", DESIGN 8)."""
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
    """DESIGN 4: "If P's body raises or P is cancelled, P's unfinished children are cancelled,
    then joined" -- also when P is cancelled before its returned coroutine's first step."""

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


# == r1: the limit of a group applies to plain af.fork too =================================


async def test_plain_fork_in_async_group_respects_its_limit():
    """DESIGN 4: "Inside `async with af.group() as g`, both `g.fork(...)` and a plain
    `af.fork(...)` join `g`"; `group(limit=n)`: "at most n children run at once"."""
    peak = Peak()

    async def job(i):
        peak.enter(i)
        await ticks()
        peak.leave()

    async with af.group(limit=1):
        for i in range(4):
            af.fork(job, i)
    assert peak.peak == 1
    assert peak.order == [0, 1, 2, 3]


def test_plain_fork_in_sync_group_respects_its_limit(loop_kind):
    """DESIGN 4: `group(limit=n)`: "at most n children run at once; the rest start in fork
    order" -- for a plain `af.fork` of a sync callable in a sync `with af.group()` too."""
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


# == r6: abandon must not lose an error ==================================================


async def test_abandon_cancel_while_joining_after_an_error_keeps_the_error():
    """DESIGN 4/5: "Errors are never lost": a sync fork (on_cancel="abandon") that raised and
    is joining its children when cancel() arrives still fails with its error."""
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


# == r8: an outside cancellation is not swallowed by the group ===========================


async def test_outside_cancel_of_owner_after_g_cancel_propagates_from_group():
    """DESIGN 4: `group()` follows asyncio.TaskGroup's rules: after `g.cancel()` "the owning
    task is not left cancelled" by *our* cancel, but an outside `task.cancel()` propagates."""
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


# == r2: a queued child runs in its own fork() context ===================================

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_child_queued_behind_limit_sees_the_context_of_its_own_fork_call():
    """DESIGN 9: "every fork runs in a copy of the caller's context taken at `fork` time" --
    also a child that waits for a `group(limit=1)` slot, not its sibling's context."""

    async def a():
        var.set("set-by-sibling-a")
        await ticks()

    async def b():
        return var.get()

    async with af.group(limit=1) as g:
        var.set("for-a")
        g.fork(a)
        var.set("for-b")
        fb = g.fork(b)
        var.set("later")
    assert fb.result() == "for-b"


# == r7: helping runs only launched forks ================================================


def test_timeout_zero_fork_waited_on_by_a_worker_never_runs(loop_kind):
    """DESIGN 6: "A timeout <= 0 on a fork that has not started: it never starts" -- even when
    a worker that waits on it could help (run queued forks inline)."""
    ran = []

    def side_effect():
        ran.append(True)

    def worker_body():
        f = af.fork.options(timeout=0)(side_effect)
        with pytest.raises(TimeoutError):
            af.wait(f, timeout=T)
        return f

    f = af.wait(af.fork(worker_body), timeout=T)
    assert ran == []
    with pytest.raises(TimeoutError):
        f.result(timeout=T)


def test_waiting_worker_does_not_run_limited_group_children_inline(loop_kind):
    """DESIGN 4/7: `group(limit=n)`: "at most n children run at once; the rest start in fork
    order" -- helping (a waiting worker runs a queued fork inline) does not bypass it."""
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


# == r17: a failing group never starts its queued children ===============================


async def test_failing_limited_group_never_starts_its_queued_children():
    """DESIGN 4: once a group is failing its queued children are cancelled: "the callable is
    not called"; `group(limit=n)` children waiting for a slot never start."""
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


# == r12: the group timer is touched only on its loop ====================================


def test_sync_group_timeout_timer_is_cancelled_on_the_loop_thread(loop_kind, monkeypatch):
    """docs/design.md: "A Future is only ever settled, and its callbacks and children only
    touched, on the thread of its loop" -- a sync group's timeout timer likewise."""
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


# == r15: a cancelled sync fork's later children never start =============================


@pytest.mark.parametrize("on_cancel", ["wait", "abandon"])
async def test_child_forked_after_its_sync_parent_was_cancelled_never_starts(on_cancel):
    """DESIGN 4/5: a cancelled fork's children are cancelled; a fork made in a cancelled
    parent's scope never starts (or raises RuntimeError once the parent has completed)."""
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


# == r9: waiting with a timeout leaves nothing behind ====================================


def test_polling_wait_with_timeout_does_not_pile_callbacks_on_the_future(loop_kind):
    """DESIGN 6: "`wait(..., timeout=)` and `result(timeout=)` only observe" -- a waiter that
    timed out leaves no callback behind on the pending Future."""
    fut = af.fork(forever)
    try:
        for _ in range(100):
            with pytest.raises(TimeoutError):
                af.wait(fut, timeout=0.0001)
            with pytest.raises(TimeoutError):
                fut.result(timeout=0.0001)
            with pytest.raises(TimeoutError):
                fut.exception(timeout=0.0001)
        assert af.wait(af.fork(noop), timeout=T) is None  # the loop processed the discards
        assert len(fut._callbacks or []) <= 1
    finally:
        fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)


async def test_polling_awaited_wait_with_timeout_does_not_pile_callbacks_on_the_future():
    """DESIGN 6: "`wait(..., timeout=)` ... only observe" -- `await af.wait(f, timeout=)`
    that timed out leaves no callback behind on the pending Future."""
    fut = af.fork(forever)
    try:
        for _ in range(100):
            with pytest.raises(TimeoutError):
                await af.wait(fut, timeout=0.0001)
        await asyncio.sleep(0)
        assert len(fut._callbacks or []) <= 1
    finally:
        fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)


# == r18: a done-callback raising SystemExit does not drop the other waiters =============


def test_done_callback_raising_system_exit_does_not_stop_other_waiters(loop_kind):
    """DESIGN 3: the background loop "survives any exception ... `KeyboardInterrupt` and
    `SystemExit` included"; docs/design.md: a raising done-callback "does not stop the others"."""
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
    """DESIGN 9: "No 'Task was destroyed but it is pending', 'Exception in thread' or 'never
    retrieved' noise for work that was handled" -- the fork's own Task does not end with a
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


# == r14: forks racing af.shutdown() =====================================================

SHUTDOWN_RACE = textwrap.dedent(
    """
    import asyncio, threading, time
    import asyncfork as af

    async def co():
        await asyncio.sleep(0)
        return 1

    stop = threading.Event()
    problems = []

    def forker():
        while not stop.is_set():
            try:
                f = af.fork(co)
            except Exception as exc:
                problems.append(f"fork raised {exc!r}")
                continue
            try:
                f.result(timeout=2)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:
                problems.append(f"{f!r}: {exc!r}")

    threads = [threading.Thread(target=forker) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(15):
        time.sleep(0.01)  # work: let forks pile up
        af.shutdown()
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a forker hangs"
    print("PROBLEMS", problems[:3], len(problems))
    """
)


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_forks_racing_shutdown_end_and_leave_no_noise(kind):
    """DESIGN 2: `af.shutdown()` drains the background loop; "later use restarts them" --
    forks racing it end (done or cancelled), none stays pending, no "Task was destroyed"."""
    env = dict(os.environ, ASYNCFORK_LOOP=kind)
    proc = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_RACE],
        capture_output=True,
        text=True,
        timeout=40,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PROBLEMS [] 0" in proc.stdout, proc.stdout
    assert "Task was destroyed" not in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


# == r16: abandon + a returned coroutine =================================================


def test_abandoned_sync_fork_returning_coroutine_closes_it_without_warning(loop_kind, one_worker):
    """DESIGN 5: with `on_cancel="abandon"` the result "is dropped without noise"; DESIGN 8: a
    returned coroutine is "never left un-awaited" (closed: no "never awaited" warning)."""
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


# == r11: never-retrieved failures without the cyclic GC =================================


@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_never_retrieved_root_failure_is_logged_without_cyclic_gc(loop_kind, kind, caplog):
    """DESIGN 4: "Root forks that fail and are never retrieved are reported once, through the
    logger `asyncfork`, when their Future is garbage-collected" -- with `gc.disable()` too."""
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
        records = [r for r in caplog.records if name in r.getMessage()]
        assert len(records) == 1
        assert "never retrieved" in records[0].getMessage()
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()  # a leaked Future logs now, in this test, not in a later one


# == second review: mailbox, callback context, traces ====================================


def test_threads_posting_all_the_time_do_not_starve_the_background_loop(loop_kind):
    """Calls that keep arriving wait for the next loop iteration: timers still fire."""

    async def quick():
        return None

    stop = threading.Event()

    def flood():
        while not stop.is_set():
            af.fork(quick)

    napping = threading.Event()

    async def nap():
        napping.set()
        await asyncio.sleep(0.05)  # a timer, due while the flood goes on
        return "woke"

    napper = af.fork(nap)
    woke = threading.Event()
    napper.add_done_callback(lambda _: woke.set())  # registered before the flood starts
    assert napping.wait(T)
    floods = [threading.Thread(target=flood) for _ in range(2)]
    for thread in floods:
        thread.start()
    try:
        # A mailbox run that drained calls for as long as they kept coming never let the
        # loop get back to its timers while the flood went on.
        assert woke.wait(2)
        assert napper.result() == "woke"
    finally:
        stop.set()
        for thread in floods:
            thread.join(T)
    af.shutdown(timeout=T)


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


def test_a_fork_outliving_its_trace_is_not_stamped_by_the_next_one(loop_kind):
    """Records belong to the trace that made them: a later trace neither reuses nor dates them."""
    release = threading.Event()

    async def parent():
        await asyncio.get_running_loop().run_in_executor(None, release.wait, T)
        await af.fork(leaf_after)
        return "done"

    async def leaf_after():
        return None

    with af.trace() as first:
        fut = af.fork(parent)
    with af.trace() as second:
        release.set()
        assert fut.result(timeout=T) == "done"
    (record,) = first.forks
    assert record.finished is None  # it ended after its trace stopped: unknown, not wrong
    assert [r.parent for r in second.forks] == [None]  # the child's parent is not in this trace
    assert all(w.awaited != record.id or w.waiter is None for w in second.waits)
