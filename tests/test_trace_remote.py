"""af.trace() and forks run on a remote worker (a Dask cluster).

The core reports a remote run through the ``fork_ran_remotely(fut, worker, start, stop)``
hook, with the worker's address and the run's wall-clock times there. Most tests drive
that hook directly, from a fork on a local executor standing in for the cluster, so they
need no cluster; the last one runs a fork on a real LocalCluster.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import T, by_name, spin

import asyncfork as af
from asyncfork import ForkRecord
from asyncfork._instruments import call
from asyncfork._tracing.export import chrome_events
from asyncfork._tracing.html import render_html
from asyncfork._tracing.timeline import REMOTE, track_of

W1, W2 = "tcp://127.0.0.1:40001", "tcp://127.0.0.1:40002"


class RemoteRun:
    """A call that notes its wall-clock start and stop, as a Dask worker does, then holds
    its result until released: the test reports the run before the fork finishes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ran = threading.Event()
        self.release = threading.Event()
        self.start = self.stop = 0.0

    def __call__(self) -> str:
        self.start = time.time()
        spin(self.seconds)
        self.stop = time.time()
        self.ran.set()
        assert self.release.wait(T)
        return "done"


def run_remotely(
    pool: ThreadPoolExecutor, runs: dict[str, tuple[RemoteRun, str]]
) -> dict[str, Any]:
    """Fork each run on ``pool``, report it through the hook as run on its worker, and
    wait for all. Returns the Futures by name."""
    futs = {name: af.fork.options(name=name, executor=pool)(run) for name, (run, _) in runs.items()}
    for name, (run, worker) in runs.items():
        assert run.ran.wait(T)
        call("fork_ran_remotely", futs[name], worker, run.start, run.stop)
        run.release.set()
    assert af.wait(list(futs.values()), timeout=T) == ["done"] * len(futs)
    return futs


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def test_a_remote_run_is_recorded_with_its_worker_and_times(pool: ThreadPoolExecutor) -> None:
    """The record holds the worker and the run there, on the trace's clock; its busy time is
    that run; it is drawn on the worker's track."""
    run = RemoteRun(0.02)
    with af.trace() as t:
        run_remotely(pool, {"remote": (run, W1)})
    (record,) = t.forks
    assert record.worker == W1
    assert record.remote_start == pytest.approx(run.start - t.wall_origin, abs=1e-6)
    assert record.remote_stop == pytest.approx(run.stop - t.wall_origin, abs=1e-6)
    # One clock here, so the run lies inside the fork's life (up to clock resolution).
    assert record.started is not None
    assert record.finished is not None
    assert record.started - 0.002 <= record.remote_start < record.remote_stop
    assert record.remote_stop <= record.finished + 0.002
    assert record.busy == pytest.approx(run.stop - run.start)
    assert record.busy >= 0.015
    assert track_of(record) == (W1, REMOTE)
    assert record.outcome == "value"


def test_a_fork_made_before_the_trace_is_not_recorded(pool: ThreadPoolExecutor) -> None:
    """The hook for a fork the trace does not know is ignored (and the recorder stays)."""
    run = RemoteRun(0)
    fut = af.fork.options(executor=pool)(run)
    with af.trace() as t:
        assert run.ran.wait(T)
        call("fork_ran_remotely", fut, W1, run.start, run.stop)
        run.release.set()
        assert af.wait(fut, timeout=T) == "done"
        assert af.wait(af.fork(abs, -1), timeout=T) == 1  # still recording
    assert [r.name for r in t.forks] == ["abs"]


def test_remote_runs_count_in_work_span_and_parallelism(pool: ThreadPoolExecutor) -> None:
    """Two remote runs side by side: work is their sum, span the longer, and the summary
    says where they ran."""
    a, b = RemoteRun(0.03), RemoteRun(0.06)
    with af.trace() as t:
        run_remotely(pool, {"a": (a, W1), "b": (b, W2)})
    s = t.summary(show=False)
    ran_a, ran_b = a.stop - a.start, b.stop - b.start
    assert s.work == pytest.approx(ran_a + ran_b)
    assert s.span == pytest.approx(max(ran_a, ran_b))
    assert s.parallelism == pytest.approx((ran_a + ran_b) / max(ran_a, ran_b))
    assert s.parallelism > 1
    assert dict(s.by_worker) == {W1: 1, W2: 1}
    assert "  remote:        2 forks on 2 workers" in s.text().splitlines()
    assert [f.name for f in s.top_busy] == ["b", "a"]


def test_local_traces_say_nothing_of_remote_workers() -> None:
    """Without remote runs the summary has no remote line and no workers."""
    with af.trace() as t:
        assert af.wait(af.fork(abs, -2), timeout=T) == 2
    s = t.summary(show=False)
    assert dict(s.by_worker) == {}
    assert "remote" not in s.text()


# -- the views, on a trace put together by hand ----------------------------------------------

MAIN, LOOP = "MainThread", "asyncio loop 0x1"


def remote_trace() -> af.Trace:
    """main forks three calls: two run on worker 1, one after the other, one on worker 2.
    The worker's clock put c's run a little before c was created (skew shows as it is)."""
    t = af.Trace()
    rows = [
        # id, parent, name, created, started, finished, worker, remote start/stop
        (1, None, "main", 0.0, 0.0, 1.0, None, None, None),
        (2, 1, "a", 0.1, 0.1, 0.5, W1, 0.15, 0.45),
        (3, 1, "b", 0.1, 0.1, 0.9, W1, 0.5, 0.85),
        (4, 1, "c", 0.1, 0.1, 0.6, W2, 0.08, 0.55),
    ]
    for i, parent, name, created, started, finished, worker, r0, r1 in rows:
        kind = "coroutine" if worker is None else "executor"
        thread = MAIN if worker is None else "Client"
        record = ForkRecord(i, parent, None, name, kind, LOOP, created, thread, started, finished)
        record.outcome = "value"
        record.worker, record.remote_start, record.remote_stop = worker, r0, r1
        record.busy = 0.01 if r0 is None or r1 is None else r1 - r0
        t.forks.append(record)
    t.duration = 1.0
    return t


def test_chrome_trace_has_one_track_per_worker() -> None:
    """Each worker is a track named after it; a remote fork's slice is its run there."""
    t = remote_trace()
    events = chrome_events(t)
    names = {
        e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
    }
    slices = {e["name"]: e for e in events if e["ph"] == "X"}
    assert sorted(names.values()) == sorted(
        [f"{MAIN} · {LOOP}", f"{W1} · {REMOTE}", f"{W2} · {REMOTE}"]
    )
    tid_of = {label: tid for tid, label in names.items()}
    assert slices["a"]["tid"] == slices["b"]["tid"] == tid_of[f"{W1} · {REMOTE}"]
    assert slices["c"]["tid"] == tid_of[f"{W2} · {REMOTE}"]
    assert slices["main"]["tid"] == tid_of[f"{MAIN} · {LOOP}"]
    r = by_name(t)
    for name in "abc":
        ev = slices[name]
        assert ev["ts"] == pytest.approx(r[name].remote_start * 1e6)
        assert ev["ts"] + ev["dur"] == pytest.approx(r[name].remote_stop * 1e6)
        assert ev["args"]["worker"] == r[name].worker
        assert ev["args"]["submitted_ms"] == pytest.approx(100.0)
    assert "worker" not in slices["main"]["args"]
    # The fork arrows from main land at each run's start on its worker.
    flows = [e for e in events if e["ph"] == "f" and e["name"] == "fork"]
    assert sorted(e["ts"] for e in flows) == pytest.approx([0.08e6, 0.15e6, 0.5e6])


def test_html_data_puts_remote_runs_on_worker_tracks() -> None:
    """The page's data: a track per worker, bars at the runs, and lanes that do not overlap
    even where the worker's clock puts a run before its fork's creation."""
    page = render_html(remote_trace())
    found = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page)
    assert found is not None
    data = json.loads(found[1])
    tracks = [(tr["thread"], tr["loop"], tr["forks"]) for tr in data["tracks"]]
    assert tracks == [(MAIN, LOOP, 1), (W2, REMOTE, 1), (W1, REMOTE, 2)]
    forks = {f["name"]: f for f in data["forks"]}
    assert (forks["a"]["t0"], forks["a"]["t1"]) == (0.15, 0.45)
    assert (forks["c"]["t0"], forks["c"]["t1"]) == (0.08, 0.55)
    assert forks["a"]["worker"] == W1
    assert forks["main"]["worker"] is None
    # a and b share worker 1's track; both were created at 0.1, and a lane holds a fork's
    # queue line too, so b (queued while a ran) is on a lane of its own.
    assert forks["a"]["track"] == forks["b"]["track"]
    assert forks["a"]["lane"] != forks["b"]["lane"]
    assert f"on {W1}" in page  # the tree says where each ran


def test_summary_of_a_hand_made_trace_counts_the_remote_runs() -> None:
    """work = main's 10 ms + the three runs; span = main + its longest run."""
    s = remote_trace().summary(show=False)
    assert s.work == pytest.approx(0.01 + 0.30 + 0.35 + 0.47)
    assert s.span == pytest.approx(0.01 + 0.47)
    assert s.parallelism == pytest.approx(1.13 / 0.48)
    assert dict(s.by_worker) == {W1: 2, W2: 1}
    assert s.wall == 1.0


# -- on a real cluster -----------------------------------------------------------------------


def test_forks_on_a_local_cluster_are_on_their_workers_tracks(dask_client: Any) -> None:
    """A trace of forks run on a LocalCluster of 2 workers (the session's): each record names
    a worker of the cluster, its run lies inside its life (one machine, one clock), and the
    Chrome trace and the HTML view draw it on that worker's track."""
    from asyncfork.dask import use

    workers = set(dask_client.scheduler_info()["workers"])
    with af.trace() as t, use(dask_client):
        futs = [af.fork.options(name=f"nap{i}")(time.sleep, 0.05) for i in range(4)]
        assert af.wait(futs, timeout=30) == [None] * 4
    assert len(workers) == 2
    assert len(t.forks) == 4
    for r in t.forks:
        assert r.worker in workers, (r.worker, workers)
        assert r.remote_start is not None
        assert r.remote_stop is not None
        assert r.started is not None
        assert r.finished is not None
        assert r.started - 0.01 <= r.remote_start < r.remote_stop <= r.finished + 0.01
        assert r.busy == pytest.approx(r.remote_stop - r.remote_start)
        assert r.busy >= 0.045
    s = t.summary(show=False)
    assert sum(s.by_worker.values()) == 4
    assert s.work >= 4 * 0.045
    events = chrome_events(t)
    labels = {
        e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
    }
    for e in events:
        if e["ph"] == "X":
            assert labels[e["tid"]].startswith(f"{e['args']['worker']} · {REMOTE}")
    data = re.search(r'id="trace-data">(.*?)</script>', render_html(t))
    assert data is not None
    tracks = json.loads(data[1])["tracks"]
    assert {tr["thread"] for tr in tracks} == set(s.by_worker)
    assert {tr["loop"] for tr in tracks} == {REMOTE}
