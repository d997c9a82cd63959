"""af.run, af.shutdown, af.configure(loop=...) and af.current()."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop
from helpers import T, double, forever, three, within

import asyncfork as af

# -- helpers -------------------------------------------------------------------------------


def background_threads():
    return [t for t in threading.enumerate() if t.name == "asyncfork-loop" and t.is_alive()]


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


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


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


# -- af.run --------------------------------------------------------------------------------


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


def test_run_with_a_sync_root_that_raises_raises_it_as_is(loop_kind):
    """af.run(func): the root fork's error is raised as it is, for a sync root too."""
    error = LookupError("root")

    def root():
        raise error

    with pytest.raises(LookupError) as info:
        af.run(root)
    assert info.value is error


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


def test_run_cancels_plain_tasks_left_behind(loop_kind):
    """As asyncio.run: tasks that are not forks, still pending at the end, are cancelled."""
    cleaned, tasks = [], []

    async def plain():
        try:
            await forever()
        finally:
            cleaned.append(1)

    async def root():
        tasks.append(asyncio.ensure_future(plain()))
        await asyncio.sleep(0)
        return "root"

    assert af.run(root) == "root"
    assert cleaned == [1]
    assert tasks[0].cancelled()


async def test_run_inside_a_running_loop_is_runtime_error():
    """af.run, like asyncio.run, cannot be called from a running event loop."""
    called = []

    async def main():
        called.append(True)

    with pytest.raises(RuntimeError, match="running event loop"):
        af.run(main)
    assert called == []


# -- af.run: interrupts --------------------------------------------------------------------


def test_run_ctrl_c_outside_any_fork_cancels_everything_and_runs_cleanup(loop_kind):
    """Ctrl-C while the loop runs no fork's code: every fork is cancelled, cleaned up, KI raised."""
    cleaned = []

    async def child():
        try:
            await forever()
        finally:
            cleaned.append("child")

    async def root():
        af.fork(child)
        asyncio.get_running_loop().call_soon(_raise_keyboard_interrupt)
        try:
            await forever()
        finally:
            cleaned.append("root")

    with pytest.raises(KeyboardInterrupt):
        af.run(root)
    assert sorted(cleaned) == ["child", "root"]


def test_run_second_ctrl_c_abandons_the_cleanup(loop_kind):
    """A second Ctrl-C during the cleanup abandons it; KeyboardInterrupt is raised promptly."""
    finished_cleanup = []

    async def root():
        try:
            await forever()
        except asyncio.CancelledError:
            asyncio.get_running_loop().call_soon(_raise_keyboard_interrupt)  # Ctrl-C again
            await asyncio.sleep(T)  # a long cleanup
            finished_cleanup.append(1)  # pragma: no cover
            raise

    def first_interrupt():
        raise KeyboardInterrupt

    async def main():
        af.fork(root)
        asyncio.get_running_loop().call_soon(first_interrupt)
        await forever()

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        af.run(main)
    assert time.monotonic() - start < T / 2
    assert finished_cleanup == []


def test_run_with_two_interrupting_forks_raises_the_first(loop_kind):
    """A fork's KeyboardInterrupt ends af.run; a second interrupt meanwhile does not replace it."""

    async def interrupt():
        raise KeyboardInterrupt

    async def exit_():
        raise SystemExit(3)

    async def root():
        af.fork(interrupt)
        af.fork(exit_)
        await forever()

    with pytest.raises(KeyboardInterrupt):
        af.run(root)


# -- af.shutdown ---------------------------------------------------------------------------


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


def test_shutdown_cancels_plain_tasks_left_on_the_background_loop(loop_kind):
    """Plain tasks left on the background loop are cancelled at shutdown and finish cleanup."""
    cleaned = threading.Event()
    tasks = []

    async def plain():
        try:
            await forever()
        finally:
            cleaned.set()

    async def starter():
        tasks.append(asyncio.ensure_future(plain()))
        await asyncio.sleep(0)

    af.wait(af.fork(starter), timeout=T)
    af.shutdown(timeout=T)
    assert cleaned.is_set()


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


