"""The pytest plugin's leak check: what a test left behind, and the cleanup after it.

A test leaves work behind when, once its body has returned, a fork it made is still
pending (not a daemon fork, declared as work to cancel at the end, nor one the test has
cancelled), a root fork's failure was dropped without anyone retrieving it, a task it
started is still pending on its loop, or an asyncfork worker thread is still running a
sync call. What
was there before the body ran (forks of fixtures, of earlier tests) is not the test's:
a :class:`Baseline` taken at its start tells the two apart.

Nothing here imports pytest: the plugin (``asyncfork.pytest_plugin``) turns the
findings into a test failure.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from asyncio import AbstractEventLoop
from collections.abc import Iterable
from typing import Any

from . import _threads
from ._coroutine_fork import drive
from ._future import PENDING, Future
from ._mailbox import post
from ._runner import ROOTS
from ._scope import Node, current_fork
from ._tree import _copy, _render, pending_under

# How long the cleanup waits for the leftovers it cancelled to finish (a running sync
# call cannot be interrupted: it ends when it returns).
CLEANUP_SECONDS = 5.0
# How long a worker may take to count itself idle once its fork's outcome is delivered.
_IDLE_GRACE_SECONDS = 1.0

_NEVER_RETRIEVED = "exception of fork %r was never retrieved"


class Baseline:
    """What existed before the test body ran, so that only the test's own work is blamed."""

    __slots__ = ("busy", "held", "scope", "tasks")

    def __init__(self, loop: AbstractEventLoop | None = None) -> None:
        if loop is None:  # from the test's thread: forks posted to other loops count too
            _caught_up(_other_running_loops(), _IDLE_GRACE_SECONDS)
        # The fork the test body runs in, if any (schedule exploration runs it as a root
        # fork): its children are the test's forks, as root forks are for a plain test.
        me = current_fork() if loop is not None else None
        self.scope: Future[Any] | None = me if me is not None and me._loop is loop else None
        self.held: set[Node] = set()
        scopes: list[Node] = [*_copy(ROOTS.values())]
        if self.scope is not None:
            scopes.append(self.scope)
        for roots in scopes:
            self.held |= _held(roots)
        self.busy = _threads.busy_workers()
        self.tasks: set[asyncio.Task[Any]] = set() if loop is None else asyncio.all_tasks(loop)


class Findings:
    """What a test left behind, as the plugin reports it."""

    __slots__ = ("busy", "forks", "tasks", "tree", "unfinished", "unretrieved")

    def __init__(self) -> None:
        self.forks = 0  # pending forks the test left, descendants included
        self.tree = ""  # those forks as af.tree() shows them, taken before the cleanup
        self.tasks: list[str] = []
        self.unretrieved: list[str] = []
        self.busy = 0  # worker threads busy beyond the baseline, after the cleanup
        self.unfinished: list[str] = []  # names of forks cancelled and still running

    def __bool__(self) -> bool:
        return bool(self.forks or self.tasks or self.unretrieved or self.busy)

    def merge(self, other: Findings) -> None:
        self.forks += other.forks
        self.tree += other.tree
        self.tasks += other.tasks
        self.unretrieved += other.unretrieved
        self.busy = max(self.busy, other.busy)
        self.unfinished += other.unfinished

    def report(self) -> str:
        """The failure message: a summary line, then each kind of leftover, the forks as
        ``af.tree()`` shows them."""
        counts = [
            _count(self.forks, "fork pending", "forks pending"),
            _count(len(self.unretrieved), "failure unretrieved", "failures unretrieved"),
            _count(len(self.tasks), "task pending", "tasks pending"),
            _count(self.busy, "worker thread busy", "worker threads busy"),
        ]
        parts = ["asyncfork: the test left " + ", ".join(c for c in counts if c)]
        if self.forks:
            parts.append("Forks still pending when the test ended:\n" + self.tree.rstrip())
        if self.unretrieved:
            parts.append(
                "Forks that failed with nobody retrieving the failure (await them, or call "
                "fut.exception()):\n" + "\n".join(f"  {line}" for line in self.unretrieved)
            )
        if self.tasks:
            parts.append(
                "Tasks still pending on the test's event loop:\n"
                + "\n".join(f"  {line}" for line in self.tasks)
            )
        if self.busy:
            parts.append(
                f"asyncfork worker threads still running a sync call: {self.busy} (a sync "
                "call cannot be interrupted; af.check_cancelled() lets one stop early)"
            )
        if self.unfinished:
            parts.append(
                f"Cancelled, and still running after {CLEANUP_SECONDS:g}s: "
                + ", ".join(repr(name) for name in self.unfinished)
                + " (a running sync call ends only when it returns)."
            )
        elif self.forks or self.tasks:
            parts.append("They were cancelled, so the next test starts clean.")
        return "\n".join(parts)


