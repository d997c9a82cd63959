"""What kind of callable a fork was given, and the errors for what it cannot run."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
from functools import partial
from types import FunctionType, MethodType
from typing import Any

from ._errors import callable_name

_CO_COROUTINE = inspect.CO_COROUTINE
_CO_ASYNC_GENERATOR = inspect.CO_ASYNC_GENERATOR

COROUTINE = 0

SYNC = 1


def classify(func: Any) -> int:
    if type(func) is FunctionType:  # the common case, without inspect's unwrapping
        flags = func.__code__.co_flags
        if flags & _CO_COROUTINE:
            return COROUTINE
        if not flags & _CO_ASYNC_GENERATOR and not hasattr(func, "_is_coroutine_marker"):
            return SYNC
    if inspect.iscoroutine(func):
        reject_coroutine_object(func)
    if not callable(func):
        hint = " (to wait for an awaitable, write `await x`)" if inspect.isawaitable(func) else ""
        raise TypeError(
            f"fork() needs a callable, got {type(func).__name__} {func!r}{hint}; "
            "write af.fork(func, *args, **kwargs)"
        )
    if inspect.isasyncgenfunction(func) or (
        not isinstance(func, type) and inspect.isasyncgenfunction(_call_method(func))
    ):
        raise TypeError(
            f"fork() cannot run the async generator function {callable_name(func)}: "
            "it yields many values, a fork returns one. Fork a coroutine function that "
            "consumes it (async for ...) instead"
        )
    if inspect.iscoroutinefunction(func):
        return COROUTINE
    if not isinstance(func, (type, MethodType, partial)) and inspect.iscoroutinefunction(
        _call_method(func)
    ):
        return COROUTINE
    return SYNC


def _call_method(obj: object) -> object:
    """The ``__call__`` of a callable instance's class (how ``obj(...)`` really runs)."""
    return getattr(type(obj), "__call__", None)  # noqa: B004 - fetching it, not testing it


def reject_coroutine_object(coro: Any) -> None:
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    shown = name
    code = getattr(coro, "cr_code", None)
    frame = getattr(coro, "cr_frame", None)
    if code is not None and frame is not None:
        nargs = code.co_argcount + code.co_kwonlyargcount
        names = code.co_varnames[:nargs]
        values = frame.f_locals
        parts = [repr(values[n]) for n in names[: code.co_argcount] if n in values]
        parts += [f"{n}={values[n]!r}" for n in names[code.co_argcount :] if n in values]
        shown = ", ".join([name, *parts])
    close = getattr(coro, "close", None)
    if close is not None:
        close()  # so Python does not warn that it was never awaited
    raise TypeError(
        f"fork() takes a coroutine function and its arguments, not a coroutine object: "
        f"write af.fork({shown}) instead of af.fork({name}(...))"
    )
