"""af.tree(): the live forks, nested by parent, with their state."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest
from helpers import T

import asyncfork as af


def _line_of(text: str, name: str) -> str:
    lines = [line for line in text.splitlines() if re.search(rf"[─] {re.escape(name)}  ", line)]
    assert len(lines) == 1, text
    return lines[0]


async def test_tree_shows_a_hung_fork_with_its_state() -> None:
    """af.tree() lists a pending fork by name, with its state: pending, running, cancelling."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            await release.wait()  # a slow cleanup: the fork is "cancelling" meanwhile
            raise

    fut = af.fork.options(name="stuck-fork")(stuck)
    assert "pending" in _line_of(af.tree(show=False), "stuck-fork")  # not started yet
    assert await asyncio.wait_for(started.wait(), 5) is True
    line = _line_of(af.tree(show=False), "stuck-fork")
    assert re.search(r"stuck-fork  running  \d+\.\ds$", line), line
    fut.cancel()
    assert "cancelling" in _line_of(af.tree(show=False), "stuck-fork")
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fut, 5)
    assert fut.cancelled()
    assert "stuck-fork" not in af.tree(show=False)


async def test_tree_nests_children_under_their_parent() -> None:
    """A fork's children appear under it, indented one level deeper."""
    release = asyncio.Event()
    ready = asyncio.Event()

    async def child() -> None:
        await release.wait()

    async def parent() -> None:
        af.fork.options(name="kid-a")(child)
        af.fork.options(name="kid-b")(child)
        ready.set()

    fut = af.fork.options(name="the-parent")(parent)
    assert await asyncio.wait_for(ready.wait(), 5) is True
    text = af.tree(show=False)
    top, a, b = (_line_of(text, n) for n in ("the-parent", "kid-a", "kid-b"))
    lines = text.splitlines()
    assert lines.index(top) < lines.index(a) < lines.index(b)
    assert a.startswith("   ├─ "), text
    assert b.startswith("   └─ "), text
    assert "running" in top  # joining its children: still running
    release.set()
    await asyncio.wait_for(fut, 5)


def test_tree_shows_forks_of_the_background_loop(loop_kind: str) -> None:
    """From sync code: the background loop's forks, a sync child in its thread included."""
    started = threading.Event()
    release = threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(5)

    async def owner() -> None:
        await af.fork.options(name="blocking-child")(blocking)

    fut = af.fork.options(name="bg-owner")(owner)
    try:
        assert started.wait(5)
        text = af.tree(show=False)
        header = text.splitlines()[0]
        assert header.startswith(f"<{loop_kind} loop 0x")
        assert "(asyncfork-loop)" in header
        assert "running" in _line_of(text, "bg-owner")
        assert "(thread)" in _line_of(text, "blocking-child")
        assert _line_of(text, "blocking-child").startswith("   └─ ")
    finally:
        release.set()
    fut.result(timeout=5)


def test_tree_finds_forks_of_af_run_in_another_thread(loop_kind: str) -> None:
    """af.run's loop is asyncfork's own: its forks show up from any thread."""
    started = threading.Event()
    release = threading.Event()

    async def hang() -> None:
        started.set()
        await asyncio.to_thread(release.wait, 5)

    async def main() -> None:
        await af.fork.options(name="run-child")(hang)

    thread = threading.Thread(target=af.run, args=(main,))
    thread.start()
    try:
        assert started.wait(5)
        text = af.tree(show=False)
        assert "running" in _line_of(text, "run-child")
        assert _line_of(text, "run-child").startswith("   └─ ")  # under af.run's main
    finally:
        release.set()
        thread.join(5)
    assert not thread.is_alive()


