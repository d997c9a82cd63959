"""Sync forks' worker threads: the pool, its limit, slot lending, helping, check_cancelled."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from asyncio import CancelledError

import pytest
from helpers import WORKER_NAME, T, flush_background_loop, within

import asyncfork as af

# -- the worker pool -----------------------------------------------------------------------


def test_worker_threads_are_reused(loop_kind: str) -> None:
    """One pool, reused: many sequential sync forks use few distinct worker threads."""

    def name() -> str:
        return threading.current_thread().name

    names = {af.wait(af.fork(name), timeout=T) for _ in range(40)}
    assert all(WORKER_NAME.fullmatch(n) for n in names), names
    assert len(names) <= 4, f"40 sequential forks used {len(names)} threads: {sorted(names)}"


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


# -- the worker limit: configure(workers=n) ------------------------------------------------


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


def test_configure_workers_below_one_is_value_error():
    """A bad option value is a ValueError naming the option: configure(workers=0)."""
    for bad in (0, -1):
        with pytest.raises(ValueError, match="workers"):
            af.configure(workers=bad)


# -- a blocked worker lends its slot; a waiting worker helps -------------------------------


def test_recursive_sync_fib_with_two_workers(loop_kind: str, two_workers: None) -> None:
    """No pool deadlock from nesting: recursive sync fork/wait fib(15) with 2 workers."""

    def fib(n: int) -> int:
        if n < 2:
            return n
        a = af.fork(fib, n - 1)
        b = af.fork(fib, n - 2)
        return af.wait(a, timeout=T) + af.wait(b, timeout=T)

    assert af.fork(fib, 15).result(timeout=15) == 610


def test_worker_blocked_in_wait_lends_its_slot(loop_kind: str, one_worker: None) -> None:
    """While a worker is blocked in wait its slot is lent: another sync fork can run."""
    gate: concurrent.futures.Future[str] = concurrent.futures.Future()
    first_started = threading.Event()

    async def until_open() -> str:
        return await asyncio.wrap_future(gate)

    def first() -> str:
        inner = af.fork(until_open)
        first_started.set()
        return af.wait(inner, timeout=T)  # blocks the only worker...

    def opener() -> str:  # ...so this one can run only on the lent slot
        gate.set_result("open")
        return "opened"

    f1 = af.fork(first)
    assert first_started.wait(T)
    f3 = af.fork(opener)
    assert f3.result(timeout=T) == "opened"
    assert f1.result(timeout=T) == "open"


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


def test_worker_waiting_on_queued_sync_fork_runs_it_inline(
    loop_kind: str, one_worker: None
) -> None:
    """A worker that waits on a sync fork that has not started runs it inline (helping)."""

    def inner() -> str:
        return threading.current_thread().name

    def outer() -> tuple[str, str]:
        return threading.current_thread().name, af.wait(af.fork(inner), timeout=T)

    outer_thread, inner_thread = af.fork(outer).result(timeout=T)
    assert outer_thread == inner_thread


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


# -- check_cancelled() ---------------------------------------------------------------------


def test_check_cancelled_in_sync_fork(loop_kind: str) -> None:
    """check_cancelled() returns None before cancel, raises CancelledError after it."""
    started = threading.Event()
    cancel_handled = threading.Event()
    seen: list[object] = []

    def body() -> str:
        seen.append(af.check_cancelled())
        started.set()
        assert cancel_handled.wait(T)
        try:
            af.check_cancelled()
        except BaseException as exc:
            seen.append(type(exc))
            raise
        return "not cancelled?"

    fut = af.fork(body)
    try:
        assert started.wait(T)
        assert fut.cancel()
        flush_background_loop()
    finally:
        cancel_handled.set()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert seen == [None, asyncio.CancelledError]
    assert fut.cancelled()


def test_check_cancelled_outside_a_sync_fork_raises_runtime_error() -> None:
    """check_cancelled() anywhere but a sync fork's worker thread raises RuntimeError."""
    with pytest.raises(RuntimeError):
        af.check_cancelled()
    errors: list[BaseException] = []

    def in_plain_thread() -> None:
        try:
            af.check_cancelled()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_plain_thread)
    thread.start()
    thread.join(T)
    assert len(errors) == 1


async def test_check_cancelled_in_a_coroutine_fork_raises_runtime_error() -> None:
    """check_cancelled() in a coroutine fork raises RuntimeError (cancellation comes at await)."""

    async def body() -> None:
        af.check_cancelled()

    with pytest.raises(RuntimeError):
        await af.fork(body)
