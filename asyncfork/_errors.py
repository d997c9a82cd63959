"""The exception asyncfork adds and the helpers that build its messages."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import math
import reprlib

__all__ = ["DeadlockError"]


class DeadlockError(RuntimeError):
    """A blocking call was made where it could only hang.

    Raised instead of freezing an event loop (``fut.result()`` on an unfinished
    Future in a thread that runs a loop, a sync ``with af.group()`` there), or
    instead of waiting forever (a fork waiting on its own Future or on an
    ancestor's). The message says what to write instead.
    """

    __module__ = "asyncfork"


def blocks_the_loop(what: str, instead: str) -> DeadlockError:
    """The DeadlockError for a blocking call made in sync code on a thread whose loop runs.

    The one wording ``fut.result()``, ``af.wait``, ``for`` over ``as_completed`` and a
    sync ``with af.group()`` share there: ``what`` blocks, ``instead`` is the async spelling.
    """
    return DeadlockError(
        f"{what} would block the event loop running in this thread, and the forks it waits "
        f"for may need that loop to finish: {instead}. This is sync code on a loop thread: "
        "in a notebook cell, await at top level (`await fut`, cells may await); in a sync "
        "helper called from a coroutine, make the helper `async def` and await it, or run "
        "it in a worker thread with `await af.fork(helper)`"
    )


def check_timeout(value: object, what: str) -> float | None:
    """Validate a timeout option: None, or a number of seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be a number of seconds, or None for no timeout, not {describe(value)}"
        )
    if math.isnan(value) or value < 0:
        raise ValueError(f"{what} must be >= 0 seconds, or None for no timeout, not {value!r}")
    return float(value)


def check_count(value: object, what: str, none_means: str = "no limit") -> int | None:
    """Validate a count option: None, or an int >= 1.

    ``none_means`` says what None stands for, as the messages show it.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, or None for {none_means}, not {describe(value)}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, or None for {none_means}, not {value}")
    return value


# type's own descriptors: a metaclass cannot override what they return.
_type_qualname = type.__dict__["__qualname__"].__get__
_type_module = type.__dict__["__module__"].__get__
_type_short_name = type.__dict__["__name__"].__get__


def check_bool(value: object, what: str) -> bool:
    """Validate a boolean option: ``True`` or ``False`` only (``"no"`` would count as true)."""
    if value is True or value is False:
        return value
    raise TypeError(f"{what} must be True or False, not {describe(value)}")


def check_name(value: object, what: str, none_means: str) -> str | None:
    """Validate a name option: a ``str`` (kept as a plain ``str``), or None.

    ``none_means`` says what None stands for, as the messages show it.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, or None for {none_means}, not {describe(value)}")
    # A plain str: a subclass's own __repr__ or __format__ would run in every message.
    return str.__str__(value)


def callable_name(func: object) -> str:
    """A short, readable name for ``func`` for messages and default fork names (never failing)."""
    cls = type(func)
    for attribute in ("__qualname__", "__name__", "original_name", "qualified_name"):
        try:
            name = getattr(func, attribute, None)
            # An instance that answers with its class's name (torch's ScriptFunction:
            # 'torch.jit.ScriptFunction') has none of its own here.
            inherited = not isinstance(func, type) and name == getattr(cls, attribute, None)
        except Exception:  # a broken attribute must not hide the real error
            continue
        if isinstance(name, str) and name and not inherited:
            # torch's scripted modules keep their class name in original_name, scripted
            # functions theirs in qualified_name ('__torch__.model.encode').
            name = str.__str__(name)
            return name.rpartition(".")[2] if attribute == "qualified_name" else name
    return str.__str__(_type_short_name(func if issubclass(cls, type) else cls))


_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxdict = 4


def short_repr(obj: object) -> str:
    """``repr(obj)``, cut short for a message (and never failing)."""
    try:
        # A plain str: a str subclass's own methods could fail in the message too.
        return str.__str__(_short.repr(obj))
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type_name(type(obj))} object>"


def type_name(cls: type) -> str:
    """A type's name as a user would write it: ``int``, ``concurrent.futures.Future``."""
    qualname: str = str.__str__(_type_qualname(cls))
    try:
        module = _type_module(cls)
    except AttributeError:  # pragma: no cover - a class without __module__ in its dict
        module = None
    if not isinstance(module, str) or module in ("builtins", "__main__"):
        return qualname
    public: list[str] = []
    for part in str.__str__(module).split("."):
        if part.startswith("_"):  # a private module: its package is where users import it from
            if not public:
                public.append(part.lstrip("_"))
            break
        public.append(part)
    return ".".join([*public, qualname])


def describe(obj: object) -> str:
    """``obj`` for a message: ``None``, ``an int (1)``, ``a concurrent.futures.Future (...)``."""
    if obj is None:
        return "None"
    name = type_name(type(obj))
    return f"{a_or_an(name)} {name} ({short_repr(obj)})"


def a_or_an(word: str) -> str:
    """The article for ``word``, by its first letter (good enough for type names)."""
    return "an" if word[:1].lower() in ("a", "e", "i", "o") else "a"


# The keywords of ``fork.options`` (a test checks them against its signature): a
# function that rejects one of them was likely not meant to get it.
FORK_OPTIONS = ("name", "executor", "timeout", "detached", "daemon", "on_cancel", "eager")
