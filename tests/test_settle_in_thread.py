"""A sync fork made and waited for outside its loop settles in the thread its call ended in.

The rule: when its loop has nothing left to decide (a root fork or a fork's child, no
child of its own, no timeout, not cancelled, a value or an Exception), a sync fork's
outcome reaches a waiter in another thread without passing through the loop; a root
fork made from a plain thread joins and leaves the root set there too. The loop takes
the rest in later: done-callbacks, a parent's join.
"""

from __future__ import annotations

import asyncio
import threading
from asyncio import CancelledError
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import T

import asyncfork as af


@contextmanager
def blocked_background_loop() -> Iterator[None]:
    """The background loop's thread, blocked for the duration of the block."""
    release, blocked = threading.Event(), threading.Event()

    async def block_the_loop() -> None:
        blocked.set()
        release.wait(10 * T)  # on purpose: the loop's thread does nothing else meanwhile

    hog = af.fork(block_the_loop)
    assert blocked.wait(T)
    try:
        yield
    finally:
        release.set()
        assert af.wait(hog, timeout=T) is None


def test_a_plain_threads_sync_fork_and_wait_need_no_loop(loop_kind: str) -> None:
    """Forked and waited from a plain thread, a sync fork's value arrives while its loop is
    blocked: neither its start, nor its outcome, nor its root set needs the loop."""
    with blocked_background_loop():
        futs = [af.fork(pow, 2, n) for n in range(8)]
        assert af.wait(futs, timeout=T) == [2**n for n in range(8)]
        assert [fut.result(timeout=T) for fut in futs] == [2**n for n in range(8)]
        assert "pow" not in af.tree(show=False)  # left the root set, in their threads


def test_a_failure_settled_in_its_thread_keeps_its_note(loop_kind: str) -> None:
    """An error comes back, with its fork-site note, while the loop is blocked."""

    def fail() -> None:
        raise ValueError("bad input")

    with blocked_background_loop():
        fut = af.fork(fail)
        with pytest.raises(ValueError, match="bad input") as info:
            af.wait(fut, timeout=T)
    assert any(note.startswith("in fork '") and ".fail'" in note for note in info.value.__notes__)


def test_done_callbacks_still_run_on_the_loop_once(loop_kind: str) -> None:
    """A done-callback added before the fork settles in its thread runs once, on the loop."""
    gate = threading.Event()
    ran: list[str] = []
    done = threading.Event()

    def record(_fut: af.Future[int]) -> None:
        ran.append(threading.current_thread().name)
        done.set()

    fut = af.fork(gate.wait, T)
    fut.add_done_callback(record)
    gate.set()
    assert fut.result(timeout=T) is True
    assert done.wait(T)
    af.wait(af.fork(asyncio.sleep, 0), timeout=T)  # a loop round trip: no second call
    assert ran == ["asyncfork-loop"]


def test_cancel_true_means_cancelled_whenever_the_call_returns(loop_kind: str) -> None:
    """A cancel racing a call that returns: True means the fork ends cancelled (its result
    is discarded), False that it finished with its value. Never True and a value."""
    outcomes = set()
    for _ in range(300):
        fut = af.fork(int, "7")
        accepted = fut.cancel()
        try:
            value = fut.result(timeout=T)
        except CancelledError:
            assert accepted, "cancelled, though cancel() said it had finished"
            outcomes.add("cancelled")
        else:
            assert not accepted, "cancel() said True, and the fork kept its value"
            assert value == 7
            outcomes.add("value")
    assert "cancelled" in outcomes  # most cancels reach the fork before it runs


def test_an_unwaited_failing_child_settled_in_its_thread_fails_its_parent(
    loop_kind: str,
) -> None:
    """A child settled in its own thread, before its parent's loop registered it, is still
    joined by its parent, and its unretrieved failure still fails the parent."""

    def failing() -> None:
        raise ValueError("child failed")

    def parent() -> str:
        af.fork(failing)  # never waited
        return "done"

    for _ in range(50):
        with pytest.raises(ExceptionGroup) as info:
            af.wait(af.fork(parent), timeout=T)
        assert [type(exc) for exc in info.value.exceptions] == [ValueError]


def test_a_child_settled_in_its_thread_is_joined_before_its_parent(loop_kind: str) -> None:
    """A parent's Future settles only after its child's, however the child settled."""
    child_done_first: list[bool] = []

    def parent() -> af.Future[str]:
        return af.fork(str, "child")  # not waited: the parent's join waits for it

    for _ in range(50):
        outer = af.fork(parent)
        outer.add_done_callback(lambda f: child_done_first.append(f.result().done()))
        assert outer.result(timeout=T).result(timeout=T) == "child"
    af.wait(af.fork(asyncio.sleep, 0), timeout=T)  # the last callback has run
    assert child_done_first == [True] * 50
