"""Forks in asyncio's tools: Task names, coroutine names, debug mode's creation sites."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

import pytest

import asyncfork as af


async def fetch_page() -> str:
    await asyncio.sleep(0)
    return "page"


async def test_a_fork_task_and_its_coroutine_carry_the_fork_name():
    fut = af.fork(fetch_page)
    named = af.fork.options(name="crawler")(fetch_page)
    tasks = {task.get_name(): task for task in asyncio.all_tasks()}
    assert "fetch_page" in tasks
    assert "crawler" in tasks
    coro = tasks["fetch_page"].get_coro()
    assert coro is not None
    assert coro.__qualname__ == "fetch_page"  # type: ignore[union-attr]
    assert "fetch_page" in repr(tasks["fetch_page"])
    assert await fut == await named == "page"


def test_a_queued_fork_task_carries_the_fork_name_too():
    names: list[str] = []

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        names.append(task.get_name())

    # From a plain thread the fork is queued to the background loop (not the hot path).
    af.wait(af.fork(main), timeout=10)
    assert names == ["test_a_queued_fork_task_carries_the_fork_name_too.<locals>.main"]


async def test_in_debug_mode_a_fork_keeps_where_it_was_made():
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    try:
        line = sys._getframe().f_lineno + 1
        fut = af.fork(fetch_page)
    finally:
        loop.set_debug(False)
    site = fut._source_traceback
    assert site is not None
    assert site[-1].filename == __file__
    assert site[-1].lineno == line
    assert await fut == "page"


async def test_out_of_debug_mode_no_creation_site_is_kept():
    fut = af.fork(fetch_page)
    assert fut._source_traceback is None
    await fut


@pytest.mark.asyncfork_no_leak_check  # its subject is a failure nobody retrieves
def test_a_never_retrieved_failure_names_the_fork_site_in_debug_mode(caplog):
    async def fails() -> None:
        raise ValueError("lost")

    async def main() -> None:
        asyncio.get_running_loop().set_debug(True)
        fut = af.fork.options(detached=True)(fails)
        await asyncio.wait([fut])
        del fut  # dropped unretrieved

    with caplog.at_level(logging.ERROR, logger="asyncfork"):
        af.run(main)
        gc.collect()
    (record,) = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    message = record.getMessage()
    assert "fork created at" in message
    assert "test_debug_mode.py" in message


async def test_debug_mode_keeps_a_short_creation_site_as_asyncio_does():
    """Like asyncio's tasks, a fork keeps at most 10 frames of where it was made."""

    async def deep(n: int) -> af.Future[str]:
        if n:
            return await deep(n - 1)
        return af.fork(fetch_page)

    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    try:
        fut = await deep(50)
    finally:
        loop.set_debug(False)
    site = fut._source_traceback
    assert site is not None
    assert 1 <= len(site) <= 10
    assert site[-1].name == "deep"  # the innermost frame: the fork() call
    assert await fut == "page"
