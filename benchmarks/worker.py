"""Run scenarios on one loop kind, optionally pinned to one CPU; write JSON.

``python -m benchmarks.worker --scenarios s4,s5 --loop uvloop --pin 0 [--quick] --out f.json``

The Dask scenarios run with ``--loop all``: one process (so one cluster) measures
each of them with asyncfork's loops of every kind it lists (``dask_cases.LOOPS``).

The CPU affinity is set first, before any module that might start a thread is
imported, so every thread of the process (loops, workers, peers' pools) inherits it.
Exit status 1 if any row (or a whole scenario) raised; the error is in the JSON and
its traceback on stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import traceback
from dataclasses import replace
from typing import Any


def run_scenario(scenario: str, loop: str, cfg: Any, builder: Any) -> dict[str, Any]:
    from ._common import Impl

    errors: dict[str, str] = {}

    def attempt(impl: Impl, what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # a crash in one row must not hide the others
            tb = traceback.format_exc()
            print(f"[{scenario}/{loop}] {impl.name}: {what} failed\n{tb}", file=sys.stderr)
            errors.setdefault(impl.name, f"{what}: {type(exc).__name__}: {exc}")
            return None

    impls: list[Impl] = builder(loop, cfg)
    repeats = cfg.repeats
    if scenario == "s7":  # traced bytes per pending fork: deterministic, and slow
        for impl in impls:
            impl.samples = 1
    # A warm-up pass (thread pools started, caches filled) in full mode; s7/s8 make fresh
    # objects each sample (nothing to warm). In quick mode the median of 5 absorbs the
    # first, cold, sample.
    warm = not cfg.quick and scenario not in ("s7", "s8")

    live = [i for i in impls if i.measure is not None]
    for impl in live:
        if impl.setup is not None:
            attempt(impl, "setup", impl.setup)
    if warm:
        for impl in live:
            if impl.name not in errors:
                attempt(impl, "warm-up", impl.measure)
    samples: dict[str, list[float]] = {i.name: [] for i in live}
    for r in range(repeats):
        # Interleaved: every row once per repeat, the order rotated so no row always
        # runs first (or right after a heavy one).
        k = r % len(live) if live else 0
        for impl in live[k:] + live[:k]:
            if impl.name in errors or (impl.samples is not None and r >= impl.samples):
                continue
            if scenario != "t1":  # T1's parallel rows paid for the idle CPU during a collect
                gc.collect()
            v = attempt(impl, f"repeat {r}", impl.measure)
            if v is not None:
                samples[impl.name].append(float(v))
    extras: dict[str, dict[str, float]] = {}
    for impl in live:
        if impl.extra is not None and impl.name not in errors:
            gc.collect()
            e = attempt(impl, "extra", impl.extra)
            if e is not None:
                extras[impl.name] = e
    for impl in reversed(live):
        if impl.teardown is not None:
            attempt(impl, "teardown", impl.teardown)

    rows = []
    for impl in impls:
        s = samples.get(impl.name, [])
        rows.append(
            {
                "name": impl.name,
                "na": impl.na,
                "error": errors.get(impl.name, ""),
                "median": statistics.median(s) if s and impl.name not in errors else None,
                "samples": s,
                "ref": impl.ref,
                "target": impl.target,
                "extra": extras.get(impl.name, {}),
            }
        )
    return {"scenario": scenario, "loop": loop, "rows": rows, "errors": len(errors)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scenarios", required=True, help="comma-separated, e.g. s1,s2")
    p.add_argument("--loop", required=True, choices=["asyncio", "uvloop", "all"])
    p.add_argument("--pin", type=int, default=None, help="CPU to pin the whole process to")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})  # before any thread exists

    import asyncio

    import uvloop

    if args.loop == "uvloop":
        # Loops that peers make for themselves (unsync's loop thread, asgiref's and
        # asyncer's new-loop-per-call bridges) come from the policy: make them uvloops.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    from . import async_cases, memory_cases, thread_cases
    from ._common import FULL, QUICK, close_runners

    builders = {
        "s1": async_cases.s1,
        "s2": async_cases.s2,
        "s3": async_cases.s3,
        "s4": thread_cases.s4,
        "s5": thread_cases.s5,
        "s6a": thread_cases.s6a,
        "s6b": thread_cases.s6b,
        "s7": memory_cases.s7,
        "s8": memory_cases.s8,
    }
    scenarios = args.scenarios.split(",")
    if "t1" in scenarios:  # torch: loaded only here (the runner skips it without torch)
        from . import torch_cases

        builders["t1"] = torch_cases.t1
    if args.loop == "all":  # the Dask scenarios: loaded only here (distributed starts threads)
        from . import dask_cases

        builders.update(d1=dask_cases.d1, d2=dask_cases.d2, d3=dask_cases.d3)
        plan = [(sc, kind) for sc in scenarios for kind in dask_cases.LOOPS[sc]]
    else:
        plan = [(sc, args.loop) for sc in scenarios]
    cfg = QUICK if args.quick else FULL
    out: list[dict[str, Any]] = []
    failed = False
    for scenario, loop in plan:
        try:
            # T1 takes more, shorter samples: its rows share the CPUs with each other.
            run_cfg = replace(cfg, repeats=torch_cases.repeats(cfg)) if scenario == "t1" else cfg
            res = run_scenario(scenario, loop, run_cfg, builders[scenario])
        except Exception:
            print(f"[{scenario}/{loop}] crashed\n{traceback.format_exc()}", file=sys.stderr)
            failed = True
            continue
        res["pinned"] = args.pin is not None
        res["cpu"] = args.pin
        res["repeats"] = run_cfg.repeats
        failed = failed or res["errors"] > 0
        out.append(res)
        with open(args.out, "w") as f:  # after each scenario: a later hang loses no results
            json.dump(out, f)
    close_runners()
    if args.loop == "all":
        dask_cases.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
