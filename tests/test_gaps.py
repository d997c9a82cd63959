"""Rules of DESIGN.md (sections 2-9) and docs/design.md that no other test file checked.

Found by auditing every behavioural sentence against the existing tests; each test names
the rule it checks in its docstring.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import logging
import os
import sys
import threading

import pytest
from helpers import T, forever

import asyncfork as af

# Shorter bound for same-loop asyncio combinators that finish within one iteration or two.
SHORT = 1.0


# -- helpers ---------------------------------------------------------------------------


async def within(aw, seconds=T):
    """Await ``aw`` with a deadline so that a deadlock fails instead of hanging."""
    return await asyncio.wait_for(aw, seconds)


async def stall():
    """Wait "forever" in a group body; after T seconds a TimeoutError fails the group."""
    async with asyncio.timeout(T):
        await forever()


async def double(x):
    return 2 * x


async def ticks(n=10):
    for _ in range(n):
        await asyncio.sleep(0)


def background_threads():
    return [t for t in threading.enumerate() if t.name == "asyncfork-loop" and t.is_alive()]


# == 2. Public API ======================================================================


async def test_every_keyword_goes_to_func():
    """fork(func, /, *args, **kwargs): every keyword goes to func, none is an option."""
    kw = {
        "name": "n",
        "executor": "e",
        "timeout": -1,
        "detached": "d",
        "daemon": "x",
        "on_cancel": "nope",
    }

    async def coro(**kwargs):
        return kwargs

    def sync(**kwargs):
        return kwargs

    cf = af.fork(coro, **kw)
    sf = af.fork(sync, **kw)
    assert await within(cf) == kw
    assert await within(sf) == kw
    assert cf.name.endswith("coro")
    assert sf.name.endswith("sync")


def test_wait_of_empty_list_returns_empty_list():
    """wait(iterable) returns the list of values: [] for no Futures."""
    assert af.wait([]) == []
    assert af.wait([], timeout=0) == []


async def test_awaited_wait_of_empty_list_returns_empty_list():
    """await af.wait([]) is [] too."""
    assert await within(af.wait([])) == []


def test_deadlock_error_is_a_runtime_error():
    """af.DeadlockError(RuntimeError)."""
    assert issubclass(af.DeadlockError, RuntimeError)


def test_configure_workers_below_one_is_value_error():
    """A bad option value is a ValueError naming the option: configure(workers=0)."""
    for bad in (0, -1):
        with pytest.raises(ValueError, match="workers"):
            af.configure(workers=bad)


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


# -- Future: done-callbacks (docs/design.md "Callbacks and asyncio interop") ---------------


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


# -- asyncio interop -----------------------------------------------------------------


async def test_future_is_asyncio_future_like():
    """asyncio.isfuture(fut) is true; ensure_future and asyncio.wait take it as it is."""
    fut = af.fork(double, 2)
    assert asyncio.isfuture(fut)
    assert asyncio.ensure_future(fut) is fut
    done, pending = await asyncio.wait([fut], timeout=T)
    assert pending == set()
    assert done == {fut}
    assert next(iter(done)) is fut


async def test_cancelled_gather_cancels_the_fork():
    """A cancelled asyncio.gather cancels the Futures it gathers, as it does Tasks."""
    started = asyncio.Event()
    cleanup = []

    async def body():
        started.set()
        try:
            await forever()
        finally:
            cleanup.append(True)

    fut = af.fork(body)
    gathered = asyncio.gather(fut)
    await within(started.wait())
    gathered.cancel()
    # asyncio.wait, not wait_for: a gather that never finishes must fail, not hang.
    await asyncio.wait([gathered], timeout=SHORT)
    assert gathered.done()
    with pytest.raises(asyncio.CancelledError):
        gathered.result()
    assert fut.cancelled()
    assert cleanup == [True]


async def test_gather_of_a_cancelled_fork():
    """asyncio.gather treats a cancelled Future like a cancelled Task (raise, or list it)."""
    started = asyncio.Event()

    async def body():
        started.set()
        await forever()

    fut = af.fork(body)
    listed = asyncio.gather(fut, return_exceptions=True)
    raised = asyncio.gather(fut)
    await within(started.wait())
    fut.cancel()
    await asyncio.wait([listed, raised], timeout=SHORT)
    assert fut.cancelled()
    assert listed.done()
    assert raised.done()
    assert [type(x) for x in listed.result()] == [asyncio.CancelledError]
    with pytest.raises(asyncio.CancelledError):
        raised.result()


async def test_gather_of_an_already_finished_fork():
    """asyncio.gather takes a finished Future as it is, as it does a finished Task."""
    ok = af.fork(double, 1)
    cancelled = af.fork(forever)
    cancelled.cancel()
    await asyncio.wait([ok, cancelled], timeout=SHORT)
    assert ok.done()
    assert cancelled.done()
    gathered = asyncio.gather(ok, cancelled, return_exceptions=True)
    await asyncio.wait([gathered], timeout=SHORT)
    assert gathered.done()
    values = gathered.result()
    assert values[0] == 2
    assert type(values[1]) is asyncio.CancelledError


async def test_wait_for_timeout_on_a_future_follows_the_python_version():
    """asyncio.wait_for at its timeout cancels the fork on 3.11; on 3.12+ it only awaits it."""
    started = asyncio.Event()

    async def body():
        started.set()
        await forever()

    fut = af.fork(body)
    await within(started.wait())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fut, 0.01)
    if sys.version_info < (3, 12):
        await within(asyncio.wait([fut]))
        assert fut.cancelled()
    else:
        await ticks()
        assert not fut.done()
        fut.cancel()
        await within(asyncio.wait([fut]))


# == 3. Where work runs ==================================================================


def test_background_loop_starts_lazily_and_restarts_after_shutdown(loop_kind):
    """B starts lazily in a daemon thread 'asyncfork-loop'; shutdown stops it; use restarts it."""

    async def loop_thread():
        return threading.current_thread()

    first = af.wait(af.fork(loop_thread), timeout=T)
    af.shutdown(timeout=T)
    assert not first.is_alive()
    assert background_threads() == []  # nothing started until the next use
    second = af.wait(af.fork(loop_thread), timeout=T)
    assert second is not first
    assert second.name == "asyncfork-loop"
    assert second.daemon
    assert second.is_alive()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is new in 3.12")
async def test_eager_task_factory_does_not_start_forks_eagerly():
    """A coroutine fork starts on a later loop iteration, even with an eager task factory."""
    loop = asyncio.get_running_loop()
    ran = []

    async def body():
        ran.append(True)
        return 1

    previous = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        fut = af.fork(body)
        assert ran == []
        assert not fut.done()
    finally:
        loop.set_task_factory(previous)
    assert await within(fut) == 1
    assert ran == [True]


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


# == 4. Structure ========================================================================


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


async def test_group_timeout_error_cause_is_cancelled_error():
    """group(timeout=s) raises TimeoutError whose __cause__ is the CancelledError."""

    async def run():
        async with af.group(timeout=0.01) as g:
            g.fork(forever)
            await stall()

    with pytest.raises(TimeoutError) as ei:
        await within(run())
    assert isinstance(ei.value.__cause__, asyncio.CancelledError)


def test_sync_group_timeout_error_cause_is_cancelled_error(loop_kind):
    """A sync group's TimeoutError has the CancelledError as its __cause__ too."""

    def run():
        with af.group(timeout=0.01) as g:
            g.fork(forever)

    with pytest.raises(TimeoutError) as ei:
        run()
    assert isinstance(ei.value.__cause__, asyncio.CancelledError)