def test_shutdown_timeout_holds_while_the_background_loop_is_busy(loop_kind):
    """shutdown(timeout=s) raises TimeoutError after s, even if the loop is stuck in a step."""
    busy, release = threading.Event(), threading.Event()

    async def hog():
        busy.set()
        release.wait(2)  # blocks the background loop itself (a user's mistake)

    fut = af.fork(hog)
    assert busy.wait(T)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            af.shutdown(timeout=0.05)
        assert time.monotonic() - start < 1.0
    finally:
        release.set()
    af.wait(fut, timeout=T)


def test_shutdown_with_zero_timeout_when_nothing_runs(loop_kind):
    """shutdown(timeout=0) with no pending fork returns: there is nothing to wait for."""
    assert af.wait(af.fork(three), timeout=T) == 3  # the background loop runs, idle
    af.shutdown(timeout=0)
    af.shutdown(timeout=0)  # and with no background loop at all


@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_shutdown_cancel_must_be_a_bool(value: object) -> None:
    """shutdown(cancel="no") must not cancel everything: a TypeError naming the option."""
    with pytest.raises(TypeError, match=r"shutdown\(cancel=...\) must be True or False"):
        af.shutdown(cancel=value)  # type: ignore[arg-type]


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


async def test_shutdown_on_a_loop_thread_is_deadlock_error():
    """af.shutdown() on any thread running a loop raises DeadlockError at once: blocking that
    loop would hang a background fork that needs it (here: one that runs code on it)."""
    loop = asyncio.get_running_loop()

    async def on_this_loop() -> str:
        return "ran here"

    async def needs_this_loop() -> str:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_this_loop(), loop))

    fut = await asyncio.to_thread(af.fork, needs_this_loop)  # a background fork
    with pytest.raises(af.DeadlockError, match=r"asyncio\.to_thread\(af\.shutdown\)"):
        af.shutdown(timeout=0.5)
    assert await within(fut) == "ran here"
    await within(asyncio.to_thread(af.shutdown, timeout=T), T * 2)  # what the message says


# -- daemon sync forks: abandoned, never waited for -----------------------------------------


@pytest.fixture
def heartbeat() -> Iterator[tuple[Callable[[], str], threading.Event, threading.Event]]:
    """A sync heartbeat loop that stops only when told; told at teardown, whatever happened."""
    beating, stop = threading.Event(), threading.Event()

    def beat() -> str:
        beating.set()
        while not stop.wait(0.005):
            pass
        return "stopped"

    try:
        yield beat, beating, stop
    finally:
        stop.set()


