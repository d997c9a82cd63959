"""`python -m asyncfork trace` runs a script under tracing; `af.tree()` shows the live forks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import asyncfork as af

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
    assert "usage: python -m asyncfork demo | trace [-o DIR] script.py" in result.stderr


# -- af.tree() ----------------------------------------------------------------------


def _line_of(text: str, name: str) -> str:
    lines = [line for line in text.splitlines() if re.search(rf"[─] {re.escape(name)}  ", line)]
    assert len(lines) == 1, text
    return lines[0]


async def test_tree_shows_a_hung_fork_with_its_state() -> None:
    """af.tree() lists a pending fork by name, with its state: pending, running, cancelling."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            await release.wait()  # a slow cleanup: the fork is "cancelling" meanwhile
            raise

    fut = af.fork.options(name="stuck-fork")(stuck)
    assert "pending" in _line_of(af.tree(show=False), "stuck-fork")  # not started yet
    assert await asyncio.wait_for(started.wait(), 5) is True
    line = _line_of(af.tree(show=False), "stuck-fork")
    assert re.search(r"stuck-fork  running  \d+\.\ds$", line), line
    fut.cancel()
    assert "cancelling" in _line_of(af.tree(show=False), "stuck-fork")
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fut, 5)
    assert fut.cancelled()
    assert "stuck-fork" not in af.tree(show=False)


async def test_tree_nests_children_under_their_parent() -> None:
    """A fork's children appear under it, indented one level deeper."""
    release = asyncio.Event()
    ready = asyncio.Event()

    async def child() -> None:
        await release.wait()

    async def parent() -> None:
        af.fork.options(name="kid-a")(child)
        af.fork.options(name="kid-b")(child)
        ready.set()

    fut = af.fork.options(name="the-parent")(parent)
    assert await asyncio.wait_for(ready.wait(), 5) is True
    text = af.tree(show=False)
    top, a, b = (_line_of(text, n) for n in ("the-parent", "kid-a", "kid-b"))
    lines = text.splitlines()
    assert lines.index(top) < lines.index(a) < lines.index(b)
    assert a.startswith("   ├─ "), text
    assert b.startswith("   └─ "), text
    assert "running" in top  # joining its children: still running
    release.set()
    await asyncio.wait_for(fut, 5)


def test_tree_shows_forks_of_the_background_loop(loop_kind: str) -> None:
    """From sync code: the background loop's forks, a sync child in its thread included."""
    started = threading.Event()
    release = threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(5)

    async def owner() -> None:
        await af.fork.options(name="blocking-child")(blocking)

    fut = af.fork.options(name="bg-owner")(owner)
    try:
        assert started.wait(5)
        text = af.tree(show=False)
        header = text.splitlines()[0]
        assert header.startswith(f"<{loop_kind} loop 0x")
        assert "(asyncfork-loop)" in header
        assert "running" in _line_of(text, "bg-owner")
        assert "(thread)" in _line_of(text, "blocking-child")
        assert _line_of(text, "blocking-child").startswith("   └─ ")
    finally:
        release.set()
    fut.result(timeout=5)


def test_tree_finds_forks_of_af_run_in_another_thread(loop_kind: str) -> None:
    """af.run's loop is asyncfork's own: its forks show up from any thread."""
    started = threading.Event()
    release = threading.Event()

    async def hang() -> None:
        started.set()
        await asyncio.to_thread(release.wait, 5)

    async def main() -> None:
        await af.fork.options(name="run-child")(hang)

    thread = threading.Thread(target=af.run, args=(main,))
    thread.start()
    try:
        assert started.wait(5)
        text = af.tree(show=False)
        assert "running" in _line_of(text, "run-child")
        assert _line_of(text, "run-child").startswith("   └─ ")  # under af.run's main
    finally:
        release.set()
        thread.join(5)
    assert not thread.is_alive()


def test_tree_is_empty_when_nothing_runs(
    loop_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No running fork: af.tree() returns "" and prints a line saying so."""
    af.fork(lambda: 1).result(timeout=5)  # the background loop exists, but is idle
    assert af.tree(show=False) == ""
    assert af.tree() == ""
    assert capsys.readouterr().out == "(no forks running)\n"


def test_asyncfork_trace_env_var_makes_af_run_write_its_trace(tmp_path: Path) -> None:
    """ASYNCFORK_TRACE=DIR: af.run traces itself and writes DIR/trace.json and trace.html."""
    out = tmp_path / "out"
    script = (
        "import asyncio, asyncfork as af\n"
        "async def child():\n"
        "    await asyncio.sleep(0)\n"
        "    return 1\n"
        "async def main():\n"
        "    return sum([await af.fork(child) for _ in range(3)])\n"
        "print(af.run(main))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASYNCFORK_TRACE": str(out)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = [e["name"] for e in events if e["ph"] == "X"]
    assert sorted(names) == ["child", "child", "child", "main"]
    assert "<html" in (out / "trace.html").read_text().lower()


def test_asyncfork_trace_env_var_with_unwritable_dir_keeps_the_result(tmp_path: Path) -> None:
    """A trace folder that cannot be made is logged; af.run still returns its value."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    script = "import asyncfork as af\nasync def main():\n    return 7\nprint(af.run(main))\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASYNCFORK_TRACE": str(blocker / "sub")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
    assert "cannot create" in result.stderr
