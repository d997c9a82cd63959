"""Static typing checks for asyncfork's public API.

Not collected by pytest (its name is not ``test_*.py``) and never meant to run:
``mypy --strict tests/typing`` and ``pyright`` (strict here, see pyproject.toml)
check that every ``assert_type`` below holds. Wrong calls are checked by
``tests/test_typing.py``, which expects the checkers to reject them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, assert_type

import asyncfork as af


async def async_fn(x: int) -> int:
    return x


def sync_fn(x: int) -> int:
    return x


async def async_str(s: str, *, upper: bool = False) -> str:
    return s.upper() if upper else s


def sync_none() -> None:
    pass


def check_fork() -> None:
    fut = af.fork(async_fn, 1)
    assert_type(fut, af.Future[int])
    assert_type(af.fork(sync_fn, 1), af.Future[int])
    assert_type(af.fork(async_str, "a", upper=True), af.Future[str])
    assert_type(af.fork(sync_none), af.Future[None])
    assert_type(af.fork(lambda: 1.5), af.Future[float])


def check_fork_options() -> None:
    assert_type(af.fork.options(name="x")(async_fn, 1), af.Future[int])
    assert_type(af.fork.options(timeout=1.0, daemon=True)(sync_fn, 1), af.Future[int])
    with ThreadPoolExecutor() as ex:
        assert_type(af.fork.options(executor=ex)(sync_fn, 1), af.Future[int])
    forker = af.fork.options(on_cancel="abandon", detached=True)
    assert_type(forker(async_str, "a"), af.Future[str])


def check_future_methods(fut: af.Future[int]) -> None:
    assert_type(fut.result(), int)
    assert_type(fut.result(timeout=1), int)
    assert_type(fut.exception(), BaseException | None)
    assert_type(fut.done(), bool)
    assert_type(fut.cancelled(), bool)
    assert_type(fut.cancel(), bool)
    assert_type(fut.cancel("why"), bool)
    assert_type(fut.name, str)
    assert_type(fut.parent, af.Future[Any] | None)

    def on_done(f: af.Future[int]) -> None:
        pass

    fut.add_done_callback(on_done)
    assert_type(fut.remove_done_callback(on_done), int)


def check_wait(fut: af.Future[int], futs: list[af.Future[int]]) -> None:
    assert_type(af.wait(fut), int)
    assert_type(af.wait(fut, timeout=1.0), int)
    assert_type(af.wait([fut, fut]), list[int])
    assert_type(af.wait(futs, return_exceptions=False), list[int])
    assert_type(af.wait(f for f in futs), list[int])


def check_as_completed(futs: list[af.Future[int]]) -> None:
    for f in af.as_completed(futs, timeout=1.0):
        assert_type(f, af.Future[int])


async def check_as_completed_async(futs: list[af.Future[int]]) -> None:
    async for f in af.as_completed(futs):
        assert_type(f, af.Future[int])


async def check_await() -> None:
    fut = af.fork(async_fn, 1)
    value = await fut
    assert_type(value, int)
    assert_type(await af.fork(sync_fn, 2), int)
    values = await asyncio.gather(fut, af.fork(async_str, "a"))
    assert_type(values, tuple[int, str])


async def check_async_wait_spellings(fut: af.Future[int], futs: list[af.Future[int]]) -> None:
    # The spellings the docs recommend in async code (`af.wait` is typed as blocking).
    assert_type(await fut, int)
    assert_type(await af.wait_async(fut), int)
    assert_type(await af.wait_async(futs), list[int])
    assert_type(await af.wait_async(futs, timeout=1.0, return_exceptions=False), list[int])
    assert_type(await af.wait_async(f for f in futs), list[int])
    assert_type(await asyncio.gather(*futs), list[int])


def check_future_wait_method(fut: af.Future[int]) -> None:
    assert_type(fut.wait(), int)


async def check_names_bound_in_an_async_group_body() -> int:
    async with af.group() as g:
        fut = g.fork(async_fn, 1)
    return await fut  # bound here: the exit is typed as never swallowing the body's error


async def check_async_group_body_may_return() -> int:
    async with af.group() as g:
        return await g.fork(async_fn, 1)  # nothing falls through the block


def check_names_bound_in_a_sync_group_body() -> int:
    with af.group() as g:
        fut = g.fork(sync_fn, 1)
    return fut.result()


def check_sync_group_body_may_return() -> int:
    with af.group() as g:
        return g.fork(sync_fn, 1).result()


async def check_async_group() -> None:
    async with af.group(limit=2, timeout=1.0, name="g") as g:
        assert_type(g, af.Group)
        assert_type(g.fork(async_fn, 1), af.Future[int])
        assert_type(g.fork(sync_fn, 1), af.Future[int])
        assert_type(g.fork.options(name="child")(async_str, "a"), af.Future[str])
        g.cancel()


def check_sync_group() -> None:
    with af.group() as g:
        assert_type(g.fork(async_fn, 1), af.Future[int])


def check_run() -> None:
    assert_type(af.run(async_fn, 1), int)
    assert_type(af.run(sync_fn, 1), int)
    assert_type(af.run(async_str, "a", upper=True), str)


def check_misc() -> None:
    assert_type(af.current(), af.Future[Any] | None)
    af.check_cancelled()
    af.shutdown()
    af.shutdown(cancel=True, timeout=1.0)
    af.configure(loop="asyncio", workers=4)
    af.configure(loop=None, workers=None)
    assert issubclass(af.DeadlockError, RuntimeError)
    err: RuntimeError = af.DeadlockError("x")  # a RuntimeError subclass
    del err


def check_fork_is_callable_like_fork() -> None:
    f: Callable[..., af.Future[Any]] = af.fork
    g: Callable[..., af.Future[Any]] = af.fork.options(name="n")
    f(sync_fn, 1).cancel()
    g(sync_fn, 1).cancel()
