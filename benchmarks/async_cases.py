"""Scenarios 1-3: forking coroutines from async code, on one loop.

1. fork + await one coroutine, repeated (round-trip latency), per round trip;
2. 1000 forks in a group, then join, per fork;
3. fib(k) tree where every call forks two children and waits for them, per call.

unsync rows run on unsync's own loop thread (its coroutines cannot be awaited from
another loop); in the uvloop run that loop is a uvloop (the worker sets the policy).
trio rows run on trio's own loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import anyio
import asyncer
import trio
from unsync import unsync

import asyncfork as af

from ._common import HAS_EAGER, NO_EAGER, Config, Impl, run_on

GROUP = 1000


async def noop() -> int:
    return 1


@unsync
async def u_noop() -> int:
    return 1


def _eager_forker() -> tuple[object | None, str]:
    if not HAS_EAGER:  # the option is accepted on 3.11, and starts lazily: not an eager row
        return None, "eager start needs Python 3.12+ (on 3.11 the option starts lazily)"
    return af.fork.options(eager=True), ""


def _eager_task_factory(
    loop: asyncio.AbstractEventLoop, coro: Any, *, eager_start: object = None, **kwargs: Any
) -> asyncio.Task[Any]:
    """asyncio's eager task factory. Not ``asyncio.eager_task_factory`` itself: uvloop's
    ``create_task`` passes ``eager_start=``, which that factory rejects on Python 3.13.0."""
    return asyncio.Task(coro, loop=loop, eager_start=True, **kwargs)  # type: ignore[call-arg]


async def _eagerly(body: Callable[[], Awaitable[float]]) -> float:
    """Run ``body`` with asyncio's eager task factory (3.12+) on this loop, then reset it."""
    loop = asyncio.get_running_loop()
    loop.set_task_factory(_eager_task_factory)
    try:
        return await body()
    finally:
        loop.set_task_factory(None)


# ------------------------------------------------------------------ 1. round trip


def s1(kind: str, cfg: Config) -> list[Impl]:
    n = cfg.s1_n

    async def create_task() -> float:
        for _ in range(20):
            await asyncio.create_task(noop())
        t = perf_counter()
        for _ in range(n):
            await asyncio.create_task(noop())
        return (perf_counter() - t) / n

    async def eager() -> float:
        return await _eagerly(create_task)

    async def taskgroup() -> float:
        t = perf_counter()
        for _ in range(n):
            async with asyncio.TaskGroup() as tg:
                tk = tg.create_task(noop())
            tk.result()
        return (perf_counter() - t) / n

    async def asyncfork() -> float:
        fork = af.fork
        for _ in range(20):
            await fork(noop)
        t = perf_counter()
        for _ in range(n):
            await fork(noop)
        return (perf_counter() - t) / n

    async def asyncfork_traced() -> float:
        # Tracing switched on: the target allows at most 2x per fork (the row above is "off").
        with af.trace():
            return await asyncfork()

    forker, eager_na = _eager_forker()

    async def asyncfork_eager() -> float:
        fork = forker
        t = perf_counter()
        for _ in range(n):
            await fork(noop)  # type: ignore[operator]
        return (perf_counter() - t) / n

    async def anyio_tg() -> float:
        t = perf_counter()
        for _ in range(n):
            async with anyio.create_task_group() as tg:
                tg.start_soon(noop)
        return (perf_counter() - t) / n

    async def asyncer_soon() -> float:
        t = perf_counter()
        for _ in range(n):
            async with asyncer.create_task_group() as tg:
                v = tg.soonify(noop)()
            v.value  # noqa: B018
        return (perf_counter() - t) / n

    async def trio_nursery() -> float:
        t = perf_counter()
        for _ in range(n):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(noop)
        return (perf_counter() - t) / n

    @unsync
    async def unsync_bench() -> float:
        t = perf_counter()
        for _ in range(n):
            await u_noop()
        return (perf_counter() - t) / n

    return [
        Impl("asyncio create_task + await", lambda: run_on(kind, create_task), ref=True),
        Impl("asyncio create_task (eager task factory)", lambda: run_on(kind, eager))
        if HAS_EAGER
        else Impl("asyncio create_task (eager task factory)", na=NO_EAGER),
        Impl("asyncio TaskGroup of 1", lambda: run_on(kind, taskgroup)),
        Impl("asyncfork await fork(f)", lambda: run_on(kind, asyncfork), target=True),
        Impl(
            "asyncfork await fork(f), traced (af.trace() on)",
            lambda: run_on(kind, asyncfork_traced),
        ),
        Impl("asyncfork fork.options(eager=True)", lambda: run_on(kind, asyncfork_eager))
        if forker is not None
        else Impl("asyncfork fork.options(eager=True)", na=eager_na),
        Impl("anyio task group of 1 (no return value)", lambda: run_on(kind, anyio_tg)),
        Impl("asyncer soonify in task group of 1", lambda: run_on(kind, asyncer_soon)),
        Impl("trio nursery of 1 (trio loop, no return value)", lambda: trio.run(trio_nursery)),
        Impl("unsync await f() (unsync's loop thread)", lambda: unsync_bench().result()),
    ]


