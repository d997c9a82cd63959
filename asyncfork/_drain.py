"""``drain``: wait for (or cancel) the forks of the running loop, any loop, with a deadline."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop
from functools import partial

from ._errors import DeadlockError, check_bool, check_timeout
from ._runner import ROOTS, Roots
from ._scope import CURRENT, wake


# timeout= as af.shutdown() takes it: on timeout drain says how many forks are left, which
# asyncio.timeout() around it could not.
async def drain(*, cancel: bool = False, timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Wait until every root fork made on the running loop has finished.

    For a loop asyncfork does not own (a web server's): await it in a lifespan or
    shutdown handler, so the forks made by request handlers, async and sync alike
    (a sync fork, and a fork from a ``def`` endpoint's worker thread, is a root fork
    of the app's loop), finish before the server closes the loop. Their children
    are joined with them, and forks made meanwhile are waited for too.

    Daemon forks are cancelled, as at ``af.shutdown()`` (a daemon's running sync call is
    abandoned). ``cancel=True`` cancels every fork first and waits for their cleanup;
    a running sync call cannot be interrupted, so that wait lasts until it returns.

    Returns ``None`` once nothing is left. If ``timeout`` seconds pass first it raises
    ``TimeoutError`` saying how many are still running; the forks go on (write
    ``await af.drain(cancel=True, timeout=...)`` next to cancel them). Raises
    :class:`~asyncfork.DeadlockError` in a fork or group of this loop, which would
    wait for itself.

    Raises:
        TimeoutError: ``timeout`` seconds passed first; the forks go on.
        DeadlockError: awaited in a fork or group of the loop it drains.
        RuntimeError: awaited where no asyncio event loop runs.
    """
    timeout = check_timeout(timeout, "drain(timeout=...)")
    cancel = check_bool(cancel, "drain(cancel=...)")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "af.drain() must be awaited on a running asyncio event loop: it drains the forks "
            "of that loop (for asyncfork's background loop, call af.shutdown() from sync code)"
        ) from None
    node = CURRENT.get()
    if node is not None and node._host_loop() is loop:
        raise DeadlockError(
            "af.drain() waits for every fork and group of this loop, and it was called inside "
            "one of them, so it would wait for itself: call it outside "
            "any fork, e.g. in a lifespan or shutdown handler, or wait for the forks you "
            "need with `await fut`"
        )
    deadline = None if timeout is None else loop.time() + timeout
    how = "all" if cancel else "daemons"
    while True:
        roots = ROOTS.get(loop)
        if roots is not None:
            while True:
                # Every pass: forks made meanwhile are cancelled as the first ones were.
                if how == "all":
                    roots.cancel_all("af.drain(cancel=True)")
                else:
                    roots.cancel_daemons("af.drain()")
                if roots.joined():
                    break
                if not await _joined_by(roots, loop, deadline):
                    raise _timed_out(roots, timeout, cancel)
        # A root fork posted from another thread before now reaches the loop in this
        # iteration: one more look once the loop has run it.
        await asyncio.sleep(0)
        roots = ROOTS.get(loop)
        if roots is None or roots.joined():
            return


async def _joined_by(roots: Roots, loop: AbstractEventLoop, deadline: float | None) -> bool:
    """Wait until ``roots`` is joined or ``deadline`` (loop time) passes; True if joined."""
    waiter: asyncio.Future[None] = loop.create_future()
    callback = partial(wake, waiter)
    roots._when_joined(callback)
    timer = None if deadline is None else loop.call_at(deadline, wake, waiter)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        try:  # a waiter that gave up leaves nothing behind on the root set
            roots._joined_callbacks.remove(callback)
        except ValueError:
            pass
    return roots.joined()


def _timed_out(roots: Roots, timeout: float | None, cancel: bool) -> TimeoutError:
    left = roots.pending()
    if cancel:
        return TimeoutError(
            f"af.drain(cancel=True): {left} forks of this loop were still finishing after "
            f"{timeout}s (a running sync call cannot be interrupted; it ends when it returns)"
        )
    return TimeoutError(
        f"af.drain(): {left} forks of this loop still running after {timeout}s; they go on. "
        "Write `await af.drain(cancel=True, timeout=...)` to cancel them"
    )
