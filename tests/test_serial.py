"""Serial mode: every fork runs inline, to completion, inside ``fork()``.

Async tests run on asyncio's loop and on uvloop (tests/conftest.py). Serial mode runs a
coroutine fork by stepping the loop from inside ``fork()``, which only asyncio's own loop
allows: on uvloop a serial coroutine fork raises a clear error, and the tests that need
one check that error there instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import Any

import pytest
from helpers import T, forever, within

import asyncfork as af
from asyncfork import _serial

pytest_plugins = ["pytester"]


def steppable() -> bool:
    """Whether the running loop is one serial mode can step (asyncio's own)."""
    return isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)


def uvloop_refuses(func: Any, *args: Any) -> None:
    """On uvloop: a serial coroutine fork raises the error that says what to do."""
    with pytest.raises(RuntimeError, match=r"serial mode cannot run .* uvloop") as info:
        af.fork(func, *args)
    assert "asyncio" in str(info.value)
    assert "af.serial(False)" in str(info.value)


# -- the switch -----------------------------------------------------------------------------


def test_serial_is_off_by_default_on_in_its_block_and_context_scoped() -> None:
    def where() -> str:
        return threading.current_thread().name

    assert af.fork(where).result(timeout=T) != "MainThread"
    seen_in_thread: list[str] = []
    with af.serial():
        fut = af.fork(where)
        assert fut.done()
        assert fut.result() == "MainThread"
        # A thread started in the block has a context of its own: not serial there.
        thread = threading.Thread(target=lambda: seen_in_thread.append(af.fork(where).result(T)))
        thread.start()
        thread.join(T)
        with af.serial(False):
            assert af.fork(where).result(timeout=T) != "MainThread"
        # The switch follows the context into forks: a fork's children run serially too.
        nested = af.fork(lambda: af.fork(where).done())
        assert nested.result() is True
    assert seen_in_thread
    assert seen_in_thread[0] != "MainThread"
    assert af.fork(where).result(timeout=T) != "MainThread"
    assert _serial.ON == []  # fork() reads the context variable only while this is not empty


async def test_async_with_switches_it_on_too() -> None:
    ran: list[str] = []
    async with af.serial():
        fut = af.fork(ran.append, "child")
        assert ran == ["child"]
        assert fut.done()
    assert _serial.ON == []


