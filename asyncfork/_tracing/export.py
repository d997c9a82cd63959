"""Exports of a trace: Trace Event Format JSON and Graphviz DOT.

The JSON follows the Trace Event Format (Perfetto, chrome://tracing): one complete
event (``"ph": "X"``) per fork, from its start (its creation if it never started)
to its end (the trace's end if it never finished), on the track of the thread
that ran it; a fork run on a remote worker is its run there, on one track per
worker (``args.worker`` names it, ``args.submitted_ms`` is when it was sent). Flow
events link a fork to each child it forked and a finished Future to each fork that
waited on it.

A thread track only shows slices that nest, while a loop runs many forks that
overlap. So each track (a thread, and for coroutines its loop) gets as many
threads ("lanes") as it needs, laid out by the rules of ``timeline``: a fork goes
inside its parent on the parent's lane when it fits there (a fib tree becomes a
flame graph), else on the lowest lane free by its start.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import json
import os
from typing import TYPE_CHECKING, Any

from .analysis import satisfied
from .timeline import Bar, Track, lay_out, run_span, trace_end, track_of

if TYPE_CHECKING:
    from .recorder import ForkRecord, Trace

_US = 1e6  # the format's times are microseconds


def chrome_events(trace: Trace) -> list[dict[str, Any]]:
    """The trace as a list of Trace Event Format events."""
    forks = list(trace.forks)  # copies: other threads may still append
    waits = list(trace.waits)
    by_id = {r.id: r for r in forks}
    last = trace_end(trace)
    spans = {r.id: run_span(r, last) for r in forks}

    def span(r: ForkRecord) -> tuple[float, float]:
        return spans[r.id]

    layout = lay_out(Bar(r.id, track_of(r), *spans[r.id], r.parent) for r in forks)

    tids: dict[tuple[int, int], int] = {}  # (track index, lane) -> tid
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "ts": 0,
            "pid": 1,
            "tid": 0,
            "args": {"name": "asyncfork"},
        }
    ]
    for index, (track, count) in enumerate(layout.tracks):
        for lane in range(count):
            tid = len(tids) + 1
            tids[index, lane] = tid
            label = _label(track) if lane == 0 else f"{_label(track)} ({lane + 1})"
            events.append(_meta("thread_name", tid, {"name": label}))
            events.append(_meta("thread_sort_index", tid, {"sort_index": tid}))

    def tid_of(fork_id: int) -> int:
        return tids[layout.placed[fork_id]]

    for r in forks:
        start, end = span(r)
        remote = {} if r.worker is None else _remote_args(r)
        events.append(
            {
                "name": r.name,
                "cat": r.kind,
                "ph": "X",
                "ts": start * _US,
                "dur": (end - start) * _US,
                "pid": 1,
                "tid": tid_of(r.id),
                "args": {
                    "id": r.id,
                    "parent": r.parent,
                    "group": r.group,
                    "kind": r.kind,
                    "loop": r.loop,
                    "thread": r.thread,
                    "outcome": r.outcome if r.finished is not None else "unfinished",
                    "busy_ms": r.busy * 1e3,
                    "steps": r.steps,
                    "created_ms": r.created * 1e3,
                    **remote,
                },
            }
        )

    flow_ids = itertools.count(1)
    for r in forks:  # fork -> child: from the parent at the fork call to the child's start
        parent = by_id.get(r.parent) if r.parent is not None else None
        if parent is None:
            continue
        p_start, p_end = span(parent)
        at = min(max(r.created, p_start), p_end)
        events += _flow("fork", next(flow_ids), (at, tid_of(parent.id)), (span(r)[0], tid_of(r.id)))
    for w in waits:  # a finished Future -> its waiter, at the end of the wait
        awaited = by_id.get(w.awaited)
        waiter = by_id.get(w.waiter) if w.waiter is not None else None
        if awaited is None or waiter is None or not satisfied(w, awaited) or w.end is None:
            continue
        a_start, a_end = span(awaited)
        w_start, w_end = span(waiter)
        # Just inside both slices, so each end binds to its own slice.
        source = (max(a_start, a_end - 1e-6), tid_of(awaited.id))
        target = (min(max(w.end, w_start), w_end), tid_of(waiter.id))
        events += _flow("wait", next(flow_ids), source, target)
    return events


def _remote_args(r: ForkRecord) -> dict[str, Any]:
    submitted = None if r.started is None else r.started * 1e3
    return {"worker": r.worker, "submitted_ms": submitted}


def _label(track: Track) -> str:
    thread, loop = track
    return f"{thread} · {loop}" if loop else thread


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "ts": 0, "pid": 1, "tid": tid, "args": args}


def _flow(
    name: str, flow_id: int, source: tuple[float, int], target: tuple[float, int]
) -> list[dict[str, Any]]:
    common = {"name": name, "cat": name, "id": flow_id, "pid": 1}
    return [
        {**common, "ph": "s", "ts": source[0] * _US, "tid": source[1]},
        {**common, "ph": "f", "bp": "e", "ts": target[0] * _US, "tid": target[1]},
    ]


def write_chrome_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` as Trace Event Format JSON to ``path``."""
    document = {"traceEvents": chrome_events(trace), "displayTimeUnit": "ms"}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def dot_source(trace: Trace) -> str:
    """The fork/wait graph of ``trace`` in the Graphviz DOT language."""
    forks = list(trace.forks)
    by_id = {r.id: r for r in forks}
    lines = [
        "digraph asyncfork {",
        '  node [shape=box, fontname="Helvetica"];',
    ]
    for r in forks:
        outcome = r.outcome if r.finished is not None else "unfinished"
        label = f"{r.name}\n{r.busy * 1e3:.3f} ms busy\n{outcome}"
        lines.append(f"  f{r.id} [label={_quote(label)}];")
    for r in forks:
        if r.parent is not None and r.parent in by_id:
            lines.append(f"  f{r.parent} -> f{r.id};")
    seen: set[tuple[int, int]] = set()
    for w in list(trace.waits):
        if w.waiter is None or w.waiter not in by_id or w.awaited not in by_id:
            continue
        if (w.awaited, w.waiter) not in seen:
            seen.add((w.awaited, w.waiter))
            lines.append(f"  f{w.awaited} -> f{w.waiter} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_dot(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write the fork/wait graph of ``trace`` for Graphviz to ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(dot_source(trace))
