"""Instruments: af.Instrument, af.instrument(), the hooks' order, threads and failures."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import T, fork_left_on_a_closed_loop

import asyncfork as af
from asyncfork import _instruments


class Log(af.Instrument):
    """Records every hook call as (hook, fork name, extra)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.threads: dict[str, str] = {}
        self.lock = threading.Lock()

    def _add(self, hook: str, fut: af.Future[Any], extra: Any = None) -> None:
        with self.lock:
            self.calls.append((hook, fut.name, extra))
            self.threads[f"{hook}:{fut.name}"] = threading.current_thread().name

    def fork_made(self, fut: af.Future[Any]) -> None:
        self._add("made", fut, fut.kind)

    def fork_started(self, fut: af.Future[Any], where: str) -> None:
        self._add("started", fut, where)

    def fork_busy(self, fut: af.Future[Any], seconds: float) -> None:
        assert seconds >= 0
        self._add("busy", fut)

    def fork_finished(self, fut: af.Future[Any], exc: BaseException | None) -> None:
        self._add("finished", fut, "cancelled" if fut.cancelled() else exc)

    def wait_began(self, fut: af.Future[Any]) -> None:
        self._add("wait_began", fut)

    def wait_ended(self, fut: af.Future[Any]) -> None:
        self._add("wait_ended", fut)

    def hooks_of(self, name: str) -> list[str]:
        return [hook for hook, fork, _ in self.calls if fork == name]


async def test_a_coroutine_fork_calls_each_hook_in_order():
    log = Log()
    gate = asyncio.Event()

    async def child() -> int:
        await gate.wait()
        return 1

    with af.instrument(log):
        fut = af.fork(child)
        await asyncio.sleep(0)  # the child starts and blocks on the gate
        gate.set()
        assert await fut == 1
    hooks = log.hooks_of("test_a_coroutine_fork_calls_each_hook_in_order.<locals>.child")
    assert hooks[0] == "made"
    assert hooks[1] == "started"
    assert hooks.count("busy") == 2  # two steps: up to the gate, and after it
    assert hooks.index("wait_began") < hooks.index("finished") < hooks.index("wait_ended")
    assert log.calls[0][2] == "coroutine"
    thread = threading.current_thread().name
    assert log.threads[f"finished:{fut.name}"] == thread  # on the fork's loop thread


def test_a_sync_fork_reports_its_worker_thread_and_its_cpu_time():
    log = Log()

    def work() -> int:
        return 2

    with af.instrument(log):
        fut = af.fork(work)
        assert fut.result(timeout=T) == 2
    made = log.calls[0]
    (started,) = [call for call in log.calls if call[0] == "started"]
    assert made == ("made", fut.name, "thread")
    assert started[0] == "started"
    assert started[2].startswith("asyncfork-worker-")
    assert log.threads[f"started:{fut.name}"] == started[2]  # called in that thread
    assert log.threads[f"busy:{fut.name}"] == started[2]
    assert "finished" in log.hooks_of(fut.name)


def test_a_worker_that_runs_a_child_inline_is_not_charged_the_child_cpu(one_worker):
    """With the only worker busy, a sync fork that waits on its queued child runs it inline
    (helping): fork_busy gives the child its CPU time, not the parent."""
    busy: dict[str, float] = {}
    where: dict[str, str] = {}

    class Cpu(af.Instrument):
        def fork_started(self, fut: af.Future[Any], thread: str) -> None:
            where[fut.name] = thread

        def fork_busy(self, fut: af.Future[Any], seconds: float) -> None:
            busy[fut.name] = seconds

    def spin() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.2:
            pass

    def parent() -> None:
        af.wait(af.fork.options(name="spin")(spin))  # no timeout: the child runs here

    with af.instrument(Cpu()):
        af.fork.options(name="parent")(parent).result(timeout=T)
    assert where["spin"] == where["parent"]  # it was helped
    assert busy["spin"] >= 0.2
    assert busy["parent"] < 0.1


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_wait_refused_by_a_closed_loop_still_ends_its_wait_record(how: str) -> None:
    """A wait on a fork that can never finish (its loop closed with it pending) raises at
    once; the instrument hears wait_ended for it, so a trace has no wait left open."""
    fut = fork_left_on_a_closed_loop()
    log = Log()

    async def waiting() -> None:
        await af.wait(fut, timeout=T)

    def wait() -> None:
        if how == "sync":
            af.wait(fut, timeout=T)
        else:
            asyncio.run(waiting())

    try:
        with af.instrument(log), pytest.raises(RuntimeError, match="can never finish"):
            wait()
        waits = [hook for hook in log.hooks_of(fut.name) if hook.startswith("wait")]
        assert waits == ["wait_began", "wait_ended"]
    finally:
        fut._mark_retrieved()


