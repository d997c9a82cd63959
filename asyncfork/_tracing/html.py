"""The self-contained HTML view of a trace: a zoomable timeline, the fork tree, the summary.

One file, no network: the CSS and the script are inline, the records are embedded as
JSON, and a Content-Security-Policy forbids loading anything. Names come from user
code, so every one is escaped: ``html.escape`` in markup, ``<``/``>``/``&`` as
``\\u00XX`` in the JSON (so ``</script>`` can never end the data block).
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import heapq
import html
import json
import os
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recorder import ForkRecord, Trace

_KINDS = ("coroutine", "thread", "executor")
# Above this many forks the tree opens only its first two levels.
_TREE_OPEN_ALL = 300


def write_html(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` as one self-contained HTML page to ``path``."""
    page = render_html(trace)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)


def render_html(trace: Trace) -> str:
    """The HTML page for ``trace``, as a string."""
    end = _trace_end(trace)
    data = _timeline_data(trace, end)
    summary = _summary_text(trace)
    if summary is None:
        summary_html = '<p class="note">summary unavailable</p>'
    else:
        summary_html = f"<pre>{html.escape(summary)}</pre>"
    stats = (
        f"wall time {_fmt(end)} · {len(trace.forks)} forks · {len(trace.waits)} waits · "
        f"{len(data['tracks'])} tracks"
    )
    return (
        _HEAD
        + f'<h1>asyncfork trace <span class="stats">{html.escape(stats)}</span></h1>\n'
        + _TIMELINE
        + '<div class="lower">\n<section class="tree-pane"><h2>Fork tree</h2>\n'
        + _tree_html(trace.forks, end)
        + '</section>\n<section class="summary-pane"><h2>Summary</h2>\n'
        + summary_html
        + "</section>\n</div>\n"
        + '<div id="tip" role="tooltip" hidden></div>\n'
        + '<script type="application/json" id="trace-data">'
        + _json_for_script(data)
        + "</script>\n<script>"
        + _SCRIPT
        + "</script>\n</body>\n</html>\n"
    )


def _trace_end(trace: Trace) -> float:
    """The trace's length; for a trace still recording, the time now."""
    if trace.duration is not None:
        return trace.duration
    return trace.now() if trace.origin else 0.0


def _summary_text(trace: Trace) -> str | None:
    from .analysis import summarize

    try:
        return summarize(trace).text()
    except NotImplementedError:  # the analysis is not written yet
        return None


def _kind(record: ForkRecord) -> str:
    return record.kind if record.kind in _KINDS else "other"


def _outcome_class(outcome: str | None) -> str:
    if outcome is None:
        return "unfinished"
    if outcome in ("value", "cancelled"):
        return "ok" if outcome == "value" else "cancelled"
    return "error"


def _track_key(record: ForkRecord) -> tuple[str, str]:
    """The timeline track a fork is drawn on: its thread, and for coroutines its loop."""
    if record.thread is None:
        return ("not started", "")
    return (record.thread, record.loop if record.kind == "coroutine" else "")


