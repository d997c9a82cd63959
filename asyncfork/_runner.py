"""Loops asyncfork owns: the loop factory, the background loop, shutdown and exit drain."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import sys
import threading
import time
from asyncio import AbstractEventLoop
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from . import _threads
from ._errors import DeadlockError, check_bool, check_timeout
from ._future import PENDING, THREAD
from ._mailbox import (
    admit_root,
    close_mailbox,
    forget_mailbox,
    has_calls,
    open_mailbox,
    post,
    refuse_roots,
)
from ._scope import Node, joined_future
from ._serial import ON as SERIAL
from ._serial import serial_here

if TYPE_CHECKING:
    from ._future import Future

LoopChoice = str | Callable[[], AbstractEventLoop] | None
_LOOP_KINDS = ("asyncio", "uvloop")
_loop_choice: LoopChoice = None


def set_loop_choice(choice: LoopChoice) -> None:
    if choice is not None and not callable(choice) and choice not in _LOOP_KINDS:
        raise ValueError(
            f"loop must be 'asyncio', 'uvloop', a callable returning an event loop, or None; "
            f"got {choice!r}"
        )
    global _loop_choice
    _loop_choice = choice


def new_event_loop() -> AbstractEventLoop:
    """A new loop for asyncio to run: uvloop when installed, unless told otherwise."""
    choice = _loop_choice
    if choice is None:
        choice = os.environ.get("ASYNCFORK_LOOP") or None
        if choice is not None and choice not in _LOOP_KINDS:
            raise ValueError(f"ASYNCFORK_LOOP must be 'asyncio' or 'uvloop', not {choice!r}")
    if choice is None and SERIAL and serial_here():
        choice = "asyncio"  # serial mode steps its loops from inside fork(): uvloop cannot
    if callable(choice):
        return choice()
    if choice in (None, "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise RuntimeError(
                    "uvloop was asked for (ASYNCFORK_LOOP or af.configure) but is not installed: "
                    "pip install uvloop"
                ) from None
        else:
            return uvloop.new_event_loop()
    # Not asyncio.new_event_loop(): that follows a global policy, which may be uvloop's.
    if sys.platform == "win32":  # pragma: no cover
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop()


class Roots(Node):
    """The root forks of a loop, and the groups open outside any fork, so they can be
    drained or cancelled. ``drained()`` also waits for root forks still in the loop's
    mailbox, on their way from other threads.
    """

    _is_root_set = True

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.background: _Background | None = None  # set for the background loop's roots
        # Set by af.run: a fork's KeyboardInterrupt or SystemExit ends the whole run.
        self.on_interrupt: Callable[[BaseException], None] | None = None
        # Whether its join waits for the groups open in it. Not at interpreter exit: a
        # group's body there may run in a daemon thread, which Python abandons.
        self.joins_groups = True
        # Everyone waiting for the join (two shutdowns, a shutdown and the exit drain, the
        # final drain), unlike a fork's join, which has one waiter: all are called.
        self._joined_callbacks: list[Callable[[], None]] = []
        # Made now (and never replaced): root forks from other threads join and leave it
        # there (_join_from_thread). _children is the same set, as Node reads it.
        self._members: set[Future[Any]] = set()
        self._children = self._members

    def _add_group(self, group: Node) -> None:
        # From the thread entering the group: refused, as a root fork is, once af.shutdown()
        # closes the loop, so that no group slips in after the join.
        admit_root(self.loop, partial(Node._add_group, self, group))

    def _discard_group(self, group: Node) -> None:
        super()._discard_group(group)
        self._maybe_joined()

    def joined(self) -> bool:
        """No root fork pending and (if it joins them) no group open."""
        return not (self._children or (self.joins_groups and self._groups))

    def _when_joined(self, callback: Callable[[], None]) -> None:
        if self.joined():
            callback()
        else:
            self._joined_callbacks.append(callback)
            if self.joined():  # the last root fork left from another thread meanwhile
                self._maybe_joined()

    def _maybe_joined(self) -> None:
        if self._joined_callbacks and self.joined():
            callbacks, self._joined_callbacks = self._joined_callbacks, []
            for callback in callbacks:
                callback()

    def _child_done(self, child: Future[Any]) -> None:
        # A root's failure is reported when its Future is dropped unretrieved, not here.
        self._members.discard(child)
        if self._joined_callbacks:  # inline: every root fork ends here
            self._maybe_joined()

    def _join_from_thread(self, child: Future[Any]) -> None:
        """From a thread that does not run the loop: ``child`` joins the set there, rather
        than through a call posted to the loop, which would wake it. Refused as that call
        would be: LoopClosing once af.shutdown() closes the loop, RuntimeError once closed."""
        admit_root(self.loop, partial(self._members.add, child), open_only=True)

    def _left_from_thread(self, child: Future[Any]) -> None:
        """A root fork settled in the thread its call ended in leaves the set there; a join
        waiting on the loop hears of it on the loop."""
        self._members.discard(child)
        if self._joined_callbacks:
            try:
                post(self.loop, self._maybe_joined)
            except RuntimeError:  # closed: nobody is left waiting
                pass

    def cancel_daemons(self, msg: str = "asyncfork is shutting down") -> None:
        """Cancel the daemon forks; a daemon's running sync call is abandoned, never waited for."""
        for fut in list(self._children or ()):
            if fut._daemon:
                fut._cancel_abandoning(msg)

    def cancel_all(self, msg: str = "asyncfork is shutting down") -> None:
        """Cancel every root fork, the daemons first (as in ``cancel_daemons``), and the
        groups open in it."""
        self.cancel_daemons(msg)
        self._cancel_children(msg)

    def pending(self) -> int:
        """How many root forks (and groups it joins) are not finished."""
        groups = len(self._groups or ()) if self.joins_groups else 0
        return len(self._children or ()) + groups

    async def drained(self) -> None:
        """Return once the root set is joined and no call posted to the loop is left (so
        no root fork is on its way); on the loop, which must be running."""
        while True:
            while not self.joined():  # roots forked meanwhile are waited for too
                await joined_future(self, self.loop)
            if not has_calls(self.loop):
                return
            await asyncio.sleep(0)  # the mailbox runs what was posted


