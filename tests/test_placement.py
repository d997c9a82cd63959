"""Where work runs: DESIGN sections 3 and 9 (loops, threads, context, workers, executors).

Every blocking call is bounded by a timeout; synchronisation uses events, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
from asyncio import CancelledError
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import uvloop
from helpers import T

import asyncfork as af

WORKER_NAME = re.compile(r"asyncfork-worker-\d+")

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
def fresh_loops(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No loop choice set, no background loop running; restored afterwards."""
    monkeypatch.delenv("ASYNCFORK_LOOP", raising=False)
    af.shutdown(cancel=True, timeout=T)
    af.configure(loop=None)
    try:
        yield monkeypatch
    finally:
        af.shutdown(cancel=True, timeout=T)
        af.configure(loop=None)


# -- section 3: the placement table ---------------------------------------------------


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


# -- loop kind: uvloop by default, ASYNCFORK_LOOP and configure() override ------------


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_loops_default_to_uvloop(fresh_loops: pytest.MonkeyPatch) -> None:
    """Loops that asyncfork creates (B and af.run) use uvloop when it is installed."""
    assert af.run(_loop_type) is uvloop.Loop
    assert af.wait(af.fork(_loop_type), timeout=T) is uvloop.Loop


def test_env_var_selects_asyncio_loop(fresh_loops: pytest.MonkeyPatch) -> None:
    """ASYNCFORK_LOOP=asyncio overrides the uvloop default, for af.run and for B."""
    fresh_loops.setenv("ASYNCFORK_LOOP", "asyncio")
    run_type = af.run(_loop_type)
    bg_type = af.wait(af.fork(_loop_type), timeout=T)
    for loop_type in (run_type, bg_type):
        assert issubclass(loop_type, asyncio.BaseEventLoop)
        assert not issubclass(loop_type, uvloop.Loop)


def test_env_var_selects_uvloop(fresh_loops: pytest.MonkeyPatch) -> None:
    """ASYNCFORK_LOOP=uvloop gives uvloop loops."""
    fresh_loops.setenv("ASYNCFORK_LOOP", "uvloop")
    assert af.run(_loop_type) is uvloop.Loop
    assert af.wait(af.fork(_loop_type), timeout=T) is uvloop.Loop


def test_configure_loop_overrides_default_and_env(fresh_loops: pytest.MonkeyPatch) -> None:
    """af.configure(loop=...) chooses the loop kind; an explicit call beats the env var."""
    fresh_loops.setenv("ASYNCFORK_LOOP", "uvloop")
    af.configure(loop="asyncio")
    assert not issubclass(af.run(_loop_type), uvloop.Loop)
    assert not issubclass(af.wait(af.fork(_loop_type), timeout=T), uvloop.Loop)
    af.shutdown(timeout=T)  # so that B restarts with the new choice
    fresh_loops.setenv("ASYNCFORK_LOOP", "asyncio")
    af.configure(loop="uvloop")
    assert af.run(_loop_type) is uvloop.Loop
    assert af.wait(af.fork(_loop_type), timeout=T) is uvloop.Loop


def test_bad_env_var_value_raises_valueerror_naming_it(fresh_loops: pytest.MonkeyPatch) -> None:
    """A bad ASYNCFORK_LOOP value is a ValueError naming the variable."""
    fresh_loops.setenv("ASYNCFORK_LOOP", "tokio")
    with pytest.raises(ValueError, match="ASYNCFORK_LOOP"):
        af.run(_loop_type)
    with pytest.raises(ValueError, match="ASYNCFORK_LOOP"):
        af.fork(_loop_type)
    fresh_loops.setenv("ASYNCFORK_LOOP", "asyncio")
    assert not issubclass(af.wait(af.fork(_loop_type), timeout=T), uvloop.Loop)


def test_configure_bad_loop_value_raises_valueerror() -> None:
    """af.configure(loop=<unknown name>) is a ValueError."""
    with pytest.raises(ValueError, match="loop"):
        af.configure(loop="tokio")  # type: ignore[arg-type]


# -- fork returns at once; coroutine forks are not eager ------------------------------


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


# -- contextvars ------------------------------------------------------------------------


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


# -- the worker pool ----------------------------------------------------------------------


def test_worker_threads_are_reused(loop_kind: str) -> None:
    """One pool, reused: many sequential sync forks use few distinct worker threads."""

    def name() -> str:
        return threading.current_thread().name

    names = {af.wait(af.fork(name), timeout=T) for _ in range(40)}
    assert all(WORKER_NAME.fullmatch(n) for n in names), names
    assert len(names) <= 4, f"40 sequential forks used {len(names)} threads: {sorted(names)}"


