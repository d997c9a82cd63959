"""Schedule exploration: seeded orders of ready forks and sync forks, and their replay."""

from __future__ import annotations

import asyncio
import shlex
import threading

import pytest

import asyncfork as af
from asyncfork import _explore_loop
from asyncfork._explore import run_once

pytest_plugins = ["pytester"]

T = 5.0

# -- a real order bug: check-then-act across an await ---------------------------------------


def bank(*, fixed: bool = False):
    """Two withdrawals of 60 from 100. The second starts a few steps later, so asyncio's
    FIFO order finishes the first before the second checks: plain runs pass. A schedule
    that lets the second overtake the first overdraws the account. Each run has its own
    account."""

    async def main():
        state = {"balance": 100}
        lock = asyncio.Lock()

        async def withdraw(amount, delay):
            for _ in range(delay):
                await asyncio.sleep(0)
            if fixed:
                await lock.acquire()
            try:
                if state["balance"] >= amount:  # check
                    await asyncio.sleep(0)  # (an audit record, say)
                    state["balance"] -= amount  # act
            finally:
                if fixed:
                    lock.release()

        first = af.fork(withdraw, 60, 0)
        second = af.fork(withdraw, 60, 3)
        await af.wait_async([first, second])
        assert state["balance"] >= 0, f"overdrawn: {state['balance']}"

    return main


def test_plain_runs_pass_the_order_bug():
    """asyncio's own order never shows the bug: 200 plain runs pass."""
    failures = 0
    for _ in range(200):
        try:
            asyncio.run(bank()())
        except AssertionError:
            failures += 1
    assert failures == 0


def test_exploration_finds_the_order_bug_and_the_same_seed_replays_it():
    """Within a few dozen seeds a schedule overdraws; that seed fails again, every time;
    with the lock, no seed does."""
    failing = []
    for seed in range(40):
        try:
            run_once(bank(), seed)
        except AssertionError:
            failing.append(seed)
    assert failing, "no schedule of 40 found the order bug"
    for seed in failing[:3]:
        with pytest.raises(AssertionError, match="overdrawn"):
            run_once(bank(), seed)
    for seed in range(40):
        run_once(bank(fixed=True), seed)


# -- orders: deterministic per seed, varied across seeds ------------------------------------


def steps_of(seed, forks=4, steps=3):
    """The order in which ``forks`` coroutine forks take their steps, under ``seed``."""
    order = []

    async def worker(i):
        for step in range(steps):
            order.append((i, step))
            await asyncio.sleep(0)

    async def main():
        await af.wait_async([af.fork(worker, i) for i in range(forks)])

    run_once(main, seed)
    return order


def test_same_seed_same_order_and_seeds_reach_other_orders():
    """A seed fixes the order; 20 seeds give several orders, none of them lose a step."""
    orders = [steps_of(seed) for seed in range(20)]
    assert [steps_of(seed) for seed in range(20)] == orders
    assert len({tuple(o) for o in orders}) >= 5
    for order in orders:
        assert sorted(order) == [(i, s) for i in range(4) for s in range(3)]
        for i in range(4):  # each fork's own steps stay in its order
            assert [s for j, s in order if j == i] == [0, 1, 2]


def test_a_held_back_task_lags_many_iterations():
    """A task may be held back so far that a later one finishes first: FIFO never does."""
    finished_first = set()
    for seed in range(30):
        done = []

        async def racer(name, steps, done=done):
            for _ in range(steps):
                await asyncio.sleep(0)
            done.append(name)

        async def main(done=done):
            await af.wait_async([af.fork(racer, "short", 1), af.fork(racer, "long", 4)])

        run_once(main, seed)
        finished_first.add(done[0])
    assert finished_first == {"short", "long"}


def test_other_callbacks_keep_asyncio_order():
    """Only task steps move: callbacks queued with call_soon run in the order queued
    (transports and futures rely on it)."""
    for seed in range(30):
        seen = []

        async def main(seen=seen):
            loop = asyncio.get_running_loop()
            for i in range(6):
                loop.call_soon(seen.append, i)
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        run_once(main, seed)
        assert seen == list(range(6))


