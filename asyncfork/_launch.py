"""Launching a fork on its loop: registering it with its scope, its timeout, its start."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import time
from asyncio import AbstractEventLoop
from collections.abc import Callable
from typing import Any

from . import _future
from ._future import PENDING, Future
from ._mailbox import LoopClosing, post, post_root
from ._outcome import on_timeout


def post_launch(
    fut: Future[Any], start: Callable[[Future[Any]], None] | None, deadline: float | None
) -> None:
    """From another thread: launch on the fork's loop, counted so its parent waits for it."""
    parent = fut._scope
    counted = type(parent) is Future
    if counted:
        assert isinstance(parent, Future)
        with _future._inflight_lock:
            if parent._state != PENDING or parent._settling_here:
                parent._fork_target(fut)  # raises: the parent has finished
            parent._inflight += 1
            parent._forked_from_threads = True
    elif parent is not None and parent._is_root_set:
        # A root fork: refused (LoopClosing) once af.shutdown() closes its loop.
        if start is None and deadline is None:
            # Started already (queued for a worker, or launched on torch's pool): it only
            # joins the root set, which it does here, without waking the loop.
            try:
                parent._join_from_thread(fut)  # type: ignore[attr-defined]
            except LoopClosing:
                raise
            except RuntimeError:
                raise _closed(fut._loop) from None
            return
        _post(post_root, fut._loop, launch, fut, start, deadline)
        return
    try:
        _post(post, fut._loop, launch, fut, start, deadline, counted)
    except BaseException:
        if counted:
            with _future._inflight_lock:
                parent._inflight -= 1  # type: ignore[union-attr]
        raise


def _post(
    how: Callable[..., None], loop: AbstractEventLoop, fn: Callable[..., object], *args: Any
) -> None:
    try:
        how(loop, fn, *args)
    except LoopClosing:
        raise
    except RuntimeError:
        raise _closed(loop) from None


def _closed(loop: AbstractEventLoop) -> RuntimeError:
    return RuntimeError(
        f"cannot fork onto {loop!r}: the event loop is closed. Fork from code that runs "
        "while its loop does, or from a plain thread (which uses the background loop)"
    )


def launch(
    fut: Future[Any],
    start: Callable[[Future[Any]], None] | None,
    deadline: float | None,
    counted: bool = False,
) -> None:
    """On the fork's loop: register it with its scope, arm its timeout, and start it."""
    scope = fut._scope
    if counted:
        assert scope is not None
        with _future._inflight_lock:
            scope._inflight -= 1
        if fut._state != PENDING and not fut._settling_here:
            scope._inflight_arrived()
    if fut._state != PENDING:  # cancelled before it got here, or its call ended already
        if fut._settling_here and counted:
            # Settled in the thread its call ended in, before this registration: it stays
            # in its parent's scope until the loop takes it in (posted after this call).
            scope._add_child(fut)  # type: ignore[union-attr]
        return
    if scope is not None:
        if type(scope) is Future and scope._state != PENDING:
            # The parent finished while this fork was on its way from another thread.
            fut._scope = None
            fut._cancel_on_loop(f"its parent {scope!r} had finished")
            return
        scope._add_child(fut)
        if scope._cancel_requested:
            fut._cancel_on_loop("its parent was cancelled")  # it never starts
            return
    if deadline is not None:
        delay = deadline - time.monotonic()
        if delay <= 0:
            on_timeout(fut)  # it never starts
            return
        fut._timer = fut._loop.call_later(delay, on_timeout, fut)
    if start is not None:
        if scope is not None:
            scope._admit(fut, start)
        else:
            start(fut)