# Root sets of the loops asyncfork runs (the background loop and af.run's loops): their
# roots are drained when the loop stops.
OWNED: dict[AbstractEventLoop, Roots] = {}
# Root sets of every loop with forks: OWNED's, and other libraries' loops (asyncio.run's,
# a web server's), whose roots are only kept track of, so that af.tree() finds them.
ROOTS: dict[AbstractEventLoop, Roots] = {}
_roots_lock = threading.Lock()


def own(loop: AbstractEventLoop, roots: Roots) -> None:
    """``loop`` is one of asyncfork's: its roots are drained when it stops."""
    with _roots_lock:
        OWNED[loop] = roots
        ROOTS[loop] = roots


def disown(loop: AbstractEventLoop) -> None:
    with _roots_lock:
        OWNED.pop(loop, None)
        ROOTS.pop(loop, None)


def roots_of(loop: AbstractEventLoop) -> Roots:
    """The root set of ``loop``; made on the first root fork of a loop asyncfork does not own."""
    roots = ROOTS.get(loop)
    if roots is not None:
        return roots
    with _roots_lock:
        # Other libraries' loops never say they are done, and a root set must not keep a
        # dropped loop (and its file descriptors) alive: forget the loops that are closed,
        # or idle with no pending root fork; an idle one that forks again is met anew.
        # A closed one stays while a sync fork of it runs: the exit drain finds it here.
        for old, held in list(ROOTS.items()):
            if old not in OWNED and (
                (old.is_closed() and not _sync_forks_running([held])) or _idle(old, held)
            ):
                del ROOTS[old]
        _register_exit_drain()  # its sync forks, too, are finished at exit
        return ROOTS.setdefault(loop, Roots(loop))


def _idle(loop: AbstractEventLoop, roots: Roots) -> bool:
    return not loop.is_running() and not roots._children and not roots._groups


def loop_label(loop: AbstractEventLoop) -> str:
    """How traces and ``af.tree()`` name a loop, so the two can be matched up."""
    return f"{type(loop).__module__.split('.')[0]} loop 0x{id(loop):x}"


