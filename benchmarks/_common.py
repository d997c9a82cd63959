"""Shared pieces: loop factories, the Impl record, configuration per mode."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import uvloop

LOOP_KINDS = ("asyncio", "uvloop")

# The Dask rows the report checks by name (dask_cases.py measures them).
D1_REF = "dask client.submit xn, then client.gather"
D1_ROW = "asyncfork fork xn in `with use(client)`, then wait(list)"
D2_REF = "dask client.submit(f).result()"
D2_ROW = "asyncfork wait(fork(f)) in `with use(client)`"
D3_REF = "asyncfork fork in threads, then wait(list)"
D3_ROW = "asyncfork fork on the cluster (`with use(client)`), then wait(list)"
HAS_EAGER = sys.version_info >= (3, 12)
NO_EAGER = "needs Python 3.12+ (asyncio.eager_task_factory)"


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-loop factory for the loop kind ("asyncio" or "uvloop")."""
    if kind == "uvloop":
        return uvloop.new_event_loop
    return asyncio.DefaultEventLoopPolicy().new_event_loop


_RUNNERS: dict[str, asyncio.Runner] = {}


def run_on(kind: str, coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """Run ``coro_fn(*args)`` on this process's loop of this kind; return what it returns.

    One loop per kind stays open for the whole worker process, so thread pools that
    belong to a loop (the default executor, anyio's workers) are warmed by the warm-up
    pass and reused, as in a long-running application.
    """
    runner = _RUNNERS.get(kind)
    if runner is None:
        runner = _RUNNERS[kind] = asyncio.Runner(loop_factory=loop_factory(kind))
    return runner.run(coro_fn(*args))


def close_runners() -> None:
    while _RUNNERS:
        _RUNNERS.popitem()[1].close()


@dataclass
class Impl:
    """One row of a scenario: how to measure it, or why it is n/a."""

    name: str
    measure: Callable[[], float] | None = None  # one sample: seconds (or bytes) per op
    na: str = ""  # reason when measure is None
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    extra: Callable[[], dict[str, float]] | None = None  # run once after the samples
    samples: int | None = None  # fewer samples than the run's repeats (one-shot giants)
    ref: bool = False  # the scenario's reference (ratio denominator)
    target: bool = False  # the asyncfork row checked against the performance targets


@dataclass(frozen=True)
class Config:
    quick: bool
    repeats: int
    s1_n: int  # round trips per sample
    s2_groups: int  # groups of 1000 per sample
    s3_k: int  # fib(k)
    s4_n: int  # sync->async round trips per sample
    s5_batches: int  # batches of 1000 per sample
    s6_batches: int
    s6_n: int
    s7_n: int  # pending forks
    s8_sizes: tuple[int, ...]
    big_n: int  # a sample of at least this many forks (s7, s8) is taken big_samples times
    big_samples: int
    s8_min_forks: int  # a time sample of a small group repeats it to at least this many forks
    s8_memory_max: int  # the traced memory pass runs for sizes up to this
    d1_n: int  # Dask: forks per throughput sample
    d2_n: int  # Dask: round trips per sample
    d3_calls: int  # Dask: CPU-bound calls in the fan-out
    d3_seconds: float  # Dask: each call's length (sized on the machine)
    dask_samples: int | None  # Dask: samples per row (None: the run's repeats)


QUICK = Config(
    quick=True,
    repeats=5,
    s1_n=600,
    s2_groups=1,
    s3_k=12,
    s4_n=100,
    s5_batches=1,
    s6_batches=1,
    s6_n=100,
    s7_n=3_000,
    s8_sizes=(1_000, 10_000, 100_000),
    big_n=100_000,
    big_samples=1,
    s8_min_forks=2_000,
    s8_memory_max=10_000,
    d1_n=50,
    d2_n=6,
    d3_calls=4,
    d3_seconds=0.04,
    dask_samples=3,
)
FULL = Config(
    quick=False,
    repeats=5,
    s1_n=5_000,
    s2_groups=10,
    s3_k=18,
    s4_n=2_000,
    s5_batches=5,
    s6_batches=2,
    s6_n=2_000,
    s7_n=100_000,
    s8_sizes=(1_000, 10_000, 100_000, 1_000_000),
    big_n=1_000_000,
    big_samples=3,
    s8_min_forks=20_000,
    s8_memory_max=1_000_000,
    d1_n=1_000,
    d2_n=100,
    d3_calls=8,
    d3_seconds=0.1,
    dask_samples=None,
)