def _bounded(fn: Callable[[], object], seconds: float = T) -> list[object]:
    """Call fn in a daemon thread and return [its value]; fail if it has not returned in time."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds}s"
    return out


@pytest.mark.asyncfork_no_leak_check  # its subject is a sync call left running
def test_run_abandons_a_running_daemon_sync_fork(loop_kind, heartbeat):
    """af.run cancels its daemon forks: a daemon sync fork still running is abandoned, so
    af.run returns at once; the call itself goes on until it stops by itself."""
    beat, beating, stop = heartbeat
    made: dict[str, af.Future[str]] = {}

    async def root() -> str:
        made["beat"] = af.fork.options(detached=True, daemon=True)(beat)
        await asyncio.to_thread(beating.wait, T)
        return "root"

    assert _bounded(lambda: af.run(root)) == ["root"]
    assert made["beat"].cancelled()
    assert not stop.is_set()  # abandoned, not killed: the heartbeat still runs


@pytest.mark.parametrize("how", ["drain", "cancel", "cancelled_before"])
def test_shutdown_abandons_a_running_daemon_sync_fork(loop_kind, heartbeat, how):
    """af.shutdown() cancels daemon forks (also with cancel=True, and also one that was
    cancelled before and waited for): a running daemon sync call is not waited for."""
    beat, beating, _stop = heartbeat
    daemon = af.fork.options(daemon=True)(beat)
    ordinary = af.fork(three)
    assert beating.wait(T)
    if how == "cancelled_before":
        assert daemon.cancel()  # on_cancel="wait": an ordinary cancel would wait for it
        with pytest.raises(TimeoutError):
            daemon.result(timeout=0.01)
    _bounded(lambda: af.shutdown(cancel=how == "cancel", timeout=T))
    assert daemon.cancelled()
    assert ordinary.done()
    assert background_threads() == []


def test_a_sync_fork_abandoned_just_as_its_call_returned_still_ends():
    """An on_cancel="abandon" cancel that reaches the loop after the call returned, but
    before its outcome did, still ends the fork (cancelled). Daemon forks are cancelled this
    way at shutdown, so a heartbeat returning at that moment cannot hang it."""

    class CancelAsItReturns(af.Instrument):
        def fork_busy(self, fut: af.Future[Any], seconds: float) -> None:
            if fut.name == "returning":
                fut.cancel()  # the call has returned; its outcome is posted after this

    with af.instrument(CancelAsItReturns()):
        fut = af.fork.options(name="returning", on_cancel="abandon")(lambda: "value")
        with pytest.raises(asyncio.CancelledError):
            fut.result(timeout=T)


def test_two_shutdowns_at_once_both_return(loop_kind):
    """Two threads call af.shutdown() together: one waits for the other; both return once
    the pending fork is drained."""
    release = threading.Event()

    async def pending() -> str:
        await asyncio.to_thread(release.wait, T)
        return "drained"

    fut = af.fork(pending)
    first, first_out = _in_thread(af.shutdown)
    second, second_out = _in_thread(af.shutdown)
    release.set()
    first.join(T)
    second.join(T)
    assert first_out == [None]
    assert second_out == [None]
    assert fut.result(timeout=0) == "drained"


def test_a_detached_fork_from_an_abandoned_daemon_fork_after_shutdown_runs(loop_kind):
    """A daemon sync fork is abandoned at shutdown and runs on in its thread; a detached fork
    it makes after shutdown returned goes to a new background loop (its own host loop is
    closed), instead of raising "loop is closed"."""
    started, go, done = threading.Event(), threading.Event(), threading.Event()
    outcome: list[object] = []

    def heartbeat() -> None:
        started.set()  # running: shutdown abandons it rather than dropping it unstarted
        assert go.wait(T)
        try:
            outcome.append(af.fork.options(detached=True)(three).result(timeout=T))
        except BaseException as exc:
            outcome.append(exc)
        done.set()

    af.fork.options(daemon=True)(heartbeat)
    assert started.wait(T)
    af.shutdown(timeout=T)
    go.set()
    assert done.wait(T)
    assert outcome == [3]


# -- groups open outside any fork: shutdown waits for them ----------------------------------


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``fn`` in a plain thread; its outcome (value or exception) lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_shutdown_waits_for_a_sync_group_open_in_a_plain_thread(loop_kind):
    """A `with af.group()` in a plain thread belongs to the background loop's root set:
    shutdown waits until it has exited, its children are never cancelled, and its body
    can still fork while shutdown waits."""
    inside, release = threading.Event(), threading.Event()

    async def child(x: int) -> int:
        await asyncio.to_thread(release.wait, T)
        return x

    def body() -> list[int]:
        with af.group() as g:
            first = g.fork(child, 1)
            inside.set()
            assert release.wait(T)
            second = g.fork(child, 2)  # the loop is still open
        return [first.result(timeout=0), second.result(timeout=0)]

    thread, outcome = _in_thread(body)
    assert inside.wait(T)
    with pytest.raises(TimeoutError):
        af.shutdown(timeout=0.05)  # the group is open: nothing is closed
    waiter, shut = _in_thread(af.shutdown)
    release.set()
    thread.join(T)
    waiter.join(T)
    assert outcome == [[1, 2]]
    assert shut == [None]
    assert background_threads() == []


def test_shutdown_cancel_cancels_an_open_sync_group_and_waits_for_its_exit(loop_kind):
    """shutdown(cancel=True) cancels the children of a sync group open in a plain thread;
    the group's exit raises CancelledError there, and shutdown returns after it."""
    inside, child_cancelled = threading.Event(), threading.Event()

    async def forever_child() -> None:
        try:
            inside.set()  # running: its cleanup will run when it is cancelled
            await asyncio.sleep(3600)
        finally:
            child_cancelled.set()

    def body() -> str:
        with af.group() as g:
            g.fork(forever_child)
            assert child_cancelled.wait(T)
        return "after the block"  # never: the block was cancelled

    thread, outcome = _in_thread(body)
    assert inside.wait(T)
    af.shutdown(cancel=True, timeout=T)
    thread.join(T)
    assert len(outcome) == 1
    assert isinstance(outcome[0], asyncio.CancelledError)
    assert background_threads() == []


