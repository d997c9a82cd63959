"""Where work runs: loops, threads and contexts, executors, and forks whose loop closed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import multiprocessing
import os
import pickle
import sys
import threading
import time
import warnings
from asyncio import CancelledError
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest
from helpers import (
    WORKER_NAME,
    T,
    closed_unstarted,
    double,
    flush_background_loop,
    forever,
    handler_calls,
    noop,
    three,
    within,
)

import asyncfork as af

# -- helpers -------------------------------------------------------------------------------

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_placement_var", default="unset")


def _square(x: int) -> int:
    """Module level, so that a process pool can pickle it."""
    return x * x


async def _loop_and_thread() -> tuple[asyncio.AbstractEventLoop, str]:
    return asyncio.get_running_loop(), threading.current_thread().name


def _in_plain_thread(fn, *args):
    """Run fn(*args) in a new plain thread (no running loop) and return its value."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="plain-thread")
    thread.start()
    thread.join(T)
    assert not thread.is_alive(), "the plain thread hung"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolExecutor]:
    """One small process pool for the module (forkserver: no fork of this threaded process)."""
    ctx = multiprocessing.get_context("forkserver" if sys.platform != "win32" else "spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        yield pool


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True)


def _new_user_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop()


# -- the placement table -------------------------------------------------------------------


async def test_coroutine_fork_from_coroutine_runs_on_callers_loop() -> None:
    """A coroutine fork made by a coroutine on loop L runs on L."""
    loop, thread_name = await af.fork(_loop_and_thread)
    assert loop is asyncio.get_running_loop()
    assert thread_name == threading.current_thread().name


async def test_sync_fork_from_coroutine_runs_in_worker_hosted_by_callers_loop() -> None:
    """A sync fork runs in an asyncfork-worker-N thread whose host loop is the caller's loop."""
    seen: dict[str, object] = {}

    def sync_fork() -> tuple[asyncio.AbstractEventLoop, str]:
        seen["thread"] = threading.current_thread().name
        seen["me"] = af.current()
        child = af.fork(_child)
        return af.wait(child, timeout=T)

    async def _child() -> tuple[asyncio.AbstractEventLoop, str]:
        seen["child_parent"] = af.current().parent  # type: ignore[union-attr]
        return await _loop_and_thread()

    fut = af.fork(sync_fork)
    loop, child_thread = await fut
    assert WORKER_NAME.fullmatch(str(seen["thread"]))
    assert loop is asyncio.get_running_loop()
    assert child_thread == threading.current_thread().name
    assert seen["me"] is fut
    assert seen["child_parent"] is fut


