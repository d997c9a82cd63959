"""Running an asyncio loop from inside one of its own callbacks, for serial mode.

Serial mode finishes a coroutine fork inside ``fork()``, which is synchronous and is often
called by a coroutine running on that very loop. So the loop is stepped from there
(``BaseEventLoop._run_once``), with the calling task left while the others run, until
the fork is done. Only asyncio's own loops can be stepped so; uvloop's cannot.

While it steps, the loop is watched for a serial deadlock: nothing ready, no timer, no
socket watched, no worker thread busy. Then nothing can ever finish the fork, and the
caller is told so (``DeadlockError``) instead of hanging.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
import time
from asyncio import AbstractEventLoop, BaseEventLoop, Handle, Task, events, tasks
from collections.abc import Callable
from typing import Any, cast

from . import _threads
from ._errors import DeadlockError, describe
from ._scope import current_fork

# How often a stuck-looking loop is looked at again while a worker thread runs code that
# may post to it from afar (a fork of another loop, which would not wake this one).
_THREAD_POLL = 0.02


class _Local(threading.local):
    # The loop whose thread this is, hidden while a serial sync fork runs here (a sync
    # fork sees no running loop, as in a worker thread); its blocking waits step it.
    hidden: AbstractEventLoop | None = None
    # The tasks whose fork() call steps the loop here, outermost first, each with its
    # cancelling() count then: a cancel of any of them stops the stepping.
    callers: list[tuple[Task[Any], int]]

    def __init__(self) -> None:
        self.callers = []


_local = _Local()


def hidden_loop() -> AbstractEventLoop | None:
    """The loop a serial sync fork running in this thread hides, if any."""
    return _local.hidden


def hide(loop: AbstractEventLoop | None) -> tuple[AbstractEventLoop | None, ...]:
    """Hide the running loop (``loop``) for a serial sync fork's call; returns the state to
    give to :func:`unhide`."""
    saved = (events._get_running_loop(), _local.hidden)
    if loop is not None:
        events._set_running_loop(None)
        _local.hidden = loop
    return saved


def unhide(saved: tuple[AbstractEventLoop | None, ...]) -> None:
    running, hidden = saved
    events._set_running_loop(running)
    _local.hidden = hidden


def can_step(loop: AbstractEventLoop) -> bool:
    """Whether serial mode can step ``loop`` from inside it: asyncio's own loops only."""
    return isinstance(loop, BaseEventLoop)


def cannot_step(loop: AbstractEventLoop, what: str) -> RuntimeError:
    return RuntimeError(
        f"serial mode cannot run {what} inside fork() on {describe(loop)}: it runs the event "
        "loop from inside fork(), which only asyncio's own loop allows (uvloop does not). "
        "Run this code on asyncio's loop (ASYNCFORK_LOOP=asyncio for asyncfork's loops, "
        "your test runner's loop setting for a test's), or leave serial mode here with "
        "`with af.serial(False):`"
    )


def step_until(
    loop: AbstractEventLoop,
    done: Callable[[], bool],
    stuck: Callable[[], None],
    *,
    hold: int = 0,
    deadline: float | None = None,
    cancel: Callable[[], object] | None = None,
) -> bool:
    """Step ``loop`` (running in this thread, maybe hidden) until ``done()``.

    The first ``hold`` ready callbacks (those ready before the fork) run only once the
    fork waits on something, so a fork runs first, as inline code would. When nothing
    can ever make progress, ``stuck()`` is called: it raises, or wakes a waiter with an
    error. Returns False if ``deadline`` (``time.monotonic()``) passes first, or, with
    ``cancel``, if the calling task (or one stepping the loop further out) is cancelled
    meanwhile: ``cancel()`` is called and the cancellation lands at the caller's next await.
    """
    if not isinstance(loop, BaseEventLoop):
        raise cannot_step(loop, "this fork")
    raw: Any = loop
    ready = raw._ready
    task = tasks.current_task(loop)
    saved = events._get_running_loop()
    held = [ready.popleft() for _ in range(min(hold, len(ready)))]
    callers = _local.callers
    if task is not None:
        tasks._leave_task(loop, task)
        if cancel is not None:
            callers.append((task, task.cancelling()))
    events._set_running_loop(loop)
    timer: Any = None
    try:
        while not done():
            if cancel is not None and _cancel_pending(callers):
                cancel()  # as the cancelled await would have cancelled the fork
                return False
            if not ready and held:  # the fork waits: what was ready before it runs now
                ready.extend(held)
                held = []
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not ready and timer is None:
                if deadline is not None:
                    timer = loop.call_at(_loop_time(loop, deadline), _nothing)
                elif _no_progress(raw):
                    stuck()
                    continue
                elif _threads_busy(raw):
                    timer = loop.call_later(_THREAD_POLL, _nothing)
            raw._run_once()
            if timer is not None and not timer._scheduled:  # it ran
                timer = None
        return True
    finally:
        if cancel is not None and task is not None:
            callers.pop()
        if timer is not None:
            timer.cancel()
        if held:
            ready.extendleft(reversed(held))
        # The loop iteration that called fork() counts on popping as many callbacks as
        # were ready then; the steps above may have run some: stand-ins make up for them.
        for _ in range(hold - len(ready)):
            ready.appendleft(_skipped(loop))
        events._set_running_loop(saved)
        if task is not None:
            tasks._enter_task(loop, task)