# ------------------------------------------------------------------ 2. group of 1000


def s2(kind: str, cfg: Config) -> list[Impl]:
    g_n = cfg.s2_groups
    per = g_n * GROUP

    async def taskgroup() -> float:
        t = perf_counter()
        for _ in range(g_n):
            async with asyncio.TaskGroup() as tg:
                for _ in range(GROUP):
                    tg.create_task(noop())
        return (perf_counter() - t) / per

    async def eager_taskgroup() -> float:
        return await _eagerly(taskgroup)

    async def gather() -> float:
        t = perf_counter()
        for _ in range(g_n):
            await asyncio.gather(*[asyncio.create_task(noop()) for _ in range(GROUP)])
        return (perf_counter() - t) / per

    async def af_group() -> float:
        t = perf_counter()
        for _ in range(g_n):
            async with af.group() as g:
                fork = g.fork
                for _ in range(GROUP):
                    fork(noop)
        return (perf_counter() - t) / per

    async def af_wait() -> float:
        fork = af.fork
        t = perf_counter()
        for _ in range(g_n):
            await af.wait([fork(noop) for _ in range(GROUP)])
        return (perf_counter() - t) / per

    async def anyio_tg() -> float:
        t = perf_counter()
        for _ in range(g_n):
            async with anyio.create_task_group() as tg:
                for _ in range(GROUP):
                    tg.start_soon(noop)
        return (perf_counter() - t) / per

    async def asyncer_soon() -> float:
        t = perf_counter()
        for _ in range(g_n):
            async with asyncer.create_task_group() as tg:
                soon = tg.soonify(noop)
                vals = [soon() for _ in range(GROUP)]
            [v.value for v in vals]
        return (perf_counter() - t) / per

    async def trio_nursery() -> float:
        t = perf_counter()
        for _ in range(g_n):
            async with trio.open_nursery() as nursery:
                for _ in range(GROUP):
                    nursery.start_soon(noop)
        return (perf_counter() - t) / per

    @unsync
    async def unsync_bench() -> float:
        t = perf_counter()
        for _ in range(g_n):
            futs = [u_noop() for _ in range(GROUP)]
            for f in futs:
                await f
        return (perf_counter() - t) / per

    return [
        Impl("asyncio TaskGroup", lambda: run_on(kind, taskgroup), ref=True),
        Impl("asyncio TaskGroup (eager task factory)", lambda: run_on(kind, eager_taskgroup))
        if HAS_EAGER
        else Impl("asyncio TaskGroup (eager task factory)", na=NO_EAGER),
        Impl("asyncio create_task + gather", lambda: run_on(kind, gather)),
        Impl("asyncfork group: g.fork", lambda: run_on(kind, af_group), target=True),
        Impl("asyncfork fork x1000 + await wait(list)", lambda: run_on(kind, af_wait)),
        Impl("anyio task group", lambda: run_on(kind, anyio_tg)),
        Impl("asyncer soonify in task group", lambda: run_on(kind, asyncer_soon)),
        Impl("trio nursery (trio loop)", lambda: trio.run(trio_nursery)),
        Impl(
            "unsync f() x1000 + await each (unsync's loop thread)", lambda: unsync_bench().result()
        ),
    ]


# ------------------------------------------------------------------ 3. fib tree


def fib_calls(k: int) -> int:
    a, b = 0, 1  # F(0), F(1)
    for _ in range(k + 1):
        a, b = b, a + b
    return 2 * a - 1  # calls in the naive tree = 2 F(k+1) - 1