def test_serial_takes_a_bool() -> None:
    with pytest.raises(TypeError, match=r"af.serial\(enabled\) takes True or False, not str"):
        af.serial("yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "serial"), [("1", True), ("0", False)])
def test_environment_variable_switches_it_on_for_the_process(value: str, serial: bool) -> None:
    script = textwrap.dedent(
        """
        import threading
        import asyncfork as af
        fut = af.fork(lambda: threading.current_thread().name)
        print(fut.result(timeout=5))
        with af.serial(False):
            print(af.fork(lambda: threading.current_thread().name).result(timeout=5))
        """
    )
    env = {"ASYNCFORK_SERIAL": value, "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split()
    assert (first == "MainThread") is serial
    assert second != "MainThread"


def test_a_bad_environment_variable_is_an_error_naming_it() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import asyncfork"],
        env={"ASYNCFORK_SERIAL": "maybe", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "ASYNCFORK_SERIAL must be 1 or 0" in out.stderr


# -- sync forks -----------------------------------------------------------------------------


class _Mode(threading.local):
    value = "default"


MODE = _Mode()


class ModeCarrier(af.Carrier):
    def capture(self) -> str:
        return MODE.value

    def enter(self, state: str) -> str:
        previous, MODE.value = MODE.value, state
        return previous

    def exit(self, token: str) -> None:
        MODE.value = token


async def test_sync_fork_runs_inline_in_the_calling_thread_in_its_own_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="parent")
    seen: dict[str, Any] = {}
    order: list[str] = []

    def child() -> int:
        order.append("child")
        seen["thread"] = threading.get_ident()
        seen["current"] = af.current()
        seen["mode"] = MODE.value
        MODE.value = "changed by the child"
        var.set("child")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            seen["loop"] = None  # none, as in a worker thread
        return 7

    with af.carry(ModeCarrier()):
        MODE.value = "forked with"
        with af.serial():
            fut = af.fork(child)
            order.append("after fork()")
        try:
            assert fut.done()
            assert fut.result() == 7
            assert order == ["child", "after fork()"]
            assert seen == {
                "thread": threading.get_ident(),
                "current": fut,
                "mode": "forked with",
                "loop": None,
            }
            assert MODE.value == "forked with"  # the carrier gave this thread its state back
            assert var.get() == "parent"
        finally:
            MODE.value = "default"


def test_sync_fork_from_a_plain_thread_runs_inline() -> None:
    def child(x: int) -> tuple[int, str]:
        return x + 1, threading.current_thread().name

    with af.serial():
        fut = af.fork(child, 1)
        assert fut.done()
        assert fut.result() == (2, "MainThread")


# -- coroutine forks ------------------------------------------------------------------------


async def test_coroutine_fork_runs_to_completion_as_its_own_task() -> None:
    seen: dict[str, Any] = {}
    order: list[str] = []

    async def child() -> str:
        seen["task"] = asyncio.current_task()
        seen["current"] = af.current()
        order.append("child started")
        await asyncio.sleep(0.01)  # a timer: the loop runs from inside fork()
        order.append("child ended")
        return "value"

    parent_task = asyncio.current_task()
    with af.serial():
        if not steppable():
            uvloop_refuses(child)
            return
        fut = af.fork(child)
        order.append("after fork()")
    assert fut.done()
    assert await fut == "value"
    assert order == ["child started", "child ended", "after fork()"]
    assert seen["current"] is fut
    assert seen["task"] is not parent_task
    assert seen["task"] is not None
    assert asyncio.current_task() is parent_task


async def test_nested_forks_are_joined_and_keep_their_parents() -> None:
    async def leaf(x: int) -> int:
        await asyncio.sleep(0)
        return x

    def sync_middle(x: int) -> int:
        inner = af.fork(leaf, x)  # a coroutine fork from a sync fork: the loop is stepped
        assert inner.done()
        assert inner.parent is af.current()
        return inner.result() * 10

    async def top() -> list[int]:
        a = af.fork(leaf, 1)
        b = af.fork(sync_middle, 2)
        assert a.done()
        assert b.done()
        assert a.parent is af.current()
        assert b.parent is af.current()
        return [await a, await b]

    with af.serial():
        if not steppable():
            uvloop_refuses(top)
            return
        fut = af.fork(top)
    assert fut.done()
    assert await fut == [1, 20]


def test_coroutine_fork_from_a_plain_thread_runs_in_this_thread() -> None:
    async def child() -> str:
        await asyncio.sleep(0.001)
        assert af.current() is not None
        return threading.current_thread().name

    with af.serial():
        fut = af.fork(child)
        assert fut.done()
        assert fut.result() == "MainThread"
        with af.group() as g:  # a sync group from a plain thread: its children are waited for
            child_fut = g.fork(child)
            assert child_fut.done()


def test_af_run_makes_an_asyncio_loop_in_serial_mode() -> None:
    async def main() -> tuple[bool, bool]:
        fut = af.fork(asyncio.sleep, 0.001, "slept")
        return fut.done(), isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)

    with af.serial():
        assert af.run(main) == (True, True)


# -- structure, errors, cancellation, timeouts ----------------------------------------------


async def test_unretrieved_child_failure_fails_the_parent_with_fork_site_notes() -> None:
    async def child() -> None:
        raise ValueError("child")

    def sync_parent() -> str:
        af.fork(child)
        return "parent"

    with af.serial():
        if not steppable():
            uvloop_refuses(child)
            return
        fut = af.fork(sync_parent)
    assert fut.done()
    with pytest.raises(ExceptionGroup) as info:
        await fut
    (error,) = info.value.exceptions
    assert isinstance(error, ValueError)
    assert any("in fork 'test_unretrieved" in note and "child" in note for note in error.__notes__)


async def test_group_fails_fast_and_refuses_new_forks() -> None:
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise KeyError("first")

    def later() -> None:
        ran.append("later")

    async def body() -> None:
        async with af.group() as g:
            g.fork(failing)
            g.fork(later)  # refused: the group failed already
            ran.append("body went on")

    with af.serial(), pytest.raises(ExceptionGroup) as info:
        await body()
    assert ran == ["failing"]
    assert [type(e) for e in info.value.exceptions] == [KeyError]


async def test_fork_into_a_cancelled_group_never_starts() -> None:
    ran: list[str] = []
    with af.serial():
        async with af.group() as g:
            g.fork(ran.append, "before")
            g.cancel()
            g.fork(ran.append, "after")
    assert ran == ["before"]


async def test_timeouts_apply() -> None:
    def slow() -> str:
        time.sleep(0.05)
        return "late"

    with af.serial():
        sync_fut = af.fork.options(timeout=0.01)(slow)
        assert sync_fut.done()
        if steppable():
            coro_fut = af.fork.options(timeout=0.05)(forever)
            assert coro_fut.done()
            with pytest.raises(TimeoutError):
                await coro_fut
        else:
            uvloop_refuses(forever)
    with pytest.raises(TimeoutError):
        await sync_fut


def program() -> Any:
    """A small program of forks and waits, for comparing traces."""

    async def leaf(x: int) -> int:
        await asyncio.sleep(0)
        return x

    def sync_leaf(x: int) -> int:
        return x

    async def main() -> int:
        a = af.fork(leaf, 1)
        b = af.fork(sync_leaf, 2)
        async with af.group() as g:
            c = g.fork(leaf, 3)
        return await a + await b + await c

    return main


def graph(trace: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The forks (name, parent's name) and the waits (waiter's name, awaited's name)."""
    names = {record.id: record.name.rpartition(".")[2] for record in trace.forks}
    forks = sorted((names[r.id], names.get(r.parent, "-")) for r in trace.forks)
    waits = sorted((names.get(w.waiter, "-"), names[w.awaited]) for w in trace.waits)
    return forks, waits


def test_trace_shows_the_same_fork_and_wait_graph() -> None:
    with af.trace() as parallel:
        assert af.run(program()) == 6
    with af.serial(), af.trace() as serial:
        assert af.run(program()) == 6
    forks, waits = graph(serial)
    assert (forks, waits) == graph(parallel)
    assert len(forks) == 4
    assert len(waits) >= 3


# -- deadlocks ------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "carried-and-traced"])
async def test_fork_waiting_for_a_later_sibling_gets_deadlock_error_not_a_hang(
    wrapped: bool,
) -> None:
    if wrapped:  # a carrier and a trace wrap the fork's steps: the message looks through them
        with af.carry(ModeCarrier()), af.trace():
            await waiting_for_a_later_sibling()
    else:
        await waiting_for_a_later_sibling()


async def waiting_for_a_later_sibling() -> None:
    event = asyncio.Event()

    async def waiter() -> None:
        await event.wait()

    async def setter() -> None:
        event.set()

    started = time.monotonic()
    with af.serial():
        if not steppable():
            uvloop_refuses(waiter)
            return
        first = af.fork(waiter)
        assert first.done()
        second = af.fork(setter)
    with pytest.raises(af.DeadlockError) as info:
        await first
    await second
    message = str(info.value)
    assert message.startswith("serial mode: fork ")
    assert "waiter()" in message
    assert "Event.wait()" in message
    assert "Fork the side that sets it first" in message
    assert time.monotonic() - started < T


async def test_sync_fork_blocking_on_a_future_that_cannot_finish_gets_deadlock_error() -> None:
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()

    blocked = af.fork(stuck)  # not serial: pending

    def blocking() -> None:
        blocked.result()

    try:
        with af.serial():
            fut = af.fork(blocking)
        assert fut.done()
        if steppable():
            with pytest.raises(af.DeadlockError, match=r"serial mode: .* blocks, waiting"):
                await fut
        else:
            with pytest.raises(RuntimeError, match="cannot run a blocking wait in a sync fork"):
                await fut
    finally:
        blocked.cancel()
        await within(asyncio.wait([blocked]))


async def test_blocking_wait_with_a_timeout_in_a_sync_fork_times_out() -> None:
    if not steppable():
        return  # the uvloop case is test_sync_fork_blocking_on_a_future_that_cannot_finish
    blocked = af.fork(forever)

    def blocking() -> None:
        af.wait(blocked, timeout=0.05)

    try:
        with af.serial():
            fut = af.fork(blocking)
        with pytest.raises(TimeoutError):
            await fut
    finally:
        blocked.cancel()
        await within(asyncio.wait([blocked]))


async def test_child_forking_into_the_slot_it_holds_gets_deadlock_error() -> None:
    def child(g: af.Group) -> None:
        g.fork(lambda: None)  # the group's only slot is this child's until it ends

    with af.serial(), pytest.raises(ExceptionGroup) as info:
        async with af.group(limit=1) as g:
            g.fork(child, g)
    (error,) = info.value.exceptions
    if steppable():
        assert isinstance(error, af.DeadlockError)
        assert "waits for a slot of" in str(error)
    else:  # the sync grandchild could only start once the loop runs: uvloop cannot be stepped
        assert "serial mode cannot run" in str(error)


# -- the pytest marker and option -----------------------------------------------------------


TEST_FILE = """
import threading
import pytest
import asyncfork as af

def where():
    return threading.current_thread().name

@pytest.mark.asyncfork_serial
def test_marked():
    assert af.fork(where).result(timeout=5) == "MainThread"

@pytest.mark.asyncfork_serial(False)
def test_marked_off():
    assert af.fork(where).result(timeout=5) != "MainThread"

def test_unmarked():
    assert af.fork(where).result(timeout=5) != "MainThread"
"""


@pytest.mark.parametrize("option", [False, True])
def test_marker_and_option(pytester: pytest.Pytester, option: bool) -> None:
    pytester.makepyfile(test_it=TEST_FILE)
    args = ["--asyncfork-serial"] if option else []
    if not any(ep.name == "asyncfork" for ep in entry_points(group="pytest11")):
        args += ["-p", "asyncfork.pytest_plugin"]  # a checkout that is not installed
    result = pytester.runpytest_subprocess(*args)
    if option:
        result.assert_outcomes(passed=2, failed=1)
        result.stdout.fnmatch_lines(["*FAILED*test_unmarked*"])
    else:
        result.assert_outcomes(passed=3)


def _plugin_args() -> list[str]:
    if any(ep.name == "asyncfork" for ep in entry_points(group="pytest11")):
        return []
    return ["-p", "asyncfork.pytest_plugin"]  # a checkout that is not installed


def test_a_malformed_marker_fails_its_test_not_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.asyncfork_serial("yes")
        def test_bad():
            pass

        @pytest.mark.asyncfork_serial(True, False)
        def test_two():
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*_plugin_args(), timeout=60)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.asyncfork_serial('yes'): it takes one argument, True or False*"]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


# -- Ctrl-C, sys.exit() ---------------------------------------------------------------------


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )


INTERRUPTING = """
import asyncio, signal, sys
import asyncfork as af

def sync_fork():
    {body}
    print("FORK CONTINUED", flush=True)

async def coroutine_fork():
    {body}
    await asyncio.sleep(0)
    print("FORK CONTINUED", flush=True)

async def main():
    af.fork({fork})
    print("CALLER CONTINUED", flush=True)

with af.serial():
    if {in_run}:
        af.run(main)
    else:
        af.fork({fork})
        print("CALLER CONTINUED", flush=True)
"""


@pytest.mark.parametrize("in_run", [False, True], ids=["script", "af.run"])
@pytest.mark.parametrize("fork", ["sync_fork", "coroutine_fork"])
@pytest.mark.parametrize(
    ("body", "returncode"),
    [("signal.raise_signal(signal.SIGINT)", -2), ("sys.exit(3)", 3)],
    ids=["ctrl-c", "sys.exit"],
)
def test_ctrl_c_and_sys_exit_in_a_serial_fork_go_on_in_the_forking_code(
    body: str, returncode: int, fork: str, in_run: bool
) -> None:
    out = run_script(INTERRUPTING.format(body=body, fork=fork, in_run=in_run))
    assert out.returncode == returncode, out.stderr
    assert "CONTINUED" not in out.stdout
    assert "never retrieved" not in out.stderr


def test_ctrl_c_in_a_serial_test_stops_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_it="""
        import asyncio, signal, sys
        import pytest
        import asyncfork as af

        @pytest.mark.asyncfork_serial
        def test_sync():
            def interrupted():
                signal.raise_signal(signal.SIGINT)
            af.fork(interrupted)
            print("BODY CONTINUED", file=sys.stderr)

        @pytest.mark.asyncfork_serial
        async def test_async():
            async def interrupted():
                signal.raise_signal(signal.SIGINT)  # asyncio cancels the test's task
                await asyncio.sleep(60)
            await af.fork(interrupted)
            print("BODY CONTINUED", file=sys.stderr)

        def test_later():
            print("NEXT TEST RAN", file=sys.stderr)
        """
    )
    for name in ("test_sync", "test_async"):
        started = time.monotonic()
        result = pytester.runpytest_subprocess(
            *_plugin_args(), "-p", "asyncio", "-p", "no:randomly", "-s", "-k",
            f"{name} or test_later", "-o", "asyncio_mode=auto", timeout=60,
        )  # fmt: skip
        assert result.ret == pytest.ExitCode.INTERRUPTED, name
        assert "KeyboardInterrupt" in result.stdout.str()
        assert "BODY CONTINUED" not in result.stderr.str()
        assert "NEXT TEST RAN" not in result.stderr.str()
        assert time.monotonic() - started < 30, name


