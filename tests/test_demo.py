"""`python -m asyncfork demo` runs the three uses and reports honest timings; its fourth part
traces a run and keeps the trace only where asked (`-o DIR`); its fifth part runs a CPU-bound
fan-out sequentially, in threads and on an embedded Dask cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_reports_each_use(tmp_path: Path) -> None:
    """The demo prints each use with its wall time, sequential time and speed-up; its 24
    blocking calls run in one wave (the default worker limit is 40). Without `-o` it leaves
    no folder of its own behind in the temporary directory."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "asyncfork", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
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
    check_scale_out(out, cluster=True)
    assert (
        "were written to a temporary\n  folder, now removed: `python -m asyncfork demo -o DIR`"
        in out
    )
    assert list(tmp_path.glob("asyncfork-demo-*")) == []


def test_demo_writes_its_trace_where_asked(tmp_path: Path) -> None:
    """`demo -o DIR`: part 4 makes DIR and writes the crawl's trace.html and trace.json there."""
    out_dir = tmp_path / "made" / "here"
    code = f"from asyncfork import _demo\n_demo._trace_crawl({str(out_dir)!r})\n"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert f"open {out_dir / 'trace.html'} in a browser" in result.stdout
    assert "<html" in (out_dir / "trace.html").read_text(encoding="utf-8").lower()
    events = json.loads((out_dir / "trace.json").read_text(encoding="utf-8"))["traceEvents"]
    assert sum(1 for e in events if e.get("ph") == "X" and e["name"] == "crawl") == 40


def test_demo_option_names_the_trace_folder() -> None:
    """The command line passes `-o DIR` to the demo; without it, no folder is named."""
    from asyncfork.__main__ import _parser

    assert _parser().parse_args(["demo", "-o", "out"]).output == "out"
    assert _parser().parse_args(["demo"]).output is None


def check_scale_out(out: str, *, cluster: bool) -> None:
    """Part 5 printed its timings, and each speed-up is the sequential time over that way's
    (what was measured: no figure is asserted, the machine may be busy)."""
    assert "5. scale-out: 8 CPU-bound pure-Python calls (sized to about" in out
    found = re.search(r"sequentially\s+([\d.]+) s\s+\((\d+) ms a call\)\n", out)
    assert found is not None, out
    sequential = float(found[1])
    assert int(found[2]) == pytest.approx(sequential / 8 * 1000, abs=1)
    ways = re.findall(
        r"  (threads \(af.fork\)|Dask LocalCluster)\s+([\d.]+) s\s+speed-up ([\d.]+)x", out
    )
    assert [way for way, _, _ in ways] == (
        ["threads (af.fork)", "Dask LocalCluster"] if cluster else ["threads (af.fork)"]
    )
    for _, seconds, speedup in ways:
        assert float(seconds) > 0
        assert float(speedup) == pytest.approx(sequential / float(seconds), rel=0.02, abs=0.01)
    if cluster:
        assert re.search(r"cluster's \d+ worker processes has its own, on \d+ CPUs", out)
        assert re.search(r"The cluster started in [\d.]+ s, not counted", out)
    else:
        assert "Dask cluster: skipped, it needs Dask: pip install 'asyncfork[dask]'" in out


def test_demo_without_dask_skips_the_cluster_and_says_what_to_install() -> None:
    """Without distributed, part 5 times the other two ways and says how to get the third."""
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None  # as if it were not installed\n"
        "from asyncfork import _demo\n"
        "_demo.CPU_SECONDS = 0.01\n"
        "_demo._scale_out()\n"
        "assert 'asyncfork.dask' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_scale_out(result.stdout, cluster=False)
