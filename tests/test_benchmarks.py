"""The benchmark report's arithmetic (the runs themselves are in `make bench`)."""
# ruff: noqa: RUF001  (the report writes ranges with an en dash)

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import runner, torch_cases
from benchmarks._common import D1_REF, D1_ROW, D2_REF, D2_ROW, D3_REF, D3_ROW
from benchmarks.report import LOOPS, ratio_spread, speedup_table, target_table


def test_ratio_spread_pairs_the_samples_taken_together() -> None:
    row = {"samples": [2.0, 3.0, 4.0]}
    ref = {"samples": [1.0, 2.0, 4.0]}
    assert ratio_spread(row, ref) == (1.0, 2.0)  # 2/1, 3/2, 4/4


def test_ratio_spread_needs_two_pairs() -> None:
    assert ratio_spread({"samples": [2.0]}, {"samples": [1.0]}) is None
    assert ratio_spread({"samples": [2.0, 3.0]}, {"samples": [0.0, 0.0]}) is None


def _row(name: str, median: float | None, *, na: str = "", **flags: bool) -> dict[str, Any]:
    return {
        "name": name,
        "median": median,
        "samples": [median, median] if median else [],
        "na": na,
        "error": "",
        "ref": flags.get("ref", False),
        "target": flags.get("target", False),
    }


def _s1(loop: str, eager_fork: dict[str, Any], eager_ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": "s1",
        "loop": loop,
        "pinned": False,
        "rows": [
            _row("asyncio create_task + await", 2.0, ref=True),
            _row("asyncfork await fork(f)", 2.5, target=True),
            eager_ref,
            eager_fork,
        ],
    }


def _eager_target_line(results: list[dict[str, Any]]) -> str:
    lines = target_table({"results": results, "mode": "quick"})
    return next(line for line in lines if line.startswith("| fork + await one coroutine, eager"))


def test_eager_targets_compare_the_eager_rows_by_name() -> None:
    """The eager target is the eager fork over the eager task factory, not the lazy rows."""
    results = [
        _s1(
            loop,
            _row("asyncfork fork.options(eager=True)", 1.5),
            _row("asyncio create_task (eager task factory)", 1.0),
        )
        for loop in ("asyncio", "uvloop")
    ]
    line = _eager_target_line(results)
    assert "| 1.50 [1.50–1.50] | 1.50 [1.50–1.50] | yes |" in line


def test_eager_targets_on_python_311_say_not_applicable() -> None:
    """Without eager tasks (3.11) the eager rows are n/a, and so is their target: not a miss."""
    results = [
        _s1(
            loop,
            _row("asyncfork fork.options(eager=True)", None, na="needs Python 3.12+"),
            _row("asyncio create_task (eager task factory)", None, na="needs Python 3.12+"),
        )
        for loop in ("asyncio", "uvloop")
    ]
    line = _eager_target_line(results)
    assert "| n/a | n/a | n/a: needs Python 3.12+ |" in line


def _dask(scenario: str, loop: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"scenario": scenario, "loop": loop, "pinned": False, "rows": rows}


def _target_line(results: list[dict[str, Any]], what: str) -> str:
    lines = target_table({"results": results, "mode": "quick"})
    return next(line for line in lines if line.startswith(f"| {what} |"))


def test_dask_targets_compare_the_rows_by_name() -> None:
    """The Dask targets divide the use(client) row by the raw client row of the same loop;
    the other asyncfork row and client.map do not count."""
    results = [
        _dask(
            "d1",
            loop,
            [
                _row(D1_REF, 1.0e-3),
                _row("dask client.map(f, range(n)), then client.gather", 0.5e-3),
                _row(D1_ROW, ratio * 1.0e-3),
                _row("asyncfork fork.options(executor=client) xn, then wait(list)", 9e-3),
            ],
        )
        for loop, ratio in (("asyncio", 1.05), ("uvloop", 1.2))
    ]
    line = _target_line(results, "Dask: n forks, then wait all")
    assert "| ≤ 1.1 | 1.05 [1.05–1.05] | **1.20** [1.20–1.20] | **no** |" in line
    d2 = [_dask("d2", loop, [_row(D2_REF, 0.01), _row(D2_ROW, 0.0105)]) for loop in LOOPS]
    assert "| 1.05 [1.05–1.05] | 1.05 [1.05–1.05] | yes |" in _target_line(
        d2, "Dask: fork + wait one"
    )


