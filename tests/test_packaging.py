"""The release artifacts: the sdist and the wheel build, carry the licence and the right
metadata, and the wheel installs into a clean venv where the demo runs.

The build and the install use pip's configured package index (PyPI, or a mirror set in
pip's configuration): the build backend (hatchling) and the runtime dependencies (attrs,
uvloop) come from there, as they would for a user. Without a reachable index this test fails
with pip's own message; it is not skipped.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command with the environment of a user's shell: no PYTHONPATH into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASYNCFORK_TRACE")}
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_installs_into_a_clean_venv_and_runs_the_demo(tmp_path: Path) -> None:
    """`python -m build` makes the sdist and, from it, the wheel; the wheel has the licence
    and the two runtime dependencies; installed into a new venv (no packages of the test
    run's), `python -m asyncfork demo` runs from it, outside the checkout."""
    dist = tmp_path / "dist"
    # Without --sdist/--wheel, build makes the sdist first and the wheel from the sdist, so
    # the wheel also proves that the sdist holds everything the package needs.
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("asyncfork-*-py3-none-any.whl")
    (sdist,) = dist.glob("asyncfork-*.tar.gz")

    with zipfile.ZipFile(wheel) as whl:
        files = whl.namelist()
        (metadata_path,) = [f for f in files if f.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(whl.read(metadata_path))
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)
    assert "asyncfork/py.typed" in files
    assert "asyncfork/_tracing/view/trace.js" in files  # the HTML view's script (package data)
    assert not any(f.startswith(("tests/", "docs/")) for f in files)
    assert metadata["License-Expression"] == "MIT"
    runtime = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(r.split(">")[0].split(";")[0] for r in runtime) == ["attrs", "uvloop"]

    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "docs/conf.py", "docs/index.md"} <= names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    where = _run(python, "-c", "import asyncfork; print(asyncfork.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv)

    trace_dir = tmp_path / "trace"
    demo = _run(python, "-W", "error", "-m", "asyncfork", "demo", "-o", trace_dir, cwd=tmp_path)
    assert demo.stderr == ""
    assert "50 responses" in demo.stdout
    assert "40 pages crawled" in demo.stdout
    # The clean venv has the runtime dependencies only: no Dask, so part 5 says what to add.
    assert "Dask cluster: skipped, it needs Dask: pip install 'asyncfork[dask]'" in demo.stdout
    assert (trace_dir / "trace.html").stat().st_size > 0
    assert (trace_dir / "trace.json").stat().st_size > 0
