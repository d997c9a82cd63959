"""Racy cases run many times under a tiny switch interval, each in a fresh interpreter.

- Forks racing ``af.shutdown()``: every fork made before shutdown returns ends with an
  outcome, drained (``cancel=False``: its value) or cancelled (``cancel=True``); ``fork()``
  never raises "loop is closed"; no waiter is left asleep.
- Worker threads that fail to start at random, while forks wait on forks and shutdowns
  replace the pool: every fork ends, with its value or the "could not start" error, and a
  fork that failed never runs its callable.

Each child bounds every wait; a hang shows as a "timed out" problem, not a stuck run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("Traceback", "Task was destroyed", "Exception in", "never retrieved", "Warning")

PRELUDE = """\
import asyncio, random, sys, threading
sys.setswitchinterval(1e-6)  # a thread switch between almost any two bytecodes
import asyncfork as af

problems = []
stop = threading.Event()
made = threading.Semaphore(0)  # one release per fork made: shutdowns land among forks

def problem(text):
    problems.append(text)
    stop.set()
    made.release(100)  # the main thread stops at once

def report(threads):
    stop.set()
    for thread in threads:
        thread.join(30)
        if thread.is_alive():
            problem(f"{thread.name} hangs")
    af.shutdown(timeout=30)
    print("PROBLEMS", len(problems), problems[:5])
"""

SHUTDOWN_RACE = """
cancel = sys.argv[1] == "cancel"

async def co():
    await asyncio.sleep(0)
    return 1

def sync():
    return 1

def grouped():
    with af.group() as g:  # a sync group of the background loop's root set
        a, b = g.fork(co), g.fork(sync)
    return a.result(timeout=0) + b.result(timeout=0) - 1

def forker(index):
    rounds = 0
    while not stop.is_set():
        rounds += 1
        kind = (co, sync, grouped)[(index + rounds) % 3]
        try:
            fut = af.fork(kind) if kind is not grouped else None
            value = grouped() if fut is None else fut.result(timeout=10)
        except asyncio.CancelledError:
            if not cancel:
                problem(f"{kind.__name__} cancelled under cancel=False")
        except TimeoutError:
            problem(f"{kind.__name__} timed out: never settled, or its waiter never woke")
        except BaseException as exc:
            problem(f"{kind.__name__}: {exc!r}")
        else:
            if value != 1:
                problem(f"{kind.__name__} returned {value!r}")
        made.release()

threads = [threading.Thread(target=forker, args=(i,), name=f"forker-{i}", daemon=True)
           for i in range(4)]
for thread in threads:
    thread.start()
for _ in range(int(sys.argv[2])):
    if not all(made.acquire(timeout=10) for _ in range(16)):
        problem("no fork finished for 10 s")
    if stop.is_set():
        break
    af.shutdown(cancel=cancel, timeout=30)
report(threads)
"""

FAILED_THREAD_STARTS = """
rng = random.Random(int(sys.argv[1]))
real_start = threading.Thread.start

def flaky_start(self):
    if self.name.startswith("asyncfork-worker") and rng.random() < 0.3:
        raise RuntimeError("can't start new thread")
    real_start(self)

threading.Thread.start = flaky_start
af.configure(workers=2)
ran = set()

def leaf(token):
    ran.add(token)
    return 1

def parent(token):
    child = af.fork(leaf, (token, "child"))
    ran.add(token)
    return af.wait(child, timeout=10) + 1

def forker(index):
    count = 0
    while not stop.is_set():
        count += 1
        token = (index, count)
        fut = af.fork(parent, token)
        try:
            value = fut.result(timeout=10)
        except TimeoutError:
            problem(f"fork {token} timed out: a queued fork was never dispatched")
        except RuntimeError as exc:  # the parent's, or the child's raised by af.wait
            failed = "parent" if "fork 'parent' could not start" in str(exc) else "leaf"
            if "could not start" not in str(exc):
                problem(f"fork {token}: {exc!r}")
            elif (token if failed == "parent" else (token, "child")) in ran:
                problem(f"{failed} of {token} failed to start, yet its callable ran")
        except BaseException as exc:
            problem(f"fork {token}: {exc!r}")
        else:
            if value != 2:
                problem(f"fork {token} returned {value!r}")
        made.release()

threads = [threading.Thread(target=forker, args=(i,), name=f"forker-{i}", daemon=True)
           for i in range(3)]
for thread in threads:
    thread.start()
for _ in range(int(sys.argv[2])):
    if not all(made.acquire(timeout=10) for _ in range(6)):
        problem("no fork finished for 10 s")
    if stop.is_set():
        break
    af.shutdown(timeout=30)  # a new pool: its threads are started anew, some fail
report(threads)
"""


def run_child(script: str, loop: str, *args: str) -> str:
    env = dict(os.environ, ASYNCFORK_LOOP=loop, PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", PRELUDE + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for noise in NOISE:
        assert noise not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("mode", ["drain", "cancel"])
def test_forks_racing_shutdown_all_end_with_an_outcome(loop: str, mode: str) -> None:
    out = run_child(SHUTDOWN_RACE, loop, mode, "150")
    assert "PROBLEMS 0 []" in out, out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("seed", ["1", "2"])
def test_worker_threads_failing_to_start_at_random_lose_no_fork(loop: str, seed: str) -> None:
    out = run_child(FAILED_THREAD_STARTS, loop, seed, "150")
    assert "PROBLEMS 0 []" in out, out