# -- sync forks ---------------------------------------------------------------------------


def completions_of(seed):
    """The order in which four sync forks run, and how many ran at once at most."""
    order = []
    running = [0, 0]  # now, most
    guard = threading.Lock()

    def job(i):
        with guard:
            running[0] += 1
            running[1] = max(running)
        order.append(i)
        with guard:
            running[0] -= 1
        return i

    async def main():
        futs = [af.fork(job, i) for i in range(4)]
        finished = [await fut async for fut in af.as_completed(futs, timeout=T)]
        return order, finished

    result = run_once(main, seed)
    return result, running[1]


def test_sync_forks_run_one_at_a_time_in_a_seeded_order():
    """Sync forks run alone, in an order and completing in an order the seed fixes."""
    results = [completions_of(seed) for seed in range(12)]
    assert [completions_of(seed) for seed in range(12)] == results
    assert all(most == 1 for _, most in results)
    orders = {tuple(order) for (order, _), _ in results}
    assert len(orders) >= 3
    for (order, finished), _ in results:
        assert order == finished  # each completion is delivered before the next fork runs


def test_a_sync_fork_waiting_on_a_coroutine_fork_hands_the_loop_back():
    """A sync fork blocked in af.wait lets the loop run the fork it waits for: no hang."""

    async def value():
        await asyncio.sleep(0)
        return 7

    def sync_parent():
        return af.wait(af.fork(value), timeout=T) + af.wait(af.fork(lambda: 1), timeout=T)

    async def main():
        return await af.fork(sync_parent)

    for seed in range(5):
        loop = _explore_loop.ExploringLoop(seed)
        with asyncio.Runner(loop_factory=lambda loop=loop: loop) as runner:
            assert runner.run(main()) == 8
        assert loop.uncontrolled is None  # handed back, not let go after TURN_SECONDS


def interleaving_of(seed):
    """Coroutine forks ticking while a sync fork forks, waits, and goes on, three times."""
    log = []

    async def ticker(name, ticks):
        for _ in range(ticks):
            log.append(name)
            await asyncio.sleep(0)

    def body():
        af.fork(ticker, "background", 40)
        for round_ in range(3):
            log.append(f"sync {round_}")
            af.wait([af.fork(ticker, f"child {round_}", 3), af.fork(len, "ab")], timeout=T)

    run_once(body, seed)
    return log


def test_a_sync_fork_resumes_after_its_wait_at_a_seeded_point():
    """After a wait, a sync fork goes on when the seed says, not when its thread wakes:
    the whole interleaving repeats for a seed."""
    logs = [interleaving_of(seed) for seed in range(15)]
    assert [interleaving_of(seed) for seed in range(15)] == logs
    assert len({tuple(log) for log in logs}) >= 5


def test_a_sync_fork_waiting_on_a_queued_sync_fork_runs_it_inline():
    """As on a worker (in a wait without a timeout): the child runs in the waiting fork's
    thread, while that fork holds the turn."""

    def parent():
        child = af.fork(threading.get_ident)
        return af.wait(child) == threading.get_ident()  # a timeout would block, not help

    async def main():
        return await af.fork(parent)

    results = []
    runs = threading.Thread(
        target=lambda: results.extend(run_once(main, s) for s in range(5)), daemon=True
    )
    runs.start()
    runs.join(T)  # the bound the waits above do not have
    assert results == [True] * 5


def test_a_sync_forks_wait_still_times_out_and_wakes_an_idle_loop():
    """A wait's timeout is real time: when it passes, the idle loop is woken to let the
    sync fork go on (else the run would hang), and the wait raises TimeoutError."""

    async def forever():
        await asyncio.get_running_loop().create_future()

    def sync():
        child = af.fork(forever)
        try:
            af.wait(child, timeout=0.05)
        except TimeoutError:
            child.cancel()
            return "timed out"
        return "returned"

    async def main():
        return await asyncio.wait_for(af.fork(sync), T)

    assert run_once(main, 0) == "timed out"


