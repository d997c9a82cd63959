"""asyncfork's pytest plugin, run on real test files through pytester.

The example files of docs/testing.md ("The pytest plugin") are run here as they are shown,
with the output the page shows, so the page cannot drift from the plugin.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import asyncfork as af
from asyncfork import _threads

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""
HAS_EAGER = sys.version_info >= (3, 12)


def _section() -> str:
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    start = text.index("## The pytest plugin")
    return text[start : text.index("\n## ", start + 1)]


def _example(name: str) -> str:
    """The example test file the page shows under ``# name``."""
    files = dict(re.findall(r"```py\n# (test_\w+\.py)\n(.*?)```", _section(), re.S))
    return files[name]


def _shown_output(index: int) -> list[str]:
    """The lines of the page's ``index``-th ``text`` block, as fnmatch patterns."""
    block = re.findall(r"```text\n(.*?)```", _section(), re.S)[index]
    patterns = []
    for line in block.splitlines():
        line = line.replace("[", "[[]")
        line = re.sub(r"0x[0-9a-f]+", "0x*", line)
        line = re.sub(r"\d+\.\d+s", "*s", line)
        line = re.sub(r"^[_=]+ (.*?) [_=]+$", r"* \1 *", line)
        patterns.append(line)
    return patterns


@pytest.fixture
def tester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester in auto mode, wide enough that pytest cuts no report line short."""
    monkeypatch.setenv("COLUMNS", "200")
    pytester.makeini(INI.format(mode="auto"))
    return pytester


def _run(tester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # importlib: an example file named as one of this suite's (test_af_eager.py) is not the
    # module this process imported under that name.
    return tester.runpytest("-p", "no:cacheprovider", "--import-mode=importlib", *args)


# -- the docs' examples -------------------------------------------------------------------


def test_the_docs_leak_example_fails_with_the_report_shown(tester: pytest.Pytester) -> None:
    tester.makepyfile(test_leak=_example("test_leak.py"))
    result = _run(tester, "-rf")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(_shown_output(0))
    assert af.tree(show=False) == ""  # the forgotten fork was cancelled


def test_the_docs_flavour_example_runs_each_flavour(tester: pytest.Pytester) -> None:
    tester.makepyfile(test_flavours=_example("test_flavours.py"))
    result = _run(tester, "-v")
    shown = _shown_output(1)
    if not HAS_EAGER:  # not a default flavour before eager starts exist
        shown = [line for line in shown if "eager" not in line]
    result.assert_outcomes(passed=len(shown))
    result.stdout.fnmatch_lines([line + "*" for line in shown])


def test_the_docs_pool_example_meets_on_two_workers_and_breaks_on_one(
    tester: pytest.Pytester,
) -> None:
    tester.makepyfile(test_pool=_example("test_pool.py"))
    _run(tester).assert_outcomes(passed=2)


# -- what the leak check finds --------------------------------------------------------------

LEAKS = """
import asyncio
import threading

import pytest

import asyncfork as af
from asyncfork import _threads

STOP = threading.Event()


async def forever():
    await asyncio.sleep(3600)


def spin():
    while not STOP.wait(0.005):
        af.check_cancelled()


def test_sync_fork_left_running():
    af.fork.options(name="spinner")(spin)


def test_next_sync_test_starts_clean():
    assert af.tree(show=False) == ""


async def test_task_left_pending():
    await af.fork(asyncio.sleep, 0)
    asyncio.ensure_future(forever())


async def test_child_left_under_a_fork():
    async def parent():
        af.fork.options(name="child")(forever)

    af.fork.options(name="parent")(parent)
    await asyncio.sleep(0)


async def test_next_async_test_starts_clean():
    assert af.tree(show=False) == ""
    assert _threads._pool is None or _threads._pool._active == 0


async def test_daemon_and_cancelled_forks_are_not_leaks():
    af.fork.options(daemon=True)(forever)
    af.fork(forever).cancel()
    af.fork.options(daemon=True)(spin)


def test_a_worker_left_busy():
    started = threading.Event()

    def hold():
        started.set()
        STOP.wait(10)

    fut = af.fork.options(name="abandoned", on_cancel="abandon")(hold)
    assert started.wait(5)
    fut.cancel()  # settled at once; its thread goes on


