"""Instruments: objects whose hooks the core calls as forks and waits happen.

The core knows nothing of tracing, progress bars or telemetry; it calls the
hooks of whatever instruments are installed. With none installed, each hook
site costs one test of an empty dict (``if HOOKS:``). An instrument that raises
is removed and logged, and the program goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ._handle import Handle

if TYPE_CHECKING:
    from ._future import Future

logger = logging.getLogger("asyncfork")


class Instrument:
    """Base class of instruments: override the hooks you need, the others cost nothing.

    Any object with some of these methods may be installed with
    :func:`asyncfork.instrument`; subclassing this class is optional. Only the
    hooks an instrument defines (beyond this class's no-ops) are ever called.
    Hooks run inside asyncfork, in the thread named below: keep them short and
    never block in one. Forks and waits made inside a hook reach no instrument.
    A hook that raises an ``Exception`` removes its instrument (logged through the
    ``asyncfork`` logger); a ``KeyboardInterrupt`` or ``SystemExit`` from a hook
    goes on after asyncfork has kept its own state whole.
    """

    __module__ = "asyncfork"

    def fork_made(self, fut: Future[Any]) -> None:
        """``fork()`` made ``fut``; called in the forking thread, in the forking code's context."""

    def fork_started(self, fut: Future[Any], where: str) -> None:
        """``fut``'s code starts: ``where`` is the thread's name, or the executor's type name.

        Called in the thread that runs the fork's code, in the fork's own context (so an
        instrument may set context variables that the fork's code then sees); for an
        executor fork, on the loop's thread, just before the call is submitted. A sync
        fork that returns a coroutine starts twice: in its thread, then on its loop.
        """

    def fork_busy(self, fut: Future[Any], seconds: float) -> None:
        """``fut``'s code ran for ``seconds``: one step of a coroutine fork on its loop, or a
        sync fork's whole call (its thread's CPU time). Called in that thread, after the step.
        """

    def fork_finished(self, fut: Future[Any], exc: BaseException | None) -> None:
        """``fut`` settled; ``exc`` is its exception (``None`` for a value or a cancellation:
        ``fut.cancelled()`` tells). Called on the fork's loop thread, before its callbacks.
        Reading ``exc`` here does not count as retrieving the failure. If ``fork()`` itself
        raised after ``fork_made`` (the loop had closed, say), this is called at once with
        that error, in the forking thread: the fork never runs and ``fut`` stays pending.
        """

    def fork_ran_remotely(self, fut: Future[Any], worker: str, start: float, stop: float) -> None:
        """``fut``'s call ran on a Dask cluster (``asyncfork.dask``): on the worker at address
        ``worker``, from ``start`` to ``stop`` (``time.time()`` there; the worker's clock).

        Called on the fork's loop thread as the outcome arrives, before :meth:`fork_finished`;
        not when no outcome came back (a call cancelled before it returned, a lost worker).
        """

    def wait_began(self, fut: Future[Any]) -> None:
        """Code starts waiting on ``fut`` (``await``, ``wait``, ``result``, ``exception``).

        Called in the waiting thread and context: :func:`asyncfork.current` is the waiter.
        Every wait is announced: on a finished ``fut``, :meth:`wait_ended` follows at once.
        """

    def wait_ended(self, fut: Future[Any]) -> None:
        """The wait that :meth:`wait_began` announced is over (done, timed out or given up)."""


HOOK_NAMES = tuple(name for name in vars(Instrument) if not name.startswith("_"))

# Hook name -> the (instrument, bound hook) pairs that define it. Replaced entry by entry
# under _lock, never mutated in place, so hook sites in any thread read a stable tuple.
HOOKS: dict[str, tuple[tuple[object, Any], ...]] = {}
_installed: list[object] = []
_lock = threading.Lock()


def _hooks_of(instrument: object) -> list[tuple[str, Any]]:
    if isinstance(instrument, type):
        raise TypeError(
            f"af.instrument() takes an instrument object, not the class {instrument.__name__}: "
            f"write af.instrument({instrument.__name__}())"
        )
    found: list[tuple[str, Any]] = []
    for name in HOOK_NAMES:
        hook = getattr(instrument, name, None)
        if hook is None:
            continue
        if getattr(hook, "__func__", None) is vars(Instrument)[name]:
            continue  # the base class's no-op: not worth a call
        if not callable(hook):
            raise TypeError(f"instrument {instrument!r}: its {name} is not callable")
        found.append((name, hook))
    return found


def add(instrument: object) -> None:
    hooks = _hooks_of(instrument)
    if not hooks:
        raise TypeError(
            f"{instrument!r} is not an instrument: it has none of the hooks "
            f"{', '.join(HOOK_NAMES)}. Subclass af.Instrument and override the ones you need"
        )
    with _lock:
        if any(installed is instrument for installed in _installed):
            raise RuntimeError(f"instrument {instrument!r} is already installed")
        _installed.append(instrument)
        for name, hook in hooks:
            HOOKS[name] = (*HOOKS.get(name, ()), (instrument, hook))


def remove(instrument: object) -> bool:
    """Uninstall ``instrument``; False if it was not installed."""
    with _lock:
        for i, installed in enumerate(_installed):
            if installed is instrument:
                del _installed[i]
                break
        else:
            return False
        for name in list(HOOKS):
            kept = tuple(pair for pair in HOOKS[name] if pair[0] is not instrument)
            if kept:
                HOOKS[name] = kept
            else:
                del HOOKS[name]
    return True


def installed() -> list[object]:
    """The instruments installed now, in installation order."""
    with _lock:
        return list(_installed)


class _InHook(threading.local):
    active = False


_in_hook = _InHook()


def call(name: str, *args: Any) -> None:
    """Call hook ``name`` of every instrument that has it.

    An instrument whose hook raises an ``Exception`` is removed and logged. A
    ``KeyboardInterrupt`` or ``SystemExit`` from a hook (a Ctrl-C landing in it) is
    raised again once every instrument has had its call, so the hook site can clean
    up. Forks and waits made inside a hook reach no instrument: hooks never nest.
    """
    if _in_hook.active:
        return
    _in_hook.active = True
    interrupt: BaseException | None = None
    try:
        for instrument, hook in HOOKS.get(name, ()):
            try:
                hook(*args)
            except Exception:
                if remove(instrument):
                    logger.exception(
                        "asyncfork: instrument %r raised in %s and was removed", instrument, name
                    )
            except BaseException as exc:
                interrupt = interrupt or exc
    finally:
        _in_hook.active = False
    if interrupt is not None:
        raise interrupt


class Installation(Handle):
    """What :func:`asyncfork.instrument` returns: the instrument stays installed until
    :meth:`remove`, or until the ``with`` block that holds it ends.
    """

    __module__ = "asyncfork"
    __slots__ = ("instrument",)

    def __init__(self, instrument: object) -> None:
        self.instrument = instrument

    def remove(self) -> bool:
        """Uninstall the instrument; False if it was gone already (removed after a failure)."""
        return remove(self.instrument)

    def __repr__(self) -> str:
        return f"<asyncfork.instrument {self.instrument!r}>"


def instrument(instrument: object) -> Installation:
    """Install ``instrument`` (an :class:`Instrument`, or any object with its hooks).

    Process-wide: it sees every fork and wait from now on, in every thread.
    ``af.instrument(x)`` keeps it until ``.remove()``; ``with af.instrument(x):``
    removes it when the block ends. Raises ``TypeError`` for an object with no
    hook and ``RuntimeError`` if it is installed already.

    Raises:
        TypeError: ``instrument`` has none of the hooks.
        RuntimeError: ``instrument`` is installed already.
    """
    add(instrument)
    return Installation(instrument)


# -- helpers for the hook sites that need more than one call --------------------------

_perf_counter = time.perf_counter


def coroutine_starting(fut: Future[Any], awaitable: Any) -> Any:
    """A coroutine fork's first step is about to run: announce it, and time its steps."""
    try:
        call("fork_started", fut, threading.current_thread().name)
    except BaseException:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # it never runs: no "never awaited" warning
        raise
    if "fork_busy" in HOOKS:
        return _TimedSteps(awaitable, fut)
    return awaitable


class _TimedSteps:
    """Awaits ``awaitable`` and reports each step's duration to the ``fork_busy`` hooks."""

    __slots__ = ("awaitable", "fut")

    def __init__(self, awaitable: Any, fut: Future[Any]) -> None:
        self.awaitable = awaitable
        self.fut = fut

    def __await__(self) -> Generator[Any, Any, Any]:
        fut = self.fut
        inner = self.awaitable.__await__()
        send_value: Any = None
        to_throw: BaseException | None = None
        while True:
            began = _perf_counter()
            try:
                yielded = inner.send(send_value) if to_throw is None else inner.throw(to_throw)
            except StopIteration as stop:
                call("fork_busy", fut, _perf_counter() - began)
                return stop.value
            except BaseException:
                call("fork_busy", fut, _perf_counter() - began)
                raise
            call("fork_busy", fut, _perf_counter() - began)
            to_throw = None
            try:
                send_value = yield yielded
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:
                to_throw = exc
