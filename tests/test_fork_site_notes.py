"""Fork-site notes: a fork's error names, per level of nesting, the fork and where it was made."""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import queue
import sys
import threading
import traceback
from typing import Any

import pytest
from helpers import T, within

import asyncfork as af

HERE = __file__


def _here() -> int:
    """The line of the caller: write it on the line of the ``fork()`` call it names."""
    return sys._getframe(1).f_lineno


def _note(name: str, line: int, function: str) -> str:
    return f"in fork {name!r} (forked at {HERE}:{line} in {function})"


def _notes(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


class Boom(Exception):
    pass


async def leaf() -> None:
    raise Boom("leaf failed")


def sync_leaf() -> None:
    raise Boom("sync leaf failed")


LINES: dict[str, int] = {}  # the line of each fork() call below, by the forking function


async def mid() -> None:
    fut, LINES["mid"] = af.fork(leaf), _here()
    await fut


def sync_mid() -> None:
    fut, LINES["sync_mid"] = af.fork(sync_leaf), _here()
    fut.result(timeout=T)


def sync_forks_coroutine() -> None:
    fut, LINES["sync_forks_coroutine"] = af.fork(mid), _here()
    fut.result(timeout=T)


async def coroutine_forks_sync() -> None:
    fut, LINES["coroutine_forks_sync"] = af.fork(sync_forks_coroutine), _here()
    await fut


# -- the notes, per level ----------------------------------------------------------------------


async def test_nested_coroutine_forks_name_each_level_innermost_first() -> None:
    fut, line = af.fork(mid), _here()
    with pytest.raises(Boom) as info:
        await within(fut)
    assert _notes(info.value) == [
        _note("leaf", LINES["mid"], "mid"),
        _note("mid", line, "test_nested_coroutine_forks_name_each_level_innermost_first"),
    ]


def test_nested_sync_forks_name_each_level() -> None:
    fut, line = af.fork(sync_mid), _here()
    with pytest.raises(Boom) as info:
        fut.result(timeout=T)
    assert _notes(info.value) == [
        _note("sync_leaf", LINES["sync_mid"], "sync_mid"),
        _note("sync_mid", line, "test_nested_sync_forks_name_each_level"),
    ]


async def test_mixed_coroutine_and_sync_levels() -> None:
    fut, line = af.fork(coroutine_forks_sync), _here()
    with pytest.raises(Boom) as info:
        await within(fut)
    assert _notes(info.value) == [
        _note("leaf", LINES["mid"], "mid"),
        _note("mid", LINES["sync_forks_coroutine"], "sync_forks_coroutine"),
        _note("sync_forks_coroutine", LINES["coroutine_forks_sync"], "coroutine_forks_sync"),
        _note("coroutine_forks_sync", line, "test_mixed_coroutine_and_sync_levels"),
    ]


async def test_a_group_child_and_the_fork_owning_the_group() -> None:
    lines: dict[str, int] = {}

    async def owner() -> None:
        async with af.group() as g:
            _, lines["child"] = g.fork(leaf), _here()

    fut, line = af.fork(owner), _here()
    with pytest.raises(ExceptionGroup) as info:
        await within(fut)
    group = info.value
    assert _notes(group) == [
        _note(owner.__qualname__, line, "test_a_group_child_and_the_fork_owning_the_group")
    ]
    (child_error,) = group.exceptions
    assert isinstance(child_error, Boom)
    assert _notes(child_error) == [_note("leaf", lines["child"], "owner")]


async def test_unretrieved_child_failure_group_gets_the_parent_note() -> None:
    lines: dict[str, int] = {}

    async def parent() -> None:
        _, lines["child"] = af.fork(leaf), _here()

    fut, line = af.fork(parent), _here()
    with pytest.raises(ExceptionGroup) as info:
        await within(fut)
    name = "test_unretrieved_child_failure_group_gets_the_parent_note"
    assert _notes(info.value) == [_note(parent.__qualname__, line, name)]
    assert _notes(info.value.exceptions[0]) == [_note("leaf", lines["child"], "parent")]


async def test_recursion_counts_identical_levels_as_the_traceback_counts_lines() -> None:
    lines: dict[str, int] = {}

    async def dive(depth: int) -> None:
        if depth == 0:
            raise Boom("bottom")
        fut, lines["dive"] = af.fork(dive, depth - 1), _here()
        await fut

    fut, line = af.fork(dive, 4), _here()
    with pytest.raises(Boom) as info:
        await within(fut)
    level = _note(dive.__qualname__, lines["dive"], "dive")
    assert _notes(info.value) == [
        level,
        "[previous fork note repeated 3 more times]",
        _note(
            dive.__qualname__,
            line,
            "test_recursion_counts_identical_levels_as_the_traceback_counts_lines",
        ),
    ]


async def test_a_timeout_is_noted_a_cancellation_is_not() -> None:
    """A cancellation is control flow, not a failure: neither it nor its parents get notes."""
    fut, line = af.fork.options(timeout=0.01)(asyncio.sleep, 10), _here()
    with pytest.raises(TimeoutError) as info:
        await within(fut)
    assert _notes(info.value) == [
        _note("sleep", line, "test_a_timeout_is_noted_a_cancellation_is_not")
    ]
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert _notes(info.value.__cause__) == []

    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(10)

    async def parent() -> None:
        await af.fork(waits)

    fut = af.fork(parent)
    await within(started.wait())
    fut.cancel()
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await within(fut)
    assert _notes(cancelled.value) == []


def test_an_executor_fork_names_its_site() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        fut, line = af.fork.options(executor=pool)(sync_leaf), _here()
        with pytest.raises(Boom) as info:
            fut.result(timeout=T)
    assert _notes(info.value) == [_note("sync_leaf", line, "test_an_executor_fork_names_its_site")]


async def test_a_detached_fork_names_its_site() -> None:
    async def parent() -> af.Future[None]:
        fut, lines["detached"] = af.fork.options(detached=True)(leaf), _here()
        return fut

    lines: dict[str, int] = {}
    detached = await within(af.fork(parent))
    with pytest.raises(Boom) as info:
        await within(detached)
    assert _notes(info.value) == [_note("leaf", lines["detached"], "parent")]


def test_af_run_root_fork_gets_no_note_of_asyncfork_s_own_code() -> None:
    lines: dict[str, int] = {}

    async def main() -> None:
        fut, lines["main"] = af.fork(leaf), _here()
        await fut

    with pytest.raises(Boom) as info:
        af.run(main)
    assert _notes(info.value) == [_note("leaf", lines["main"], "main")]


async def test_existing_notes_stay_and_come_first() -> None:
    async def takes_x(x: int) -> int:
        return x

    fut, line = af.fork(takes_x, 1, timeout=1), _here()  # type: ignore[call-arg]
    with pytest.raises(TypeError) as info:
        await within(fut)
    notes = _notes(info.value)
    assert len(notes) == 2
    assert notes[0].startswith("af.fork passes every keyword argument")
    assert notes[1] == _note(takes_x.__qualname__, line, "test_existing_notes_stay_and_come_first")


async def test_notes_that_are_not_a_list_are_left_alone() -> None:
    error = Boom("odd")
    error.__notes__ = ("not", "a list")  # type: ignore[assignment]

    async def raises() -> None:
        raise error

    with pytest.raises(Boom) as info:
        await within(af.fork(raises))
    assert info.value.__notes__ == ("not", "a list")
    fut, line = af.fork(leaf), _here()  # and the next failure is noted as usual
    with pytest.raises(Boom) as info:
        await within(fut)
    assert _notes(info.value) == [
        _note("leaf", line, "test_notes_that_are_not_a_list_are_left_alone")
    ]


async def test_one_exception_object_raised_by_many_forks_stops_growing() -> None:
    shared = Boom("module-level instance")

    async def raises() -> None:
        raise shared

    for i in range(100):
        with pytest.raises(Boom):
            await within(af.fork.options(name=f"fork {i}")(raises))
    notes = _notes(shared)
    assert len(notes) == 65
    assert notes[0].startswith("in fork 'fork 0' (forked at ")
    assert notes[-1].startswith("[further fork notes left out")


# -- once, however often it is waited for --------------------------------------------------------


async def test_notes_appear_once_after_repeated_waits_and_waits_in_other_threads() -> None:
    fut, line = af.fork(mid), _here()
    expected = [
        _note("leaf", LINES["mid"], "mid"),
        _note(
            "mid", line, "test_notes_appear_once_after_repeated_waits_and_waits_in_other_threads"
        ),
    ]
    with pytest.raises(Boom) as first:
        await within(fut)
    with pytest.raises(Boom):
        await within(fut)
    with pytest.raises(Boom):
        fut.result()
    assert fut.exception() is first.value
    with pytest.raises(Boom):
        await within(af.wait_async([fut]))
    seen: list[BaseException] = []

    def waiter() -> None:
        try:
            af.wait(fut, timeout=T)
        except Boom as exc:
            seen.append(exc)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(T)
    assert seen == [first.value] * 3
    assert _notes(first.value) == expected


async def test_a_parent_retrieving_the_child_error_twice_adds_its_level_once() -> None:
    lines: dict[str, int] = {}

    async def parent() -> None:
        child, lines["child"] = af.fork(leaf), _here()
        with pytest.raises(Boom):
            await child
        child.exception()
        await child

    fut, line = af.fork(parent), _here()
    with pytest.raises(Boom) as info:
        await within(fut)
    assert _notes(info.value) == [
        _note("leaf", lines["child"], "parent"),
        _note(
            parent.__qualname__,
            line,
            "test_a_parent_retrieving_the_child_error_twice_adds_its_level_once",
        ),
    ]


async def test_the_printed_traceback_shows_every_fork_site() -> None:
    fut, line = af.fork(mid), _here()
    with pytest.raises(Boom) as info:
        await within(fut)
    text = "".join(traceback.format_exception(info.value))
    assert f"in fork 'leaf' (forked at {HERE}:{LINES['mid']} in mid)\n" in text
    assert f"in fork 'mid' (forked at {HERE}:{line} in " in text
    assert text.index("in fork 'leaf'") < text.index("in fork 'mid'")


def test_a_fork_made_with_no_python_frame_below_it_has_no_site() -> None:
    """``fork`` as a thread's entry point (called from C): it works, and its error has no note."""
    made: queue.Queue[af.Future[Any] | None] = queue.Queue()

    def fails() -> None:
        made.put(af.current())
        raise Boom("no caller")

    _thread.start_new_thread(af.fork, (fails,))
    fut = made.get(timeout=T)
    assert fut is not None
    with pytest.raises(Boom) as info:
        fut.result(timeout=T)
    assert _notes(info.value) == []


# -- the record ----------------------------------------------------------------------------------


async def test_forks_of_one_call_site_share_one_record() -> None:
    """A fork stores one reference to its call site's record: no allocation per fork."""

    async def noop() -> None:
        pass

    futs = []
    for _ in range(3):
        futs.append(af.fork(noop))
    other = af.fork(noop)
    await within(af.wait_async([*futs, other]))
    sites: list[Any] = [f._site for f in futs]  # pyright: ignore[reportPrivateUsage]
    assert sites[0] is sites[1] is sites[2]
    assert sites[0] is not other._site  # pyright: ignore[reportPrivateUsage]
    assert sites[0][0] is sys._getframe().f_code
