"""The demo: the three uses of asyncfork on an embedded workload, timed honestly.

Every simulated call measures how long it took; the "sequential" figure is the
sum of those durations (what running the calls one after another would take),
set against the wall time the forked version needed. The blocking calls also
count how many of them ran at once: with the default worker limit (40) all 24
run in one wave. A fourth part traces the crawl and shows its work/span profile;
its trace files go to the folder the user names (``demo -o DIR``), else to a
temporary folder that is removed before the demo ends.
A fifth runs a CPU-bound pure-Python fan-out sequentially, in threads and on an
embedded Dask cluster (when ``distributed`` is installed), and prints the speed-ups
measured.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any

import asyncfork as af
from asyncfork._threads import DEFAULT_LIMIT

IO_CALLS = 50
IO_SECONDS = 0.1
BLOCKING_CALLS = 24
BLOCKING_SECONDS = 0.2
TREE_DEPTH = 3
TREE_FANOUT = 3
TREE_SECONDS = 0.05
CPU_CALLS = 8
CPU_SECONDS = 0.1  # each CPU-bound call's length, sized on this machine


class Stopwatch:
    """Adds up how long the simulated calls took (from worker threads too).

    It also counts the most calls that ran at once (``peak``).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def start(self) -> float:
        """A call begins: the time it began, for ``add``."""
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        return time.perf_counter()

    def add(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._lock:
            self.total += elapsed
            self.calls += 1
            self.running -= 1

    def waves(self) -> int:
        """How many rounds the calls took, at the most that ran at once."""
        return math.ceil(self.calls / max(1, self.peak))


async def fetch(url: str, watch: Stopwatch) -> str:
    """A simulated I/O call: 100 ms of waiting on the network."""
    started = watch.start()
    await asyncio.sleep(IO_SECONDS)
    watch.add(started)
    return f"<body of {url}>"


async def async_app(watch: Stopwatch) -> int:
    """Use 1: an async app forks its I/O calls and awaits them."""
    futures = [af.fork(fetch, f"https://example.invalid/{i}", watch) for i in range(IO_CALLS)]
    bodies = [await fut for fut in futures]
    return len(bodies)


def read_sensor(n: int, watch: Stopwatch) -> int:
    """A blocking sync call (a driver, a legacy client): 200 ms in a worker thread."""
    started = watch.start()
    time.sleep(BLOCKING_SECONDS)
    watch.add(started)
    return n * n


def sync_script(watch: Stopwatch) -> int:
    """Use 2: plain sync code fans calls out to threads and waits for all of them."""
    futures = [af.fork(read_sensor, n, watch) for n in range(BLOCKING_CALLS)]
    return sum(af.wait(futures))


async def crawl(page: str, depth: int, watch: Stopwatch) -> int:
    """Use 3: each page forks its links; a page finishes after its whole subtree."""
    started = watch.start()
    await asyncio.sleep(TREE_SECONDS)
    watch.add(started)
    if depth == 0:
        return 1
    children = [af.fork(crawl, f"{page}/{i}", depth - 1, watch) for i in range(TREE_FANOUT)]
    return 1 + sum(await asyncio.gather(*children))


def _report(title: str, run: Callable[[Stopwatch], Any], what: str) -> None:
    watch = Stopwatch()
    started = time.perf_counter()
    result = run(watch)
    wall = time.perf_counter() - started
    print(f"{title}")
    waves = watch.waves()
    print(
        "  "
        + what.format(
            result=result,
            calls=watch.calls,
            peak=watch.peak,
            waves=f"{waves} wave" + ("s" if waves != 1 else ""),
        )
    )
    print(
        f"  wall time {wall:6.3f} s   sequential {watch.total:6.3f} s   "
        f"speed-up {watch.total / wall:5.1f}x"
    )


def main(trace_dir: str | None = None) -> None:
    """Run the five parts; part 4 writes its trace files into ``trace_dir`` when given."""
    print("asyncfork demo — every figure below is measured in this run\n")
    _report(
        "1. async app: fork 50 simulated 100 ms I/O calls, then await them",
        lambda watch: af.run(async_app, watch),
        "{result} responses",
    )
    _report(
        f"2. sync script: fork {BLOCKING_CALLS} blocking 200 ms calls to worker threads, af.wait",
        lambda watch: sync_script(watch),
        "sum of squares = {result}; {peak} of {calls} calls ran at once: {waves} "
        f"(the default worker limit is {DEFAULT_LIMIT})",
    )
    _report(
        f"3. nested forks: crawl a {TREE_FANOUT}-ary tree of depth {TREE_DEPTH}, 50 ms a page",
        lambda watch: af.run(crawl, "/", TREE_DEPTH, watch),
        "{result} pages crawled, {calls} fetches",
    )
    _trace_crawl(trace_dir)
    _scale_out()
    af.shutdown()


def _trace_crawl(trace_dir: str | None) -> None:
    """Part 4: the crawl again, under ``af.trace()``: its profile, and its timeline as HTML.

    The files go to ``trace_dir`` (made if missing); without one, to a temporary folder
    that is removed here, after saying how to keep them.
    """
    watch = Stopwatch()
    with af.trace() as t:
        af.run(crawl, "/", TREE_DEPTH, watch)
    s = t.summary(show=False)
    print("4. tracing: the crawl of part 3 again, under af.trace()")
    print(
        f"  {s.forks} forks in {s.wall:.3f} s: work {s.work * 1000:.1f} ms, "
        f"span {s.span * 1000:.1f} ms, parallelism {s.parallelism:.1f}x, "
        f"concurrency {s.concurrency:.1f}x"
    )
    print("  (the crawl mostly waits: little work, many forks alive at once)")
    if trace_dir is None:
        with tempfile.TemporaryDirectory(prefix="asyncfork-demo-") as directory:
            written = _write_trace(t, directory)
        if written:
            print(
                "  its timeline (trace.html) and Chrome trace (trace.json) were written to a "
                "temporary\n  folder, now removed: `python -m asyncfork demo -o DIR` keeps them"
            )
        return
    os.makedirs(trace_dir, exist_ok=True)
    if _write_trace(t, trace_dir):
        html = os.path.join(trace_dir, "trace.html")
        print(f"  open {html} in a browser (trace.json beside it loads in ui.perfetto.dev)")


def _write_trace(t: af.Trace, directory: str) -> bool:
    """Write trace.html and trace.json into ``directory``; False (said) if either failed."""
    written = t.to_html(os.path.join(directory, "trace.html"))
    written = t.to_chrome_trace(os.path.join(directory, "trace.json")) and written
    if not written:
        print("  (the trace files could not be written)")
    return written


def burn(n: int) -> int:
    """CPU-bound pure Python: it holds the GIL the whole time, so threads cannot overlap it."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _size_burn(seconds: float) -> int:
    """The ``burn`` argument that takes about ``seconds`` here (the fastest of three tries:
    a busy machine makes a run slower, never faster)."""
    n = 10_000
    while True:
        took = min(_timed(functools.partial(burn, n)) for _ in range(3))
        if took >= 0.01:
            return max(1, int(n * seconds / took))
        n *= 4


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _scale_out() -> None:
    """Part 5: a CPU-bound fan-out sequentially, in threads and on an embedded Dask cluster."""
    n = _size_burn(CPU_SECONDS)
    print(
        f"5. scale-out: {CPU_CALLS} CPU-bound pure-Python calls (sized to about "
        f"{CPU_SECONDS * 1000:.0f} ms each here), three ways"
    )
    sequential = _timed(lambda: [burn(n) for _ in range(CPU_CALLS)])
    threads = _timed(lambda: af.wait([af.fork(burn, n) for _ in range(CPU_CALLS)]))
    per_call = sequential / CPU_CALLS * 1000
    print(f"  sequentially         {sequential:6.3f} s   ({per_call:.0f} ms a call)")
    print(f"  threads (af.fork)    {threads:6.3f} s   speed-up {sequential / threads:4.2f}x")
    if find_spec("distributed") is None:
        print("  Dask cluster: skipped, it needs Dask: pip install 'asyncfork[dask]'")
        print("  (threads share one GIL: pure-Python code runs in one of them at a time)")
        return
    from asyncfork.dask import local_cluster, use

    workers = min(os.cpu_count() or 1, CPU_CALLS)  # one worker process per CPU
    started = time.perf_counter()
    with local_cluster(n_workers=workers) as client:
        up = time.perf_counter() - started
        with use(client):
            af.wait([af.fork(burn, 1) for _ in range(workers)])  # the workers import the demo
            cluster = _timed(lambda: af.wait([af.fork(burn, n) for _ in range(CPU_CALLS)]))
    print(f"  Dask LocalCluster    {cluster:6.3f} s   speed-up {sequential / cluster:4.2f}x")
    print(
        "  (threads share one GIL: pure-Python code runs in one of them at a time; each of the\n"
        f"  cluster's {workers} worker processes has its own, on {os.cpu_count()} CPUs. "
        f"The cluster started in {up:.2f} s, not counted.)"
    )
