"""`python -m asyncfork demo` runs the three uses and reports honest timings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_reports_each_use() -> None:
    """The demo prints each use with its wall time, sequential time and speed-up; its 24
    blocking calls run in one wave (the default worker limit is 40)."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "asyncfork", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "50 responses" in out
    assert "40 pages crawled, 40 fetches" in out
    assert "24 of 24 calls ran at once: 1 wave (the default worker limit is 40)" in out
    figures = re.findall(r"wall time\s+([\d.]+) s\s+sequential\s+([\d.]+) s", out)
    assert len(figures) == 3
    for wall, sequential in figures:
        # Concurrency, not a timing target: forked work overlaps, sequential work would not.
        assert float(wall) < float(sequential)