def group_and_as_completed_order(seed):
    """A sync fork that joins a sync group and iterates af.as_completed, blocking."""
    log = []

    async def step(name):
        await asyncio.sleep(0)
        log.append(name)
        return name

    def body():
        with af.group() as g:
            for name in "abc":
                g.fork(step, name)
        log.append("joined")
        for fut in af.as_completed([af.fork(step, n) for n in "xyz"], timeout=T):
            log.append(f"got {fut.result()}")

    run_once(body, seed)
    return log


def test_group_joins_and_as_completed_hand_the_loop_back_and_resume_by_seed():
    logs = [group_and_as_completed_order(seed) for seed in range(10)]
    assert [group_and_as_completed_order(seed) for seed in range(10)] == logs
    assert all(log[3] == "joined" and len(log) == 10 for log in logs)
    assert len({tuple(log) for log in logs}) >= 3


def test_a_sync_fork_cancelled_before_the_loop_runs_it_never_runs():
    ran = []

    async def main():
        fut = af.fork(ran.append, 1)
        assert fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut

    for seed in range(5):
        run_once(main, seed)
    assert ran == []


def _needs_the_loop_outside_asyncfork(error: BaseException):
    """A program whose sync fork waits on a threading.Event that a coroutine fork sets
    (which would hang a paused loop), then raises ``error``."""
    started, event = threading.Event(), threading.Event()

    def waits():
        started.set()
        assert event.wait(T)

    async def sets():
        event.set()

    async def main():
        sync = af.fork(waits)
        assert await asyncio.to_thread(started.wait, T)  # a thread outside asyncfork
        await af.wait_async([sync, af.fork(sets)])
        raise error

    return main


def test_a_sync_fork_that_needs_the_loop_outside_asyncfork_is_let_go(monkeypatch):
    """Such a sync fork would hang a paused loop: after TURN_SECONDS it runs alongside,
    and a failure says the replay may differ."""
    monkeypatch.setattr(_explore_loop, "TURN_SECONDS", 0.05)
    with pytest.raises(ValueError) as info:
        run_once(_needs_the_loop_outside_asyncfork(ValueError("after the run")), 0)
    assert "did not control all of this run" in "\n".join(info.value.__notes__)


def test_sync_forks_left_when_the_loop_closes_still_run():
    """A detached sync fork the loop never got to runs in the worker pool instead."""
    ran = threading.Event()

    async def main():
        af.fork.options(detached=True)(ran.set)

    run_once(main, 0)
    assert ran.wait(T)


# -- af.explore ---------------------------------------------------------------------------


def test_explore_raises_the_first_failure_with_its_seed_and_replay():
    with pytest.raises(AssertionError) as info:
        af.explore(bank(), runs=60)
    notes = "\n".join(info.value.__notes__)
    assert "schedule exploration: run " in notes
    seed = int(notes.split("with seed ")[1].split(";")[0])
    assert f"af.explore(bank.<locals>.main, seed={seed})" in notes
    with pytest.raises(AssertionError, match="overdrawn"):
        af.explore(bank(), seed=seed)
    af.explore(bank(fixed=True), runs=60)


def test_explore_runs_a_sync_callable_as_a_sync_fork():
    seen = []

    def body():
        seen.append(af.current() is not None)
        assert af.wait([af.fork(lambda: 1), af.fork(lambda: 2)], timeout=T) == [1, 2]

    af.explore(body, runs=5)
    assert seen == [True] * 5


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"runs": 0}, "runs must be an int of at least 1"),
        ({"runs": True}, "runs must be an int of at least 1"),
        ({"seed": "7"}, "seed must be an int"),
        ({"runs": 5, "seed": 7}, "not both"),
    ],
)
def test_explore_rejects_bad_options(options, error):
    with pytest.raises((TypeError, ValueError), match=error):
        af.explore(lambda: None, **options)


async def test_explore_refuses_a_running_loop():
    with pytest.raises(RuntimeError, match="cannot be called from a running one"):
        af.explore(lambda: None, runs=1)


# -- the pytest marker and options --------------------------------------------------------

