"""``fork``: classify the callable, pick its loop, scope and runner, and start it."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from asyncio import AbstractEventLoop, CancelledError
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from contextvars import copy_context
from functools import partial
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast, overload

from . import _threads, _trace
from ._errors import callable_name, check_timeout
from ._future import FINISHED, PENDING, Future
from ._mailbox import post
from ._runner import OWNED, background_loop, note_interrupt
from ._scope import CURRENT, Node, joined_future
from ._threads import WorkItem

if TYPE_CHECKING:
    from ._group import Group

P = ParamSpec("P")
T = TypeVar("T")

_get_running_loop = asyncio._get_running_loop
_Task = asyncio.Task
_CO_COROUTINE = inspect.CO_COROUTINE
_CO_ASYNC_GENERATOR = inspect.CO_ASYNC_GENERATOR
_ON_CANCEL = ("wait", "abandon")

# -- classifying the callable --------------------------------------------------------

_COROUTINE = 0
_SYNC = 1


def _classify(func: Any) -> int:
    if type(func) is FunctionType:  # the common case, without inspect's unwrapping
        flags = func.__code__.co_flags
        if flags & _CO_COROUTINE:
            return _COROUTINE
        if not flags & _CO_ASYNC_GENERATOR and not hasattr(func, "_is_coroutine_marker"):
            return _SYNC
    if inspect.iscoroutine(func):
        _reject_coroutine_object(func)
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
        return _COROUTINE
    if not isinstance(func, (type, MethodType, partial)) and inspect.iscoroutinefunction(
        _call_method(func)
    ):
        return _COROUTINE
    return _SYNC


def _call_method(obj: object) -> object:
    """The ``__call__`` of a callable instance's class (how ``obj(...)`` really runs)."""
    return getattr(type(obj), "__call__", None)  # noqa: B004 - fetching it, not testing it


def _reject_coroutine_object(coro: Any) -> None:
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


# -- the fork call ------------------------------------------------------------------


