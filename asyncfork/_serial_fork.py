"""Serial mode's forks: run inline, to completion, inside ``fork()``.

``fork()`` has made the Future and chosen its loop and scope as usual; this module starts
it in the calling thread instead, and returns once it is done:

- a sync fork calls its function right here, in the fork's context, with the running
  loop hidden (as in a worker thread), and is settled here, on its loop's thread;
- a coroutine fork gets its own Task, and the loop is stepped from inside ``fork()``
  until that Task is done (``_reenter``);
- a root fork from a thread that runs no loop runs on a private asyncio loop of that
  thread, made for the call and closed after it;
- a fork onto a loop running in another thread is made as usual and waited for.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import sys
from asyncio import AbstractEventLoop
from collections.abc import Callable
from contextvars import Context, copy_context
from functools import partial
from typing import Any

from . import _reenter, _threads
from ._blocking import block_until_done
from ._classify import COROUTINE
from ._coroutine_fork import cancel_coroutine, drive, new_task, start_coroutine
from ._errors import DeadlockError
from ._future import EXECUTOR, FINISHED, PENDING, Future
from ._launch import launch, post_launch
from ._mailbox import _mailboxes
from ._outcome import finish, on_timeout
from ._runner import cancel_remaining_tasks, roots_of
from ._thread_fork import new_item, submit_item, sync_returned, sync_settle
from ._threads import WorkItem

_PACKAGE = os.path.dirname(__file__) + os.sep

# Frames of the stack a fork may start with: enough for it to run and for asyncfork to
# settle it. Each nested serial fork takes about _FRAMES_PER_FORK (its code's own aside).
_HEADROOM = 80
_FRAMES_PER_FORK = 10


def run_serially(
    fut: Future[Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    kind: int,
    running: AbstractEventLoop | None,
    deadline: float | None,
) -> bool:
    """Run the fork ``fut`` to completion now; False to let ``fork()`` start it as usual
    (executor forks, daemon forks, and forks into a group of another loop from code on a
    loop)."""
    if fut._kind == EXECUTOR:
        return False  # it runs where its executor runs it
    if fut._daemon:
        return False  # a heartbeat that runs until cancelled: outside the structure, as usual
    loop = fut._loop
    hidden = _reenter.hidden_loop()
    if running is loop or hidden is loop:
        _run_here(fut, func, args, kwargs, kind, deadline)
    elif running is not None or hidden is not None:
        return False  # a loop of another thread, from code on a loop: never blocked on
    elif fut._parent is None and fut._scope is not None and fut._scope._is_root_set:
        _run_on_private_loop(fut, func, args, kwargs, kind, deadline)
    else:
        _run_elsewhere(fut, func, args, kwargs, kind, deadline)
    _reraise_interrupt(fut)
    return True


def _reraise_interrupt(fut: Future[Any]) -> None:
    """A fork's KeyboardInterrupt or SystemExit goes on in the code that forked it, as it
    would from code called inline: a Ctrl-C or ``sys.exit()`` in a serial fork's code ends
    the program, not just the fork (which is settled with it, and counts as retrieved)."""
    error = fut._exception if fut._state == FINISHED else None
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        fut._mark_retrieved()
        raise error.with_traceback(fut._tb)


def _run_elsewhere(
    fut: Future[Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    kind: int,
    deadline: float | None,
) -> None:
    """From a thread that runs no loop, into a group or fork of a loop running in another
    thread (a sync ``with af.group()``): started there as usual, then waited for."""
    context = copy_context()
    start: Callable[[Future[Any]], None]
    if kind == COROUTINE:
        fut._canceller = cancel_coroutine
        start = partial(start_coroutine, func=func, args=args, kwargs=kwargs, context=context)
    else:
        new_item(fut, func, args, kwargs, context, sync_returned)
        start = submit_item
    post_launch(fut, start, deadline)
    block_until_done((fut,), None, "a serial fork")


def _run_here(
    fut: Future[Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    kind: int,
    deadline: float | None,
    context: Context | None = None,
) -> None:
    """On the fork's loop thread (its loop running, or hidden by a serial sync fork)."""
    loop = fut._loop
    if context is None:
        context = copy_context()
    start: Callable[[Future[Any]], None]
    if kind == COROUTINE:
        if not _reenter.can_step(loop):
            raise _reenter.cannot_step(loop, f"the coroutine fork {fut.name!r}")
        fut._canceller = cancel_coroutine
        start = partial(_start_coroutine, func=func, args=args, kwargs=kwargs, context=context)
    else:
        new_item(fut, func, args, kwargs, context, _settle_here)
        start = _call_here
    raw: Any = loop
    hold = len(raw._ready) if _reenter.can_step(loop) else 0
    too_deep = _too_deep(fut)
    if too_deep is not None:
        launch(fut, None, None)  # registered with its scope, never started
        _not_started(fut, too_deep)
        return
    try:
        launch(fut, start, deadline)
    except BaseException as exc:  # a RecursionError of deep nesting, above all
        _not_started(fut, exc)
        return
    if fut._state == PENDING:
        _reenter.step_until(
            loop, partial(_done, fut), partial(_stuck, fut), hold=hold, cancel=fut.cancel
        )