async def test_fork_from_loop_callback_runs_on_that_loop() -> None:
    """Sync code on L's thread (a loop callback) forks coroutines onto L, sync forks hosted by L."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future[tuple[af.Future, af.Future]] = loop.create_future()

    def host_of_sync_fork() -> asyncio.AbstractEventLoop:
        loop_, _ = af.wait(af.fork(_loop_and_thread), timeout=T)
        return loop_

    def callback() -> None:
        made.set_result((af.fork(_loop_and_thread), af.fork(host_of_sync_fork)))

    loop.call_soon(callback)
    coro_fut, sync_fut = await asyncio.wait_for(made, T)
    assert (await coro_fut)[0] is loop
    assert await sync_fut is loop


# -- a loop running in the thread wins over a host loop the context brought ----------------------


def _host_of_sync_fork() -> asyncio.AbstractEventLoop:
    """In a sync fork: the loop its own coroutine forks run on (its host loop)."""
    loop, _ = af.wait(af.fork(_loop_and_thread), timeout=T)
    return loop


async def _awaits_inner_event(event: asyncio.Event) -> tuple[asyncio.AbstractEventLoop, object]:
    """Awaits a loop-bound object of the inner loop, then forks a child of its own."""
    await event.wait()  # bound to the loop that made it: fails on any other loop
    child = af.fork(_loop_and_thread)
    loop, _ = await child
    assert loop is asyncio.get_running_loop()
    return loop, child.parent


async def _forks_on_the_inner_loop(outer: object) -> None:
    """Run by asyncio.run in a thread whose context belongs to the fork ``outer``."""
    inner = asyncio.get_running_loop()
    assert af.current() is outer  # the code still runs inside the outer fork's call
    event = asyncio.Event()
    fut = af.fork(_awaits_inner_event, event)
    sync_fut = af.fork(_host_of_sync_fork)
    # Root forks of the running loop, as from a plain thread: not children of `outer`.
    assert fut.get_loop() is inner
    assert fut.parent is None
    assert sync_fut.get_loop() is inner
    assert sync_fut.parent is None
    event.set()
    loop, child_parent = await asyncio.wait_for(fut, T)
    assert loop is inner
    assert child_parent is fut  # the fork's own children are its children, as always
    assert await asyncio.wait_for(sync_fut, T) is inner


@pytest.mark.parametrize("inner_kind", ["asyncio", "uvloop"])
def test_asyncio_run_inside_a_sync_fork_forks_onto_its_own_loop(
    loop_kind: str, inner_kind: str
) -> None:
    """A coroutine under asyncio.run in a sync fork's thread forks onto the running loop."""

    def sync_fork() -> str:
        with asyncio.Runner(loop_factory=lambda: _new_user_loop(inner_kind)) as runner:
            runner.run(_forks_on_the_inner_loop(af.current()))
        return "done"

    assert af.wait(af.fork(sync_fork), timeout=T) == "done"


def test_asyncio_run_inside_a_sync_group_forks_onto_its_own_loop(loop_kind: str) -> None:
    """The same under a sync group (an implicit scope); `g.fork` still forks into the group."""

    def sync_fork() -> None:
        outer = af.current()
        with af.group() as g:

            async def main() -> af.Future[tuple[asyncio.AbstractEventLoop, str]]:
                await _forks_on_the_inner_loop(outer)
                return g.fork(_loop_and_thread)  # explicit: the group's loop and scope

            into_group = asyncio.run(main())
        assert into_group.done()  # the group joined it
        assert into_group.get_loop() is outer.get_loop()  # type: ignore[union-attr]
        assert into_group.parent is outer

    af.wait(af.fork(sync_fork), timeout=T)


async def test_asyncio_run_in_a_thread_with_a_forks_context_forks_onto_its_own_loop() -> None:
    """asyncio.to_thread carries the fork's context; the thread's own loop still wins."""

    async def outer() -> None:
        await asyncio.to_thread(asyncio.run, _forks_on_the_inner_loop(af.current()))

    await within(af.fork(outer))


async def test_asyncio_run_in_a_thread_with_a_finished_forks_context_forks_onto_its_loop():
    """A thread carrying the context of a fork that has finished forks onto its running loop."""

    async def keep_context() -> contextvars.Context:
        return contextvars.copy_context()

    fut = af.fork(keep_context)
    context = await within(fut)
    await asyncio.to_thread(context.run, asyncio.run, _forks_on_the_inner_loop(fut))


def test_coroutine_fork_from_plain_thread_runs_on_background_loop(loop_kind: str) -> None:
    """From a thread with no running loop a coroutine fork runs on B, thread 'asyncfork-loop'."""
    loop1, name1 = af.wait(af.fork(_loop_and_thread), timeout=T)
    loop2, name2 = _in_plain_thread(lambda: af.fork(_loop_and_thread).result(timeout=T))
    assert name1 == name2 == "asyncfork-loop"
    assert loop1 is loop2, "one background loop per process"
    assert loop1 is not None
    bg_threads = [t for t in threading.enumerate() if t.name == "asyncfork-loop"]
    assert len(bg_threads) == 1
    assert bg_threads[0].daemon