def test_an_executor_fork_is_started_on_the_executor():
    log = Log()
    with ThreadPoolExecutor(1) as pool, af.instrument(log):
        fut = af.fork.options(executor=pool)(pow, 2, 5)
        assert af.wait(fut, timeout=T) == 32
    assert ("made", fut.name, "executor") in log.calls
    assert ("started", fut.name, "ThreadPoolExecutor") in log.calls


def test_fork_made_runs_in_the_forking_code_context():
    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="?")
    seen: list[str] = []

    class Probe(af.Instrument):
        def fork_made(self, fut: af.Future[Any]) -> None:
            seen.append(where.get())

    token = where.set("caller")
    try:
        with af.instrument(Probe()):
            af.wait(af.fork(abs, -1), timeout=T)
    finally:
        where.reset(token)
    assert seen == ["caller"]


@pytest.mark.asyncfork_no_leak_check  # its subject is a failure nobody retrieves
async def test_fork_finished_gives_the_outcome_without_retrieving_it(caplog):
    seen: dict[af.Future[Any], Any] = {}

    class Outcomes(af.Instrument):
        def fork_finished(self, fut: af.Future[Any], exc: BaseException | None) -> None:
            # Instruments are process-wide: keep only this test's forks.
            seen[fut] = "cancelled" if fut.cancelled() else exc

    async def fails() -> None:
        raise ValueError("boom")

    async def returns() -> int:
        return 1

    with af.instrument(Outcomes()):
        returned = af.fork(returns)
        assert await returned == 1
        cancelled = af.fork(asyncio.sleep, 10)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        failed = af.fork.options(detached=True)(fails)
        await asyncio.wait([failed])
    outcomes = [seen[fut] for fut in (returned, cancelled, failed)]
    assert outcomes[0] is None
    assert outcomes[1] == "cancelled"
    assert isinstance(outcomes[2], ValueError)
    # The instrument saw the error, yet it still counts as never retrieved.
    with caplog.at_level(logging.ERROR, logger="asyncfork"):
        del failed, outcomes[:]
        seen.clear()
        gc.collect()
    assert any("never retrieved" in r.getMessage() for r in caplog.records)


def test_waits_are_announced_in_the_waiting_thread_for_every_blocking_spelling():
    release = threading.Event()

    class ReleaseOnWait(Log):
        def wait_began(self, fut: af.Future[Any]) -> None:
            super().wait_began(fut)
            release.set()  # the fork was still running when the wait began

    def blocked() -> None:
        assert release.wait(T)

    log = ReleaseOnWait()
    with af.instrument(log):
        spellings = {"wait": lambda f: af.wait(f, timeout=T), "result": lambda f: f.result(T)}
        for name, block in spellings.items():
            release.clear()
            fut = af.fork.options(name=name)(blocked)
            block(fut)
            assert log.hooks_of(fut.name).count("wait_began") == 1
            assert log.threads[f"wait_began:{fut.name}"] == threading.current_thread().name
            assert log.threads[f"wait_ended:{fut.name}"] == threading.current_thread().name
    began = sum(hook == "wait_began" for hook, _, _ in log.calls)
    ended = sum(hook == "wait_ended" for hook, _, _ in log.calls)
    assert began == ended == 2


async def test_a_failing_instrument_is_removed_and_logged_and_the_program_goes_on(caplog):
    class Broken(af.Instrument):
        def fork_made(self, fut: af.Future[Any]) -> None:
            raise RuntimeError("instrument bug")

    broken, log = Broken(), Log()
    af.instrument(broken)
    installed = af.instrument(log)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncfork"):
            assert await af.fork(abs, -3) == 3  # the fork is unharmed
            assert await af.fork(abs, -4) == 4
    finally:
        installed.remove()
    assert broken not in _instruments.installed()
    errors = [r for r in caplog.records if "raised in fork_made" in r.getMessage()]
    assert len(errors) == 1  # logged once: it was removed after the first failure
    assert errors[0].exc_info is not None
    assert [h for h, _, _ in log.calls].count("made") == 2  # the other instrument went on


