"""The two views of a trace: the time view and Cilk's work/span profile.

Dependencies. A fork F *depends on* D when F could not finish before D did:

- D is a child of F (``D.parent == F.id``): F's end joins D's end;
- F waited on D and the wait was satisfied (D finished by the time the wait ended).
  A wait that timed out or was cancelled made F depend on nothing.

Time view.

- *wall*: the trace's end (``timeline.trace_end``: its duration, up to now while it
  is still recording).
- *concurrency*: the sum of fork lifetimes (created to finished; an unfinished fork
  lives to the end of the trace, as in ``timeline.life_span``) divided by the wall time.
- *critical path by wall time*: start at the fork that finished last; from a fork,
  go to the dependency that released it last (a child's end, or the end of a
  satisfied wait) before the point reached; stop at a fork with none. Listed from
  the fork that finished last down to the dependency the chain began with.

Work view (Cilk's).

- *busy*: a fork's recorded busy time (coroutine steps, a sync fork's CPU time, a
  remote fork's run on its worker, start to stop); a fork whose busy time is
  unknown (an Executor's) counts 0.
- *work*: the sum of busy times.
- *span*: ``span(F) = busy(F) + max(span(D) for D that F depends on, default 0)``,
  and the trace's span is the largest ``span(F)``: the longest chain of busy time
  through fork -> child, child -> join and Future -> waiter edges.
- *parallelism*: work / span (0 when nothing was busy).
- *critical path by busy time*: from the fork with the largest span, repeatedly
  the dependency with the largest span.

Everything is iterative (a fib tree is deep and wide) and linear or n log n.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from .timeline import life_span, trace_end, wait_end

if TYPE_CHECKING:
    from .recorder import ForkRecord, Trace, WaitRecord

_TOP = 5  # rows shown in the "most busy" and "longest waits" tables
_NO_WORKERS: Mapping[str, int] = {}


@attrs.frozen
class ForkStat:
    """One fork in a summary: its id, name and a time in seconds (busy or lifetime)."""

    id: int
    name: str
    seconds: float


@attrs.frozen
class WaitStat:
    """One wait in a summary; ``waiter`` is None for code outside forks."""

    waiter: int | None
    waiter_name: str
    awaited: int
    awaited_name: str
    seconds: float
    finished: bool  # False: the wait was still going when the trace stopped


@attrs.frozen
class TraceSummary:
    """What ``Trace.summary()`` returns: the time view and the work/span profile.

    Times are in seconds. See the module docstring of ``asyncfork._analysis`` for
    the precise definitions.
    """

    forks: int
    by_kind: Mapping[str, int]
    unfinished: int
    waits: int
    wall: float
    concurrency: float
    critical_path: tuple[ForkStat, ...]  # by wall time; seconds = lifetime
    work: float
    span: float
    parallelism: float
    busy_path: tuple[ForkStat, ...]  # critical path by busy time; seconds = busy
    top_busy: tuple[ForkStat, ...]
    longest_waits: tuple[WaitStat, ...]
    # Remote worker's address -> the forks that ran there (empty: nothing ran remotely).
    by_worker: Mapping[str, int] = attrs.field(factory=lambda: _NO_WORKERS)

    def text(self) -> str:
        """The summary as the lines ``Trace.summary()`` prints."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.by_kind.items()))
        lines = [
            f"asyncfork trace: {self.forks} forks" + (f" ({kinds})" if kinds else ""),
            f"  unfinished:    {self.unfinished}",
            f"  waits:         {self.waits}",
            *self._remote_lines(),
            "time view",
            f"  wall time:     {_ms(self.wall)}",
            f"  concurrency:   {self.concurrency:.2f} (fork lifetimes / wall time)",
            f"  critical path: {_path(self.critical_path, 'lived')}",
            "work view",
            f"  work:          {_ms(self.work)} (total busy time)",
            f"  span:          {_ms(self.span)} (longest chain of busy time)",
            f"  parallelism:   {self.parallelism:.2f} (work / span)",
            f"  critical path: {_path(self.busy_path, 'busy')}",
        ]
        if self.top_busy:
            lines.append("most busy forks")
            lines += [f"  {_ms(s.seconds):>12}  #{s.id} {s.name}" for s in self.top_busy]
        if self.longest_waits:
            lines.append("longest waits")
            for w in self.longest_waits:
                waiter = (
                    "code outside forks" if w.waiter is None else f"#{w.waiter} {w.waiter_name}"
                )
                note = "" if w.finished else " (unfinished)"
                lines.append(
                    f"  {_ms(w.seconds):>12}  {waiter} on #{w.awaited} {w.awaited_name}{note}"
                )
        return "\n".join(lines)

    def _remote_lines(self) -> list[str]:
        if not self.by_worker:
            return []
        runs = sum(self.by_worker.values())
        workers = len(self.by_worker)
        return [
            f"  remote:        {runs} fork{'s' if runs != 1 else ''} on {workers} "
            f"worker{'s' if workers != 1 else ''}"
        ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _path(path: tuple[ForkStat, ...], what: str) -> str:
    if not path:
        return "(none)"
    shown = [f"#{s.id} {s.name} ({_ms(s.seconds)} {what})" for s in path[:8]]
    if len(path) > 8:
        shown.append(f"... {len(path) - 8} more")
    return " <- ".join(shown)


def satisfied(wait: WaitRecord, awaited: ForkRecord) -> bool:
    """Whether ``wait`` ended because ``awaited`` finished (not by a timeout or cancel)."""
    return awaited.finished is not None and wait.end is not None and awaited.finished <= wait.end


def summarize(trace: Trace) -> TraceSummary:
    """Compute the time view and the work/span profile of ``trace``."""
    forks = list(trace.forks)  # copies: other threads may still append
    waits = list(trace.waits)
    by_id = {r.id: r for r in forks}
    wall = trace_end(trace)

    by_kind: dict[str, int] = {}
    by_worker: dict[str, int] = {}
    for r in forks:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
        if r.worker is not None:
            by_worker[r.worker] = by_worker.get(r.worker, 0) + 1

    def end_of(r: ForkRecord) -> float:
        return life_span(r, wall)[1]

    lifetimes = sum(end_of(r) - r.created for r in forks)
    concurrency = lifetimes / wall if wall > 0 else 0.0

    # deps[F] = [(release time, dependency id)], sorted by release time.
    deps: dict[int, list[tuple[float, int]]] = {r.id: [] for r in forks}
    for r in forks:
        if r.parent is not None and r.parent in deps:
            deps[r.parent].append((end_of(r), r.id))
    for w in waits:
        awaited = by_id.get(w.awaited)
        if w.waiter is None or w.waiter not in deps or awaited is None:
            continue
        if satisfied(w, awaited) and w.waiter != w.awaited:
            assert w.end is not None
            deps[w.waiter].append((w.end, w.awaited))
    for edges in deps.values():
        edges.sort()

    critical = _wall_path(forks, deps, by_id, {r.id: end_of(r) for r in forks})
    span_of, best_dep = _spans(forks, deps, by_id)
    work = sum(r.busy for r in forks)
    span = max(span_of.values(), default=0.0)
    busy_path: list[ForkStat] = []
    if forks and span > 0:
        at: int | None = max(span_of, key=lambda i: span_of[i])
        while at is not None:
            r = by_id[at]
            busy_path.append(ForkStat(r.id, r.name, r.busy))
            at = best_dep.get(at)

    top_busy = heapq.nlargest(_TOP, forks, key=lambda r: r.busy)
    longest = heapq.nlargest(_TOP, waits, key=lambda w: wait_end(w, wall) - w.start)

    def name(i: int | None) -> str:
        r = by_id.get(i) if i is not None else None
        return r.name if r is not None else ""

    return TraceSummary(
        forks=len(forks),
        by_kind=by_kind,
        unfinished=sum(r.finished is None for r in forks),
        waits=len(waits),
        wall=wall,
        concurrency=concurrency,
        critical_path=tuple(ForkStat(r.id, r.name, end_of(r) - r.created) for r in critical),
        work=work,
        span=span,
        parallelism=work / span if span > 0 else 0.0,
        busy_path=tuple(busy_path),
        top_busy=tuple(ForkStat(r.id, r.name, r.busy) for r in top_busy if r.busy > 0),
        longest_waits=tuple(
            WaitStat(
                waiter=w.waiter,
                waiter_name=name(w.waiter),
                awaited=w.awaited,
                awaited_name=name(w.awaited),
                seconds=wait_end(w, wall) - w.start,
                finished=w.end is not None,
            )
            for w in longest
        ),
        by_worker=by_worker,
    )


def _wall_path(
    forks: list[ForkRecord],
    deps: dict[int, list[tuple[float, int]]],
    by_id: dict[int, ForkRecord],
    ends: dict[int, float],
) -> list[ForkRecord]:
    if not forks:
        return []
    last = max(forks, key=lambda r: (ends[r.id], -r.id))
    path = [last]
    seen = {last.id}
    at, until = last.id, ends[last.id]
    while True:
        edges = deps[at]
        i = bisect.bisect_right(edges, (until, float("inf")))
        while i > 0 and edges[i - 1][1] in seen:  # guards against equal-time cycles
            i -= 1
        if i == 0:
            return path
        at = edges[i - 1][1]
        seen.add(at)
        path.append(by_id[at])
        until = ends[at]


def _spans(
    forks: list[ForkRecord],
    deps: dict[int, list[tuple[float, int]]],
    by_id: dict[int, ForkRecord],
) -> tuple[dict[int, float], dict[int, int]]:
    """span(F) for every fork, and the dependency each span continues through."""
    span_of: dict[int, float] = {}
    best_dep: dict[int, int] = {}
    on_stack: set[int] = set()
    for root in forks:
        if root.id in span_of:
            continue
        # Iterative post-order DFS; an edge back into the stack (a cycle) is ignored.
        stack: list[tuple[int, bool]] = [(root.id, False)]
        while stack:
            at, expanded = stack.pop()
            if expanded:
                on_stack.discard(at)
                best = 0.0
                for _, dep in deps[at]:
                    s = span_of.get(dep)
                    if s is not None and s > best:
                        best = s
                        best_dep[at] = dep
                span_of[at] = by_id[at].busy + best
                continue
            if at in span_of or at in on_stack:
                continue
            on_stack.add(at)
            stack.append((at, True))
            stack.extend((dep, False) for _, dep in deps[at] if dep not in span_of)
    return span_of, best_dep