# == 5. Cancellation (docs/design.md "Outcomes") ========================================


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


async def test_sync_callable_returning_coroutine_is_the_same_fork():
    """A sync callable returning a coroutine: it runs as the same fork (Future, scope, context)."""
    var = contextvars.ContextVar("var", default="unset")
    release = asyncio.Event()
    child_started = asyncio.Event()
    seen = {}

    async def child():
        child_started.set()
        await release.wait()
        return "child"

    async def inner():
        seen["current"] = af.current()
        seen["var"] = var.get()
        seen["child"] = af.fork(child)
        return "inner"

    def outer():
        var.set("set in the sync part")
        seen["sync current"] = af.current()
        return inner()

    fut = af.fork(outer)
    await within(child_started.wait())
    await ticks()
    assert not fut.done()  # the coroutine's child joins the same fork
    release.set()
    assert await within(fut) == "inner"
    assert seen["current"] is fut
    assert seen["sync current"] is fut
    assert seen["var"] == "set in the sync part"
    assert seen["child"].parent is fut


# == 7. Blocking and deadlocks ===========================================================


async def test_as_completed_for_in_loop_thread_is_deadlock_error():
    """Blocking `for` over as_completed in a loop thread raises DeadlockError saying `async for`."""
    fut = af.fork(forever)
    try:
        with pytest.raises(af.DeadlockError, match="async for"):
            for _ in af.as_completed([fut]):
                pass
    finally:
        fut.cancel()
    await within(asyncio.wait([fut]))


