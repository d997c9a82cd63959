"""asyncfork in a real Jupyter kernel (ipykernel, driven by nbclient).

A cell runs on the kernel's event loop, in its main thread: forks from cells, top-level
``await``, ``af.tree()`` and ``af.trace()`` in cells, and the ``DeadlockError`` a blocking
wait gets there. The cells of docs/notebooks.md are run as they are written, so the page
is tested; a few more cells follow them.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
from apps_helpers import (
    ROOT,
    cell_with,
    error_of,
    ipython_blocks,
    no_error,
    python_blocks,
    result_of,
    run_notebook,
    stderr_of,
    stdout_of,
)

DOC = ROOT / "docs" / "notebooks.md"

# The README's sync example, as a user pastes it into a cell.
README_SYNC = python_blocks(ROOT / "README.md")[1]

EXTRA = [
    "import sys\nsys.executable",
    # `await af.wait(...)` works at run time too in a cell that awaits.
    "gathered = [af.fork(fetch, i) for i in range(3)] + [af.fork(parse, 4)]\n"
    "await af.wait(gathered)",
    "await af.fork(parse, 5)",
    # Blocking calls in sync cells.
    "unfinished = af.fork(fetch, 9)\nunfinished.result()",
    "await unfinished",
    "with af.group() as g:\n    g.fork(parse, 1)",
    README_SYNC,
]


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The doc page's cells, then EXTRA, run once in one kernel."""
    return run_notebook([*ipython_blocks(DOC), *EXTRA], tmp_path_factory.mktemp("notebook"))


def _all_output(cells: list[Any]) -> str:
    return "\n".join(str(out) for cell in cells for out in cell.outputs)


def test_the_kernel_is_this_interpreter(cells: list[Any]) -> None:
    """The kernel spec points at the interpreter running the tests, not whatever is on PATH."""
    cell = cells[-len(EXTRA)]
    no_error(cell)
    assert result_of(cell) == repr(sys.executable)


def test_forks_from_cells_and_top_level_await(cells: list[Any]) -> None:
    """Sync and coroutine forks made in cells, awaited at top level in the same cell."""
    for snippet, shown in [
        ("await page + await size", "8"),
        ("await af.wait_async(futures)  # or:", "[0, -1, -2, -3]"),
        ("futures = [af.fork(fetch, i) for i in range(8)]", str([i * 10 for i in range(8)])),
        ("async with af.group() as g:", "(20, -3)"),
        ("await af.fork(report)", "[0, -1, -2, -3]"),
        ("await af.wait(gathered)", "[0, 10, 20, -4]"),
        ("await af.fork(parse, 5)", "-5"),
    ]:
        cell = cell_with(cells, snippet)
        no_error(cell)
        assert result_of(cell) == shown, cell.source


def test_a_fork_made_in_one_cell_is_awaited_in_a_later_one(cells: list[Any]) -> None:
    made = cell_with(cells, "later = af.fork(fetch, 7)")
    no_error(made)
    assert made.outputs == []
    awaited = cell_with(cells, "await later, await later_sync")
    no_error(awaited)
    assert result_of(awaited) == "(70, -8)"
    # The same for a fork whose first await in a cell of its own raised DeadlockError.
    cell = cell_with(cells, "await unfinished")
    no_error(cell)
    assert result_of(cell) == "90"


def test_tree_in_a_cell_prints_the_running_fork_once(cells: list[Any]) -> None:
    cell = cell_with(cells, "af.tree();")
    no_error(cell)
    printed = stdout_of(cell)
    assert re.fullmatch(
        r"<asyncio loop 0x[0-9a-f]+> \(MainThread\)\n└─ stuck  (running|pending)  \d+\.\ds\n",
        printed,
    ), printed
    assert result_of(cell) is None  # the `;`: the returned string is not shown again
    released = cell_with(cells, "await job")
    no_error(released)
    assert result_of(released) == "'released'"


def test_trace_in_a_cell_prints_the_summary_and_shows_the_timeline(cells: list[Any]) -> None:
    cell = cell_with(cells, "with af.trace() as t:")
    no_error(cell)
    printed = stdout_of(cell)
    assert printed.startswith("asyncfork trace: 8 forks (8 coroutine)\n"), printed
    assert "critical path:" in printed
    assert re.search(r"^  waits: +[1-8]$", printed, re.M)  # those still running when awaited
    assert result_of(cell) is None
    frame = cell_with(cells, "t.to_html(")
    no_error(frame)
    shown = result_of(frame, "text/html")
    assert shown is not None
    assert shown.startswith('<div><iframe srcdoc="&lt;!DOCTYPE html&gt;'), shown[:80]
    assert "fetch" in shown  # the forks' names are in the embedded page


def test_blocking_wait_in_a_sync_cell_raises_deadlock_error(cells: list[Any]) -> None:
    """af.wait in a cell without await would freeze the kernel's loop: DeadlockError, whose
    message says to await at top level. Never a coroutine object shown as the value."""
    cell = cell_with(cells, "af.wait(futures)  # blocks")
    assert error_of(cell) is not None, cell.outputs
    ename, evalue = error_of(cell) or ("", "")
    assert ename == "DeadlockError", evalue
    assert "in a notebook cell, await at top level" in evalue
    assert "<coroutine object" not in _all_output(cells)
    assert "never awaited" not in _all_output(cells)


def test_readme_sync_example_pasted_into_a_cell_raises_deadlock_error(cells: list[Any]) -> None:
    cell = cells[-1]
    assert cell.source == README_SYNC
    ename, evalue = error_of(cell) or ("", "")
    assert ename == "DeadlockError", cell.outputs
    assert "in a notebook cell, await at top level" in evalue
    assert stderr_of(cell) == ""  # no "coroutine ... was never awaited"


def test_result_and_sync_group_in_a_cell_raise_deadlock_error(cells: list[Any]) -> None:
    for snippet in ["unfinished.result()", "with af.group() as g:\n    g.fork(parse, 1)"]:
        cell = cell_with(cells, snippet)
        ename, evalue = error_of(cell) or ("", "")
        assert ename == "DeadlockError", cell.outputs
        assert "await" in evalue


def test_the_timeline_in_the_cell_renders_in_a_browser(cells: list[Any], browser: Any) -> None:
    """The cell's text/html output, as a front end shows it: the frame draws one bar per fork
    of the trace, with no script error and no request for anything outside the page."""
    shown = result_of(cell_with(cells, "t.to_html("), "text/html")
    assert shown is not None
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.set_content(f"<!DOCTYPE html><html><body>{shown}</body></html>", timeout=10_000)
        bars = page.frame_locator("iframe").locator(".bar")
        bars.first.wait_for(timeout=10_000)
        assert bars.count() == 8  # the eight fetches traced in the cell
    finally:
        page.close()
    assert errors == []
    assert [url for url in requests if not url.startswith(("about:", "data:"))] == []
