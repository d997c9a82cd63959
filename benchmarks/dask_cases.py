"""Dask scenarios: forks on a cluster, beside raw ``client.submit`` and ``client.gather``.

d1. 1000 no-op forks, then wait for all (throughput), per fork;
d2. fork + wait one no-op, repeated (round trip), per round trip;
d3. a CPU-bound pure-Python fan-out: sequentially, in threads, on the cluster (speed-up).

One LocalCluster (processes, 2 workers of 1 thread, 127.0.0.1, from
``asyncfork.dask.local_cluster``) serves every Dask scenario of a benchmark run: the
runner puts them in one worker process, which measures d1 and d2 with asyncfork's
loops of each kind and d3 once. The cluster starts outside the timings. Every raw
submission is impure (``pure=False``), as asyncfork's are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from time import perf_counter
from typing import Any

import asyncfork as af

from ._common import D1_REF, D1_ROW, D2_REF, D2_ROW, D3_REF, D3_ROW, LOOP_KINDS, Config, Impl

WORKERS = 2
# The loop kinds each scenario is measured with (d3's work is in the workers and threads,
# not on a loop: once is enough).
LOOPS: dict[str, tuple[str, ...]] = {"d1": LOOP_KINDS, "d2": LOOP_KINDS, "d3": ("uvloop",)}

_stack: contextlib.ExitStack | None = None
_client: Any = None


def client() -> Any:
    """The run's cluster client, started on first use."""
    global _stack, _client
    if _client is None:
        from asyncfork.dask import local_cluster

        _stack = contextlib.ExitStack()
        _client = _stack.enter_context(local_cluster(n_workers=WORKERS, threads_per_worker=1))
    return _client


def close() -> None:
    """Stop the cluster (the worker process calls this once, at its end)."""
    global _stack, _client
    if _stack is not None:
        stack, _stack, _client = _stack, None, None
        stack.close()


def noop() -> int:
    return 1


def one(_: int) -> int:
    return 1


def burn(n: int) -> int:
    """CPU-bound pure Python: it holds the GIL throughout."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def size_burn(seconds: float) -> int:
    """The ``burn`` argument that takes about ``seconds`` in this process (the fastest of
    three tries: other processes' load makes a run slower, never faster)."""
    n = 10_000
    while True:
        took = min(_timed_burn(n) for _ in range(3))
        if took >= 0.01:
            return max(1, int(n * seconds / took))
        n *= 4


def _timed_burn(n: int) -> float:
    t = perf_counter()
    burn(n)
    return perf_counter() - t


def _af_setup(kind: str) -> Callable[[], None]:
    def setup() -> None:
        af.shutdown()
        af.configure(loop=kind)  # type: ignore[arg-type]
        af.wait(af.fork(noop))

    return setup


def _samples(cfg: Config, impls: list[Impl]) -> list[Impl]:
    for impl in impls:
        impl.samples = cfg.dask_samples
    return impls


# ------------------------------------------------------------------ d1. throughput


def d1(kind: str, cfg: Config) -> list[Impl]:
    from asyncfork.dask import use

    c = client()
    n = cfg.d1_n

    def raw_submit() -> float:
        t = perf_counter()
        futs = [c.submit(noop, pure=False) for _ in range(n)]
        c.gather(futs)
        return (perf_counter() - t) / n

    def raw_map() -> float:
        t = perf_counter()
        c.gather(c.map(one, range(n), pure=False))
        return (perf_counter() - t) / n

    def af_use() -> float:
        fork = af.fork
        t = perf_counter()
        with use(c):
            af.wait([fork(noop) for _ in range(n)])
        return (perf_counter() - t) / n

    def af_options() -> float:
        fork = af.fork.options(executor=c)
        t = perf_counter()
        af.wait([fork(noop) for _ in range(n)])
        return (perf_counter() - t) / n

    return _samples(
        cfg,
        [
            Impl(D1_REF, raw_submit, ref=True),
            Impl("dask client.map(f, range(n)), then client.gather", raw_map),
            Impl(D1_ROW, af_use, setup=_af_setup(kind), teardown=af.shutdown, target=True),
            Impl("asyncfork fork.options(executor=client) xn, then wait(list)", af_options),
        ],
    )


# ------------------------------------------------------------------ d2. round trip


def d2(kind: str, cfg: Config) -> list[Impl]:
    from asyncfork.dask import use

    c = client()
    n = cfg.d2_n

    def raw() -> float:
        t = perf_counter()
        for _ in range(n):
            c.submit(noop, pure=False).result()
        return (perf_counter() - t) / n

    def af_use() -> float:
        fork, wait = af.fork, af.wait
        t = perf_counter()
        with use(c):
            for _ in range(n):
                wait(fork(noop))
        return (perf_counter() - t) / n

    def af_options() -> float:
        fork, wait = af.fork.options(executor=c), af.wait
        t = perf_counter()
        for _ in range(n):
            wait(fork(noop))
        return (perf_counter() - t) / n

    return _samples(
        cfg,
        [
            Impl(D2_REF, raw, ref=True),
            Impl(D2_ROW, af_use, setup=_af_setup(kind), teardown=af.shutdown, target=True),
            Impl("asyncfork wait(fork.options(executor=client)(f))", af_options),
        ],
    )


# ------------------------------------------------------------------ d3. CPU-bound speed-up


def d3(kind: str, cfg: Config) -> list[Impl]:
    from asyncfork.dask import use

    c = client()
    calls = cfg.d3_calls
    size = size_burn(cfg.d3_seconds)

    def timed(run: Callable[[], object]) -> Callable[[], float]:
        def measure() -> float:
            t = perf_counter()
            run()
            return perf_counter() - t

        return measure

    def on_cluster() -> None:
        with use(c):
            af.wait([af.fork(burn, size) for _ in range(calls)])

    return _samples(
        cfg,
        [
            Impl(
                D3_REF,
                timed(lambda: af.wait([af.fork(burn, size) for _ in range(calls)])),
                setup=_af_setup(kind),
                teardown=af.shutdown,
                ref=True,
            ),
            Impl(
                "sequential, one call after another",
                timed(lambda: [burn(size) for _ in range(calls)]),
            ),
            Impl(D3_ROW, timed(on_cluster), target=True),
            Impl(
                "dask client.submit xn, then client.gather",
                timed(lambda: c.gather([c.submit(burn, size, pure=False) for _ in range(calls)])),
            ),
        ],
    )
