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

from asyncio import AbstractEventLoop
from collections import deque
from collections.abc import Callable
from typing import Any

# The most calls one wake-up runs before the loop gets back to its other work.
_BATCH = 256


class Mailbox:
    """The queue of calls posted to one loop from other threads."""

    __slots__ = ("_calls", "_scheduled", "loop")

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._scheduled = False

    def post(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._calls.append((fn, args))
        # Racy by design, and safe: _run clears the flag before it drains the queue, so
        # a call appended before a stale True is seen is still drained by that run.
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._run)

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
            if calls and not self._scheduled:  # calls came in meanwhile, or an interrupt
                self._scheduled = True
                self.loop.call_soon(self._run)


_mailboxes: dict[AbstractEventLoop, Mailbox] = {}


def open_mailbox(loop: AbstractEventLoop) -> None:
    _mailboxes[loop] = Mailbox(loop)


def close_mailbox(loop: AbstractEventLoop) -> None:
    _mailboxes.pop(loop, None)


def post(loop: AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """Call ``fn(*args)`` soon on ``loop``'s thread; raises RuntimeError if it is closed."""
    box = _mailboxes.get(loop)
    if box is None:
        loop.call_soon_threadsafe(fn, *args)
    else:
        if loop.is_closed():
            raise RuntimeError("Event loop is closed")
        box.post(fn, args)
