"""Whether a call was made in the body of a coroutine function: ``wait``'s two faces hang on it.

``af.wait`` and ``fut.wait()`` return an awaitable only to a coroutine body (an
``async def``, an async generator), told by the calling frame's code flags: one
attribute read, cheaper than asking for the running loop. Anywhere else (a plain
thread, a notebook cell, a sync helper called from a coroutine, a loop callback) they
are the blocking form.
"""

from __future__ import annotations

import inspect
from types import FrameType

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
