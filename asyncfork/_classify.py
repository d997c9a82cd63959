"""What kind of callable a fork was given, and the errors for what it cannot run."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
import weakref
from functools import partial, partialmethod
from types import FunctionType, MethodType
from typing import Any, cast

from ._errors import callable_name, describe

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
    # A callable instance (a torch module, a model object) is classified by its class, once:
    # inspect asks it for attributes it lacks, and a class's __getattr__ (torch's modules)
    # makes each miss slow. Only its own attributes that inspect reads can change the answer.
    cls: type[object] = type(cast(object, func))
    known = _BY_CLASS.get(cls)
    if known is not None and not _marked(func):
        return known
    kind = _classify(func)
    if _by_class(func):
        _BY_CLASS[cls] = kind
    return kind


# The classification of callable instances, by class (weakly: classes made at run time go).
_BY_CLASS: weakref.WeakKeyDictionary[type, int] = weakref.WeakKeyDictionary()
# An instance's own attributes that inspect's coroutine-function tests read.
_INSPECTED = ("__code__", "_is_coroutine_marker", "__partialmethod__")


def _marked(func: Any) -> bool:
    """Does ``func`` carry, in its own ``__dict__``, an attribute that inspect's tests read?"""
    own = getattr(func, "__dict__", None)
    return type(own) is dict and any(name in own for name in _INSPECTED)


def _by_class(func: Any) -> bool:
    """Is ``func``'s classification its class's: an instance, not a function, a method, a
    partial (each wraps a function of its own) or a class, not function-like, not marked?"""
    return not (
        isinstance(func, (type, MethodType, partial, partialmethod))
        or hasattr(type(cast(object, func)), "__code__")
        or _marked(func)
    )


def _classify(func: Any) -> int:
    if inspect.iscoroutine(func):
        reject_coroutine_object(func)
    if not callable(func):
        hint = (
            "; to wait for an awaitable x, write `await x` instead (in sync code, af.wait(x) "
            "for an asyncfork Future)"
            if _is_awaitable(func)
            else ""
        )
        raise TypeError(
            f"fork() takes a callable and its arguments, not {describe(func)}: "
            f"write af.fork(func, *args, **kwargs){hint}"
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


def _is_awaitable(obj: object) -> bool:
    """``inspect.isawaitable``, False where asking raises (for a hint, never an error)."""
    try:
        return inspect.isawaitable(obj)
    except Exception:
        return False


def _call_method(obj: object) -> object:
    """The ``__call__`` of a callable instance's class (how ``obj(...)`` really runs)."""
    return getattr(type(obj), "__call__", None)  # noqa: B004 - fetching it, not testing it


_TAKES_ARGUMENTS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS


def reject_coroutine_object(coro: Any, call: str = "fork") -> None:
    """Raise the TypeError for ``fork(f(...))`` (or ``run(f(...))``: ``call``), closing the
    coroutine so it does not warn.

    The hint names the function by its plain name, as the user most likely wrote it
    (``fetch`` for ``fetch(...)`` and for ``client.fetch(...)``): the expression that
    made the coroutine is not known, so no call is rebuilt from the coroutine's locals.
    """
    try:
        coro.close()  # first, so Python does not warn that it was never awaited
    except Exception as exc:  # its cleanup raised: the TypeError still comes, with that as cause
        raise TypeError(_coroutine_object_message(coro, call)) from exc
    raise TypeError(_coroutine_object_message(coro, call))


def _coroutine_object_message(coro: Any, call: str) -> str:
    try:
        name = str.__str__(coro.__name__)
        code = coro.cr_code
    except Exception:  # not a plain coroutine after all: no name to show
        name, code = "func", None
    if not name.isidentifier():
        name = "func"
    takes_nothing = (
        code is not None
        and code.co_argcount == 0
        and code.co_kwonlyargcount == 0
        and not code.co_flags & _TAKES_ARGUMENTS
    )
    if takes_nothing:
        fixed, wrong = f"af.{call}({name})", f"af.{call}({name}())"
    else:
        fixed, wrong = f"af.{call}({name}, ...)", f"af.{call}({name}(...))"
    return (
        f"{call}() takes a coroutine function and its arguments, not a coroutine object: "
        f"write {fixed} instead of {wrong}"
    )
