"""Trace.to_html(): the self-contained HTML view, checked in a real headless browser.

The view is one HTML file with a zoomable timeline (a bar per fork), the fork tree and
the summary, details on hover; names escaped. Its markup, CSS and script ship as package
data (view/trace.html, trace.css, trace.js), inlined at export so the page stays one file
that requests nothing. The page is loaded from a file:// URL in Debian's chromium, driven
by Playwright (the ``browser`` fixture of conftest.py). The HTML view and the Chrome trace
follow the same rules for where the trace and an unfinished fork end and how bars share
lanes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import pytest

import asyncfork as af
from asyncfork import ForkRecord, WaitRecord
from asyncfork._tracing.export import chrome_events
from asyncfork._tracing.html import render_html

T = TypeVar("T")
LABEL_W = 240  # the track labels' column in the timeline
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


# -- the view's files, and the timeline rules the exports share ---------------------------

VIEW_FILES = ("trace.html", "trace.css", "trace.js")
SCRIPT_BREAKER = "</script><script>window.__pwned = 1</script><!-- <style>"
LOOKS_LIKE_A_SLOT = "{{script}} {{css}} {# note #}"
DATA = re.compile(r'<script type="application/json" id="trace-data">(.*?)</script>', re.S)


def view_file(name: str) -> str:
    return (files("asyncfork._tracing") / "view" / name).read_text(encoding="utf-8")


MAIN, WORKER, LOOP = "MainThread", "asyncfork-worker-1", "asyncio loop 0x1"
# id, parent, name, kind, thread, created, started, finished, outcome
SAMPLE = [
    (1, None, "main", "coroutine", MAIN, 0.01, 0.011, 0.9, "value"),
    (2, 1, SCRIPT_BREAKER, "coroutine", MAIN, 0.02, 0.021, 0.5, "value"),
    (3, 1, "b", "coroutine", MAIN, 0.03, 0.031, 0.4, "ValueError"),
    (4, 2, "open", "coroutine", MAIN, 0.04, 0.05, None, None),  # still running at the end
    (5, 1, "w", "thread", WORKER, 0.06, 0.07, 0.3, "value"),
    (6, 1, "q", "coroutine", None, 0.08, None, 0.2, "cancelled"),  # cancelled before its start
    (7, 1, LOOKS_LIKE_A_SLOT, "coroutine", None, 0.09, None, None, None),  # never started
    (8, 3, "d", "coroutine", MAIN, 0.1, 0.1, 0.35, "value"),
]


def sample_trace(duration: float | None = 1.0) -> af.Trace:
    """A made-up trace: nested forks, a thread fork, unfinished and never-started forks."""
    t = af.Trace()
    for i, parent, name, kind, thread, created, started, finished, outcome in SAMPLE:
        r = ForkRecord(i, parent, None, name, kind, LOOP, created, thread, started, finished)
        r.outcome, r.busy, r.steps = outcome, 0.001, 1
        t.forks.append(r)
    t.waits.append(WaitRecord(waiter=1, awaited=2, thread=MAIN, start=0.1, end=0.5))
    t.waits.append(WaitRecord(waiter=2, awaited=4, thread=MAIN, start=0.2))
    t.duration = duration  # None: never started, as if put together by hand
    return t


def page_data(page: str) -> dict[str, Any]:
    found = DATA.search(page)
    assert found is not None
    data: dict[str, Any] = json.loads(found[1])
    return data


# -- the files -------------------------------------------------------------------------------


def test_view_files_are_package_data() -> None:
    """The three files ship in the package and are read through importlib.resources."""
    for name in VIEW_FILES:
        assert (files("asyncfork._tracing") / "view" / name).is_file(), name
        assert view_file(name).strip()
    template = view_file("trace.html")
    slots = re.findall(r"\{\{(\w+)\}\}", re.sub(r"\{#.*?#\}", "", template, flags=re.S))
    assert sorted(slots) == sorted(["css", "stats", "tree", "summary", "data", "script"])


def test_export_inlines_the_css_and_the_script(tmp_path: Path) -> None:
    """The written page holds trace.css and trace.js verbatim, and no placeholder is left."""
    path = tmp_path / "trace.html"
    assert sample_trace().to_html(path) is True
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>\n")
    assert f"<style>\n{view_file('trace.css')}</style>" in page
    assert f"<script>\n{view_file('trace.js')}</script>" in page
    # Exactly once each, though a fork is named like the placeholders.
    assert page.count(view_file("trace.js")) == page.count(view_file("trace.css")) == 1
    assert "The page html.py writes" not in page  # the template's note is dropped
    for slot in ("stats", "tree", "summary", "data"):
        assert "{{" + slot + "}}" not in page
    assert f'<span class="nm">{LOOKS_LIKE_A_SLOT}</span>' in page  # left as it is


def test_export_requests_nothing(tmp_path: Path) -> None:
    """No src=/href= but data: URLs, no url() in the CSS, and a CSP that forbids loading."""
    page = render_html(sample_trace())
    links = re.findall(r"""\b(?:src|href|action|srcset)\s*=\s*["']?([^"'\s>]*)""", page, re.I)
    assert links, "expected at least the data: icon"
    assert all(link.startswith("data:") for link in links), links
    assert "@import" not in page
    assert all(
        u.startswith(("data:", "'data:", '"data:')) for u in re.findall(r"url\(([^)]*)", page)
    )
    # The only http(s) URL is the SVG namespace, which is a name, not a request.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page


def test_names_cannot_end_the_inlined_elements() -> None:
    """'</script>' and '<!--' in a fork name stay inside the JSON data block."""
    page = render_html(sample_trace())
    assert page.lower().count("<script") == page.lower().count("</script") == 2
    assert page.lower().count("<style") == page.lower().count("</style") == 1
    names = {f["name"] for f in page_data(page)["forks"]}
    assert {SCRIPT_BREAKER, LOOKS_LIKE_A_SLOT} <= names


# -- in the browser --------------------------------------------------------------------------


def test_page_runs_without_errors_and_the_css_applies(browser: Any, tmp_path: Path) -> None:
    """No console error or page error; computed styles come from trace.css; bars drawn."""
    path = tmp_path / "trace.html"
    trace = sample_trace()
    assert trace.to_html(path) is True
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(path.as_uri(), wait_until="load", timeout=10_000)
        assert page.locator(".bar").count() == len(trace.forks)  # the script ran
        style = page.evaluate(
            """() => {
                const s = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
                return {
                    h1: s("h1", "fontSize"),
                    toolbar: s(".toolbar", "display"),
                    lower: s(".lower", "display"),
                    coroutine: s('.bar.kind-coroutine.out-ok', "fill"),
                    thread: s(".bar.kind-thread", "fill"),
                    raised: s(".bar.out-error", "fill"),
                    tip: s("#tip", "position"),
                };
            }"""
        )
        assert style == {
            "h1": "18px",
            "toolbar": "flex",
            "lower": "grid",
            "coroutine": "rgb(78, 121, 167)",
            "thread": "rgb(89, 161, 79)",
            "raised": "rgb(225, 87, 89)",
            "tip": "fixed",
        }
        assert page.evaluate("() => window.__pwned") is None
        page.hover('.bar[data-id="2"]', timeout=5_000)
        assert SCRIPT_BREAKER in page.inner_text("#tip")
        assert errors == []
        assert requests == [path.as_uri()]
    finally:
        page.close()


# -- the rules the HTML view and the Chrome trace share ---------------------------------------


def chrome_slices(trace: af.Trace) -> dict[int, dict[str, Any]]:
    return {e["args"]["id"]: e for e in chrome_events(trace) if e["ph"] == "X"}


@pytest.mark.parametrize("duration", [1.0, None])
def test_unfinished_forks_run_to_the_trace_end_in_both_views(duration: float | None) -> None:
    """Stopped: the end is its duration. Never started (made by hand): the last time recorded.
    The HTML bar, the Chrome slice and the summary's wall time agree."""
    trace = sample_trace(duration)
    end = 1.0 if duration is not None else 0.9  # main finished last, at 0.9
    data = page_data(render_html(trace))
    assert data["end"] == end
    assert trace.summary(show=False).wall == end
    bars = {f["id"]: (f["t0"], f["t1"]) for f in data["forks"]}
    slices = chrome_slices(trace)
    for r in trace.forks:
        start = r.started if r.started is not None else r.created
        stop = r.finished if r.finished is not None else end
        assert bars[r.id] == pytest.approx((start, stop)), r.name
        chrome = slices[r.id]
        assert (chrome["ts"], chrome["ts"] + chrome["dur"]) == pytest.approx(
            (start * 1e6, stop * 1e6)
        )


def test_both_views_put_forks_on_the_same_tracks() -> None:
    """A track per thread (and loop, for coroutines); a never-started fork on its loop's."""
    trace = sample_trace()
    data = page_data(render_html(trace))
    html_tracks = [(t["thread"], t["loop"]) for t in data["tracks"]]
    assert html_tracks == [
        ("MainThread", "asyncio loop 0x1"),
        ("asyncfork-worker-1", ""),
        ("not started", "asyncio loop 0x1"),
    ]
    names = {
        e["tid"]: e["args"]["name"]
        for e in chrome_events(trace)
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    slices = chrome_slices(trace)
    for fork in data["forks"]:
        thread, loop = html_tracks[fork["track"]]
        label = names[slices[fork["id"]]["tid"]]
        assert label.startswith(f"{thread} · {loop}" if loop else thread), (label, fork["name"])


def test_lanes_never_overlap_in_html_and_nest_in_chrome() -> None:
    """HTML: bars (with their queue lines) on one lane are disjoint. Chrome: slices on one
    thread nest or are disjoint, and a child that fits inside its parent shares its lane."""
    trace = sample_trace()
    data = page_data(render_html(trace))
    by_lane: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for f in data["forks"]:
        by_lane.setdefault((f["track"], f["lane"]), []).append((f["created"], f["t1"]))
    for spans in by_lane.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
    slices = chrome_slices(trace)
    by_tid: dict[int, list[tuple[float, float]]] = {}
    for e in slices.values():
        by_tid.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_tid.values():
        for a in spans:
            for b in spans:
                disjoint = a[1] <= b[0] or b[1] <= a[0]
                nested = (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])
                assert disjoint or nested, (a, b)
    assert slices[8]["tid"] == slices[3]["tid"]  # d (0.1-0.35) inside b (0.031-0.4)
    assert slices[4]["tid"] != slices[2]["tid"]  # open outlives its parent


# -- forks run on remote workers (a Dask cluster) ------------------------------------------

REMOTE_WORKERS = ("tcp://127.0.0.1:40001", "tcp://127.0.0.1:40002")


def remote_sample_trace() -> af.Trace:
    """main, on the loop, forks three calls run remotely: two on the first worker, one after
    the other, and one on the second."""
    w1, w2 = REMOTE_WORKERS
    t = af.Trace()
    # id, name, worker, created, finished, the run on the worker (start, stop)
    for i, name, worker, created, finished, run in [
        (1, "main", None, 0.0, 1.0, None),
        (2, "a", w1, 0.1, 0.5, (0.15, 0.45)),
        (3, "b", w1, 0.5, 0.9, (0.55, 0.85)),
        (4, "c", w2, 0.1, 0.6, (0.12, 0.55)),
    ]:
        kind, thread = ("coroutine", MAIN) if worker is None else ("executor", "Client")
        parent = None if i == 1 else 1
        r = ForkRecord(i, parent, None, name, kind, LOOP, created, thread, created, finished)
        r.outcome, r.worker = "value", worker
        if run is not None:
            r.remote_start, r.remote_stop = run
        r.busy = 0.01 if run is None else run[1] - run[0]
        t.forks.append(r)
    t.duration = 1.0
    return t


def test_remote_forks_are_drawn_on_their_workers_tracks(browser: Any, tmp_path: Path) -> None:
    """One track per worker, labelled with its address; each remote fork's bar is its run
    there, in the remote colour, on its worker's track; hovering it names the worker."""
    trace = remote_sample_trace()
    path = tmp_path / "remote.html"
    assert trace.to_html(path) is True
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(path.as_uri(), wait_until="load", timeout=10_000)
        labels = page.eval_on_selector_all(
            ".track-name",
            "ts => ts.map(t => [t.textContent, t.getBBox().y, t.nextSibling.textContent])",
        )
        assert [(name, sub) for name, _, sub in labels] == [
            (MAIN, f"{LOOP} · 1 fork"),
            (REMOTE_WORKERS[1], "remote worker · 1 fork"),
            (REMOTE_WORKERS[0], "remote worker · 2 forks"),
        ]
        tops = [y for _, y, _ in labels]
        # Each bar lies in its track's band: below its label's top, above the next one's.
        track_of = {"main": 0, "a": 2, "b": 2, "c": 1}
        for record in trace.forks:
            selector = f'.bar[data-id="{record.id}"]'
            box = page.eval_on_selector(selector, "b => { const r = b.getBBox(); return r.y; }")
            index = track_of[record.name]
            assert tops[index] - 15 <= box, record.name
            if index + 1 < len(tops):
                assert box < tops[index + 1] - 15, record.name
            cls = page.get_attribute(selector, "class") or ""
            assert ("remote" in cls.split()) == (record.worker is not None), cls
        fills = page.eval_on_selector_all(
            ".bar", "bs => bs.map(b => [b.dataset.id, getComputedStyle(b).fill])"
        )
        assert {int(i): fill for i, fill in fills}[2] == "rgb(242, 142, 43)"
        swatch = "e => getComputedStyle(e).backgroundColor"
        assert page.eval_on_selector('.tree .node[data-id="2"] .sw', swatch) == "rgb(242, 142, 43)"
        assert REMOTE_WORKERS[0] in page.inner_text('.tree .node[data-id="2"]')
        # a and b ran one after the other on worker 1: one lane, a's bar left of b's.
        a, b = bar_boxes(page)[2], bar_boxes(page)[3]
        assert a[0] + a[1] <= b[0] + 0.5
        page.hover('.bar[data-id="3"]', timeout=5_000)
        tip = page.inner_text("#tip")
        assert REMOTE_WORKERS[0] in tip
        assert "its run on the worker" in tip
        assert errors == []
    finally:
        page.close()
