"""The exception asyncfork adds and the helpers that build its messages."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import math

__all__ = ["DeadlockError"]


class DeadlockError(RuntimeError):
    """A blocking call was made where it could only hang.

    Raised instead of freezing an event loop (``fut.result()`` on an unfinished
    Future in a thread that runs a loop, a sync ``with af.group()`` there), or
    instead of waiting forever (a fork waiting on its own Future or on an
    ancestor's). The message says what to write instead.
    """

    __module__ = "asyncfork"


def check_timeout(value: object, what: str) -> float | None:
    """Validate a timeout option: None, or a number of seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{what} must be >= 0 seconds (or None for no timeout), not {value!r}")
    return float(value)


def check_count(value: object, what: str) -> int | None:
    """Validate a count option: None, or an int >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int or None, not {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1 (or None for no limit), not {value}")
    return value


def callable_name(func: object) -> str:
    """A short, readable name for ``func`` for messages and default fork names."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if isinstance(name, str):
        return name
    return type(func).__name__