async def test_configure_workers_limits_concurrency() -> None:
    """configure(workers=2): at most two sync forks run at once (and two do)."""
    lock = threading.Lock()
    running = 0
    most = 0
    pair = threading.Barrier(2, timeout=T)  # proves two do run together

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            pair.wait()
            threading.Event().wait(0.02)  # simulated work, still holding the slot
        finally:
            with lock:
                running -= 1

    af.configure(workers=2)
    try:
        futs = [af.fork(work) for _ in range(6)]
        await asyncio.wait_for(asyncio.gather(*futs), T * 2)
    finally:
        af.configure(workers=None)
    assert most == 2


def test_many_threads_fork_wait_and_cancel_at_once(loop_kind: str) -> None:
    """Any number of threads may fork, wait and cancel at once."""
    start = threading.Barrier(8, timeout=T)

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def forever() -> None:
        await asyncio.Event().wait()

    def inc(x: int) -> int:
        return x + 1

    def one_thread(k: int) -> None:
        start.wait()
        coro = [af.fork(double, i) for i in range(20)]
        sync = [af.fork(inc, i) for i in range(20)]
        doomed = [af.fork(forever) for _ in range(10)]
        assert all(f.cancel() for f in doomed)
        assert af.wait(coro, timeout=T) == [2 * i for i in range(20)]
        assert af.wait(sync, timeout=T) == [i + 1 for i in range(20)]
        for f in doomed:
            with pytest.raises(CancelledError):
                f.result(timeout=T)
            assert f.cancelled()

    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            one_thread(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T * 3)
    assert not any(t.is_alive() for t in threads), "a forking thread hung"
    assert errors == []


# -- executors ---------------------------------------------------------------------------


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


def test_coroutine_function_with_executor_is_typeerror() -> None:
    """A coroutine function with any executor= raises TypeError at fork."""
    forker = af.fork.options(executor=ThreadPoolExecutor(max_workers=1))
    with pytest.raises(TypeError, match="_loop_and_thread"):
        forker(_loop_and_thread)


# -- os.fork() and signal handlers (in subprocesses) -------------------------------------


def _run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_os_fork_child_gets_a_fresh_background_loop_and_workers(kind: str) -> None:
    """After os.fork() the child resets B and the workers; they start afresh on first use."""
    script = """
        import asyncio, os, sys, threading, warnings
        import asyncfork as af

        async def where():
            return asyncio.get_running_loop(), threading.current_thread()

        def sync_where():
            return threading.current_thread().name

        parent_loop, parent_thread = af.wait(af.fork(where), timeout=5)
        af.wait(af.fork(sync_where), timeout=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop, thread = af.wait(af.fork(where), timeout=5)
                worker = af.wait(af.fork(sync_where), timeout=5)
                assert loop is not parent_loop, "child reused the parent's loop"
                assert thread is not parent_thread, "child reused the parent's thread"
                assert thread.name == "asyncfork-loop" and thread.is_alive()
                assert worker.startswith("asyncfork-worker-"), worker
                af.shutdown(timeout=5)
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        assert af.wait(af.fork(where), timeout=5)[0] is parent_loop, "parent's B changed"
        print("OK")
    """
    proc = _run_script(script, ASYNCFORK_LOOP=kind)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "child exit 0" in proc.stdout, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_no_signal_handlers_installed(kind: str) -> None:
    """asyncfork installs no signal handlers and leaves the user's handlers as they were."""
    script = """
        import asyncio, signal
        import asyncfork as af

        def user_handler(signum, frame):
            pass

        signal.signal(signal.SIGTERM, user_handler)
        SIGS = (signal.SIGINT, signal.SIGTERM)
        before = {s: signal.getsignal(s) for s in SIGS}
        during = {}

        async def child():
            await asyncio.sleep(0)
            return 1

        async def main():
            during.update({s: signal.getsignal(s) for s in SIGS})
            return await af.fork(child)

        assert af.run(main) == 1
        assert af.wait(af.fork(child), timeout=5) == 1
        assert af.wait(af.fork(lambda: 2), timeout=5) == 2
        with af.group() as g:
            g.fork(child)
        after_use = {s: signal.getsignal(s) for s in SIGS}
        af.shutdown(timeout=5)
        after_shutdown = {s: signal.getsignal(s) for s in SIGS}
        assert during == before, (during, before)
        assert after_use == before, (after_use, before)
        assert after_shutdown == before, (after_shutdown, before)
        print("OK")
    """
    proc = _run_script(script, ASYNCFORK_LOOP=kind)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
