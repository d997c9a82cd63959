"""The Future: states, waiters and thread-safe completion.

A Future is settled only on the thread of its loop. Every other thread talks to
it by posting to that loop, so the single-loop path needs no locks. The
scheduler (``_fork``) plugs in how a fork is cancelled through ``_canceller``.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import traceback
from asyncio import AbstractEventLoop, CancelledError
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, copy_context
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

from . import _instruments
from ._blocking import block_until_done
from ._errors import callable_name, check_timeout
from ._instruments import HOOKS
from ._mailbox import post
from ._scope import CURRENT, Node, check_not_waiting_on_itself, wake

# Covariant: a Future only hands its value out, so a Future[int] is a Future[int | None].
T_co = TypeVar("T_co", covariant=True)

_get_running_loop = asyncio._get_running_loop
_monotonic = time.monotonic
logger = logging.getLogger("asyncfork")

PENDING = 0
CANCELLED = 1
FINISHED = 2  # with a value or an exception
_STATE_NAMES = ("pending", "cancelled", "finished")

# A fork's kind: where its code runs.
COROUTINE = "coroutine"  # a task on its loop
THREAD = "thread"  # a sync callable in asyncfork's worker threads
EXECUTOR = "executor"  # a sync callable on a user's concurrent.futures.Executor


class _NeverRetrieved:
    """Logs a root fork's failure if its Future is dropped without anyone looking.

    Kept out of the Future itself so that Futures need no ``__del__`` (which
    would slow down every fork); only failed root forks allocate one.
    """

    __slots__ = ("exc", "name", "source", "tb")

    def __init__(
        self,
        name: str,
        exc: BaseException,
        tb: TracebackType | None,
        source: traceback.StackSummary | None,
    ) -> None:
        # The failure, not the Future: a reference back would make a cycle, and the
        # log line would then wait for the cyclic garbage collector.
        self.name = name
        self.exc: BaseException | None = exc
        self.tb = tb
        self.source = source

    def __del__(self) -> None:
        exc = self.exc
        if exc is None:
            return
        try:
            forked_at = ""
            if self.source:  # asyncio's debug mode kept where the fork was made
                forked_at = "\nfork created at (most recent call last):\n" + "".join(
                    self.source.format()
                ).rstrip("\n")
            logger.error(
                "exception of fork %r was never retrieved%s",
                self.name,
                forked_at,
                exc_info=(type(exc), exc, self.tb),
            )
        except Exception:  # pragma: no cover - logging torn down at exit
            pass


class Future(Node, Generic[T_co]):
    """The handle of a fork: await it, or block on it with :meth:`result`.

    Returned by :func:`asyncfork.fork`; there is no public constructor. Every
    method may be called from any thread. Done-callbacks run on the thread of
    the loop that ran the fork.
    """

    __module__ = "asyncfork"
    # Lets asyncio.wait, gather and ensure_future take a Future as it is.
    _asyncio_future_blocking = False

    # Slots for what every fork writes; the rest lives in the instance dict, which
    # Python only allocates for the few forks that set one of them (a failure, a
    # cancellation, a timeout, a sync fork). Their class-level values are the defaults.
    __slots__ = (  # __dict__ and __weakref__ come from Node
        "_callbacks",
        "_canceller",
        "_created",
        "_depth",
        "_loop",
        "_name",
        "_parent",
        "_result",
        "_scope",
        "_started",
        "_state",
        "_task",
    )

    _loop: AbstractEventLoop
    _state: int
    _result: Any
    _callbacks: list[Any] | None
    _name: Any  # the name, or the callable to take it from when first asked
    _parent: Future[Any] | None
    _scope: Node | None
    _depth: int
    _canceller: Callable[[Future[Any], str | None], None] | None
    _created: float  # time.monotonic() at fork(), for af.tree()'s ages
    _task: asyncio.Task[None] | None
    _started: bool

    _exception: BaseException | None = None
    _tb: TracebackType | None = None
    _retrieved: bool = False
    _never_retrieved: _NeverRetrieved | None = None
    _cancel_requested: bool = False
    _cancel_msg: str | None = None
    _item: Any = None  # a WorkItem, or a concurrent.futures.Future for executor forks
    _timer: asyncio.TimerHandle | None = None
    _timeout: float | None = None
    _timed_out: bool = False
    _daemon: bool = False
    _on_cancel: str = "wait"
    _returned: Coroutine[Any, Any, Any] | None = None  # a sync fork's coroutine, not started
    _kind: str = COROUTINE  # stored on the instance only for the other kinds
    # Where fork() was called, kept in asyncio's debug mode only (asyncio's own name for it).
    _source_traceback: traceback.StackSummary | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("asyncfork.Future has no public constructor; use af.fork(func, ...)")

    @classmethod
    def _new(
        cls,
        loop: AbstractEventLoop,
        name: object,
        parent: Future[Any] | None,
        scope: Node | None,
    ) -> Future[Any]:
        self: Future[Any] = object.__new__(cls)
        self._loop = loop
        self._state = PENDING
        self._result = None
        self._callbacks = None
        self._name = name
        self._parent = parent
        self._scope = scope
        self._depth = 0 if parent is None else parent._depth + 1
        self._canceller = None
        self._created = _monotonic()
        self._task = None
        self._started = False
        return self

    # -- public, read-only facts ------------------------------------------------

    @property
    def name(self) -> str:
        """The fork's name: ``fork.options(name=...)``, or the callable's qualified name."""
        name = self._name
        if type(name) is not str:
            name = self._name = callable_name(name)
        return name

    @property
    def kind(self) -> Literal["coroutine", "thread", "executor"]:
        """Where the fork's code runs: ``"coroutine"`` (a task on its event loop),
        ``"thread"`` (asyncfork's worker threads) or ``"executor"`` (an ``executor=``).
        """
        return self._kind  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

    @property
    def parent(self) -> Future[Any] | None:
        """The fork this one was forked from, or ``None`` for a root fork."""
        return self._parent

    def get_loop(self) -> AbstractEventLoop:
        """The event loop that runs (or ran) this fork; asyncio's combinators use it."""
        return self._loop

    def done(self) -> bool:
        """True once the fork has finished: with a value, an exception, or cancelled."""
        return self._state != PENDING

    def cancelled(self) -> bool:
        """True if the fork ended cancelled."""
        return self._state == CANCELLED

    def __repr__(self) -> str:
        state = _STATE_NAMES[self._state]
        if self._state == FINISHED and self._exception is not None:
            state = f"failed {type(self._exception).__name__}"
        elif self._state == PENDING and self._cancel_requested:
            state = "cancelling"
        elif self._state == PENDING and self._started:
            state = "running"
        return f"<asyncfork.Future {self.name!r} {state}>"

    # -- results ---------------------------------------------------------------

    def result(self, timeout: float | None = None) -> T_co:
        """Return the fork's value, blocking this thread until it is done.

        Raises the fork's exception, ``asyncio.CancelledError`` if it was
        cancelled, or ``TimeoutError`` if ``timeout`` seconds pass first (the
        fork goes on). On a thread that runs an event loop, an unfinished
        Future raises :class:`~asyncfork.DeadlockError`: write ``await fut``.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "result(timeout=...)")
        if self._state == PENDING:
            block_until_done((self,), timeout, "fut.result()")
        return self._outcome()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the fork's exception (``None`` if it returned), blocking like :meth:`result`.

        Raises ``asyncio.CancelledError`` if the fork was cancelled.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "exception(timeout=...)")
        if self._state == PENDING:
            block_until_done((self,), timeout, "fut.exception()")
        if self._state == CANCELLED:
            raise self._cancelled_error()
        self._mark_retrieved()
        return self._exception

    def __await__(self) -> Generator[Any, None, T_co]:
        if self._state == PENDING:
            loop = asyncio.get_running_loop()
            node = CURRENT.get()
            if node is not None and self._depth <= node._depth:
                check_not_waiting_on_itself(self, "await")  # it could be an ancestor
            waiter = loop.create_future()
            waker: object = waiter
            hooked = bool(HOOKS)
            if hooked:
                _instruments.call("wait_began", self)
            if loop is self._loop:
                callbacks = self._callbacks
                if callbacks is None:
                    self._callbacks = [waiter]
                else:
                    callbacks.append(waiter)
            else:
                waker = _ForeignWaker(loop, waiter)
                self.add_done_callback(waker)
            try:
                yield from waiter
            except BaseException:
                # Our waiter was cancelled: the fork itself goes on (others may share it).
                self._discard_callback(waker)
                raise
            finally:
                if hooked:
                    _instruments.call("wait_ended", self)
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[no-any-return]
        return self._outcome()

    __iter__ = __await__  # asyncio treats future-likes as iterables too

    def _fork_target(self, func: object) -> tuple[AbstractEventLoop, Future[Any] | None]:
        if self._state != PENDING:
            raise RuntimeError(
                f"cannot fork {callable_name(func)}: its parent {self!r} has finished. "
                "A fork made after its parent completed (from a thread it left behind, "
                "say) has no scope to join; use af.fork.options(detached=True)"
            )
        return self._loop, self

    def _host_loop(self) -> AbstractEventLoop:
        return self._loop

    def _owner_fork(self) -> Future[Any]:
        return self

    def _outcome(self) -> T_co:
        state = self._state
        if state == FINISHED:
            exc = self._exception
            if exc is None:
                return self._result  # type: ignore[no-any-return]
            self._mark_retrieved()
            raise exc.with_traceback(self._tb)
        if state == CANCELLED:
            raise self._cancelled_error()
        raise asyncio.InvalidStateError(f"{self!r} is not done yet")

    # asyncio.gather reads these two from the futures it was given.
    def _make_cancelled_error(self) -> CancelledError:
        return self._cancelled_error()

    @property
    def _cancel_message(self) -> str | None:
        return self._cancel_msg

    def _cancelled_error(self) -> CancelledError:
        return CancelledError() if self._cancel_msg is None else CancelledError(self._cancel_msg)

    def _mark_retrieved(self) -> None:
        self._retrieved = True
        if self._never_retrieved is not None:
            self._never_retrieved.exc = None
            self._never_retrieved = None

    # -- cancellation ----------------------------------------------------------

    def cancel(self, msg: str | None = None) -> bool:
        """Request cancellation; True if the fork had not finished, False if it had.

        A fork that has not started never runs; a running coroutine fork gets
        ``CancelledError`` at its next await and its children are cancelled; a
        running sync fork follows its ``on_cancel`` option. The Future becomes
        cancelled once the fork's cleanup has finished.
        """
        if self._state != PENDING:
            return False
        if _get_running_loop() is self._loop:
            return self._cancel_on_loop(msg)
        try:
            post(self._loop, self._cancel_on_loop, msg)
        except RuntimeError:  # the loop is closed: nothing can run this fork any more
            return False
        return True

    def _cancel_on_loop(self, msg: str | None) -> bool:
        if self._state != PENDING:
            return False
        if self._cancel_requested:
            return True
        self._cancel_requested = True
        self._cancel_msg = msg
        if self._canceller is not None:
            self._canceller(self, msg)
        return True

    # -- callbacks -------------------------------------------------------------

    def add_done_callback(
        self, fn: Callable[[Future[T_co]], object], *, context: Context | None = None
    ) -> None:
        """Call ``fn(fut)`` once, on the fork's loop thread, when the fork is done.

        If the Future is already done, ``fn`` is called at once in a thread without
        a running loop, and soon (``loop.call_soon``) in a thread that runs one, as
        asyncio's futures do: asyncio's combinators rely on that. ``context`` is the
        ``contextvars.Context`` to run it in (as in asyncio).
        """
        if context is None:
            context = copy_context()  # as asyncio does: the adding code's context, not ours
        if self._state != PENDING:
            running = _get_running_loop()
            if running is None:
                _call(fn, self, context)
            else:
                running.call_soon(fn, self, context=context)
        elif _get_running_loop() is self._loop:
            self._append_callback(_Callback(fn, context))
        else:
            self._post(self._add_callback_on_loop, fn, context)

    def _add_callback_on_loop(
        self, fn: Callable[[Future[T_co]], object], context: Context | None
    ) -> None:
        if self._state != PENDING:
            self._run_callback(fn, context)
        else:
            self._append_callback(_Callback(fn, context))

    def remove_done_callback(self, fn: Callable[[Future[T_co]], object]) -> int:
        """Remove every registration of ``fn``; return how many were removed."""
        if self._state != PENDING:
            return 0
        if _get_running_loop() is self._loop:
            return self._remove_callback_on_loop(fn)
        answer: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._post(lambda: answer.set_result(self._remove_callback_on_loop(fn)))
        return answer.result()

    def _remove_callback_on_loop(self, fn: Callable[[Future[T_co]], object]) -> int:
        callbacks = self._callbacks
        if not callbacks:
            return 0
        kept = [cb for cb in callbacks if not (type(cb) is _Callback and cb.fn == fn)]
        self._callbacks = kept
        return len(callbacks) - len(kept)

    def _discard_callback(self, fn: object) -> None:
        """Drop a waiter's callback without blocking (posted when off the loop thread)."""
        if self._state != PENDING:
            return
        if _get_running_loop() is not self._loop:
            try:
                post(self._loop, self._discard_callback, fn)
            except RuntimeError:  # the loop is closed: nothing will run the callback
                pass
            return
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = [
                cb
                for cb in callbacks
                if cb is not fn and not (type(cb) is _Callback and cb.fn == fn)
            ]

    def _append_callback(self, item: Any) -> None:
        if self._callbacks is None:
            self._callbacks = [item]
        else:
            self._callbacks.append(item)

    def _post(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            post(self._loop, fn, *args)
        except RuntimeError:
            if self._state == PENDING:
                raise RuntimeError(f"the event loop of {self!r} is closed") from None
            fn(*args)

    def _run_callback(self, fn: Callable[[Future[T_co]], object], context: Context | None) -> None:
        try:
            _call(fn, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": f"exception in done-callback {fn!r} of {self!r}", "exception": exc}
            )

    # -- settling (loop thread only) ---------------------------------------------

    def _settle(self, state: int, result: Any, exc: BaseException | None) -> None:
        if self._state != PENDING:
            return
        self._result = result
        if exc is not None:
            self._exception = exc
            self._tb = exc.__traceback__
        self._state = state  # last: other threads read the outcome once they see it
        if HOOKS:
            _instruments.call("fork_finished", self, exc)
        self._task = None  # the task's context refers back to this Future
        if self._item is not None:
            self._item = None  # the work item refers back to this Future
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        scope = self._scope
        if scope is not None:
            scope._child_done(self)
        if exc is not None and self._parent is None and not self._retrieved:
            self._never_retrieved = _NeverRetrieved(
                self.name, exc, self._tb, self._source_traceback
            )
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            interrupt: BaseException | None = None
            for item in callbacks:
                if type(item) is _Callback:
                    try:
                        self._run_callback(item.fn, item.context)
                    except (KeyboardInterrupt, SystemExit) as exc_:
                        interrupt = interrupt or exc_  # the other callbacks still run
                elif not item.done():
                    item.set_result(None)
            if interrupt is not None:
                # Out of the loop from a plain callback (not from the fork's own task,
                # where asyncio would log it as a task exception nobody retrieved).
                self._loop.call_soon(_reraise, interrupt)

    def _set_result(self, value: Any) -> None:
        self._settle(FINISHED, value, None)

    def _set_exception(self, exc: BaseException) -> None:
        self._settle(FINISHED, None, exc)

    def _set_cancelled(self) -> None:
        self._settle(CANCELLED, None, None)


def _reraise(exc: BaseException) -> None:
    raise exc


class _Callback:
    """A done-callback and the context to run it in (waiters are stored bare)."""

    __slots__ = ("context", "fn")

    def __init__(self, fn: Callable[[Any], object], context: Context | None) -> None:
        self.fn = fn
        self.context = context


def _call(fn: Callable[[Any], object], arg: Any, context: Context | None) -> None:
    if context is None:
        fn(arg)
    else:
        context.run(fn, arg)


class _ForeignWaker:
    """Wakes an ``await`` on another loop: posts to that loop when the Future is done."""

    __slots__ = ("loop", "waiter")

    def __init__(self, loop: AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
        self.loop = loop
        self.waiter = waiter

    def __call__(self, _fut: object) -> None:
        try:
            post(self.loop, wake, self.waiter)
        except RuntimeError:  # the waiting loop is gone; nobody is left to wake
            pass
