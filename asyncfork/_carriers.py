"""Carriers: thread-bound state (torch's grad mode, a thread-local) taken into forks.

Context variables reach a fork by themselves; state kept per thread does not, since a
fork runs in a worker thread or on a loop's thread. A carrier captures such state in
the forking thread at ``fork()``, enters it around the fork's code in the thread that
runs it (around every step, for a coroutine fork), and restores that thread's own
state after. The built-in carriers (``_carriers_builtin``) are active only once their
library is imported; with no carrier active, ``fork()`` pays one comparison of
``len(sys.modules)`` with :data:`SEEN`.
"""

from __future__ import annotations

import abc
import logging
import sys
import threading
import types
from collections.abc import Callable, Generator, Iterable
from types import CoroutineType
from typing import Any, cast

from ._carriers_builtin import BUILTIN
from ._handle import Handle

logger = logging.getLogger("asyncfork")

_modules = sys.modules


class Carrier(abc.ABC):
    """Base class of carriers: thread-bound state that forks take with them.

    Subclass it and define the three methods, then install an instance with
    :func:`asyncfork.carry`. For each fork:

    - :meth:`capture` runs in the forking thread, inside ``fork()``;
    - :meth:`enter` runs in the thread that runs the fork's code, just before it
      (before each step, for a coroutine fork), with what ``capture`` returned;
    - :meth:`exit` runs in that thread just after, with what ``enter`` returned, and
      puts the thread's own state back, whatever the fork's code did to it.

    A coroutine fork's state is its own across awaits: after each step, :meth:`capture`
    runs again (in the fork's thread, before :meth:`exit`), and what it returns is entered
    for the next step, so a ``with`` block open across an ``await`` holds in the fork,
    and never reaches the loop's other code.

    Keep them short: they run on every fork, and on every step of a coroutine fork.
    A method that raises an ``Exception`` removes its carrier (logged through the
    ``asyncfork`` logger); the fork goes on without it. Forks sent to an executor
    (``fork.options(executor=...)``) run in another process or pool and carry nothing.
    """

    __module__ = "asyncfork"

    @abc.abstractmethod
    def capture(self) -> Any:
        """The forking thread's state, or ``None`` for nothing to carry into this fork."""

    @abc.abstractmethod
    def enter(self, state: Any) -> Any:
        """Make ``state`` this thread's; return what :meth:`exit` needs to undo it."""

    @abc.abstractmethod
    def exit(self, token: Any) -> None:
        """Give this thread back the state that :meth:`enter` found (``token``)."""


# (carrier, its captured state) for each carrier that had something to carry.
Carried = tuple[tuple[Any, Any], ...]

_lock = threading.Lock()
_installed: list[object] = []  # the user's carriers, in installation order
_builtin: dict[str, object] = {}  # module name -> its built-in carrier, once active
# The carriers fork() asks, user's then built-in; recomputed by _refresh only.
_active: tuple[Any, ...] = ()
# len(sys.modules) at the last refresh that found no carrier, else -1. fork() asks the
# carriers only when len(sys.modules) differs: with none active, that is one comparison
# per fork, and an import since (torch's, say) makes the next fork look again.
SEEN = [-2]
_scanned = -2  # len(sys.modules) at the last refresh, carriers or not


def _refresh() -> None:
    global _active, _scanned
    with _lock:
        count = len(_modules)
        settled = True
        for name, make in BUILTIN:
            if name in _builtin:
                continue
            module = _modules.get(name)
            if module is None:
                continue
            spec = getattr(module, "__spec__", None)
            if getattr(spec, "_initializing", False):
                settled = False  # half imported: look again on the next fork
                continue
            try:
                carrier = make(module)
            except Exception:
                logger.exception("asyncfork: the %s carrier could not start", name)
                carrier = None
            _builtin[name] = carrier
        _active = (*_installed, *(c for c in _builtin.values() if c is not None))
        _scanned = count if settled else -2
        SEEN[0] = -1 if _active else _scanned


def capture() -> Carried | None:
    """In the forking thread: each active carrier's state, or None if none has any."""
    if len(_modules) != _scanned:
        _refresh()
    return _states(_active) or None


def recapture(carried: Carried) -> Carried:
    """After a step of a coroutine fork, in its thread: its carriers' state now."""
    return _states(carrier for carrier, _ in carried)


def _states(carriers: Iterable[Any]) -> Carried:
    """(carrier, state) for each of ``carriers`` that has state to carry in this thread."""
    states: list[tuple[Any, Any]] = []
    for carrier in carriers:
        try:
            state = carrier.capture()
        except Exception:
            _failed(carrier, "capture")
            continue
        if state is not None:
            states.append((carrier, state))
    return tuple(states)


