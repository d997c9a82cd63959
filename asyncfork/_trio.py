"""trio as a caller: awaiting Futures from trio code, and refusing coroutine forks there.

asyncfork runs coroutine forks on asyncio. Code under ``trio.run`` (anyio on its trio
backend included) has no asyncio loop, yet it may fork sync callables (they run in
asyncfork's workers, hosted by the background loop) and await any Future. Such an await
parks the trio task on a ``trio.Event``; the thread that settles the fork sets it through
the run's ``TrioToken``, trio's public way in from other threads. Nothing here imports
trio: it is looked up in ``sys.modules``, so only a program that imported it pays.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from ._blocking import Announced, Registered, Waker, prepare
from ._caller import trio_token
from ._errors import callable_name
from ._instruments import HOOKS

if TYPE_CHECKING:
    from ._future import Future


def no_loop_error(what: str) -> RuntimeError:
    """The error for an await where neither an asyncio loop nor trio runs this thread."""
    return RuntimeError(
        f"{what} needs a running event loop in this thread: asyncio's, or a trio run "
        "(anyio on either backend included), and none runs here. In sync code, call "
        "af.wait(fut) or fut.result() without await"
    )


def coroutine_fork_error(func: object) -> RuntimeError:
    """``fork()`` of a coroutine function from trio code: what to write instead."""
    name = callable_name(func)
    return RuntimeError(
        f"cannot fork coroutine function {name} from trio: asyncfork runs coroutine forks "
        "as asyncio tasks, and no asyncio loop runs in this thread (trio does), so a "
        "coroutine written for trio could not run there. From trio, fork a sync function "
        "(it runs in asyncfork's worker threads; `await fut` works in trio), run trio "
        "coroutines in a trio nursery, and run a coroutine function written for asyncio "
        "or anyio on asyncfork's background loop by forking a sync callable that makes "
        "its coroutine: `af.fork(lambda: coroutine_fn(...))`"
    )


async def sleep_until_done(
    pending: Sequence[Future[Any]], seconds: float | None, fail_fast: bool, what: str
) -> Future[Any] | None:
    """In trio: sleep until ``pending`` are all done, or (fail-fast) one has failed.

    Returns the first failure seen, raises a bare ``TimeoutError`` after ``seconds``.
    A cancelled trio task leaves at once and takes its wakers back; the forks go on.
    """
    token = trio_token()
    if token is None:
        raise no_loop_error(what)
    trio: Any = sys.modules["trio"]
    woken = trio.Event()

    def fire() -> None:  # in the thread that settled the last Future (mostly its loop's)
        try:
            token.run_sync_soon(woken.set)
        except trio.RunFinishedError:  # that trio run has ended: nobody is left to wake
            pass

    waker = Waker(len(pending), fail_fast, fire)
    with Registered(pending, waker):
        if seconds is None:
            await woken.wait()
        else:
            with trio.move_on_after(seconds):
                await woken.wait()
            if not woken.is_set():
                raise TimeoutError
    return waker.first_failure


async def await_one(fut: Future[Any]) -> None:
    """``await fut`` in trio: sleep until ``fut`` is done (the caller reads its outcome)."""
    pending = prepare((fut,), "await")
    # Every wait is recorded when an instrument listens, on a finished Future too.
    with Announced((fut,)) if HOOKS else nullcontext():
        if pending:
            await sleep_until_done(pending, None, False, "await on an asyncfork Future")
