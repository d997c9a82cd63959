"""The timeline rules the views share: where a trace ends, where bars go.

The HTML view, the Chrome trace and the summary all use these, so they agree:

- *The trace's end*: its duration once stopped; the time now while it records; for
  records put together by hand (never started), the latest time recorded in them.
- *Open ends*: a fork or a wait that has not finished runs to the trace's end, and
  nothing ends before it starts.
- *Remote runs*: a fork that ran on a remote worker (a Dask cluster) is drawn as its
  run there, from its start to its stop on the worker, on that worker's track.
- *Tracks*: a fork is drawn on the track of the thread that ran it; coroutine forks
  also by loop (one thread may run several loops, one after another); a fork that
  never started on a "not started" track of its loop; a remote fork on its worker's.
- *Lanes*: in a track, bars are placed in order of start. A bar given its parent goes
  inside the parent's bar, on the parent's lane, when the parent is the innermost bar
  open there and holds it whole (the Chrome trace: a fib tree becomes a flame graph;
  the HTML view gives no parent, as its lanes are single rows). Otherwise it goes on
  the lowest lane free by its start. So bars on one lane never overlap except by nesting.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .recorder import ForkRecord, Trace, WaitRecord

NOT_STARTED = "not started"
REMOTE = "remote worker"  # the second part of a worker's track: (address, REMOTE)

Track = tuple[str, str]  # (thread, loop): loop is "" for sync forks


def trace_end(trace: Trace) -> float:
    """The trace's end (its length: times are seconds since it started)."""
    if trace.duration is not None:
        return trace.duration
    if trace.recording:
        return trace.now()
    times = [t for r in trace.forks for t in (r.created, r.started, r.finished) if t is not None]
    times += [t for r in trace.forks for t in (r.remote_start, r.remote_stop) if t is not None]
    times += [t for w in trace.waits for t in (w.start, w.end) if t is not None]
    return max(times, default=0.0)


def run_span(record: ForkRecord, end: float) -> tuple[float, float]:
    """The span of a fork's run: its start (its creation if it never started) to its finish;
    for a fork run on a remote worker, its start to its stop there."""
    if record.remote_start is not None:
        return record.remote_start, _finish(record.remote_stop, record.remote_start, end)
    start = record.started if record.started is not None else record.created
    return start, _finish(record.finished, start, end)


def life_span(record: ForkRecord, end: float) -> tuple[float, float]:
    """A fork's lifetime: its creation to its finish (the queue before its start included)."""
    return record.created, _finish(record.finished, record.created, end)


def drawn_span(record: ForkRecord, end: float) -> tuple[float, float]:
    """All a fork's drawing covers: its lifetime and its run (a remote worker's clock may
    put the run outside the lifetime)."""
    life, run = life_span(record, end), run_span(record, end)
    return min(life[0], run[0]), max(life[1], run[1])


def wait_end(wait: WaitRecord, end: float) -> float:
    """When a wait ended (the trace's end if it had not)."""
    return _finish(wait.end, wait.start, end)


def _finish(finished: float | None, start: float, end: float) -> float:
    # A record stamped just after the trace stopped may start after its end.
    return max(finished if finished is not None else end, start)


def track_of(record: ForkRecord) -> Track:
    """The track a fork is drawn on."""
    if record.worker is not None:
        return (record.worker, REMOTE)
    if record.thread is None:
        return (NOT_STARTED, record.loop)
    return (record.thread, record.loop if record.kind == "coroutine" else "")


class Bar(NamedTuple):
    """One fork's bar to place; with ``parent`` set it may nest in the parent's bar."""

    id: int
    track: Track
    start: float
    end: float
    parent: int | None = None


class Layout(NamedTuple):
    """Where the bars went."""

    tracks: list[tuple[Track, int]]  # (track, its number of lanes), in order of first bar
    placed: dict[int, tuple[int, int]]  # bar id -> (index in tracks, lane)


def lay_out(bars: Iterable[Bar]) -> Layout:
    """Place ``bars`` on their tracks' lanes (see the module docstring)."""
    # By start, the longer first on ties (so that it can hold the other).
    order = sorted(bars, key=lambda b: (b.start, -b.end, b.id))
    tracks: dict[Track, tuple[int, _Lanes]] = {}
    placed: dict[int, tuple[int, int]] = {}
    for bar in order:
        index, lanes = tracks.setdefault(bar.track, (len(tracks), _Lanes()))
        placed[bar.id] = (index, lanes.place(bar))
    return Layout([(track, lanes.count) for track, (_, lanes) in tracks.items()], placed)


class _Lanes:
    """The lanes of one track; bars must come in order of start."""

    def __init__(self) -> None:
        self.open: list[list[tuple[float, int]]] = []  # per lane: (end, id), outermost first
        self.busy: list[tuple[float, int]] = []  # heap: (end of the outermost bar, lane)
        self.free: list[int] = []  # heap of lanes free by the last start
        self.lane_of: dict[int, int] = {}

    @property
    def count(self) -> int:
        return len(self.open)

    def place(self, bar: Bar) -> int:
        start, end = bar.start, max(bar.end, bar.start)
        while self.busy and self.busy[0][0] <= start:  # bars that end as another starts share
            freed = heapq.heappop(self.busy)[1]
            self.open[freed].clear()
            heapq.heappush(self.free, freed)
        lane = self._nest(bar.parent, start, end)
        if lane is None:
            if self.free:
                lane = heapq.heappop(self.free)
            else:
                lane = len(self.open)
                self.open.append([])
            heapq.heappush(self.busy, (end, lane))
        self.open[lane].append((end, bar.id))
        self.lane_of[bar.id] = lane
        return lane

    def _nest(self, parent: int | None, start: float, end: float) -> int | None:
        """The parent's lane, if the bar fits inside the parent's bar as the innermost one."""
        lane = self.lane_of.get(parent) if parent is not None else None
        if lane is None:
            return None
        stack = self.open[lane]
        while stack and stack[-1][0] <= start:
            stack.pop()
        if stack and stack[-1][1] == parent and end <= stack[-1][0]:
            return lane
        return None
