"""Where a fork belongs: the current-scope context variable and the join bookkeeping.

A *node* is anything that children are registered with and joined by: a fork's
Future (implicit scope), a group, or the root set of a loop asyncfork owns.
Every method here runs on the node's loop thread, so no locks are needed (a loop's
root set also takes root forks in and out from other threads: ``_runner.Roots``).
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import contextvars
from asyncio import AbstractEventLoop
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ._errors import DeadlockError

if TYPE_CHECKING:
    from ._future import Future

# The innermost scope of the running code: a fork's Future or a group.
CURRENT: contextvars.ContextVar[Node | None] = contextvars.ContextVar(
    "asyncfork.current", default=None
)


def wake(waiter: asyncio.Future[None]) -> None:
    """Resolve a loop future that a coroutine awaits, unless its waiter has gone."""
    if not waiter.done():
        waiter.set_result(None)


def joined_future(node: Node, loop: AbstractEventLoop) -> asyncio.Future[None]:
    """A loop future that resolves once every child of ``node`` has settled."""
    waiter: asyncio.Future[None] = loop.create_future()
    node._when_joined(partial(wake, waiter))
    return waiter


class Node:
    """Bookkeeping for the children of one scope; all of it runs on the node's loop."""

    # No __slots__ here: nodes keep rarely used state in their instance dict.
    # Class-level defaults: most forks never have a child, so they never store these.
    _children: set[Future[Any]] | None = None
    _failed: list[Future[Any]] | None = None
    _on_joined: Callable[[], None] | None = None
    # Forks on their way to this node from other threads (counted under a lock in _launch).
    _inflight: int = 0
    # Ever a fork counted that way: a sync fork's outcome is then settled on its loop.
    _forked_from_threads: bool = False
    _is_root_set: bool = False  # a loop's root set (see _runner.Roots)
    _eager: bool | None = None  # a group's eager= for the forks made in it (None: not set)
    # Scheduling facts a fork reads from its scope; groups override them.
    _limit: int | None = None
    _cancel_requested: bool = False
    _admits_at_once: bool = True  # no admission step (a group has one)
    # Depth of the fork whose code runs in this scope (-1: none); a Future is its own.
    _depth: int = -1
    # Groups open in this scope: af.tree() walks into them, and cancelling the scope's
    # children cancels them. Changed from the thread that enters the group and on the loop
    # at its exit (one set operation each, atomic); read as a copy.
    _groups: set[Node] | None = None

    def _add_group(self, group: Node) -> None:
        if self._groups is None:
            self._groups = {group}
        else:
            self._groups.add(group)

    def _discard_group(self, group: Node) -> None:
        if self._groups is not None:
            self._groups.discard(group)

    def _cancelling(self) -> bool:
        """True once this scope is being cancelled: a group entered in it is cancelled at once."""
        return self._cancel_requested

    def _cancel_from_scope(self, msg: str | None) -> None:
        """A group: the scope it is open in is being cancelled (called on that scope's loop)."""
        raise NotImplementedError

    def _holds_slot(self, child: Future[Any]) -> bool:
        """A group with a limit: True while ``child`` holds one of its slots."""
        return False

    def _fork_target(self, func: object) -> tuple[AbstractEventLoop, Future[Any] | None]:
        """The loop a fork made in this scope runs on, and its parent; raises if closed."""
        raise NotImplementedError

    def _host_loop(self) -> AbstractEventLoop:
        """The loop this scope's forks run on."""
        raise NotImplementedError

    def _owner_fork(self) -> Future[Any] | None:
        """The fork whose code runs in this scope."""
        raise NotImplementedError

    def _admit(self, child: Future[Any], start: Callable[[Future[Any]], None]) -> None:
        """Start a newly registered child; groups override this to apply their limit."""
        start(child)

    def _add_child(self, child: Future[Any]) -> None:
        children = self._children
        if children is None:
            self._children = {child}
        else:
            children.add(child)

    def _child_done(self, child: Future[Any]) -> None:
        """Called on the loop thread when ``child`` has settled."""
        children = self._children
        if children is not None:
            children.discard(child)
        if child._exception is not None:
            if self._failed is None:
                self._failed = [child]
            else:
                self._failed.append(child)
        if not children and self._on_joined is not None and not self._inflight:
            on_joined, self._on_joined = self._on_joined, None
            on_joined()

    def _inflight_arrived(self) -> None:
        """A fork from another thread arrived and needed no registering: maybe joined now."""
        if not self._children and self._on_joined is not None and not self._inflight:
            on_joined, self._on_joined = self._on_joined, None
            on_joined()

    def _when_joined(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every child has settled (at once if none is pending).

        One waiter at a time: a new callback replaces one whose waiter gave up.
        """
        if self._children or self._inflight:
            self._on_joined = callback
        else:
            callback()

    def _cancel_children(self, msg: str | None = None) -> None:
        if self._children:
            for child in list(self._children):
                child._cancel_on_loop(msg)
        if self._groups:
            # The groups open in this scope: their children are not this scope's, and a sync
            # group's body cannot be interrupted. Copied: the body's thread may add one.
            for group in tuple(self._groups):
                group._cancel_from_scope(msg)

    def _unretrieved_failures(self) -> list[BaseException]:
        """Failures of children that nobody has looked at; marks them as reported."""
        if not self._failed:
            return []
        errors: list[BaseException] = []
        for child in self._failed:
            if not child._retrieved:
                child._mark_retrieved()
                assert child._exception is not None
                errors.append(child._exception)
        self._failed = None
        return errors


def current_fork() -> Future[Any] | None:
    """The fork whose code is running now, looking through groups to their owner."""
    node = CURRENT.get()
    return None if node is None else node._owner_fork()


def check_not_waiting_on_itself(fut: Future[Any], how: str) -> None:
    """Raise DeadlockError if the running fork waits on itself or on an ancestor.

    Or on a sibling queued for the only slot of a ``group(limit=1)`` that the running
    fork (or an ancestor of it) holds: the sibling can only start after it finishes.
    """
    cur = current_fork()
    if cur is None or fut._depth > cur._depth:
        return
    group = fut._scope
    if group is not None and (group._limit != 1 or fut.done()):
        group = None
    node: Future[Any] | None = cur
    while node is not None:
        if (
            group is not None
            and node is not fut
            and node._scope is group
            and group._holds_slot(node)
        ):
            raise DeadlockError(
                f"{cur!r} waits ({how}) on {fut!r}, which waits for the only slot of "
                f"{group!r}; {node!r} holds that slot until it finishes: this would hang "
                "forever. Raise the group's limit, or fork the work outside the group."
            )
        if node is fut:
            who = "its own Future" if fut is cur else f"its ancestor {fut!r}"
            raise DeadlockError(
                f"{cur!r} waits ({how}) on {who}, which can only finish after it: this would "
                "hang forever. Return the value instead of waiting for it, or fork the work "
                "as a detached fork with af.fork.options(detached=True)."
            )
        node = node._parent
