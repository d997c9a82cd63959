"""trio, with plain ``trio.run`` and through anyio's trio backend.

Sync forks run in asyncfork's workers (hosted by the background loop); ``await fut``,
``await af.wait(...)`` and ``await af.wait_async(...)`` park the trio task without
blocking trio's loop; coroutine forks are refused at ``fork()`` with a way out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import WORKER_NAME, T, gated

import asyncfork as af

ROOT = Path(__file__).resolve().parent.parent


def _background_loop() -> asyncio.AbstractEventLoop:
    async def get_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    return af.wait(af.fork(get_loop), timeout=T)


def _threaded_handshake(started: threading.Event, go: threading.Event) -> str:
    """A sync fork that needs the trio side to act while it runs."""
    started.set()
    assert go.wait(T), "trio's loop was blocked: the other trio task never ran"
    return threading.current_thread().name


async def _release_when_started(started: threading.Event, go: threading.Event) -> None:
    # trio.to_thread keeps trio's loop free while this thread waits for the fork.
    assert await trio.to_thread.run_sync(started.wait, T)
    go.set()


# -- plain trio.run ------------------------------------------------------------------------


def test_a_sync_fork_from_trio_runs_in_a_worker_of_the_background_loop() -> None:
    """af.fork(sync_fn) from trio: an asyncfork worker thread, hosted by the background loop."""
    background = _background_loop()

    async def main() -> tuple[str, asyncio.AbstractEventLoop]:
        fut = af.fork(threading.current_thread)
        thread = await fut
        return thread.name, fut.get_loop()

    name, loop = trio.run(main)
    assert WORKER_NAME.fullmatch(name)
    assert loop is background


def test_await_fut_in_trio_keeps_trios_loop_running() -> None:
    """While a trio task awaits a fork, other trio tasks run (the fork waits for one)."""
    started, go = threading.Event(), threading.Event()

    async def main() -> str:
        fut = af.fork(_threaded_handshake, started, go)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_when_started, started, go)
            with trio.fail_after(T):
                return await fut
        raise AssertionError("unreachable")  # pragma: no cover

    assert WORKER_NAME.fullmatch(trio.run(main))


@pytest.mark.parametrize("spelling", ["wait", "wait_async"])
def test_waiting_for_several_in_trio_keeps_trios_loop_running(spelling: str) -> None:
    """`await af.wait([...])` and `await af.wait_async([...])` work in trio, without blocking."""
    started, go = threading.Event(), threading.Event()

    async def main() -> list[Any]:
        futs = [af.fork(_threaded_handshake, started, go), af.fork(len, "abc")]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_when_started, started, go)
            with trio.fail_after(T):
                if spelling == "wait":
                    return await af.wait(futs)  # type: ignore[misc,no-any-return]  # run-time form
                return await af.wait_async(futs)
        raise AssertionError("unreachable")  # pragma: no cover

    name, length = trio.run(main)
    assert WORKER_NAME.fullmatch(name)
    assert length == 3


def test_a_failure_reaches_the_trio_task_as_it_is() -> None:
    """The fork's own exception object is raised in trio, fail-fast for several."""
    error = KeyError("boom")
    gate = threading.Event()

    def boom() -> None:
        raise error

    async def main() -> None:
        slow = af.fork(gated(gate))
        try:
            with trio.fail_after(T):
                await af.wait_async([slow, af.fork(boom)])
        finally:
            gate.set()
            await slow  # nothing is left running when the test ends

    with pytest.raises(KeyError) as info:
        trio.run(main)
    assert info.value is error


def test_cancelling_the_trio_task_leaves_the_fork_running() -> None:
    """A cancelled trio waiter leaves at once and takes its waker back; the fork goes on."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 11))

    async def waiter(scope: trio.CancelScope, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            task_status.started()
            await fut

    async def main() -> bool:
        scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            await nursery.start(waiter, scope)
            await trio.testing.wait_all_tasks_blocked()  # the waiter sleeps in `await fut`
            assert fut._wakers  # registered...
            scope.cancel()
        return scope.cancelled_caught

    try:
        assert trio.run(main)
        assert not fut.done()
        assert not fut._wakers  # ...and taken back
    finally:
        gate.set()
    assert af.wait(fut, timeout=T) == 11


def test_a_timeout_in_trio_only_observes() -> None:
    """wait(timeout=...) in trio raises TimeoutError; the fork goes on."""
    gate = threading.Event()
    fut = af.fork(gated(gate, 1))

    async def main() -> None:
        await af.wait_async(fut, timeout=0.01)

    try:
        with pytest.raises(TimeoutError, match=r"timed out after 0\.01s"):
            trio.run(main)
        assert not fut.done()
        assert not fut._wakers
    finally:
        gate.set()
    assert af.wait(fut, timeout=T) == 1


def test_a_coroutine_fork_from_trio_is_refused_at_fork() -> None:
    """A coroutine function forked from trio raises at fork(), saying how to bridge."""
    called = []

    async def fetch() -> None:
        called.append(1)
        await trio.lowlevel.checkpoint()

    async def main() -> None:
        af.fork(fetch)

    with pytest.raises(RuntimeError) as info:
        trio.run(main)
    message = str(info.value)
    assert message.startswith("cannot fork coroutine function ")
    assert "coroutine forks as asyncio tasks" in message
    assert "fork a sync function" in message
    assert "af.fork(lambda: coroutine_fn(...))" in message
    assert called == []


def test_an_asyncio_coroutine_runs_from_trio_through_a_sync_callable() -> None:
    """The bridge the refusal names: a sync callable that makes an asyncio coroutine."""

    async def on_asyncio(x: int) -> str:
        await asyncio.sleep(0)
        return f"{x} on {type(asyncio.get_running_loop()).__module__}"

    async def main() -> str:
        with trio.fail_after(T):
            return await af.fork(lambda: on_asyncio(4))

    assert trio.run(main).startswith("4 on ")


def test_forks_from_trio_in_a_sync_fork_that_runs_trio() -> None:
    """trio.run inside a sync fork: its forks are that fork's children, awaited in trio."""

    def runs_trio() -> int:
        async def main() -> int:
            return await af.fork(len, "four")

        return trio.run(main)

    assert af.wait(af.fork(runs_trio), timeout=T) == 4


