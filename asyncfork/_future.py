"""The Future: states, waiters and thread-safe completion.

A Future's callbacks and scope are only touched on the thread of its loop, and
every other thread talks to it by posting to that loop, so the single-loop path
needs no locks; asyncfork's own waits register on it directly, without a lock
either (``_add_waker``). A sync or executor fork with nothing left for its loop to
decide is settled in the thread its call ended in (``_claim_settle``, and
``_outcome.settle_in_thread``); the loop takes the rest in after. The
scheduler (``_fork``) plugs in how a fork is cancelled through ``_canceller``.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from asyncio import AbstractEventLoop, CancelledError
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, copy_context
from types import CodeType, TracebackType
from typing import Any, Generic, Literal, TypeVar

from . import _instruments, _threads
from ._blocking import block_until_done, waited_at_once
from ._caller import in_coroutine_body
from ._errors import callable_name, check_timeout
from ._instruments import HOOKS
from ._mailbox import post
from ._scope import CURRENT, Node, check_not_waiting_on_itself, wake
from ._trio import await_one

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

    # asyncio.isfuture() reads this. On its own loop's thread, and in threads without a
    # running loop, a Future is future-like, so asyncio.wait, gather and ensure_future
    # take it as it is. To code on another loop it is a plain awaitable (None here):
    # those combinators then wrap it in a Task of *their* loop, as they do any awaitable,
    # since a future-like whose get_loop() is another loop makes them raise.
    @property
    def _asyncio_future_blocking(self) -> bool | None:
        running = _get_running_loop()
        if running is None or running is self._loop:
            return False
        return None

    @_asyncio_future_blocking.setter
    def _asyncio_future_blocking(self, value: bool) -> None:
        pass  # never awaited by yielding itself, so never blocking

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
        "_site",
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
    # Where fork() was called: (caller's code, instruction offset), shared by every fork of
    # one call site; the line is looked up only for a failure's note (_outcome.note_site).
    _site: tuple[CodeType, int] | None
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
    # Done-callbacks added from other threads, on their way to the loop (under _incoming_lock).
    _incoming: list[_Callback] | None = None
    # asyncfork's own waiters, ``[fn]`` each until claimed, run after the done-callbacks by
    # whichever thread settles the fork; kept without a lock (see _add_waker).
    _wakers: list[list[Callable[[Future[Any]], object]]] | None = None
    # A sync or executor fork's outcome on its way to the loop: the function that settles it
    # off the loop, should the loop close before taking it in (a thread fork's value waits
    # in _result, its error in _posted_error); TAKEN_IN once the loop took it in. Claimed
    # (under _incoming_lock) by the thread that got a closed loop, or a waiter that found one.
    _handoff: Callable[[Future[Any]], None] | None = None
    _posted_error: BaseException | None = None
    _kind: str = COROUTINE  # stored on the instance only for the other kinds
    # Set (under _inflight_lock) by the thread where a sync or executor fork's call ended,
    # as it takes the settling over from the loop (_claim_settle).
    _settling_here: bool = False
    # Where fork() was called, kept in asyncio's debug mode only (asyncio's own name for it).
    _source_traceback: traceback.StackSummary | None = None
    # Thread-bound state captured at fork() by the active carriers (asyncfork._carriers).
    _carried: tuple[tuple[Any, Any], ...] | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("asyncfork.Future has no public constructor; use af.fork(func, ...)")

    @classmethod
    def _new(
        cls,
        loop: AbstractEventLoop,
        name: object,
        parent: Future[Any] | None,
        scope: Node | None,
        site: tuple[CodeType, int] | None = None,
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
        self._site = site
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

        Raises:
            BaseException: the fork's own exception, as it raised it.
            asyncio.CancelledError: the fork was cancelled.
            TimeoutError: ``timeout`` seconds passed first; the fork goes on.
            DeadlockError: the Future is not done, on a thread that runs an event loop.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "result(timeout=...)")
        if self._state == PENDING:
            block_until_done((self,), timeout, "fut.result()")
        elif HOOKS:
            waited_at_once((self,))
        return self._outcome()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the fork's exception (``None`` if it returned), blocking like :meth:`result`.

        Raises ``asyncio.CancelledError`` if the fork was cancelled.

        Raises:
            asyncio.CancelledError: the fork was cancelled.
            TimeoutError: ``timeout`` seconds passed first; the fork goes on.
            DeadlockError: the Future is not done, on a thread that runs an event loop.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "exception(timeout=...)")
        if self._state == PENDING:
            block_until_done((self,), timeout, "fut.exception()")
        elif HOOKS:
            waited_at_once((self,))
        if self._state == CANCELLED:
            raise self._cancelled_error()
        self._mark_retrieved()
        return self._exception

    def wait(self) -> T_co:
        """``af.wait(fut)``, in torch.jit.Future's spelling; the same two faces.

        In sync code it returns the value, blocking like :meth:`result` (and, like
        it, raising :class:`~asyncfork.DeadlockError` for an unfinished Future on a
        thread that runs an event loop). Called in the body of a coroutine function
        it returns an awaitable (a coroutine, so a missing ``await`` warns); type
        checkers see the blocking form, so in async code write ``await fut``.
        """
        if in_coroutine_body(sys._getframe(1)):
            # A coroutine, not the Future itself: one left without `await` warns.
            return _awaited(self)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
        if self._state == PENDING:
            block_until_done((self,), None, "fut.wait()")
        elif HOOKS:
            waited_at_once((self,))
        return self._outcome()

    def __await__(self) -> Generator[Any, None, T_co]:
        if self._state == PENDING:
            loop = _get_running_loop()
            if loop is None:  # no asyncio loop here: trio's may run (else this raises)
                yield from await_one(self).__await__()
                return self._outcome()
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
                if self._state != PENDING:
                    self._settled_meanwhile()
            else:
                waker = _Delivered(loop, lambda _fut: wake(waiter), None)
                self._add_from_afar(waker, None)
            try:
                yield from waiter
            except BaseException:
                # Our waiter was cancelled: the fork itself goes on (others may share it).
                self._discard_callback(waker)
                raise
            finally:
                if hooked:
                    _instruments.call("wait_ended", self)
        elif HOOKS:  # a wait on a finished Future is recorded too, as taking no time
            waited_at_once((self,))
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[no-any-return]
        return self._outcome()

    __iter__ = __await__  # asyncio treats future-likes as iterables too

    def _fork_target(self, func: object) -> tuple[AbstractEventLoop, Future[Any] | None]:
        if self._state != PENDING or self._settling_here:
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
        if self._kind != COROUTINE:
            return self._cancel_from_afar(msg)
        try:
            post(self._loop, self._cancel_on_loop, msg)
        except RuntimeError:  # the loop is closed: nothing can run this fork any more
            return False
        return True

    def _cancel_from_afar(self, msg: str | None) -> bool:
        """A sync or executor fork, from a thread that does not run its loop: requested
        here and now, since its call may return at any moment in a thread that would
        settle it there (``_claim_settle``). One of the two wins, so True means the fork
        ends cancelled (or with its error); the loop then runs the canceller."""
        if self._loop.is_closed():
            return False  # nothing can run the canceller any more
        with _inflight_lock:
            if self._settling_here or self._state != PENDING:
                return False
            if self._cancel_requested:
                return True
            self._cancel_requested = True
            self._cancel_msg = msg
        try:
            post(self._loop, self._deliver_cancel, msg)
        except RuntimeError:  # closed meanwhile: a call still running settles off it, cancelled
            pass
        return True

    def _deliver_cancel(self, msg: str | None) -> None:
        """On the loop: the canceller of a cancel requested from another thread."""
        if self._state == PENDING and self._canceller is not None:
            self._canceller(self, msg)

    def _cancel_on_loop(self, msg: str | None) -> bool:
        if self._state != PENDING:
            return False
        if self._cancel_requested:
            return True
        if self._kind == COROUTINE:
            self._cancel_requested = True
        else:
            # Its call may have just returned in another thread, which may be settling it
            # there (_claim_settle): one of the two wins.
            with _inflight_lock:
                if self._settling_here:
                    return False  # it has finished: its outcome is on its way
                self._cancel_requested = True
        self._cancel_msg = msg
        if self._canceller is not None:
            self._canceller(self, msg)
        return True

    def _cancel_abandoning(self, msg: str | None) -> None:
        """On the loop: cancel, abandoning a running sync call rather than waiting for it.

        How daemon forks are cancelled at shutdown: whatever the call does later is
        dropped, as with ``on_cancel="abandon"``, even if it was cancelled before.
        """
        if self._state != PENDING:
            return
        if self._kind != COROUTINE and self._task is None:  # its sync call may still run
            self._on_cancel = "abandon"
            if self._cancel_requested and self._canceller is not None:
                self._canceller(self, msg)  # cancelled before, and waited for: not any more
                return
        self._cancel_on_loop(msg)

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
        running = _get_running_loop()
        if self._state != PENDING:
            if running is None:
                _call(fn, self, context)
            else:
                running.call_soon(fn, self, context=context)
        elif running is self._loop:
            cb = _Callback()
            cb.append(fn)
            cb.context = context
            self._append_callback(cb)
        elif running is None:
            self._add_from_afar(fn, context)
        else:
            # Added on another loop's thread: the callback runs on *that* loop, as its code
            # (asyncio.wait, say) expects of a future it waits on.
            self._add_from_afar(_Delivered(running, fn, context), None)

    def _add_from_afar(self, fn: Callable[[Future[T_co]], object], context: Context | None) -> None:
        """From a thread that does not run the loop: register at once, post the rest.

        The callback is in ``_incoming`` until the loop adopts it, so a removal from
        any thread finds it right away, in the order this thread made its calls.
        """
        cb = _Callback()
        cb.append(fn)
        cb.context = context
        with _incoming_lock:
            incoming = self._incoming
            if incoming is None:
                self._incoming = [cb]
            else:
                incoming.append(cb)
        try:
            post(self._loop, self._adopt, cb)
        except RuntimeError:  # the loop is closed
            self._added_after_close(cb)

    def _adopt(self, cb: _Callback) -> None:
        """On the loop: a callback added from another thread arrives."""
        if self._state == PENDING and cb:
            self._append_callback(cb)  # first: a remover must always find it somewhere
            self._leave_incoming(cb)
            return
        if self._incoming is not None:  # else the settle that ran it emptied it: no lock
            self._leave_incoming(cb)
        try:
            fn = cb.pop()  # the fork finished (or the callback was removed) meanwhile
        except IndexError:
            return
        self._run_callback(fn, cb.context)

    def _leave_incoming(self, cb: _Callback) -> None:
        with _incoming_lock:
            incoming = self._incoming
            if incoming is not None:
                self._incoming = [item for item in incoming if item is not cb] or None

    def _added_after_close(self, cb: _Callback) -> None:
        """A callback was added after the loop closed: keep it only if the fork still ends."""
        if self._state == PENDING and not self._settles_after_close():
            self._leave_incoming(cb)
            try:
                cb.pop()
            except IndexError:
                return  # it ran: the fork settled in another thread meanwhile
            raise self._never_finishes()
        if self._state != PENDING:
            self._run_incoming()  # it settled meanwhile: run ours, unless its settler did

    def _settles_after_close(self) -> bool:
        """Its loop is closed and it is pending: will it still settle, off the loop?

        A sync or executor fork whose call still runs (or has just returned) settles in
        its own thread, where the closed loop sends it; one whose outcome was posted
        to the loop as it closed is settled here and now.
        """
        kind = self._kind
        if kind == COROUTINE or self._handoff is TAKEN_IN:
            return False  # its remaining work was the loop's to run
        settle = self._claim_handoff()
        if settle is not None:
            settle(self)  # posted as the loop closed: the loop never took it in
            return True
        item = self._item  # else its call runs, or a thread is settling it right now
        if kind == THREAD:
            return type(item) is _threads.WorkItem and item.state in _CALL_STARTED
        return item is not None  # an executor's call, submitted

    def _claim_handoff(self) -> Callable[[Future[Any]], None] | None:
        """After the loop closed: take the outcome's settling over, unless taken already."""
        with _incoming_lock:
            settle = self._handoff
            if settle is None or settle is TAKEN_IN:
                return None
            self._handoff = None
        return settle

    def _run_incoming(self) -> None:
        """Once settled: run the callbacks added from other threads and not adopted yet."""
        with _incoming_lock:
            incoming, self._incoming = self._incoming, None
        interrupt: BaseException | None = None
        for cb in incoming or ():
            try:
                fn = cb.pop()
            except IndexError:
                continue
            try:
                self._run_callback(fn, cb.context)
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupt = interrupt or exc  # the other callbacks still run
        if interrupt is not None:
            self._reraise_late(interrupt)

    def _reraise_late(self, interrupt: BaseException) -> None:
        """A callback's interrupt, raised once the others ran."""
        if _get_running_loop() is self._loop:
            self._loop.call_soon(_reraise, interrupt)  # as _settle does
        else:
            raise interrupt  # settled off its closed loop: in this thread

    # -- asyncfork's own waiters -------------------------------------------------

    def _add_waker(
        self, fn: Callable[[Future[Any]], object]
    ) -> list[Callable[[Future[Any]], object]]:
        """From any thread: call ``fn(self)`` once, in the thread that settles the fork.

        For asyncfork's own waits, which need no loop call, context or order among
        the done-callbacks: nothing is posted and no lock is taken. The list is made
        by ``setdefault``, one atomic step, so adders share it; the settle sets the
        state, then takes the list and leaves None. An adder appends, then reads the
        state, so an entry the settle missed is run by its adder. Whoever runs or
        drops an entry claims it with ``pop()`` first. Returns the entry, for
        ``_drop_waker``.
        """
        entry = [fn]
        wakers = self._wakers
        if wakers is None:  # none yet, or taken by the settle (then it stays None)
            wakers = self.__dict__.setdefault("_wakers", [])
        if wakers is not None:
            wakers.append(entry)
        if self._state != PENDING:
            self._run_wakers([entry])  # settled meanwhile: run it, unless its settle did
        elif (
            self._loop.is_closed()
            and not self._settles_after_close()
            and self._drop_waker(entry)  # else it ran: settled in another thread meanwhile
        ):
            raise self._never_finishes()
        return entry

    def _drop_waker(self, entry: list[Callable[[Future[Any]], object]]) -> bool:
        """A waiter leaves: True if its entry had not run, and now never will."""
        if not entry:
            return False  # run already
        try:
            entry.pop()
        except IndexError:
            return False  # claimed by the settle in between
        wakers = self._wakers
        if wakers is not None:
            try:
                # By value, as lists: the claimed entry equals only other claimed (empty)
                # ones, so this removes one of those, and compares no user objects.
                wakers.remove(entry)
            except ValueError:
                pass  # the settle took the list
        return True

    def _run_wakers(self, wakers: list[list[Callable[[Future[Any]], object]]]) -> None:
        interrupt: BaseException | None = None
        for entry in wakers:
            try:
                fn = entry.pop()
            except IndexError:
                continue
            try:
                fn(self)
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupt = interrupt or exc  # the other waiters still run
            except BaseException as exc:
                self._callback_failed(fn, exc)
        if interrupt is not None:
            self._reraise_late(interrupt)

    def _never_finishes(self) -> RuntimeError:
        return RuntimeError(
            f"the event loop of {self!r} is closed, so it can never finish: "
            "nothing is left to run it"
        )

    def remove_done_callback(self, fn: Callable[[Future[T_co]], object]) -> int:
        """Remove every registration of ``fn``; return how many were removed.

        Never waits for the fork's loop: from any thread the count is exact at once.
        """
        if self._state != PENDING:
            return 0
        return self._remove(fn)

    def _discard_callback(self, fn: object) -> None:
        """Drop a waiter's callback without blocking, from any thread."""
        if self._state == PENDING:
            self._remove(fn)

    def _remove(self, fn: object) -> int:
        """Claim every registration of ``fn``; the loop thread then drops the claimed ones.

        A registration is claimed by ``pop()``, as the settling loop claims it to run
        it: one of the two gets it, so the count is exact and nothing runs once counted.
        """
        removed = 0
        if self._incoming is not None:
            with _incoming_lock:
                incoming = self._incoming
            # Claimed outside the lock: an __eq__ is user code. One that moved on to
            # _callbacks meanwhile is the same object, and can only be claimed once.
            for cb in incoming or ():
                if _claim(cb, fn):
                    removed += 1
        callbacks = self._callbacks
        if callbacks:
            for item in callbacks:
                if type(item) is _Callback and _claim(item, fn):
                    removed += 1
        if _get_running_loop() is self._loop:
            self._tidy(fn)
        elif removed:
            try:
                post(self._loop, self._tidy, None)
            except RuntimeError:  # the loop is closed: claimed callbacks never run anyway
                pass
        return removed

    def _tidy(self, waiter: object) -> None:
        """On the loop: drop claimed callbacks, and the bare waiter ``waiter``."""
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = [
                item
                for item in callbacks
                if item is not waiter and (type(item) is not _Callback or item)
            ] or None

    def _append_callback(self, item: Any) -> None:
        if self._callbacks is None:
            self._callbacks = [item]
        else:
            self._callbacks.append(item)
        if self._state != PENDING:
            self._settled_meanwhile()

    def _settled_meanwhile(self) -> None:
        """On the loop, a callback was added as another thread settled the fork: that thread
        may have seen none to run (``_outcome.settle_in_thread``), so run them soon."""
        self._loop.call_soon(self._run_callbacks)

    def _run_callback(self, fn: Callable[[Future[T_co]], object], context: Context | None) -> None:
        try:
            _call(fn, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._callback_failed(fn, exc)

    def _callback_failed(self, fn: object, exc: BaseException) -> None:
        self._loop.call_exception_handler(
            {"message": f"exception in done-callback {fn!r} of {self!r}", "exception": exc}
        )

    # -- settling (loop thread only) ---------------------------------------------

    def _settle(self, state: int, result: Any, exc: BaseException | None) -> None:
        if self._state != PENDING:
            return
        self._publish(state, result, exc)
        if HOOKS:
            try:
                _instruments.call("fork_finished", self, exc)
            except BaseException as in_hook:  # a Ctrl-C landing in a hook: settle first
                self._loop.call_soon(_reraise, in_hook)
        self._take_in()
        self._wake_waiters()

    def _publish(self, state: int, result: Any, exc: BaseException | None) -> None:
        """Store the outcome; waiters in other threads may read it once the state is set."""
        self._result = result
        if exc is not None:
            self._exception = exc
            self._tb = exc.__traceback__
            if self._parent is None and not self._retrieved:
                # Armed before the state is published: a waiter in another thread that
                # sees the outcome and retrieves it then always finds it to disarm.
                self._never_retrieved = _NeverRetrieved(
                    self.name, exc, self._tb, self._source_traceback
                )
        self._state = state  # last: other threads read the outcome once they see it

    def _take_in(self) -> None:
        """On the loop, once the outcome is published: the fork leaves its scope, and its
        done-callbacks run."""
        self._task = None  # the task's context refers back to this Future
        if self._item is not None:
            self._item = None  # the work item refers back to this Future
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        scope = self._scope
        if scope is not None:
            scope._child_done(self)
        self._run_callbacks()

    def _run_callbacks(self) -> None:
        """On the loop, once settled: run the done-callbacks (each claimed, so once)."""
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            interrupt: BaseException | None = None
            for item in callbacks:
                if type(item) is _Callback:
                    try:
                        fn = item.pop()  # claimed: a remover in another thread may be first
                    except IndexError:
                        continue
                    try:
                        self._run_callback(fn, item.context)
                    except (KeyboardInterrupt, SystemExit) as exc_:
                        interrupt = interrupt or exc_  # the other callbacks still run
                elif not item.done():
                    item.set_result(None)
            if interrupt is not None:
                # Out of the loop from a plain callback (not from the fork's own task,
                # where asyncio would log it as a task exception nobody retrieved).
                self._loop.call_soon(_reraise, interrupt)
        if self._incoming is not None:  # added from other threads, not adopted yet
            self._run_incoming()

    def _wake_waiters(self) -> None:
        """Run asyncfork's own waiters' entries, in the thread that published the outcome."""
        wakers = self._wakers
        if wakers is not None:
            self._wakers = None  # taken: a later adder runs its own entry
            self._run_wakers(wakers[:])  # a copy: a leaving waiter may remove its entry

    # -- settling in the thread where a sync fork's call ended -------------------

    def _claim_settle(self) -> bool:
        """In the thread where this sync or executor fork's call ended: take its settling
        over from the loop, unless a cancel or a child forked from another thread came
        first. From here on a cancel finds the fork finished, and a fork in its scope
        from another thread is refused as made after it completed."""
        with _inflight_lock:
            if self._cancel_requested or self._state != PENDING or self._forked_from_threads:
                return False
            self._settling_here = True
        return True

    def _taken_in(self) -> None:
        """On the loop, once the outcome was published in the thread its call ended in
        (``_outcome.settle_in_thread``): its scope and done-callbacks, as a settle does."""
        if self._children:
            # Forked on the loop into this fork's scope (a callback in its context) in the
            # moment its call returned: made after it completed, as from a thread it left.
            for child in list(self._children):
                child._cancel_on_loop(f"its parent {self!r} had finished")
        self._take_in()

    def _set_result(self, value: Any) -> None:
        self._settle(FINISHED, value, None)

    def _set_exception(self, exc: BaseException) -> None:
        self._settle(FINISHED, None, exc)

    def _set_cancelled(self) -> None:
        self._settle(CANCELLED, None, None)


async def _awaited(fut: Future[T_co]) -> T_co:
    return await fut


# A "never awaited" warning names what the user called.
_awaited.__qualname__ = "Future.wait"


def _reraise(exc: BaseException) -> None:
    raise exc


class _Callback(list[Callable[[Any], object]]):
    """A done-callback: ``[fn]`` until claimed, and the context to run it in.

    Whoever runs it or removes it claims it first with ``pop()``, one atomic step, so
    the loop thread and a remover in another thread never both get it, and the loop
    takes no lock. (Waiters are stored bare.) Never compare these by value.
    """

    __slots__ = ("context",)
    context: Context | None


def TAKEN_IN(fut: Future[Any]) -> None:  # a marker, named as a constant
    """``fut._handoff`` once its loop took the outcome in; never called."""
    raise AssertionError("TAKEN_IN is a marker")


class SettleIfDropped:
    """A sync fork's outcome posted to a user's loop: settles the fork if never run.

    A user's loop that is stopped and then closed drops its pending callbacks. This
    call is dropped with them, and its finalizer (in the thread that closes the loop)
    settles the fork from the outcome kept on the Future, as a waiter that finds the
    loop closed would. Once the loop took the outcome in, the claim finds nothing.
    asyncfork's own loops need none: they are closed by asyncfork.
    """

    __slots__ = ("args", "fn", "fut")

    def __init__(self, fut: Future[Any], fn: Callable[..., object], *args: Any) -> None:
        self.fut = fut
        self.fn = fn
        self.args = args

    def __call__(self) -> None:
        self.fn(*self.args)

    def __del__(self) -> None:
        fut = self.fut
        if fut._state == PENDING:
            settle_dropped(fut)


def settle_dropped(fut: Future[Any]) -> None:
    """A call carrying ``fut``'s outcome was dropped: settle it, if its loop closed unrun."""
    if fut._loop.is_closed():
        settle = fut._claim_handoff()
        if settle is not None:
            settle(fut)


_CALL_STARTED = (_threads.QUEUED, _threads.RUNNING, _threads.FINISHED)

# Guards every Future's _incoming (rarely contended: only adds from other threads take it).
_incoming_lock = threading.Lock()
# Guards the forks counted on a parent from other threads (Node._inflight), and who settles a
# sync or executor fork: its loop, or the thread its call ended in (_claim_settle).
_inflight_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _incoming_lock, _inflight_lock
    _incoming_lock = threading.Lock()
    _inflight_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _claim(cb: _Callback, fn: object) -> bool:
    """Claim ``cb`` if it registers ``fn``: False if it does not, or was claimed already."""
    try:
        registered = cb[0]
    except IndexError:
        return False
    if registered is not fn and not _equal(registered, fn):
        return False
    try:
        cb.pop()
    except IndexError:
        return False  # claimed by another thread in between
    return True


def _equal(a: object, b: object) -> bool:
    """``a == b`` as asyncio compares callbacks, with an ``__eq__`` that raises as unequal."""
    try:
        return bool(a == b)
    except Exception:
        return False


def _call(fn: Callable[[Any], object], arg: Any, context: Context | None) -> None:
    if context is None:
        fn(arg)
    else:
        context.run(fn, arg)


class _Delivered:
    """A done-callback for code on another loop (an ``await`` there, or a callback added
    on that loop's thread): runs on that loop, posted to it when the fork ends.

    Equal to the callable it wraps, so ``remove_done_callback(fn)`` finds it.
    """

    __slots__ = ("context", "fn", "loop")

    def __init__(
        self, loop: AbstractEventLoop, fn: Callable[[Any], object], context: Context | None
    ) -> None:
        self.loop = loop
        self.fn = fn
        self.context = context

    def __call__(self, fut: object) -> None:
        try:
            post(self.loop, _call, self.fn, fut, self.context)
        except RuntimeError:  # that loop is closed: nobody is left to run it
            pass

    def __eq__(self, other: object) -> bool:
        return self.fn is other or _equal(self.fn, other)

    __hash__ = object.__hash__