def _timeline_data(trace: Trace, end: float) -> dict[str, Any]:
    """Forks placed on tracks (one per thread/loop) and lanes (so bars never overlap)."""
    waits: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    for wait in trace.waits:
        if wait.waiter is not None:
            entry = waits[wait.waiter]
            entry[0] += 1
            entry[1] += (wait.end if wait.end is not None else end) - wait.start

    by_track: dict[tuple[str, str], list[ForkRecord]] = defaultdict(list)
    for record in trace.forks:
        by_track[_track_key(record)].append(record)
    # Tracks in order of their first fork; in each, lanes packed greedily by creation time.
    ordered = sorted(by_track.items(), key=lambda item: min(r.created for r in item[1]))
    tracks: list[dict[str, Any]] = []
    forks: list[dict[str, Any]] = []
    for index, ((thread, loop), records) in enumerate(ordered):
        busy_until: list[tuple[float, int]] = []  # (end, lane) of bars still running
        free: list[int] = []
        lanes = 0
        for record in sorted(records, key=lambda r: (r.created, r.id)):
            while busy_until and busy_until[0][0] <= record.created:
                heapq.heappush(free, heapq.heappop(busy_until)[1])
            if free:
                lane = heapq.heappop(free)
            else:
                lane, lanes = lanes, lanes + 1
            finish = record.finished if record.finished is not None else end
            heapq.heappush(busy_until, (max(finish, record.created), lane))
            count, waited = waits.get(record.id, (0, 0.0))
            forks.append(
                {
                    "id": record.id,
                    "parent": record.parent,
                    "group": record.group,
                    "name": record.name,
                    "kind": _kind(record),
                    "loop": record.loop,
                    "thread": record.thread,
                    "created": record.created,
                    "started": record.started,
                    "finished": record.finished,
                    "outcome": record.outcome,
                    "cls": _outcome_class(record.outcome),
                    "busy": record.busy,
                    "steps": record.steps,
                    "waits": count,
                    "waited": waited,
                    "track": index,
                    "lane": lane,
                }
            )
        tracks.append({"thread": thread, "loop": loop, "lanes": lanes, "forks": len(records)})
    forks.sort(key=lambda f: f["id"])
    return {"end": end, "tracks": tracks, "forks": forks}


