"""af.trace(): what a trace records, and ASYNCFORK_TRACE."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import T, by_name, chain_trace, named, spin, within

import asyncfork as af
from asyncfork import ForkRecord

# -- helpers -------------------------------------------------------------------------------


async def fib(n):
    if n < 2:
        return n
    a = named(f"fib({n - 1})")(fib, n - 1)
    b = named(f"fib({n - 2})")(fib, n - 2)
    return await a + await b


def fib_forks(n):
    """How many forks fib(n) makes, itself included: fib(n) forks 2 children for n >= 2."""
    return 1 if n < 2 else 1 + fib_forks(n - 1) + fib_forks(n - 2)


def by_name_outcomes(t):
    return {r.name: r.outcome for r in t.forks}


# -- the recorded graph --------------------------------------------------------------------


async def test_fib_tree_records_one_fork_per_call_with_parent_links():
    """A fib tree has the right number of forks, and each child's parent is its forker."""
    with af.trace() as t:
        assert await within(named("fib(8)")(fib, 8)) == 21
    assert len(t.forks) == fib_forks(8) == 67
    ids = {r.id: r for r in t.forks}
    children: dict[int, list[ForkRecord]] = {r.id: [] for r in t.forks}
    for r in t.forks:
        if r.parent is not None:
            children[r.parent].append(r)
    roots = [r for r in t.forks if r.parent is None]
    assert [r.name for r in roots] == ["fib(8)"]
    for r in t.forks:
        n = int(r.name[4:-1])
        got = sorted(c.name for c in children[r.id])
        assert got == (sorted([f"fib({n - 1})", f"fib({n - 2})"]) if n >= 2 else [])
        assert r.kind == "coroutine"
        assert r.outcome == "value"
        assert r.finished is not None
        assert r.started is not None
        if r.parent is not None:
            parent = ids[r.parent]
            assert parent.created <= r.created <= r.finished <= parent.finished


async def test_waits_are_recorded_with_waiter_and_awaited_ids():
    """Every wait on an unfinished Future is recorded: who waited on which fork, when."""
    t = await chain_trace()
    r = by_name(t)
    pairs = {(w.waiter, w.awaited) for w in t.waits}
    assert (r["A"].id, r["B"].id) in pairs
    assert (r["B"].id, r["C"].id) in pairs
    assert (None, r["A"].id) in pairs  # the test's own await, outside any fork
    for w in t.waits:
        assert w.end is not None
        assert w.start <= w.end


def test_sync_forks_record_cpu_time(loop_kind):
    """A sync fork's busy time is its thread's CPU time: > 0 for a CPU loop, ~0 for sleep."""
    with af.trace() as t:
        cpu = named("cpu")(spin, 0.03)
        sleeper = named("sleeper")(time.sleep, 0.05)
        af.wait([cpu, sleeper], timeout=T)
    r = by_name(t)
    assert r["cpu"].kind == r["sleeper"].kind == "thread"
    assert r["cpu"].busy >= 0.025
    assert r["sleeper"].busy < 0.02
    assert r["cpu"].outcome == r["sleeper"].outcome == "value"


async def test_tracing_does_not_change_results():
    """Tracing observes: values and exceptions are the same with and without it."""

    async def boom():
        raise ValueError("boom")

    plain = await within(af.fork(fib, 10))
    with af.trace() as t:
        traced = await within(af.fork(fib, 10))
        with pytest.raises(ValueError, match="boom"):
            await within(named("boom")(boom))
    assert traced == plain == 55
    assert by_name_outcomes(t)["boom"] == "ValueError"


# -- one trace at a time -------------------------------------------------------------------


def test_traces_do_not_nest():
    """One trace can be active at a time: starting a second raises RuntimeError."""
    with af.trace(), pytest.raises(RuntimeError, match="do not nest"), af.trace():
        pass
    with af.trace() as again:  # the first one's exit switched tracing off
        pass
    assert again.duration is not None


def test_a_fork_outliving_its_trace_is_not_stamped_by_the_next_one(loop_kind):
    """Records belong to the trace that made them: a later trace neither reuses nor dates them."""
    release = threading.Event()

    async def parent():
        await asyncio.get_running_loop().run_in_executor(None, release.wait, T)
        await af.fork(leaf_after)
        return "done"

    async def leaf_after():
        return None

    with af.trace() as first:
        fut = af.fork(parent)
    with af.trace() as second:
        release.set()
        assert fut.result(timeout=T) == "done"
    (record,) = first.forks
    assert record.finished is None  # it ended after its trace stopped: unknown, not wrong
    assert [r.parent for r in second.forks] == [None]  # the child's parent is not in this trace
    assert all(w.awaited != record.id or w.waiter is None for w in second.waits)


# -- ASYNCFORK_TRACE -----------------------------------------------------------------------


def test_asyncfork_trace_env_var_makes_af_run_write_its_trace(tmp_path: Path) -> None:
    """ASYNCFORK_TRACE=DIR: af.run traces itself and writes DIR/trace.json and trace.html."""
    out = tmp_path / "out"
    script = (
        "import asyncio, asyncfork as af\n"
        "async def child():\n"
        "    await asyncio.sleep(0)\n"
        "    return 1\n"
        "async def main():\n"
        "    return sum([await af.fork(child) for _ in range(3)])\n"
        "print(af.run(main))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASYNCFORK_TRACE": str(out)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = [e["name"] for e in events if e["ph"] == "X"]
    assert sorted(names) == ["child", "child", "child", "main"]
    assert "<html" in (out / "trace.html").read_text().lower()


def test_asyncfork_trace_env_var_with_unwritable_dir_keeps_the_result(tmp_path: Path) -> None:
    """A trace folder that cannot be made is logged; af.run still returns its value."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    script = "import asyncfork as af\nasync def main():\n    return 7\nprint(af.run(main))\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASYNCFORK_TRACE": str(blocker / "sub")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
    assert "cannot create" in result.stderr


def test_import_asyncfork_loads_neither_tracing_nor_attrs() -> None:
    """The core never imports tracing: attrs and the recorder load on the first af.trace."""
    code = (
        "import sys, asyncfork as af\n"
        "assert 'attrs' not in sys.modules, 'attrs'\n"
        "assert not [m for m in sys.modules if m.startswith('asyncfork._tracing')]\n"
        "af.wait(af.fork(abs, -1))\n"
        "assert 'attrs' not in sys.modules, 'attrs after a fork'\n"
        "with af.trace() as t: af.wait(af.fork(abs, -1))\n"
        "assert 'attrs' in sys.modules and len(t.forks) == 1\n"
        "assert af.Trace is type(t) and af.TraceSummary.__name__ == 'TraceSummary'\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