async def test_sync_group_deadlock_error_says_what_to_write():
    """A sync `with af.group()` on a loop thread: DeadlockError saying `async with`."""
    with pytest.raises(af.DeadlockError, match="async with"), af.group():
        pass


def test_plain_thread_waiting_does_not_run_queued_sync_fork_inline(loop_kind, one_worker):
    """Only asyncfork's workers help: a plain thread that waits just blocks, never runs forks."""
    started = threading.Event()
    release = threading.Event()

    def blocker():
        started.set()
        assert release.wait(T)

    def where():
        return threading.current_thread().name

    busy = af.fork(blocker)
    try:
        assert started.wait(T)
        queued = af.fork(where)
        with pytest.raises(TimeoutError):
            queued.result(timeout=0.1)  # it would return at once had this thread run it
        assert not queued.done()
    finally:
        release.set()
    assert queued.result(timeout=T).startswith("asyncfork-worker-")
    busy.result(timeout=T)


def test_default_worker_limit_is_min_32_cpu_count_plus_4(loop_kind):
    """The worker limit defaults to min(32, cpu_count + 4) sync forks running at once."""
    limit = min(32, (os.cpu_count() or 1) + 4)
    af.configure(workers=None)
    release = threading.Event()
    lock = threading.Lock()
    running = [0]
    all_started = threading.Event()

    def body():
        with lock:
            running[0] += 1
            if running[0] == limit:
                all_started.set()
        assert release.wait(T)

    futs = [af.fork(body) for _ in range(limit)]
    extra_ran = threading.Event()
    try:
        assert all_started.wait(T)
        extra = af.fork(extra_ran.set)
        assert not extra_ran.wait(0.1)  # the limit is reached: it stays queued
    finally:
        release.set()
    assert af.wait([*futs, extra], timeout=T) == [None] * (limit + 1)


# == 9. Executors, shutdown and af.run ===================================================


def test_executor_fork_gets_no_context_copy_and_no_scope(loop_kind):
    """Executor forks run func as the executor runs it: no contextvars copy, no scope inside."""
    var = contextvars.ContextVar("var", default="unset")

    def body():
        inner = af.fork(double, 1)
        inner.result(timeout=T)
        return var.get(), af.current(), inner.parent

    token = var.set("caller")
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            assert af.fork.options(executor=ex)(body).result(timeout=T) == ("unset", None, None)
    finally:
        var.reset(token)


def test_shutdown_drains_pending_forks(loop_kind):
    """af.shutdown() drains the background loop: pending forks finish before it returns."""
    log = []

    async def slow():
        await asyncio.sleep(0.05)
        log.append("coroutine")
        return 1

    def slow_sync():
        log.append("sync")
        return 2

    a = af.fork(slow)
    b = af.fork(slow_sync)
    af.shutdown(timeout=T)
    assert a.done()
    assert b.done()
    assert sorted(log) == ["coroutine", "sync"]
    assert (a.result(), b.result()) == (1, 2)


def test_shutdown_timeout_raises_and_leaves_the_loop_running(loop_kind):
    """shutdown(timeout=) past its deadline raises TimeoutError; the forks and B go on."""
    started = threading.Event()
    release = threading.Event()

    async def gated():
        started.set()
        await asyncio.to_thread(release.wait, T)
        return "finished"

    fut = af.fork(gated)
    try:
        assert started.wait(T)
        with pytest.raises(TimeoutError):
            af.shutdown(timeout=0.05)
        assert not fut.done()
        assert len(background_threads()) == 1
    finally:
        release.set()
    assert fut.result(timeout=T) == "finished"
    assert af.wait(af.fork(double, 3), timeout=T) == 6  # B still serves


