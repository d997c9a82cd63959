// The timeline of the HTML view (trace.html); html.py inlines this file into the page.
// SVG elements are made once per fork; zooming and panning only move them.
(function () {
"use strict";
const data = JSON.parse(document.getElementById("trace-data").textContent);
// A fork's bar runs from f.t0 to f.t1 (its run; to the trace's end if unfinished) and its
// queue line from f.created to f.t0: html.py computes both with the exports' shared rules.
// A fork run on a remote worker (f.worker set) is drawn as its run there, on the worker's
// track: its queue line covers its submission, and the worker's clock may skew it.
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
  fitFrom = Math.min(fitFrom, f.created, f.t0);
  fitTo = Math.max(fitTo, f.t1);
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
  const cls = "bar kind-" + f.kind + (f.worker ? " remote" : "") + " out-" + f.cls;
  const r = el("rect", {class: cls, "data-id": f.id, y: y, height: BAR, rx: 2}, barLayer);
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
    const a = (f.t0 - v0) * k, b = (f.t1 - v0) * k, c = (f.created - v0) * k;
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
  if (f.worker) row(table, "worker", f.worker);
  row(table, "thread", f.thread === null ? "\u2014" : f.thread);
  row(table, "loop", f.loop);
  row(table, "created", fmt(f.created));
  row(table, "started", fmt(f.started) + (f.worker ? " (submitted)" : ""));
  if (f.worker) row(table, "on the worker", fmt(f.t0) + " to " + fmt(f.t1));
  row(table, "finished", f.finished === null ? "\u2014 (not recorded)" : fmt(f.finished));
  row(table, "duration", f.finished === null ? "\u2014" : fmt(f.t1 - f.t0));
  if (f.worker) row(table, "busy", fmt(f.busy) + " (its run on the worker)");
  else row(table, "busy", fmt(f.busy) + " in " + f.steps + (f.steps === 1 ? " step" : " steps"));
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
