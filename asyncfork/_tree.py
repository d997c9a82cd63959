"""``af.tree()``: the forks running now, as a tree, for debugging a hang.

asyncfork keeps no registry of live forks (that would cost every fork), so the
tree is rebuilt from what exists: the root sets of the loops asyncfork owns, the
fork tasks of those loops and of the loop running in this thread, each Future's
children, and each fork's parent. Those structures belong to other threads, so
they are read defensively: copied at once, and read again if they changed meanwhile.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import threading
import time
from asyncio import AbstractEventLoop
from collections.abc import Iterable
from typing import Any, TypeVar

from ._fork import _cancel_executor, _cancel_sync, _drive, _drive_returned
from ._future import PENDING, Future
from ._runner import OWNED

T = TypeVar("T")

# The task bodies of coroutine forks; their frame holds the fork's Future as ``fut``.
_FORK_CODES = (_drive.__code__, _drive_returned.__code__)


def tree(*, show: bool = True) -> str:
    """The forks running now as a tree with names, states and ages; printed unless show=False.

    One block per event loop, each fork under the fork that made it::

        <uvloop loop 0x7f3a...> (asyncfork-loop)
        └─ main  running  1.2s
           ├─ fetch  running  0.8s
           └─ fetch  pending  0.8s

    States: ``pending`` (not started yet), ``running`` (started; this includes
    waiting for its children), ``cancelling`` (cancellation asked, cleanup not
    finished). It finds the forks of asyncfork's own loops (the background loop
    and ``af.run``'s) and of the event loop running in the calling thread; a
    sync fork is found through its parent or its children. Returns ``""`` when no
    fork is running.
    """
    text = _render(_collect())
    if show:
        print(text or "(no forks running)", end="" if text else "\n")
    return text


def _copy(items: Iterable[T]) -> list[T]:
    """A list of ``items``, a set or dict view another thread may be changing."""
    try:
        return list(items)
    except RuntimeError:  # "changed size during iteration": one more try
        try:
            return list(items)
        except RuntimeError:
            return []  # still changing: leave it out rather than fail a debugging aid


def _fork_tasks(loop: AbstractEventLoop) -> list[Future[Any]]:
    """The Futures of the coroutine forks whose tasks run on ``loop``."""
    try:
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:
        return []
    found: list[Future[Any]] = []
    for task in tasks:
        coro: Any = task.get_coro()
        if getattr(coro, "cr_code", None) not in _FORK_CODES:
            continue
        frame = coro.cr_frame
        if frame is None:  # it has just returned
            continue
        fut = frame.f_locals.get("fut")  # absent once _drive has dropped it, at its end
        if isinstance(fut, Future):
            found.append(fut)  # pyright: ignore[reportUnknownArgumentType]
    return found


def _collect() -> list[Future[Any]]:
    """Every pending fork that can be reached, parents and children included."""
    stack: list[Future[Any]] = []
    for loop, roots in _copy(OWNED.items()):
        stack += _copy(roots._children or ())
        stack += _fork_tasks(loop)  # group children are in their group, not their parent
    running = asyncio._get_running_loop()
    if running is not None and running not in OWNED:
        stack += _fork_tasks(running)
    seen: dict[Future[Any], None] = {}
    while stack:
        fut = stack.pop()
        if fut in seen or fut._state != PENDING:
            continue
        seen[fut] = None
        stack += _copy(fut._children or ())
        if fut._parent is not None:
            stack.append(fut._parent)
    return list(seen)


def _render(forks: list[Future[Any]]) -> str:
    if not forks:
        return ""
    now = time.monotonic()
    present = set(forks)
    children: dict[Future[Any] | None, list[Future[Any]]] = {}
    for fut in forks:
        parent = fut._parent if fut._parent in present else None
        children.setdefault(parent, []).append(fut)
    for kids in children.values():
        kids.sort(key=lambda f: f._created)
    by_loop: dict[AbstractEventLoop, list[Future[Any]]] = {}
    for top in children.get(None, []):
        by_loop.setdefault(top._loop, []).append(top)

    lines: list[str] = []
    for loop, tops in by_loop.items():
        lines.append(f"<{_loop_label(loop)}> ({_loop_thread(loop)})")
        # Depth-first without recursion: a fork tree can be deeper than Python's stack.
        pending: list[tuple[Future[Any], str, bool]] = [
            (fut, "", i == len(tops) - 1) for i, fut in reversed(list(enumerate(tops)))
        ]
        while pending:
            fut, prefix, last = pending.pop()
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_describe(fut, now)}")
            inner = prefix + ("   " if last else "│  ")
            kids = children.get(fut, [])
            pending += [
                (kid, inner, i == len(kids) - 1) for i, kid in reversed(list(enumerate(kids)))
            ]
    return "\n".join(lines) + "\n"


def _describe(fut: Future[Any], now: float) -> str:
    if fut._cancel_requested:
        state = "cancelling"
    elif fut._started:
        state = "running"
    else:
        state = "pending"
    parts = [fut.name, state, _age(now - fut._created)]
    if fut._canceller is _cancel_sync:
        parts.append("(thread)")
    elif fut._canceller is _cancel_executor:
        parts.append("(executor)")
    scope = fut._scope
    if scope is not None and not scope._admits_at_once:  # a group
        name = getattr(scope, "_name", None)
        parts.append(f"[group {name!r}]" if name else "[group]")
    return "  ".join(parts)


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _loop_label(loop: AbstractEventLoop) -> str:
    # The same label a trace gives the loop, so the two can be matched up.
    return f"{type(loop).__module__.split('.')[0]} loop 0x{id(loop):x}"


def _loop_thread(loop: AbstractEventLoop) -> str:
    """The name of the thread that runs ``loop``, as far as it can be told."""
    roots = OWNED.get(loop)
    if roots is not None and roots.background is not None:
        return roots.background.thread.name
    if asyncio._get_running_loop() is loop:
        return threading.current_thread().name
    ident = getattr(loop, "_thread_id", None)  # asyncio's loops know it; uvloop's do not
    if ident is not None:
        for thread in threading.enumerate():
            if thread.ident == ident:
                return thread.name
    return "af.run" if roots is not None else "another thread"
