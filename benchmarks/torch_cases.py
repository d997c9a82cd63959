"""Scenario T1: forking independent parts of a model, with 1 intra-op thread (torch only).

Three workloads (a 4-MLP ensemble, 4 conv towers, 8 matmuls), each run five ways:
sequentially, through a scripted ``torch.jit.fork`` (TorchScript forks each part),
through ``af.fork`` of the scripted parts (asyncfork's TorchScript path, torch's inter-op
pool), through ``af.fork`` of the eager parts (asyncfork's worker threads), and through a
``ThreadPoolExecutor`` of one thread per part. All fifteen rows are measured in one process,
their samples interleaved (the order rotated each repeat); a row's speed-up is the median,
over the repeats, of its workload's sequential sample over its own.

The runner starts this scenario only where torch is installed, in its own unpinned
process (the parallel rows need the machine's CPUs), and without the worker's
``gc.collect()`` before each sample: the second CPU idled through the collection (a
tenth of a second with torch loaded), and the parallel rows' next passes, the scripted
ones most, came out up to 30 % slower than in a run without it. ``torch.set_num_threads(1)`` runs
first, before any inter-op thread exists, so every thread computes with one intra-op
thread. No parameter requires grad: grad mode changes nothing in any row.
"""

# ruff: noqa: RUF001  (the multiplication sign in the tables is on purpose)

# No `from __future__ import annotations`: TorchScript reads the annotations of the
# scripted code below as objects (torch.Tensor), and torch is imported only in t1.

import os
import statistics
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import asyncfork as af

from ._common import Config, Impl

# How each workload's parts are run (the row names end with these).
MODES = (
    "sequential",
    "scripted torch.jit.fork",
    "asyncfork, TorchScript path",
    "asyncfork, eager",
    "ThreadPoolExecutor",
)
SEQUENTIAL = MODES[0]
WARM_UP = 2  # passes of each row before its samples


@dataclass(frozen=True)
class Sizes:
    repeats: int  # interleaved samples per row
    passes: int  # passes of the workload per sample
    mlp: tuple[int, int, int]  # batch, input width, hidden width
    conv: tuple[int, int, int]  # batch, channels, image side
    matmul: int  # side of the square matrices


QUICK_SIZES = Sizes(repeats=3, passes=1, mlp=(16, 256, 512), conv=(2, 16, 24), matmul=192)
FULL_SIZES = Sizes(repeats=31, passes=3, mlp=(32, 512, 1024), conv=(4, 32, 32), matmul=384)


def row_name(workload: str, mode: str) -> str:
    return f"{workload}: {mode}"


def _script(obj: Any) -> Any:
    import torch

    with warnings.catch_warnings():  # torch 2.5+ deprecates TorchScript, and says so
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(obj)


def _frozen(module: Any) -> Any:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


@dataclass
class Workload:
    """One workload: its parts as eager and scripted callables with their arguments."""

    name: str
    eager: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    scripted: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    scripted_fork: Callable[[], Any]  # TorchScript forking every part, then waiting


def _ensemble(torch: Any, parts: list[Any], x: Any) -> Callable[[], Any]:
    """A scripted module that forks each part with torch.jit.fork, then waits for all."""

    class Ensemble(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, parts: list[Any]) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList(parts)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            futures = [torch.jit.fork(part, x) for part in self.parts]
            return [torch.jit.wait(future) for future in futures]

    ensemble = _script(Ensemble(parts))
    return lambda: ensemble(x)


def _mlps(torch: Any, sizes: Sizes) -> Workload:
    batch, width, hidden = sizes.mlp
    nn = torch.nn
    parts = [
        _frozen(
            nn.Sequential(
                nn.Linear(width, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 10),
            )
        )
        for _ in range(4)
    ]
    x = torch.randn(batch, width)
    scripted = [_script(part) for part in parts]
    return Workload(
        "4-MLP ensemble",
        [(part, (x,)) for part in parts],
        [(part, (x,)) for part in scripted],
        _ensemble(torch, parts, x),
    )


def _convs(torch: Any, sizes: Sizes) -> Workload:
    batch, channels, side = sizes.conv
    nn = torch.nn
    parts = [
        _frozen(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
        )
        for _ in range(4)
    ]
    x = torch.randn(batch, channels, side, side)
    scripted = [_script(part) for part in parts]
    return Workload(
        "4 conv towers",
        [(part, (x,)) for part in parts],
        [(part, (x,)) for part in scripted],
        _ensemble(torch, parts, x),
    )


def _matmuls(torch: Any, sizes: Sizes) -> Workload:
    side = sizes.matmul
    xs = [torch.randn(side, side) for _ in range(8)]
    ws = [torch.randn(side, side) for _ in range(8)]

    def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    mm = _script(matmul)

    class Matmuls(torch.nn.Module):  # type: ignore[misc]
        def forward(self, xs: list[torch.Tensor], ws: list[torch.Tensor]) -> list[torch.Tensor]:
            futures = [torch.jit.fork(mm, xs[i], ws[i]) for i in range(len(xs))]
            return [torch.jit.wait(future) for future in futures]

    forked = _script(Matmuls())
    return Workload(
        "8 matmuls",
        [(matmul, (x, w)) for x, w in zip(xs, ws, strict=True)],
        [(mm, (x, w)) for x, w in zip(xs, ws, strict=True)],
        lambda: forked(xs, ws),
    )