def test_stop_the_busy_worker():
    STOP.set()


async def test_that_fails_by_itself():
    af.fork.options(name="left")(forever)
    raise AssertionError("its own failure")


def test_after_a_failing_test_all_is_clean():
    assert af.tree(show=False) == ""
"""


def test_each_kind_of_leftover_fails_its_test_and_is_cleaned_up(tester: pytest.Pytester) -> None:
    tester.makepyfile(test_af_leaks=LEAKS)
    result = _run(tester, "-rf")
    result.assert_outcomes(failed=5, passed=5)
    result.stdout.fnmatch_lines(
        [
            "* test_sync_fork_left_running *",
            "asyncfork: the test left 1 fork pending",
            "<* loop 0x*> (asyncfork-loop)",
            "└─ spinner  *  (thread)",
            "They were cancelled, so the next test starts clean.",
            "* test_task_left_pending *",
            "asyncfork: the test left 1 task pending",
            "  task 'Task-*' running forever() at test_af_leaks.py:*",
            "* test_child_left_under_a_fork *",
            "asyncfork: the test left 2 forks pending",
            "<asyncio loop 0x*> (MainThread)",
            "└─ parent  running  *",
            "   └─ child  *",
            "* test_a_worker_left_busy *",
            "asyncfork: the test left 1 worker thread busy",
            "* test_that_fails_by_itself *",
            "E * AssertionError: its own failure",
        ]
    )
    assert "abandoned" not in result.stdout.str()  # its Future is settled: only the thread
    # The failing test's report is its own failure, without a leak report beside it.
    own = result.stdout.str().split("test_that_fails_by_itself")[1]
    assert "left 1 fork pending" not in own.split("short test summary")[0]


def test_a_failure_nobody_retrieved_fails_the_test(tester: pytest.Pytester) -> None:
    # In a subprocess: the failure is logged to the asyncfork logger, which this process's own
    # leak check reads as well.
    tester.makepyfile(
        test_af_unretrieved="""
        import asyncio
        import gc

        import pytest

        import asyncfork as af

        async def boom():
            raise ValueError("boom")

        async def test_drops_a_failure():
            fut = af.fork(boom)
            await asyncio.wait([fut])  # waits, and retrieves nothing
            del fut
            gc.collect()

        async def test_retrieves_it():
            with pytest.raises(ValueError):
                await af.fork(boom)
        """
    )
    result = tester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "asyncfork: the test left 1 failure unretrieved",
            "  fork 'boom': ValueError('boom')",
        ]
    )


def test_forks_made_by_fixtures_are_theirs_not_the_tests(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_af_fixtures="""
        import asyncio
        import threading

        import pytest

        import asyncfork as af

        async def forever():
            await asyncio.sleep(3600)

        @pytest.fixture
        def background():
            stop = threading.Event()
            fut = af.fork(stop.wait, 10)  # a sync fork on the background loop
            yield fut
            stop.set()
            assert af.wait(fut, timeout=5) is True

        @pytest.fixture
        async def server():
            fut = af.fork(forever)  # on the test's own loop
            yield fut
            fut.cancel()

        def test_sync(background):
            assert not background.done()

        async def test_async(server, background):
            await asyncio.sleep(0)
            assert not server.done()
        """
    )
    _run(tester).assert_outcomes(passed=2)


# -- switching it off -----------------------------------------------------------------------

MODULE_LOOP = """
import asyncio

import pytest

import asyncfork as af

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def forever():
    await asyncio.sleep(3600)


async def test_leaves_a_fork():
    af.fork.options(name="left")(forever)


async def test_the_next_test_on_the_same_loop():
    assert af.tree(show=False) == ""