def test_shutdown_cancel_cancels_pending_forks(loop_kind):
    """shutdown(cancel=True) cancels the pending forks (their cleanup runs) and stops B."""
    started = threading.Event()
    cleanup = []

    async def body():
        started.set()
        try:
            await forever()
        finally:
            cleanup.append(True)

    fut = af.fork(body)
    assert started.wait(T)
    af.shutdown(cancel=True, timeout=T)
    assert fut.cancelled()
    assert cleanup == [True]
    assert background_threads() == []


def test_shutdown_cancels_daemon_forks_and_drains_the_others(loop_kind):
    """af.shutdown() drains non-daemon forks and cancels daemon ones (the exit rule)."""
    started = threading.Event()

    async def daemon_body():
        started.set()
        await forever()

    async def normal():
        await asyncio.sleep(0.02)
        return "drained"

    d = af.fork.options(daemon=True)(daemon_body)
    n = af.fork(normal)
    assert started.wait(T)
    af.shutdown(timeout=T)
    assert d.cancelled()
    assert n.result() == "drained"


def test_shutdown_on_a_worker_thread_is_deadlock_error(loop_kind):
    """af.shutdown() on asyncfork's own threads (a worker) raises DeadlockError."""

    def body():
        with pytest.raises(af.DeadlockError):
            af.shutdown()
        return "ok"

    assert af.fork(body).result(timeout=T) == "ok"


def test_shutdown_on_the_background_loop_is_deadlock_error(loop_kind):
    """af.shutdown() on the background loop's thread raises DeadlockError."""

    async def body():
        with pytest.raises(af.DeadlockError):
            af.shutdown()
        return "ok"

    assert af.fork(body).result(timeout=T) == "ok"


def test_run_returns_value_runs_root_fork_on_a_new_loop_in_this_thread(loop_kind):
    """af.run: a new loop in this thread, func is the root fork, its value is returned."""
    seen = {}

    async def main(x):
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.get_ident()
        seen["current"] = af.current()
        return x + 1

    assert af.run(main, 1) == 2
    assert seen["thread"] == threading.get_ident()
    assert seen["current"] is not None
    assert seen["current"].parent is None
    assert seen["loop"].is_closed()
    assert seen["current"].result() == 2


def test_run_raises_the_root_error_as_is(loop_kind):
    """af.run, like asyncio.run, raises the root fork's error as it is."""
    err = ValueError("root")

    async def main():
        raise err

    with pytest.raises(ValueError) as ei:
        af.run(main)
    assert ei.value is err


def test_run_accepts_a_sync_root(loop_kind):
    """af.run(sync_func, ...) runs it as the root fork and returns its value."""

    def main(x):
        return af.wait(af.fork(double, x), timeout=T)

    assert af.run(main, 5) == 10


def test_run_drains_detached_forks_and_cancels_daemon_forks(loop_kind):
    """af.run drains every root fork on its loop (detached too) and cancels daemon forks."""
    log = []
    made = {}

    async def detached():
        await asyncio.sleep(0.02)
        log.append("detached finished")
        return "d"

    async def daemon():
        try:
            await forever()
        finally:
            log.append("daemon cleanup")

    async def main():
        made["detached"] = af.fork.options(detached=True)(detached)
        made["daemon"] = af.fork.options(detached=True, daemon=True)(daemon)
        await asyncio.sleep(0)
        return "main"

    assert af.run(main) == "main"
    assert made["detached"].result() == "d"
    assert made["daemon"].cancelled()
    assert sorted(log) == ["daemon cleanup", "detached finished"]


async def test_run_inside_a_running_loop_is_runtime_error():
    """af.run, like asyncio.run, cannot be called from a running event loop."""
    called = []

    async def main():
        called.append(True)

    with pytest.raises(RuntimeError, match="running event loop"):
        af.run(main)
    assert called == []
