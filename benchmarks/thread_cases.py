"""Scenarios 4-6: crossing between threads and a loop.

4. from a plain thread: fork + wait one coroutine, repeated (sync->async latency);
5. from a plain thread: fork 1000 coroutines, then wait for all (sync->async throughput);
6. from async code: 1000 sync callables forked at once, then awaited (6a), and one at a
   time (6b).

The plain thread is the worker process's main thread; the loops run in their own
threads, started in ``setup`` (outside the timing) and stopped in ``teardown``.
Peers whose sync->async bridge makes a new event loop per call (asyncer ``syncify``
from a plain thread, asgiref ``async_to_sync``) are labelled so.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import asyncer
import trio
import trio.from_thread
import trio.to_thread
from asgiref.sync import async_to_sync, sync_to_async
from unsync import unsync

import asyncfork as af

from ._common import Config, Impl, loop_factory, run_on

BATCH = 1000


async def noop() -> int:
    return 1


@unsync
async def u_noop() -> int:
    return 1


def work() -> int:
    return 1


@unsync
def u_work() -> int:
    return 1


class LoopThread:
    """An event loop of the given kind running forever in a thread."""

    def __init__(self, kind: str) -> None:
        self.loop = loop_factory(kind)()
        self.thread = threading.Thread(target=self._serve, name=f"bench-{kind}", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(noop(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class TrioThread:
    """trio.run in a thread, kept open until ``stop``."""

    def __init__(self) -> None:
        self.token: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self._done = trio.Event()
        self._ready.set()
        await self._done.wait()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        trio.from_thread.run_sync(self._done.set, trio_token=self.token)
        self._thread.join(10)


class Portal:
    """An anyio BlockingPortal on the asyncio backend with this loop kind."""

    def __init__(self, kind: str) -> None:
        self._cm = anyio.from_thread.start_blocking_portal(
            "asyncio", backend_options={"loop_factory": loop_factory(kind)}
        )
        self.portal: Any = None

    def start(self) -> None:
        self.portal = self._cm.__enter__()

    def stop(self) -> None:
        self._cm.__exit__(None, None, None)


def _af_setup(kind: str) -> Callable[[], None]:
    def setup() -> None:
        af.shutdown()
        af.configure(loop=kind)  # type: ignore[arg-type]
        af.wait(af.fork(noop))
        af.wait([af.fork(work) for _ in range(16)])

    return setup


def _per_op(n: int, one: Callable[[], object]) -> float:
    for _ in range(min(20, n)):
        one()
    t = perf_counter()
    for _ in range(n):
        one()
    return (perf_counter() - t) / n


# ------------------------------------------------------------------ 4. sync->async latency


def s4(kind: str, cfg: Config) -> list[Impl]:
    n = cfg.s4_n
    slow_n = max(20, n // 10)  # the new-loop-per-call bridges are ~100x slower
    lt = LoopThread(kind)
    tt = TrioThread()
    portal = Portal(kind)
    rcts = asyncio.run_coroutine_threadsafe
    fork, wait = af.fork, af.wait
    soon = asyncer.syncify(noop, raise_sync_error=False)
    a2s = async_to_sync(noop)

    return [
        Impl(
            "asyncio run_coroutine_threadsafe(...).result()",
            lambda: _per_op(n, lambda: rcts(noop(), lt.loop).result()),
            setup=lt.start,
            teardown=lt.stop,
            ref=True,
        ),
        Impl(
            "asyncfork wait(fork(f))",
            lambda: _per_op(n, lambda: wait(fork(noop))),
            setup=_af_setup(kind),
            teardown=af.shutdown,
            target=True,
        ),
        Impl(
            "anyio BlockingPortal.call",
            lambda: _per_op(n, lambda: portal.portal.call(noop)),
            setup=portal.start,
            teardown=portal.stop,
        ),
        Impl(
            "trio.from_thread.run (trio loop)",
            lambda: _per_op(n, lambda: trio.from_thread.run(noop, trio_token=tt.token)),
            setup=tt.start,
            teardown=tt.stop,
        ),
        Impl(
            "unsync f().result() (unsync's loop thread)",
            lambda: _per_op(n, lambda: u_noop().result()),
        ),
        Impl("asyncer syncify (new loop per call)", lambda: _per_op(slow_n, soon)),
        Impl("asgiref async_to_sync (new loop per call)", lambda: _per_op(slow_n, a2s)),
    ]


# ------------------------------------------------------------------ 5. sync->async throughput


def s5(kind: str, cfg: Config) -> list[Impl]:
    b = cfg.s5_batches
    per = b * BATCH
    lt = LoopThread(kind)
    portal = Portal(kind)
    rcts = asyncio.run_coroutine_threadsafe

    def ref() -> float:
        loop = lt.loop
        t = perf_counter()
        for _ in range(b):
            futs = [rcts(noop(), loop) for _ in range(BATCH)]
            for f in futs:
                f.result()
        return (perf_counter() - t) / per

    def af_wait() -> float:
        fork = af.fork
        t = perf_counter()
        for _ in range(b):
            af.wait([fork(noop) for _ in range(BATCH)])
        return (perf_counter() - t) / per

    def af_group() -> float:
        t = perf_counter()
        for _ in range(b):
            with af.group() as g:
                fork = g.fork
                for _ in range(BATCH):
                    fork(noop)
        return (perf_counter() - t) / per

    def anyio_portal() -> float:
        soon = portal.portal.start_task_soon
        t = perf_counter()
        for _ in range(b):
            futs = [soon(noop) for _ in range(BATCH)]
            for f in futs:
                f.result()
        return (perf_counter() - t) / per

    def unsync_() -> float:
        t = perf_counter()
        for _ in range(b):
            futs = [u_noop() for _ in range(BATCH)]
            for f in futs:
                f.result()
        return (perf_counter() - t) / per

    return [
        Impl(
            "asyncio run_coroutine_threadsafe x1000, then .result() each",
            ref,
            setup=lt.start,
            teardown=lt.stop,
            ref=True,
        ),
        Impl(
            "asyncfork fork x1000, then wait(list)",
            af_wait,
            setup=_af_setup(kind),
            teardown=af.shutdown,
            target=True,
        ),
        Impl("asyncfork sync `with group()`: g.fork x1000", af_group),
        Impl(
            "anyio BlockingPortal.start_task_soon x1000",
            anyio_portal,
            setup=portal.start,
            teardown=portal.stop,
        ),
        Impl("trio", na="trio.from_thread.run blocks per call; no future-returning submit"),
        Impl("unsync f() x1000, then .result() each (unsync's loop thread)", unsync_),
        Impl("asyncer", na="syncify blocks per call (a new loop each call)"),
        Impl("asgiref", na="async_to_sync blocks per call"),
    ]


# ------------------------------------------------------------------ 6. sync callables from async


def _s6_impls(kind: str, reps: int, batch: bool) -> list[Impl]:
    """Rows for 6a (``batch``: 1000 at once, per call) or 6b (one at a time)."""
    size = BATCH if batch else 1
    per = reps * size

    def timed(one_batch: Callable[[], Any]) -> Callable[[], float]:
        async def go() -> float:
            t = perf_counter()
            for _ in range(reps):
                await one_batch()
            return (perf_counter() - t) / per

        return lambda: run_on(kind, go)

    def gather_of(make: Callable[[], Any]) -> Callable[[], Any]:
        if batch:
            return lambda: asyncio.gather(*[make() for _ in range(BATCH)])
        return make

    def in_executor() -> Any:
        return asyncio.get_running_loop().run_in_executor(None, work)

    async def af_batch() -> None:
        fork = af.fork
        await af.wait([fork(work) for _ in range(BATCH)])  # type: ignore[misc]

    async def af_one() -> None:
        await af.fork(work)

    async def anyio_batch() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(size):
                tg.start_soon(anyio.to_thread.run_sync, work)

    async def anyio_one() -> None:
        await anyio.to_thread.run_sync(work)

    async def asyncer_batch() -> None:
        f = asyncer.asyncify(work)
        async with asyncer.create_task_group() as tg:
            vals = [tg.soonify(f)() for _ in range(size)]
        [v.value for v in vals]

    async def asyncer_one() -> None:
        await asyncer.asyncify(work)()

    async def trio_go() -> float:
        async def one() -> None:
            await trio.to_thread.run_sync(work)

        async def one_batch() -> None:
            if not batch:
                await one()
                return
            async with trio.open_nursery() as nursery:
                for _ in range(BATCH):
                    nursery.start_soon(trio.to_thread.run_sync, work)

        t = perf_counter()
        for _ in range(reps):
            await one_batch()
        return (perf_counter() - t) / per

    @unsync
    async def unsync_go() -> float:
        async def one_batch() -> None:
            futs = [u_work() for _ in range(size)]
            for f in futs:
                await f

        t = perf_counter()
        for _ in range(reps):
            await one_batch()
        return (perf_counter() - t) / per

    s2a = sync_to_async(work)
    s2a_free = sync_to_async(work, thread_sensitive=False)
    what = "x1000, then await all" if batch else "one at a time"
    return [
        Impl(
            f"asyncio loop.run_in_executor(None, f) {what}", timed(gather_of(in_executor)), ref=True
        ),
        Impl(f"asyncio.to_thread {what}", timed(gather_of(lambda: asyncio.to_thread(work)))),
        Impl(
            f"asyncfork fork(sync_f) {what}",
            timed(af_batch if batch else af_one),
            setup=lambda: af.configure(loop=kind),  # type: ignore[arg-type]
            target=True,
        ),
        Impl(f"anyio to_thread.run_sync {what}", timed(anyio_batch if batch else anyio_one)),
        Impl(f"asyncer asyncify {what}", timed(asyncer_batch if batch else asyncer_one)),
        Impl(f"trio to_thread.run_sync {what} (trio loop)", lambda: trio.run(trio_go)),
        Impl(f"unsync sync f() {what} (unsync's loop thread)", lambda: unsync_go().result()),
        Impl(f"asgiref sync_to_async {what} (thread_sensitive=True)", timed(gather_of(s2a))),
        Impl(f"asgiref sync_to_async {what} (thread_sensitive=False)", timed(gather_of(s2a_free))),
    ]


def s6a(kind: str, cfg: Config) -> list[Impl]:
    return _s6_impls(kind, cfg.s6_batches, batch=True)


def s6b(kind: str, cfg: Config) -> list[Impl]:
    return _s6_impls(kind, cfg.s6_n, batch=False)