"""


@pytest.mark.parametrize("how", ["on", "marker", "ini", "option"])
def test_switched_off_it_neither_checks_nor_cleans_up(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """On, the leak is reported and cleaned up; off, the next test on that loop finds it."""
    monkeypatch.setenv("COLUMNS", "200")
    ini = INI.format(mode="strict")
    source = MODULE_LOOP
    args = ["-p", "no:cacheprovider", "--import-mode=importlib", "-rf"]
    if how == "marker":
        source = source.replace(
            'pytestmark = pytest.mark.asyncio(loop_scope="module")',
            "pytestmark = [\n"
            '    pytest.mark.asyncio(loop_scope="module"),\n'
            "    pytest.mark.asyncfork_no_leak_check,\n"
            "]",
        )
    elif how == "ini":
        ini += "asyncfork_leak_check = false\n"
    elif how == "option":
        args += ["-o", "asyncfork_leak_check=false"]
    pytester.makeini(ini)
    pytester.makepyfile(test_af_module_loop=source)
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=1, passed=1)
    if how == "on":
        result.stdout.fnmatch_lines(["FAILED *::test_leaves_a_fork - *1 fork pending"])
    else:
        result.stdout.fnmatch_lines(["FAILED *::test_the_next_test_on_the_same_loop - *"])
        result.stdout.no_fnmatch_line("*asyncfork: the test left*")
    assert af.tree(show=False) == ""  # the module's loop closed: nothing of it is left


# -- anyio's plugin, xdist, what it imports -------------------------------------------------

ANYIO = """
import asyncio
import time

import pytest

import asyncfork as af

pytestmark = pytest.mark.anyio


def slow():
    time.sleep(0.01)
    return 3


async def forever():
    await asyncio.sleep(3600)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_backend_leak(anyio_backend):
    af.fork.options(name="on-anyio")(forever)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_backend_clean(anyio_backend):
    assert af.tree(show=False) == ""
    assert await af.fork(slow) == 3


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_backend_sync_fork_leak(anyio_backend):
    af.fork.options(name="from-trio")(slow)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_backend_clean(anyio_backend):
    assert await af.fork(slow) == 3