def _json_for_script(data: dict[str, Any]) -> str:
    """JSON that cannot close or confuse the <script> element it is embedded in."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fmt(seconds: float | None) -> str:
    """A duration for people: µs, ms or s, three significant digits."""
    if seconds is None:
        return "—"
    size = abs(seconds)
    if size < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if size < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.2f} s"


def _tree_label(record: ForkRecord, end: float) -> str:
    if record.started is None:
        lifetime = "not started"
    else:
        finished = record.finished if record.finished is not None else end
        lifetime = _fmt(finished - record.started)
    outcome = record.outcome if record.outcome is not None else "unfinished"
    group = f" · group {record.group}" if record.group is not None else ""
    meta = f"#{record.id} · {record.kind}{group} · {lifetime} · {outcome}"
    return (
        f'<span class="sw kind-{_kind(record)} out-{_outcome_class(record.outcome)}"></span>'
        f'<span class="nm">{html.escape(record.name)}</span> '
        f'<span class="meta">{html.escape(meta)}</span>'
    )


def _tree_html(records: list[ForkRecord], end: float) -> str:
    """Nested lists by parent; a fork with children is a collapsible <details>."""
    ids = {r.id for r in records}
    children: dict[int, list[ForkRecord]] = defaultdict(list)
    roots: list[ForkRecord] = []
    for record in records:
        if record.parent is not None and record.parent in ids:
            children[record.parent].append(record)
        else:
            roots.append(record)
    if not roots:
        return '<p class="note">no forks were recorded</p>\n'
    open_all = len(records) <= _TREE_OPEN_ALL
    out = ['<ul class="tree">']
    # An explicit stack, not recursion: a chain of nested forks can be deep.
    stack: list[tuple[ForkRecord, int] | None] = [(r, 0) for r in reversed(roots)]
    while stack:
        item = stack.pop()
        if item is None:
            out.append("</ul></details></li>")
            continue
        record, depth = item
        label = _tree_label(record, end)
        kids = children.get(record.id)
        if not kids:
            out.append(f'<li><span class="node" data-id="{record.id}">{label}</span></li>')
            continue
        is_open = " open" if open_all or depth < 2 else ""
        out.append(
            f'<li><details{is_open}><summary class="node" data-id="{record.id}">{label} '
            f'<span class="meta">({len(kids)} children)</span></summary><ul>'
        )
        stack.append(None)
        stack.extend((kid, depth + 1) for kid in reversed(kids))
    out.append("</ul>\n")
    return "".join(out)


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>asyncfork trace</title>
<style>
:root { --fg: #1d2330; --muted: #5b6474; --line: #d9dde4; --band: #f4f6f9; }
* { box-sizing: border-box; }
body { margin: 16px 20px; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: #fff; }
h1 { font-size: 18px; margin: 0 0 8px; }
h1 .stats { font-size: 13px; font-weight: normal; color: var(--muted); margin-left: 10px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; margin: 6px 0; }
.toolbar button { font: inherit; min-width: 30px; padding: 2px 8px; border: 1px solid #aab2bf;
  border-radius: 4px; background: #f7f8fa; cursor: pointer; }
.toolbar button:hover { background: #e9edf3; }
#zoom-level { color: var(--muted); min-width: 70px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; color: var(--muted); }
.legend span { display: inline-flex; align-items: center; gap: 4px; }
.hint { color: var(--muted); font-size: 12px; }
#timeline { border: 1px solid var(--line); border-radius: 4px; user-select: none; }
#axis { display: block; border-bottom: 1px solid var(--line); }
#body { max-height: 62vh; overflow-y: auto; overflow-x: hidden; cursor: grab; }
#body.dragging { cursor: grabbing; }
#plot { display: block; }
#hscroll { overflow-x: scroll; overflow-y: hidden; height: 16px; }
#hscroll div { height: 1px; }
.axis-label { font-size: 11px; fill: var(--muted); }
.grid { stroke: #e6e9ee; stroke-width: 1; }
.band { fill: var(--band); }
.track-sep { stroke: var(--line); }
.track-name { font-size: 12px; font-weight: 600; fill: var(--fg); }
.track-sub { font-size: 11px; fill: var(--muted); }
.bar { stroke: rgba(0, 0, 0, .35); stroke-width: 1; cursor: pointer; }
.bar:hover, .bar.hl { stroke: #000; stroke-width: 2; }
.queue { fill: #9aa3b0; }
.lbl { font-size: 11px; fill: #fff; pointer-events: none; }
.kind-coroutine { fill: #4e79a7; background: #4e79a7; }
.kind-thread { fill: #59a14f; background: #59a14f; }
.kind-executor { fill: #9467bd; background: #9467bd; }
.kind-other { fill: #7f7f7f; background: #7f7f7f; }
.out-error { fill: #e15759; background: #e15759; }
.out-cancelled { fill: #a9a9a9; background: #a9a9a9; }
.out-unfinished { fill-opacity: .45; opacity: .6; stroke-dasharray: 3 2; }
.lbl.on-light { fill: #1d2330; }
.sw { display: inline-block; width: 12px; height: 10px; border-radius: 2px;
  border: 1px solid rgba(0, 0, 0, .35); vertical-align: -1px; }
.lower { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 0 28px; }
@media (max-width: 900px) { .lower { grid-template-columns: minmax(0, 1fr); } }
.tree, .tree ul { list-style: none; margin: 0; padding-left: 18px; }
.tree { padding-left: 2px; }
.tree li { margin: 1px 0; white-space: nowrap; }
.tree summary { cursor: pointer; }
.tree .node:hover { background: #eef2f8; }
.tree .nm { font-weight: 600; margin-left: 4px; }
.meta { color: var(--muted); font-size: 12px; }
.tree-pane { overflow-x: auto; }
pre { background: var(--band); border: 1px solid var(--line); border-radius: 4px; padding: 10px;
  overflow-x: auto; font: 12px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; margin: 0; }
.note { color: var(--muted); font-style: italic; }
#tip { position: fixed; z-index: 10; pointer-events: none; max-width: 460px; padding: 6px 9px;
  background: #fff; border: 1px solid #8a93a3; border-radius: 4px;
  box-shadow: 0 2px 8px rgba(0, 0, 0, .18); font-size: 12px; }
#tip .tt { font-weight: 600; margin-bottom: 3px; overflow-wrap: anywhere; }
#tip table { border-collapse: collapse; }
#tip td { padding: 0 8px 0 0; vertical-align: top; overflow-wrap: anywhere; }
#tip td:first-child { color: var(--muted); }
</style>
</head>
<body>
"""