class Forker:
    """``fork`` itself, and the callables that ``fork.options(...)`` and groups make.

    Call it as ``fork(func, *args, **kwargs)``: every argument after ``func`` goes
    to ``func``. Options are set with :meth:`options`, never through keywords.
    """

    __slots__ = ("_daemon", "_detached", "_executor", "_group", "_name", "_on_cancel", "_timeout")

    def __init__(
        self,
        *,
        name: str | None = None,
        executor: Executor | None = None,
        timeout: float | None = None,
        detached: bool = False,
        daemon: bool = False,
        on_cancel: Literal["wait", "abandon"] = "wait",
        group: Group | None = None,
    ) -> None:
        if not isinstance(cast(object, name), (str, type(None))):
            raise TypeError(f"fork.options(name=...) must be a str, not {name!r}")
        if not isinstance(cast(object, executor), (Executor, type(None))):
            raise TypeError(
                "fork.options(executor=...) must be a concurrent.futures.Executor "
                f"(a ThreadPoolExecutor, ProcessPoolExecutor, a cluster client's executor), "
                f"not {type(executor).__name__}"
            )
        if on_cancel not in _ON_CANCEL:
            raise ValueError(
                f"fork.options(on_cancel=...) must be 'wait' or 'abandon', not {on_cancel!r}"
            )
        self._name = name
        self._executor = executor
        self._timeout = check_timeout(timeout, "fork.options(timeout=...)")
        self._detached = bool(detached)
        self._daemon = bool(daemon)
        self._on_cancel = on_cancel
        self._group = group

    def options(
        self,
        *,
        name: str | None = None,
        executor: Executor | None = None,
        timeout: float | None = None,
        detached: bool = False,
        daemon: bool = False,
        on_cancel: Literal["wait", "abandon"] = "wait",
    ) -> Forker:
        """Return a callable like ``fork`` that applies these options.

        - ``name``: the Future's name (default: the callable's qualified name).
        - ``executor``: run a sync callable on this ``concurrent.futures.Executor``.
        - ``timeout``: cancel the fork this many seconds after the ``fork()`` call;
          its Future then raises ``TimeoutError``.
        - ``detached``: make a root fork, whatever the current scope.
        - ``daemon``: cancel (rather than drain) it at interpreter exit.
        - ``on_cancel``: for a running sync fork, ``"wait"`` until the function
          returns, or ``"abandon"`` the thread and settle at once.
        """
        return Forker(
            name=name,
            executor=executor,
            timeout=timeout,
            detached=detached,
            daemon=daemon,
            on_cancel=on_cancel,
            group=self._group,
        )

    def __repr__(self) -> str:
        return "<asyncfork.fork>" if self._group is None else f"<fork into {self._group!r}>"

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]: ...

    @overload
    def __call__(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...

    def __call__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Start ``func(*args, **kwargs)`` and return its Future at once."""
        if type(func) is FunctionType and func.__code__.co_flags & _CO_COROUTINE:
            kind = _COROUTINE  # the common case, decided without a call
        else:
            kind = _classify(func)
        if kind == _COROUTINE and self._executor is not None:
            raise TypeError(
                f"fork.options(executor=...) runs sync callables, but {callable_name(func)} is a "
                "coroutine function: fork it without an executor (it runs on the event loop)"
            )
        running = _get_running_loop()
        node = CURRENT.get()
        group = self._group
        scope: Node | None = group if group is not None else None if self._detached else node
        parent: Future[Any] | None = None
        if type(scope) is Future and scope._state == PENDING:
            # A child of the running fork: the common case, without a method call.
            parent = scope  # pyright: ignore[reportUnknownVariableType]
            loop = parent._loop
        elif scope is not None:
            loop, parent = scope._fork_target(func)
        elif running is not None:
            loop = running
        elif node is not None:  # detached, from a sync fork's thread: its host loop
            loop = node._host_loop()
        else:
            loop = background_loop()

        fut: Future[Any] = Future._new(
            loop,
            self._name or func,
            parent,  # pyright: ignore[reportUnknownArgumentType]
            scope,  # pyright: ignore[reportUnknownArgumentType]
        )
        if scope is None:
            fut._scope = OWNED.get(loop)
        # Only non-defaults are stored: most forks then never allocate an instance dict.
        if self._daemon:
            fut._daemon = True
        if self._on_cancel != "wait":
            fut._on_cancel = self._on_cancel
        deadline = None
        if self._timeout is not None:
            fut._timeout = self._timeout
            deadline = time.monotonic() + self._timeout

        if _trace.active is not None:  # the one check tracing costs when it is off
            _record_fork(fut, kind, self._executor is not None, fut._scope)
        on_loop = running is loop
        held = fut._scope
        if kind == _COROUTINE:
            fut._canceller = _cancel_coroutine
            if (
                on_loop
                and deadline is None
                and (held is None or (held._limit is None and not held._cancel_requested))
            ):
                # The hot path: a coroutine fork on the running loop.
                if held is not None:
                    held._add_child(fut)
                # An empty kwargs dict is not kept: a pending fork should cost little memory.
                fut._task = _Task(_drive(fut, func, args, kwargs or None), loop=loop)
                return fut
            context = copy_context()  # now: a queued fork still sees the context of its fork()
            start: Callable[[Future[Any]], None] = partial(
                _start_coroutine, func=func, args=args, kwargs=kwargs, context=context
            )
        elif self._executor is not None:
            fut._canceller = _cancel_executor
            start = partial(
                _start_executor, executor=self._executor, func=func, args=args, kwargs=kwargs
            )
        else:
            fut._canceller = _cancel_sync
            context = copy_context()
            context.run(CURRENT.set, fut)
            item = WorkItem(fut, func, args, kwargs, context, _sync_returned)
            fut._item = item
            if not on_loop and deadline is None and (held is None or held._admits_at_once):
                # From another thread, queue it at once: it need not wait for a busy loop,
                # and a worker about to wait on it can run it inline. Only the
                # registration goes through the loop, ahead of the fork's outcome.
                _post_launch(fut, None, None)
                fut._started = True
                _threads.pool().submit(item)
                return fut
            start = _submit_item

        if on_loop:
            _launch(fut, start, deadline)
        else:
            _post_launch(fut, start, deadline)
        return fut


# Guards the count of forks on their way to a parent's loop from other threads.
_inflight_lock = threading.Lock()


def _post_launch(
    fut: Future[Any], start: Callable[[Future[Any]], None] | None, deadline: float | None
) -> None:
    """From another thread: launch on the fork's loop, counted so its parent waits for it."""
    parent = fut._scope
    counted = type(parent) is Future
    if counted:
        assert isinstance(parent, Future)
        with _inflight_lock:
            if parent._state != PENDING:
                parent._fork_target(fut)  # raises: the parent has finished
            parent._inflight += 1
    try:
        _post(fut._loop, _launch, fut, start, deadline, counted)
    except BaseException:
        if counted:
            with _inflight_lock:
                parent._inflight -= 1  # type: ignore[union-attr]
        raise


def _record_fork(fut: Future[Any], kind: int, on_executor: bool, scope: Node | None) -> None:
    trace = _trace.active
    if trace is None:
        return
    label = "coroutine" if kind == _COROUTINE else "executor" if on_executor else "thread"
    group = None
    if scope is not None and not scope._admits_at_once:  # a group
        group = getattr(scope, "_name", None) or f"group 0x{id(scope):x}"
    try:
        trace._fork_made(fut, label, group)
    except Exception:
        _trace.report_failure("recording a fork")


def _post(loop: AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    try:
        post(loop, fn, *args)
    except RuntimeError:
        raise RuntimeError(
            f"cannot fork onto {loop!r}: the event loop is closed. Fork from code that runs "
            "while its loop does, or from a plain thread (which uses the background loop)"
        ) from None


def _launch(
    fut: Future[Any],
    start: Callable[[Future[Any]], None] | None,
    deadline: float | None,
    counted: bool = False,
) -> None:
    """On the fork's loop: register it with its scope, arm its timeout, and start it."""
    scope = fut._scope
    if counted:
        assert scope is not None
        with _inflight_lock:
            scope._inflight -= 1
        if fut._state != PENDING:
            scope._inflight_arrived()
    if fut._state != PENDING:  # cancelled before it got here
        return
    if scope is not None:
        if type(scope) is Future and scope._state != PENDING:
            # The parent finished while this fork was on its way from another thread.
            fut._scope = None
            fut._cancel_on_loop(f"its parent {scope!r} had finished")
            return
        scope._add_child(fut)
        if scope._cancel_requested:
            fut._cancel_on_loop("its parent was cancelled")  # it never starts
            return
    if deadline is not None:
        delay = deadline - time.monotonic()
        if delay <= 0:
            _on_timeout(fut)  # it never starts
            return
        fut._timer = fut._loop.call_later(delay, _on_timeout, fut)
    if start is not None:
        if scope is not None:
            scope._admit(fut, start)
        else:
            start(fut)


def _on_timeout(fut: Future[Any]) -> None:
    fut._timer = None
    fut._timed_out = True
    fut._cancel_on_loop(None)


def _finish(fut: Future[Any], value: Any, exc: BaseException | None) -> None:
    """Settle a fork whose body and children are done, by DESIGN's outcome rules."""
    if exc is None and fut._failed is None:  # the common case: a value, no failed child
        fut._settle(FINISHED, value, None)
        return
    errors = fut._unretrieved_failures()
    cancelled = isinstance(exc, CancelledError)
    if errors:
        if exc is not None and not cancelled:
            errors.insert(0, exc)
        fut._set_exception(
            BaseExceptionGroup(f"unretrieved failures in children of fork {fut.name!r}", errors)
        )
    elif cancelled:
        if fut._timed_out:
            timeout_error = TimeoutError(f"fork {fut.name!r} timed out after {fut._timeout}s")
            timeout_error.__cause__ = exc
            fut._set_exception(timeout_error)
        else:
            fut._set_cancelled()
    elif exc is not None:
        fut._set_exception(exc)
    else:
        fut._set_result(value)


# -- coroutine forks ------------------------------------------------------------------


async def _drive(
    fut: Future[Any], func: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
) -> None:
    """The task body of a coroutine fork: run it, join its children, settle its Future."""
    fut._started = True
    CURRENT.set(fut)
    try:
        awaitable = func(*args, **kwargs) if kwargs else func(*args)
        if fut._record is not None:
            awaitable = _trace.timed(awaitable, fut._record)
        value = await awaitable
    except BaseException as exc:  # KeyboardInterrupt too: a fork never takes its loop down
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is _DRIVE_CODE:
            exc = exc.with_traceback(tb.tb_next)  # start the traceback in the fork's function
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            note_interrupt(fut._loop, exc)
        if fut._children or fut._inflight:
            fut._cancel_children()
            await _join(fut)
        _finish(fut, None, exc)
        # The traceback reaches this frame: drop its references, or they form a cycle
        # that keeps a failed Future (and its never-retrieved report) alive until a GC.
        del fut, exc
        return
    if fut._children or fut._inflight:
        cancelled = await _join(fut)
        if cancelled is not None:
            _finish(fut, None, cancelled)
            return
    _finish(fut, value, None)


_DRIVE_CODE = _drive.__code__


async def _join(fut: Future[Any]) -> CancelledError | None:
    """Wait for every child; a cancellation meanwhile cancels them and is returned."""
    cancelled = None
    loop = fut._loop
    while fut._children or fut._inflight:
        try:
            await joined_future(fut, loop)
        except CancelledError as exc:
            cancelled = exc
            fut._on_joined = None
            fut._cancel_children()
    return cancelled


def _start_coroutine(
    fut: Future[Any],
    *,
    func: Callable[..., Awaitable[Any]],
    args: Any,
    kwargs: Any,
    context: Any,
) -> None:
    fut._task = _Task(_drive(fut, func, args, kwargs), loop=fut._loop, context=context)


def _cancel_coroutine(fut: Future[Any], msg: str | None) -> None:
    task = fut._task
    if task is not None:
        task.cancel(msg)  # if it has not stepped yet, its coroutine closes without running
        if fut._started:
            return  # _drive settles the Future after the cleanup
    if fut._returned is not None:  # a coroutine a sync fork returned, never started
        fut._returned.close()
        fut._returned = None
    # Never started (_launch will skip it). Only a sync fork's part can have made children.
    fut._cancel_children(msg)
    fut._when_joined(partial(_finish, fut, None, fut._cancelled_error()))


# -- sync forks in worker threads -----------------------------------------------------


def _submit_item(fut: Future[Any]) -> None:
    fut._started = True
    assert fut._item is not None
    _threads.pool().submit(fut._item)


def _sync_returned(item: WorkItem, value: Any, error: BaseException | None) -> None:
    """In the worker thread: hand the outcome to the fork's loop."""
    fut = item.future
    try:
        post(fut._loop, _sync_settle, fut, item, value, error)
    except RuntimeError:  # the loop is closed: settle here, nobody else can
        if error is None and inspect.iscoroutine(value):
            value.close()
            error = RuntimeError(f"fork {fut.name!r} returned a coroutine after its loop closed")
        _finish(fut, value, error)


def _sync_settle(fut: Future[Any], item: WorkItem, value: Any, error: BaseException | None) -> None:
    returned_coroutine = error is None and inspect.iscoroutine(value)
    if fut._state != PENDING or (fut._cancel_requested and fut._on_cancel == "abandon"):
        # Abandoned: its result is dropped without noise (the abandon path settles it).
        if returned_coroutine:
            value.close()
        return
    if returned_coroutine:
        if fut._cancel_requested:  # cancelled (or timed out) while the function ran
            value.close()
            value = None
        else:
            # A sync callable returned a coroutine: run it on the host loop, as this fork.
            fut._returned = value
            fut._started = False
            fut._canceller = _cancel_coroutine
            fut._task = _Task(_drive_returned(fut, value), loop=fut._loop, context=item.context)
            return
    if error is not None:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            note_interrupt(fut._loop, error)
        fut._cancel_children()
    fut._when_joined(partial(_sync_joined, fut, value, error))


def _sync_joined(fut: Future[Any], value: Any, error: BaseException | None) -> None:
    if error is None and fut._cancel_requested:
        error = fut._cancelled_error()  # on_cancel="wait": the result is discarded
    _finish(fut, value, error)


async def _drive_returned(fut: Future[Any], coro: Coroutine[Any, Any, Any]) -> None:
    fut._returned = None
    await _drive(fut, _identity, (coro,), {})


def _identity(value: Any) -> Any:
    return value


def _cancel_sync(fut: Future[Any], msg: str | None) -> None:
    item = fut._item
    assert item is not None
    if _threads.pool().drop(item):
        _finish(fut, None, fut._cancelled_error())  # never started
        return
    # Running in a thread: it cannot be interrupted, but its children can.
    fut._cancel_children(msg)
    if fut._on_cancel == "abandon" and item.state != _threads.FINISHED:
        fut._when_joined(partial(_finish, fut, None, fut._cancelled_error()))
    # Otherwise _sync_settle (on its way, or joining) sees _cancel_requested.


# -- sync forks on a user's Executor -------------------------------------------------


def _start_executor(
    fut: Future[Any], *, executor: Executor, func: Callable[..., Any], args: Any, kwargs: Any
) -> None:
    fut._started = True
    if fut._record is not None:
        _trace.started(fut._record, type(executor).__name__)
    try:
        cf = executor.submit(func, *args, **kwargs)
    except BaseException as exc:
        _finish(fut, None, exc)
        return
    fut._item = cf
    loop = fut._loop

    def returned(cf: Any) -> None:
        try:
            post(loop, _executor_settle, fut, cf)
        except RuntimeError:
            _executor_settle(fut, cf)

    cf.add_done_callback(returned)


def _executor_settle(fut: Future[Any], cf: Any) -> None:
    if fut._state != PENDING:
        return
    value = None
    error: BaseException | None
    if cf.cancelled():
        error = fut._cancelled_error()
    else:
        error = cf.exception()
        if error is None:
            value = cf.result()
            if fut._cancel_requested:
                error = fut._cancelled_error()
    _finish(fut, value, error)


def _cancel_executor(fut: Future[Any], msg: str | None) -> None:
    cf = fut._item
    if cf is None:
        _finish(fut, None, fut._cancelled_error())  # not submitted yet: it never will be
        return
    if cf.cancel():
        return  # its done-callback settles the Future as cancelled
    if fut._on_cancel == "abandon":
        _finish(fut, None, fut._cancelled_error())


fork = Forker()
