"""How a fork ends: the outcome rules applied once its body and its children are done."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
import os
import re
from asyncio import CancelledError
from types import CodeType, CoroutineType
from typing import Any, cast

from ._errors import FORK_OPTIONS
from ._future import EXECUTOR, FINISHED, PENDING, Future
from ._instruments import HOOKS
from ._mailbox import owns_loop, post
from ._runner import ROOTS


def on_timeout(fut: Future[Any]) -> None:
    fut._timer = None
    fut._timed_out = True
    fut._cancel_on_loop(None)


def finish(fut: Future[Any], value: Any, exc: BaseException | None) -> None:
    """Settle a fork whose body and children are done.

    A failed child nobody retrieved makes the fork fail with an ExceptionGroup (its
    own error first); a fork cancelled by its timeout fails with TimeoutError.
    """
    if exc is None and fut._failed is None:  # the common case: a value, no failed child
        fut._settle(FINISHED, value, None)
        return
    errors = fut._unretrieved_failures()
    cancelled = isinstance(exc, CancelledError)
    if errors:
        if exc is not None and not cancelled:
            errors.insert(0, exc)
        group = BaseExceptionGroup(
            f"fork {fut.name!r} ended with failures of its children that nobody retrieved "
            "(await a child's Future, or call its .result() or .exception(), to handle "
            "its failure yourself)",
            errors,
        )
        note_site(fut, group)
        fut._set_exception(group)
    elif cancelled:
        if fut._timed_out:
            timeout_error = TimeoutError(f"fork {fut.name!r} timed out after {fut._timeout}s")
            timeout_error.__cause__ = exc
            note_site(fut, timeout_error)
            fut._set_exception(timeout_error)
        else:
            fut._set_cancelled()
    elif exc is not None:
        annotate(fut, exc)
        fut._set_exception(exc)
    else:
        fut._set_result(value)


def may_settle_in_thread(fut: Future[Any]) -> bool:
    """Whether a sync or executor fork whose call ended may be settled in that call's
    thread (``settle_in_thread``), whatever its outcome: its loop has nothing left to decide.

    A root fork or a fork's child (a group's children settle on its loop, where a failure
    makes the group fail fast before anyone can see it), that never had a child and has no
    timeout, on a loop asyncfork owns (which runs every call posted to it before it
    closes), with no instrument listening (they hear a fork end on its loop).
    """
    scope = fut._scope
    return not (
        HOOKS
        or scope is None
        or not (scope is fut._parent or scope._is_root_set)
        or fut._children is not None
        or fut._timeout is not None
        or not owns_loop(fut._loop)
    )


def settle_in_thread(fut: Future[Any], value: Any, error: BaseException | None) -> bool:
    """After ``may_settle_in_thread``, in the thread where the call ended: settle the fork
    right here, so a waiter in another thread wakes without a trip through the loop; the
    loop takes the scope and done-callbacks in after. Not for a coroutine the call returned
    (it runs on the loop) or an interrupt (it must reach the loop), nor once a cancel came
    first. True if it settled the fork.
    """
    if (
        type(value) is CoroutineType if error is None else not isinstance(error, Exception)
    ) or not fut._claim_settle():
        return False
    scope = fut._scope
    assert scope is not None
    if error is not None:
        annotate(fut, error)
    fut._publish(FINISHED, value, error)
    # Before the waiters wake: what a waiter does next comes after it.
    if scope._is_root_set and fut._callbacks is None and fut._incoming is None:
        # Nothing on the loop waits for it: it leaves the root set here, and the loop, which
        # would compete for the CPU and the GIL with the program's threads, is not woken.
        # (A callback added on the loop meanwhile is run by its adder: _settled_meanwhile.)
        fut._item = None
        scope._left_from_thread(fut)  # type: ignore[attr-defined]
    else:
        try:
            post(fut._loop, fut._taken_in)
        except RuntimeError:  # its loop closed meanwhile: nobody else is left to do it
            fut._taken_in()
    fut._wake_waiters()
    return True


def annotate(fut: Future[Any], exc: BaseException) -> None:
    """The notes a fork's own error takes as it fails the fork."""
    if type(exc) is TypeError:
        _note_fork_option(fut, exc)
    elif type(exc) is RuntimeError:
        _note_other_loop(fut, exc)
    note_site(fut, exc)


def note_site(fut: Future[Any], exc: BaseException) -> None:
    """Add the note naming the fork that fails with ``exc`` and where it was forked.

    Called once per fork, as it fails, so an error passing up through nested forks
    (``await child`` re-raising in its parent) gathers one note per level, the failing
    fork's first; waiting for it again adds nothing. A level identical to the one below
    it (recursion, or siblings sharing one exception) is counted, not repeated, as the
    traceback counts a repeated line. An exception object raised again and again (a
    module-level instance) stops taking notes past ``_MOST_NOTES``, so it cannot grow
    for the life of the program.
    """
    site = fut._site
    if site is None:
        return
    code, offset = site
    filename = code.co_filename
    if filename.startswith(_PACKAGE):
        return  # made by asyncfork itself (af.run's root): the caller's traceback shows it
    note = f"in fork {fut.name!r} (forked at {filename}:{_line_of(code, offset)} in {code.co_name})"
    try:
        notes = cast("list[object] | None", getattr(exc, "__notes__", None))
        if type(notes) is list and notes:
            last = notes[-1]
            if last == note:
                notes.append(_REPEATED.format(1, ""))
                return
            repeated = _REPEATED_COUNT.fullmatch(last) if type(last) is str else None
            if repeated is not None and len(notes) > 1 and notes[-2] == note:
                notes[-1] = _REPEATED.format(int(repeated.group(1)) + 1, "s")
                return
            if len(notes) >= _MOST_NOTES:  # one exception object raised by fork after fork
                if last != _LEFT_OUT:
                    notes.append(_LEFT_OUT)
                return
        exc.add_note(note)
    except Exception:  # __notes__ replaced by something that is not a list: leave it
        pass