_TIMELINE = """<section>
<div class="toolbar">
<button type="button" id="zoom-out" title="zoom out (-)">&minus;</button>
<button type="button" id="zoom-in" title="zoom in (+)">+</button>
<button type="button" id="zoom-reset" title="fit the view to the forks (0)">reset</button>
<span id="zoom-level">zoom &times;1</span>
<span class="legend">
<span><i class="sw kind-coroutine"></i>coroutine</span>
<span><i class="sw kind-thread"></i>thread</span>
<span><i class="sw kind-executor"></i>executor</span>
<span><i class="sw out-error"></i>raised</span>
<span><i class="sw out-cancelled"></i>cancelled</span>
<span><i class="sw kind-coroutine out-unfinished"></i>unfinished</span>
<span><i class="sw queue" style="background:#9aa3b0;height:4px"></i>created, not started</span>
</span>
<span class="hint">wheel: zoom · drag or scrollbar: pan · hover a bar for details</span>
</div>
<div id="timeline">
<svg id="axis" height="24"></svg>
<div id="body"><svg id="plot"></svg></div>
<div id="hscroll"><div></div></div>
</div>
<noscript><p class="note">The timeline needs JavaScript; the tree and summary below do not.</p>
</noscript>
</section>
"""

# The timeline: SVG elements made once per fork; zooming and panning only move them.
_SCRIPT = r"""
(function () {
"use strict";
const data = JSON.parse(document.getElementById("trace-data").textContent);
const forks = data.forks, tracks = data.tracks;
const END = data.end > 0 ? data.end : 1e-6;
const ROW = 18, BAR = 14, LABEL_W = 240, GAP = 8, MIN_W = 2, NS = "http://www.w3.org/2000/svg";
const TRACK_MIN = 38;  // room for the two lines of a track's label
const byId = new Map(forks.map(function (f) { return [f.id, f]; }));
const axis = document.getElementById("axis"), body = document.getElementById("body");
const plot = document.getElementById("plot"), hscroll = document.getElementById("hscroll");
const spacer = hscroll.firstElementChild, tip = document.getElementById("tip");
const zoomLevel = document.getElementById("zoom-level");
// The visible window is [v0, v0 + span] seconds. It starts fitted to the forks (a
// trace often begins well before its first fork); zooming out reaches [0, END].
let fitFrom = END, fitTo = 0;
forks.forEach(function (f) {
  fitFrom = Math.min(fitFrom, f.created);
  fitTo = Math.max(fitTo, f.finished === null ? END : f.finished);
});
if (!(fitTo > fitFrom)) { fitFrom = 0; fitTo = END; }
const pad = (fitTo - fitFrom) * 0.02;
fitFrom = Math.max(0, fitFrom - pad);
fitTo = Math.min(END, fitTo + pad);
const FIT = fitTo - fitFrom, MIN_SPAN = FIT * 1e-6;
let v0 = fitFrom, span = FIT;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(s) {
  if (s === null || s === undefined) return "\u2014";
  const a = Math.abs(s);
  if (a < 1e-3) return (s * 1e6).toPrecision(3).replace(/\.?0+$/, "") + " \u00b5s";
  if (a < 1) return (s * 1e3).toPrecision(3).replace(/\.?0+$/, "") + " ms";
  return s.toFixed(2) + " s";
}

// Track rows: a band per track, a label column on the left.
const trackTop = [];
let height = 0;
function trackHeight(t) { return Math.max(Math.max(t.lanes, 1) * ROW + GAP, TRACK_MIN); }
tracks.forEach(function (t) { trackTop.push(height); height += trackHeight(t); });
height = Math.max(height, ROW);
plot.setAttribute("height", height);
const bands = el("g", {}, plot);
const labels = el("svg", {x: 0, y: 0, width: LABEL_W - 8, height: height}, plot);
const view = el("svg", {id: "view", x: LABEL_W, y: 0, height: height}, plot);
const gridLayer = el("g", {}, view);
const barLayer = el("g", {}, view);
tracks.forEach(function (t, i) {
  const y = trackTop[i], h = trackHeight(t);
  if (i % 2 === 0) el("rect", {class: "band", x: 0, y: y, width: "100%", height: h}, bands);
  el("line", {class: "track-sep", x1: 0, x2: "100%", y1: y + h, y2: y + h}, bands);
  const name = el("text", {class: "track-name", x: 8, y: y + 15}, labels);
  name.textContent = t.thread;
  const sub = el("text", {class: "track-sub", x: 8, y: y + 29}, labels);
  const count = t.forks + (t.forks === 1 ? " fork" : " forks");
  sub.textContent = (t.loop ? t.loop + " \u00b7 " : "") + count;
});
el("line", {class: "track-sep", x1: LABEL_W - 1, x2: LABEL_W - 1, y1: 0, y2: height}, plot);

const items = forks.map(function (f) {
  const y = trackTop[f.track] + f.lane * ROW + GAP / 2 + (ROW - BAR) / 2;
  const q = el("rect", {class: "queue", y: y + BAR / 2 - 2, height: 4}, barLayer);
  const r = el("rect", {class: "bar kind-" + f.kind + " out-" + f.cls, "data-id": f.id,
                        y: y, height: BAR, rx: 2}, barLayer);
  const light = f.cls === "cancelled" || f.cls === "unfinished";
  const t = el("text", {class: "lbl" + (light ? " on-light" : ""), y: y + BAR - 3}, barLayer);
  return {f: f, q: q, r: r, t: t, shown: ""};
});

function show(e, on) { e.style.display = on ? "" : "none"; }
function plotWidth() { return Math.max(100, body.clientWidth - LABEL_W); }

function render() {
  const W = plotWidth(), k = W / span;
  plot.setAttribute("width", LABEL_W + W);
  view.setAttribute("width", W);
  axis.setAttribute("width", LABEL_W + W);
  for (const it of items) {
    const f = it.f;
    const start = f.started === null ? f.created : f.started;
    const finish = f.finished === null ? END : f.finished;
    const a = (start - v0) * k, b = (finish - v0) * k, c = (f.created - v0) * k;
    if (b < -5 || a > W + 5) {  // out of view
      show(it.r, false); show(it.q, false); show(it.t, false);
      continue;
    }
    const x0 = Math.max(a, -5), x1 = Math.max(Math.min(b, W + 5), x0);
    show(it.r, true);
    it.r.setAttribute("x", x0);
    it.r.setAttribute("width", Math.max(x1 - x0, MIN_W));
    const qa = Math.max(c, -5), qb = Math.min(a, W + 5);
    show(it.q, qb - qa > 0.5);
    it.q.setAttribute("x", qa);
    it.q.setAttribute("width", Math.max(qb - qa, 0));
    const left = Math.max(x0, 0), room = Math.min(x1, W) - left - 6;
    const n = Math.floor(room / 6.3);
    if (n >= 3) {
      const label = f.name.length <= n ? f.name : f.name.slice(0, n - 1) + "\u2026";
      if (label !== it.shown) { it.t.textContent = label; it.shown = label; }
      it.t.setAttribute("x", left + 3);
      show(it.t, true);
    } else {
      show(it.t, false);
    }
  }
  drawAxis(W, k);
  syncScrollbar(W);
  const z = FIT / span;  // relative to the fitted view
  zoomLevel.textContent = "zoom \u00d7" + (z < 10 ? z.toPrecision(2) : Math.round(z));
}

function drawAxis(W, k) {
  while (axis.firstChild) axis.removeChild(axis.firstChild);
  while (gridLayer.firstChild) gridLayer.removeChild(gridLayer.firstChild);
  const raw = span / Math.max(W / 110, 1);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p, step = (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  const unit = step < 1e-3 ? [1e-6, " \u00b5s"] : step < 1 ? [1e-3, " ms"] : [1, " s"];
  const digits = Math.max(0, Math.ceil(-Math.log10(step / unit[0]) - 1e-9));
  const label = el("text", {class: "axis-label", x: 8, y: 16}, axis);
  label.textContent = "time since the trace started";
  for (let t = Math.ceil(v0 / step) * step; t <= v0 + span + 1e-12; t += step) {
    const x = (t - v0) * k;
    el("line", {class: "grid", x1: x, x2: x, y1: 0, y2: height}, gridLayer);
    el("line", {class: "grid", x1: LABEL_W + x, x2: LABEL_W + x, y1: 18, y2: 24}, axis);
    if (x > W - 30) continue;
    const text = el("text", {class: "axis-label", x: LABEL_W + x + 3, y: 14}, axis);
    text.textContent = (t / unit[0]).toFixed(digits) + unit[1];
  }
}

// The window may pan until an end of the trace reaches the middle of the view, so
// any bar can be brought to the centre: v0 lies in [-span / 2, END - span / 2].
function clampWindow() {
  span = Math.min(Math.max(span, MIN_SPAN), END);
  v0 = Math.min(Math.max(v0, -span / 2), END - span / 2);
}

// The scrollbar mirrors the window: its thumb is the visible share of that range. Only
// a scroll the user made moves the window (the one render() makes is remembered).
let setByUs = -1;
function syncScrollbar(W) {
  hscroll.style.marginLeft = LABEL_W + "px";
  hscroll.style.width = W + "px";
  spacer.style.width = Math.min(W * (END + span) / span, 1e7) + "px";
  const range = hscroll.scrollWidth - hscroll.clientWidth;
  hscroll.scrollLeft = Math.round((v0 + span / 2) / END * range);
  setByUs = hscroll.scrollLeft;
}
hscroll.addEventListener("scroll", function () {
  const range = hscroll.scrollWidth - hscroll.clientWidth;
  if (range <= 0 || Math.abs(hscroll.scrollLeft - setByUs) < 1) return;
  v0 = hscroll.scrollLeft / range * END - span / 2;
  clampWindow();
  render();
});
function zoom(factor, px) {  // px: the x in the plot that stays put
  const W = plotWidth();
  if (px === undefined || px < 0 || px > W) px = W / 2;
  const t = v0 + px / W * span;
  span = span / factor;
  clampWindow();
  v0 = t - px / W * span;
  clampWindow();
  render();
}
function reset() { v0 = fitFrom; span = FIT; render(); }
document.getElementById("zoom-in").addEventListener("click", function () { zoom(2); });
document.getElementById("zoom-out").addEventListener("click", function () { zoom(0.5); });
document.getElementById("zoom-reset").addEventListener("click", reset);
document.addEventListener("keydown", function (e) {
  if (e.target instanceof HTMLInputElement) return;
  if (e.key === "+" || e.key === "=") zoom(2);
  else if (e.key === "-") zoom(0.5);
  else if (e.key === "0") reset();
});
function onWheel(e) {
  if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {  // sideways: pan
    v0 += (e.deltaX || e.deltaY) / plotWidth() * span;
    clampWindow();
  } else {
    // The plot's box, not the nested <svg>'s: Chrome measures that by its content.
    const px = e.clientX - plot.getBoundingClientRect().left - LABEL_W;
    zoom(Math.exp(-e.deltaY * 0.002), px);
  }
  e.preventDefault();
  render();
}
body.addEventListener("wheel", onWheel, {passive: false});
axis.addEventListener("wheel", onWheel, {passive: false});

// Dragging pans: sideways through time, up and down through the tracks.
let drag = null;
body.addEventListener("mousedown", function (e) {
  if (e.button !== 0) return;
  drag = {x: e.clientX, y: e.clientY, v0: v0, top: body.scrollTop, moved: false};
  body.classList.add("dragging");
  e.preventDefault();
});
window.addEventListener("mousemove", function (e) {
  if (!drag) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 2) { drag.moved = true; hideTip(); }
  v0 = drag.v0 - dx / plotWidth() * span;
  clampWindow();
  body.scrollTop = drag.top - dy;
  render();
});
window.addEventListener("mouseup", function () { drag = null; body.classList.remove("dragging"); });
window.addEventListener("resize", render);

// Details on hover.
let tipFor = null;
function row(table, key, value) {
  const tr = document.createElement("tr");
  const a = document.createElement("td"), b = document.createElement("td");
  a.textContent = key; b.textContent = value;
  tr.appendChild(a); tr.appendChild(b); table.appendChild(tr);
}
function fillTip(f) {
  tip.textContent = "";
  const title = document.createElement("div");
  title.className = "tt";
  title.textContent = f.name + "  #" + f.id;
  tip.appendChild(title);
  const table = document.createElement("table");
  const parent = f.parent === null ? null : byId.get(f.parent);
  row(table, "name", f.name);
  row(table, "id", "#" + f.id);
  const parentName = parent ? " " + parent.name : "";
  row(table, "parent", f.parent === null ? "\u2014 (root)" : "#" + f.parent + parentName);
  if (f.group !== null) row(table, "group", f.group);
  row(table, "kind", f.kind);
  row(table, "thread", f.thread === null ? "\u2014" : f.thread);
  row(table, "loop", f.loop);
  row(table, "created", fmt(f.created));
  row(table, "started", fmt(f.started));
  row(table, "finished", f.finished === null ? "\u2014 (not recorded)" : fmt(f.finished));
  const start = f.started === null ? f.created : f.started;
  row(table, "duration", f.finished === null ? "\u2014" : fmt(f.finished - start));
  row(table, "busy", fmt(f.busy) + " in " + f.steps + (f.steps === 1 ? " step" : " steps"));
  if (f.waits) {
    row(table, "waited", fmt(f.waited) + " in " + f.waits + (f.waits === 1 ? " wait" : " waits"));
  }
  row(table, "outcome", f.outcome === null ? "unfinished" : f.outcome);
  tip.appendChild(table);
}
function showTip(f, x, y) {
  if (tipFor !== f) { fillTip(f); tipFor = f; }
  tip.hidden = false;
  const w = tip.offsetWidth, h = tip.offsetHeight;
  const left = x + 14 + w > window.innerWidth ? Math.max(0, x - 14 - w) : x + 14;
  const top = y + 14 + h > window.innerHeight ? Math.max(0, y - 14 - h) : y + 14;
  tip.style.left = left + "px";
  tip.style.top = top + "px";
}
function hideTip() { tip.hidden = true; tipFor = null; }
function barAt(e) {
  const t = e.target;
  return t && t.closest ? t.closest(".bar") : null;
}
plot.addEventListener("mousemove", function (e) {
  if (drag && drag.moved) return;
  const bar = barAt(e);
  if (bar) showTip(byId.get(Number(bar.getAttribute("data-id"))), e.clientX, e.clientY);
  else hideTip();
});
plot.addEventListener("mouseover", function (e) {
  const bar = barAt(e);
  if (bar) showTip(byId.get(Number(bar.getAttribute("data-id"))), e.clientX, e.clientY);
});
plot.addEventListener("mouseleave", hideTip);

// Hovering a fork in the tree outlines its bar.
const barById = new Map(items.map(function (it) { return [it.f.id, it.r]; }));
document.querySelectorAll(".tree .node").forEach(function (node) {
  const bar = barById.get(Number(node.getAttribute("data-id")));
  if (!bar) return;
  node.addEventListener("mouseenter", function () { bar.classList.add("hl"); });
  node.addEventListener("mouseleave", function () { bar.classList.remove("hl"); });
});

render();
})();
"""
