"""asyncfork Futures inside other async frameworks' code (anyio's asyncio backend)."""

from __future__ import annotations

import asyncio

import anyio
import anyio.to_thread
import pytest

import asyncfork as af


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_forks_in_an_anyio_task_group(use_uvloop: bool) -> None:
    """Forks made in anyio tasks run on anyio's loop and are awaitable there."""

    async def main() -> list[int]:
        results: list[int] = []

        async def child(n: int) -> None:
            results.append(await af.fork(double, n))

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(child, n)
        return sorted(results)

    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": use_uvloop}) == [
        0,
        2,
        4,
        6,
        8,
    ]


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_wait_from_an_anyio_worker_thread(use_uvloop: bool) -> None:
    """Sync code offloaded by anyio can block in af.wait on a fork of the loop's code."""

    async def main() -> int:
        fut = af.fork(double, 21)
        return await anyio.to_thread.run_sync(lambda: af.wait(fut, timeout=5))

    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": use_uvloop}) == 42
