"""Eager start: ``fork.options(eager=True)`` and ``af.configure(eager=True)``.

On Python 3.12+ a coroutine fork made on its loop's thread runs up to its first suspension
inside ``fork()``; on 3.11 the option is accepted and the fork starts lazily.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import T, within

import asyncfork as af

EAGER = sys.version_info >= (3, 12)
needs_eager = pytest.mark.skipif(not EAGER, reason="Task(eager_start=True) is new in 3.12")

eager = af.fork.options(eager=True)


@pytest.fixture
def eager_by_default() -> Iterator[None]:
    af.configure(eager=True)
    try:
        yield
    finally:
        af.configure(eager=False)


async def test_an_eager_fork_runs_up_to_its_first_await_inside_fork() -> None:
    """The order changes: the fork's code before its first await runs before fork()
    returns (lazily, it runs once the forking code awaits)."""
    log: list[str] = []

    async def child(tag: str) -> str:
        log.append(f"{tag} starts")
        await asyncio.sleep(0)
        log.append(f"{tag} ends")
        return tag

    lazy_fut = af.fork(child, "lazy")
    eager_fut = eager(child, "eager")
    log.append("forks made")
    assert await within(af.wait([lazy_fut, eager_fut])) == ["lazy", "eager"]
    if EAGER:
        assert log[:2] == ["eager starts", "forks made"]
    else:  # 3.11: accepted, and lazy
        assert log[0] == "forks made"


@needs_eager
async def test_an_eager_fork_that_never_suspends_is_done_when_fork_returns() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("parent's")
    seen: list[object] = []

    async def child() -> int:
        seen.append(var.get())
        seen.append(af.current())
        var.set("child's")  # its own copy of the context, as a lazy fork's
        return 7

    fut = eager(child)
    assert fut.done()
    assert fut.result() == 7
    assert seen == ["parent's", fut]
    assert var.get() == "parent's"
    assert fut._task is None  # a settled fork keeps no Task


@needs_eager
async def test_cancel_right_after_an_eager_fork_reaches_its_first_await() -> None:
    """The fork has started: cancel() cancels it at its await, and its cleanup runs."""
    cleaned: list[str] = []

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("cleanup")

    fut = eager(child)
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert cleaned == ["cleanup"]


@needs_eager
async def test_an_eager_fork_that_cancels_itself_in_its_first_step_is_cancelled() -> None:
    """Its Task is known to its Future from its first step on: a cancel made then reaches
    the Task (it is not taken for a fork that never started)."""
    ran: list[str] = []

    async def child() -> None:
        me = af.current()
        assert me is not None
        me.cancel()
        ran.append("after cancel")
        await asyncio.sleep(0)
        ran.append("never")

    fut = eager(child)
    with pytest.raises(asyncio.CancelledError):
        await within(fut)
    assert ran == ["after cancel"]


@needs_eager
async def test_a_group_whose_eager_child_fails_at_once_refuses_the_next_fork() -> None:
    """The child fails inside fork(): the group is failing before the body's next line,
    so the next fork into it is refused, and the group raises the failure."""
    reached: list[str] = []

    async def boom() -> None:
        raise ValueError("at once")

    async def other() -> None:
        reached.append("other ran")

    async def body() -> None:
        async with af.group() as g:
            g.fork.options(eager=True)(boom)
            g.fork(other)
            reached.append("after the second fork")

    with pytest.raises(ExceptionGroup) as info:
        await body()
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert reached == []


@needs_eager
async def test_the_implicit_join_and_unretrieved_failures_are_unchanged() -> None:
    done: list[str] = []

    async def grandchild() -> None:
        await asyncio.sleep(0.01)
        done.append("grandchild")

    async def failing() -> None:
        raise KeyError("lost?")

    async def child() -> str:
        eager(grandchild)
        eager(failing)  # never awaited: the parent raises it
        return "child"

    with pytest.raises(ExceptionGroup) as info:
        await within(eager(child))
    assert done == ["grandchild"]  # joined before the child completed
    assert [type(e) for e in info.value.exceptions] == [KeyError]


async def test_nested_eager_forks_past_the_depth_limit_start_lazily() -> None:
    """A chain of eager forks that never suspend nests on one stack; past the limit a
    fork starts lazily, so a chain far deeper than the recursion limit still works."""
    depth = sys.getrecursionlimit() * 2

    async def chain(n: int) -> int:
        if n == 0:
            return 0
        return await eager(chain, n - 1) + 1

    assert await within(eager(chain, depth), T * 4) == depth


async def test_configure_eager_sets_the_default_and_the_option_overrides_it(
    eager_by_default: None,
) -> None:
    log: list[str] = []

    async def child(tag: str) -> None:
        log.append(tag)
        await asyncio.sleep(0)

    first = af.fork(child, "default")
    second = af.fork.options(eager=False)(child, "lazy")
    log.append("forks made")
    await within(af.wait([first, second]))
    if EAGER:
        assert log == ["default", "forks made", "lazy"]
    else:
        assert log == ["forks made", "default", "lazy"]


@needs_eager
async def test_the_parent_busy_time_includes_an_eager_child_first_step() -> None:
    """Traces change: an eager child's first step runs inside its parent's step, so
    fork_busy charges that time to the parent's step too."""
    busy: dict[str, float] = {}

    class Busy(af.Instrument):
        def fork_busy(self, fut: af.Future[Any], seconds: float) -> None:
            busy[fut.name] = busy.get(fut.name, 0.0) + seconds

    async def child() -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < 0.1:
            pass
        await asyncio.sleep(0)

    async def parent() -> None:
        await af.fork.options(name="child", eager=True)(child)

    with af.instrument(Busy()):
        await within(af.fork.options(name="parent")(parent))
    assert busy["child"] >= 0.1
    assert busy["parent"] >= 0.1


async def test_a_group_eager_setting_applies_to_the_forks_made_in_it() -> None:
    """group(eager=True) makes the forks made in its body eager, unless a fork says
    otherwise; forks outside it keep the default."""
    log: list[str] = []

    async def child(tag: str) -> None:
        log.append(tag)
        await asyncio.sleep(0)

    async with af.group(eager=True) as g:
        g.fork(child, "in the group")
        af.fork(child, "plain fork in the body")
        g.fork.options(eager=False)(child, "said lazy")
        log.append("forks made")
    outside = af.fork(child, "outside")
    log.append("after the group")
    await within(outside)
    if EAGER:
        assert log == [
            "in the group",
            "plain fork in the body",
            "forks made",
            "said lazy",
            "after the group",
            "outside",
        ]
    else:
        assert log[0] == "forks made"


def test_eager_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"fork.options\(eager=...\) must be True or False"):
        af.fork.options(eager="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"configure\(eager=...\) must be True or False"):
        af.configure(eager=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"group\(eager=...\) must be True or False"):
        af.group(eager="no")  # type: ignore[arg-type]