def enter(carried: Carried) -> list[tuple[Any, Any]]:
    """In the fork's thread, before its code: enter each state; the tokens to exit with."""
    if len(carried) == 1:  # the common case, without the loop
        ((carrier, state),) = carried
        try:
            return [(carrier, carrier.enter(state))]
        except Exception:
            _failed(carrier, "enter")
            return []
    entered: list[tuple[Any, Any]] = []
    for carrier, state in carried:
        try:
            entered.append((carrier, carrier.enter(state)))
        except Exception:
            _failed(carrier, "enter")
        except BaseException:  # a Ctrl-C landing here: leave the thread as it was
            exit_(entered)
            raise
    return entered


def exit_(entered: list[tuple[Any, Any]]) -> None:
    """After the fork's code: exit in reverse order, every carrier even if one is interrupted."""
    if len(entered) == 1:  # the common case, without the loop
        ((carrier, token),) = entered
        try:
            carrier.exit(token)
        except Exception:
            _failed(carrier, "exit")
        return
    interrupt: BaseException | None = None
    for carrier, token in reversed(entered):
        try:
            carrier.exit(token)
        except Exception:
            _failed(carrier, "exit")
        except BaseException as exc:
            interrupt = interrupt or exc
    if interrupt is not None:
        raise interrupt


def _failed(carrier: object, method: str) -> None:
    if remove(carrier):
        logger.exception("asyncfork: carrier %r raised in %s and was removed", carrier, method)


def add(carrier: object) -> None:
    if isinstance(carrier, type):
        raise TypeError(
            f"af.carry() takes a carrier object, not the class {carrier.__name__}: "
            f"write af.carry({carrier.__name__}())"
        )
    missing = [
        name for name in ("capture", "enter", "exit") if not callable(getattr(carrier, name, None))
    ]
    if missing:
        raise TypeError(
            f"{carrier!r} is not a carrier: it has no {', '.join(missing)} method. "
            "Subclass af.Carrier and define capture, enter and exit"
        )
    with _lock:
        if any(installed is carrier for installed in _installed):
            raise RuntimeError(f"carrier {carrier!r} is already installed")
        _installed.append(carrier)
    _refresh()


def remove(carrier: object) -> bool:
    """Uninstall ``carrier`` (a built-in one too); False if it was not installed."""
    with _lock:
        for i, installed in enumerate(_installed):
            if installed is carrier:
                del _installed[i]
                break
        else:
            for name, builtin in _builtin.items():
                if builtin is carrier:
                    _builtin[name] = None  # stays off: the import is not scanned again
                    break
            else:
                return False
    _refresh()
    return True


class Carrying(Handle):
    """What :func:`asyncfork.carry` returns: the carrier stays installed until
    :meth:`remove`, or until the ``with`` block that holds it ends.
    """

    __module__ = "asyncfork"
    __slots__ = ("carrier",)

    def __init__(self, carrier: object) -> None:
        self.carrier = carrier

    def remove(self) -> bool:
        """Uninstall the carrier: later forks no longer capture it. False if it was gone
        already (removed after a failure). Forks made before keep what they captured."""
        return remove(self.carrier)

    def __repr__(self) -> str:
        return f"<asyncfork.carry {self.carrier!r}>"


def carry(carrier: object) -> Carrying:
    """Install ``carrier`` (a :class:`Carrier`, or any object with its three methods).

    Process-wide: every fork made from now on, in any thread, captures its state.
    ``af.carry(c)`` keeps it until ``.remove()``; ``with af.carry(c):`` removes it
    when the block ends. Raises ``TypeError`` for an object that lacks one of the
    methods and ``RuntimeError`` if it is installed already.

    Raises:
        TypeError: ``carrier`` lacks one of the three methods.
        RuntimeError: ``carrier`` is installed already.
    """
    add(carrier)
    return Carrying(carrier)


@types.coroutine
def carried_steps(awaitable: Any, carried: Carried) -> Generator[Any, Any, Any]:
    """Await ``awaitable`` with ``carried`` entered around each of its steps (a generator
    coroutine, not a class with ``__await__``: one frame, nothing else allocated)."""
    inner = _stepped(awaitable)
    send_value: Any = None
    to_throw: BaseException | None = None
    while True:
        entered = enter(carried)
        try:
            yielded = inner.send(send_value) if to_throw is None else inner.throw(to_throw)
        except StopIteration as stop:
            exit_(entered)
            return stop.value
        except BaseException:
            exit_(entered)
            raise
        # What this step changed (a `with torch.no_grad():` open across an await) is the
        # fork's own state for its next step; the thread gets its own back.
        carried = recapture(carried)
        exit_(entered)
        to_throw = None
        try:
            send_value = yield yielded
        except GeneratorExit:
            _in_state(carried, inner.close)  # its cleanup runs in the state too
            raise
        except BaseException as exc:
            to_throw = exc


def _stepped(awaitable: Any) -> Any:
    """What to send to: a coroutine itself, not the wrapper its ``__await__`` returns."""
    if type(awaitable) is CoroutineType:
        return cast(Any, awaitable)
    return awaitable.__await__()


def _in_state(carried: Carried, call: Callable[[], object]) -> None:
    entered = enter(carried)
    try:
        call()
    finally:
        exit_(entered)