_PACKAGE = os.path.dirname(__file__) + os.sep
_REPEATED = "[previous fork note repeated {} more time{}]"
_REPEATED_COUNT = re.compile(r"\[previous fork note repeated (\d+) more times?\]")
_MOST_NOTES = 64
_LEFT_OUT = "[further fork notes left out: this exception object has failed many forks]"


def _line_of(code: CodeType, offset: int) -> int:
    """The source line of the instruction at ``offset`` in ``code``."""
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return line
    return code.co_firstlineno


# asyncio's words for an object used on a loop other than the one it is bound to.
_OTHER_LOOP = re.compile(r"bound to a different event loop|attached to a different loop")


def _note_other_loop(fut: Future[Any], exc: RuntimeError) -> None:
    """Say which loop a fork ran on when it used an object of another loop.

    The common causes are a client made on one loop and used from a fork on another (a
    fork from a plain thread runs on the background loop), and a client made before
    ``os.fork`` (gunicorn ``--preload``).
    """
    if _OTHER_LOOP.search(str(exc)) is None:
        return
    roots = ROOTS.get(fut._loop)
    where = (
        "asyncfork's background loop (it was forked from a thread that runs no event loop)"
        if roots is not None and roots.background is not None
        else "the event loop it was forked on"
    )
    note = (
        f"fork {fut.name!r} ran on {where}, and an object it used belongs to another event "
        "loop. Loop-bound objects (HTTP clients, connection pools, asyncio locks, events and "
        "queues) work only on the loop they were made on: make them on the loop that uses "
        "them, e.g. in a web app's lifespan, forking from its handlers; after os.fork "
        "(gunicorn --preload), make them in each worker process"
    )
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


_REJECTED_KEYWORD = re.compile(
    r"^([\w.<>]+)\(\) got an unexpected keyword argument '(\w+)'"
    r"|^'(\w+)' is an invalid keyword argument for ([\w.<>]+)\(\)"
)


def _note_fork_option(fut: Future[Any], exc: TypeError) -> None:
    """Explain ``fork(func, x, timeout=1)`` when ``func`` rejected a keyword meant for the fork.

    Only for a TypeError raised by the call of the fork's function itself (not from
    deeper inside it), and only once.
    """
    found = _REJECTED_KEYWORD.search(str(exc))
    if found is None:
        return
    func_name, keyword = found.group(1, 2) if found.group(1) else found.group(4, 3)
    if keyword not in _option_names() or not _raised_by_the_call(fut, exc):
        return
    note = (
        f"af.fork passes every keyword argument to the function it forks; for the fork's own "
        f"{keyword} option write af.fork.options({keyword}=...)({_plain_name(func_name)}, ...)"
    )
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _option_names() -> set[str]:
    """The keywords of ``fork.options``: a function rejecting one was likely not meant to get it."""
    return set(FORK_OPTIONS)


def _raised_by_the_call(fut: Future[Any], exc: BaseException) -> bool:
    """Whether ``exc`` came from the call of the fork's function, not from inside it."""
    tb = exc.__traceback__
    if fut._kind != EXECUTOR:
        # asyncfork's own call sites drop their frame from the traceback: nothing is left
        # when the call itself raised.
        return tb is None
    if tb is not None:  # a thread pool: its call site must be the only frame
        return tb.tb_next is None and tb.tb_frame.f_globals.get("__name__") == _THREAD_POOL
    # A process pool sends the traceback as text: the same test, on its last section.
    cause = exc.__cause__
    if type(cause).__name__ != "_RemoteTraceback":
        return False
    last = str(cause).rpartition("Traceback (most recent call last):")[2]
    frames = re.findall(r'File "[^"]*", line \d+, in (\w+)', last)
    return frames == ["_process_worker"]


_THREAD_POOL = "concurrent.futures.thread"


def _plain_name(qualname: str) -> str:
    """The name a user writes for the callable that Python named ``qualname`` in its message."""
    parts = qualname.split(".")
    if len(parts) > 1 and parts[-1] in ("__init__", "__new__"):
        return parts[-2]  # a class: its constructor rejected the keyword
    if parts[-1].isidentifier() and not parts[-1].startswith("__"):
        return parts[-1]
    return "func"


def settle_off_loop(fut: Future[Any], value: Any, error: BaseException | None) -> None:
    """A sync fork's loop closed before it took the outcome in: settle in this thread."""
    if error is None and inspect.iscoroutine(value):
        value.close()  # nothing is left to run it
        value = None
        if fut._state == PENDING and not fut._cancel_requested:
            error = RuntimeError(f"fork {fut.name!r} returned a coroutine after its loop closed")
    if fut._state != PENDING:
        return  # abandoned (on_cancel="abandon", or a daemon at shutdown): dropped
    if error is None and fut._cancel_requested:
        error = fut._cancelled_error()  # on_cancel="wait": the result is discarded
    finish(fut, value, error)