def _count(n: int, one: str, many: str) -> str:
    return "" if not n else f"1 {one}" if n == 1 else f"{n} {many}"


def _held(roots: Node) -> set[Node]:
    """The root forks and root groups of a root set, as they are now."""
    return set(_copy(roots._children or ())) | set(_copy(roots._groups or ()))


def _new_roots(baseline: Baseline, loops: Iterable[AbstractEventLoop]) -> list[Node]:
    """Root forks and groups of ``loops`` made since ``baseline``, pending, daemons included."""
    found: list[Node] = []
    for loop in loops:
        scope = baseline.scope if baseline.scope and baseline.scope._loop is loop else None
        for roots in (ROOTS.get(loop), scope):
            if roots is None:
                continue
            found += [
                node
                for node in _held(roots)
                if node not in baseline.held
                and not (isinstance(node, Future) and node._state != PENDING)
            ]
    return found


def _let_go(node: Node) -> bool:
    """A daemon fork (work declared to be cancelled at the end), or one the test cancelled:
    not reported, though the cleanup waits for it."""
    return isinstance(node, Future) and (node._daemon or node._cancel_requested)


def _cancel(nodes: Iterable[Node]) -> None:
    """Cancel leaked root forks and groups (from any thread: both take that)."""
    for node in nodes:
        cancel = getattr(node, "cancel", None)
        if cancel is not None:
            cancel()


def _leaked(baseline: Baseline, loops: Iterable[AbstractEventLoop]) -> tuple[list[Node], Findings]:
    found = Findings()
    new = _new_roots(baseline, loops)
    forks = pending_under(node for node in new if not _let_go(node))
    found.forks = len(forks)
    found.tree = _render(forks)  # now: the cleanup changes their states
    return new, found


async def check_loop(baseline: Baseline) -> Findings:
    """On the test's running loop, right after the body: its leftovers, then cancel them.

    Waits (at most ``CLEANUP_SECONDS``) for what it cancelled, so that the loop can
    be closed without cancelling anything silently.
    """
    loop = asyncio.get_running_loop()
    new, found = _leaked(baseline, [loop])
    used = loop in ROOTS  # tasks are asyncfork's business only where it forked
    this = asyncio.current_task()
    tasks: list[asyncio.Task[Any]] = []
    if used:
        tasks = [
            task
            for task in asyncio.all_tasks(loop)
            if task is not this and task not in baseline.tasks and not _is_fork(task)
        ]
        found.tasks = [_describe_task(task) for task in tasks]
    _cancel(new)
    for task in tasks:
        task.cancel()
    waited = [*pending_under(new), *tasks]
    if waited:
        await _settled(loop, waited, CLEANUP_SECONDS)
        found.unfinished = [fut.name for fut in pending_under(new) if not fut.done()]
    # A busy worker may need this loop to finish (a sync group in it waits for children
    # that settle here): keep the loop running for the grace, not only the thread check
    # after the body, when the test's loop no longer runs.
    deadline = loop.time() + _IDLE_GRACE_SECONDS
    while _threads.busy_workers() > baseline.busy:
        if loop.time() >= deadline:
            break
        await asyncio.sleep(0.005)  # polled, bounded by the deadline: the pool has nothing to await
    return found


def check_threads(baseline: Baseline) -> Findings:
    """From the test's thread, once the body has returned: leftovers on loops that run in
    other threads (the background loop, servers'), then busy workers; cancel and wait."""
    loops = _other_running_loops()
    _caught_up(loops, _IDLE_GRACE_SECONDS)
    new, found = _leaked(baseline, loops)
    _cancel(new)
    pending = pending_under(new)
    if pending:
        found.unfinished = [fut.name for fut in _wait_settled(pending, CLEANUP_SECONDS)]
    found.busy = _busy_beyond(baseline.busy)
    return found


