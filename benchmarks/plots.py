"""PNG plots (matplotlib, Agg): time per operation by implementation, and scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .report import THREAD, _by_scenario, _cfg, _col_name, _columns, _s8_rows, titles


def _bars(scenario: str, results: list[dict[str, Any]], title: str, path: Path) -> None:
    cols = _columns(results)
    names: list[str] = []
    for r in cols:
        for row in r["rows"]:
            if row["name"] not in names and not row["na"]:
                names.append(row["name"])
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(names) * max(1, len(cols) / 2) + 1.6))
    h = 0.8 / len(cols)
    scale, unit = (1e6, "µs per operation")
    if scenario == "s7":
        scale, unit = (1, "bytes per fork")
    elif scenario == "d3":
        scale, unit = (1e3, "ms per fan-out")
    elif scenario == "t1":
        scale, unit = (1e3, "ms per pass of the workload")
    for j, r in enumerate(cols):
        vals = []
        for name in names:
            row = next((x for x in r["rows"] if x["name"] == name), None)
            vals.append(row["median"] * scale if row and row["median"] else 0.0)
        ys = [i + (j - (len(cols) - 1) / 2) * h for i in range(len(names))]
        ax.barh(ys, vals, height=h, label=_col_name(r, scenario))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit + (" (log scale)" if scenario in THREAD else ""))
    if scenario in THREAD:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _scaling(results: list[dict[str, Any]], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in _columns(results):
        for label, sizes in _s8_rows(r).items():
            ns = sorted(n for n, row in sizes.items() if row["median"])
            if not ns:
                continue
            name = f"{label} ({r['loop']})"
            ax1.plot(ns, [sizes[n]["median"] * 1e6 for n in ns], marker="o", label=name)
            ms = [n for n in ns if "peak_bytes_per_fork" in sizes[n]["extra"]]
            ax2.plot(
                ms,
                [sizes[n]["extra"]["peak_bytes_per_fork"] for n in ms],
                marker="o",
                label=name,
            )
    for ax, ylab in ((ax1, "µs per fork"), (ax2, "peak traced bytes per fork")):
        ax.set_xscale("log")
        ax.set_xlabel("forks in one group")
        ax.set_ylabel(ylab)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_title("time per fork vs group size")
    ax2.set_title("memory per fork vs group size")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def make(data: dict[str, Any], out_dir: Path) -> list[Path]:
    t = titles(_cfg(data))
    paths = []
    for scenario, results in _by_scenario(data).items():
        path = out_dir / f"{scenario}.png"
        if scenario == "s8":
            _scaling(results, path)
        else:
            _bars(scenario, results, t[scenario], path)
        paths.append(path)
    return paths