BANK_TEST = """
import asyncio
import pytest
import asyncfork as af

FIXED = {fixed}
RUNS = []

@pytest.fixture
async def opening():
    return 100

@pytest.mark.asyncfork_explore(runs=40)
async def test_withdrawals(opening):
    RUNS.append(1)
    state = {{"balance": opening}}
    lock = asyncio.Lock()

    async def withdraw(amount, delay):
        for _ in range(delay):
            await asyncio.sleep(0)
        async with (lock if FIXED else _nothing()):
            if state["balance"] >= amount:
                await asyncio.sleep(0)
                state["balance"] -= amount

    await af.wait_async([af.fork(withdraw, 60, 0), af.fork(withdraw, 60, 3)])
    assert state["balance"] >= 0, "overdrawn"

class _nothing:
    async def __aenter__(self): pass
    async def __aexit__(self, *exc): pass

def test_runs_counted():
    assert len(RUNS) == {expected}
"""

PLUGIN = ["-p", "asyncfork._pytest_explore"]


@pytest.fixture
def project(pytester):
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    return pytester


def replay_args(output):
    """The replay command the failure printed, as arguments for runpytest."""
    line = next(line for line in output.splitlines() if "replay exactly that schedule" in line)
    command = shlex.split(line.split("replay exactly that schedule: ")[1])
    assert command[0] == "pytest"
    return command[1:]


def test_pytest_marker_reports_the_failing_seed_and_its_command_replays_it(project):
    """A marked async test fails with its seed and a replay command; running that command
    fails the same way, once, with that seed; with the fix, every run passes."""
    project.makepyfile(test_bank=BANK_TEST.format(fixed=False, expected=-1))
    result = project.runpytest(*PLUGIN, "test_bank.py::test_withdrawals")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "overdrawn" in out
    args = replay_args(out)
    seed = args[-1].split("=")[1]
    assert args[-2:] == ["test_bank.py::test_withdrawals", f"--asyncfork-seed={seed}"]
    assert int(seed) < 40
    # The replay: one run, the same failure and seed, twice.
    project.makepyfile(test_bank=BANK_TEST.format(fixed=False, expected=1))
    for run in (project.runpytest_subprocess, project.runpytest):
        replay = run(*args, "test_bank.py::test_runs_counted")
        replay.assert_outcomes(failed=1, passed=1)
        assert f"run 1 of 1 failed, with seed {seed};" in replay.stdout.str()
        assert "overdrawn" in replay.stdout.str()
    project.makepyfile(test_bank=BANK_TEST.format(fixed=True, expected=40))
    project.runpytest(*PLUGIN).assert_outcomes(passed=2)


def test_pytest_option_explores_unmarked_async_tests_and_marked_sync_tests(project):
    project.makepyfile(
        test_more="""
        import pytest
        import asyncfork as af

        SEEN = []

        async def test_unmarked():
            SEEN.append("async")

        def test_plain_sync():
            SEEN.append("plain")

        @pytest.mark.asyncfork_explore(runs=3)
        def test_marked_sync():
            assert af.current() is not None  # the body runs as a sync fork
            assert af.wait([af.fork(lambda: 1), af.fork(lambda: 2)], timeout=5) == [1, 2]
            SEEN.append("sync")

        def test_zz_counts():
            assert SEEN.count("async") == 7
            assert SEEN.count("plain") == 1
            assert SEEN.count("sync") == 7
        """
    )
    project.runpytest(*PLUGIN, "--asyncfork-explore=7").assert_outcomes(passed=4)


def test_a_seed_replays_an_unmarked_async_test_that_the_option_explored(project):
    """--asyncfork-explore found it, so --asyncfork-seed alone must replay it: once, on an
    exploring loop of that seed."""
    project.makepyfile(
        test_unmarked="""
        import asyncio

        SEEDS = []

        async def test_unmarked():
            SEEDS.append(asyncio.get_running_loop().seed)

        def test_zz_counts():
            assert SEEDS == [12]
        """
    )
    project.runpytest(*PLUGIN, "--asyncfork-seed=12").assert_outcomes(passed=2)


