"""Every wait is in the trace, whatever the timing: waits on finished Futures and second
waits are recorded (as taking no time), and a helping wait spans the run it helped."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import T

import asyncfork as af


class _OpenOnWait(af.Instrument):
    """Sets ``gate`` as a wait begins: the awaited child can finish only once it is waited on."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def wait_began(self, fut: af.Future[Any]) -> None:
        self.gate.set()


def _graph(trace: af.Trace) -> Counter[tuple[str | None, str]]:
    """How many wait records per (waiter, awaited) pair, by fork name."""
    names = {fork.id: fork.name.rpartition(".")[2] for fork in trace.forks}
    return Counter(
        (None if wait.waiter is None else names[wait.waiter], names[wait.awaited])
        for wait in trace.waits
    )


def _finished_in(fut: af.Future[Any]) -> threading.Event:
    finished = threading.Event()
    fut.add_done_callback(lambda _fut: finished.set())
    return finished


SYNC_SPELLINGS: dict[str, Callable[[af.Future[int]], object]] = {
    "af.wait(fut)": af.wait,
    "af.wait([fut])": lambda fut: af.wait([fut]),
    "af.wait(many)": lambda fut: af.wait([fut, fut], return_exceptions=True),
    "fut.wait()": lambda fut: fut.wait(),
    "fut.result()": lambda fut: fut.result(timeout=T),
    "fut.exception()": lambda fut: fut.exception(timeout=T),
}


def _traced_sync(spell: Callable[[af.Future[int]], object], finished_first: bool) -> af.Trace:
    gate = threading.Event()

    def child() -> int:
        assert gate.wait(T)
        return 1

    def parent() -> None:
        fut = af.fork(child)
        if finished_first:
            finished = _finished_in(fut)
            gate.set()
            assert finished.wait(T)
            assert fut.done()
        else:
            assert not fut.done()  # the gate opens only when the wait begins
        spell(fut)

    with af.instrument(_OpenOnWait(gate)), af.trace() as trace:
        af.fork(parent).result(timeout=T)
    return trace


@pytest.mark.parametrize("spelling", sorted(SYNC_SPELLINGS))
def test_a_sync_wait_is_recorded_whether_or_not_its_future_had_finished(spelling: str) -> None:
    spell = SYNC_SPELLINGS[spelling]
    blocked = _traced_sync(spell, finished_first=False)
    finished = _traced_sync(spell, finished_first=True)
    assert _graph(blocked)[("parent", "child")] >= 1
    assert _graph(finished) == _graph(blocked)


ASYNC_SPELLINGS: dict[str, Callable[[af.Future[int]], Awaitable[object]]] = {
    "await fut": lambda fut: fut,
    "await af.wait(fut)": lambda fut: af.wait_async(fut),
    "await af.wait_async([fut])": lambda fut: af.wait_async([fut]),
    "await af.wait_async(many)": lambda fut: af.wait_async([fut, fut], return_exceptions=True),
    "await fut.wait()": lambda fut: _awaited_wait(fut),
}


async def _awaited_wait(fut: af.Future[int]) -> int:
    return await fut.wait()  # type: ignore[misc]  # the awaitable face, in a coroutine


async def _traced_async(
    spell: Callable[[af.Future[int]], Awaitable[object]], finished_first: bool
) -> af.Trace:
    gate = threading.Event()

    def child() -> int:
        assert gate.wait(T)
        return 1

    async def parent() -> None:
        fut = af.fork(child)
        if finished_first:
            loop = asyncio.get_running_loop()
            finished = asyncio.Event()
            fut.add_done_callback(lambda _fut: loop.call_soon_threadsafe(finished.set))
            gate.set()
            await asyncio.wait_for(finished.wait(), T)
            assert fut.done()
        else:
            assert not fut.done()  # the gate opens only when the wait begins
        await spell(fut)

    with af.instrument(_OpenOnWait(gate)), af.trace() as trace:
        await af.wait_async(af.fork(parent), timeout=T)
    return trace


@pytest.mark.parametrize("spelling", sorted(ASYNC_SPELLINGS))
async def test_an_awaited_wait_is_recorded_whether_or_not_its_future_had_finished(
    spelling: str,
) -> None:
    spell = ASYNC_SPELLINGS[spelling]
    blocked = await _traced_async(spell, finished_first=False)
    finished = await _traced_async(spell, finished_first=True)
    assert _graph(blocked)[("parent", "child")] >= 1
    assert _graph(finished) == _graph(blocked)


async def test_a_second_await_on_one_future_is_recorded_as_taking_no_time() -> None:
    async def child() -> int:
        return 1

    with af.trace() as trace:
        fut = af.fork(child)
        assert await fut == 1
        assert await fut == 1
    assert _graph(trace) == Counter({(None, "child"): 2})
    waits = trace.waits
    second = waits[1]
    assert second.end is not None
    assert second.end >= second.start
    assert trace.summary(show=False).waits == 2


def test_a_second_sync_wait_is_recorded_and_the_views_cope(tmp_path: Path) -> None:
    def child() -> int:
        return 1

    def parent() -> None:
        fut = af.fork(child)
        assert af.wait(fut) == 1
        assert af.wait(fut) == 1  # finished: a wait that takes no time
        assert fut.result() == 1

    with af.trace() as trace:
        af.fork(parent).result(timeout=T)
    assert _graph(trace)[("parent", "child")] == 3
    assert all(w.end is not None for w in trace.waits)
    assert all(w.end >= w.start for w in trace.waits if w.end is not None)
    assert trace.summary(show=False).waits == 4  # the main thread's wait on parent too
    # The exports draw waits on a finished fork without trouble: one arrow each.
    assert trace.to_chrome_trace(tmp_path / "trace.json")
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    assert sum(e.get("name") == "wait" and e.get("ph") == "s" for e in events) == 3
    assert trace.to_dot(tmp_path / "trace.dot")
    assert (tmp_path / "trace.dot").read_text().count("[style=dashed]") == 1  # one edge
    assert trace.to_html(tmp_path / "trace.html")


def test_a_helping_wait_spans_the_run_it_helped(one_worker: None) -> None:
    """With one worker slot, the parent's wait runs the queued child inline: its record
    begins before the child starts and ends after it finishes."""

    def child() -> str:
        return threading.current_thread().name

    def parent() -> tuple[str, str]:
        fut = af.fork(child)  # queued: the parent holds the only slot
        return threading.current_thread().name, af.wait(fut)

    with af.trace() as trace:
        here, there = af.fork(parent).result(timeout=T)
    assert here == there  # it was helped
    records = {fork.name.rpartition(".")[2]: fork for fork in trace.forks}
    (wait,) = [w for w in trace.waits if w.awaited == records["child"].id]
    helped = records["child"]
    assert helped.started is not None
    assert helped.finished is not None
    assert wait.end is not None
    assert wait.start <= helped.started
    assert wait.end >= helped.finished


def test_awaits_in_trio_are_recorded_on_a_finished_future_too() -> None:
    trio = pytest.importorskip("trio")

    def child() -> int:
        return 1

    async def main() -> af.Trace:
        with af.trace() as trace:
            fut = af.fork(child)
            assert await fut == 1
            assert await fut == 1  # finished: a wait that takes no time
            assert await af.wait_async([fut, fut]) == [1, 1]
        return trace

    trace = trio.run(main)
    assert _graph(trace) == Counter({(None, "child"): 4})
