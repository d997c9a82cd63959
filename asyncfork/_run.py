"""``run``, ``current``, ``check_cancelled`` and ``configure``."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Literal, ParamSpec, TypeVar, overload

from . import _runner, _threads
from ._errors import check_count
from ._fork import _wake, fork
from ._future import Future, current_fork
from ._runner import OWNED, Roots, new_event_loop

P = ParamSpec("P")
T = TypeVar("T")


@overload
def run(func: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


@overload
def run(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


def run(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` as the root fork on a new event loop and return its value.

    Like ``asyncio.run``: the loop is made in this thread (uvloop when installed)
    and closed at the end. Every fork made on it is joined first; forks made with
    ``fork.options(daemon=True)`` are cancelled instead. On Ctrl-C everything is
    cancelled, its cleanup runs, and ``KeyboardInterrupt`` is raised.
    """
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            "af.run() cannot be called from a running event loop: in async code write "
            "`await af.fork(func, ...)` instead"
        )
    loop = new_event_loop()
    roots = Roots(loop)
    OWNED[loop] = roots
    try:
        asyncio.set_event_loop(loop)
        root: Future[Any] = fork.options(detached=True)(func, *args, **kwargs)
        try:
            loop.run_until_complete(_until_drained(root, roots))
        except KeyboardInterrupt:
            _cancel_everything(loop, roots)
            raise
        return root.result()
    finally:
        OWNED.pop(loop, None)
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _until_drained(root: Future[Any], roots: Roots) -> None:
    try:
        await asyncio.shield(_joined(root))
    except BaseException:  # pragma: no cover - only a stray cancellation of this task
        pass
    roots.cancel_daemons()
    await _joined_roots(roots)


async def _joined(fut: Future[Any]) -> None:
    try:
        await fut
    except BaseException:
        pass


async def _joined_roots(roots: Roots) -> None:
    loop = asyncio.get_running_loop()
    while roots.pending():
        waiter = loop.create_future()
        roots._when_joined(partial(_wake, waiter))
        await waiter


def _cancel_everything(loop: asyncio.AbstractEventLoop, roots: Roots) -> None:
    """After Ctrl-C: cancel every fork and task on the loop and let their cleanup run."""
    roots._cancel_children("KeyboardInterrupt")
    for task in asyncio.all_tasks(loop):
        task.cancel()
    try:
        loop.run_until_complete(_joined_roots(roots))
        pending = asyncio.all_tasks(loop)
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: leave the rest


def current() -> Future[Any] | None:
    """The Future of the fork whose code is running now (coroutine or sync), or None."""
    return current_fork()


def check_cancelled() -> None:
    """In a sync fork's worker thread: raise ``CancelledError`` if the fork was cancelled.

    A running sync function cannot be interrupted; call this at convenient
    points to stop early. Raises ``RuntimeError`` anywhere but in a sync fork's
    thread (in a coroutine, cancellation arrives at the next ``await``).
    """
    item = _threads.running_item()
    if item is None:
        raise RuntimeError(
            "af.check_cancelled() works only in a sync fork's worker thread; in a coroutine, "
            "cancellation arrives by itself at the next await"
        )
    fut = item.future
    if fut._cancel_requested:
        raise fut._cancelled_error()


_UNSET: Any = object()


def configure(
    *,
    loop: Literal["asyncio", "uvloop"] | Callable[[], asyncio.AbstractEventLoop] | None = _UNSET,
    workers: int | None = _UNSET,
) -> None:
    """Set how asyncfork makes its loops and how many worker threads run at once.

    - ``loop``: ``"asyncio"``, ``"uvloop"``, a callable that returns a new event
      loop, or ``None`` for the default (the ``ASYNCFORK_LOOP`` environment variable,
      else uvloop when installed, else asyncio). Applies to loops made afterwards:
      call :func:`shutdown` first to restart the background loop.
    - ``workers``: the most sync forks that run at once in asyncfork's threads
      (``None``: ``min(32, cpu_count + 4)``).
    """
    if loop is not _UNSET:
        _runner.set_loop_choice(loop)
    if workers is not _UNSET:
        _threads.set_worker_limit(check_count(workers, "configure(workers=...)"))


def shutdown(*, cancel: bool = False, timeout: float | None = None) -> None:
    """Drain the background loop and the worker threads, then stop them.

    Waits for every pending fork on the background loop (``cancel=True`` cancels
    them first; daemon forks are always cancelled). Raises ``TimeoutError`` if
    ``timeout`` seconds pass first. Any later use of asyncfork restarts them.
    """
    _runner.shutdown(cancel=cancel, timeout=timeout)