def test_sync_fork_from_plain_thread_is_hosted_by_background_loop(loop_kind: str) -> None:
    """A sync fork from a plain thread runs in a worker whose host loop is B."""
    bg_loop, _ = af.wait(af.fork(_loop_and_thread), timeout=T)

    def sync_fork() -> tuple[str, asyncio.AbstractEventLoop, str]:
        loop, name = af.wait(af.fork(_loop_and_thread), timeout=T)
        return threading.current_thread().name, loop, name

    worker, host, host_thread = af.wait(af.fork(sync_fork), timeout=T)
    assert WORKER_NAME.fullmatch(worker)
    assert host is bg_loop
    assert host_thread == "asyncfork-loop"


# -- the background loop keeps serving -----------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("kind", ["coroutine", "sync"])
def test_background_loop_survives_keyboardinterrupt_and_systemexit(
    loop_kind: str, exc_type: type[BaseException], kind: str
) -> None:
    """B survives any exception raised by a fork, KeyboardInterrupt and SystemExit included."""
    before, _ = af.wait(af.fork(_loop_and_thread), timeout=T)

    async def coro_raiser() -> None:
        raise exc_type("boom")

    def sync_raiser() -> None:
        raise exc_type("boom")

    fut = af.fork(coro_raiser if kind == "coroutine" else sync_raiser)
    with pytest.raises(exc_type):
        fut.result(timeout=T)
    assert isinstance(fut.exception(timeout=T), exc_type)
    after, name = af.wait(af.fork(_loop_and_thread), timeout=T)
    assert after is before
    assert name == "asyncfork-loop"
    assert af.wait(af.fork(_square, 7), timeout=T) == 49


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


# -- fork returns at once; coroutine forks are not eager -----------------------------------


async def test_coroutine_fork_is_not_started_eagerly() -> None:
    """fork returns at once; a coroutine fork starts on a later loop iteration."""
    ran: list[str] = []

    async def body() -> int:
        ran.append("ran")
        return 1

    fut = af.fork(body)
    assert ran == []
    assert not fut.done()
    assert await fut == 1
    assert ran == ["ran"]


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


def test_coroutine_fork_from_plain_thread_is_not_started_eagerly(loop_kind: str) -> None:
    """A fork onto B from a plain thread returns before its coroutine has run."""
    release = threading.Event()
    ran: list[str] = []

    async def body() -> str:
        ran.append("ran")
        return "done"

    # Hold B inside a callback so nothing else can run there while we look.
    bg_loop, _ = af.wait(af.fork(_loop_and_thread), timeout=T)
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(T)

    bg_loop.call_soon_threadsafe(hold)
    assert holding.wait(T)
    try:
        fut = af.fork(body)
        assert ran == []
        assert not fut.done()
    finally:
        release.set()
    assert fut.result(timeout=T) == "done"
    assert ran == ["ran"]


def test_sync_fork_returns_before_its_function_finishes(loop_kind: str) -> None:
    """fork returns at once: a sync fork that blocks does not block the forking code."""
    release = threading.Event()

    def blocked() -> str:
        assert release.wait(T)
        return "released"

    fut = af.fork(blocked)
    assert not fut.done()
    release.set()
    assert fut.result(timeout=T) == "released"


# -- contextvars ---------------------------------------------------------------------------


async def test_coroutine_fork_sees_context_copied_at_fork_time() -> None:
    """A coroutine fork runs in a copy of the caller's context taken at fork time."""
    var.set("before")

    async def body() -> str:
        seen = var.get()
        var.set("changed-by-fork")
        return seen

    fut = af.fork(body)
    var.set("after")
    assert await fut == "before"
    assert var.get() == "after", "a fork's context changes must not leak back"


async def test_sync_fork_sees_context_copied_at_fork_time() -> None:
    """A sync fork runs in a copy of the caller's context taken at fork time."""
    var.set("before")
    go = threading.Event()

    def body() -> str:
        assert go.wait(T)
        seen = var.get()
        var.set("changed-by-fork")
        return seen

    fut = af.fork(body)
    var.set("after")
    go.set()
    assert await fut == "before"
    assert var.get() == "after"


