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
from ._carriers import carried_steps
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
    """The task body of a coroutine fork: run it, join its children, settle its Future.

    Its locals are few on purpose: every pending fork holds this frame.
    """
    fut._started = True
    if fut._task is None:  # started eagerly, inside fork(): its Task is being made
        fut._task = _current_task()
    CURRENT.set(fut)
    try:
        value = func(*args, **kwargs) if kwargs else func(*args)
        if HOOKS:
            value = _instruments.coroutine_starting(fut, value)
        if fut._carried is not None:  # thread-bound state: entered around each step
            value = carried_steps(value, fut._carried)
        value = await value
    except BaseException as exc:  # KeyboardInterrupt too: a fork never takes its loop down
        _failed(fut, exc)
        if fut._children or fut._inflight:
            fut._cancel_children()
            await _join_then_finish(fut, None, exc)
        else:
            finish(fut, None, exc)
        # The traceback reaches this frame: drop its references, or they form a cycle
        # that keeps a failed Future (and its never-retrieved report) alive until a GC.
        del fut, exc
        return
    if fut._children or fut._inflight:
        await _join_then_finish(fut, value, None)
    else:
        finish(fut, value, None)


_DRIVE_CODE = drive.__code__


def _failed(fut: Future[Any], exc: BaseException) -> None:
    """Start the traceback in the fork's function; a Ctrl-C is noted for the loop's owner."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is _DRIVE_CODE:
        exc.with_traceback(tb.tb_next)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        note_interrupt(fut._loop, exc)


async def _join_then_finish(fut: Future[Any], value: Any, exc: BaseException | None) -> None:
    """Wait for every child, then settle; a cancellation meanwhile cancels them, and a fork
    that had not failed then ends cancelled."""
    cancelled = None
    loop = fut._loop
    while fut._children or fut._inflight:
        try:
            await joined_future(fut, loop)
        except CancelledError as cancel:
            cancelled = cancel
            fut._on_joined = None
            fut._cancel_children()
    if exc is None and cancelled is not None:
        finish(fut, None, cancelled)
    else:
        finish(fut, value, exc)


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