def test_the_scoped_form_removes_the_instrument_at_the_end_of_the_block():
    log = Log()
    with af.instrument(log) as installation:
        assert log in _instruments.installed()
        assert repr(installation).startswith("<asyncfork.instrument")
    assert log not in _instruments.installed()
    af.wait(af.fork(abs, 1), timeout=T)
    assert log.calls == []


async def test_the_scoped_form_works_with_async_with():
    log = Log()
    async with af.instrument(log):
        await af.fork(abs, 1)
    assert log not in _instruments.installed()
    assert log.calls


def test_the_process_wide_form_lasts_until_remove():
    log = Log()
    installation = af.instrument(log)
    try:
        seen_in: list[str] = []

        def in_a_thread() -> None:
            af.wait(af.fork(abs, 1), timeout=T)
            seen_in.append("done")

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join(T)
        assert seen_in == ["done"]
        assert "made" in [h for h, _, _ in log.calls]  # forks of other threads too
    finally:
        assert installation.remove() is True
    assert installation.remove() is False


def test_any_object_with_hooks_is_an_instrument():
    made: list[str] = []

    class Plain:
        def fork_made(self, fut: af.Future[Any]) -> None:
            made.append(fut.name)

    with af.instrument(Plain()):
        af.wait(af.fork(abs, 1), timeout=T)
    assert made == ["abs"]


def test_only_the_hooks_an_instrument_defines_are_called():
    class OnlyMade(af.Instrument):
        def fork_made(self, fut: af.Future[Any]) -> None:
            pass

    with af.instrument(OnlyMade()):
        assert set(_instruments.HOOKS) == {"fork_made"}
    assert _instruments.HOOKS == {}


def test_bad_instruments_are_refused_with_a_clear_error():
    with pytest.raises(TypeError, match=r"not an instrument.*Subclass af.Instrument"):
        af.instrument(object())
    with pytest.raises(TypeError, match=r"not an instrument"):
        af.instrument(af.Instrument())  # no hook overridden: nothing to call

    class NotCallable:
        fork_made = 3

    with pytest.raises(TypeError, match="fork_made is not callable"):
        af.instrument(NotCallable())
    log = Log()
    with af.instrument(log), pytest.raises(RuntimeError, match="already installed"):
        af.instrument(log)
    assert _instruments.HOOKS == {}


def test_the_tracer_is_one_instrument_among_others():
    log = Log()
    with af.instrument(log), af.trace() as trace:
        assert len(_instruments.installed()) == 2
        af.wait(af.fork(abs, 1), timeout=T)
    assert [r.name for r in trace.forks] == ["abs"]
    assert "made" in [h for h, _, _ in log.calls]
    assert _instruments.installed() == []


def test_fork_started_runs_in_the_fork_own_context():
    """What an instrument sets in fork_started is seen by the fork's code, and only there."""
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="none")

    class Tagger(af.Instrument):
        def fork_started(self, fut: af.Future[Any], where: str) -> None:
            tag.set(f"set for {fut.name}")

    async def coroutine_fork() -> str:
        return tag.get()

    def sync_fork() -> str:
        return tag.get()

    with af.instrument(Tagger()):
        seen = af.wait([af.fork(coroutine_fork), af.fork(sync_fork)], timeout=T)
    assert seen == [
        "set for test_fork_started_runs_in_the_fork_own_context.<locals>.coroutine_fork",
        "set for test_fork_started_runs_in_the_fork_own_context.<locals>.sync_fork",
    ]
    assert tag.get() == "none"  # the forking code's context is untouched