def test_fork_onto_background_loop_sees_context_copied_at_fork_time(loop_kind: str) -> None:
    """Forks from plain threads onto B get the caller's context as it was at fork time."""
    bg_loop, _ = af.wait(af.fork(_loop_and_thread), timeout=T)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(T)

    async def coro_body() -> str:
        seen = var.get()
        var.set("changed-by-coroutine-fork")
        return seen

    def sync_body() -> str:
        seen = var.get()
        var.set("changed-by-sync-fork")
        return seen

    def in_thread() -> tuple[str, str, str]:
        var.set("before")
        bg_loop.call_soon_threadsafe(hold)  # B cannot start anything until released
        assert holding.wait(T)
        try:
            futs = [af.fork(coro_body), af.fork(sync_body)]
            var.set("after")
        finally:
            release.set()
        a, b = af.wait(futs, timeout=T)
        return a, b, var.get()

    coro_seen, sync_seen, after = _in_plain_thread(in_thread)
    assert coro_seen == "before"
    assert sync_seen == "before"
    assert after == "after"
    assert var.get() == "unset", "nothing leaks into the test's own context"


async def test_child_fork_context_changes_do_not_leak_into_parent() -> None:
    """A child's context changes never leak back into its parent fork."""

    async def child() -> None:
        var.set("child")

    def sync_child() -> None:
        var.set("sync-child")

    async def parent() -> str:
        var.set("parent")
        await af.fork(child)
        await af.fork(sync_child)
        return var.get()

    assert await af.fork(parent) == "parent"
    assert var.get() == "unset"


# -- executors -----------------------------------------------------------------------------


def test_thread_pool_executor_fork(loop_kind: str) -> None:
    """fork.options(executor=ThreadPoolExecutor) runs there and returns an af.Future."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="user-pool") as ex:
        fut = af.fork.options(executor=ex)(lambda x: (x * 3, threading.current_thread().name), 5)
        assert isinstance(fut, af.Future)
        value, thread = fut.result(timeout=T)
    assert value == 15
    assert thread.startswith("user-pool")


async def test_executor_fork_is_awaitable(process_pool: ProcessPoolExecutor) -> None:
    """An executor fork's Future is the same kind of Future: awaitable from async code."""
    with ThreadPoolExecutor(max_workers=1) as ex:
        assert await af.fork.options(executor=ex)(_square, 4) == 16
    fut = af.fork.options(executor=process_pool)(_square, 6)
    assert isinstance(fut, af.Future)
    assert await asyncio.wait_for(fut, T * 2) == 36


def test_process_pool_executor_fork(loop_kind: str, process_pool: ProcessPoolExecutor) -> None:
    """fork.options(executor=ProcessPoolExecutor) runs in another process."""
    assert af.fork.options(executor=process_pool)(_square, 9).result(timeout=T * 2) == 81
    pid = af.fork.options(executor=process_pool)(os.getpid).result(timeout=T * 2)
    assert pid != os.getpid()


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


@pytest.mark.parametrize("bad_arg", ["lambda", "lock"])
def test_unpicklable_argument_fails_the_future(
    loop_kind: str, process_pool: ProcessPoolExecutor, bad_arg: str
) -> None:
    """Arguments an executor cannot pickle: the Future fails with the pickling error; no hang."""
    arg = (lambda: 1) if bad_arg == "lambda" else threading.Lock()
    fut = af.fork.options(executor=process_pool)(_square, arg)
    exc = fut.exception(timeout=T * 2)
    assert isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)), repr(exc)
    # The wording varies by Python version ("cannot pickle", "Can't get local object").
    assert "pickle" in str(exc).lower() or "local object" in str(exc).lower()
    with pytest.raises(type(exc)):
        fut.result(timeout=T)
    # The pool still works afterwards.
    assert af.fork.options(executor=process_pool)(_square, 3).result(timeout=T * 2) == 9