def _start_coroutine(
    fut: Future[Any], *, func: Callable[..., Any], args: Any, kwargs: Any, context: Context
) -> None:
    """``start_coroutine``, closing the coroutine if its Task cannot be made (when the
    stack of nested serial forks runs out, say)."""
    coro = drive(fut, func, args, kwargs)
    try:
        fut._task = new_task(fut, coro, context)
    except BaseException:
        coro.close()
        raise


def _not_started(fut: Future[Any], exc: BaseException) -> None:
    """Starting the fork here raised (in asyncfork's code, not the fork's): that is its
    failure, as it would be of inline code; a sync fork's call counts as returned, so
    the interpreter's exit does not wait for it."""
    item = fut._item
    if isinstance(item, WorkItem):
        item.state = _threads.FINISHED
    if fut._state == PENDING:
        fut._cancel_children()
        finish(fut, None, exc)


def _too_deep(fut: Future[Any]) -> RecursionError | None:
    """A RecursionError for ``fork`` if the stack is too close to Python's recursion limit
    to run it inline: failed so before it starts, its failure is settled cleanly, where
    running out of stack midway through asyncfork's code could leave it unsettled."""
    try:
        sys._getframe(sys.getrecursionlimit() // 3)
    except ValueError:  # far from the limit (the cheap test, first)
        return None
    try:
        _probe(_HEADROOM)  # Python counts some C calls too: measure what is left
        return None
    except RecursionError:
        pass
    return RecursionError(
        f"serial mode: fork {fut.name!r} nests too deep to run inline: each nested serial "
        f"fork takes about {_FRAMES_PER_FORK} frames of the Python stack, and the recursion "
        f"limit is {sys.getrecursionlimit()}. Raise it with sys.setrecursionlimit(), or leave "
        "serial mode for this code with `with af.serial(False):`"
    )


def _probe(depth: int) -> int:
    return _probe(depth - 1) if depth else 0


def _done(fut: Future[Any]) -> bool:
    return fut._state != PENDING


def _call_here(fut: Future[Any]) -> None:
    """A sync fork's start: call its function in this thread, the running loop hidden."""
    fut._started = True
    item = fut._item
    assert isinstance(item, WorkItem)
    item.state = _threads.RUNNING  # as a worker takes it: a cancel no longer drops it
    saved = _reenter.hide(asyncio._get_running_loop())
    try:
        # Called from a coroutine's frame: a failure's traceback chains back (f_back) to
        # that frame and no further, so it never reaches the frames here and in fork()
        # that hold the Future (a cycle that would keep a failed root fork unreported).
        runner = _run_item([item])
        del item
        try:
            runner.send(None)
        except StopIteration:
            pass
    finally:
        _reenter.unhide(saved)


async def _run_item(holder: list[WorkItem]) -> None:
    holder.pop().run()


def _settle_here(item: WorkItem, value: Any, error: BaseException | None) -> None:
    """A sync fork's function returned: settle it here, on its loop's thread."""
    fut = item.future
    posted = _posted_cancel(fut)
    if posted is not None:
        # Cancelled while it ran (by its own code, say): the request was posted to the
        # loop, as from any thread but the loop's; a worker's outcome would come after it.
        fut._cancel_on_loop(*posted)
    timer = fut._timer
    if timer is not None and timer.when() <= fut._loop.time():
        # Its timeout passed while it ran: as its timer would have, had it had the chance.
        timer.cancel()
        on_timeout(fut)
    sync_settle(fut, item, value, error)


def _posted_cancel(fut: Future[Any]) -> tuple[Any, ...] | None:
    """The arguments of a cancel of ``fut`` posted to its loop and not run yet, if any."""
    cancel = fut._cancel_on_loop
    box = _mailboxes.get(fut._loop)
    for fn, args in box._calls if box is not None else ():
        if fn == cancel:
            return args
    raw: Any = fut._loop
    for handle in getattr(raw, "_ready", ()):  # call_soon_threadsafe: a loop not asyncfork's
        if getattr(handle, "_callback", None) == cancel and not handle._cancelled:
            return tuple(handle._args)
    return None


def _stuck(fut: Future[Any]) -> None:
    """Nothing can finish ``fut``: fail what it waits on with a DeadlockError."""
    task = fut._task
    if task is None:  # never started: it waits for a slot of its group
        error = _reenter.deadlock(
            f"fork {fut.name!r} waits for a slot of {fut._scope!r} to start, and the fork "
            "holding it waits for this one"
        )
        fut._cancel_on_loop("serial mode: it could never start")
        raise error
    inner: Any = task
    while issubclass(type(inner._fut_waiter), asyncio.Task):  # awaiting a task: the innermost
        inner = inner._fut_waiter
    error = _reenter.deadlock(f"fork {fut.name!r} waits in {_awaiting(task)}")
    if not _reenter.throw_into(inner, error):
        fut._cancel_on_loop("serial mode: it could never finish")
        raise DeadlockError(f"serial mode: fork {fut.name!r} can never finish")


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: its await chain, outside asyncfork, innermost last."""
    steps: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            if type(awaited).__name__ == "coroutine_wrapper":  # coro.__await__(): unwrap it
                awaited = next(filter(inspect.iscoroutine, gc.get_referents(awaited)), None)
                continue
            if not steps:  # else a Future (or its iterator) at the end of the chain
                steps.append(type(awaited).__name__)
            break
        code = frame.f_code
        inner = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        if code.co_filename.startswith(_PACKAGE):
            if inner is None:  # asyncfork's step wrappers (carriers, instruments) send by hand
                inner = frame.f_locals.get("inner")
        else:
            name = getattr(code, "co_qualname", code.co_name)
            steps.append(f"{name}() ({code.co_filename}:{frame.f_lineno})")
        awaited = inner
    return " -> ".join(steps) if steps else "something"


def _run_on_private_loop(
    fut: Future[Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    kind: int,
    deadline: float | None,
) -> None:
    """A root fork from a thread that runs no loop: on an asyncio loop of this thread, made
    for it and closed after it, so it runs here (pdb, tracebacks) and can be stepped."""
    context = copy_context()
    loop = asyncio.SelectorEventLoop()
    try:
        fut._loop = loop
        fut._scope = roots_of(loop)
        loop.run_until_complete(_root(fut, func, args, kwargs, kind, deadline, context))
    finally:
        try:
            cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _root(
    fut: Future[Any],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    kind: int,
    deadline: float | None,
    context: Context,
) -> None:
    _run_here(fut, func, args, kwargs, kind, deadline, context)