async def fib_taskgroup(n: int) -> int:
    if n < 2:
        return n
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(fib_taskgroup(n - 1))
        b = tg.create_task(fib_taskgroup(n - 2))
    return a.result() + b.result()


async def fib_create_task(n: int) -> int:
    if n < 2:
        return n
    a = asyncio.create_task(fib_create_task(n - 1))
    b = asyncio.create_task(fib_create_task(n - 2))
    return await a + await b


async def fib_af(n: int) -> int:
    if n < 2:
        return n
    a = af.fork(fib_af, n - 1)
    b = af.fork(fib_af, n - 2)
    return await a + await b


# Eager forks (Python 3.12+; the option is accepted, and lazy, on 3.11).
_fork_eagerly = af.fork.options(eager=True)


async def fib_af_eager(n: int) -> int:
    if n < 2:
        return n
    a = _fork_eagerly(fib_af_eager, n - 1)
    b = _fork_eagerly(fib_af_eager, n - 2)
    return await a + await b


async def fib_af_group(n: int) -> int:
    if n < 2:
        return n
    async with af.group() as g:
        a = g.fork(fib_af_group, n - 1)
        b = g.fork(fib_af_group, n - 2)
    return a.result() + b.result()


async def fib_anyio(n: int) -> int:
    if n < 2:
        return n
    out = [0, 0]

    async def put(i: int, m: int) -> None:
        out[i] = await fib_anyio(m)

    async with anyio.create_task_group() as tg:
        tg.start_soon(put, 0, n - 1)
        tg.start_soon(put, 1, n - 2)
    return out[0] + out[1]


async def fib_asyncer(n: int) -> int:
    if n < 2:
        return n
    async with asyncer.create_task_group() as tg:
        a = tg.soonify(fib_asyncer)(n - 1)
        b = tg.soonify(fib_asyncer)(n - 2)
    return a.value + b.value


async def fib_trio(n: int) -> int:
    if n < 2:
        return n
    out = [0, 0]

    async def put(i: int, m: int) -> None:
        out[i] = await fib_trio(m)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put, 0, n - 1)
        nursery.start_soon(put, 1, n - 2)
    return out[0] + out[1]


@unsync
async def fib_unsync(n: int) -> int:
    if n < 2:
        return n
    a = fib_unsync(n - 1)
    b = fib_unsync(n - 2)
    return await a + await b  # type: ignore[operator]


def s3(kind: str, cfg: Config) -> list[Impl]:
    k = cfg.s3_k
    calls = fib_calls(k)

    def timed(fib):  # type: ignore[no-untyped-def]
        async def go() -> float:
            t = perf_counter()
            await fib(k)
            return (perf_counter() - t) / calls

        return go

    async def eager() -> float:
        return await _eagerly(timed(fib_taskgroup))

    eager_na = _eager_forker()[1]

    @unsync
    async def unsync_bench() -> float:
        t = perf_counter()
        await fib_unsync(k)
        return (perf_counter() - t) / calls

    return [
        Impl("asyncio TaskGroup", lambda: run_on(kind, timed(fib_taskgroup)), ref=True),
        Impl("asyncio TaskGroup (eager task factory)", lambda: run_on(kind, eager))
        if HAS_EAGER
        else Impl("asyncio TaskGroup (eager task factory)", na=NO_EAGER),
        Impl("asyncio create_task + await", lambda: run_on(kind, timed(fib_create_task))),
        Impl(
            "asyncfork fork + await (implicit scopes)",
            lambda: run_on(kind, timed(fib_af)),
            target=True,
        ),
        Impl(
            "asyncfork fork.options(eager=True) + await",
            lambda: run_on(kind, timed(fib_af_eager)),
        )
        if HAS_EAGER
        else Impl("asyncfork fork.options(eager=True) + await", na=eager_na),
        Impl("asyncfork group", lambda: run_on(kind, timed(fib_af_group))),
        Impl("anyio task group", lambda: run_on(kind, timed(fib_anyio))),
        Impl("asyncer soonify in task group", lambda: run_on(kind, timed(fib_asyncer))),
        Impl("trio nursery (trio loop)", lambda: trio.run(timed(fib_trio))),
        Impl("unsync f() + await (unsync's loop thread)", lambda: unsync_bench().result()),
    ]
