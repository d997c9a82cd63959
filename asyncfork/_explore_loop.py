"""The event loop of schedule exploration: ready task steps and sync forks in a seeded order.

An ``ExploringLoop`` is an asyncio selector loop whose every iteration permutes the
task steps that are ready, and holds some of them back for later iterations, with a
``random.Random`` of its seed; other callbacks keep asyncio's order. The sync forks of
its forks do not go to the worker pool: the loop runs them one at a time, at seeded
iterations and in a seeded order, and waits while one runs, so its side effects and its
completion land at a point the seed chose. Same seed, same program: same order.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from . import _threads
from ._threads import CREATED, QUEUED, RUNNING, WorkItem

# How likely a task is to be held back at each iteration: each task draws one of these
# at its first step, so some tasks run fast and others lag many iterations behind. A
# lagging task is what uncovers a check-then-act race that asyncio's FIFO order hides.
_HOLD_CHANCES = (0.0, 0.0, 0.5, 0.8, 0.95)

# How likely the loop is to run a queued sync fork at an iteration that has other work.
_SYNC_CHANCE = 0.5

# How long the loop waits for a sync fork it started before letting it run alongside
# the loop (uncontrolled), so a sync fork waiting for something only the loop can do
# outside asyncfork's waits (a threading.Event a coroutine sets) cannot hang the run.
TURN_SECONDS = 10.0

_names = itertools.count(1)


class ExploringLoop(asyncio.SelectorEventLoop):
    """A selector event loop that runs ready task steps and sync forks in a seeded order."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._rng = random.Random(seed)
        self._held: list[asyncio.Handle] = []
        self._hold_chance: weakref.WeakKeyDictionary[asyncio.Task[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._sync = _SyncForks(self)
        # Set when a sync fork ran past TURN_SECONDS: the rest of the run was not controlled.
        self.uncontrolled: str | None = None
        with _LOOPS_LOCK:
            _LOOPS[self] = self._sync
            _threads.explore_submit = _submit

    def _run_once(self) -> None:
        ready = cast("deque[asyncio.Handle]", self._ready)  # type: ignore[attr-defined]
        sync = self._sync
        if sync:
            sync.run_one(self._rng, not (ready or self._held))
            if not (ready or self._held) and sync.runnable():
                self._write_to_self()  # type: ignore[attr-defined]  # no sleep in select
        if self._held or len(ready) > 1:
            self._reorder(ready)
        super()._run_once()  # type: ignore[misc]

    def _reorder(self, ready: deque[asyncio.Handle]) -> None:
        # Popped one by one, not cleared: another thread may append meanwhile.
        handles = self._held + [ready.popleft() for _ in range(len(ready))]
        self._held = []
        steps = [h for h in handles if _task_of(h) is not None]
        if not steps:
            ready.extendleft(reversed(handles))
            return
        rng = self._rng
        chance = self._hold_chance
        running: list[asyncio.Handle] = []
        for handle in steps:
            task = _task_of(handle)
            assert task is not None
            hold = chance.get(task)
            if hold is None:
                hold = chance[task] = rng.choice(_HOLD_CHANCES)
            (self._held if rng.random() < hold else running).append(handle)
        if not running:  # every step held: one runs anyway, so the loop never idles on them
            running.append(self._held.pop(rng.randrange(len(self._held))))
        rng.shuffle(running)
        # Other callbacks keep their places; the steps that run fill the steps' places.
        fill = iter(running)
        order = [h if _task_of(h) is None else next(fill, None) for h in handles]
        ready.extendleft(reversed([h for h in order if h is not None]))

    def close(self) -> None:
        """Close the loop; sync forks it never ran go to the worker pool."""
        self._held = []
        with _LOOPS_LOCK:
            _LOOPS.pop(self, None)
            if not _LOOPS:  # the pool's hook costs nothing once no exploring loop is open
                _threads.explore_submit = None
        self._sync.release()
        super().close()


def _task_of(handle: asyncio.Handle) -> asyncio.Task[Any] | None:
    """The task whose step (or wake-up) ``handle`` is, else None (cancelled ones too)."""
    if handle._cancelled:
        return None
    task = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
    if not isinstance(task, asyncio.Task):
        return None
    found: asyncio.Task[Any] = task
    return found


class _SyncForks:
    """The sync forks of one exploring loop, which runs them one at a time.

    A sync fork runs only while it holds the turn: the loop waits meanwhile. It gives
    the turn back when it returns, or when it blocks in asyncfork's wait; the loop then
    polls that wait at each iteration (so it ends at a point the seed fixes, not when a
    thread wakes) and, once it is over, gives the fork a turn again at a seeded iteration.
    """

    def __init__(self, loop: ExploringLoop) -> None:
        self.loop = loop
        self.pending: list[WorkItem] = []  # queued, not started: in submission order
        self.blocked: list[_Turn] = []  # started, waiting in asyncfork's wait: in that order
        self.cond = threading.Condition(threading.Lock())

    def __bool__(self) -> bool:
        return bool(self.pending or self.blocked)

    def accept(self, item: WorkItem) -> None:
        with _threads._items_lock:
            if item.state != CREATED:
                return  # dropped (cancelled) on its way here
            item.state = QUEUED
            self.pending.append(item)
        if threading.get_ident() != self.loop._thread_id:  # type: ignore[attr-defined]
            self.loop._write_to_self()  # type: ignore[attr-defined]  # wake it, if idle

    def runnable(self) -> bool:
        """Whether a sync fork could go on now (the loop must not sleep, waiting for I/O)."""
        with self.cond:
            return bool(self.pending) or any(turn.poll() for turn in self.blocked)

    def run_one(self, rng: random.Random, idle: bool) -> None:
        """Maybe (surely if ``idle``) give one sync fork, chosen by ``rng``, the turn."""
        with _threads._items_lock:
            self.pending = [item for item in self.pending if item.state == QUEUED]
        with self.cond:
            ready = [turn for turn in self.blocked if turn.poll()]
        choices = len(self.pending) + len(ready)
        if not choices or not (idle or rng.random() < _SYNC_CHANCE):
            return
        index = rng.randrange(choices)
        if index >= len(self.pending):
            turn = ready[index - len(self.pending)]
            self.blocked.remove(turn)
            with self.cond:
                turn.state = _RUNNING
                self.cond.notify_all()
        else:
            with _threads._items_lock:
                item = self.pending.pop(index)
                item.state = RUNNING
            turn = _Turn(self)
            thread = threading.Thread(
                target=turn.run,
                args=(item,),
                name=f"asyncfork-explore-{next(_names)}",
                daemon=True,
            )
            thread.start()
        self._wait_for(turn)

    def _wait_for(self, turn: _Turn) -> None:
        """This (the loop's) thread waits until ``turn``'s fork returns or blocks."""

        def back(seconds: float) -> bool:
            return self.cond.wait_for(turn.gave_back, None if seconds < 0 else seconds)

        with self.cond:
            # In slices on the main thread, so that Ctrl-C gets through.
            if not _threads.wait_in_slices(back, TURN_SECONDS):
                turn.state = _FREE
                self.loop.uncontrolled = (
                    f"sync fork {turn.name!r} held the turn past {TURN_SECONDS:g} s"
                )
                self.cond.notify_all()
            elif turn.state == _BLOCKED:
                self.blocked.append(turn)

    def release(self) -> None:
        """The loop closes: queued sync forks go to the worker pool, blocked ones run free."""
        with _threads._items_lock:
            left = [item for item in self.pending if item.state == QUEUED]
            for item in left:
                item.state = CREATED
            self.pending = []
        with self.cond:
            for turn in self.blocked:
                turn.state = _FREE
            self.blocked = []
            self.cond.notify_all()
        for item in left:
            _threads.pool().submit(item)


# A turn's states.
_RUNNING = 0  # holds the turn: the loop waits
_LENDING = 1  # about to block in asyncfork's wait (still holds the turn)
_BLOCKED = 2  # in that wait: the loop polls it
_WOKEN = 3  # the wait is over (or timed out): to run when the loop gives it the turn
_DONE = 4  # the fork has returned
_FREE = 5  # let go: runs alongside the loop, as any worker


class _Turn(_threads.Pool):
    """One sync fork's thread under exploration; also the pool its code sees."""

    def __init__(self, forks: _SyncForks) -> None:
        super().__init__(1)
        self._forks = forks
        self.name = "?"
        self.state: int = _RUNNING
        self._attempt: Callable[[float], bool] | None = None
        self._result = False

    def run(self, item: WorkItem) -> None:
        self.name = item.future.name
        # As the pool: a wait there helps (runs queued sync forks inline) and lends its slot.
        _threads._local.pool = self
        _threads._local.turn = self
        try:
            item.run()
        finally:
            _threads._local.turn = None
            with self._forks.cond:
                if self.state != _FREE:
                    self.state = _DONE
                self._forks.cond.notify_all()

    def gave_back(self) -> bool:
        return self.state in (_BLOCKED, _DONE, _FREE)

    def poll(self) -> bool:
        """On the loop, under the condition: whether the wait is over (try it, without
        blocking, on the fork's behalf)."""
        if self.state == _BLOCKED and self._attempt is not None and self._attempt(0):
            self._result = True
            self.state = _WOKEN
        return self.state == _WOKEN

    def lend_slot(self) -> None:
        with self._forks.cond:
            if self.state == _RUNNING:
                self.state = _LENDING

    def reclaim_slot(self) -> None:
        pass

    def wait(self, attempt: Callable[[float], bool], timeout: float | None) -> bool:
        """``_threads.wait_in_slices`` on this thread: a lent wait hands the turn back."""
        cond = self._forks.cond
        with cond:
            if self.state != _LENDING:  # a wait that does not lend (or let go): just wait
                return self._unlocked(attempt, timeout)
            self._attempt, self._result, self.state = attempt, False, _BLOCKED
            cond.notify_all()
            timed_out = False
            if not cond.wait_for(self._turn_or_free, timeout) and self.state == _BLOCKED:
                # Timed out (real time): to go on, with False, when the loop says.
                timed_out, self.state = True, _WOKEN
                self._forks.loop._write_to_self()  # type: ignore[attr-defined]
                cond.wait_for(self._turn_or_free)
            self._attempt = None
            if self._let_go() and not (self._result or timed_out):  # the loop closed
                return self._unlocked(attempt, timeout)
            return self._result

    def _let_go(self) -> bool:
        # A method, not `self.state == _FREE` inline: the loop's thread changes the state
        # while this one waits, which a type checker's narrowing cannot know.
        return self.state == _FREE

    def _unlocked(self, attempt: Callable[[float], bool], timeout: float | None) -> bool:
        """The wait itself, in this thread, the condition's lock released meanwhile."""
        cond = self._forks.cond
        cond.release()
        try:
            return attempt(-1 if timeout is None else timeout)
        finally:
            cond.acquire()

    def _turn_or_free(self) -> bool:
        return self.state in (_RUNNING, _FREE)


# Open exploring loops and their sync forks.
_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SyncForks] = (
    weakref.WeakKeyDictionary()
)
_LOOPS_LOCK = threading.Lock()


def _submit(item: WorkItem) -> bool:
    """The pool's hook: take ``item`` if its fork's loop is an open exploring loop."""
    sync = _LOOPS.get(item.future._loop)
    if sync is None:
        return False
    sync.accept(item)
    return True
