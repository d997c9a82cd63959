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
from typing import TYPE_CHECKING, Any

from . import _threads
from ._errors import DeadlockError, check_timeout
from ._mailbox import close_mailbox, open_mailbox, post
from ._scope import Node, joined_future

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
    """The root forks of a loop asyncfork owns, so they can be drained or cancelled."""

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.background: _Background | None = None  # set for the background loop's roots
        # Set by af.run: a fork's KeyboardInterrupt or SystemExit ends the whole run.
        self.on_interrupt: Callable[[BaseException], None] | None = None

    def _child_done(self, child: Future[Any]) -> None:
        # A root's failure is reported when its Future is dropped unretrieved, not here.
        children = self._children
        if children is not None:
            children.discard(child)
        if not children and self._on_joined is not None:
            on_joined, self._on_joined = self._on_joined, None
            on_joined()

    def cancel_daemons(self, msg: str = "asyncfork is shutting down") -> None:
        """Cancel the daemon forks; a daemon's running sync call is abandoned, never waited for."""
        for fut in list(self._children or ()):
            if fut._daemon:
                fut._cancel_abandoning(msg)

    def cancel_all(self, msg: str = "asyncfork is shutting down") -> None:
        """Cancel every root fork, the daemons first (as in ``cancel_daemons``)."""
        self.cancel_daemons(msg)
        self._cancel_children(msg)

    def pending(self) -> int:
        return len(self._children or ())

    async def drained(self) -> None:
        """Return once every root fork has finished (on the loop, which must be running)."""
        while self.pending():  # roots forked meanwhile are waited for too
            await joined_future(self, self.loop)


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
        for old, held in list(ROOTS.items()):
            if old not in OWNED and (old.is_closed() or _idle(old, held)):
                del ROOTS[old]
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
            # Forks that reached the loop after the drain (they raced shutdown) are
            # cancelled and finish their cleanup, as asyncio.run does with its tasks.
            self.roots.cancel_all()
            loop.run_until_complete(self.roots.drained())
            cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            close_mailbox(loop)

    def wait_joined(self, cancel: str, timeout: float | None) -> bool:
        """Block until every root fork is done; ``cancel`` is "none", "daemons" or "all"."""
        done = threading.Lock()
        done.acquire()
        armed = threading.Lock()
        armed.acquire()

        def arm() -> None:
            if cancel == "all":
                self.roots.cancel_all()
            elif cancel == "daemons":
                self.roots.cancel_daemons()
            self.roots._when_joined(done.release)
            armed.release()

        post(self.loop, arm)
        # One deadline for both: the loop taking the request (it may be busy), then the
        # forks. A late arm only releases a lock nobody waits on any more.
        deadline = None if timeout is None else time.monotonic() + timeout
        if not _threads.acquire(armed, timeout):
            return not self.roots.pending()  # nothing to wait for: no timeout to report
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return _threads.acquire(done, left) or not self.roots.pending()

    def drain_at_exit(self, cancel: str, serve: bool) -> None:
        """``wait_joined(cancel, None)``; with ``serve``, run queued sync forks meanwhile,
        on this thread, for an exit where no worker thread can be started.
        """
        if not serve:
            self.wait_joined(cancel, None)
            return
        server = _threads.Server(_threads.pool())

        def arm() -> None:
            if cancel == "all":
                self.roots.cancel_all()
            elif cancel == "daemons":
                self.roots.cancel_daemons()
            self.roots._when_joined(server.finish)

        post(self.loop, arm)
        server.run()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
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
    global _background, _drain_registered
    with _background_lock:
        if _background is None:
            _background = _Background()
            if not _drain_registered:
                # Registered at the first start, so it runs before the atexit handlers
                # the program registered earlier (atexit runs them last-in, first-out).
                atexit.register(_drain_at_exit)
                _drain_registered = True
        return _background


def is_background_thread() -> bool:
    return threading.current_thread().name == _LOOP_THREAD_NAME and any(
        bg.thread is threading.current_thread() for bg in _all_backgrounds()
    )


def _all_backgrounds() -> list[_Background]:
    return [roots.background for roots in OWNED.values() if roots.background is not None]


def shutdown(*, cancel: bool = False, timeout: float | None = None) -> None:
    global _background
    timeout = check_timeout(timeout, "shutdown(timeout=...)")
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
    with _background_lock:
        # Forks made from now on start a new background loop, not this closing one.
        bg, _background = _background, None
    if bg is not None:
        if not bg.wait_joined("all" if cancel else "daemons", timeout):
            with _background_lock:
                if _background is None:
                    _background = bg  # it keeps running, and remains the background loop
            raise TimeoutError(
                f"af.shutdown(): {bg.roots.pending()} forks still running after {timeout}s; "
                "use af.shutdown(cancel=True) to cancel them"
            )
        bg.stop()
    _threads.stop_pool()


_interrupted_at_exit = False


def _drain_at_exit() -> None:
    """At interpreter exit, let pending background forks finish, as Python does for threads."""
    global _interrupted_at_exit
    bg = _background
    if bg is None or not bg.thread.is_alive():
        return
    # Python 3.12 refuses new threads once the interpreter is exiting ("can't create new
    # thread at interpreter shutdown"), in atexit and threading's exit hooks alike. Then
    # this thread serves the worker queue itself, so drained sync forks still run.
    serve = not _threads.can_start_threads()
    try:
        bg.drain_at_exit("daemons", serve)
    except KeyboardInterrupt:
        _interrupted_at_exit = True
        try:
            bg.drain_at_exit("all", serve)
        except KeyboardInterrupt:
            return  # a second Ctrl-C abandons what is left
    bg.stop()


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
    global _background, _background_lock, _interrupted_at_exit, _roots_lock
    if _background is not None:
        disown(_background.loop)
    # Only the forking thread lives on in the child: forget the other threads' loops.
    running = asyncio._get_running_loop()
    for loop in [loop for loop in ROOTS if loop not in OWNED and loop is not running]:
        del ROOTS[loop]
    _roots_lock = threading.Lock()
    _background = None
    _background_lock = threading.Lock()
    _interrupted_at_exit = False
    _threads.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