async def test_executor_that_refuses_the_call_fails_the_future():
    """An Executor whose submit raises: the Future fails with that error; nothing hangs."""
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    ex.shutdown()
    fut = af.fork.options(executor=ex)(time.monotonic)
    with pytest.raises(RuntimeError, match="after shutdown"):
        await within(fut)


def test_cancelling_a_queued_executor_fork_is_forwarded(loop_kind: str) -> None:
    """Cancellation is forwarded to the executor: a queued executor fork never runs."""
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocker() -> str:
        started.set()
        assert release.wait(T)
        return "first"

    def second() -> None:
        ran.append("second")

    with ThreadPoolExecutor(max_workers=1) as ex:
        forker = af.fork.options(executor=ex)
        first = forker(blocker)
        try:
            assert started.wait(T)
            queued = forker(second)
            assert queued.cancel() is True
            with pytest.raises(CancelledError):
                queued.result(timeout=T)  # settles while the single worker is still busy
            assert queued.cancelled()
        finally:
            release.set()
        assert first.result(timeout=T) == "first"
    assert ran == [], "the cancelled executor fork ran"


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


def test_coroutine_function_with_executor_is_typeerror() -> None:
    """A coroutine function with any executor= raises TypeError at fork."""
    forker = af.fork.options(executor=ThreadPoolExecutor(max_workers=1))
    with pytest.raises(TypeError, match="_loop_and_thread"):
        forker(_loop_and_thread)


# -- forks whose loop has closed -----------------------------------------------------------


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


def _silence_never_awaited() -> None:
    """In a process pool's workers: the coroutine that cannot be sent back is dropped there."""
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")


