"""Error messages say what was wrong and what to write instead."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import inspect
import multiprocessing
import re
import warnings
from typing import Any

import pytest

import asyncfork as af
from asyncfork import _threads

T = 5.0  # seconds: a bound for what should take milliseconds


async def three() -> int:
    return 3


async def takes_x(x: int) -> int:
    return x


def sync_takes_x(x: int) -> int:
    return x


async def passes_timeout_on(x: int) -> int:
    """Rejects nothing itself: the TypeError comes from a call deeper inside."""
    return await takes_x(x, timeout=1)  # type: ignore[call-arg]


def sync_passes_daemon_on(x: int) -> int:
    return sync_takes_x(x, daemon=True)  # type: ignore[call-arg]


class Client:
    async def fetch(self, url: str) -> str:
        return url


def _nested() -> Any:
    async def inner(a: int, *, b: int) -> int:
        return a + b

    return inner


def _closed_without_warning(make: Any) -> str:
    """fork(coroutine object): the message; the coroutine is closed and never warns."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = make()
        with pytest.raises(TypeError) as info:
            af.fork(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        del coro
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    return str(info.value)


# -- fork(f(...)) ---------------------------------------------------------------------------

_PREFIX = "fork() takes a coroutine function and its arguments, not a coroutine object: "


@pytest.mark.parametrize(
    ("make", "name"),
    [
        pytest.param(lambda: Client().fetch("u"), "fetch", id="method"),
        pytest.param(lambda: _nested()(1, b=2), "inner", id="nested"),
        pytest.param(lambda: asyncio.sleep(0), "sleep", id="asyncio.sleep"),
        pytest.param(lambda: takes_x(1), "takes_x", id="function"),
    ],
)
def test_fork_of_coroutine_object_names_the_function_without_rebuilding_the_call(
    make: Any, name: str
) -> None:
    """The hint uses the plain name and `...`: no call rebuilt from the frame's locals."""
    message = _closed_without_warning(make)
    assert message == _PREFIX + f"write af.fork({name}, ...) instead of af.fork({name}(...))"
    assert "<" not in message  # no reprs of objects, no `<locals>`


def test_fork_of_coroutine_object_of_a_function_without_parameters() -> None:
    """A function that takes nothing: the exact call can be shown."""
    message = _closed_without_warning(three)
    assert message == _PREFIX + "write af.fork(three) instead of af.fork(three())"


def test_fork_of_non_callable_says_what_it_got_and_what_to_write() -> None:
    with pytest.raises(TypeError) as info:
        af.fork(12345)  # type: ignore[call-overload]
    assert str(info.value) == (
        "fork() takes a callable and its arguments, not an int (12345): "
        "write af.fork(func, *args, **kwargs)"
    )


async def test_fork_of_awaitable_says_to_await_it() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(TypeError, match=r"not an asyncio\.Future .*write `await x` instead"):
        af.fork(fut)  # type: ignore[call-overload]


# -- wait / as_completed: what they take ------------------------------------------------------


def test_wait_of_non_futures_names_the_item_with_its_article() -> None:
    with pytest.raises(TypeError) as info:
        af.wait([1, 2])  # type: ignore[arg-type]
    assert str(info.value) == "wait() takes asyncfork Futures, but item 0 is an int (1)"
    with pytest.raises(TypeError) as info:
        af.wait(5)  # type: ignore[call-overload]
    assert (
        str(info.value) == "wait() takes an asyncfork Future or an iterable of them, not an int (5)"
    )


async def test_wait_and_as_completed_name_the_index_of_the_bad_item() -> None:
    fut = af.fork(three)
    with pytest.raises(TypeError) as info:
        af.wait([fut, "x"])  # type: ignore[arg-type]
    assert str(info.value) == "wait() takes asyncfork Futures, but item 1 is a str ('x')"
    with pytest.raises(TypeError) as info:
        af.as_completed([fut, None])  # type: ignore[list-item]
    assert str(info.value) == "as_completed() takes asyncfork Futures, but item 1 is None"
    with pytest.raises(TypeError) as info:
        af.as_completed([1.5])  # type: ignore[arg-type]
    assert str(info.value) == "as_completed() takes asyncfork Futures, but item 0 is a float (1.5)"
    assert await asyncio.wait_for(fut, T) == 3


async def test_wait_of_a_dict_says_to_pass_its_values() -> None:
    futs = {"a": af.fork(three)}
    with pytest.raises(TypeError, match=r"item 0 is a str \('a'\).*pass its \.values\(\)"):
        af.wait(futs)  # type: ignore[arg-type]
    assert await af.wait(futs.values()) == [3]  # type: ignore[misc]


def test_wait_closes_every_coroutine_it_rejects() -> None:
    """wait([f(1), f(2)]) fails on item 0 and closes item 1 too: no 'never awaited' warning."""
    coros = [takes_x(1), takes_x(2)]
    with pytest.raises(TypeError, match=r"item 0 is a coroutine .*af\.fork\(takes_x, \.\.\.\)"):
        af.wait(coros)  # type: ignore[arg-type]
    assert [inspect.getcoroutinestate(c) for c in coros] == [inspect.CORO_CLOSED] * 2


def test_wait_of_concurrent_future_says_which_future_and_what_to_do() -> None:
    cf: concurrent.futures.Future[int] = concurrent.futures.Future()
    with pytest.raises(TypeError) as info:
        af.wait(cf)  # type: ignore[call-overload]
    message = str(info.value)
    assert message.startswith(
        "wait() takes an asyncfork Future or an iterable of them, "
        "not a concurrent.futures.Future (<Future at "
    )
    assert ".result()" in message
    assert "asyncio.wrap_future" in message
    with pytest.raises(TypeError, match=r"item 0 is a concurrent\.futures\.Future .*\.result\(\)"):
        af.wait([cf])  # type: ignore[arg-type]


async def test_wait_of_asyncio_future_or_task_says_to_await_it() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(three())
    try:
        with pytest.raises(TypeError) as info:
            af.wait(fut)  # type: ignore[arg-type]
        assert str(info.value) == (
            "wait() takes an asyncfork Future or an iterable of them, not an asyncio.Future "
            "(<Future pending>): await it instead (asyncio.gather or asyncio.wait for several)"
        )
        with pytest.raises(TypeError, match=r"not an asyncio\.Task .*: await it instead"):
            af.wait(task)  # type: ignore[arg-type]
    finally:
        fut.cancel()
        assert await task == 3


# -- objects that break while they are described ------------------------------------------------


class BrokenRepr:
    """An argument whose __repr__ and __str__ raise."""

    def __repr__(self) -> str:
        raise ValueError("broken __repr__")

    __str__ = __repr__


class _BrokenNames(type):
    def __getattribute__(cls, name: str) -> Any:
        if name in ("__qualname__", "__name__", "__module__"):
            raise ValueError(f"broken {name}")
        return super().__getattribute__(name)


class BrokenClass(metaclass=_BrokenNames):
    """Its class's __qualname__, __name__ and __module__ raise, and so does its __repr__."""

    def __repr__(self) -> str:
        raise ValueError("broken __repr__")


class BrokenQualname:
    """A callable whose __qualname__ raises (asking for it is not an AttributeError)."""

    def __getattribute__(self, name: str) -> Any:
        if name == "__qualname__":
            raise ValueError("broken __qualname__")
        return object.__getattribute__(self, name)

    def __call__(self) -> int:
        return 3


class AsyncBrokenQualname(BrokenQualname):
    async def __call__(self) -> int:  # type: ignore[override]
        return 3


async def _cleanup_fails() -> None:
    try:
        await asyncio.sleep(0)
    finally:
        raise ValueError("cleanup failed")


def _started_coroutine_whose_cleanup_fails() -> Any:
    coro = _cleanup_fails()
    coro.send(None)  # suspended in its try block: closing it runs the finally clause
    return coro


def test_fork_of_a_coroutine_whose_argument_has_a_broken_repr() -> None:
    """fork(f(x)) with a broken repr(x): the usual TypeError, and the coroutine is closed."""
    message = _closed_without_warning(lambda: takes_x(BrokenRepr()))  # type: ignore[arg-type]
    assert message == _PREFIX + "write af.fork(takes_x, ...) instead of af.fork(takes_x(...))"


# How the messages show them: the type's name, and reprlib's stand-in or the type's again.
_BR = r"a test_error_messages\.BrokenRepr \(<BrokenRepr instance at 0x[0-9a-f]+>\)"
_BC = r"a test_error_messages\.BrokenClass \(<test_error_messages\.BrokenClass object>\)"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        pytest.param(
            lambda: af.fork(BrokenRepr()),
            rf"^fork\(\) takes a callable and its arguments, not {_BR}: write af\.fork\(func",
            id="fork-not-callable",
        ),
        pytest.param(
            lambda: af.fork(BrokenClass()),
            rf"^fork\(\) takes a callable and its arguments, not {_BC}: write af\.fork\(func",
            id="fork-broken-class",
        ),
        pytest.param(
            lambda: af.fork.options(name=BrokenRepr()),
            rf"^fork\.options\(name=\.\.\.\) must be a str, .* not {_BR}$",
            id="options-name",
        ),
        pytest.param(
            lambda: af.fork.options(on_cancel=BrokenRepr()),
            rf"^fork\.options\(on_cancel=\.\.\.\) must be 'wait' or 'abandon', not {_BR}$",
            id="options-on_cancel",
        ),
        pytest.param(
            lambda: af.fork.options(executor=BrokenClass()),
            rf"^fork\.options\(executor=\.\.\.\) must be a concurrent\.futures\.Executor .* {_BC}$",
            id="options-executor",
        ),
        pytest.param(
            lambda: af.fork.options(timeout=BrokenClass()),
            rf"^fork\.options\(timeout=\.\.\.\) must be a number .* not {_BC}$",
            id="options-timeout",
        ),
        pytest.param(
            lambda: af.fork.options(daemon=BrokenClass()),
            rf"^fork\.options\(daemon=\.\.\.\) must be True or False, not {_BC}$",
            id="options-daemon",
        ),
        pytest.param(
            lambda: af.group(name=BrokenRepr()),
            rf"^group\(name=\.\.\.\) must be a str, or None for no name, not {_BR}$",
            id="group-name",
        ),
        pytest.param(
            lambda: af.group(limit=BrokenClass()),
            rf"^group\(limit=\.\.\.\) must be an int, or None for no limit, not {_BC}$",
            id="group-limit",
        ),
        pytest.param(
            lambda: af.wait(BrokenClass()),
            rf"^wait\(\) takes an asyncfork Future or an iterable of them, not {_BC}$",
            id="wait",
        ),
        pytest.param(
            lambda: af.wait([BrokenClass()]),
            rf"^wait\(\) takes asyncfork Futures, but item 0 is {_BC}$",
            id="wait-item",
        ),
        pytest.param(
            lambda: af.as_completed([BrokenRepr()]),
            rf"^as_completed\(\) takes asyncfork Futures, but item 0 is {_BR}$",
            id="as_completed-item",
        ),
    ],
)
def test_messages_survive_a_broken_repr_or_class_name(call: Any, expected: str) -> None:
    """Every message builder falls back to the type's name: the TypeError is what comes out."""
    with pytest.raises(TypeError, match=expected):
        call()


