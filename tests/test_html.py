"""Trace.to_html(): the self-contained HTML view, checked in a real headless browser."""

# The view is one HTML file with a zoomable timeline (a bar per fork), the fork tree and
# the summary, details on hover; names escaped. The page is loaded from a file:// URL in
# Debian's chromium (/usr/bin/chromium), driven by Playwright; `.ci/run` installs both.
# Missing, the tests fail (never skip).

from __future__ import annotations

import asyncio
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

import asyncfork as af

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
LABEL_W = 240  # the track labels' column in the timeline
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A name that breaks out of the embedded JSON, the markup or an attribute unless escaped.
EVIL = (
    "</script><script>window.__pwned = 1</script>"
    '<img src=x onerror="window.__pwned = 2"> & \'quoted\' "name" <!--'
)
FIB_N = 5
FIB_FORKS = 15  # fib(5) forks itself: one fork per node of its call tree
# main, the fib tree, one sync fork, two group children.
EXPECTED_FORKS = 1 + FIB_FORKS + 1 + 2


async def fib(n: int) -> int:
    if n < 2:
        await asyncio.sleep(0)
        return n
    a = af.fork(fib, n - 1)
    b = af.fork(fib, n - 2)
    return await a + await b


def square(x: int) -> int:
    return x * x


async def leaf(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def program() -> int:
    f = af.fork(fib, FIB_N)
    s = af.fork(square, 7)
    async with af.group(name="grp") as g:
        g.fork(leaf, 1)
        g.fork.options(name=EVIL)(leaf, 2)
    return await f + await s


def in_thread(func: Callable[[], T]) -> T:
    """Run ``func`` in a fresh thread: Playwright's sync API keeps an event loop running
    in the test's thread, and asyncfork (rightly) treats that thread as async code."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func).result(timeout=20)


def traced_program() -> Any:
    with af.trace() as trace:
        assert af.run(program) == 5 + 49
    return trace


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The known program, traced once, and its HTML page."""
    trace = in_thread(traced_program)
    in_thread(lambda: af.shutdown(cancel=True, timeout=5))
    assert len(trace.forks) == EXPECTED_FORKS, [r.name for r in trace.forks]
    path = tmp_path_factory.mktemp("html") / "trace.html"
    assert trace.to_html(path) is True
    return trace, path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium, headless, with a fresh profile; fails loudly if it is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(
            f"Python Playwright is missing ({exc}): run `bash .ci/run` "
            "(or `pip install -e '.[test]'`)",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash .ci/run` (it runs `apt-get install chromium`)",
            pytrace=False,
        )
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


class Loaded:
    """A page showing the trace, with everything the browser complained about."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []


@pytest.fixture
def loaded(browser: Any, traced: tuple[Any, Path]) -> Iterator[Loaded]:
    page = browser.new_page()
    view = Loaded(page, traced[1].as_uri())
    page.on("console", lambda m: view.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: view.errors.append(str(e)))
    page.on("request", lambda r: view.requests.append(r.url))
    page.on("requestfailed", lambda r: view.failed.append(r.url))
    page.goto(view.url, wait_until="load", timeout=10_000)
    try:
        yield view
    finally:
        page.close()


def bar_boxes(page: Any) -> dict[int, tuple[float, float]]:
    """(x, width) of every bar drawn in the timeline's view, in the view's pixels."""
    shown = page.eval_on_selector_all(
        ".bar",
        """bars => bars.filter(b => b.style.display !== 'none')
            .map(b => [b.dataset.id, +b.getAttribute('x'), +b.getAttribute('width')])""",
    )
    return {int(i): (x, w) for i, x, w in shown}


def test_page_loads_offline_without_errors(loaded: Loaded) -> None:
    """One self-contained file: no console errors, no request but the page itself."""
    assert loaded.errors == []
    assert loaded.failed == []
    assert loaded.requests == [loaded.url]
    # The script ran: the timeline was drawn.
    assert loaded.page.locator("#axis text").count() > 1


def test_one_bar_per_fork(loaded: Loaded, traced: tuple[Any, Path]) -> None:
    """The timeline has exactly one bar per recorded fork, keyed by its id."""
    trace = traced[0]
    ids = loaded.page.eval_on_selector_all(".bar", "bars => bars.map(b => b.dataset.id)")
    assert len(ids) == EXPECTED_FORKS
    assert sorted(int(i) for i in ids) == sorted(r.id for r in trace.forks)
    kinds = {
        int(i): k
        for i, k in loaded.page.eval_on_selector_all(
            ".bar", "bars => bars.map(b => [b.dataset.id, b.getAttribute('class')])"
        )
    }
    for record in trace.forks:
        assert f"kind-{record.kind}" in kinds[record.id]


def test_bars_sit_on_their_thread_track_without_overlapping(
    loaded: Loaded, traced: tuple[Any, Path]
) -> None:
    """Bars on one row never overlap, and the sync fork is on a worker thread's track."""
    boxes = loaded.page.eval_on_selector_all(
        ".bar",
        "bars => bars.map(b => { const r = b.getBBox(); return [r.x, r.y, r.width]; })",
    )
    rows: dict[float, list[tuple[float, float]]] = {}
    for x, y, w in boxes:
        rows.setdefault(y, []).append((x, x + w))
    for spans in rows.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 2.5  # bars are at least 2 px wide, even if shorter
    labels = loaded.page.locator(".track-name").all_text_contents()
    # The loop's thread and the worker that ran the sync fork: one track each.
    assert sorted(labels) == sorted({r.thread for r in traced[0].forks})
    assert len(labels) == 2


def test_hover_shows_the_forks_details(loaded: Loaded, traced: tuple[Any, Path]) -> None:
    """Hovering a bar shows a tooltip with that fork's name, id, kind and outcome."""
    tip = loaded.page.locator("#tip")
    for record in traced[0].forks:
        loaded.page.hover(f'.bar[data-id="{record.id}"]', timeout=5_000)
        assert tip.is_visible()
        text = tip.inner_text()
        assert record.name in text
        assert re.search(rf"#{record.id}\b", text)
        assert record.kind in text
        assert record.outcome in text
    loaded.page.mouse.move(1, 1)
    assert not tip.is_visible()


def test_zoom_and_pan_widen_and_move_bars(loaded: Loaded, traced: tuple[Any, Path]) -> None:
    """The wheel zooms about the pointer, dragging pans, + zooms 2x about the centre."""
    page = loaded.page
    # Where the view begins on screen: #view's own box is measured by its content.
    left = page.locator("#plot").bounding_box()["x"] + LABEL_W
    width = float(page.get_attribute("#view", "width"))
    initial = bar_boxes(page)

    # A bar narrow enough to stay wholly in view through the zooms below (about 4.4x).
    # Widths follow the program's timing: if the widest such bar is thinner than 8 px,
    # zoom in with the wheel over it (zooming about the pointer keeps it in view) first.
    narrow = [(w, i) for i, (x, w) in initial.items() if w < width / 6 and x >= 0]
    assert narrow, initial
    w, target = max(narrow)
    for _ in range(12):
        x, w = bar_boxes(page)[target]
        if w > 8:
            break
        selector = f'.bar[data-id="{target}"]'
        bar_y = page.locator(selector).bounding_box()["y"] + 5
        before = page.get_attribute(selector, "width")
        page.mouse.move(left + x + w / 2, bar_y)
        page.mouse.wheel(0, -400)
        page.wait_for_function(
            "([sel, old]) => document.querySelector(sel).getAttribute('width') !== old",
            arg=[selector, before],
        )
    x, w = bar_boxes(page)[target]
    assert 8 < w < width / 6, (w, width)
    y = page.locator(f'.bar[data-id="{target}"]').bounding_box()["y"] + 5

    # Wheel over the bar: it widens, and the point under the pointer stays put. The
    # pointer splits the bar as the bar splits the free space, so the bar stays in view.
    share = x / (width - w)
    pointer = round(left + x + w * share)  # the pointer moves in whole pixels
    page.mouse.move(pointer, y)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "() => document.getElementById('zoom-level').textContent !== 'zoom \u00d71.0'"
    )
    x2, w2 = bar_boxes(page)[target]
    assert w2 > 1.5 * w
    # The point of the bar that was under the pointer is still under it.
    anchor = (pointer - left - x) / w
    assert left + x2 + w2 * anchor == pytest.approx(pointer, abs=1)
    x = x2

    # Drag the bar to the middle of the view: it moves, its width stays.
    page.mouse.move(left + x + w2 / 2, y)
    page.mouse.down()
    page.mouse.move(left + width / 2, y, steps=5)
    page.mouse.up()
    x, w3 = bar_boxes(page)[target]
    assert w3 == pytest.approx(w2)
    centre = x + w3 / 2
    assert centre == pytest.approx(width / 2, abs=2.5)  # the pointer moves in whole pixels

    # + doubles the zoom about the centre.
    level = float(page.inner_text("#zoom-level").removeprefix("zoom \u00d7"))
    page.click("#zoom-in")
    x, w4 = bar_boxes(page)[target]
    assert w4 == pytest.approx(2 * w3, rel=0.01)
    assert x + w4 / 2 == pytest.approx(width / 2 + 2 * (centre - width / 2), abs=0.5)
    assert float(page.inner_text("#zoom-level").removeprefix("zoom \u00d7")) == pytest.approx(
        2 * level, rel=0.05
    )

    page.click("#zoom-reset")
    after = bar_boxes(page)
    assert after.keys() == initial.keys()
    for i, box in initial.items():
        assert after[i] == pytest.approx(box)
    assert loaded.errors == []


def test_names_are_escaped(loaded: Loaded, traced: tuple[Any, Path]) -> None:
    """A fork name with <script>, <img>, quotes and & is shown as text, never run."""
    page = loaded.page
    evil = next(r for r in traced[0].forks if r.name == EVIL)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 2  # the data block and the page's script
    assert page.inner_text(f'.tree .node[data-id="{evil.id}"] .nm') == EVIL
    names = page.evaluate(
        "() => JSON.parse(document.getElementById('trace-data').textContent).forks.map(f => f.name)"
    )
    assert EVIL in names
    page.hover(f'.bar[data-id="{evil.id}"]', timeout=5_000)
    assert EVIL in page.inner_text("#tip")
    assert loaded.errors == []
    assert loaded.requests == [loaded.url]


def test_tree_nests_forks_under_their_parent(loaded: Loaded, traced: tuple[Any, Path]) -> None:
    """The fork tree is nested by parent: each fork sits in its parent's <details>."""
    shown = loaded.page.eval_on_selector_all(
        ".tree .node",
        """nodes => nodes.map(n => {
            const li = n.closest('li');
            const outer = li.parentElement.closest('details');
            return [n.dataset.id, outer ? outer.querySelector('summary').dataset.id : null];
        })""",
    )
    parents = {int(i): (int(p) if p is not None else None) for i, p in shown}
    assert parents == {r.id: r.parent for r in traced[0].forks}
    # A <details> collapses its subtree.
    root = next(r for r in traced[0].forks if r.parent is None)
    loaded.page.click(f'summary[data-id="{root.id}"]')
    hidden = next(r for r in traced[0].forks if r.parent == root.id)
    assert not loaded.page.locator(f'.tree .node[data-id="{hidden.id}"]').is_visible()


def test_summary_is_embedded(loaded: Loaded, traced: tuple[Any, Path]) -> None:
    """The page shows the trace's summary text (or says it is unavailable)."""
    try:
        expected = traced[0].summary(show=False).text()
    except NotImplementedError:
        assert "summary unavailable" in loaded.page.inner_text(".summary-pane")
    else:
        assert loaded.page.inner_text(".summary-pane pre") == expected.strip("\n")


def test_fork_running_at_trace_end_is_drawn_to_the_end(
    browser: Any, tmp_path: Path, loop_kind: str
) -> None:
    """A fork still running when the trace stops has no end: its bar reaches the trace's end."""
    release = threading.Event()

    def traced_open_fork() -> Any:
        with af.trace() as trace:
            fut = af.fork(release.wait, 5)
        release.set()
        assert fut.result(timeout=5) is True
        return trace

    trace = in_thread(traced_open_fork)
    (record,) = trace.forks
    assert record.finished is None
    path = tmp_path / "open.html"
    assert trace.to_html(path) is True
    page = browser.new_page()
    try:
        page.goto(path.as_uri(), wait_until="load", timeout=10_000)
        bar = page.locator(f'.bar[data-id="{record.id}"]').bounding_box()
        plot = page.locator("#view").bounding_box()
        assert bar["x"] + bar["width"] >= plot["x"] + plot["width"] - 1
        page.hover(f'.bar[data-id="{record.id}"]', timeout=5_000)
        assert "not recorded" in page.inner_text("#tip")
    finally:
        page.close()
