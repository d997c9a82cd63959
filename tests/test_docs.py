"""The docs' examples run and type-check, every public name is documented and in the API
reference, and the README's links lead somewhere."""

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


def _site_pages() -> list[Path]:
    """Every Markdown page of the docs site, in its subfolders too (not build output)."""
    docs = ROOT / "docs"
    return sorted(
        page
        for page in docs.rglob("*.md")
        if not any(part.startswith(("_", ".")) for part in page.relative_to(docs).parts)
    )


PAGES = [ROOT / "README.md", *_site_pages()]
DOCUMENTS = [page for page in PAGES if _python_blocks(page)]


def _page_id(path: Path) -> str:
    """docs/howto/tracing.md is "howto/tracing.md": two pages may share a file name."""
    return str(path.relative_to(ROOT / "docs" if path.parent != ROOT else ROOT))


@pytest.mark.parametrize("path", DOCUMENTS, ids=_page_id)
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
        # "page_trio", not "trio": a module named after a page must not hide a package; and
        # "page_howto_tracing" beside "page_tracing": the folder is part of the name.
        name = re.sub(r"\W", "_", _page_id(page).removesuffix(".md")).lower()
        module = tmp_path / f"page_{name}.py"
        assert not module.exists(), f"two pages make the module {module.name}"
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


def test_the_site_pages_include_the_subfolders() -> None:
    """The pages checked here are all of the site's: the subfolders' too, not build output."""
    docs = ROOT / "docs"
    assert docs / "concepts.md" in PAGES
    assert docs / "index.md" in PAGES
    assert all("_build" not in page.parts and "_ext" not in page.parts for page in PAGES)
    nested = list((docs / "tutorial").glob("*.md"))
    assert nested  # the tutorial's pages, in a subfolder
    assert set(nested) <= set(PAGES)


# -- the API reference ----------------------------------------------------------------------

API_PAGE = ROOT / "docs" / "api.md"
# The public modules besides the package itself; each is documented whole (automodule).
PUBLIC_MODULES = (
    "asyncfork.dask",
    "asyncfork.otel",
    "asyncfork.progress",
    "asyncfork.pytest_plugin",
)


def _autodoc_targets(text: str, directive: str = r"auto\w+") -> list[str]:
    """The objects an API page documents: `.. autofunction:: asyncfork.wait` and the like."""
    return re.findall(rf"^\.\. {directive}:: ([\w.]+)", text, re.M)


def test_every_public_name_is_in_the_api_reference() -> None:
    """docs/api.md documents each name of asyncfork.__all__ with an autodoc directive (a new
    public name must be placed in its section there), names nothing that is not public, and
    documents each public module whole. `make docs` checks the built reference the same way."""
    text = API_PAGE.read_text(encoding="utf-8")
    objects = _autodoc_targets(text, r"auto(?!module)\w+")
    names = [t.removeprefix("asyncfork.") for t in objects if t.count(".") == 1]
    missing = [f"asyncfork.{name}" for name in af.__all__ if name not in names]
    assert missing == [], f"add an autofunction or autoclass directive to docs/api.md for {missing}"
    assert sorted(set(names) - set(af.__all__)) == []
    assert len(names) == len(set(names)), "a name is documented twice"
    for module in PUBLIC_MODULES:
        assert module in _autodoc_targets(text, "automodule"), f"no automodule of {module}"


def test_api_reference_check_finds_a_missing_name() -> None:
    """The check above reads the directives: a page without one name's directive misses it."""
    text = API_PAGE.read_text(encoding="utf-8").replace(".. autofunction:: asyncfork.wait\n", "")
    assert "asyncfork.wait" not in _autodoc_targets(text)
    assert "asyncfork.wait_async" in _autodoc_targets(text)


# -- links ----------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """A heading's anchor, as GitHub and MyST make it: lower case, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _broken_links(page: Path) -> list[str]:
    """Relative links of a Markdown page whose file, or heading, does not exist."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+:", target):  # https:, mailto:: not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file)):
            broken.append(target)
    return broken


def test_readme_links_lead_to_files_and_headings() -> None:
    """The README is not part of the site (whose links the Sphinx build checks): its relative
    links are checked here, offline, down to the heading."""
    assert _broken_links(ROOT / "README.md") == []
    assert "docs/index.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_link_check_finds_a_missing_file_and_heading(tmp_path: Path) -> None:
    """The link check reports a missing file and a missing heading, and passes good links."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A heading, here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[a](other.md) [b](other.md#a-heading-here) [c](#top) [d](https://example.invalid)\n"
        "[e](missing.md) [f](other.md#nowhere)\n\n# Top\n",
        encoding="utf-8",
    )
    assert _broken_links(page) == ["missing.md", "other.md#nowhere"]


def test_readme_quick_start_is_two_commands() -> None:
    """The contributors' start is exactly `make demo` and `make test`, after the user's part."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.index("pip install asyncfork") < readme.index("## Quick start for contributors")
    section = readme[readme.index("## Quick start for contributors") :]
    commands = re.findall(r"```sh\n(.*?)```", section, re.S)[0].splitlines()
    assert [line.split("#")[0].strip() for line in commands] == ["make demo", "make test"]
    assert "/usr/bin/chromium" in section
    assert "make browser" in section


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
