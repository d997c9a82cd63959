"""``af.tree()``: the forks running now, as a tree, for debugging a hang.

It reads the scope tree the core keeps for its joins: the root set of every loop
with forks (asyncfork's own loops and other libraries'), each scope's children
and open groups, and each fork's parent. Those structures belong to other
threads, so they are read defensively: copied at once, and read again if they
changed meanwhile.
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

from ._errors import check_bool
from ._future import PENDING, Future
from ._runner import OWNED, ROOTS, loop_label
from ._scope import Node

T = TypeVar("T")


def tree(*, show: bool = True) -> str:
    """The forks running now as a tree with names, states and ages; printed unless show=False.

    One block per event loop, each fork under the fork that made it::

        <uvloop loop 0x7f3a...> (asyncfork-loop)
        └─ main  running  1.2s
           ├─ fetch  running  0.8s
           └─ fetch  pending  0.8s

    States: ``pending`` (not started yet), ``running`` (started; this includes
    waiting for its children), ``cancelling`` (cancellation asked, cleanup not
    finished). It finds the forks of every event loop, asyncfork's own (the
    background loop, ``af.run``'s) and others (``asyncio.run``'s, a web
    server's), sync forks and group members included. Returns ``""`` when no
    fork is running.
    """
    show = check_bool(show, "tree(show=...)")
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


def _collect() -> list[Future[Any]]:
    """Every pending fork reachable from the root sets, through children and groups."""
    return pending_under(_copy(ROOTS.values()))


def pending_under(nodes: Iterable[Node]) -> list[Future[Any]]:
    """The pending forks among ``nodes`` and under them (children, groups), each once."""
    scopes = list(nodes)
    seen: dict[Future[Any], None] = {}
    while scopes:
        scope = scopes.pop()
        if isinstance(scope, Future):
            if scope._state != PENDING or scope in seen:
                continue
            seen[scope] = None
        scopes += _copy(scope._groups or ())
        scopes += _copy(scope._children or ())
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
        lines.append(f"<{loop_label(loop)}> ({_loop_thread(loop)})")
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
    if fut._kind != "coroutine":
        parts.append(f"({fut._kind})")
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