def _other_running_loops() -> list[AbstractEventLoop]:
    """The loops with forks that run in other threads (a loop that is not running waits)."""
    running = asyncio._get_running_loop()
    return [loop for loop in _copy(ROOTS) if loop is not running and loop.is_running()]


def _caught_up(loops: list[AbstractEventLoop], timeout: float) -> None:
    """Until each loop has run what other threads posted to it before now (a root fork
    made from this thread reaches its root set there), or ``timeout`` passes."""
    events: list[threading.Event] = []
    for loop in loops:
        event = threading.Event()
        try:
            post(loop, event.set)
        except RuntimeError:  # closed meanwhile
            continue
        events.append(event)
    deadline = time.monotonic() + timeout
    for event in events:
        event.wait(max(0.0, deadline - time.monotonic()))


def _is_fork(task: asyncio.Task[Any]) -> bool:
    """A fork's own task: reported as its fork, or finishing one that has settled."""
    return getattr(task.get_coro(), "cr_code", None) is drive.__code__


def _describe_task(task: asyncio.Task[Any]) -> str:
    coro: Any = task.get_coro()
    where = ""
    frame = getattr(coro, "cr_frame", None)
    code = getattr(coro, "cr_code", None)
    if frame is not None:
        where = f" at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
    name = getattr(code, "co_qualname", None) or getattr(coro, "__qualname__", repr(coro))
    return f"task {task.get_name()!r} running {name}(){where}"


async def _settled(loop: AbstractEventLoop, waited: list[Any], seconds: float) -> None:
    """Until every Future and task in ``waited`` is done, or ``seconds`` pass."""
    waiter: asyncio.Future[None] = loop.create_future()
    left = [len(waited)]

    def one_done(_: object) -> None:
        left[0] -= 1
        if left[0] == 0 and not waiter.done():
            waiter.set_result(None)

    for item in waited:
        item.add_done_callback(one_done)
    await asyncio.wait([waiter], timeout=seconds)


def _wait_settled(futs: list[Future[Any]], timeout: float) -> list[Future[Any]]:
    """Block until ``futs`` are done or ``timeout`` passes; the ones still pending.

    Not ``af.wait``: this thread may run a loop of its own (a browser driver's).
    """
    event = threading.Event()
    for fut in futs:
        fut.add_done_callback(lambda _: event.set())
    deadline = time.monotonic() + timeout
    while True:
        left = [fut for fut in futs if not fut.done()]
        remaining = deadline - time.monotonic()
        if not left or remaining <= 0:
            return left
        event.wait(min(remaining, 0.1))
        event.clear()


def _busy_beyond(before: int) -> int:
    """How many more workers are busy than ``before``, after a short grace: a worker
    counts itself idle just after it delivered its fork's outcome."""
    deadline = time.monotonic() + _IDLE_GRACE_SECONDS
    while True:
        extra = _threads.busy_workers() - before
        if extra <= 0 or time.monotonic() >= deadline:
            return max(extra, 0)
        time.sleep(0.005)  # bounded by the deadline: the pool has nothing to wait on


class BodyGarbage:
    """Keeps what existed before the test body out of the garbage collector while the
    body runs (``gc.freeze()``), so that :meth:`collect` after it is cheap and frees only
    what the body made: a failure the body dropped in a reference cycle is reported in
    its test, and garbage of earlier tests or fixtures is never blamed on it.

    Not done when something else froze objects already (``gc.get_freeze_count()``): its
    freeze is not undone. A body that calls ``gc.freeze()`` itself has it undone at its end.
    """

    __slots__ = ("frozen",)

    def __init__(self) -> None:
        self.frozen = False

    def __enter__(self) -> BodyGarbage:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            self.frozen = True
        return self

    def collect(self) -> None:
        """Free the body's unreachable objects (only those: the rest is frozen)."""
        if self.frozen:
            gc.collect()

    def __exit__(self, *exc: object) -> None:
        if self.frozen:
            self.frozen = False
            gc.unfreeze()


class UnretrievedFailures(logging.Handler):
    """Collects the "never retrieved" reports asyncfork logs while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != _NEVER_RETRIEVED + "%s" or not record.args:
            return
        args: Any = record.args
        exc = record.exc_info[1] if record.exc_info else None
        self.seen.append(f"fork {args[0]!r}: {exc!r}")

    def __enter__(self) -> UnretrievedFailures:
        logging.getLogger("asyncfork").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("asyncfork").removeHandler(self)
