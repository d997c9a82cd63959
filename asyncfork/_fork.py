"""``fork`` and ``fork.options``: pick a fork's loop and scope, make its Future, start it."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import sys
import threading
import time
from asyncio import AbstractEventLoop
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from contextvars import copy_context
from functools import partial
from traceback import StackSummary, walk_stack
from types import CodeType, FrameType, FunctionType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast, overload

from . import _carriers, _instruments, _threads
from ._caller import trio_token
from ._carriers import SEEN as CARRIERS_SEEN
from ._classify import COROUTINE, SYNC, classify
from ._coroutine_fork import cancel_coroutine, drive, start_coroutine
from ._dask_scope import SCOPED_EXECUTOR, cluster_executor
from ._errors import callable_name, check_bool, check_name, check_timeout, describe, short_repr
from ._executor_fork import cancel_executor, start_executor
from ._future import EXECUTOR, PENDING, THREAD, Future
from ._hosts import foreign_host_loop
from ._instruments import HOOKS
from ._launch import launch, post_launch
from ._mailbox import LoopClosing
from ._runner import ROOTS, background_loop, roots_of
from ._scope import CURRENT, Node
from ._serial import ON as SERIAL
from ._serial import serial_here
from ._serial_fork import run_serially
from ._thread_fork import new_item, submit_item, sync_returned
from ._torchscript import TorchScriptLauncher, launches_at_once, torchscript_executor
from ._trio import coroutine_fork_error

if TYPE_CHECKING:
    from distributed import Client

    from ._group import Group

P = ParamSpec("P")
T = TypeVar("T")

_get_running_loop = asyncio._get_running_loop
_modules = sys.modules
_Task = asyncio.Task
_getframe = sys._getframe
# Fork sites by instruction offset, each for the last code object forking at that offset:
# a fork reuses its call site's tuple (no allocation), looked up by a small int's hash
# (a code object's hash is computed over its contents at every call). Bounded by the
# number of distinct offsets; another function forking at the same offset replaces it.
_SITES: dict[int, tuple[CodeType, int]] = {}
_site_at = _SITES.get
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE
_ON_CANCEL = ("wait", "abandon")


class Forker:
    """``fork`` itself, and the callables that ``fork.options(...)`` and groups make.

    Call it as ``fork(func, *args, **kwargs)``: every argument after ``func`` goes
    to ``func``. Options are set with :meth:`~asyncfork.Forker.options`, never through keywords.

    Raises:
        TypeError: ``func`` is not callable, is a coroutine object (``fork(main())``:
            pass the function) or an async generator function.
        RuntimeError: a coroutine function forked where no asyncio loop can run it
            (from trio code).
    """

    __slots__ = (
        "_daemon",
        "_detached",
        "_eager",
        "_executor",
        "_group",
        "_name",
        "_on_cancel",
        "_plain",
        "_timeout",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        executor: Executor | Client | None = None,
        timeout: float | None = None,
        detached: bool = False,
        daemon: bool = False,
        on_cancel: Literal["wait", "abandon"] = "wait",
        eager: bool | None = None,
        group: Group | None = None,
    ) -> None:
        self._name = check_name(name, "fork.options(name=...)", "the callable's name")
        if not isinstance(cast(object, executor), (Executor, type(None))):
            cluster = cluster_executor(executor)  # a distributed.Client, as it is
            if cluster is None:
                raise TypeError(
                    "fork.options(executor=...) must be a concurrent.futures.Executor "
                    "(a ThreadPoolExecutor, ProcessPoolExecutor) or a distributed.Client, "
                    f"not {describe(executor)}"
                )
            executor = cluster
        if not isinstance(cast(object, on_cancel), str):
            raise TypeError(
                "fork.options(on_cancel=...) must be 'wait' or 'abandon', "
                f"not {describe(on_cancel)}"
            )
        if on_cancel not in _ON_CANCEL:
            raise ValueError(
                "fork.options(on_cancel=...) must be 'wait' or 'abandon', "
                f"not {short_repr(on_cancel)}"
            )
        self._executor = cast("Executor | None", executor)
        self._timeout = check_timeout(timeout, "fork.options(timeout=...)")
        self._detached = check_bool(detached, "fork.options(detached=...)")
        self._daemon = check_bool(daemon, "fork.options(daemon=...)")
        self._on_cancel = on_cancel
        self._eager = None if eager is None else check_bool(eager, "fork.options(eager=...)")
        self._group = group
        # No option that a fork stores or times: the hot path skips those checks.
        self._plain = not (self._daemon or on_cancel != "wait" or self._timeout is not None)

    def options(
        self,
        *,
        name: str | None = None,
        executor: Executor | Client | None = None,
        timeout: float | None = None,
        detached: bool = False,
        daemon: bool = False,
        on_cancel: Literal["wait", "abandon"] = "wait",
        eager: bool | None = None,
    ) -> Forker:
        """Return a callable like ``fork`` that applies these options.

        - ``name``: the Future's name (default: the callable's qualified name).
        - ``executor``: run a sync callable on this ``concurrent.futures.Executor``, or on
          the Dask cluster of this ``distributed.Client`` (see ``asyncfork.dask``).
        - ``timeout``: cancel the fork this many seconds after the ``fork()`` call;
          its Future then raises ``TimeoutError``.
        - ``detached``: make a root fork, whatever the current scope.
        - ``daemon``: cancel (rather than drain) it at interpreter exit.
        - ``eager``: start a coroutine fork made on its loop's thread inside ``fork()``,
          running it up to its first suspension (Python 3.12+; on 3.11 it starts lazily);
          ``None`` follows the group it is forked into (``group(eager=...)``), else
          ``af.configure(eager=...)``.
        - ``on_cancel``: for a running sync fork, ``"wait"`` until the function
          returns, or ``"abandon"`` the thread and settle at once.

        Raises:
            TypeError: for an option of the wrong type (an ``executor`` that is neither a
                ``concurrent.futures.Executor`` nor a ``distributed.Client``).
            ValueError: for a negative ``timeout`` or an unknown ``on_cancel``.
        """
        return Forker(
            name=name,
            executor=executor,
            timeout=timeout,
            detached=detached,
            daemon=daemon,
            on_cancel=on_cancel,
            eager=eager,
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
        plain_function = type(func) is FunctionType
        scripted: TorchScriptLauncher | None = None
        if plain_function:
            kind = COROUTINE if func.__code__.co_flags & _CO_COROUTINE else classify(func)
        elif "torch" in _modules and (scripted := torchscript_executor(func)) is not None:
            kind = SYNC  # scripted code: its attributes are slow to look up, and need not be
        else:
            kind = classify(func)
        if kind == COROUTINE and self._executor is not None:
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
        elif scope is None:  # a root fork
            if running is None and kind == COROUTINE and trio_token() is not None:
                raise coroutine_fork_error(func)  # trio runs here, not asyncio
            if running is not None:
                loop = running
            elif node is not None:  # detached, from a sync fork's thread: its host loop
                loop = node._host_loop()
            else:  # an anyio worker thread forks onto its host loop, as our workers do
                loop = foreign_host_loop() or background_loop()
            scope = ROOTS.get(loop) or roots_of(loop)
        elif group is not None or running is None or scope._host_loop() is running:
            loop, parent = scope._fork_target(func)
        else:  # an implicit scope of another loop: the running loop wins, just below
            loop = scope._host_loop()
        on_loop = running is loop
        if not on_loop and running is not None and group is None:
            # A loop runs in this thread, but the scope came with the context from a fork
            # of another loop (asyncio.run inside a sync fork): the running loop wins, and
            # the fork is a root fork there, as it would be from a plain thread.
            loop, parent, on_loop = running, None, True
            scope = ROOTS.get(loop) or roots_of(loop)

        # The name now, not lazily: the fork's Task carries it (asyncio's debug output
        # and all_tasks() then name the user's function).
        name = self._name
        if not name:
            if plain_function:
                name = func.__qualname__
            elif scripted is None:
                name = callable_name(func)
            else:
                name = scripted.name or _name_launcher(scripted, func)
        # Where fork() was called, for a failure's note: the caller's code and instruction
        # offset (f_lineno would scan the line table), one shared tuple per call site.
        caller: FrameType | None
        try:
            caller = _getframe(1)
        except ValueError:  # called from C with no Python frame below (a thread's entry)
            caller = site = None
        else:
            code = caller.f_code
            offset = caller.f_lasti
            site = _site_at(offset)
            if site is None or site[0] is not code:
                site = _SITES[offset] = (code, offset)
        fut: Future[Any] = Future._new(
            loop,
            name,
            parent,  # pyright: ignore[reportUnknownArgumentType]
            scope,  # pyright: ignore[reportUnknownArgumentType]
            site,
        )
        deadline = None
        if not self._plain:
            # Only non-defaults are stored: most forks then never allocate an instance dict.
            if self._daemon:
                fut._daemon = True
            if self._on_cancel != "wait":
                fut._on_cancel = self._on_cancel
            if self._timeout is not None:
                fut._timeout = self._timeout
                deadline = time.monotonic() + self._timeout

        if caller is not None and loop.get_debug():  # asyncio's debug mode: the whole site
            fut._source_traceback = _creation_site(caller)
        if len(_modules) != CARRIERS_SEEN[0]:  # a carrier may be active (torch imported...)
            carried = _carriers.capture()  # thread-bound state, taken in the forking thread
            if carried is not None:
                fut._carried = carried
        executor = self._executor
        if kind != COROUTINE:
            if executor is None:  # asyncfork.dask.use(client): sync forks go to the cluster
                executor = SCOPED_EXECUTOR.get()
                if executor is None:
                    # A scripted callable runs on torch's inter-op pool, through torch.jit.fork.
                    executor = scripted
            fut._kind = THREAD if executor is None else EXECUTOR
        try:
            if HOOKS:  # the one test instruments cost when none is installed
                _instruments.call("fork_made", fut)
            # Serial mode (af.serial()): one test of an empty list while it is unused.
            if (
                SERIAL
                and serial_here()
                and run_serially(fut, func, args, kwargs, kind, running, deadline)
            ):
                return fut
            if kind == COROUTINE:
                fut._canceller = cancel_coroutine
                if (
                    on_loop
                    and deadline is None
                    and scope._limit is None
                    and not scope._cancel_requested
                ):
                    # The hot path: a coroutine fork on the running loop.
                    scope._add_child(fut)
                    # An empty kwargs dict is not kept: a pending fork should cost little memory.
                    coro = drive(fut, func, args, kwargs or None)
                    coro.__qualname__ = name  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
                    eager = self._eager
                    if eager is None:  # the group's setting, else af.configure's
                        eager = EAGER_DEFAULT if scope._eager is None else scope._eager
                    if eager and _EAGER_SUPPORTED:
                        _start_eagerly(fut, coro, loop, name)
                    else:
                        fut._task = _Task(coro, loop=loop, name=name)
                    return fut
                context = copy_context()  # now: a queued fork still sees the context of its fork()
                start: Callable[[Future[Any]], None] = partial(
                    start_coroutine, func=func, args=args, kwargs=kwargs, context=context
                )
            elif executor is not None:
                fut._canceller = cancel_executor
                start = partial(
                    start_executor, executor=executor, func=func, args=args, kwargs=kwargs
                )
                if type(executor) is TorchScriptLauncher and launches_at_once(
                    on_loop,
                    deadline,
                    scope,  # pyright: ignore[reportUnknownArgumentType]
                ):
                    # A scripted root fork from another thread goes to torch's pool inside
                    # fork(), as a thread fork is queued at once; the registration goes
                    # through the loop, ahead of the outcome.
                    _post_launch(fut, None, None)
                    start(fut)
                    return fut
            else:
                item = new_item(fut, func, args, kwargs, copy_context(), sync_returned)
                if not on_loop and deadline is None and scope._admits_at_once:
                    # From another thread, queue it at once: it need not wait for a busy loop,
                    # and a worker about to wait on it can run it inline. Only the
                    # registration goes through the loop, ahead of the fork's outcome.
                    _post_launch(fut, None, None)
                    fut._started = True
                    _threads.pool().submit(item)
                    return fut
                start = submit_item

            if on_loop:
                launch(fut, start, deadline)
            else:
                _post_launch(fut, start, deadline)
            return fut
        except BaseException as exc:
            # fork() raised after fork_made: the fork never runs, and instruments hear so.
            if HOOKS:
                _instruments.call("fork_finished", fut, exc)
            raise


# Task(eager_start=True) is new in Python 3.12; on 3.11 eager forks start lazily.
_EAGER_SUPPORTED = sys.version_info >= (3, 12)
# af.configure(eager=...): whether forks that do not say start eagerly.
EAGER_DEFAULT = False
# Eager starts nest on one thread's stack (a fork eagerly starting a fork, ...): past this
# depth a fork starts lazily instead, so a deep chain cannot raise RecursionError.
MAX_EAGER_DEPTH = 32


class _EagerDepth(threading.local):
    depth = 0


_eager_depth = _EagerDepth()


def _start_eagerly(
    fut: Future[Any], coro: Coroutine[Any, Any, None], loop: AbstractEventLoop, name: str
) -> None:
    """Run a coroutine fork up to its first suspension now, inside ``fork()``.

    Its Task takes ``fut._task`` in the driver, before the fork's code runs, so a cancel
    made during that first step reaches the Task.
    """
    local = _eager_depth
    if local.depth >= MAX_EAGER_DEPTH:
        fut._task = _Task(coro, loop=loop, name=name)
        return
    local.depth += 1
    try:
        task = _Task(coro, loop=loop, name=name, eager_start=True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    finally:
        local.depth -= 1
    if fut._state == PENDING:
        fut._task = task  # settled already: it keeps no Task


def _post_launch(
    fut: Future[Any], start: Callable[[Future[Any]], None] | None, deadline: float | None
) -> None:
    """``post_launch``; a root fork whose loop af.shutdown() is closing, or closed since
    ``fork()`` got it, goes to the background loop. Nothing has run it or seen its loop
    yet, but fork_made's hook."""
    while True:
        try:
            post_launch(fut, start, deadline)
            return
        except LoopClosing:
            fut._loop = background_loop()
            fut._scope = roots_of(fut._loop)


def _name_launcher(launcher: TorchScriptLauncher, func: Callable[..., Any]) -> str:
    """The name of the scripted callable a launcher forks, asked once for all its forks."""
    name = launcher.name = callable_name(func)
    return name


def _creation_site(frame: FrameType) -> StackSummary:
    """The innermost frames of ``fork()``'s caller, as asyncio keeps a task's: 10 at most,
    their source lines looked up only if a report prints them."""
    stack = StackSummary.extract(walk_stack(frame), limit=10, lookup_lines=False)
    stack.reverse()
    return stack


fork = Forker()