def test_a_fork_call_that_raises_after_fork_made_reports_fork_finished():
    """fork() that fails after fork_made (its loop has closed) pairs it with fork_finished."""
    contexts: list[contextvars.Context] = []

    def keep_context() -> None:
        contexts.append(contextvars.copy_context())  # a sync fork's context, host: af.run's loop

    af.run(lambda: af.wait(af.fork(keep_context), timeout=T))
    log = Log()
    with af.instrument(log), pytest.raises(RuntimeError, match="closed"):
        contexts[0].run(af.fork.options(detached=True), abs, -1)  # its host loop is closed
    assert [hook for hook, _, _ in log.calls] == ["made", "finished"]
    assert isinstance(log.calls[1][2], RuntimeError)


def _run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_interrupt_raised_in_fork_finished_still_settles_the_fork_and_reaches_af_run():
    """A Ctrl-C landing in a hook on the loop: the fork is settled and joined all the same,
    and af.run raises KeyboardInterrupt (it used to hang in its cleanup)."""
    result = _run_script(
        """
        import asyncfork as af

        class Interrupting(af.Instrument):
            def fork_finished(self, fut, exc):
                if fut.name == "victim":
                    raise KeyboardInterrupt

        async def victim():
            return 1

        async def main():
            return await af.fork.options(name="victim")(victim)

        af.instrument(Interrupting())
        try:
            af.run(main)
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted"


def test_system_exit_raised_in_fork_finished_wakes_the_waiter_and_lets_the_process_exit():
    result = _run_script(
        """
        import asyncfork as af

        class Exiting(af.Instrument):
            def fork_finished(self, fut, exc):
                raise SystemExit(0)

        af.instrument(Exiting())
        fut = af.fork(abs, -2)
        print(fut.result(timeout=10))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_an_interrupt_raised_in_a_sync_fork_hook_fails_that_fork_and_kills_no_thread():
    result = _run_script(
        """
        import asyncfork as af

        class Interrupting(af.Instrument):
            def fork_started(self, fut, where):
                raise KeyboardInterrupt

        with af.instrument(Interrupting()):
            fut = af.fork(abs, -2)
            try:
                fut.result(timeout=10)
            except KeyboardInterrupt:
                print("fork failed with KeyboardInterrupt")
        print(af.wait(af.fork(abs, -3), timeout=10))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "Exception in thread" not in result.stderr
    assert result.stdout.split() == ["fork", "failed", "with", "KeyboardInterrupt", "3"]


def test_an_interrupt_raised_in_a_coroutine_fork_start_leaves_no_unawaited_coroutine():
    result = _run_script(
        """
        import gc
        import asyncfork as af

        class Interrupting(af.Instrument):
            def fork_started(self, fut, where):
                raise KeyboardInterrupt

        async def child():
            return 1

        with af.instrument(Interrupting()):
            fut = af.fork(child)
            try:
                fut.result(timeout=10)
            except KeyboardInterrupt:
                print("fork failed with KeyboardInterrupt")
        gc.collect()
        """
    )
    assert result.returncode == 0, result.stderr
    assert "never awaited" not in result.stderr
    assert result.stdout.strip() == "fork failed with KeyboardInterrupt"


def test_forks_and_waits_made_inside_a_hook_reach_no_instrument():
    made: list[str] = []

    class ForksInHook(af.Instrument):
        def fork_made(self, fut: af.Future[Any]) -> None:
            made.append(fut.name)
            if fut.name == "outer":
                assert af.wait(af.fork.options(name="inner")(abs, -1), timeout=T) == 1

    instrument = ForksInHook()
    with af.instrument(instrument):
        assert af.wait(af.fork.options(name="outer")(abs, -2), timeout=T) == 2
        assert instrument in _instruments.installed()  # not removed: nothing failed
    assert made == ["outer"]


def test_fork_made_and_fork_finished_stay_paired_when_a_later_fork_made_raises():
    class Stop(BaseException):
        pass

    class Stopping(af.Instrument):
        def fork_made(self, fut: af.Future[Any]) -> None:
            raise Stop

    log = Log()
    with af.instrument(log), af.instrument(Stopping()), pytest.raises(Stop):
        af.fork(abs, -1)
    assert [hook for hook, _, _ in log.calls] == ["made", "finished"]
    assert isinstance(log.calls[1][2], Stop)


def test_an_instrument_class_is_refused_with_what_to_write():
    with pytest.raises(TypeError, match=r"not the class Log: write af.instrument\(Log\(\)\)"):
        af.instrument(Log)