# -- the loop kind: uvloop by default, ASYNCFORK_LOOP and configure(loop=...) --------------


def test_loops_default_to_uvloop(fresh_loops: pytest.MonkeyPatch) -> None:
    """Loops that asyncfork creates (B and af.run) use uvloop when it is installed."""
    assert af.run(_loop_type) is uvloop.Loop
    assert af.wait(af.fork(_loop_type), timeout=T) is uvloop.Loop


def test_default_loop_without_uvloop_is_asyncios(monkeypatch):
    """Loops asyncfork creates use uvloop when installed, else the default asyncio loop."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.delenv("ASYNCFORK_LOOP", raising=False)
    af.configure(loop=None)

    async def root():
        return type(asyncio.get_running_loop())

    assert issubclass(af.run(root), asyncio.BaseEventLoop)


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


def test_configure_loop_with_a_factory_makes_asyncforks_loops():
    """configure(loop=<callable>): af.run's loop comes from that callable."""
    made: list[asyncio.AbstractEventLoop] = []

    def factory():
        loop = asyncio.SelectorEventLoop()
        made.append(loop)
        return loop

    async def root():
        return asyncio.get_running_loop()

    af.configure(loop=factory)
    try:
        assert af.run(root) is made[0]
    finally:
        af.configure(loop=None)
    assert len(made) == 1


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


def test_configure_loop_bad_value_is_value_error():
    """A bad configure(loop=...) value is a ValueError naming it."""
    with pytest.raises(ValueError, match="'trio'"):
        af.configure(loop="trio")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["configure", "env"])
def test_uvloop_asked_for_but_missing_is_runtime_error(monkeypatch, how):
    """ASYNCFORK_LOOP=uvloop or configure(loop="uvloop") without uvloop: a clear error."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails
    called = []
    af.configure(loop="uvloop" if how == "configure" else None)
    if how == "env":
        monkeypatch.setenv("ASYNCFORK_LOOP", "uvloop")
    try:
        with pytest.raises(RuntimeError, match="pip install uvloop"):
            af.run(called.append, 1)
    finally:
        af.configure(loop=None)
    assert called == []


# -- af.current() --------------------------------------------------------------------------


async def test_current_is_none_outside_forks_in_async_code() -> None:
    """af.current() is None outside forks (a plain asyncio task)."""
    assert af.current() is None


def test_current_is_none_in_plain_sync_code() -> None:
    """af.current() is None in sync code that is not a fork."""
    assert af.current() is None


async def test_current_is_the_future_inside_forks() -> None:
    """af.current() is the running fork's Future, in coroutine forks and sync forks' threads."""

    async def coro() -> object:
        await asyncio.sleep(0)
        return af.current()

    def sync() -> object:
        return af.current()

    c, s = af.fork(coro), af.fork(sync)
    assert await c is c
    assert await s is s
