"""Scenarios 7-8: memory per pending fork, and scaling to 10^6 forks in one group.

7. N forks (100k) blocked on an event: traced bytes per pending fork (tracemalloc,
   all threads, measured once all of them have started and are blocked), against N
   pending asyncio Tasks blocked on the same kind of event.
8. 10^3..10^6 no-op forks in one group: time per fork (median of the interleaved
   samples, tracemalloc off), then in a separate traced pass the peak traced bytes per
   fork and the traced bytes still held after the group has finished (gc collected),
   which should be back to the baseline (about 0). Most of the per-fork time growth
   with n is the cyclic GC (full collections walk every live task); with gc disabled,
   300k/1k is about 1.2-1.4 for both asyncio.TaskGroup and asyncfork.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

import anyio
import asyncer
import trio
from unsync import unsync

import asyncfork as af

from ._common import Config, Impl, run_on


def _start() -> int:
    gc.collect()
    tracemalloc.start()
    return tracemalloc.get_traced_memory()[0]


def _used(base: int) -> int:
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used


class _Blocked:
    """A coroutine function that counts its starts and blocks on an event."""

    def __init__(self, event: Any) -> None:
        self.event = event
        self.started = 0

    async def __call__(self) -> None:
        self.started += 1
        await self.event.wait()


async def _all_started(b: _Blocked, n: int) -> None:
    while b.started < n:  # noqa: ASYNC110 (polling adds nothing per fork; an Event would)
        await asyncio.sleep(0)


# ------------------------------------------------------------------ 7. memory per pending fork


def s7(kind: str, cfg: Config) -> list[Impl]:
    n = cfg.s7_n

    async def create_task() -> float:
        b = _Blocked(asyncio.Event())
        base = _start()
        tasks = [asyncio.create_task(b()) for _ in range(n)]
        await _all_started(b, n)
        used = _used(base)
        b.event.set()
        await asyncio.gather(*tasks)
        return used / n

    async def taskgroup() -> float:
        b = _Blocked(asyncio.Event())
        base = _start()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(b())
            await _all_started(b, n)
            used = _used(base)
            b.event.set()
        return used / n

    async def af_fork() -> float:
        b = _Blocked(asyncio.Event())
        base = _start()
        futs = [af.fork(b) for _ in range(n)]
        await _all_started(b, n)
        used = _used(base)
        b.event.set()
        await af.wait(futs)
        return used / n

    async def af_group() -> float:
        b = _Blocked(asyncio.Event())
        base = _start()
        async with af.group() as g:
            for _ in range(n):
                g.fork(b)
            await _all_started(b, n)
            used = _used(base)
            b.event.set()
        return used / n

    async def anyio_tg() -> float:
        b = _Blocked(anyio.Event())
        base = _start()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(b)
            await _all_started(b, n)
            used = _used(base)
            b.event.set()
        return used / n

    async def asyncer_tg() -> float:
        b = _Blocked(anyio.Event())
        base = _start()
        async with asyncer.create_task_group() as tg:
            soon = tg.soonify(b)
            for _ in range(n):
                soon()
            await _all_started(b, n)
            used = _used(base)
            b.event.set()
        return used / n

    async def trio_nursery() -> float:
        b = _Blocked(trio.Event())
        base = _start()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(b)
            while b.started < n:
                await trio.lowlevel.checkpoint()
            used = _used(base)
            b.event.set()
        return used / n

    @unsync
    async def unsync_bench() -> float:
        b = _Blocked(asyncio.Event())

        @unsync
        async def blocked() -> None:
            await b()

        base = _start()
        futs = [blocked() for _ in range(n)]
        await _all_started(b, n)
        used = _used(base)
        b.event.set()
        for f in futs:
            await f
        return used / n

    return [
        Impl("asyncio create_task (pending Task)", lambda: run_on(kind, create_task), ref=True),
        Impl("asyncio TaskGroup", lambda: run_on(kind, taskgroup)),
        Impl("asyncfork fork (pending Future)", lambda: run_on(kind, af_fork), target=True),
        Impl("asyncfork group: g.fork", lambda: run_on(kind, af_group)),
        Impl("anyio task group", lambda: run_on(kind, anyio_tg)),
        Impl("asyncer soonify in task group", lambda: run_on(kind, asyncer_tg)),
        Impl("trio nursery (trio loop)", lambda: trio.run(trio_nursery)),
        Impl("unsync f() (unsync's loop thread)", lambda: unsync_bench().result()),
    ]


# ------------------------------------------------------------------ 8. scaling


async def noop() -> int:
    return 1


async def _af_group(n: int) -> None:
    async with af.group() as g:
        fork = g.fork
        for _ in range(n):
            fork(noop)


async def _taskgroup(n: int) -> None:
    async with asyncio.TaskGroup() as tg:
        create = tg.create_task
        for _ in range(n):
            create(noop())


GroupFn = Callable[[int], Coroutine[Any, Any, None]]


def _time_per_fork(kind: str, group: GroupFn, n: int, reps: int) -> Callable[[], float]:
    async def go() -> float:
        gc.collect()
        t = perf_counter()
        for _ in range(reps):
            await group(n)
        return (perf_counter() - t) / (n * reps)

    return lambda: run_on(kind, go)


def _memory(kind: str, group: GroupFn, n: int) -> Callable[[], dict[str, float]]:
    async def go() -> dict[str, float]:
        # asyncio's registry of all tasks (a WeakSet: its table never shrinks) must be
        # grown to n before tracing, or the first implementation traced at this n is
        # charged for it (32 MiB at n=10^6) and the others are not. An untraced
        # TaskGroup of n does that the same way for every row; a container of the
        # implementation's own that keeps its size would still show.
        await _taskgroup(n)
        await group(10)  # first-use allocations (caches, the loop's own) are not per fork
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await group(n)
        peak = tracemalloc.get_traced_memory()[1]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return {"peak_bytes_per_fork": (peak - base) / n, "after_bytes": float(after - base)}

    return lambda: run_on(kind, go)  # type: ignore[arg-type, return-value]


def s8(kind: str, cfg: Config) -> list[Impl]:
    impls = []
    for n in cfg.s8_sizes:
        reps = max(1, cfg.s8_min_forks // n)
        for label, fn, is_af in (
            ("asyncfork group", _af_group, True),
            ("asyncio TaskGroup", _taskgroup, False),
        ):
            impls.append(
                Impl(
                    f"{label} n={n}",
                    _time_per_fork(kind, fn, n, reps),
                    extra=_memory(kind, fn, n) if n <= cfg.s8_memory_max else None,
                    target=is_af,
                    samples=cfg.big_samples if n >= cfg.big_n else None,
                )
            )
    return impls