def _cancel_pending(callers: list[tuple[Task[Any], int]]) -> bool:
    """A task stepping the loop (from its fork() call) was cancelled meanwhile."""
    return any(cast(Any, task)._must_cancel or task.cancelling() > count for task, count in callers)


def _nothing() -> None:
    pass


def _skipped(loop: AbstractEventLoop) -> Handle:
    handle = Handle(_nothing, (), loop)
    handle.cancel()
    return handle


def _loop_time(loop: AbstractEventLoop, deadline: float) -> float:
    return loop.time() + (deadline - time.monotonic())


def _no_progress(loop: Any) -> bool:
    """Nothing can ever run on ``loop``: no callback ready, no timer, no socket watched
    (but its own wake-up pipe), no thread at work that may post to it."""
    if loop._ready or any(not handle._cancelled for handle in loop._scheduled):
        return False
    selector = getattr(loop, "_selector", None)
    wakeup = getattr(loop, "_ssock", None)
    if selector is None or wakeup is None:
        return False  # a loop watching I/O some other way (Windows' proactor): cannot tell
    own = wakeup.fileno()
    if any(fd != own for fd in selector.get_map()):
        return False
    return not _threads_busy(loop) and not _fed_from_afar(loop)


def _fed_from_afar(loop: AbstractEventLoop) -> bool:
    """A task of ``loop`` awaits a ``concurrent.futures.Future`` (``run_in_executor`` with
    a pool of the user's, ``wrap_future``): another thread will post its outcome, and that
    post wakes the loop."""
    for task in tasks.all_tasks(loop):
        waiter: Any = cast(Any, task)._fut_waiter
        if waiter is None:
            continue
        for fut in (waiter, *getattr(waiter, "_children", ())):  # a gather(): its parts
            if fut.done() or isinstance(fut, Task):
                continue
            for callback, _ in fut._callbacks or ():
                if getattr(callback, "__name__", "") == "_call_check_cancel":  # _chain_future's
                    return True
    return False


def throw_into(task: Task[Any], error: BaseException) -> bool:
    """Wake ``task``, waiting on a Future, with ``error`` raised at its await; the Future
    itself is left alone (whoever was to complete it still may). False if ``task`` does
    not wait on a Future it can be woken from so."""
    waiter: Any = cast(Any, task)._fut_waiter
    if waiter is None or waiter.done():
        return False
    wakeup = next(
        (entry for entry in waiter._callbacks or () if getattr(entry[0], "__self__", None) is task),
        None,
    )  # the task's own wake-up
    if wakeup is None:
        return False
    callback, context = wakeup
    waiter.remove_done_callback(callback)
    stand_in = waiter.get_loop().create_future()
    stand_in.add_done_callback(callback, context=context)
    stand_in.set_exception(error)
    return True


def _threads_busy(loop: Any) -> bool:
    """A worker thread (asyncfork's, or the loop's default executor's) is at work."""
    if _threads.busy_workers():
        return True
    executor = getattr(loop, "_default_executor", None)
    if executor is None:
        return False
    try:
        idle = executor._idle_semaphore._value
        return bool(executor._work_queue.qsize() or len(executor._threads) > idle)
    except AttributeError:  # not a ThreadPoolExecutor we know: it may be at work
        return True


def deadlock(what: str) -> DeadlockError:
    """The error of a serial deadlock: ``what`` (a fork, and where it waits) can never end."""
    return DeadlockError(
        f"serial mode: {what}, and nothing left on the event loop can ever end that wait "
        "(no callback is ready, no timer is set, no socket is watched and no worker thread "
        "is busy). In serial mode each fork runs to completion inside fork(), so a fork that "
        "waits for something done later (by a sibling forked after it, or by the code after "
        "its fork() call) can only deadlock. Fork the side that sets it first, or leave "
        "serial mode for this code with `with af.serial(False):`"
    )


def wait_for_lock(lock: threading.Lock, timeout: float | None, loop: AbstractEventLoop) -> bool:
    """A blocking wait in a serial sync fork on ``loop``'s thread: step the loop until
    ``lock`` is released, rather than block the thread the loop needs."""
    if lock.acquire(blocking=False):
        return True
    if not can_step(loop):
        raise cannot_step(loop, "a blocking wait in a sync fork")
    deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
    got = [False]

    def done() -> bool:
        if not got[0]:
            got[0] = lock.acquire(blocking=False)
        return got[0]

    def stuck() -> None:
        raise deadlock(f"{current_fork()!r} blocks, waiting for a Future or a group's children")

    return step_until(loop, done, stuck, deadline=deadline)