def note_interrupt(loop: AbstractEventLoop, exc: BaseException) -> None:
    """A fork on ``loop`` raised KeyboardInterrupt or SystemExit: tell af.run, if it runs it."""
    roots = OWNED.get(loop)
    if roots is not None and roots.on_interrupt is not None:
        roots.on_interrupt(exc)


class _Background:
    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.roots = Roots(self.loop)
        self.roots.background = self
        # What happens to root forks that reach the loop after it was told to stop (made on
        # the loop itself meanwhile): drained, unless af.shutdown(cancel=True) asked.
        self.cancel_late_forks = False
        self.closed = False  # af.shutdown() drained it: it takes no more root forks
        self.thread = threading.Thread(target=self._serve, name=_LOOP_THREAD_NAME, daemon=True)
        self._ready = threading.Event()
        own(self.loop, self.roots)
        open_mailbox(self.loop)
        self.thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        self._ready.set()
        while True:
            try:
                loop.run_forever()
                break
            except BaseException:  # a callback's KeyboardInterrupt or SystemExit: keep serving
                continue
        try:
            # The groups still open now have bodies nobody waits for (an exit's daemon
            # threads); forks that reached the loop late are drained, or cancelled and
            # finish their cleanup, as asyncio.run does with its tasks.
            self.roots.joins_groups = False
            if self.cancel_late_forks:
                self.roots.cancel_all()
            loop.run_until_complete(self.roots.drained())
            # From here on posts raise "loop is closed"; the calls posted before still run.
            loop.run_until_complete(close_mailbox(loop))
            cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            forget_mailbox(loop)

    def _arm(
        self, cancel: str, on_joined: Callable[[], None], given_up: threading.Event | None = None
    ) -> None:
        """On the loop: cancel as asked ("none", "daemons" or "all"), then wait to be joined.

        Nothing, if the shutdown that asked gave up before the loop got to it.
        """
        if given_up is not None and given_up.is_set():
            return
        if cancel == "all":
            self.roots.cancel_all()
        elif cancel == "daemons":
            self.roots.cancel_daemons()
        self.roots._when_joined(on_joined)

    def close_roots(self, cancel: str, timeout: float | None) -> bool:
        """Block until every root fork and root group is done; True then, and ``closed``.

        ``cancel`` as in ``_arm``. From the start, root forks and groups from other threads
        are refused (they go to the new background loop); those that came before are waited
        for. False if ``timeout`` passed first: the loop then takes root forks again.
        """
        # Those posted before are queued ahead of the arm.
        queued = refuse_roots(self.loop, True)
        joined = threading.Lock()
        joined.acquire()
        given_up = threading.Event()
        post(self.loop, self._arm, cancel, joined.release, given_up)
        try:
            self.closed = _threads.acquire(joined, timeout)
        finally:
            # The loop was busy, and nothing was left: no root fork pending or on its way.
            self.closed = self.closed or (not queued and self.roots.joined())
            if not self.closed:  # given up (a timeout, a Ctrl-C): it serves as before
                given_up.set()
                refuse_roots(self.loop, False)
        return self.closed

    def drain_at_exit(self, cancel: str, serve: bool) -> None:
        """Block until every root fork is done; with ``serve``, run queued sync forks
        meanwhile, on this thread, for an exit where no worker thread can be started.

        The root set stays open: a daemon thread forking now still reaches this loop.
        """
        self.roots.joins_groups = False
        if not serve:
            done = threading.Lock()
            done.acquire()
            post(self.loop, self._arm, cancel, done.release)
            _threads.acquire(done, None)
            return
        server = _threads.Server(_threads.pool())
        post(self.loop, self._arm, cancel, server.finish)
        server.run()

    def stop(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed already (stopped by another caller)
            pass
        self.thread.join()
        disown(self.loop)


_LOOP_THREAD_NAME = "asyncfork-loop"
_background: _Background | None = None
_background_lock = threading.Lock()


def background_loop() -> AbstractEventLoop:
    """The process's background loop, started on first use."""
    bg = _background
    if bg is None:
        bg = _start_background()
    return bg.loop


def cancel_remaining_tasks(loop: AbstractEventLoop) -> None:
    """As asyncio.run does: cancel the tasks left on a closing loop and let them finish."""
    pending = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    try:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    except KeyboardInterrupt:
        pass


_drain_registered = False


def _start_background() -> _Background:
    global _background
    with _background_lock:
        if _background is None:
            _background = _Background()
            _register_exit_drain()
        return _background


def _register_exit_drain() -> None:
    """Registered at the first background loop or other library's loop that gets a fork,
    so it runs before the atexit handlers the program registered earlier (atexit runs
    them last-in, first-out)."""
    global _drain_registered
    if not _drain_registered:
        _drain_registered = True
        atexit.register(_drain_at_exit)


def is_background_thread() -> bool:
    return threading.current_thread().name == _LOOP_THREAD_NAME and any(
        bg.thread is threading.current_thread() for bg in _all_backgrounds()
    )


def _all_backgrounds() -> list[_Background]:
    return [roots.background for roots in OWNED.values() if roots.background is not None]


def shutdown(*, cancel: bool = False, timeout: float | None = None) -> None:
    timeout = check_timeout(timeout, "shutdown(timeout=...)")
    cancel = check_bool(cancel, "shutdown(cancel=...)")
    if is_background_thread() or _threads.on_worker_thread():
        raise DeadlockError(
            "af.shutdown() waits for asyncfork's own threads, so it cannot run on one of them; "
            "call it from the main thread (or any thread asyncfork does not own)"
        )
    if asyncio._get_running_loop() is not None:
        raise DeadlockError(
            "af.shutdown() blocks until the background forks are done, which would freeze "
            "the event loop running in this thread (and hang for good if a fork needs that "
            "loop): in async code write `await asyncio.to_thread(af.shutdown)`, or call "
            "af.shutdown() once the loop has finished (after asyncio.run() returns)"
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    # One shutdown at a time: a second one waits for the first, then finds what is left.
    if not _threads.acquire(_shutdown_lock, timeout):
        raise TimeoutError(f"af.shutdown(): another af.shutdown() still ran after {timeout}s")
    try:
        _shut_down(cancel, timeout, deadline)
    finally:
        _shutdown_lock.release()


_shutdown_lock = threading.Lock()


def _shut_down(cancel: bool, timeout: float | None, deadline: float | None) -> None:
    global _background
    with _background_lock:
        # Forks made from now on start a new background loop, not the closing ones. There
        # is more than one when an earlier shutdown gave up while forks started a new one.
        _background = None
        closing = _all_backgrounds()
    for bg in closing:
        bg.cancel_late_forks = cancel
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            closed = bg.close_roots("all" if cancel else "daemons", left)
        except BaseException:  # a Ctrl-C
            if bg.closed:
                bg.stop()
            else:
                _keep_serving(bg)
            raise
        if not closed:
            _keep_serving(bg)
            raise TimeoutError(
                f"af.shutdown(): {bg.roots.pending()} forks still running after {timeout}s; "
                "use af.shutdown(cancel=True) to cancel them"
            )
        bg.stop()
    _threads.stop_pool()


def _keep_serving(bg: _Background) -> None:
    """A shutdown gave up on ``bg``: its forks go on, and it is the background loop again,
    unless forks started a new one meanwhile (the exit drain and shutdown find both)."""
    global _background
    with _background_lock:
        if _background is None:
            _background = bg


_interrupted_at_exit = False


def _drain_at_exit() -> None:
    """At interpreter exit, let pending background forks finish, as Python does for threads.

    Every background loop still serving: an ``af.shutdown()`` that gave up (a timeout, a
    Ctrl-C) may have left one beside the current one.
    """
    global _interrupted_at_exit
    backgrounds = [bg for bg in _all_backgrounds() if bg.thread.is_alive()]
    # Python 3.12 refuses new threads once the interpreter is exiting ("can't create new
    # thread at interpreter shutdown"), in atexit and threading's exit hooks alike. Then
    # this thread serves the worker queue itself, so drained sync forks still run.
    serve = bool(backgrounds) and not _threads.can_start_threads()
    cancel = "daemons"
    for bg in backgrounds:
        try:
            bg.drain_at_exit(cancel, serve)
        except KeyboardInterrupt:
            _interrupted_at_exit = True
            cancel = "all"
            try:
                bg.drain_at_exit(cancel, serve)
            except KeyboardInterrupt:
                return  # a second Ctrl-C abandons what is left
        bg.stop()
    try:
        _finish_foreign_sync_forks()
    except KeyboardInterrupt:  # a running sync call cannot be cancelled: abandon it
        _interrupted_at_exit = True


# How often the exit drain looks again at the sync forks of loops asyncfork does not own,
# and after how long it says, once, what it waits for.
_EXIT_LOOK_SECONDS = 0.02
_EXIT_NOTICE_SECONDS = 1.0


def _finish_foreign_sync_forks() -> None:
    """Wait for the sync forks hosted by other libraries' loops that have closed
    (``asyncio.run``'s, a web server's) and are queued or running in asyncfork's workers,
    as ``asyncio.run`` waits for its default executor: their loop is gone, but their call
    is not lost. Not daemon forks, nor abandoned ones.

    Only closed loops: once closed, a loop takes no outcome in, so a fork's outcome (and a
    wait on it) settles off the loop. A loop that is stopped but not closed may still
    queue the outcome, where nothing would run it, and a loop still running belongs to a
    daemon thread, which Python abandons: the sync forks of those are not waited for, and
    stderr says so.
    """
    tick = threading.Event()  # never set: a Ctrl-C-friendly wait between looks
    began = time.monotonic()
    noticed = False
    while True:
        with _roots_lock:
            foreign = [(loop, roots) for loop, roots in ROOTS.items() if loop not in OWNED]
        closed = [roots for loop, roots in foreign if loop.is_closed()]
        if not _sync_forks_running(closed):
            break
        if not noticed and time.monotonic() - began >= _EXIT_NOTICE_SECONDS:
            noticed = True
            _say_at_exit(
                "asyncfork: waiting for the sync forks of closed event loops to return before "
                "the interpreter exits (Ctrl-C abandons them)"
            )
        _threads.wait_in_slices(tick.wait, _EXIT_LOOK_SECONDS)
    left_open = [roots for loop, roots in foreign if not loop.is_closed()]
    if _sync_forks_running(left_open):
        _say_at_exit(
            "asyncfork: sync forks of an event loop that was never closed are still running "
            "and are abandoned at exit; close the loop when it is done (asyncio.run does), "
            "or await af.drain() before it stops, to have them finish"
        )


def _say_at_exit(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:  # pragma: no cover - stderr closed or torn down at exit
        pass


def _sync_forks_running(root_sets: list[Roots]) -> bool:
    """Whether a non-daemon sync fork in these root sets (or under them) is queued or
    running in a worker thread."""
    nodes: list[Node] = list(root_sets)
    while nodes:  # the forks pending in those root sets, their children, their groups
        node = nodes.pop()
        try:  # read from another thread than the loop's: its sets may change meanwhile
            children = list(node._children or ())
        except RuntimeError:
            return True  # changed while copied: it is busy, look again
        for fut in children:
            item = fut._item
            if (
                fut._kind == THREAD
                and not fut._daemon
                and fut._state == PENDING  # not abandoned
                and item is not None
                and item.state in (_threads.QUEUED, _threads.RUNNING)
            ):
                return True
            nodes.append(fut)
        nodes.extend(tuple(node._groups or ()))
    return False


def _exit_as_interrupted() -> None:
    """Registered first so that it runs last: end the way an unhandled Ctrl-C ends Python."""
    if not _interrupted_at_exit:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pragma: no cover
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


atexit.register(_exit_as_interrupted)


def _reset_after_fork() -> None:
    global _background, _background_lock, _interrupted_at_exit, _roots_lock, _shutdown_lock
    for bg in _all_backgrounds():  # their threads did not survive os.fork()
        disown(bg.loop)
    # Only the forking thread lives on in the child: forget the other threads' loops.
    running = asyncio._get_running_loop()
    for loop in [loop for loop in ROOTS if loop not in OWNED and loop is not running]:
        del ROOTS[loop]
    _roots_lock = threading.Lock()
    _background = None
    _background_lock = threading.Lock()
    _shutdown_lock = threading.Lock()
    _interrupted_at_exit = False
    _threads.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
