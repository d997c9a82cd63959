"""Sync forks' worker threads: the pool, its limit, slot lending, helping, check_cancelled."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
import threading
from asyncio import CancelledError

import pytest
from helpers import WORKER_NAME, T, flush_background_loop, three, within

import asyncfork as af
from asyncfork import _threads

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


def test_default_worker_limit_is_40(loop_kind):
    """The worker limit defaults to 40 sync forks running at once, whatever the CPU count."""
    limit = 40
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
        # No timeout: a wait with one does not help. The outer result() bounds the test.
        return af.wait(a) + af.wait(b)

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
        # No timeout: a wait with one does not help. The outer result() bounds the test.
        return threading.current_thread().name, af.wait(af.fork(inner))

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


def test_helping_wait_over_several_futures_with_return_exceptions_runs_them_inline(
    loop_kind: str, one_worker: None
) -> None:
    """`wait(..., return_exceptions=True)` needs every Future: its worker runs them all inline."""

    def where() -> str:
        return threading.current_thread().name

    def outer() -> tuple[str, list[object]]:
        futs = [af.fork(where) for _ in range(3)]
        # No timeout: a wait with one does not help. The outer result() bounds the test.
        return where(), af.wait(futs, return_exceptions=True)

    here, names = af.fork(outer).result(timeout=T)
    assert names == [here] * 3


def _queued_behind_a_busy_slot(release: threading.Event) -> af.Future[str]:
    """In a worker holding the only slot: a sync fork that stays queued until lent a slot.

    Once it runs, it blocks until ``release``.
    """

    def slow() -> str:
        assert release.wait(T)
        return "slow"

    return af.fork(slow)


def test_fail_fast_wait_over_several_futures_does_not_help(loop_kind, one_worker):
    """A fail-fast wait over several unfinished Futures raises the first failure when it
    happens: its worker does not run a queued fork inline (that would hold the error back)."""
    release = threading.Event()
    raised = threading.Event()

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("first failure")

    def outer() -> af.Future[str]:
        slow = _queued_behind_a_busy_slot(release)
        with pytest.raises(ValueError, match="first failure"):
            # No timeout (a wait with one never helps): the outer result() bounds the test.
            af.wait([slow, af.fork(fails)])
        raised.set()
        return slow

    fut = af.fork(outer)
    try:
        assert raised.wait(T), "the wait returned only after the queued fork"
    finally:
        release.set()
    assert fut.result(timeout=T).result(timeout=T) == "slow"


def test_as_completed_in_a_worker_yields_in_completion_order(loop_kind, one_worker):
    """`as_completed` in a worker yields the first Future to finish when it finishes: it does
    not first run a queued fork inline."""
    release = threading.Event()
    first_yielded = threading.Event()

    def outer() -> tuple[bool, af.Future[str]]:
        slow = _queued_behind_a_busy_slot(release)
        quick = af.fork(three)
        # No timeout (the rule holds either way): the outer result() bounds the test.
        it = af.as_completed([slow, quick])
        first = next(it)
        first_yielded.set()
        assert next(it) is slow
        return first is quick, slow

    fut = af.fork(outer)
    try:
        assert first_yielded.wait(T), "as_completed yielded only after the queued fork"
    finally:
        release.set()
    quick_first, slow = fut.result(timeout=T)
    assert quick_first
    assert slow.result(timeout=T) == "slow"


def test_deep_recursive_sync_fork_wait_chain_completes(loop_kind, two_workers):
    """A chain of 1000 nested sync fork/wait with 2 workers completes: helping stops at a
    bounded depth (the waiter then lends its slot), so no thread's stack overflows."""
    depths: list[int] = []

    def chain(n: int) -> int:
        if n == 0:
            depths.append(len(inspect.stack(0)))
            return 0
        # No timeout: a wait with one does not help. The outer result() bounds the test.
        return af.wait(af.fork(chain, n - 1)) + 1

    assert af.fork(chain, 1000).result(timeout=T * 4) == 1000
    assert depths[0] < sys.getrecursionlimit() // 2  # this thread's stack stayed shallow


# -- a worker thread that cannot be started ------------------------------------------------