# -- the forking task cancelled ----------------------------------------------------------------


async def test_a_cancel_of_the_forking_task_reaches_the_inline_fork() -> None:
    forks: list[af.Future[None]] = []

    async def parent() -> None:
        forks.append(af.fork(forever))
        await forks[0]

    async def fork_parent() -> None:
        await af.fork(parent)

    started = time.monotonic()
    with af.serial():
        if not steppable():
            uvloop_refuses(forever)
            return
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await af.fork(forever)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(fork_parent(), 0.01)  # nested: the inner fork too
    assert time.monotonic() - started < T
    assert forks[0].cancelled()


def test_ctrl_c_under_asyncio_run_reaches_the_inline_fork() -> None:
    out = run_script(
        """
        import asyncio, signal
        import asyncfork as af

        async def slow():
            signal.raise_signal(signal.SIGINT)  # asyncio.run cancels its main task
            await asyncio.sleep(60)

        async def main():
            await af.fork(slow)

        with af.serial():
            asyncio.run(main())
        """
    )
    assert out.returncode == -2, out.stderr
    assert "KeyboardInterrupt" in out.stderr


# -- waits that other threads end -------------------------------------------------------------


async def test_a_fork_awaiting_a_pool_of_its_own_is_no_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not steppable():
        return  # a coroutine fork: uvloop_refuses, tested above
    from asyncfork import _reenter

    # The pool's call waits until the loop has looked for progress and found it idle.
    looked = threading.Event()
    original = _reenter._no_progress

    def no_progress(loop: Any) -> bool:
        looked.set()
        return original(loop)

    monkeypatch.setattr(_reenter, "_no_progress", no_progress)

    async def use_pool(pool: ThreadPoolExecutor) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, lambda: "done" if looked.wait(T) else "late")

    with ThreadPoolExecutor(1) as pool, af.serial():
        fut = af.fork(use_pool, pool)
        assert await fut == "done"


