"""The command line: `python -m asyncfork trace` and the usage message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

# -- helpers -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """\
import asyncio
import sys

import asyncfork as af


async def leaf(i):
    await asyncio.sleep(0.01)
    return i


async def main():
    return sum([await fut for fut in [af.fork(leaf, i) for i in range(4)]])


print("result", af.run(main), "argv", sys.argv[1:])
if sys.argv[1:] == ["exit"]:
    sys.exit(3)
if sys.argv[1:] == ["raise"]:
    raise ValueError("boom from the script")
"""


def _trace_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "asyncfork", "trace", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**_env_without_trace(), "PYTHONPATH": str(ROOT)},
    )


def _env_without_trace() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ASYNCFORK_TRACE"}


def _assert_trace_files(directory: Path, forks: int) -> None:
    data = json.loads((directory / "trace.json").read_text(encoding="utf-8"))
    events = data["traceEvents"] if isinstance(data, dict) else data
    complete = [e for e in events if e.get("ph") == "X"]
    assert sorted(e["name"] for e in complete).count("leaf") == 4
    assert len(complete) == forks  # one complete event per fork
    html = (directory / "trace.html").read_text(encoding="utf-8")
    assert "<html" in html.lower()


# -- python -m asyncfork trace -------------------------------------------------------------


def test_trace_cli_runs_the_script_and_writes_json_html_and_summary(tmp_path: Path) -> None:
    """`trace script.py args` runs it as __main__ with its argv, writes both files, summarises."""
    result = _trace_cli(tmp_path, "script.py", "a", "-o", "b")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "result 6 argv ['a', '-o', 'b']" in result.stdout  # args after the script are its own
    out_dir = tmp_path / "asyncfork-trace"  # the default directory, in the current one
    _assert_trace_files(out_dir, forks=5)  # main and its 4 leaves
    assert re.search(r"\bspan\b", result.stdout)
    assert "parallelism" in result.stdout
    assert str(Path("asyncfork-trace") / "trace.json") in result.stdout
    assert str(Path("asyncfork-trace") / "trace.html") in result.stdout


def test_trace_cli_keeps_the_scripts_exit_code(tmp_path: Path) -> None:
    """A script's sys.exit(3) is the command's exit code; the trace is written first."""
    result = _trace_cli(tmp_path, "-o", "out", "script.py", "exit")
    assert result.returncode == 3, result.stderr
    _assert_trace_files(tmp_path / "out", forks=5)


def test_trace_cli_script_exception_prints_traceback_and_exits_1(tmp_path: Path) -> None:
    """A script that raises: its traceback on stderr, exit code 1, the trace still written."""
    result = _trace_cli(tmp_path, "-o", "out", "script.py", "raise")
    assert result.returncode == 1
    assert "ValueError: boom from the script" in result.stderr
    assert "Traceback" in result.stderr
    _assert_trace_files(tmp_path / "out", forks=5)


# -- usage ---------------------------------------------------------------------------------


def test_no_command_prints_usage_with_both_commands() -> None:
    """`python -m asyncfork` alone prints the usage of demo and trace and exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "asyncfork"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "usage: python -m asyncfork demo [-o DIR] | trace [-o DIR] script.py" in result.stderr


def test_unknown_command_prints_usage() -> None:
    """`python -m asyncfork` with no or a wrong command says how to use it."""
    result = subprocess.run(
        [sys.executable, "-m", "asyncfork", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "usage: python -m asyncfork demo" in result.stderr
