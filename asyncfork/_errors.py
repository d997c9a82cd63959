"""The exception asyncfork adds and the helpers that build its messages."""

from __future__ import annotations

__all__ = ["DeadlockError"]


class DeadlockError(RuntimeError):
    """A blocking call was made where it could only hang.

    Raised instead of freezing an event loop (``fut.result()`` on an unfinished
    Future in a thread that runs a loop, a sync ``with af.group()`` there), or
    instead of waiting forever (a fork waiting on its own Future or on an
    ancestor's). The message says what to write instead.
    """

    __module__ = "asyncfork"


def callable_name(func: object) -> str:
    """A short, readable name for ``func`` for messages and default fork names."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if isinstance(name, str):
        return name
    return type(func).__name__