def test_dask_speedup_is_the_threads_time_over_each_rows() -> None:
    """D3's table: ms per fan-out, and the threads row's median over each row's."""
    rows = [
        _row(D3_REF, 0.8, ref=True),
        _row("sequential, one call after another", 0.78),
        _row(D3_ROW, 0.42),
    ]
    table = speedup_table([_dask("d3", "uvloop", rows)])
    assert f"| uvloop | {D3_REF} *(reference)* | 800.0 | 1.00× |" in table
    assert "| uvloop | sequential, one call after another | 780.0 | 1.03× |" in table
    assert f"| uvloop | {D3_ROW} | 420.0 | 1.90× |" in table


def test_the_dask_scenarios_share_one_unpinned_process() -> None:
    """--only picks them; they run in one worker process (one cluster), never pinned,
    after the others, in quick and full mode alike."""
    for quick in (True, False):
        jobs = runner.jobs(("s1", "d1", "d3"), 0, quick)
        assert jobs[-1] == (("d1", "d3"), "all", None)
        assert all("d1" not in group and "d3" not in group for group, _, _ in jobs[:-1])
    assert runner.jobs(("d2",), 0, True) == [(("d2",), "all", None)]
    assert set(runner.DASK_SCENARIOS) <= set(runner.ALL)


def test_targets_of_scenarios_not_run_are_left_out() -> None:
    """A run of some scenarios (--only) checks only their targets: no row of "—" misses."""
    results = [_dask("d2", loop, [_row(D2_REF, 0.01), _row(D2_ROW, 0.01)]) for loop in LOOPS]
    rows = [line for line in target_table({"results": results, "mode": "quick"}) if line]
    assert len(rows) == 3  # the header, its rule, and the one target of d2
    assert rows[2].startswith("| Dask: fork + wait one |")


def test_the_torch_scenario_runs_alone_unpinned_and_only_with_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """T1 (--only t1) runs in a process of its own, never pinned (its forks need the CPUs);
    without torch the runner leaves it out rather than failing."""
    for quick in (True, False):
        jobs = runner.jobs(("s1", "t1", "d1"), 0, quick)
        assert jobs[-1] == (("t1",), "uvloop", None)
        assert all("t1" not in group for group, _, _ in jobs[:-1])
    assert "t1" in runner.ALL
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert runner.without_torch(("s1", "t1")) == ("s1",)


def test_the_torch_scenario_runs_in_quick_mode() -> None:
    """Where torch is installed: every row of T1 measures, and the table shows the speed-up
    of each mode for each workload. In a subprocess: T1 sets torch's thread count."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (it is installed for Python 3.11 only here)")
    code = (
        "import json\n"
        "from dataclasses import replace\n"
        "from benchmarks import torch_cases\n"
        "from benchmarks._common import QUICK\n"
        "from benchmarks.worker import run_scenario\n"
        "cfg = replace(QUICK, repeats=torch_cases.repeats(QUICK))\n"
        "result = run_scenario('t1', 'uvloop', cfg, torch_cases.t1)\n"
        "result['repeats'] = cfg.repeats\n"
        "print(json.dumps(result))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == 0
    assert len(result["rows"]) == 15
    assert all(row["median"] > 0 for row in result["rows"])
    table = torch_cases.speedup_table([result])
    for workload in ("4-MLP ensemble", "4 conv towers", "8 matmuls"):
        line = next(line for line in table if line.startswith(f"| {workload} |"))
        assert "ERROR" not in line
        assert line.count("×") == 4