def _fail_next_worker_start(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the next worker thread fail to start, as under a thread or memory limit."""
    real_start = threading.Thread.start
    failed: list[str] = []

    def start(self: threading.Thread) -> None:
        if not failed and WORKER_NAME.fullmatch(self.name):
            failed.append(self.name)
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    return failed


def test_worker_thread_that_cannot_start_fails_the_fork_cleanly(loop_kind, monkeypatch):
    """No worker thread can be started and none is running: `fork()` returns, and the Future
    fails with a RuntimeError; the callable never runs. The pool stays usable."""
    flush_background_loop()  # the background loop's own thread is started
    failed = _fail_next_worker_start(monkeypatch)
    ran: list[int] = []
    fut = af.fork(ran.append, 1)  # does not raise
    with pytest.raises(RuntimeError, match="can't start new thread") as info:
        fut.result(timeout=T)
    assert "could not start" in str(info.value)
    assert len(failed) == 1
    flush_background_loop()
    assert ran == []
    # The pool's books are straight: the next sync fork gets a thread.
    assert af.wait(af.fork(lambda: 2), timeout=T) == 2
    assert af.wait([af.fork(lambda: 3) for _ in range(3)], timeout=T) == [3] * 3


async def test_worker_thread_that_cannot_start_fails_a_fork_made_on_the_loop(monkeypatch):
    """The same for a sync fork made on a loop: `fork()` returns, awaiting it raises."""
    _threads.stop_pool()  # a new pool, with no idle thread to wake
    failed = _fail_next_worker_start(monkeypatch)
    ran: list[int] = []
    fut = af.fork(ran.append, 1)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        await within(fut)
    assert len(failed) == 1
    assert ran == []
    assert await within(af.fork(lambda: 2)) == 2


def test_fork_queued_when_a_worker_thread_cannot_start_runs_on_a_running_worker(
    loop_kind: str, monkeypatch: pytest.MonkeyPatch, two_workers: None
) -> None:
    """A worker thread cannot be started while another worker runs: the fork stays queued
    and that worker runs it once its own fork returns."""
    release, started = threading.Event(), threading.Event()

    def busy() -> str:
        started.set()
        assert release.wait(T)
        return threading.current_thread().name

    first = af.fork(busy)
    assert started.wait(T)
    failed = _fail_next_worker_start(monkeypatch)
    second = af.fork(threading.current_thread)  # does not raise: it waits for `busy`'s worker
    assert len(failed) == 1
    assert not second.done()
    release.set()
    assert af.wait(second, timeout=T).name == first.result(timeout=T)


# -- threads beyond the limit: only for lent slots, reaped when idle -----------------------


def test_threads_beyond_the_limit_serve_lent_slots_and_are_reaped_when_idle(
    loop_kind: str, monkeypatch: pytest.MonkeyPatch, two_workers: None
) -> None:
    """Blocked waiters lend their slots, so threads may outnumber the limit while they block;
    once they are idle, the threads beyond the limit exit."""
    monkeypatch.setattr(_threads, "IDLE_SECONDS", 0.05)
    reaped = threading.Event()
    reap = _threads.Pool._reap_locked

    def reap_and_tell(self: _threads.Pool, wake: threading.Lock) -> bool:
        gone = reap(self, wake)
        if len(self.threads) <= 2:
            reaped.set()
        return gone

    monkeypatch.setattr(_threads.Pool, "_reap_locked", reap_and_tell)
    gate: concurrent.futures.Future[None] = concurrent.futures.Future()
    blocked = threading.Semaphore(0)

    async def until_open() -> None:
        await asyncio.wrap_future(gate)

    def waiter() -> None:
        inner = af.fork(until_open)
        blocked.release()
        af.wait(inner, timeout=T)  # blocks, lending its slot

    n = 12
    futs = [af.fork(waiter) for _ in range(n)]
    try:
        for _ in range(n):
            assert blocked.acquire(timeout=T)
        threads = set(_threads.pool().threads)
        assert n <= len(threads) <= 2 + n  # the limit, plus one per blocked waiter at most
    finally:
        gate.set_result(None)
    af.wait(futs, timeout=T)
    assert reaped.wait(T), "idle threads beyond the limit were not reaped"
    kept = _threads.pool().threads
    assert len(kept) <= 2
    for thread in threads - kept:
        thread.join(T)
        assert not thread.is_alive()
    assert af.wait([af.fork(lambda: 1) for _ in range(4)], timeout=T) == [1] * 4


def test_blocked_forks_that_do_not_wait_get_no_threads_beyond_the_limit(loop_kind, two_workers):
    """Sync forks blocked in their own code (not in an asyncfork wait) keep their slots:
    no thread beyond the limit is started for the forks queued behind them."""
    release = threading.Event()
    running = threading.Semaphore(0)

    def body() -> None:
        running.release()
        assert release.wait(T)

    futs = [af.fork(body) for _ in range(6)]
    try:
        for _ in range(2):
            assert running.acquire(timeout=T)
        assert len(_threads.pool().threads) == 2
    finally:
        release.set()
    af.wait(futs, timeout=T)
    assert len(_threads.pool().threads) == 2


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
