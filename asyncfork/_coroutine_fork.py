"""Coroutine forks: the task that runs one, joins its children and settles its Future."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
from asyncio import CancelledError
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from . import _instruments
from ._future import Future
from ._instruments import HOOKS
from ._outcome import finish
from ._runner import note_interrupt
from ._scope import CURRENT, joined_future

_Task = asyncio.Task
_current_task = asyncio.current_task


async def drive(
    fut: Future[Any], func: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
) -> None:
    """The task body of a coroutine fork: run it, join its children, settle its Future."""
    fut._started = True
    if fut._task is None:  # started eagerly, inside fork(): its Task is being made
        fut._task = _current_task()
    CURRENT.set(fut)
    try:
        awaitable = func(*args, **kwargs) if kwargs else func(*args)
        if HOOKS:
            awaitable = _instruments.coroutine_starting(fut, awaitable)
        value = await awaitable
    except BaseException as exc:  # KeyboardInterrupt too: a fork never takes its loop down
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is _DRIVE_CODE:
            exc = exc.with_traceback(tb.tb_next)  # start the traceback in the fork's function
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            note_interrupt(fut._loop, exc)
        if fut._children or fut._inflight:
            fut._cancel_children()
            await _join(fut)
        finish(fut, None, exc)
        # The traceback reaches this frame: drop its references, or they form a cycle
        # that keeps a failed Future (and its never-retrieved report) alive until a GC.
        del fut, exc
        return
    if fut._children or fut._inflight:
        cancelled = await _join(fut)
        if cancelled is not None:
            finish(fut, None, cancelled)
            return
    finish(fut, value, None)


_DRIVE_CODE = drive.__code__


async def _join(fut: Future[Any]) -> CancelledError | None:
    """Wait for every child; a cancellation meanwhile cancels them and is returned."""
    cancelled = None
    loop = fut._loop
    while fut._children or fut._inflight:
        try:
            await joined_future(fut, loop)
        except CancelledError as exc:
            cancelled = exc
            fut._on_joined = None
            fut._cancel_children()
    return cancelled


def start_coroutine(
    fut: Future[Any],
    *,
    func: Callable[..., Awaitable[Any]],
    args: Any,
    kwargs: Any,
    context: Any,
) -> None:
    fut._task = new_task(fut, drive(fut, func, args, kwargs), context)


def new_task(fut: Future[Any], coro: Coroutine[Any, Any, None], context: Any) -> asyncio.Task[None]:
    """The Task that runs ``coro`` for ``fut``, named after the fork, and so is its coroutine."""
    name = fut.name
    coro.__qualname__ = name  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    return _Task(coro, loop=fut._loop, context=context, name=name)


def cancel_coroutine(fut: Future[Any], msg: str | None) -> None:
    task = fut._task
    if task is not None:
        task.cancel(msg)  # if it has not stepped yet, its coroutine closes without running
        if fut._started:
            return  # drive settles the Future after the cleanup
    if fut._returned is not None:  # a coroutine a sync fork returned, never started
        fut._returned.close()
        fut._returned = None
    # Never started (launch will skip it). Only a sync fork's part can have made children.
    fut._cancel_children(msg)
    fut._when_joined(partial(finish, fut, None, fut._cancelled_error()))


async def drive_returned(fut: Future[Any], coro: Coroutine[Any, Any, Any]) -> None:
    fut._returned = None
    await drive(fut, _identity, (coro,), {})


def _identity(value: Any) -> Any:
    return value
