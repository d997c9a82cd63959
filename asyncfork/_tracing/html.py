"""The self-contained HTML view of a trace: a zoomable timeline, the fork tree, the summary.

The page's markup, CSS and script are files of the package (``view/trace.html``,
``trace.css``, ``trace.js``), so that editors and linters see them. Each export fills
the template and inlines the other two: one file, no network. The records are
embedded as JSON, and a Content-Security-Policy forbids loading anything. Names come
from user code, so every one is escaped: ``html.escape`` in markup, ``<``/``>``/``&``
as ``\\u00XX`` in the JSON (so ``</script>`` can never end the data block).
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import html
import json
import os
import re
from collections import defaultdict
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from .timeline import Bar, drawn_span, lay_out, run_span, trace_end, track_of, wait_end

if TYPE_CHECKING:
    from .recorder import ForkRecord, Trace, WaitRecord

_KINDS = ("coroutine", "thread", "executor")
# Above this many forks the tree opens only its first two levels.
_TREE_OPEN_ALL = 300
# The template's placeholders ({{name}}) and its notes ({# ... #}, dropped).
_SLOT = re.compile(r"\{\{(\w+)\}\}|\{#.*?#\}\n?", re.DOTALL)
_SLOTS = ("css", "stats", "tree", "summary", "data", "script")


def write_html(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` as one self-contained HTML page to ``path``."""
    page = render_html(trace)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)


def render_html(trace: Trace) -> str:
    """The HTML page for ``trace``, as a string."""
    forks = list(trace.forks)  # copies: other threads may still append
    end = trace_end(trace)
    waits = list(trace.waits)
    data = _timeline_data(forks, waits, end)
    summary = _summary_text(trace)
    if summary is None:
        summary_html = '<p class="note">summary unavailable</p>'
    else:
        summary_html = f"<pre>{html.escape(summary)}</pre>"
    stats = (
        f"wall time {_fmt(end)} · {len(forks)} forks · {len(waits)} waits · "
        f"{len(data['tracks'])} tracks"
    )
    template, css, script = _view()
    values = {
        "css": css,
        "stats": html.escape(stats),
        "tree": _tree_html(forks, end),
        "summary": summary_html,
        "data": _json_for_script(data),
        "script": script,
    }
    # One pass: a value is never searched for placeholders (a fork may be named "{{css}}").
    return _SLOT.sub(lambda m: values[m[1]] if m[1] else "", template)


@cache
def _view() -> tuple[str, str, str]:
    """The page template, its CSS and its script, read once from the package."""
    folder = files("asyncfork._tracing") / "view"
    template, css, script = (
        (folder / name).read_text(encoding="utf-8")
        for name in ("trace.html", "trace.css", "trace.js")
    )
    found = [m[1] for m in _SLOT.finditer(template) if m[1]]
    if sorted(found) != sorted(_SLOTS):
        raise ValueError(f"view/trace.html: placeholders {found}, expected each of {_SLOTS} once")
    # Inlined text must not end its element early (HTML has no escape inside these).
    if "</style" in css.lower():
        raise ValueError("view/trace.css must not contain '</style'")
    if "</script" in script.lower() or "<!--" in script:
        raise ValueError("view/trace.js must not contain '</script' or '<!--'")
    return template, css, script


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


def _timeline_data(forks: list[ForkRecord], waits: list[WaitRecord], end: float) -> dict[str, Any]:
    """Forks placed on tracks (one per thread/loop) and lanes (so bars never overlap)."""
    waited: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    for wait in waits:
        if wait.waiter is not None:
            entry = waited[wait.waiter]
            entry[0] += 1
            entry[1] += wait_end(wait, end) - wait.start

    # A lane holds a fork's queue line and its bar: its whole life. One lane, one row of
    # bars, so nothing nests (no parent given).
    layout = lay_out(Bar(r.id, track_of(r), *drawn_span(r, end)) for r in forks)
    counts = [0] * len(layout.tracks)
    rows: list[dict[str, Any]] = []
    for record in sorted(forks, key=lambda r: r.id):
        track, lane = layout.placed[record.id]
        counts[track] += 1
        start, stop = run_span(record, end)
        count, time_waited = waited.get(record.id, (0, 0.0))
        rows.append(
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
                "t0": start,  # the bar, by the shared rules: the script draws these
                "t1": stop,
                "outcome": record.outcome,
                "cls": _outcome_class(record.outcome),
                "busy": record.busy,
                "steps": record.steps,
                "worker": record.worker,  # set for a fork run on a remote worker
                "waits": count,
                "waited": time_waited,
                "track": track,
                "lane": lane,
            }
        )
    tracks = [
        {"thread": thread, "loop": loop, "lanes": lanes, "forks": counts[index]}
        for index, ((thread, loop), lanes) in enumerate(layout.tracks)
    ]
    return {"end": end, "tracks": tracks, "forks": rows}


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
        start, stop = run_span(record, end)
        lifetime = _fmt(stop - start)
    outcome = record.outcome if record.outcome is not None else "unfinished"
    group = f" · group {record.group}" if record.group is not None else ""
    worker = f" · on {record.worker}" if record.worker is not None else ""
    remote = " remote" if record.worker is not None else ""
    meta = f"#{record.id} · {record.kind}{group}{worker} · {lifetime} · {outcome}"
    return (
        f'<span class="sw kind-{_kind(record)}{remote} out-{_outcome_class(record.outcome)}">'
        "</span>"
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