"""


def test_anyio_plugin_tests_are_checked_on_their_loop(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="strict"))
    pytester.makepyfile(test_af_anyio=ANYIO)
    result = _run(pytester, "-rf")
    result.assert_outcomes(failed=2, passed=2)
    result.stdout.fnmatch_lines(
        [
            "* test_asyncio_backend_leak*asyncio* *",
            "<asyncio loop 0x*> (MainThread)",
            "└─ on-anyio  pending  *",
            "* test_trio_backend_sync_fork_leak*trio* *",
            "<* loop 0x*> (asyncfork-loop)",
            "└─ from-trio  *  (thread)",
        ]
    )


def test_under_xdist_each_worker_checks_its_tests(tester: pytest.Pytester) -> None:
    tester.makepyfile(test_leak=_example("test_leak.py"), test_af_anyio=ANYIO)
    result = tester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "xdist", "-n", "2")
    result.assert_outcomes(failed=3, passed=3)
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_leak.py::test_forgets_its_fork - *1 fork pending",
            "FAILED test_af_anyio.py::test_asyncio_backend_leak* - *1 fork pending",
            "FAILED test_af_anyio.py::test_trio_backend_sync_fork_leak* - *1 fork pending",
        ]
    )


def test_it_imports_neither_pytest_asyncio_nor_anyio(tester: pytest.Pytester) -> None:
    """Without their plugins, a sync test is checked and nothing of theirs is imported;
    the serial mode's and exploration's pytest parts come with it (pytest_plugins)."""
    tester.makepyfile(
        test_af_plain="""
        import sys

        import asyncfork as af

        def test_leaks():
            af.fork.options(name="plain")(sys.modules["time"].sleep, 0.2)

        def test_loaded_alone(pytestconfig):
            assert "pytest_asyncio" not in sys.modules
            assert "anyio" not in sys.modules
            manager = pytestconfig.pluginmanager
            assert manager.has_plugin("asyncfork._pytest_serial")
            assert manager.has_plugin("asyncfork._pytest_explore")
        """
    )
    tester.makeini("[pytest]\nfilterwarnings = error\n")  # no asyncio option: no plugin
    result = tester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:anyio", "-rf"
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["FAILED test_af_plain.py::test_leaks - *1 fork pending"])


# -- loop flavours --------------------------------------------------------------------------


def test_the_eager_flavour_starts_forks_eagerly(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_af_eager="""
        import asyncio
        import sys

        import pytest

        import asyncfork as af

        @pytest.mark.asyncfork_loops("asyncio", "eager")
        async def test_starts(af_loop):
            started = []

            async def child():
                started.append(True)

            fut = af.fork(child)
            eager = af_loop == "eager" and sys.version_info >= (3, 12)
            assert started == ([True] if eager else [])
            await fut
            assert started == [True]

        def test_the_setting_is_restored():
            from asyncfork import _fork
            assert _fork.EAGER_DEFAULT is False
        """
    )
    result = _run(tester, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*test_starts[[]asyncio[]] PASSED*", "*test_starts[[]eager[]] PASSED*"]
    )


def test_the_ini_option_runs_every_async_test_on_each_flavour(tester: pytest.Pytester) -> None:
    tester.makeini(INI.format(mode="auto") + "asyncfork_loops = asyncio uvloop\n")
    tester.makepyfile(
        test_af_ini="""
        import asyncio

        async def test_loop(af_loop):
            kind = type(asyncio.get_running_loop()).__module__.split(".")[0]
            assert kind == af_loop

        def test_sync_tests_are_not_multiplied():
            pass
        """
    )
    result = _run(tester, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*test_loop[[]asyncio[]] PASSED*", "*test_loop[[]uvloop[]] PASSED*"]
    )


def test_a_projects_own_loop_hook_is_kept_for_unmarked_tests(tester: pytest.Pytester) -> None:
    tester.makeconftest(
        """
        import asyncio

        def pytest_asyncio_loop_factories(config, item):
            return {"mine": asyncio.SelectorEventLoop, "also": asyncio.SelectorEventLoop}
        """
    )
    tester.makepyfile(
        test_af_hook="""
        import pytest

        async def test_unmarked():
            pass

        @pytest.mark.asyncfork_loops("asyncio", "uvloop")
        async def test_marked(af_loop):
            assert af_loop in ("asyncio", "uvloop")
        """
    )
    result = _run(tester, "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(
        [
            "*test_unmarked[[]mine[]] PASSED*",
            "*test_unmarked[[]also[]] PASSED*",
            "*test_marked[[]asyncio[]] PASSED*",
            "*test_marked[[]uvloop[]] PASSED*",
        ]
    )


def test_an_unknown_flavour_is_a_usage_error(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_af_bad="""
        import pytest

        @pytest.mark.asyncfork_loops("tokio")
        def test_x(af_loop):
            pass
        """
    )
    result = _run(tester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*asyncfork_loops takes flavour names from*got [[]'tokio'[]]"])


def test_sync_flavours_set_asyncforks_own_loops_and_restore_the_setting(
    tester: pytest.Pytester,
) -> None:
    tester.makepyfile(
        test_af_sync="""
        import asyncio

        import pytest

        import asyncfork as af
        from asyncfork import _runner

        async def kind():
            return type(asyncio.get_running_loop()).__module__.split(".")[0]

        @pytest.mark.asyncfork_loops("asyncio", "uvloop")
        def test_background_loop(af_loop):
            assert af.wait(af.fork(kind), timeout=5) == af_loop

        def test_restored():
            assert _runner._loop_choice is None
        """
    )
    _run(tester).assert_outcomes(passed=3)


# -- small worker pools ---------------------------------------------------------------------


def test_pool_fixtures_restore_the_limit_set_before(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_af_limits="""
        import pytest

        import asyncfork as af
        from asyncfork import _threads

        @pytest.fixture(autouse=True, scope="module")
        def seven():
            af.configure(workers=7)
            yield
            af.configure(workers=None)

        def test_one(af_one_worker):
            assert _threads._limit == 1

        def test_two(af_two_workers):
            assert _threads._limit == 2

        def test_any(af_workers):
            af_workers(3)
            assert _threads._limit == 3

        def test_restored():
            assert _threads._limit == 7
        """
    )
    _run(tester).assert_outcomes(passed=4)
    assert _threads._limit is None


# -- review fixes: garbage blamed on its own test, clear errors for bad options -------------


def test_a_failure_dropped_in_a_cycle_fails_its_own_test_not_a_later_one(
    tester: pytest.Pytester,
) -> None:
    """Freed only by the cyclic garbage collector, a dropped failure is still reported in
    the test that dropped it (async or sync), and never in the next, innocent, test."""
    tester.makepyfile(
        test_af_cycles="""
        import asyncio
        import gc
        import threading

        import asyncfork as af

        async def boom():
            raise ValueError("boom from a")

        def sync_boom():
            raise KeyError("boom from c")

        async def test_a_drops_a_failure_in_a_cycle():
            fut = af.fork(boom)
            await asyncio.wait([fut])
            cycle = {"fut": fut}
            cycle["self"] = cycle

        async def test_b_innocent():
            gc.collect()

        def test_c_drops_a_sync_failure_in_a_cycle():
            done = threading.Event()
            fut = af.fork(sync_boom)
            fut.add_done_callback(lambda _: done.set())  # retrieves nothing
            assert done.wait(5)
            cycle = [fut]
            cycle.append(cycle)

        def test_d_innocent():
            gc.collect()
        """
    )
    result = tester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-rf")
    result.assert_outcomes(failed=2, passed=2)
    result.stdout.fnmatch_lines(
        [
            "FAILED *test_a_drops_a_failure_in_a_cycle - Failed: asyncfork: the test left 1*",
            "FAILED *test_c_drops_a_sync_failure_in_a_cycle - Failed: asyncfork: the test left 1*",
        ]
    )


def test_the_body_garbage_collection_is_cheap() -> None:
    """What existed before the body is frozen: the collection after it scans the body's
    objects only, not the whole heap (which this suite's process makes large)."""
    import time

    from asyncfork import _leaks

    ballast = [{"n": [i]} for i in range(200_000)]  # a large heap, as a big suite has
    took = []
    for _ in range(5):
        with _leaks.BodyGarbage() as garbage:
            cycle: dict[str, object] = {}
            cycle["self"] = cycle
            del cycle
            start = time.perf_counter()
            garbage.collect()
            took.append(time.perf_counter() - start)
    assert len(ballast) == 200_000
    assert min(took) < 0.005, took


def test_a_list_of_flavours_is_taken_as_their_names(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_af_list="""
        import pytest

        SEEN = []

        @pytest.mark.asyncfork_loops(["asyncio", "uvloop"])
        async def test_on_each(af_loop):
            SEEN.append(af_loop)

        def test_zz_both():
            assert sorted(SEEN) == ["asyncio", "uvloop"]
        """
    )
    _run(tester, "-p", "no:randomly").assert_outcomes(passed=3)


def test_a_bad_leak_check_setting_is_a_usage_error_naming_it(tester: pytest.Pytester) -> None:
    tester.makepyfile(test_af_ok="def test_x():\n    pass\n")
    result = _run(tester, "-o", "asyncfork_leak_check=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*asyncfork_leak_check: *'maybe'; write true or false*"])


