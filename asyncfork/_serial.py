"""The serial-mode switch: ``af.serial()``, the ``ASYNCFORK_SERIAL`` variable, and the test
that ``fork()`` makes.

In serial mode every fork runs inline, to completion, inside ``fork()`` (see
``_serial_fork``). The switch is a context variable, so it follows the context into the
forks made under it. ``fork()`` reads it only while ``ON`` is not empty: ``ON`` holds one
entry per open ``af.serial()`` block (and one for the environment variable or a serial
test), so with serial mode unused the hot path pays one truth test of an empty list.
"""

from __future__ import annotations

import os
from contextvars import ContextVar, Token
from types import TracebackType

# One entry per switch that may be on somewhere: fork() reads the context variable only
# while this list is not empty.
ON: list[object] = []

# Whether forks made in this context run serially; unset means the process default.
_SERIAL: ContextVar[bool] = ContextVar("asyncfork.serial")

_ENV = "ASYNCFORK_SERIAL"


def _env_default() -> bool:
    value = os.environ.get(_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{_ENV} must be 1 or 0 (true/false, yes/no, on/off), not {value!r}")


# The process default: ASYNCFORK_SERIAL, read once, when asyncfork is imported. A serial
# test (the pytest marker) sets it for the test's duration.
DEFAULT = [_env_default()]
if DEFAULT[0]:
    ON.append(_ENV)


def serial_here() -> bool:
    """Whether a fork made now, in this context, runs serially."""
    return _SERIAL.get(DEFAULT[0])


class Serial:
    """The context manager :func:`serial` returns; ``with`` and ``async with`` alike."""

    __module__ = "asyncfork"
    __slots__ = ("_enabled", "_token")

    def __init__(self, enabled: bool) -> None:
        if type(enabled) is not bool:
            raise TypeError(
                f"af.serial(enabled) takes True or False, not {type(enabled).__name__}: "
                "write `with af.serial():` to switch serial mode on, "
                "`with af.serial(False):` to switch it off"
            )
        self._enabled = enabled
        self._token: Token[bool] | None = None

    def __repr__(self) -> str:
        return f"<asyncfork.serial({self._enabled})>"

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("this af.serial() block is open already; make a new one")
        self._token = _SERIAL.set(self._enabled)
        if self._enabled:
            ON.append(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        if self._enabled:
            ON.remove(self)
        try:
            _SERIAL.reset(token)
        except ValueError:  # left in another context than it was entered in: leave it
            pass

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def serial(enabled: bool = True) -> Serial:
    """Run every fork made in this block inline, to completion, inside ``fork()``.

    ``with af.serial():`` (or ``async with``) switches serial mode on for the code of the
    block and every fork made in it, ``with af.serial(False):`` switches it off there. A
    program correct in parallel gives the same result serially: for debugging with pdb and
    for failures that reproduce. ``ASYNCFORK_SERIAL=1`` switches it on for the whole
    process (read once, at ``import asyncfork``). See docs/testing.md.
    """
    return Serial(enabled)