def test_pytest_marker_with_bad_arguments_is_a_usage_error(project):
    project.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.asyncfork_explore(5)
        async def test_positional():
            pass
        """
    )
    result = project.runpytest(*PLUGIN)
    result.assert_outcomes(failed=1)
    assert "takes runs as a keyword: @pytest.mark.asyncfork_explore(runs=50)" in result.stdout.str()
    result = project.runpytest(*PLUGIN, "--asyncfork-explore=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--asyncfork-explore=N takes N of at least 1, not 0" in result.stderr.str()


def test_anyio_tests_are_explored_on_asyncio_only(pytester):
    """--asyncfork-explore takes anyio's asyncio tests and leaves its trio ones alone."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_anyio="""
        import pytest

        pytestmark = pytest.mark.anyio
        SEEN = []

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        async def test_both(anyio_backend):
            SEEN.append(anyio_backend)

        def test_zz_counts():
            assert SEEN.count("asyncio") == 3
            assert SEEN.count("trio") == 1
        """
    )
    pytester.runpytest(*PLUGIN, "--asyncfork-explore=3").assert_outcomes(passed=3)


def test_the_pools_hook_is_removed_once_no_exploring_loop_is_open():
    from asyncfork import _threads

    run_once(bank(), 0)
    assert _threads.explore_submit is None


# -- review fixes: the body as a root fork, per-run leak checks, serial mode, replays ------


def test_explore_joins_the_forks_of_a_coroutine_body_as_af_run_does():
    """A failure nobody retrieved fails the run (with its seed); a forgotten child is
    joined, not cancelled when the run's loop closes."""
    finished = []

    async def failing():
        await asyncio.sleep(0)
        raise ValueError("child failed")

    async def dropped_failure():
        af.fork(failing)

    with pytest.raises(ExceptionGroup, match="nobody retrieved") as info:
        af.explore(dropped_failure, runs=2)
    assert "run 1 of 2 failed, with seed 0" in "\n".join(info.value.__notes__)
    assert isinstance(info.value.exceptions[0], ValueError)

    async def slow():
        for _ in range(5):
            await asyncio.sleep(0)
        finished.append(asyncio.get_running_loop().seed)

    async def forgotten_child():
        af.fork(slow)

    af.explore(forgotten_child, runs=3)
    assert finished == [0, 1, 2]


def test_explore_joins_other_root_forks_of_the_run():
    """A root fork the body made (a detached fork: not its child) is joined too."""
    finished = []

    async def late():
        for _ in range(3):
            await asyncio.sleep(0)
        finished.append(1)

    async def main():
        af.fork.options(detached=True)(late)

    af.explore(main, runs=2)
    assert finished == [1, 1]


def test_explore_switches_serial_mode_off_in_its_runs():
    """Under af.serial() every fork would run inline inside fork(), leaving no order to
    explore: exploration switches it off in its runs, and finds the bug still."""
    seen = []

    async def probe():
        fut = af.fork(asyncio.sleep, 0)
        seen.append(fut.done())  # serial mode would have run it to completion already
        await fut

    with af.serial():
        af.explore(probe, runs=2)
        with pytest.raises(AssertionError, match="overdrawn"):
            af.explore(bank(), runs=60)
        assert af.fork(lambda: 1).done()  # still serial outside the runs
    assert seen == [False, False]


@pytest.mark.parametrize(
    ("program", "error"),
    [
        ("coroutine", "takes the coroutine function, not a coroutine object"),
        ("none", "takes a coroutine function or a sync callable, called with no arguments"),
        ("needs_args", "with no arguments, and it needs some: bind them"),
    ],
)
def test_explore_refuses_what_it_cannot_call_before_any_run(program, error):
    ran = []

    async def main():
        ran.append(1)

    func = {
        "coroutine": main,
        "none": lambda: None,
        "needs_args": lambda: lambda x: ran.append(x),
    }[program]()
    with pytest.raises(TypeError, match=error) as info:
        af.explore(func, runs=2)
    assert not getattr(info.value, "__notes__", None)  # no run failed: none ran
    assert ran == []


