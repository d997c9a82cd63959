"""``python -m benchmarks [--quick]``: run every scenario, print and save the tables.

Each (scenario, loop kind, pinned?) runs in its own subprocess (``benchmarks.worker``),
one after the other, so scenarios do not share state and a crash or hang in one is
reported without losing the others. The Dask scenarios share one subprocess, so that
one cluster serves them all; it is never pinned (its workers are other processes).
Exit status: 0 when every row ran, 1 when any scenario crashed or a row raised, 2
when a peer package is missing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report

PEERS = ("uvloop", "anyio", "trio", "unsync", "asyncer", "asgiref", "matplotlib", "distributed")
ASYNC_SCENARIOS = ("s1", "s2", "s3")
THREAD_SCENARIOS = ("s4", "s5", "s6a", "s6b")
MEMORY_SCENARIOS = ("s7", "s8")
DASK_SCENARIOS = ("d1", "d2", "d3")
TORCH_SCENARIOS = ("t1",)  # run only where torch is installed (it is no peer of asyncfork's)
ALL = ASYNC_SCENARIOS + THREAD_SCENARIOS + MEMORY_SCENARIOS + DASK_SCENARIOS + TORCH_SCENARIOS
LOOPS = ("asyncio", "uvloop")


def check_peers() -> list[str]:
    return [name for name in PEERS if importlib.util.find_spec(name) is None]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    from importlib.metadata import version

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {p: version(p) for p in (*PEERS, "asyncfork")},
        "git": _git_state(),
    }


def _git_state() -> str:
    """The commit measured, with "+dirty" if asyncfork/ has uncommitted changes."""
    root = Path(__file__).parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "asyncfork"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def jobs(
    scenarios: tuple[str, ...], pin_cpu: int, quick: bool
) -> list[tuple[tuple[str, ...], str, int | None]]:
    """(scenarios, loop, pinned CPU) per worker process.

    Full mode: one process per scenario, for isolation. Quick mode: one process per
    loop kind and pinning, to keep interpreter start-ups out of the minute. The Dask
    scenarios: one process for all of them, unpinned, measuring every loop kind
    (loop "all"), so that they share one cluster. The torch scenario: one process of its
    own, unpinned (its parallel rows need the CPUs), after the others.
    """
    out: list[tuple[tuple[str, ...], str, int | None]] = []
    local = tuple(s for s in scenarios if s not in DASK_SCENARIOS + TORCH_SCENARIOS)
    for loop in LOOPS:
        for pin in (pin_cpu, None):
            group = tuple(s for s in local if pin is None or s in THREAD_SCENARIOS)
            if not group:
                continue
            if quick:
                out.append((group, loop, pin))
            else:
                out += [((s,), loop, pin) for s in group]
    if not quick:  # scenario by scenario, the loop kinds and pinnings next to each other
        out.sort(key=lambda j: ALL.index(j[0][0]))
    dask = tuple(s for s in scenarios if s in DASK_SCENARIOS)
    if dask:
        out.append((dask, "all", None))
    out += [((s,), "uvloop", None) for s in scenarios if s in TORCH_SCENARIOS]
    return out


def without_torch(scenarios: tuple[str, ...]) -> tuple[str, ...]:
    """The scenarios to run: the torch ones only where torch is installed."""
    if importlib.util.find_spec("torch") is not None:
        return scenarios
    skipped = [s for s in scenarios if s in TORCH_SCENARIOS]
    if skipped:
        print(f"skipping {', '.join(skipped)}: torch is not installed", file=sys.stderr)
    return tuple(s for s in scenarios if s not in TORCH_SCENARIOS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, under a minute (CI smoke)")
    p.add_argument(
        "--only", default="", help="comma-separated scenarios, e.g. s1,s4 (default: all)"
    )
    p.add_argument(
        "--out", default=str(Path(__file__).parent / "results"), help="directory for md/json/png"
    )
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)

    missing = check_peers()
    if missing:
        print(
            f"ERROR: benchmark peers not installed: {', '.join(missing)}\n"
            "Install them with: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    scenarios = tuple(s for s in args.only.split(",") if s) or ALL
    unknown = set(scenarios) - set(ALL)
    if unknown:
        p.error(f"unknown scenarios: {sorted(unknown)}; choose from {', '.join(ALL)}")
    scenarios = without_torch(scenarios)

    info = machine()  # before the run: the git state measured
    pin_cpu = min(os.sched_getaffinity(0))
    timeout = 300 if args.quick else 1200
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (group, loop, pin) in enumerate(jobs(scenarios, pin_cpu, args.quick)):
            loops = "every loop, one cluster" if loop == "all" else loop
            label = f"{','.join(group)} {loops} {'pinned' if pin is not None else 'unpinned'}"
            out_file = Path(tmp) / f"{i}.json"
            cmd = [sys.executable, "-m", "benchmarks.worker", "--scenarios", ",".join(group)]
            cmd += ["--loop", loop, "--out", str(out_file)]
            if pin is not None:
                cmd += ["--pin", str(pin)]
            if args.quick:
                cmd.append("--quick")
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=Path(__file__).parent.parent,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                rc: int | str = proc.returncode
                stderr = proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc = f"timeout after {timeout}s"
                stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            took = time.perf_counter() - t0
            print(
                f"[{time.perf_counter() - t_start:6.1f}s] {label:44s} {took:5.1f}s rc={rc}",
                flush=True,
            )
            if rc != 0:
                failures.append(f"{label}: exit {rc}")
                print(stderr[-4000:], file=sys.stderr)
            got = json.loads(out_file.read_text()) if out_file.exists() else []
            results += got
            done = {r["scenario"] for r in got}
            lost = [sc for sc in group if sc not in done]
            if lost:
                failures.append(f"{label}: no results for {', '.join(lost)}")

    elapsed = time.perf_counter() - t_start
    data = {
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "elapsed_s": elapsed,
        "results": results,
        "failures": failures,
    }
    md = report.markdown(data)
    (out_dir / "latest.json").write_text(json.dumps(data, indent=1))
    (out_dir / "latest.md").write_text(md)
    print()
    print(md)
    if not args.no_plots:
        from . import plots

        for path in plots.make(data, out_dir):
            print(f"wrote {path}")
    print(f"wrote {out_dir / 'latest.md'} and {out_dir / 'latest.json'}")
    print(f"total {time.perf_counter() - t_start:.1f}s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0