def test_fork_of_a_callable_whose_qualname_raises_is_named_after_its_type(loop_kind: str) -> None:
    """The default name falls back to the type's name; so does the executor error's."""
    fut = af.fork(BrokenQualname())
    assert fut.name == "BrokenQualname"
    assert af.wait(fut, timeout=T) == 3
    with (
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex,
        pytest.raises(TypeError, match=r"but AsyncBrokenQualname is a coroutine function"),
    ):
        af.fork.options(executor=ex)(AsyncBrokenQualname())


def test_fork_of_a_coroutine_whose_cleanup_raises_is_still_the_typeerror() -> None:
    """Closing fork(coro)'s coroutine raised: the TypeError comes, with that error as cause."""
    coro = _started_coroutine_whose_cleanup_fails()
    with pytest.raises(TypeError, match=r"write af\.fork\(_cleanup_fails\) instead") as info:
        af.fork(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert isinstance(info.value.__cause__, ValueError)
    coro = _started_coroutine_whose_cleanup_fails()
    with pytest.raises(TypeError, match=r"^run\(\) takes"):
        af.run(coro)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_wait_of_coroutines_whose_cleanup_raises_is_still_the_typeerror() -> None:
    """wait([c1, c2]) closes both even when closing one of them raises."""
    coros = [_started_coroutine_whose_cleanup_fails(), takes_x(1)]
    with pytest.raises(TypeError, match=r"item 0 is a coroutine"):
        af.wait(coros)  # type: ignore[arg-type]
    assert [inspect.getcoroutinestate(c) for c in coros] == [inspect.CORO_CLOSED] * 2


# -- option values ------------------------------------------------------------------------------


def test_configure_workers_says_none_means_the_default_limit() -> None:
    """None is the default limit for configure(workers=...), not 'no limit'."""
    default = _threads.default_limit()
    with pytest.raises(ValueError) as info:
        af.configure(workers=0)
    assert str(info.value) == (
        f"configure(workers=...) must be at least 1, or None for the default ({default}), not 0"
    )
    with pytest.raises(TypeError, match=r"or None for the default .*not a float \(1\.5\)"):
        af.configure(workers=1.5)  # type: ignore[arg-type]


def test_group_limit_says_none_means_no_limit() -> None:
    with pytest.raises(ValueError) as info:
        af.group(limit=0)
    assert str(info.value) == "group(limit=...) must be at least 1, or None for no limit, not 0"


def test_timeout_of_the_wrong_type_names_its_type() -> None:
    with pytest.raises(TypeError) as info:
        af.fork.options(timeout="1")  # type: ignore[arg-type]
    assert str(info.value) == (
        "fork.options(timeout=...) must be a number of seconds, or None for no timeout, "
        "not a str ('1')"
    )


# -- a keyword meant for the fork, given to the function -----------------------------------------


def _advice(exc: BaseException) -> list[str]:
    """The notes of ``exc`` other than the fork-site notes (tests/test_fork_site_notes.py)."""
    return [n for n in getattr(exc, "__notes__", []) if not n.startswith("in fork '")]


def _note(keyword: str, name: str) -> str:
    return (
        "af.fork passes every keyword argument to the function it forks; for the fork's own "
        f"{keyword} option write af.fork.options({keyword}=...)({name}, ...)"
    )


@pytest.mark.parametrize("func", [takes_x, sync_takes_x], ids=["coroutine", "sync"])
async def test_keyword_for_the_fork_rejected_by_the_function_gets_a_note(func: Any) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'timeout'") as info:
        await asyncio.wait_for(af.fork(func, 1, timeout=1), T)
    assert _advice(info.value) == [_note("timeout", func.__name__)]
    with pytest.raises(TypeError) as info:
        await asyncio.wait_for(af.fork(func, 1, name="x"), T)
    assert _advice(info.value) == [_note("name", func.__name__)]


async def test_keyword_rejected_by_a_thread_pool_executor_call_gets_a_note() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        forker = af.fork.options(executor=ex)
        with pytest.raises(TypeError) as info:
            await asyncio.wait_for(forker(sync_takes_x, 1, daemon=True), T)  # type: ignore[call-arg, arg-type]
        assert _advice(info.value) == [_note("daemon", "sync_takes_x")]
        with pytest.raises(TypeError) as info:
            await asyncio.wait_for(forker(sync_passes_daemon_on, 1), T)
        assert not _advice(info.value)


def test_keyword_rejected_by_a_process_pool_executor_call_gets_a_note() -> None:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as ex:
        forker = af.fork.options(executor=ex)
        with pytest.raises(TypeError) as info:
            af.wait(forker(sync_takes_x, 1, timeout=1), timeout=30)  # type: ignore[call-arg, arg-type]
        assert _advice(info.value) == [_note("timeout", "sync_takes_x")]
        with pytest.raises(TypeError) as info:
            af.wait(forker(sync_passes_daemon_on, 1), timeout=30)
        assert not _advice(info.value)


@pytest.mark.parametrize(
    "func", [passes_timeout_on, sync_passes_daemon_on], ids=["coroutine", "sync"]
)
async def test_keyword_rejected_deeper_inside_the_function_gets_no_note(func: Any) -> None:
    """The TypeError came from a call inside the fork's function: the fork is not to blame."""
    with pytest.raises(TypeError, match="unexpected keyword argument") as info:
        await asyncio.wait_for(af.fork(func, 1), T)
    assert not _advice(info.value)


async def test_keyword_that_is_no_fork_option_gets_no_note() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'") as info:
        await asyncio.wait_for(af.fork(takes_x, 1, colour=1), T)  # type: ignore[call-arg]
    assert not _advice(info.value)


async def test_note_is_added_once_when_the_error_travels_up() -> None:
    async def parent() -> int:
        return await af.fork(takes_x, 1, timeout=1)  # type: ignore[call-arg]

    fut = af.fork(parent)
    with pytest.raises(TypeError) as info:
        await asyncio.wait_for(fut, T)
    with pytest.raises(TypeError):
        await fut
    assert _advice(info.value) == [_note("timeout", "takes_x")]


# -- timeouts and failures ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shown"), [("fetchers", "group 'fetchers'"), (None, "group")])
async def test_group_timeout_names_the_group(name: str | None, shown: str) -> None:
    async def body() -> None:
        async with af.group(timeout=0.05, name=name) as g:
            g.fork(asyncio.sleep, T)
            await asyncio.sleep(T)

    with pytest.raises(TimeoutError) as info:
        await body()
    assert str(info.value) == f"{shown} timed out after 0.05s"


async def test_as_completed_timeout_counts_the_unfinished_futures() -> None:
    slow = af.fork(asyncio.sleep, T)
    with pytest.raises(TimeoutError) as info:
        async for _ in af.as_completed([slow, af.fork(three)], timeout=0.05):
            pass
    assert str(info.value) == (
        "as_completed() timed out after 0.05s with 1 of 2 Futures unfinished (they go on running)"
    )
    slow.cancel()


async def test_unretrieved_child_failure_says_how_to_handle_it() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def parent() -> None:
        af.fork(fails)

    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(af.fork(parent), T)
    assert re.fullmatch(
        r"fork '.*parent' ended with failures of its children that nobody retrieved "
        r"\(await a child's Future, or call its \.result\(\) or \.exception\(\), to handle its "
        r"failure yourself\) \(1 sub-exception\)",
        str(info.value),
    )


def test_the_option_names_the_hint_knows_are_fork_options_own() -> None:
    """The keyword hint's list of option names is exactly fork.options' keywords."""
    import inspect

    from asyncfork._errors import FORK_OPTIONS

    assert set(FORK_OPTIONS) == set(inspect.signature(af.fork.options).parameters)


def test_run_of_a_coroutine_object_says_af_run() -> None:
    """af.run(main()) names af.run in its hint (not af.fork), and closes the coroutine."""

    async def main(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"^run\(\) takes .* write af\.run\(main, \.\.\.\) instead"):
        af.run(main(1))  # type: ignore[arg-type]


def _event_bound_to_a_finished_loop() -> asyncio.Event:
    event = asyncio.Event()

    async def bind() -> None:
        waiting = asyncio.ensure_future(event.wait())  # waiting binds the event to this loop
        await asyncio.sleep(0)
        waiting.cancel()

    asyncio.run(bind())
    return event


def test_object_of_another_loop_says_which_loop_the_fork_ran_on() -> None:
    """A fork from a plain thread runs on the background loop: an object bound to the loop
    it was made on fails there, and the error says why and what to do."""
    event = _event_bound_to_a_finished_loop()

    async def uses_event() -> None:
        await event.wait()

    fut = af.fork(uses_event)  # no loop in this thread: the background loop
    with pytest.raises(RuntimeError, match="different event loop") as raised:
        fut.result(timeout=T)
    notes = _advice(raised.value)
    assert len(notes) == 1
    assert notes[0].startswith("fork 'test_object_of_another_loop_says_which_loop_the_fork_ran_on")
    assert "ran on asyncfork's background loop" in notes[0]
    assert "make them on the loop that uses them" in notes[0]
    assert "gunicorn --preload" in notes[0]


async def test_object_of_another_loop_on_the_running_loop() -> None:
    event = _event_bound_to_a_finished_loop_in_a_thread()

    async def uses_event() -> None:
        await event.wait()

    with pytest.raises(RuntimeError, match="different event loop") as raised:
        await af.fork(uses_event)
    assert "ran on the event loop it was forked on" in _advice(raised.value)[0]


def _event_bound_to_a_finished_loop_in_a_thread() -> asyncio.Event:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_event_bound_to_a_finished_loop).result(timeout=T)


def test_other_runtime_errors_get_no_loop_note() -> None:
    async def fails() -> None:
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else") as raised:
        af.fork(fails).result(timeout=T)
    assert not _advice(raised.value)
