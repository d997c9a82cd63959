"""af.fork: what it forks (the callable's kind), its arguments and its options."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import inspect
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import T, double, three, ticks, within

import asyncfork as af

# -- arguments -----------------------------------------------------------------------------


async def test_every_keyword_goes_to_func():
    """fork(func, /, *args, **kwargs): every keyword goes to func, none is an option."""
    kw = {
        "name": "n",
        "executor": "e",
        "timeout": -1,
        "detached": "d",
        "daemon": "x",
        "on_cancel": "nope",
    }

    async def coro(**kwargs):
        return kwargs

    def sync(**kwargs):
        return kwargs

    cf = af.fork(coro, **kw)
    sf = af.fork(sync, **kw)
    assert await within(cf) == kw
    assert await within(sf) == kw
    assert cf.name.endswith("coro")
    assert sf.name.endswith("sync")


# -- classifying the callable --------------------------------------------------------------


class AsyncCallable:
    async def __call__(self, x):
        return (x, asyncio.current_task() is not None)


async def test_callable_instance_with_async_call_is_a_coroutine_fork():
    """fork schedules a coroutine function as a task: an instance whose __call__ is async too."""
    fut = af.fork(AsyncCallable(), 4)
    assert await within(fut) == (4, True)  # ran as a task on the loop, not in a worker
    assert fut.name == "AsyncCallable"  # no __qualname__: the type's name


class SyncCallable:
    def __call__(self) -> bool:
        return asyncio._get_running_loop() is None  # True in a worker thread


async def test_callable_instances_are_classified_by_class_and_own_attributes():
    """Instances of one class are classified once, by their class; one that carries
    inspect's coroutine marker of its own is still a coroutine fork."""
    assert await within(af.fork(SyncCallable())) is True  # its class is classified now
    assert await within(af.fork(SyncCallable())) is True
    partials = [functools.partial(double, n) for n in range(2)]  # never by class: by its func
    assert [await within(af.fork(p)) for p in partials] == [0, 2]
    if sys.version_info >= (3, 12):
        marked = inspect.markcoroutinefunction(AsyncCallable())
        marked_sync = SyncCallable()
        inspect.markcoroutinefunction(marked_sync)  # says it is a coroutine function
        assert await within(af.fork(marked, 1)) == (1, True)
        wrongly_marked = af.fork(marked_sync)
        assert wrongly_marked.kind == "coroutine"  # run as one: its call returns no coroutine
        with pytest.raises(TypeError, match="can't be used in 'await'"):
            await within(wrongly_marked)
        assert await within(af.fork(SyncCallable())) is True  # the class's answer stands


async def test_partial_of_coroutine_function_is_a_coroutine_fork():
    """A functools.partial of a coroutine function is forked as a coroutine (on the loop)."""

    async def add(a, b):
        return (a + b, threading.current_thread() is threading.main_thread())

    fut = af.fork(functools.partial(add, 1), 2)
    assert await within(fut) == (3, True)


async def test_coroutine_fork_returning_an_awaitable_returns_it() -> None:
    """A coroutine fork that returns an awaitable returns that object (no auto-await)."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[int] = loop.create_future()
    coro = double(1)

    async def returns_future() -> asyncio.Future[int]:
        return pending

    async def returns_coroutine() -> Any:
        return coro

    async def returns_af_future() -> af.Future[int]:
        return af.fork(double, 4)

    try:
        assert await af.fork(returns_future) is pending
        assert not pending.done()
        assert await af.fork(returns_coroutine) is coro
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
        inner = await af.fork(returns_af_future)
        assert isinstance(inner, af.Future)
        assert await inner == 8
    finally:
        pending.cancel()
        coro.close()


# -- a sync callable that returns a coroutine ----------------------------------------------


async def test_sync_callable_returning_coroutine_runs_it_on_host_loop() -> None:
    """A sync callable returning a coroutine: it runs on the host loop, its value is the value."""
    seen: dict[str, object] = {}

    async def where(x: int) -> int:
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.get_ident()
        return x + 1

    def make() -> Any:
        seen["maker_thread"] = threading.get_ident()
        return where(41)

    assert await af.fork(make) == 42
    assert seen["loop"] is asyncio.get_running_loop()
    assert seen["thread"] == threading.get_ident() != seen["maker_thread"]


def test_sync_callable_returning_coroutine_from_plain_thread(loop_kind: str) -> None:
    """From a plain thread, the returned coroutine runs on B (the host loop)."""

    async def where() -> str:
        return threading.current_thread().name

    assert af.fork(lambda: where()).result(timeout=T) == "asyncfork-loop"


async def test_sync_callable_returning_coroutine_is_the_same_fork():
    """A sync callable returning a coroutine: it runs as the same fork (Future, scope, context)."""
    var = contextvars.ContextVar("var", default="unset")
    release = asyncio.Event()
    child_started = asyncio.Event()
    seen = {}

    async def child():
        child_started.set()
        await release.wait()
        return "child"

    async def inner():
        seen["current"] = af.current()
        seen["var"] = var.get()
        seen["child"] = af.fork(child)
        return "inner"

    def outer():
        var.set("set in the sync part")
        seen["sync current"] = af.current()
        return inner()

    fut = af.fork(outer)
    await within(child_started.wait())
    await ticks()
    assert not fut.done()  # the coroutine's child joins the same fork
    release.set()
    assert await within(fut) == "inner"
    assert seen["current"] is fut
    assert seen["sync current"] is fut
    assert seen["var"] == "set in the sync part"
    assert seen["child"].parent is fut


# -- bad input -----------------------------------------------------------------------------


def test_fork_of_coroutine_object_is_typeerror_showing_right_call() -> None:
    """fork(f(x)): TypeError showing fork(f, x); the coroutine is closed (no warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = double(3)
        with pytest.raises(TypeError) as info:
            af.fork(coro)  # type: ignore[call-overload]
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        del coro
        gc.collect()
    assert "af.fork(double, ...)" in str(info.value)
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_finished_coroutine_object_is_type_error():
    """fork(f(x)) is a TypeError even for a coroutine object that has already run."""
    coro = three()
    coro.close()
    with pytest.raises(TypeError, match=r"not a coroutine object.*af\.fork\(three\)"):
        af.fork(coro)  # type: ignore[call-overload]


def test_fork_of_non_callable_is_typeerror_naming_it() -> None:
    """A non-callable: TypeError naming it."""
    with pytest.raises(TypeError, match="int") as info:
        af.fork(12345)  # type: ignore[call-overload]
    assert "12345" in str(info.value)


def test_fork_of_async_generator_function_is_typeerror_naming_it() -> None:
    """An async generator function: TypeError naming it."""

    async def agen_numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="agen_numbers"):
        af.fork(agen_numbers)