def test_explore_takes_runs_as_an_int_only():
    with pytest.raises(TypeError, match="runs must be an int of at least 1, got a str"):
        af.explore(lambda: None, runs="3")


def test_a_keyboard_interrupt_is_not_a_failing_schedule(monkeypatch):
    """Ctrl-C stops the exploration as it is: no note saying a replay may differ."""
    monkeypatch.setattr(_explore_loop, "TURN_SECONDS", 0.05)
    with pytest.raises(KeyboardInterrupt) as info:
        af.explore(_needs_the_loop_outside_asyncfork(KeyboardInterrupt()), runs=3)
    assert not getattr(info.value, "__notes__", None)


def test_each_explored_run_is_checked_for_leaks_and_the_failure_names_its_seed(project):
    """A fork left behind in one schedule only is caught whatever the number of runs."""
    project.makepyfile(
        test_leaky="""
        import asyncio
        import pytest
        import asyncfork as af

        @pytest.mark.asyncfork_explore(runs=3)
        async def test_leaks_in_one_schedule():
            if asyncio.get_running_loop().seed == 1:
                af.fork(asyncio.sleep, 100)  # left behind in seed 1's run only
        """
    )
    result = project.runpytest("--timeout=60")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "asyncfork: the test left 1 fork pending" in out
    assert "run 2 of 3 failed, with seed 1; replay exactly that schedule" in out
    assert "During handling" not in out
    replay = project.runpytest(*replay_args(out))
    replay.assert_outcomes(failed=1)
    assert "run 1 of 1 failed, with seed 1" in replay.stdout.str()


def test_serial_mode_does_not_switch_exploration_off_in_pytest(project):
    project.makepyfile(test_bank=BANK_TEST.format(fixed=False, expected=-1))
    result = project.runpytest("--asyncfork-serial", "test_bank.py::test_withdrawals")
    result.assert_outcomes(failed=1)
    assert "overdrawn" in result.stdout.str()


def test_the_replay_command_works_from_the_directory_pytest_started_in(pytester):
    """The rootdir (here, where pytest.ini is) need not be where pytest was started: the
    printed command names the file from there."""
    sub = pytester.mkdir("sub")
    (sub / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    (sub / "test_far.py").write_text(
        "import asyncio, pytest\n\n"
        "@pytest.mark.asyncfork_explore(runs=3)\n"
        "async def test_far():\n"
        "    assert asyncio.get_running_loop().seed != 2\n"
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "sub/test_far.py")
    result.assert_outcomes(failed=1)
    args = replay_args(result.stdout.str())
    assert args == ["sub/test_far.py::test_far", "--asyncfork-seed=2"]
    replay = pytester.runpytest_subprocess(*PLUGIN, *args)
    replay.assert_outcomes(failed=1)
    assert "run 1 of 1 failed, with seed 2" in replay.stdout.str()


def test_exploration_and_loop_flavours_are_exclusive(project):
    project.makepyfile(
        test_both="""
        import pytest

        @pytest.mark.asyncfork_loops("asyncio", "uvloop")
        @pytest.mark.asyncfork_explore(runs=2)
        async def test_both(af_loop):
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    assert "not on the loop flavours of asyncfork_loops" in result.stdout.str()


# -- the docs' example, with the output the page shows -------------------------------------


def _docs_section():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text("utf-8")
    start = text.index("## Schedule exploration")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_docs_pytest_example_fails_with_the_output_shown(pytester, monkeypatch):
    import re

    monkeypatch.setenv("COLUMNS", "300")
    section = _docs_section()
    program = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    program = program.replace("asyncio.run(withdrawals())", "")
    test = re.findall(r"```py\n(.*?)```", section, re.S)[0]
    shown = re.findall(r"```text\n(.*?)```", section, re.S)[0]
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    tests = pytester.mkdir("tests")
    (tests / "bank.py").write_text(program)
    (tests / "test_bank.py").write_text(test)
    result = pytester.runpytest_subprocess(*PLUGIN, "tests/test_bank.py")
    result.assert_outcomes(failed=1)
    error_lines = [line for line in result.stdout.lines if line.startswith("E ")]
    assert error_lines == shown.splitlines()