def _timed(passes: int, run: Callable[[], object]) -> Callable[[], float]:
    def measure() -> float:
        started = perf_counter()
        for _ in range(passes):
            run()
        return (perf_counter() - started) / passes

    return measure


def t1(kind: str, cfg: Config) -> list[Impl]:
    """The fifteen rows; ``kind`` is unused (the forks' loop is the background loop)."""
    import torch

    sizes = QUICK_SIZES if cfg.quick else FULL_SIZES
    torch.set_num_threads(1)  # before any inter-op thread starts: they all take 1
    torch.manual_seed(0)
    workloads = [_mlps(torch, sizes), _convs(torch, sizes), _matmuls(torch, sizes)]
    pool = ThreadPoolExecutor(max_workers=max(len(w.eager) for w in workloads))
    fork, wait = af.fork, af.wait

    def rows(w: Workload) -> list[Impl]:
        eager, scripted = w.eager, w.scripted
        runs: dict[str, Callable[[], object]] = {
            SEQUENTIAL: lambda: [f(*args) for f, args in eager],
            "scripted torch.jit.fork": w.scripted_fork,
            "asyncfork, TorchScript path": lambda: wait([fork(f, *args) for f, args in scripted]),
            "asyncfork, eager": lambda: wait([fork(f, *args) for f, args in eager]),
            "ThreadPoolExecutor": lambda: [
                cf.result() for cf in [pool.submit(f, *args) for f, args in eager]
            ],
        }
        return [
            Impl(row_name(w.name, mode), _timed(sizes.passes, runs[mode]), ref=mode == SEQUENTIAL)
            for mode in MODES
        ]

    impls = [impl for w in workloads for impl in rows(w)]
    for impl in impls:  # quick mode too: TorchScript's profiling executor optimises
        for _ in range(WARM_UP):  # a function on its first calls, and threads start
            impl.measure()  # type: ignore[misc]
    info = {
        "torch": torch.__version__,
        "intra_op_threads": float(torch.get_num_threads()),
        "inter_op_threads": float(torch.get_num_interop_threads()),
        "cpus": float(len(os.sched_getaffinity(0))),
        "passes": float(sizes.passes),
    }
    impls[0].extra = lambda: info  # type: ignore[assignment, return-value]
    impls[-1].teardown = lambda: pool.shutdown(wait=True)
    return impls


def repeats(cfg: Config) -> int:
    return (QUICK_SIZES if cfg.quick else FULL_SIZES).repeats


def title(cfg: Config) -> str:
    sizes = QUICK_SIZES if cfg.quick else FULL_SIZES
    return (
        "T1. torch: independent parts of a model forked, 1 intra-op thread — speed-up over "
        f"sequential (MLPs {sizes.mlp[0]}×{sizes.mlp[1]}→{sizes.mlp[2]}, conv towers "
        f"{sizes.conv[0]}×{sizes.conv[1]}×{sizes.conv[2]}², matmuls {sizes.matmul}²)"
    )


def speedup(row: dict[str, Any], ref: dict[str, Any]) -> float | None:
    """The median over the repeats of the sequential sample over the row's sample of the
    same repeat: samples taken close together in time, so a load that comes and goes on
    the machine (other processes) moves both."""
    pairs = [(r, s) for r, s in zip(ref["samples"], row["samples"], strict=False) if s > 0]
    if not pairs or row["error"]:
        return None
    return statistics.median(r / s for r, s in pairs)


def speedup_table(results: list[dict[str, Any]]) -> list[str]:
    """Scenario T1: per workload, the sequential time (median) and each mode's speed-up
    over it (the median of the ratios of the samples of one repeat)."""
    head = ["workload", "sequential (ms)", *(f"{m} ×" for m in MODES[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for result in results:
        by_name = {row["name"]: row for row in result["rows"]}
        workloads = [n.split(": ")[0] for n in by_name if n.endswith(f": {SEQUENTIAL}")]
        for workload in workloads:
            ref = by_name[row_name(workload, SEQUENTIAL)]
            ok = ref["median"] and not ref["error"]
            cells = [workload, f"{ref['median'] * 1e3:.1f}" if ok else "**ERROR**"]
            for mode in MODES[1:]:
                row = by_name.get(row_name(workload, mode))
                ratio = speedup(row, ref) if row is not None and ok else None
                cells.append("**ERROR**" if ratio is None else f"{ratio:.2f}×")
            lines.append("| " + " | ".join(cells) + " |")
        info = next((row["extra"] for row in result["rows"] if row.get("extra")), {})
        if info:
            notes.append(
                f"torch {info['torch']}, {info['intra_op_threads']:.0f} intra-op thread, "
                f"{info['inter_op_threads']:.0f} inter-op threads, {info['cpus']:.0f} CPUs, "
                f"unpinned; {result.get('repeats', '?')} interleaved repeats of "
                f"{info['passes']:.0f} passes per row"
            )
    lines.append("")
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")
    return lines
