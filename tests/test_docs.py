"""The docs' examples run, and every public name is documented."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import asyncfork as af

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS = [page for page in PAGES if _python_blocks(page)]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_examples_in_document_run(path: Path) -> None:
    """Each page's python blocks run in order, as one script, with warnings as errors."""
    blocks = _python_blocks(path)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "\n".join(blocks)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_examples_in_documents_type_check(tmp_path: Path) -> None:
    """Each page's python blocks, as one module per page, pass mypy --strict and pyright.

    So every spelling the docs show (`await fut`, `await af.wait_async(futs)`, names
    bound in a group's body) is one a type checker accepts. The two checkers run at
    once, each over all pages. A page is a series of examples, so a name defined again
    (another `main`) is allowed.
    """
    files = []
    for page in DOCUMENTS:
        # "page_trio", not "trio": a module named after a page must not hide a package.
        module = tmp_path / ("page_" + re.sub(r"\W", "_", page.stem).lower() + ".py")
        module.write_text("\n".join(_python_blocks(page)), encoding="utf-8")
        files.append(str(module))
    (tmp_path / "pyrightconfig.json").write_text(
        '{"pythonVersion": "3.11", "typeCheckingMode": "standard", "reportRedeclaration": false}'
    )
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    options = ["--strict", "--disable-error-code", "no-redef", "--python-version", "3.11"]
    quiet = ["--no-error-summary", "--show-error-codes", "--no-pretty"]
    # A cache that outlives the run (git ignores it): mypy is then fast after the first time.
    cache = ["--cache-dir", str(ROOT / ".mypy_cache" / "docs-examples")]
    with subprocess.Popen(
        [sys.executable, "-m", "mypy", *options, *quiet, *cache, *files],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**env, "MYPYPATH": str(ROOT)},
    ) as mypy:
        try:
            pyright = subprocess.run(
                [str(bin_dir / "pyright"), *files],
                capture_output=True,
                text=True,
                timeout=180,
                cwd=tmp_path,
                env=env,
            )
            mypy_out, _ = mypy.communicate(timeout=180)
        finally:
            mypy.kill()  # a no-op once it has exited
    assert mypy.returncode == 0, f"mypy --strict on the docs' examples:\n{mypy_out}"
    assert pyright.returncode == 0, f"pyright on the docs' examples:\n{pyright.stdout}"


def test_readme_and_concepts_have_examples() -> None:
    """The README shows the three uses; the concepts page shows each concept."""
    assert len(_python_blocks(ROOT / "README.md")) == 3
    assert len(_python_blocks(ROOT / "docs" / "concepts.md")) >= 5


def test_every_public_name_has_a_docstring() -> None:
    """Every name in asyncfork.__all__, and every public method of its classes, is documented."""
    missing = []
    for name in af.__all__:
        obj = getattr(af, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                documentable = callable(member) or isinstance(member, property)
                if attr.startswith("_") or not documentable:
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_public_names_live_in_the_package_namespace() -> None:
    """Public classes show as asyncfork.X (not a private module) in reprs and docs."""
    for name in ("Future", "DeadlockError", "Group", "AsCompleted", "Instrument", "Installation"):
        assert getattr(af, name).__module__ == "asyncfork"
    assert isinstance(af.__all__, tuple)


def test_every_module_is_in_the_architecture_table() -> None:
    """docs/design.md's architecture table names every module of the package."""
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = design[design.index("## Architecture") :]
    package = ROOT / "asyncfork"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "__init__.py" or path.parent == package
        if f"`{path.name}`" not in table and f"`{path.relative_to(package)}`" not in table
    ]
    assert missing == []


def test_no_document_outside_the_repository_is_cited() -> None:
    """Code, tests and docs speak of the repository itself."""
    cited = []
    for path in [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md")]:
        cited += [
            str(path)
            for line in path.read_text(encoding="utf-8").splitlines()
            if "DESIGN" in line or "§" in line or "../shared" in line
        ]
    for folder in ("asyncfork", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if path.name != "test_docs.py" and ("DESIGN" in text or "§" in text):
                cited.append(str(path))
    assert cited == []
