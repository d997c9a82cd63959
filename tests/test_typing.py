"""The public API's static types, checked by mypy and pyright.

``tests/typing/check_types.py`` holds ``assert_type`` checks that must pass
cleanly; the snippet below holds calls that must be rejected, one per line
marked ``# E``. Each checker runs once over both files (they are slow to start).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK_TYPES = ROOT / "tests" / "typing" / "check_types.py"
BIN = Path(sys.executable).parent

BAD = """\
# pyright: strict
from __future__ import annotations

import asyncfork as af


async def async_fn(x: int) -> int:
    return x


def sync_fn(x: int) -> int:
    return x


def bad_calls() -> None:
    af.fork(async_fn, "x")  # E wrong argument type, coroutine function
    af.fork(sync_fn, "x")  # E wrong argument type, sync function
    af.fork(async_fn)  # E missing argument
    af.fork(async_fn, 1, 2)  # E too many arguments
    af.fork(async_fn, 1, timeout=3)  # E every keyword goes to func: no fork options here
    af.fork.options(name="n")(async_fn, "x")  # E options() keeps the ParamSpec
    af.fork.options(on_cancel="later")  # E on_cancel is a Literal
    af.run(async_fn, "x")  # E run is typed like fork
    af.wait(1)  # E wait takes Futures
    s: str = af.wait(af.fork(async_fn, 1))  # E wait(Future[int]) is int
    t: str = af.fork(sync_fn, 1).result()  # E result() is T
    u: list[str] = af.wait([af.fork(async_fn, 1)])  # E wait(list) is list[int]
    del s, t, u


async def bad_async() -> None:
    v: str = await af.fork(async_fn, 1)  # E await Future[int] is int
    w: str = await af.wait_async(af.fork(async_fn, 1))  # E wait_async(Future[int]) is int
    del v, w
    await af.wait([af.fork(async_fn, 1)])  # E wait is typed as blocking: write wait_async
    async with af.group() as g:
        g.fork(async_fn, "x")  # E group fork keeps the ParamSpec
"""


def expected_lines() -> set[int]:
    """Line numbers (1-based) of the snippet's lines marked ``# E``."""
    return {n for n, line in enumerate(BAD.splitlines(), 1) if "  # E " in line}


@pytest.fixture(scope="module")
def bad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("typing") / "bad_calls.py"
    path.write_text(BAD)
    return path


def test_mypy_strict_accepts_good_and_rejects_bad_calls(bad_file: Path, tmp_path: Path) -> None:
    """mypy --strict: the API's types hold (assert_type) and wrong calls are errors."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--no-pretty",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(CHECK_TYPES),
            str(bad_file),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    errors = [line for line in res.stdout.splitlines() if ": error:" in line]
    good = [e for e in errors if "check_types.py" in e]
    assert not good, "\n".join(good)
    seen = {
        int(m.group(1)) for e in errors if (m := re.match(rf"{re.escape(str(bad_file))}:(\d+):", e))
    }
    missing = expected_lines() - seen
    unexpected = seen - expected_lines()
    assert not missing, f"mypy accepted lines {sorted(missing)}:\n{res.stdout}"
    assert not unexpected, f"mypy flagged unmarked lines {sorted(unexpected)}:\n{res.stdout}"


def test_pyright_strict_accepts_good_and_rejects_bad_calls(bad_file: Path) -> None:
    """pyright (strict): the API's types hold (assert_type) and wrong calls are errors."""
    pyright = BIN / "pyright"
    assert pyright.exists(), "pyright is part of the test extra: pip install -e '.[test]'"
    res = subprocess.run(
        [str(pyright), "--outputjson", str(CHECK_TYPES), str(bad_file)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        # pyright finds the environment's packages through the `python` on PATH.
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    report = json.loads(res.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    good = [d for d in errors if d["file"].endswith("check_types.py")]
    assert not good, json.dumps(good, indent=1)
    seen = {d["range"]["start"]["line"] + 1 for d in errors if Path(d["file"]) == bad_file}
    missing = expected_lines() - seen
    unexpected = seen - expected_lines()
    shown = json.dumps(errors, indent=1)
    assert not missing, f"pyright accepted lines {sorted(missing)}:\n{shown}"
    assert not unexpected, f"pyright flagged unmarked lines {sorted(unexpected)}:\n{shown}"
