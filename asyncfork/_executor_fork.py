"""Sync forks on a user's ``concurrent.futures.Executor``."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from . import _instruments
from ._future import PENDING, Future
from ._instruments import HOOKS
from ._mailbox import post
from ._outcome import finish


def start_executor(
    fut: Future[Any], *, executor: Executor, func: Callable[..., Any], args: Any, kwargs: Any
) -> None:
    fut._started = True
    if HOOKS:
        _instruments.call("fork_started", fut, type(executor).__name__)
    try:
        cf = executor.submit(func, *args, **kwargs)
    except BaseException as exc:
        finish(fut, None, exc)
        return
    fut._item = cf
    loop = fut._loop

    def returned(cf: Any) -> None:
        try:
            post(loop, executor_settle, fut, cf)
        except RuntimeError:
            executor_settle(fut, cf)

    cf.add_done_callback(returned)


def executor_settle(fut: Future[Any], cf: Any) -> None:
    if fut._state != PENDING:
        return
    value = None
    error: BaseException | None
    if cf.cancelled():
        error = fut._cancelled_error()
    else:
        error = cf.exception()
        if error is None:
            value = cf.result()
            if fut._cancel_requested:
                error = fut._cancelled_error()
    finish(fut, value, error)


def cancel_executor(fut: Future[Any], msg: str | None) -> None:
    cf = fut._item
    if cf is None:
        finish(fut, None, fut._cancelled_error())  # not submitted yet: it never will be
        return
    if cf.cancel():
        return  # its done-callback settles the Future as cancelled
    if fut._on_cancel == "abandon":
        finish(fut, None, fut._cancelled_error())
