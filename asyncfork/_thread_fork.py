"""Sync forks in worker threads: submitting, settling (in the worker or on the loop), cancelling."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextvars import Context
from functools import partial
from typing import Any

from . import _threads
from ._coroutine_fork import cancel_coroutine, drive_returned, new_task
from ._future import PENDING, TAKEN_IN, Future, settle_dropped
from ._mailbox import owns_loop, post
from ._outcome import finish, may_settle_in_thread, settle_in_thread, settle_off_loop
from ._runner import note_interrupt
from ._scope import CURRENT
from ._threads import WorkItem


def new_item(
    fut: Future[Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    context: Context,
    finish: Callable[[WorkItem, Any, BaseException | None], None],
) -> WorkItem:
    """The sync fork ``fut``'s call, to run in ``context`` as that fork (``af.current()``);
    ``finish`` takes its outcome (``sync_returned`` hands it to the fork's loop)."""
    fut._canceller = cancel_sync
    context.run(CURRENT.set, fut)
    item = fut._item = WorkItem(fut, func, args, kwargs, context, finish)
    return item


def submit_item(fut: Future[Any]) -> None:
    fut._started = True
    assert fut._item is not None
    _threads.pool().submit(fut._item)


def sync_returned(item: WorkItem, value: Any, error: BaseException | None) -> None:
    """In the worker thread: settle the fork here if nothing is left for its loop to
    decide, else hand the outcome to its loop."""
    fut = item.future
    if may_settle_in_thread(fut) and settle_in_thread(fut, value, error):
        return
    # Kept until the loop takes it in: should the loop close first (without running the
    # call posted here), the outcome is settled off the loop, by this thread or a waiter.
    if fut._state == PENDING:
        fut._result = value  # read only once the Future is settled, which overwrites it
        if error is not None:
            fut._posted_error = error
    fut._handoff = _settle_posted
    try:
        loop = fut._loop
        if owns_loop(loop):
            post(loop, sync_settle, fut, item, value, error)
        else:  # a user's loop may be closed with the call still queued
            post(loop, _SettleIfDropped(sync_settle, fut, item, value, error))
    except RuntimeError:  # the loop is closed: settle here, nobody else can
        if fut._claim_handoff() is not None:
            if error is not None:
                fut._posted_error = None
            settle_off_loop(fut, value, error)
        elif error is None and inspect.iscoroutine(value) and fut._state != PENDING:
            value.close()  # abandoned, and settled already: nothing runs it


class _SettleIfDropped(partial[None]):
    """``SettleIfDropped`` for a sync fork's outcome: a partial, so built and called
    without a Python frame (its Future is its first argument)."""

    __slots__ = ()

    def __del__(self) -> None:
        fut = self.args[0]
        if fut._state == PENDING:
            settle_dropped(fut)


def _settle_posted(fut: Future[Any]) -> None:
    """Settle the outcome kept on the Future: its loop closed before taking it in."""
    value, fut._result = fut._result, None
    error, fut._posted_error = fut._posted_error, None
    settle_off_loop(fut, value, error)


def sync_settle(fut: Future[Any], item: WorkItem, value: Any, error: BaseException | None) -> None:
    fut._handoff = TAKEN_IN  # the loop settles the fork from here on
    if error is not None:
        fut._posted_error = None
    returned_coroutine = error is None and inspect.iscoroutine(value)
    if fut._state != PENDING or (fut._cancel_requested and fut._on_cancel == "abandon"):
        # Abandoned: its result is dropped without noise.
        if returned_coroutine:
            value.close()
        if fut._state == PENDING:
            # Cancelled as it returned: the abandon path left the settling to us.
            fut._when_joined(partial(finish, fut, None, fut._cancelled_error()))
        return
    if returned_coroutine:
        if fut._cancel_requested:  # cancelled (or timed out) while the function ran
            value.close()
            value = None
        else:
            # A sync callable returned a coroutine: run it on the host loop, as this fork.
            fut._returned = value
            fut._started = False
            fut._canceller = cancel_coroutine
            fut._task = new_task(fut, drive_returned(fut, value), item.context)
            return
    if error is not None:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            note_interrupt(fut._loop, error)
        fut._cancel_children()
    if fut._children or fut._inflight:
        fut._when_joined(partial(sync_joined, fut, value, error))
    else:
        sync_joined(fut, value, error)  # no child: joined now, without a partial


def sync_joined(fut: Future[Any], value: Any, error: BaseException | None) -> None:
    if error is None and fut._cancel_requested:
        error = fut._cancelled_error()  # on_cancel="wait": the result is discarded
    finish(fut, value, error)


def cancel_sync(fut: Future[Any], msg: str | None) -> None:
    item = fut._item
    assert item is not None
    if _threads.pool().drop(item):
        finish(fut, None, fut._cancelled_error())  # never started
        return
    # Running in a thread: it cannot be interrupted, but its children can.
    fut._cancel_children(msg)
    if fut._on_cancel == "abandon" and item.state != _threads.FINISHED:
        fut._when_joined(partial(finish, fut, None, fut._cancelled_error()))
