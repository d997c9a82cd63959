"""Sync forks on a user's ``concurrent.futures.Executor``."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from contextvars import Context
from typing import Any

from . import _instruments
from ._coroutine_fork import cancel_coroutine, drive_returned, new_task
from ._future import PENDING, TAKEN_IN, Future, SettleIfDropped
from ._instruments import HOOKS
from ._mailbox import owns_loop, post
from ._outcome import finish, may_settle_in_thread, settle_in_thread, settle_off_loop


def start_executor(
    fut: Future[Any], *, executor: Executor, func: Callable[..., Any], args: Any, kwargs: Any
) -> None:
    fut._started = True
    if HOOKS:
        _instruments.call("fork_started", fut, type(executor).__name__)
    try:
        # An executor that needs the fork (asyncfork.dask's: its name, its on_cancel).
        submit_fork = getattr(executor, "submit_fork", None)
        if submit_fork is None:
            cf = executor.submit(func, *args, **kwargs)
        else:
            cf = submit_fork(fut, func, args, kwargs)
    except BaseException as exc:
        finish(fut, None, exc)
        return
    fut._item = cf
    loop = fut._loop

    def returned(cf: Any) -> None:
        if not cf.cancelled() and may_settle_in_thread(fut):
            value, error = _outcome_of(fut, cf)
            if settle_in_thread(fut, value, error):
                return
        fut._handoff = _settle_posted  # until the loop takes it in (see sync_returned)
        try:
            if owns_loop(loop):
                post(loop, executor_settle, fut, cf)
            else:  # a user's loop may be closed with the call still queued
                post(loop, SettleIfDropped(fut, executor_settle, fut, cf))
        except RuntimeError:  # the loop is closed: settle here
            if fut._claim_handoff() is not None:
                _settle_off_loop(fut, cf)
            else:
                _close_coroutine(fut, cf)

    cf.add_done_callback(returned)


def _outcome_of(fut: Future[Any], cf: Any) -> tuple[Any, BaseException | None]:
    if cf.cancelled():
        return None, fut._cancelled_error()
    error = cf.exception()
    return (cf.result() if error is None else None), error


def executor_settle(fut: Future[Any], cf: Any) -> None:
    fut._handoff = TAKEN_IN  # the loop settles the fork from here on
    value, error = _outcome_of(fut, cf)
    if HOOKS and fut._state == PENDING and (ran := getattr(cf, "ran", None)) is not None:
        _instruments.call("fork_ran_remotely", fut, *ran)  # a Dask cluster's call
    returned_coroutine = error is None and inspect.iscoroutine(value)
    if fut._state != PENDING or (error is None and fut._cancel_requested):
        if returned_coroutine:
            value.close()  # abandoned, or cancelled while it ran: nothing runs it
        if fut._state != PENDING:
            return
        value, error = None, fut._cancelled_error()
    elif returned_coroutine:
        # As for thread forks: the coroutine runs on the host loop, as this same fork.
        # Executor forks take no context copy, so it starts in a fresh context.
        fut._returned = value
        fut._started = False
        fut._canceller = cancel_coroutine
        fut._task = new_task(fut, drive_returned(fut, value), Context())
        return
    finish(fut, value, error)


def _settle_posted(fut: Future[Any]) -> None:
    """Settle from the executor's future: the loop closed before taking the outcome in."""
    _settle_off_loop(fut, fut._item)


def _close_coroutine(fut: Future[Any], cf: Any) -> None:
    """An abandoned fork, settled already: close a coroutine its call returned."""
    if fut._state != PENDING and not cf.cancelled() and cf.exception() is None:
        value = cf.result()
        if inspect.iscoroutine(value):
            value.close()


def _settle_off_loop(fut: Future[Any], cf: Any) -> None:
    """The fork's loop closed before it took the outcome in: settle in this thread."""
    value, error = _outcome_of(fut, cf)
    settle_off_loop(fut, value, error)


def cancel_executor(fut: Future[Any], msg: str | None) -> None:
    cf = fut._item
    if cf is None:
        finish(fut, None, fut._cancelled_error())  # not submitted yet: it never will be
        return
    if cf.cancel():
        return  # its done-callback settles the Future as cancelled
    if fut._on_cancel == "abandon":
        finish(fut, None, fut._cancelled_error())
