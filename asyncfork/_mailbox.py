"""Cross-thread calls into asyncfork's own loops, batched.

``loop.call_soon_threadsafe`` wakes the loop (a write to its self-pipe) for every
call. A thread that forks many things, or many workers that finish at once,
would pay that once per call. A mailbox queues the calls and wakes its loop once
for all the calls posted before the loop gets to them, in the order they were
posted. Loops asyncfork does not own get plain ``call_soon_threadsafe``.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
import weakref
from asyncio import AbstractEventLoop, _get_running_loop, sleep
from collections import deque
from collections.abc import Callable
from typing import Any

# The most calls one wake-up runs before the loop gets back to its other work.
_BATCH = 256
# Back-pressure: a thread without a running loop that finds this many calls queued waits
# until the loop has brought the queue down to _LOW. A loop's thread never waits.
_LIMIT = 16384
_LOW = _LIMIT // 2


class LoopClosing(RuntimeError):
    """A root fork or group from another thread reached a loop that af.shutdown() is closing.

    The forking code then uses the new background loop; users never see it.
    """


class Mailbox:
    """The queue of calls posted to one loop from other threads."""

    __slots__ = (
        "_calls",
        "_lock",
        "_room",
        "_scheduled",
        "_waiting",
        "closed",
        "loop",
        "refusing_roots",
    )

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._scheduled = False
        self._waiting = 0  # threads waiting for room, under _room's lock
        self._room = threading.Condition(threading.Lock())
        # Makes "closed, or queued and the loop woken" one step: a call is never left in a
        # queue that nobody runs, and a poster told "closed" knows its call never runs.
        self._lock = threading.Lock()
        self.closed = False
        # Set while af.shutdown() closes the loop: root forks and groups from other threads
        # are refused (under _lock), and go to the new background loop instead.
        self.refusing_roots = False

    def post(self, fn: Callable[..., object], args: tuple[Any, ...], root: bool = False) -> None:
        if len(self._calls) >= _LIMIT and _get_running_loop() is None:
            self._wait_for_room()
        with self._lock:
            if root and self.refusing_roots:  # first: a loop af.shutdown() closes stays so
                raise LoopClosing
            if self.closed or self.loop.is_closed():
                raise RuntimeError("Event loop is closed")
            self._calls.append((fn, args))
            # _run clears the flag (without the lock) before it drains the queue, so a
            # call appended while a stale True is seen is still drained by that run.
            if not self._scheduled:
                self._scheduled = True
                self.loop.call_soon_threadsafe(self._run)

    def _wait_for_room(self) -> None:
        """Block this thread (it runs no loop) until the loop has drained the queue to _LOW.

        Never on a loop's thread: a loop waiting on another loop's mailbox while that
        loop posts to its own could deadlock, and a loop posting to itself never may.
        """
        room = self._room
        with room:
            self._waiting += 1  # before the check: _run reads it after it pops
            try:
                while len(self._calls) > _LOW:
                    if self.closed or self.loop.is_closed():
                        raise RuntimeError("Event loop is closed")
                    room.wait(0.5)  # bounded: re-checks a loop that closed meanwhile
            finally:
                self._waiting -= 1

    def _wake_posters(self) -> None:
        with self._room:
            self._room.notify_all()

    def _run(self) -> None:
        self._scheduled = False
        calls = self._calls
        # Only the calls posted so far, and at most a batch of them: the rest wait for the
        # next loop iteration, so busy posters cannot starve the loop's timers, I/O and tasks.
        count = min(len(calls), _BATCH)
        try:
            while count and calls:
                count -= 1
                fn, args = calls.popleft()
                try:
                    fn(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self.loop.call_exception_handler(
                        {"message": f"exception in {fn!r} posted to the loop", "exception": exc}
                    )
        finally:
            if self._waiting and len(calls) <= _LOW:
                self._wake_posters()
            if calls and not self._scheduled:  # calls came in meanwhile, or an interrupt
                self._scheduled = True
                self.loop.call_soon(self._run)


_mailboxes: dict[AbstractEventLoop, Mailbox] = {}


def open_mailbox(loop: AbstractEventLoop) -> None:
    _mailboxes[loop] = Mailbox(loop)


async def close_mailbox(loop: AbstractEventLoop) -> None:
    """On ``loop``, before it closes: refuse new calls, and run the ones posted before."""
    box = _mailboxes.get(loop)
    if box is None:
        return
    _refuse(box)
    while box._calls:
        box._run()
        await sleep(0)  # what those calls scheduled runs too


def forget_mailbox(loop: AbstractEventLoop) -> None:
    """Once ``loop`` is closed (or could not be drained): drop its mailbox for good."""
    box = _mailboxes.pop(loop, None)
    if box is not None:
        _refuse(box)
        if box.refusing_roots:  # af.shutdown() closed it: later root forks go elsewhere
            _shut_down.add(loop)


# Loops af.shutdown() closed: a root fork that got one before it closed is sent on.
_shut_down: weakref.WeakSet[AbstractEventLoop] = weakref.WeakSet()


def _refuse(box: Mailbox) -> None:
    with box._lock:
        box.closed = True
    box._wake_posters()


def refuse_roots(loop: AbstractEventLoop, refuse: bool) -> bool:
    """Refuse (or accept again) root forks and groups posted to ``loop`` from other threads.

    Those posted before are queued ahead of anything posted after this call. Returns
    whether any call was queued then (if none, no root fork is on its way).
    """
    box = _mailboxes.get(loop)
    if box is None:
        return False
    with box._lock:
        box.refusing_roots = refuse
        return bool(box._calls)


def admit_root(
    loop: AbstractEventLoop, admit: Callable[[], object], *, open_only: bool = False
) -> None:
    """Call ``admit()`` unless ``loop`` refuses roots from other threads (LoopClosing).

    ``open_only``: refused as ``post_root`` refuses a call, also with RuntimeError once the
    loop is closed (or its mailbox is).
    """
    box = _mailboxes.get(loop)
    if box is None:
        if loop in _shut_down:
            raise LoopClosing
        if open_only and loop.is_closed():
            raise RuntimeError("Event loop is closed")
        admit()
        return
    with box._lock:
        if box.refusing_roots:
            raise LoopClosing
        if open_only and (box.closed or loop.is_closed()):
            raise RuntimeError("Event loop is closed")
        admit()


def has_calls(loop: AbstractEventLoop) -> bool:
    """Are calls posted to ``loop`` waiting to run?"""
    box = _mailboxes.get(loop)
    return box is not None and bool(box._calls)


def owns_loop(loop: AbstractEventLoop) -> bool:
    """Is ``loop`` one of asyncfork's own (with a mailbox)?"""
    return loop in _mailboxes


def post(loop: AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """Call ``fn(*args)`` soon on ``loop``'s thread; raises RuntimeError if it is closed."""
    box = _mailboxes.get(loop)
    if box is None:
        loop.call_soon_threadsafe(fn, *args)
    else:
        box.post(fn, args)


def post_root(loop: AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """``post`` for launching a root fork: raises LoopClosing while ``loop`` refuses them,
    and once af.shutdown() has closed it (the refusal outranks "loop is closed")."""
    box = _mailboxes.get(loop)
    if box is not None:
        box.post(fn, args, True)
    elif loop in _shut_down:
        raise LoopClosing
    else:
        loop.call_soon_threadsafe(fn, *args)
