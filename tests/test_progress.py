"""asyncfork.progress: a tqdm bar of the forks finished out of the forks made."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

import pytest
from tqdm import tqdm

import asyncfork as af
import asyncfork.progress
from asyncfork.progress import ForkProgress, bar

T = 5.0  # the bound on every wait that should end promptly


async def done(aw: Any) -> Any:
    async with asyncio.timeout(T):
        return await aw


async def helper() -> None:
    return None


async def job(i: int) -> int:
    await af.fork(helper)  # a child of the job: not counted by default
    return i


def assert_removed(progress: ForkProgress) -> None:
    """It is no longer installed: installing it again works (and is undone at once)."""
    assert af.instrument(progress).remove() is True


async def test_counts_the_forks_made_here_and_closes_the_bar() -> None:
    out = io.StringIO()
    with bar(desc="jobs", file=out) as progress:
        assert await done(af.wait([af.fork(job, i) for i in range(10)])) == list(range(10))

    assert (progress.made, progress.finished) == (10, 10), "the jobs, not their helpers"
    assert (progress.failed, progress.cancelled) == (0, 0)
    assert progress.bar.n == 10
    assert progress.bar.total == 10
    assert progress.bar.disable, "the bar it made is closed"
    text = out.getvalue()
    assert "jobs: 100%" in text
    assert "10/10" in text
    assert text.endswith("\n"), "closed with leave=True: the final line stays"
    assert_removed(progress)
    # Forks made afterwards are not counted.
    await done(af.fork(job, 99))
    assert (progress.made, progress.finished) == (10, 10)
    assert "10/10" in repr(progress)


async def test_all_forks_at_any_depth() -> None:
    with bar(forks="all", file=io.StringIO()) as progress:
        await done(af.wait([af.fork(job, i) for i in range(5)]))
    assert (progress.made, progress.finished) == (10, 10)


async def test_children_of_the_fork_that_opened_it() -> None:
    async def before() -> None:
        return None

    async def main() -> ForkProgress:
        await af.fork(before)  # made before the bar: not counted
        with bar(file=io.StringIO()) as progress:
            async with af.group(limit=2) as g:
                for i in range(4):
                    g.fork(job, i)
            await af.fork(job, 4)
        return progress

    progress = await done(af.fork(main))
    assert (progress.made, progress.finished) == (5, 5), "the group's forks are main's too"


async def test_prefix_and_predicate_select_forks() -> None:
    async def fetch() -> None:
        await af.fork(helper)

    with bar(file=io.StringIO(), forks="all", prefix="fetch") as by_prefix:
        futs = [af.fork.options(name=f"fetch-{i}")(fetch) for i in range(3)]
        futs.append(af.fork.options(name="other")(fetch))
        await done(af.wait(futs))
    assert (by_prefix.made, by_prefix.finished) == (3, 3)

    with bar(file=io.StringIO(), forks=lambda fut: fut.name == "other") as by_predicate:
        await done(af.wait([af.fork.options(name="other")(fetch), af.fork(fetch)]))
    assert (by_predicate.made, by_predicate.finished) == (1, 1)


async def test_failures_and_cancellations_are_counted_and_shown() -> None:
    started = asyncio.Event()

    async def broken() -> None:
        raise ValueError("no")

    async def waits() -> None:
        started.set()
        await asyncio.get_running_loop().create_future()

    out = io.StringIO()
    with bar(file=out) as progress:
        failing = af.fork(broken)
        waiting = af.fork(waits)
        ok = af.fork(job, 1)
        await done(started.wait())
        waiting.cancel()
        results = await done(af.wait([failing, waiting, ok], return_exceptions=True))
    assert isinstance(results[0], ValueError)
    assert isinstance(results[1], asyncio.CancelledError)
    assert (progress.made, progress.finished) == (3, 3)
    assert (progress.failed, progress.cancelled) == (1, 1)
    assert "failed=1, cancelled=1" in out.getvalue()


async def test_fixed_total() -> None:
    out = io.StringIO()
    with bar(total=20, file=out) as progress:
        await done(af.wait([af.fork(job, i) for i in range(5)]))
    assert progress.bar.total == 20
    assert "5/20" in out.getvalue()


def test_forks_from_many_threads_are_all_counted(loop_kind: str) -> None:
    """Hooks run in many threads at once: no count is lost."""
    threads_n, per_thread = 4, 50
    barrier = threading.Barrier(threads_n, timeout=T)
    futs: list[af.Future[Any]] = []
    lock = threading.Lock()

    def sync_job(i: int) -> int:
        return i

    def forker() -> None:
        barrier.wait()
        made = [af.fork(sync_job, i) if i % 2 else af.fork(job, i) for i in range(per_thread)]
        with lock:
            futs.extend(made)

    with bar(file=io.StringIO(), interval=0.001) as progress:
        threads = [threading.Thread(target=forker) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(T)
            assert not thread.is_alive()
        af.wait(futs, timeout=T)
    total = threads_n * per_thread
    assert (progress.made, progress.finished) == (total, total)
    assert progress.bar.n == total
    assert_removed(progress)


async def test_the_bar_follows_the_forks_while_they_run() -> None:
    """The drawing thread moves the counts to the bar while the forks are still running."""
    seen: list[tuple[float, float | None]] = []
    all_made = threading.Event()
    all_finished = threading.Event()

    class Recording(tqdm):  # type: ignore[type-arg]
        def refresh(self, *args: Any, **kwargs: Any) -> None:
            seen.append((self.n, self.total))
            if self.total == 5:
                all_made.set()
                if self.n == 5:
                    all_finished.set()
            super().refresh(*args, **kwargs)

    gate = asyncio.Event()

    async def gated() -> None:
        await gate.wait()

    mine = Recording(file=io.StringIO(), mininterval=0)
    with ForkProgress(mine, interval=0.001) as progress:
        futs = [af.fork(gated) for _ in range(5)]
        assert await done(asyncio.to_thread(all_made.wait, T)), seen
        assert progress.bar.n == 0
        gate.set()
        await done(af.wait(futs))
        assert await done(asyncio.to_thread(all_finished.wait, T)), seen
    assert not mine.disable, "a bar that was passed in is left open"
    assert mine.n == 5
    mine.close()


async def test_removed_when_the_block_raises() -> None:
    progress = bar(file=io.StringIO())

    async def body() -> None:
        with progress:
            await done(af.fork(job, 1))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await body()
    assert (progress.made, progress.finished) == (1, 1)
    assert progress.bar.disable
    assert_removed(progress)


def test_misuse_is_refused() -> None:
    with pytest.raises(TypeError):
        ForkProgress(tqdm(disable=True), desc="x")
    with pytest.raises(TypeError):
        ForkProgress(tqdm(disable=True), total=3)
    with pytest.raises(ValueError):
        bar(forks="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bar(interval=0)
    progress = bar(disable=True)
    with pytest.raises(RuntimeError):
        _ = progress.bar  # made when it starts
    progress.close()  # not started: nothing to do
    with progress, pytest.raises(RuntimeError):
        progress.start()
    progress.close()  # closed already: nothing to do
    with pytest.raises(RuntimeError), progress:
        pass
    assert_removed(progress)


def test_module_docstring_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = asyncfork.progress.__doc__
    assert doc is not None
    code = _indented_block(doc.split("::\n", 1)[1])
    assert "with bar(" in code
    exec(compile(code, "asyncfork.progress docstring", "exec"), {})
    assert "jobs: 100%" in capsys.readouterr().err


def _indented_block(text: str) -> str:
    lines: list[str] = []
    for line in text.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"
