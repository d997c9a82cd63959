"""``group()``: the explicit, fail-fast task group, usable with ``async with`` and ``with``."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import threading
import time
from asyncio import AbstractEventLoop, CancelledError
from collections import deque
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import Any

from ._blocking import blocking_acquire
from ._caller import asyncio_only
from ._errors import (
    blocks_the_loop,
    callable_name,
    check_bool,
    check_count,
    check_name,
    check_timeout,
)
from ._fork import Forker
from ._future import PENDING, Future
from ._hosts import foreign_host_loop
from ._mailbox import LoopClosing, post
from ._runner import background_loop, roots_of
from ._scope import CURRENT, Node, current_fork, joined_future

_NEW, _OPEN, _CLOSED = range(3)
_REFUSED_BY = "_asyncfork_refused_by"  # marks the CancelledError a group raised itself


class Group(Node):
    """A task group: ``async with af.group() as g:`` or ``with af.group() as g:``.

    Forks made in the body (``g.fork(...)`` or a plain ``af.fork(...)``) are its
    children. The first child failure cancels the body and the other children;
    the exit waits for every child and raises an ``ExceptionGroup`` of the real
    failures. ``limit`` caps how many children run at once; ``timeout`` cancels
    everything at the deadline and raises ``TimeoutError``.
    """

    __module__ = "asyncfork"
    _admits_at_once = False  # forks go through _admit (limit, refusal)

    def __init__(
        self,
        *,
        limit: int | None = None,
        timeout: float | None = None,
        name: str | None = None,
        eager: bool | None = None,
    ) -> None:
        self._limit = check_count(limit, "group(limit=...)")
        if eager is not None:
            self._eager = check_bool(eager, "group(eager=...)")
        self._timeout = check_timeout(timeout, "group(timeout=...)")
        self._name = check_name(name, "group(name=...)", "no name")
        self._state = _NEW
        self._aborting = False
        self._exiting = False
        self._timed_out = False
        self._user_cancelled = False
        self._owner_cancelled = False  # we cancelled the owning task
        # Set when the scope the group is open in was cancelled: the exit raises it.
        self._scope_cancel: CancelledError | None = None
        self._errors: list[BaseException] = []
        self._base_error: BaseException | None = None
        self._holding: set[Future[Any]] = set()
        self._waiting: deque[tuple[Future[Any], Callable[[Future[Any]], None]]] = deque()
        self._loop: AbstractEventLoop | None = None
        self._owner: Future[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._token: Token[Node | None] | None = None
        self._holder: Node | None = None  # the scope the group is open in (for af.tree)
        #: ``g.fork(func, *args, **kwargs)`` forks into this group; ``g.fork.options(...)`` too.
        self.fork = Forker(group=self)

    def __repr__(self) -> str:
        state = ("new", "open", "closed")[self._state]
        if self._state == _OPEN and self._aborting:
            state = "cancelling"
        name = f" {self._name!r}" if self._name else ""
        return f"<asyncfork.group{name} {state}, {len(self._children or ())} running>"

    # -- entering ------------------------------------------------------------------

    def _enter(self, loop: AbstractEventLoop) -> None:
        if self._state != _NEW:
            raise RuntimeError(f"{self!r} was entered already; make a new af.group() for each use")
        self._loop = loop
        self._owner = current_fork()
        if self._owner is not None:
            self._depth = self._owner._depth
        self._state = _OPEN
        enclosing = CURRENT.get()
        self._holder = roots_of(loop) if enclosing is None else enclosing
        self._holder._add_group(self)
        self._token = CURRENT.set(self)
        if self._timeout is not None:
            deadline = time.monotonic() + self._timeout
            post(loop, self._arm_timer, deadline)
        # After _add_group: a cancellation of the holder either sees the group or is seen here.
        if self._holder._cancelling():
            self._cancel_from_scope(None)

    def _arm_timer(self, deadline: float) -> None:
        if self._state == _OPEN:
            assert self._loop is not None
            self._timer = self._loop.call_later(deadline - time.monotonic(), self._on_timeout)

    async def __aenter__(self) -> Group:
        if asyncio._get_running_loop() is None:
            raise asyncio_only("async with af.group()")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("async with af.group() must be used inside a task")
        self._task = task
        self._enter(task.get_loop())
        return self

    def __enter__(self) -> Group:
        if asyncio._get_running_loop() is not None:
            raise blocks_the_loop(
                "`with af.group()` (it blocks at its exit)", "write `async with af.group() as g:`"
            )
        node = CURRENT.get()
        while True:
            try:
                self._enter(
                    (foreign_host_loop() or background_loop())
                    if node is None
                    else node._host_loop()
                )
                return self
            except LoopClosing:  # af.shutdown() closed that loop meanwhile: use the new one
                self._state, self._holder = _NEW, None

    # -- forking into it (called by Forker) --------------------------------------------

    def _host_loop(self) -> AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _fork_target(self, func: object) -> tuple[AbstractEventLoop, Future[Any] | None]:
        if self._state != _OPEN:
            when = "was never entered" if self._state == _NEW else "has exited"
            raise RuntimeError(
                f"cannot fork {callable_name(func)} into {self!r}: the group {when}. "
                "Fork into a group inside its body: `async with af.group() as g: g.fork(...)`"
            )
        if self._refusing:
            refusal = CancelledError(
                f"{callable_name(func)} was not started: {self!r} is failing, cancelled or "
                "timed out"
            )
            setattr(refusal, _REFUSED_BY, self)  # so the exit knows it for its own
            raise refusal
        assert self._loop is not None
        return self._loop, self._owner

    def _owner_fork(self) -> Future[Any] | None:
        return self._owner

    def _admit(self, child: Future[Any], start: Callable[[Future[Any]], None]) -> None:
        """On the loop: start a newly registered child now, or queue it under ``limit``."""
        if self._refusing or self._state != _OPEN:
            child._cancel_on_loop("its group is failing, cancelled or timed out")
        elif self._limit is None:
            start(child)
        elif len(self._holding) < self._limit:
            self._holding.add(child)
            start(child)
        else:
            self._waiting.append((child, start))

    def _child_done(self, child: Future[Any]) -> None:
        children = self._children
        if children is not None:
            children.discard(child)
        if self._limit is not None and child in self._holding:
            self._holding.discard(child)
            while self._waiting and len(self._holding) < self._limit:
                fut, start = self._waiting.popleft()
                if fut._state != PENDING:
                    continue
                if self._refusing:  # failing: the queued children never start
                    fut._cancel_on_loop("its group is failing, cancelled or timed out")
                    continue
                self._holding.add(fut)
                start(fut)
        exc = child._exception
        if exc is not None:
            child._mark_retrieved()  # the group reports it
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and self._base_error is None:
                self._base_error = exc
            self._errors.append(exc)
            self._abort()
        if not self._children and self._on_joined is not None:
            on_joined, self._on_joined = self._on_joined, None
            on_joined()

    @property
    def _refusing(self) -> bool:
        """Failing, cancelled or timed out: new forks are refused with CancelledError."""
        return self._aborting or self._user_cancelled

    # -- cancelling --------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel every child and, in the async form, the body at its next await.

        May be called from any thread. The group's exit is then quiet and the
        owning task is not left cancelled; forks into the group raise
        ``CancelledError`` from now on.
        """
        loop = self._loop
        if loop is None or self._state == _CLOSED:
            return
        self._user_cancelled = True  # at once, so that forks after this call are refused
        if asyncio._get_running_loop() is loop:
            self._cancel_on_loop()
        else:
            post(loop, self._cancel_on_loop)

    def _cancel_from_scope(self, msg: str | None) -> None:
        """The scope the group is open in is being cancelled: cancel as ``cancel()`` does.

        Called on the scope's loop, which may not be the group's. The exit then raises
        ``CancelledError``, as it does for an outside cancellation of the owning task: in a
        sync group, whose body cannot be interrupted, the code after the block never runs.
        """
        if self._state == _CLOSED or self._scope_cancel is not None:
            return
        self._scope_cancel = CancelledError(msg) if msg is not None else CancelledError()
        self._user_cancelled = True
        loop = self._loop
        assert loop is not None
        if asyncio._get_running_loop() is loop:
            self._cancel_on_loop()
        else:
            try:
                post(loop, self._cancel_on_loop)
            except RuntimeError:  # the group's loop is closed: nothing is left to cancel
                pass

    def _cancelling(self) -> bool:
        return self._refusing

    def _holds_slot(self, child: Future[Any]) -> bool:
        return child in self._holding

    def _cancel_on_loop(self) -> None:
        if self._state == _OPEN:
            self._user_cancelled = True
            self._abort()

    def _on_timeout(self) -> None:
        self._timer = None
        if self._state == _OPEN and not self._aborting:
            self._timed_out = True
            self._abort()

    def _abort(self) -> None:
        self._aborting = True
        self._cancel_children("its group is cancelling")
        task = self._task
        if not self._exiting and task is not None and not self._owner_cancelled:
            self._owner_cancelled = True
            task.cancel()

    # -- exiting -----------------------------------------------------------------------

    def _body_ended(self, exc: BaseException | None) -> None:
        """On the loop, at the exit: take the body's outcome into account."""
        self._exiting = True
        if exc is None:
            return
        if isinstance(exc, CancelledError):
            if not self._aborting:  # cancelled from outside: cancel the children too
                self._abort()
            return
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self._base_error = exc
        else:
            self._errors.append(exc)
        self._abort()

    def _close_on_loop(self) -> None:
        self._state = _CLOSED
        if self._holder is not None:
            self._holder._discard_group(self)
            self._holder = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _reset_scope(self) -> None:
        """In the body's thread: the code after the block is no longer in the group."""
        if self._token is not None:
            try:
                CURRENT.reset(self._token)
            except ValueError:  # exited in another context than it was entered in
                pass
            self._token = None

    def _refused(self, exc: BaseException | None) -> bool:
        """True if ``exc`` is the CancelledError this group raised to refuse a fork."""
        return getattr(exc, _REFUSED_BY, None) is self

    def _raise_outcome(
        self, exc: BaseException | None, outside_cancel: BaseException | None
    ) -> bool:
        """Raise what the group ends with; return True to swallow the body's exception."""
        if self._base_error is not None:
            if self._base_error is exc:
                return False
            raise self._base_error
        if self._errors:
            errors, self._errors = self._errors, []
            raise BaseExceptionGroup(
                f"unhandled errors in {self!r}".replace(" closed, 0 running", ""), errors
            ) from None
        if outside_cancel is not None:
            if outside_cancel is exc:
                return False
            raise outside_cancel
        if self._timed_out:
            group = f"group {self._name!r}" if self._name else "group"
            raise TimeoutError(f"{group} timed out after {self._timeout}s") from CancelledError()
        return isinstance(exc, CancelledError)

    # Both exits are typed as asyncio.TaskGroup's are, returning None: to a type checker an
    # exit typed `-> bool` may swallow the body's exception, so every name bound in the body
    # would be "possibly unbound" after it. At run time they return True only to swallow a
    # CancelledError that was the group's own (g.cancel(), a fork it refused): the
    # rare body cut short that way is the one case the checker no longer warns about.
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None
        assert self._task is not None
        # As asyncio.TaskGroup: a CancelledError propagates unless it was only ours.
        propagate = exc if isinstance(exc, CancelledError) else None
        self._body_ended(exc)
        while self._children:
            try:
                await joined_future(self, self._loop)
            except CancelledError as cancel:
                self._on_joined = None
                if not self._aborting:
                    propagate = cancel
                    self._abort()
        if self._owner_cancelled:
            if getattr(self._task, "_must_cancel", False):
                # Our cancel request never reached the body: take it now, not after the group.
                try:
                    await asyncio.sleep(0)
                except CancelledError:
                    pass
            if self._task.uncancel() == 0:
                propagate = None  # no cancellation but ours
        elif propagate is not None and self._refused(propagate):
            propagate = None
        if propagate is None and self._scope_cancel is not None:
            propagate = self._scope_cancel  # its scope was cancelled: so is the code after it
        self._close_on_loop()
        self._reset_scope()
        return self._raise_outcome(exc, propagate)  # type: ignore[return-value]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # as __aexit__: None to type checkers, True at run time to swallow our cancel
        assert self._loop is not None
        outcome: list[BaseException | None] = []
        joined = threading.Lock()
        joined.acquire()

        def at_exit() -> None:  # on the loop, where the group's state is current
            ours = self._refusing or self._refused(exc)
            outcome.append(exc if isinstance(exc, CancelledError) and not ours else None)
            self._body_ended(exc)
            self._when_joined(on_joined)

        def on_joined() -> None:
            self._close_on_loop()
            joined.release()

        post(self._loop, at_exit)
        try:
            blocking_acquire(joined, None)
        except KeyboardInterrupt:
            post(self._loop, self._interrupted)
            self._reset_scope()
            raise
        self._reset_scope()
        outside_cancel = outcome[0]
        if outside_cancel is None and self._scope_cancel is not None:
            outside_cancel = self._scope_cancel  # its scope was cancelled: the rest is skipped
        return self._raise_outcome(exc, outside_cancel)  # type: ignore[return-value]

    def _interrupted(self) -> None:
        """Ctrl-C at a sync group's exit: cancel the children and close, without waiting."""
        self._abort()
        self._close_on_loop()


def group(
    *,
    limit: int | None = None,
    timeout: float | None = None,
    name: str | None = None,
    eager: bool | None = None,
) -> Group:
    """Make a fail-fast task group; use it as ``async with af.group() as g:`` or ``with``.

    - ``limit``: at most this many children run at once; the rest start in fork order.
    - ``timeout``: seconds from entry; at the deadline the children and the body
      are cancelled and the group raises ``TimeoutError``.
    - ``name``: shown in the group's repr and errors.
    - ``eager``: the default of ``fork.options(eager=...)`` for forks made in it (a
      coroutine fork then runs up to its first suspension inside ``fork()``; Python
      3.12+). ``None`` follows ``af.configure(eager=...)``.

    Raises:
        BaseExceptionGroup: at the block's exit, the failures of the children (and of
            the body), once every child has finished.
        TimeoutError: at the block's exit, when ``timeout`` passed first.
        DeadlockError: entering ``with`` on a thread that runs an event loop: write
            ``async with``.
        TypeError: for an option of the wrong type (``ValueError`` for one out of range).
    """
    return Group(limit=limit, timeout=timeout, name=name, eager=eager)
