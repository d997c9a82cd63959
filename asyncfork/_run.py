"""The root of ``af.run``, and ``current``, ``check_cancelled``, ``configure``, ``shutdown``."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from . import _fork, _runner, _threads
from ._errors import check_bool, check_count
from ._fork import fork
from ._future import Future
from ._mailbox import close_mailbox, forget_mailbox, open_mailbox
from ._runner import Roots, cancel_remaining_tasks, disown, new_event_loop, own
from ._scope import current_fork, joined_future, wake


def run_root(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``af.run`` without its tracing switch: ``func`` as the root fork of a new loop."""
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            "af.run() cannot be called from a running event loop: in async code write "
            "`await af.fork(func, ...)` instead"
        )
    loop = new_event_loop()
    roots = Roots(loop)
    own(loop, roots)
    open_mailbox(loop)
    try:
        asyncio.set_event_loop(loop)
        started: list[Future[Any]] = []
        try:
            interrupt = loop.run_until_complete(_supervise(started, roots, func, args, kwargs))
        except KeyboardInterrupt:  # Ctrl-C outside any fork's code (the loop was idle)
            _cancel_and_clean_up(loop, roots)
            raise
        if interrupt is not None:
            started[0]._mark_retrieved()  # reported by raising the interrupt itself
            raise interrupt
        return started[0].result()
    finally:
        disown(loop)
        try:
            loop.run_until_complete(close_mailbox(loop))
            cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            forget_mailbox(loop)


async def _supervise(
    started: list[Future[Any]],
    roots: Roots,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> BaseException | None:
    """Fork the root on this loop and wait for it, then drain the other roots.

    On an interrupt, cancel them all and return it.
    """
    root: Future[Any] = fork.options(detached=True)(func, *args, **kwargs)
    started.append(root)
    loop = asyncio.get_running_loop()
    interrupted: asyncio.Future[BaseException] = loop.create_future()

    def on_interrupt(exc: BaseException) -> None:
        if not interrupted.done():
            interrupted.set_result(exc)

    roots.on_interrupt = on_interrupt
    await _first_of(root, interrupted)
    if not interrupted.done():
        roots.cancel_daemons()
        await _first_of(joined_future(roots, loop), interrupted)
    if not interrupted.done():
        interrupted.cancel()
        return None
    roots.cancel_all("KeyboardInterrupt")
    await roots.drained()
    return interrupted.result()


async def _first_of(*futures: asyncio.Future[Any] | Future[Any]) -> None:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for fut in futures:
        fut.add_done_callback(lambda _: wake(waiter))
    await waiter


def _cancel_and_clean_up(loop: asyncio.AbstractEventLoop, roots: Roots) -> None:
    """After Ctrl-C: cancel every fork and let their cleanup run; a second Ctrl-C gives up."""
    roots.cancel_all("KeyboardInterrupt")
    try:
        loop.run_until_complete(roots.drained())
    except KeyboardInterrupt:
        pass


def current() -> Future[Any] | None:
    """The Future of the fork whose code is running now (coroutine or sync), or None."""
    return current_fork()


def check_cancelled() -> None:
    """In a sync fork's worker thread: raise ``CancelledError`` if the fork was cancelled.

    A running sync function cannot be interrupted; call this at convenient
    points to stop early. Raises ``RuntimeError`` anywhere but in a sync fork's
    thread (in a coroutine, cancellation arrives at the next ``await``).

    Raises:
        asyncio.CancelledError: the fork running this code was cancelled.
        RuntimeError: called anywhere but in a sync fork's thread.
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
    eager: bool = _UNSET,
) -> None:
    """Set how asyncfork makes its loops, how many worker threads run at once, and
    whether coroutine forks start eagerly.

    - ``loop``: ``"asyncio"``, ``"uvloop"``, a callable that returns a new event
      loop, or ``None`` for the default (the ``ASYNCFORK_LOOP`` environment variable,
      else uvloop when installed, else asyncio). Applies to loops made afterwards:
      call :func:`shutdown` first to restart the background loop.
    - ``workers``: the most sync forks that run at once in asyncfork's threads
      (``None``: the default, 40, as anyio's and trio's thread offload).
    - ``eager``: the default of ``fork.options(eager=...)`` for every loop: ``True``
      runs a coroutine fork made on its loop's thread up to its first suspension
      inside ``fork()`` (Python 3.12+; 3.11 starts it lazily). Default ``False``.

    Raises:
        TypeError: for a value of the wrong type.
        ValueError: for an unknown loop name or a worker count below 1.
    """
    if loop is not _UNSET:
        _runner.set_loop_choice(loop)
    if workers is not _UNSET:
        default = f"the default ({_threads.default_limit()})"
        _threads.set_worker_limit(check_count(workers, "configure(workers=...)", default))
    if eager is not _UNSET:
        _fork.EAGER_DEFAULT = check_bool(eager, "configure(eager=...)")


def shutdown(*, cancel: bool = False, timeout: float | None = None) -> None:
    """Drain the background loop and the worker threads, then stop them.

    Waits for every pending fork on the background loop (``cancel=True`` cancels
    them first; daemon forks are always cancelled, and a daemon's running sync call
    is abandoned, not waited for). Raises ``TimeoutError`` if ``timeout`` seconds
    pass first. Any later use of asyncfork restarts them. On a thread that runs an
    event loop it raises :class:`~asyncfork.DeadlockError`: write
    ``await asyncio.to_thread(af.shutdown)``.

    Raises:
        TimeoutError: ``timeout`` seconds passed before the forks finished.
        DeadlockError: called on a thread that runs an event loop.
        TypeError: for a ``timeout`` that is not a number (``ValueError`` if negative).
    """
    _runner.shutdown(cancel=cancel, timeout=timeout)
