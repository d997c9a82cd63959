"""The benchmark report's arithmetic (the runs themselves are in `make bench`)."""

from __future__ import annotations

from benchmarks.report import ratio_spread


def test_ratio_spread_pairs_the_samples_taken_together() -> None:
    row = {"samples": [2.0, 3.0, 4.0]}
    ref = {"samples": [1.0, 2.0, 4.0]}
    assert ratio_spread(row, ref) == (1.0, 2.0)  # 2/1, 3/2, 4/4


def test_ratio_spread_needs_two_pairs() -> None:
    assert ratio_spread({"samples": [2.0]}, {"samples": [1.0]}) is None
    assert ratio_spread({"samples": [2.0, 3.0]}, {"samples": [0.0, 0.0]}) is None