@pytest.mark.parametrize("call", ["af.wait", "fut.result", "fut.wait"])
def test_sync_code_on_trios_thread_gets_deadlock_error_not_a_frozen_trio(call: str) -> None:
    """A sync helper on trio's thread that blocks on an unfinished fork would freeze trio
    (for good if the fork needs trio): it raises, as on an asyncio loop's thread."""
    release = threading.Event()

    def helper(fut: af.Future[None]) -> object:
        if call == "af.wait":
            return af.wait(fut)
        if call == "fut.result":
            return fut.result()
        return fut.wait()

    async def main() -> None:
        fut = af.fork(release.wait, T)
        try:
            with pytest.raises(af.DeadlockError, match=r"await af\.wait_async\(futs\)"):
                helper(fut)
        finally:
            release.set()
        await fut

    trio.run(main)


def test_done_futures_in_sync_code_on_trios_thread_give_their_values() -> None:
    def helper(fut: af.Future[int]) -> tuple[int, int]:  # sync code, on trio's thread
        return af.wait(fut), fut.result()

    async def main() -> tuple[int, int]:
        fut = af.fork(len, "ab")
        await fut
        return helper(fut)

    assert trio.run(main) == (2, 2)


@pytest.mark.parametrize("construct", ["group", "as_completed"])
def test_asyncio_only_constructs_in_trio_say_what_to_write(construct: str) -> None:
    async def enter_a_group() -> None:
        async with af.group():
            pass

    async def iterate(fut: af.Future[int]) -> None:
        async for _ in af.as_completed([fut]):
            pass

    async def main() -> None:
        fut = af.fork(len, "ab")
        use = enter_a_group() if construct == "group" else iterate(fut)
        with pytest.raises(RuntimeError, match=r"none runs under trio.*af\.wait_async\(futs\)"):
            await use
        await fut

    trio.run(main)


def test_trio_is_not_imported_by_asyncfork() -> None:
    """asyncfork imports neither trio nor anyio (nor sniffio) on its own."""
    code = (
        "import sys, asyncfork as af\n"
        "af.wait(af.fork(len, 'ab'))\n"
        "print(sorted(m for m in ('trio', 'anyio', 'sniffio') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


# -- anyio on its trio backend ---------------------------------------------------------------


def test_await_in_anyios_trio_backend() -> None:
    """anyio.run(backend="trio"): sync forks, await and wait_async, a refused coroutine fork."""

    async def main() -> tuple[int, list[int]]:
        with anyio.fail_after(T):
            one = await af.fork(len, "abc")
            several = await af.wait_async([af.fork(len, "a"), af.fork(len, "ab")])
        with pytest.raises(RuntimeError, match="from trio"):
            af.fork(anyio.sleep, 0)
        return one, several

    assert anyio.run(main, backend="trio") == (3, [1, 2])


# The same through anyio's pytest plugin. pytest-asyncio's auto mode (this suite's
# setting) claims every async test, so these run in a pytest of their own, with the
# plugin left to anyio.
ANYIO_PLUGIN_CASES = """
import threading

import anyio
import pytest

import asyncfork as af


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.mark.anyio
async def test_sync_fork_awaited_without_blocking_trio():
    started, go = threading.Event(), threading.Event()

    def work():
        started.set()
        assert go.wait(5)
        return threading.current_thread().name

    async def release():
        assert await anyio.to_thread.run_sync(started.wait, 5)
        go.set()

    fut = af.fork(work)
    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        with anyio.fail_after(5):
            name = await fut
    assert name.startswith("asyncfork-worker-")


@pytest.mark.anyio
async def test_wait_spellings_and_cancellation():
    gate = threading.Event()
    slow = af.fork(gate.wait, 5)
    with anyio.move_on_after(0.01):
        await af.wait_async([slow])
    assert not slow.done() and not slow._wakers
    gate.set()
    with anyio.fail_after(5):
        assert await af.wait([slow, af.fork(len, "ab")]) == [True, 2]


@pytest.mark.anyio
async def test_coroutine_fork_refused():
    async def fetch():
        await anyio.sleep(0)

    with pytest.raises(RuntimeError, match="cannot fork coroutine function"):
        af.fork(fetch)
"""


def test_on_anyios_pytest_plugin_with_the_trio_backend(tmp_path: Path) -> None:
    """@pytest.mark.anyio with anyio_backend = "trio": the cases above pass there."""
    (tmp_path / "test_anyio_trio.py").write_text(textwrap.dedent(ANYIO_PLUGIN_CASES))
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:asyncio",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(tmp_path / "test_anyio_trio.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout
