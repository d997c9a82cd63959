"""A trace's analysis (summary: work, span, parallelism) and its exports (Chrome trace, DOT)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest
from helpers import by_name, chain_trace, named, spin, within

import asyncfork as af
from asyncfork import ForkRecord

# -- helpers -------------------------------------------------------------------------------


def deep_chain(n):
    """A synthetic trace: a chain of n nested forks, each busy 1 ms; the root unfinished."""
    t = af.Trace()
    for i in range(1, n + 1):
        t.forks.append(
            ForkRecord(
                id=i,
                parent=i - 1 or None,
                group=None,
                name=f"f{i}",
                kind="coroutine",
                loop="asyncio",
                created=i * 1e-6,
                thread="MainThread",
                started=i * 1e-6,
                finished=None if i == 1 else 1.0 - i * 1e-6,
                outcome=None if i == 1 else "value",
                busy=0.001,
                steps=1,
            )
        )
    t.duration = 1.0
    return t


REQUIRED = {"X": {"dur"}, "s": {"id"}, "f": {"id"}, "M": {"args"}}


async def mixed_trace():
    """Coroutine and thread forks, waits between them, and one fork unfinished at the end."""
    release = asyncio.Event()

    async def parent():
        kid = named("kid")(asyncio.sleep, 0.01)
        worker = named("worker")(spin, 0.005)
        await worker
        return await kid

    async def late():
        await release.wait()

    with af.trace() as t:
        p = named('pa"rent\n')(parent)
        straggler = named("straggler")(late)
        await within(p)
    release.set()
    await within(straggler)
    return t


def check_chrome(doc, t):
    assert doc["displayTimeUnit"] == "ms"
    events = doc["traceEvents"]
    for e in events:
        assert {"name", "ph", "ts", "pid", "tid"} <= e.keys(), e
        assert REQUIRED[e["ph"]] <= e.keys(), e
        assert e["ts"] >= 0
    slices = [e for e in events if e["ph"] == "X"]
    assert sorted(e["args"]["id"] for e in slices) == sorted(r.id for r in t.forks)
    assert all(e["dur"] >= 0 for e in slices)
    named_tracks = {e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {e["tid"] for e in events if e["ph"] != "M"} <= named_tracks
    starts = sorted(e["id"] for e in events if e["ph"] == "s")
    finishes = sorted(e["id"] for e in events if e["ph"] == "f")
    assert starts == finishes
    assert len(set(starts)) == len(starts)
    assert all(e["bp"] == "e" for e in events if e["ph"] == "f")
    return slices, events


def parse_dot(text):
    """Check DOT structure: balanced braces outside strings; return (nodes, edges)."""
    strings = re.compile(r'"(?:[^"\\]|\\.)*"')
    bare = strings.sub('""', text)
    assert bare.count("{") == bare.count("}") == 1
    assert bare.lstrip().startswith("digraph")
    assert bare.rstrip().endswith("}")
    nodes = re.findall(r"^\s*(\w+)\s*\[label=", bare, re.M)
    edges = re.findall(r"^\s*(\w+)\s*->\s*(\w+)\s*(\[style=dashed\])?;", bare, re.M)
    return nodes, edges


# -- the summary ---------------------------------------------------------------------------


async def test_chain_of_waits_has_span_of_the_sum_and_parallelism_one():
    """span = the longest chain of busy time through waits; parallelism = work / span."""
    t = await chain_trace()
    r = by_name(t)
    s = t.summary(show=False)
    busy = r["A"].busy + r["B"].busy + r["C"].busy
    assert all(r[x].busy >= 0.005 for x in "ABC")
    assert s.work == pytest.approx(busy)
    assert s.span == pytest.approx(busy)
    assert s.parallelism == pytest.approx(1.0)
    assert [p.id for p in s.busy_path] == [r["A"].id, r["B"].id, r["C"].id]
    assert [p.id for p in s.critical_path] == [r["A"].id, r["B"].id, r["C"].id]


async def test_independent_sleeps_have_concurrency_about_n():
    """N independent sleeps forked together: concurrency (lifetimes / wall time) ~ N."""
    with af.trace() as t:
        futs = [named(f"sleep {i}")(asyncio.sleep, 0.1) for i in range(10)]
        await within(af.wait(futs))
    s = t.summary(show=False)
    assert s.forks == 10
    assert dict(s.by_kind) == {"coroutine": 10}
    assert 7 <= s.concurrency <= 11
    assert s.wall == t.duration
    assert s.wall >= 0.1
    assert s.unfinished == 0


async def test_summary_fields_and_printing(capsys):
    """summary(show=False) returns the numbers quietly; show=True prints them too."""
    t = await chain_trace()
    quiet = t.summary(show=False)
    assert capsys.readouterr().out == ""
    assert quiet.forks == 3
    assert quiet.waits == len(t.waits) >= 3
    assert quiet.top_busy[0].seconds == max(r.busy for r in t.forks)
    assert quiet.longest_waits[0].seconds >= quiet.longest_waits[-1].seconds
    assert quiet.longest_waits[0].waiter is None  # the test waited the longest, on A
    shown = t.summary()
    out = capsys.readouterr().out
    assert out.strip() == shown.text().strip()
    for word in ("3 forks", "wall time", "concurrency", "work", "span", "parallelism", " ms"):
        assert word in out


def test_summary_of_an_empty_trace():
    """A trace with no forks summarises to zeros, without dividing by zero."""
    with af.trace() as t:
        pass
    s = t.summary(show=False)
    assert (s.forks, s.work, s.span, s.parallelism, s.concurrency) == (0, 0, 0, 0, 0)
    assert s.critical_path == s.busy_path == ()
    assert "0 forks" in s.text()


def test_deep_trace_is_analysed_without_recursion():
    """Analysis is iterative: a chain deeper than the recursion limit works, and fast."""
    n = 20_000
    t = deep_chain(n)
    began = time.perf_counter()
    s = t.summary(show=False)
    assert time.perf_counter() - began < 5
    assert s.span == pytest.approx(n * 0.001)
    assert s.parallelism == pytest.approx(1.0)
    assert len(s.busy_path) == len(s.critical_path) == n
    assert s.unfinished == 1


# -- the Chrome trace ----------------------------------------------------------------------


async def test_chrome_trace_follows_the_trace_event_format(tmp_path):
    """One complete event per fork on a named track; flows pair up; unfinished marked."""
    t = await mixed_trace()
    path = tmp_path / "trace.json"
    assert t.to_chrome_trace(path) is True
    slices, events = check_chrome(json.loads(path.read_text()), t)
    by = {e["name"]: e for e in slices}
    assert by["straggler"]["args"]["outcome"] == "unfinished"
    assert t.duration is not None
    end = by["straggler"]["ts"] + by["straggler"]["dur"]
    assert end == pytest.approx(t.duration * 1e6)
    assert by["worker"]["args"]["kind"] == "thread"
    assert by["worker"]["args"]["busy_ms"] >= 4
    assert by["worker"]["tid"] != by["kid"]["tid"]  # a worker thread has its own track
    flows = {e["name"] for e in events if e["ph"] == "s"}
    assert flows == {"fork", "wait"}  # parent -> kid/worker, and worker -> parent's wait
    parent_id = by['pa"rent\n']["args"]["id"]
    assert by["kid"]["args"]["parent"] == parent_id


def test_chrome_trace_of_a_deep_trace(tmp_path):
    """A deep nest exports fine: nested forks stack on their parent's track."""
    t = deep_chain(3000)
    assert t.to_chrome_trace(tmp_path / "deep.json") is True
    slices, _ = check_chrome(json.loads((tmp_path / "deep.json").read_text()), t)
    assert len({e["tid"] for e in slices}) == 1


# -- the DOT graph -------------------------------------------------------------------------


async def test_dot_has_one_node_per_fork_and_valid_edges(tmp_path):
    """The DOT graph: one node per fork, solid parent -> child, dashed awaited -> waiter."""
    t = await mixed_trace()
    path = tmp_path / "trace.dot"
    assert t.to_dot(path) is True
    text = path.read_text()
    nodes, edges = parse_dot(text)
    assert len(nodes) == len(set(nodes)) == len(t.forks)
    assert all(a in nodes and b in nodes for a, b, _ in edges)
    solid = {(a, b) for a, b, dashed in edges if not dashed}
    dashed = {(a, b) for a, b, d in edges if d}
    assert solid == {(f"f{r.parent}", f"f{r.id}") for r in t.forks if r.parent is not None}
    r = by_name(t)
    parent = r['pa"rent\n']
    assert (f"f{r['worker'].id}", f"f{parent.id}") in dashed
    assert r"pa\"rent\n" in text  # quotes and newlines in names are escaped


# -- failing exporters ---------------------------------------------------------------------


def test_a_failing_exporter_returns_false_and_logs(tmp_path, caplog):
    """A failing exporter is reported through the asyncfork logger, never raised."""
    t = deep_chain(3)
    missing = tmp_path / "no" / "such" / "dir"
    with caplog.at_level(logging.ERROR, logger="asyncfork"):
        assert t.to_chrome_trace(missing / "t.json") is False
        assert t.to_dot(missing / "t.dot") is False
    logged = [rec for rec in caplog.records if rec.name == "asyncfork"]
    assert len(logged) == 2
    assert all(rec.exc_info and isinstance(rec.exc_info[1], OSError) for rec in logged)