@pytest.fixture(scope="module")
def silent_process_pool() -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers drop, without a warning, a coroutine they cannot send back."""
    ctx = multiprocessing.get_context("forkserver" if sys.platform != "win32" else "spawn")
    with ProcessPoolExecutor(
        max_workers=1, mp_context=ctx, initializer=_silence_never_awaited
    ) as ex:
        yield ex


# -- executor forks whose sync callable returns a coroutine ---------------------------------


async def _where(x: int) -> tuple[int, Any, Any, str]:
    return (
        x * 2,
        asyncio.get_running_loop(),
        af.current(),
        threading.current_thread().name,
    )


def _returns_where(x: int) -> Any:
    return _where(x)


async def test_a_returned_coroutine_runs_on_the_host_loop_as_the_same_fork(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    fut = af.fork.options(executor=executor)(_returns_where, 21)
    value, loop, current, thread = await within(fut)
    assert value == 42
    assert loop is asyncio.get_running_loop()
    assert current is fut
    assert thread == threading.current_thread().name
    assert fut.kind == "executor"


def test_a_returned_coroutine_from_a_plain_thread_runs_on_the_background_loop(
    loop_kind: str, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    value, _loop, current, thread = af.fork.options(executor=executor)(_returns_where, 1).result(
        timeout=T
    )
    assert value == 2
    assert current is not None
    assert thread == "asyncfork-loop"


async def test_the_returned_coroutines_children_are_joined_before_the_fork_settles(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    log: list[str] = []
    child_running, release = asyncio.Event(), asyncio.Event()

    async def child() -> None:
        child_running.set()
        await release.wait()
        log.append("child")

    async def part() -> str:
        af.fork(child)  # a child of the executor fork, joined by it
        return "part"

    fut = af.fork.options(executor=executor)(lambda: part())
    await within(child_running.wait())
    assert not fut.done()  # the part returned; its child holds the fork open
    release.set()
    assert await within(fut) == "part"
    assert log == ["child"]


async def test_a_returned_coroutine_that_raises_fails_the_fork(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    async def boom() -> None:
        raise ValueError("from the coroutine part")

    fut = af.fork.options(executor=executor)(lambda: boom())
    with pytest.raises(ValueError, match="from the coroutine part"):
        await within(fut)


async def test_a_returned_coroutine_starts_in_a_fresh_context(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("executor_var", default="unset")
    var.set("forker")

    async def read() -> str:
        return var.get()

    assert await within(af.fork.options(executor=executor)(lambda: read())) == "unset"


async def test_cancelled_while_the_call_ran_closes_the_coroutine_unstarted(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    started, gate = threading.Event(), threading.Event()
    made: list[Any] = []

    def body() -> Any:
        started.set()
        assert gate.wait(T)
        coro = forever()
        made.append(coro)
        return coro

    fut = af.fork.options(executor=executor)(body)
    assert await asyncio.to_thread(started.wait, T)
    assert fut.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert closed_unstarted(made[0])  # never awaited, and no warning about it


async def test_cancelling_the_coroutine_part_cancels_it(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    running = asyncio.Event()
    cleanup: list[str] = []

    async def part() -> None:
        running.set()
        try:
            await forever()
        finally:
            cleanup.append("done")

    fut = af.fork.options(executor=executor)(lambda: part())
    await within(running.wait())
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert cleanup == ["done"]


async def test_a_process_pool_cannot_send_a_coroutine_back(
    silent_process_pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    fut = af.fork.options(executor=silent_process_pool)(_returns_where, 3)
    with pytest.raises(Exception, match="pickle") as info:
        await within(fut, T * 2)
    assert not asyncio.iscoroutine(info.value)


def test_a_coroutine_returned_after_the_loop_closed_fails_the_fork_and_is_closed(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    started, gate = threading.Event(), threading.Event()
    made: list[Any] = []

    def body() -> Any:
        started.set()
        assert gate.wait(T)
        coro = forever()
        made.append(coro)
        return coro

    async def main() -> af.Future[Any]:
        fut = af.fork.options(executor=executor)(body)
        await asyncio.to_thread(started.wait, T)
        return fut

    fut = asyncio.run(main())  # its loop closes while the call runs
    gate.set()
    with pytest.raises(RuntimeError, match="returned a coroutine after its loop closed"):
        af.wait(fut, timeout=T)
    assert closed_unstarted(made[0])


# -- back-pressure of the cross-thread mailbox ---------------------------------------------


def test_a_full_mailbox_makes_the_forking_thread_wait(
    loop_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread forking onto a busy loop waits once its mailbox is full; nothing is dropped,
    and the loop's own thread posts past the limit without waiting."""
    from asyncfork import _mailbox

    monkeypatch.setattr(_mailbox, "_LIMIT", 64)
    monkeypatch.setattr(_mailbox, "_LOW", 32)
    full = threading.Event()
    original = _mailbox.Mailbox._wait_for_room

    def waiting(self: _mailbox.Mailbox) -> None:
        full.set()
        original(self)

    monkeypatch.setattr(_mailbox.Mailbox, "_wait_for_room", waiting)
    busy = threading.Event()
    release = threading.Event()
    own_posts: list[int] = []

    async def block_the_loop() -> int:
        busy.set()
        assert release.wait(T)  # blocks the loop's thread: the mailbox fills up
        loop = asyncio.get_running_loop()
        for _ in range(10):  # from the loop's own thread: never waits, never raises
            _mailbox.post(loop, own_posts.append, 1)
        return len(_mailbox._mailboxes[loop]._calls)

    blocker = af.fork(block_the_loop)
    assert busy.wait(T)
    futs: list[af.Future[None]] = []
    forker = threading.Thread(target=lambda: futs.extend(af.fork(noop) for _ in range(500)))
    forker.start()
    try:
        assert full.wait(T)
        assert forker.is_alive()
        box = _mailbox._mailboxes[blocker.get_loop()]
        assert len(box._calls) <= 64
    finally:
        release.set()
        forker.join(T)
    assert not forker.is_alive()
    assert af.wait(blocker, timeout=T) > 64  # the loop's thread posted past the limit
    assert af.wait(futs, timeout=T) == [None] * 500
    flush_background_loop()
    assert own_posts == [1] * 10
