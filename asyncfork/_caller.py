"""Who is calling: a coroutine body (``wait``'s two faces hang on it), or code under trio.

``af.wait`` and ``fut.wait()`` return an awaitable only to a coroutine body (an
``async def``, an async generator), told by the calling frame's code flags: one
attribute read, cheaper than asking for the running loop. Anywhere else (a plain
thread, a notebook cell, a sync helper called from a coroutine, a loop callback) they
are the blocking form.
"""

from __future__ import annotations

import inspect
import sys
from types import FrameType
from typing import Any

COROUTINE_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE

# Comprehensions that are functions of their own (all of them on 3.11, generator
# expressions on 3.12+): lexically they are in the body that holds them.
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})


def in_coroutine_body(frame: FrameType | None) -> bool:
    """True if ``frame`` runs a coroutine body, or a comprehension run by one."""
    while frame is not None:
        code = frame.f_code
        if code.co_flags & COROUTINE_CODE:
            return True
        if code.co_name not in _COMPREHENSIONS:
            return False
        frame = frame.f_back
    return False


def asyncio_only(what: str) -> RuntimeError:
    """The error for an asyncio-only construct used where no asyncio loop runs (trio)."""
    under = "under trio" if trio_token() is not None else "here"
    return RuntimeError(
        f"{what} runs on an asyncio event loop, and none runs {under}. In trio code keep the "
        "Futures in a list and `await af.wait_async(futs)` (or use a trio nursery for trio "
        "tasks); in sync code use `with af.group()` and af.wait()"
    )


def trio_token() -> Any | None:
    """The ``TrioToken`` of the trio run in this thread, or None if none runs here."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:  # trio is imported, but no trio run is in this thread
        return None
    except AttributeError:  # a trio still being imported (or something else by that name)
        return None