def test_bad_worker_limits_and_marker_arguments_are_named(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_af_bad_args="""
        import asyncio

        import pytest

        import asyncfork as af

        @pytest.mark.asyncfork_no_leak_check(False)
        async def test_no_check_false():
            pass

        def test_zero_workers(af_workers):
            af_workers(0)

        def test_str_workers(af_workers):
            af_workers("2")
        """
    )
    result = _run(tester, "-rf")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*asyncfork_no_leak_check takes no arguments*",
            "*ValueError: af_workers(limit) takes an int of at least 1 (af_workers(1)), not 0",
            "*TypeError: af_workers(limit) takes an int of at least 1 (af_workers(1)), not a str*",
        ]
    )


def test_a_worker_that_needs_the_tests_loop_to_finish_gets_it(tester: pytest.Pytester) -> None:
    """An abandoned sync fork still running when the body returns, whose group waits for a
    child that ends on the test's loop: the check keeps that loop running while it waits for
    the worker (after the body the loop no longer runs), so the worker ends and the test
    passes."""
    tester.makepyfile(
        test_needs_loop="""
        import asyncio, threading
        import pytest
        import asyncfork as af

        async def test_abandoned_call_ends_on_the_loop():
            started, cancelled = threading.Event(), threading.Event()

            async def child():
                started.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    for _ in range(50):  # loop steps still to run once the body returns
                        await asyncio.sleep(0)
                    raise

            def body():
                with af.group() as g:
                    g.fork(child)
                    assert cancelled.wait(5)

            fut = af.fork.options(on_cancel="abandon")(body)
            assert await asyncio.to_thread(started.wait, 5)
            fut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fut
            assert await asyncio.to_thread(cancelled.wait, 5)
        """
    )
    _run(tester).assert_outcomes(passed=1)
