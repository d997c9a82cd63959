"""``wait``, ``wait_async`` and ``as_completed``: blocking in sync code, awaitable in coroutines."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import queue
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast, overload

from . import _threads
from ._blocking import (
    Announced,
    Registered,
    Waker,
    block_until_done,
    done_failure,
    forget,
    prepare,
    timed_out,
    waited_at_once,
)
from ._caller import COROUTINE_CODE, asyncio_only, in_coroutine_body
from ._errors import blocks_the_loop, check_bool, check_timeout, describe
from ._future import Future
from ._instruments import HOOKS
from ._mailbox import post
from ._trio import sleep_until_done

T = TypeVar("T")
_get_running_loop = asyncio._get_running_loop


async def _await_done(
    futs: Sequence[Future[Any]], seconds: float | None, fail_fast: bool, what: str
) -> Future[Any] | None:
    pending = prepare(futs, f"await {what}")
    if fail_fast and (failure := done_failure(futs)) is not None:
        return failure
    if not pending:
        return None
    loop = _get_running_loop()
    if loop is None:  # no asyncio loop runs here: trio's may (else this raises)
        try:
            return await sleep_until_done(pending, seconds, fail_fast, f"await {what}")
        except TimeoutError:
            raise timed_out(futs, seconds, what) from None
    woken: asyncio.Future[None] = loop.create_future()

    def fire() -> None:
        if _get_running_loop() is loop:
            if not woken.done():
                woken.set_result(None)
            return
        try:
            post(loop, fire)  # a Future of another loop settled, in that loop's thread
        except RuntimeError:  # this loop is closed: nobody is left to wake
            pass

    waker = Waker(len(pending), fail_fast, fire)
    with Registered(pending, waker):
        if seconds is None:
            await woken
        else:
            try:
                await asyncio.wait_for(asyncio.shield(woken), seconds)
            except TimeoutError:
                raise timed_out(futs, seconds, what) from None
    return waker.first_failure


async def _announced_await_done(
    futs: Sequence[Future[Any]], seconds: float | None, fail_fast: bool, what: str
) -> Future[Any] | None:
    """``_await_done`` with instruments installed: every wait is announced, on finished
    Futures too. Apart, so that the path without instruments pays no extra frame."""
    prepare(futs, f"await {what}")  # a wait on oneself raises before it is announced
    with Announced(futs):
        return await _await_done(futs, seconds, fail_fast, what)


def _values(
    futs: Sequence[Future[Any]], first_failure: Future[Any] | None, collect: bool
) -> list[Any]:
    if first_failure is not None:
        first_failure._outcome()  # raises it, as it is
    if not collect:
        return [fut._outcome() for fut in futs]
    values: list[Any] = []
    for fut in futs:
        try:
            values.append(fut._outcome())
        except BaseException as exc:  # return_exceptions=True: every outcome goes in the list
            values.append(exc)
    return values


def _not_a_future(obj: object, what: str, index: int | None, container: object = None) -> TypeError:
    """The TypeError for something wait() or as_completed() cannot take, with a hint."""
    if index is None:
        wrong = f"{what} takes an asyncfork Future or an iterable of them, not {describe(obj)}"
    else:
        wrong = f"{what} takes asyncfork Futures, but item {index} is {describe(obj)}"
    return TypeError(wrong + _hint(obj, container))


def _hint(obj: object, container: object) -> str:
    """What to write instead, for the common mix-ups ("" where asking the object fails)."""
    try:
        return _mix_up(obj, container)
    except Exception:
        return ""


def _mix_up(obj: object, container: object) -> str:
    if inspect.iscoroutine(obj):
        name = _plain_name(obj)
        return (
            f": a coroutine object runs only when awaited; fork its function to get a Future, "
            f"af.fork({name}, ...) instead of {name}(...), or await it"
        )
    if isinstance(obj, asyncio.Future):
        return ": await it instead (asyncio.gather or asyncio.wait for several)"
    if isinstance(obj, concurrent.futures.Future):
        return (
            ": call its .result() instead, or in async code await asyncio.wrap_future(f) "
            "(concurrent.futures.wait for several)"
        )
    if inspect.isawaitable(obj):
        return ": await it instead (asyncio.gather for several)"
    if isinstance(container, Mapping):
        return ": iterating a mapping gives its keys; pass its .values()"
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return f": fork it first, af.fork({_plain_name(obj)}, ...)"
    if container is not None and isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        return ": pass one flat iterable of Futures"
    return ""


def _plain_name(obj: object) -> str:
    """The name a user writes for a function (``func`` if it has none that reads as one)."""
    name = getattr(obj, "__name__", None)
    return str.__str__(name) if isinstance(name, str) and name.isidentifier() else "func"


def _as_futures(obj: object, what: str) -> tuple[list[Future[Any]], bool]:
    if isinstance(obj, Future):
        return [cast("Future[Any]", obj)], True  # type: ignore[redundant-cast]  # for pyright
    if inspect.isawaitable(obj) or isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        try:
            raise _not_a_future(obj, what, None)
        finally:
            _close_coroutines([obj])
    items: list[object] = list(cast("Iterable[object]", obj))
    for index, item in enumerate(items):
        if not isinstance(item, Future):
            try:
                raise _not_a_future(item, what, index, cast(object, obj))
            finally:
                _close_coroutines(items)
    return cast("list[Future[Any]]", items), False


def _close_coroutines(items: list[object]) -> None:
    """Close the coroutine objects among rejected arguments, so none warns it was never awaited."""
    for item in items:
        if inspect.iscoroutine(item):
            try:
                item.close()
            except Exception:  # its cleanup failed: the TypeError is what the caller needs
                pass


@overload
def wait(
    fut: Future[T], /, *, timeout: float | None = None, return_exceptions: bool = False
) -> T: ...


@overload
def wait(
    futs: Iterable[Future[T]], /, *, timeout: float | None = None, return_exceptions: bool = False
) -> list[T]: ...


def wait(
    fut_or_iterable: Future[Any] | Iterable[Future[Any]],
    /,
    *,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> Any:
    """Return a fork's value, or a list of values in input order.

    Blocks in sync code on a thread without a running event loop. In sync code on
    a thread that runs one (a notebook cell, a sync helper called from a coroutine, a
    loop callback) it acts as ``fut.result()`` does there: the values if every Future
    is done already, else :class:`~asyncfork.DeadlockError`, since blocking would
    freeze that loop. Called in the body of a coroutine function it returns an
    awaitable instead (``await af.wait(...)`` works at run time, but type checkers
    see the blocking form: in async code write ``await fut``, or
    ``await af.wait_async(futs)`` for several).

    Fails fast: the first failure (in completion order) is raised as it is while
    the other forks go on; with ``return_exceptions=True`` exceptions (and
    ``CancelledError`` for cancelled forks) are put in the list instead.
    ``timeout`` only observes: ``TimeoutError`` is raised and the work goes on.

    Raises:
        BaseException: the first failure of the forks, as the fork raised it
            (``asyncio.CancelledError`` for a cancelled one), unless ``return_exceptions``.
        TimeoutError: ``timeout`` seconds passed first; the forks go on.
        DeadlockError: in sync code on a thread that runs an event loop, for a Future
            that is not done yet.
        TypeError: for an argument that is not a Future or an iterable of Futures.
    """
    futs, single = _as_futures(fut_or_iterable, "wait()")
    timeout = check_timeout(timeout, "wait(timeout=...)")
    return_exceptions = check_bool(return_exceptions, "wait(return_exceptions=...)")
    caller = sys._getframe(1)
    if caller.f_code.co_flags & COROUTINE_CODE:  # `await af.wait(...)`: the fast case
        return _wait_async(futs, single, timeout, return_exceptions)
    fail_fast = not return_exceptions
    if _get_running_loop() is None:
        first_failure = block_until_done(futs, timeout, "af.wait()", fail_fast)
    elif in_coroutine_body(caller):  # a comprehension in a coroutine body, on 3.11
        return _wait_async(futs, single, timeout, return_exceptions)
    else:
        first_failure = _without_blocking(futs, timeout, fail_fast)
    values = _values(futs, first_failure, return_exceptions)
    return values[0] if single else values


def _without_blocking(
    futs: Sequence[Future[Any]], timeout: float | None, fail_fast: bool
) -> Future[Any] | None:
    """``wait`` in sync code on a thread that runs a loop: what is done, or DeadlockError.

    It may not block there (the loop could never run the forks it waits for). What
    is done already is its answer, as for ``fut.result()``; a wait that would have
    to block raises the ``DeadlockError`` that ``result()`` raises.
    """
    pending = prepare(futs, "af.wait()")  # waiting on oneself is the worse mistake: named first
    failure = done_failure(futs) if fail_fast else None
    if failure is not None or not pending:
        if HOOKS:
            waited_at_once(futs)
        return failure
    return block_until_done(futs, timeout, "af.wait()", fail_fast)  # raises DeadlockError


@overload
def wait_async(
    fut: Future[T], /, *, timeout: float | None = None, return_exceptions: bool = False
) -> Coroutine[Any, Any, T]: ...


@overload
def wait_async(
    futs: Iterable[Future[T]], /, *, timeout: float | None = None, return_exceptions: bool = False
) -> Coroutine[Any, Any, list[T]]: ...


def wait_async(
    fut_or_iterable: Future[Any] | Iterable[Future[Any]],
    /,
    *,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> Coroutine[Any, Any, Any]:
    """The awaitable form of :func:`wait`, typed as such: ``await af.wait_async(futs)``.

    Same arguments and rules as ``wait`` (fail-fast, ``return_exceptions``, a
    ``timeout`` that only observes); works under asyncio and trio, from any coroutine.
    Cancelling the awaiting task leaves the forks running. Bad arguments raise here,
    at the call.

    Raises:
        BaseException: from the await, the first failure of the forks, as in ``wait``.
        TimeoutError: from the await, when ``timeout`` seconds passed first.
        TypeError: at the call, for an argument that is not a Future or an iterable of
            Futures.
    """
    futs, single = _as_futures(fut_or_iterable, "wait_async()")
    timeout = check_timeout(timeout, "wait_async(timeout=...)")
    return_exceptions = check_bool(return_exceptions, "wait_async(return_exceptions=...)")
    coro = _wait_async(futs, single, timeout, return_exceptions, "af.wait_async()")
    # A "never awaited" warning names what was called.
    coro.__qualname__ = "af.wait_async"  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    return coro


async def _wait_async(
    futs: list[Future[Any]],
    single: bool,
    seconds: float | None,
    return_exceptions: bool,
    what: str = "af.wait()",
) -> Any:
    if HOOKS:
        first_failure = await _announced_await_done(futs, seconds, not return_exceptions, what)
    else:
        first_failure = await _await_done(futs, seconds, not return_exceptions, what)
    values = _values(futs, first_failure, return_exceptions)
    return values[0] if single else values


# A "never awaited" warning names what the user called, not this module's helper.
_wait_async.__qualname__ = "af.wait"


class AsCompleted(Iterator[Future[T]]):
    """Futures in completion order, for ``for`` (blocking) and ``async for``."""

    __module__ = "asyncfork"

    def __init__(self, futs: Iterable[Future[T]], timeout: float | None) -> None:
        self._futs, _ = _as_futures(futs, "as_completed()")
        timeout = check_timeout(timeout, "as_completed(timeout=...)")
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._left = len(self._futs)
        self._queue: queue.SimpleQueue[Future[T]] | None = None
        self._async_queue: asyncio.Queue[Future[T]] | None = None

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(
            f"as_completed() timed out after {self._timeout}s with {self._left} of "
            f"{len(self._futs)} Futures unfinished (they go on running)"
        )

    def __iter__(self) -> AsCompleted[T]:
        return self

    def __next__(self) -> Future[T]:
        if self._left == 0:
            raise StopIteration
        if self._queue is None:
            done: queue.SimpleQueue[Future[T]] = queue.SimpleQueue()
            self._queue = done
            pending = prepare(self._futs, "as_completed()")
            if pending and _get_running_loop() is not None:
                raise blocks_the_loop(
                    "iterating af.as_completed() with `for`",
                    "write `async for fut in af.as_completed(...)`",
                )
            # No helping: a call run inline would hold back the Futures that finish
            # meanwhile, out of completion order; the worker lends its slot instead.
            for fut in self._futs:
                if fut.done():  # its callback would be scheduled on its loop: maybe this
                    done.put(fut)  # very thread, blocked below (a serial sync fork's)
                else:
                    fut.add_done_callback(done.put)
        pool = _threads.slot_lender()  # a Dask task lends its slot too
        if pool is not None:
            pool.lend_slot()
        got: list[Future[T]] = []
        done = self._queue

        def attempt(seconds: float) -> bool:
            try:
                got.append(done.get(timeout=None if seconds < 0 else seconds))
            except queue.Empty:
                return False
            return True

        try:
            if not _threads.wait_in_slices(attempt, self._remaining()):
                forget(self._futs, done.put)
                raise self._timed_out()
        finally:
            if pool is not None:
                pool.reclaim_slot()
        self._left -= 1
        return got[0]

    def __aiter__(self) -> AsyncIterator[Future[T]]:
        return self._async_iter()

    async def _async_iter(self) -> AsyncIterator[Future[T]]:
        loop = _get_running_loop()
        if loop is None:
            raise asyncio_only("async for over af.as_completed()")
        done: asyncio.Queue[Future[T]] = asyncio.Queue()
        prepare(self._futs, "as_completed()")

        def arrived(fut: Future[T]) -> None:
            if _get_running_loop() is loop:
                done.put_nowait(fut)
            else:
                post(loop, done.put_nowait, fut)

        for fut in self._futs:
            fut.add_done_callback(arrived)
        try:
            while self._left:
                try:
                    fut = await asyncio.wait_for(done.get(), self._remaining())
                except TimeoutError:
                    raise self._timed_out() from None
                self._left -= 1
                yield fut
        finally:
            forget(self._futs, arrived)


def as_completed(futs: Iterable[Future[T]], *, timeout: float | None = None) -> AsCompleted[T]:
    """Yield the Futures as they finish: ``for fut in ...`` blocks, ``async for`` awaits.

    ``timeout`` counts from this call; past it the iteration raises ``TimeoutError``
    (the forks go on).

    Raises:
        TimeoutError: from the iteration, once ``timeout`` seconds have passed.
        DeadlockError: from ``for`` in sync code on a thread that runs an event loop,
            when the next Future is not done yet: write ``async for``.
        RuntimeError: from ``async for`` where no asyncio loop runs (under trio).
        TypeError: for an argument that is not an iterable of Futures.
    """
    return AsCompleted(futs, timeout)