def test_tree_is_empty_when_nothing_runs(
    loop_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No running fork: af.tree() returns "" and prints a line saying so."""
    af.fork(lambda: 1).result(timeout=5)  # the background loop exists, but is idle
    assert af.tree(show=False) == ""
    assert af.tree() == ""
    assert capsys.readouterr().out == "(no forks running)\n"


async def test_tree_finds_a_sync_fork_of_a_plain_coroutine_on_a_foreign_loop() -> None:
    """A sync fork started by a coroutine that is not a fork, on a loop asyncfork does not
    own (pytest-asyncio's), is found: the loop's root set holds it.
    """
    running = threading.Event()
    release = threading.Event()

    def blocking() -> None:
        running.set()
        release.wait(T)

    fut = af.fork.options(name="blocking-call")(blocking)
    try:
        assert await asyncio.to_thread(running.wait, T)
        text = af.tree(show=False)
        assert "(thread)" in _line_of(text, "blocking-call")
    finally:
        release.set()
    await fut


async def test_tree_finds_the_members_of_an_open_group() -> None:
    """Group members sit in their group, not in their parent's children; the tree walks
    into the groups open in each scope.
    """
    release = asyncio.Event()

    async def member() -> None:
        await release.wait()

    async def owner() -> None:
        async with af.group(name="crew") as g:
            g.fork.options(name="member-a")(member)
            g.fork.options(name="member-b")(member)
            await asyncio.sleep(0)
            text = af.tree(show=False)
            release.set()
        assert "[group 'crew']" in _line_of(text, "member-a")
        assert "[group 'crew']" in _line_of(text, "member-b")
        # Nested under the owner fork, one level deeper.
        assert _line_of(text, "member-a").index("member-a") > _line_of(text, "owner").index("owner")

    await af.fork.options(name="owner")(owner)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_tree_in_an_os_fork_child_forgets_the_loops_of_other_threads() -> None:
    """Only the forking thread lives on in an os.fork() child: other threads' loops and
    their forks are not shown there (they would never move again).
    """
    code = textwrap.dedent(
        """
        import asyncio, os, threading
        import asyncfork as af

        started, release = threading.Event(), threading.Event()

        async def waits() -> None:
            started.set()
            await asyncio.to_thread(release.wait, 10)

        async def other_thread_main() -> None:
            await af.fork.options(name="elsewhere")(waits)

        thread = threading.Thread(target=asyncio.run, args=(other_thread_main(),))
        thread.start()
        assert started.wait(10)
        assert "elsewhere" in af.tree(show=False)
        pid = os.fork()
        if pid == 0:
            os._exit(3 if af.tree(show=False) else 0)
        _, status = os.waitpid(pid, 0)
        release.set()
        thread.join(10)
        assert os.waitstatus_to_exitcode(status) == 0, status
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-W", "ignore::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# The loops are dropped unclosed on purpose. The cyclic GC that collects them may finalize a
# loop's self-pipe socket before the loop, and asyncio's own __del__ of an unclosed loop then
# fails to close it ("Invalid file descriptor: -1"): asyncio's, not this test's subject.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_loops_dropped_without_close_are_not_kept_alive_by_their_root_sets() -> None:
    """The root set of a loop asyncfork does not own must not keep that loop (and its file
    descriptors) alive once the program has dropped it, closed or not."""
    import gc
    import warnings
    import weakref

    async def one() -> int:
        return 1

    async def main() -> int:
        return await af.fork(one)

    dropped = []
    with warnings.catch_warnings():
        # The loops are dropped unclosed and collected here: that is this test's point.
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(20):
            loop = asyncio.new_event_loop()
            assert loop.run_until_complete(main()) == 1
            dropped.append(weakref.ref(loop))
            del loop  # dropped without close()
        gc.collect()
        alive = [ref() for ref in dropped if ref() is not None]
        assert len(alive) <= 1  # at most the last one, until another loop forks
        for loop in alive:  # close what is left, so nothing warns in a later test
            if loop is not None:
                loop.close()
        del alive


@pytest.mark.parametrize("value", ["no", 0, None])
def test_show_must_be_a_bool(value: object) -> None:
    """tree(show="no") must not print: a TypeError naming the option."""
    with pytest.raises(TypeError, match=r"tree\(show=...\) must be True or False"):
        af.tree(show=value)  # type: ignore[arg-type]
