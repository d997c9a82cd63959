"""The benchmark report's arithmetic (the runs themselves are in `make bench`)."""
# ruff: noqa: RUF001  (the report writes ranges with an en dash)

from __future__ import annotations

from typing import Any

from benchmarks.report import ratio_spread, target_table


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