async def test_a_deadlock_is_raised_in_the_fork_leaving_what_it_awaited_alone() -> None:
    if not steppable():
        return  # a coroutine fork: uvloop_refuses, tested above
    awaited = asyncio.get_running_loop().create_future()

    async def waiting() -> None:
        await awaited

    with af.serial():
        fut = af.fork(waiting)
    with pytest.raises(af.DeadlockError):
        await fut
    assert not awaited.done()  # whoever was to complete it still can
    awaited.set_result(None)


# -- what does not run inline -------------------------------------------------------------------


def test_a_daemon_fork_starts_as_usual() -> None:
    beats: list[None] = []

    async def heartbeat() -> None:
        while len(beats) < 1000:  # bounded, so that running it inline ends too
            beats.append(None)
            await asyncio.sleep(0)

    async def main() -> bool:
        fut = af.fork.options(detached=True, daemon=True)(heartbeat)
        return fut.done()

    with af.serial():
        assert af.run(main) is False
    assert len(beats) < 1000  # cancelled by af.run's end, not run to completion


def test_recursion_too_deep_for_inline_forks_fails_them_cleanly() -> None:
    out = run_script(
        """
        import asyncfork as af

        def sync_depth(n):
            return 0 if n == 0 else 1 + af.fork(sync_depth, n - 1).result()

        async def async_depth(n):
            return 0 if n == 0 else 1 + await af.fork(async_depth, n - 1)

        with af.serial():
            deep = (lambda: af.fork(sync_depth, 400).result(), lambda: af.run(async_depth, 400))
            for call in deep:
                try:
                    call()
                except RecursionError as exc:
                    print(type(exc).__name__, "nests too deep" in str(exc), flush=True)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["RecursionError True"] * 2
    assert out.stderr == ""  # no "never awaited", no wait for sync forks at exit


# -- sync waits on a loop's thread -----------------------------------------------------------


async def test_for_over_as_completed_of_finished_futures_on_a_loop_thread() -> None:
    futs = [af.fork(asyncio.sleep, 0, i) for i in range(3)]
    await within(af.wait_async(futs))
    # Every Future done: the sync iteration is allowed here, and must not wait for the loop.
    assert sorted(f.result() for f in af.as_completed(futs, timeout=T)) == [0, 1, 2]

    def in_a_serial_sync_fork() -> list[int]:
        return sorted(f.result() for f in af.as_completed(futs, timeout=T))

    with af.serial():
        fut = af.fork(in_a_serial_sync_fork)
    assert await fut == [0, 1, 2]


async def test_a_serial_sync_fork_cancelling_itself_ends_cancelled() -> None:
    def cancels_itself() -> str:
        assert af.current().cancel()  # type: ignore[union-attr]
        return "returned"

    with af.serial():
        fut = af.fork(cancels_itself)
    if not steppable():
        return  # a user's uvloop: the cancel it posted runs after the fork has settled
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert fut.cancelled()
    with af.serial():
        in_script = af.fork(cancels_itself)  # from a thread with no loop: a private one
    assert in_script.cancelled()
