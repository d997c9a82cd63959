"""Host loops of other libraries' worker threads: anyio's (FastAPI's ``def`` endpoints).

A thread that runs no loop and carries no fork's context forks onto the background
loop, unless it is a worker thread of another library whose host loop is known: then
it forks onto that loop, as asyncfork's own workers do, so that objects bound to the
host loop (a shared ``httpx.AsyncClient``) work from the forks of sync and async code
alike. Only consulted on that slow branch, and only if the program imported anyio.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from asyncio import AbstractEventLoop


class _Cache(threading.local):
    # The asyncio loop hosting this worker thread: an anyio worker thread serves one loop
    # for its whole life, so one round trip to that loop per thread is enough.
    loop: AbstractEventLoop | None = None
    # Looked up, and no asyncio host found: anyio marks its worker threads for their
    # whole life, so a thread that is not one now never becomes one (a trio host stays
    # trio). Spares plain threads the failed lookup on every fork.
    no_host = False


_cache = _Cache()


def foreign_host_loop() -> AbstractEventLoop | None:
    """The running asyncio loop that hosts this thread, if it is an anyio worker thread.

    ``None`` for any other thread, for a host that is not asyncio (anyio's trio
    backend), and for a host loop that has closed.
    """
    if "anyio" not in sys.modules:  # never import anyio for a program that does not use it
        return None
    cache = _cache
    loop = cache.loop
    if loop is not None:
        if not loop.is_closed():
            return loop
        cache.loop = None
    elif cache.no_host:
        return None
    loop = _anyio_host_loop()
    if loop is None:
        cache.no_host = True
    else:
        cache.loop = loop
    return loop


def _anyio_host_loop() -> AbstractEventLoop | None:
    """The host loop anyio keeps for its worker thread, read without a call to that loop.

    anyio marks a worker thread with its host's token, in a thread-local that
    ``anyio.from_thread`` reads (an ``EventLoopToken`` whose ``native_token`` is the
    asyncio loop; the loop itself before anyio 4.11). The public way to the loop,
    ``from_thread.run_sync(asyncio.get_running_loop)``, waits for the host loop to run
    it: a deadlock when the loop's thread waits for this worker (a lock both take), and
    a wait as long as the loop is busy. It is used only if that thread-local is gone.
    """
    try:
        from anyio._core._eventloop import threadlocals
    except ImportError:  # another anyio layout: the public round trip
        return _anyio_host_loop_by_call()
    token = getattr(threadlocals, "current_token", None)  # None: not an anyio worker thread
    loop = getattr(token, "native_token", token)
    if isinstance(loop, AbstractEventLoop) and not loop.is_closed():
        return loop
    return None  # not a worker thread, a trio host, or a host loop that has closed


def _anyio_host_loop_by_call() -> AbstractEventLoop | None:
    try:
        from anyio import from_thread
    except ImportError:  # a partly imported or broken anyio: not our business
        return None
    try:
        # Public API: run a call on the host loop's thread. Outside an anyio worker thread
        # it raises at once (no token), with no round trip; a trio host has no asyncio loop.
        loop = from_thread.run_sync(asyncio.get_running_loop)
    except Exception:
        return None
    return None if loop.is_closed() else loop