class AsyncGenCallable:
    async def __call__(self):
        yield 1


def test_instance_with_async_generator_call_is_type_error():
    """An async generator function is rejected with a TypeError naming it."""
    with pytest.raises(TypeError, match="async generator function AsyncGenCallable"):
        af.fork(AsyncGenCallable())


def test_coroutine_function_with_executor_is_typeerror() -> None:
    """A coroutine function with any executor=: TypeError at fork, naming it."""
    with ThreadPoolExecutor(max_workers=1) as ex, pytest.raises(TypeError, match="double"):
        af.fork.options(executor=ex)(double, 1)


# -- options -------------------------------------------------------------------------------


def test_fork_options_of_the_wrong_type_are_type_errors():
    """Options are validated at once, and the error names the option."""
    with pytest.raises(TypeError, match=r"name=\.\.\.\) must be a str"):
        af.fork.options(name=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"executor=\.\.\.\) must be a concurrent\.futures"):
        af.fork.options(executor=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["detached", "daemon"])
@pytest.mark.parametrize("value", ["no", "false", "", 0, 1, None])
def test_boolean_fork_options_must_be_bools(option: str, value: object) -> None:
    """detached="no" must not switch the option on: anything but True/False is a TypeError."""
    expected = rf"^fork\.options\({option}=\.\.\.\) must be True or False, not "
    with pytest.raises(TypeError, match=expected):
        af.fork.options(**{option: value})
    with pytest.raises(TypeError, match=expected):
        af.group().fork.options(**{option: value})
    assert af.fork.options(**{option: True})._detached is (option == "detached")
    assert af.fork.options(**{option: False})._daemon is False


def test_fork_options_messages_say_what_was_given() -> None:
    """The TypeError names the option, says what to write and what it got."""
    with pytest.raises(TypeError) as info:
        af.fork.options(daemon="false")  # type: ignore[arg-type]
    assert str(info.value) == (
        "fork.options(daemon=...) must be True or False, not a str ('false')"
    )
    with pytest.raises(TypeError) as info:
        af.fork.options(name=42)  # type: ignore[arg-type]
    assert str(info.value) == (
        "fork.options(name=...) must be a str, or None for the callable's name, not an int (42)"
    )
    with pytest.raises(TypeError) as info:
        af.fork.options(on_cancel=True)  # type: ignore[arg-type]
    assert str(info.value) == (
        "fork.options(on_cancel=...) must be 'wait' or 'abandon', not a bool (True)"
    )


async def test_a_str_subclass_name_is_kept_as_a_plain_str():
    """The name is a plain str: a subclass's own methods never run in reprs and messages."""

    class Loud(str):
        def __repr__(self) -> str:
            raise ValueError("repr of the name")

    fut = af.fork.options(name=Loud("loud"))(three)
    assert type(fut.name) is str
    assert fut.name == "loud"
    assert repr(fut).startswith("<asyncfork.Future 'loud' ")
    assert await within(fut) == 3


def test_timeout_and_limit_of_the_wrong_type_are_type_errors(loop_kind):
    """A non-number timeout or a non-int limit is rejected, naming the option."""
    fut = af.fork(three)
    with pytest.raises(TypeError, match=r"wait\(timeout=\.\.\.\) must be a number"):
        af.wait(fut, timeout="1")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"group\(limit=\.\.\.\) must be an int"):
        af.group(limit=1.5)  # type: ignore[arg-type]
    assert af.wait(fut, timeout=T) == 3


def test_bad_on_cancel_and_limit_are_valueerror_naming_the_option() -> None:
    """on_cancel="x" and limit=0: ValueError naming the option."""
    with pytest.raises(ValueError, match="on_cancel"):
        af.fork.options(on_cancel="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        af.group(limit=0)
    with pytest.raises(ValueError, match="limit"):
        af.group(limit=-3)


async def test_fork_reprs_say_where_they_fork():
    """`af.fork` and `g.fork` show what they fork into."""
    assert repr(af.fork) == "<asyncfork.fork>"
    async with af.group(name="g1") as g:
        assert repr(g.fork).startswith("<fork into <asyncfork.group 'g1' open")
