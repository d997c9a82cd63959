"""The HTML view's files (view/trace.html, trace.css, trace.js) and the timeline rules it shares.

The page's markup, CSS and script ship as package data and are inlined at export time, so
the page stays one self-contained file. Checked here: the files are in the package, the
export inlines them and requests nothing, the CSS applies and the script runs without an
error in a real browser (Debian's chromium through Playwright, as in tests/test_html.py),
and the HTML view and the Chrome trace follow the same rules for where the trace and an
unfinished fork end and how bars share lanes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

import asyncfork as af
from asyncfork import ForkRecord, WaitRecord
from asyncfork._tracing.export import chrome_events
from asyncfork._tracing.html import render_html

CHROMIUM = "/usr/bin/chromium"
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
VIEW_FILES = ("trace.html", "trace.css", "trace.js")
EVIL = "</script><script>window.__pwned = 1</script><!-- <style>"
LOOKS_LIKE_A_SLOT = "{{script}} {{css}} {# note #}"
DATA = re.compile(r'<script type="application/json" id="trace-data">(.*?)</script>', re.S)


def view_file(name: str) -> str:
    return (files("asyncfork._tracing") / "view" / name).read_text(encoding="utf-8")


MAIN, WORKER, LOOP = "MainThread", "asyncfork-worker-1", "asyncio loop 0x1"
# id, parent, name, kind, thread, created, started, finished, outcome
SAMPLE = [
    (1, None, "main", "coroutine", MAIN, 0.01, 0.011, 0.9, "value"),
    (2, 1, EVIL, "coroutine", MAIN, 0.02, 0.021, 0.5, "value"),
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
    assert {EVIL, LOOKS_LIKE_A_SLOT} <= names


# -- in the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium, headless, as tests/test_html.py launches it; fails if missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"Python Playwright is missing ({exc}): run `bash .ci/run`", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash .ci/run`", pytrace=False)
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
        assert EVIL in page.inner_text("#tip")
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
