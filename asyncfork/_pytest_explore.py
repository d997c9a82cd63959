"""pytest hooks of schedule exploration: the ``asyncfork_explore`` marker and its options.

A test marked ``@pytest.mark.asyncfork_explore(runs=N)`` (or, with
``--asyncfork-explore=N``, every async test as well) has its body run N times, each on
a new exploring loop of seed 0, 1, ...; the first failure names its seed and the
command that replays it, ``pytest NODEID --asyncfork-seed=S``. Fixtures are set up once,
before the runs. asyncfork's pytest plugin registers this module.
"""

from __future__ import annotations

import inspect
import os
import shlex
import sys
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import pytest

from ._explore import run_once, run_seeds, seeds_to_run

_MARKER = "asyncfork_explore"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncfork")
    group.addoption(
        "--asyncfork-explore",
        type=int,
        metavar="N",
        default=None,
        help="run every test marked asyncfork_explore, and every async test, under N seeded "
        "schedules (seeds 0 to N-1)",
    )
    group.addoption(
        "--asyncfork-seed",
        type=int,
        metavar="S",
        default=None,
        help="run each marked test, and every async test, once, under the schedule of seed S "
        "(the replay of a failure exploration found)",
    )


def pytest_configure(config: pytest.Config) -> None:
    runs = config.getoption("asyncfork_explore")
    if runs is not None and runs < 1:
        raise pytest.UsageError(f"--asyncfork-explore=N takes N of at least 1, not {runs}")
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(runs=100): run the test body under `runs` seeded schedules of its forks "
        "(asyncfork's schedule exploration); a failure names the seed that replays it",
    )


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    # A wrapper, not tryfirst: other plugins' calls (anyio's is tryfirst) must not run the
    # body again. They get a body that does nothing, once the runs are over.
    if not _explore(pyfuncitem):
        return (yield)
    original = pyfuncitem.obj
    pyfuncitem.obj = _ran
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


def _ran(*args: object, **kwargs: object) -> None:
    """The test body once exploration has run it."""


def _explore(pyfuncitem: pytest.Function) -> bool:
    """Run the test body under its seeds, if it is explored; raise the first failure."""
    marker = pyfuncitem.get_closest_marker(_MARKER)
    config = pyfuncitem.config
    explore_all: int | None = config.getoption("asyncfork_explore")
    seed: int | None = config.getoption("asyncfork_seed")
    body = _body(pyfuncitem)
    # Either option takes every async test: a seed replays what --asyncfork-explore found.
    everything = explore_all is not None or seed is not None
    if marker is None and not (everything and _on_asyncio(pyfuncitem, body)):
        return False
    backend = _anyio_backend(pyfuncitem)
    if backend not in (None, "asyncio"):
        pytest.fail(
            f"schedule exploration runs on asyncio only, not on anyio's {backend} backend: "
            "explore the asyncio parametrization alone",
            pytrace=False,
        )
    runs: int | None = explore_all
    if runs is None and marker is not None:
        runs = _runs_of(marker)
    if seed is not None:
        runs = None  # a replay: that one schedule
    if _flavoured(pyfuncitem, body):
        pytest.fail(
            "schedule exploration runs each run on its own exploring loop (an asyncio loop), "
            "not on the loop flavours of asyncfork_loops: explore a test that is not run "
            "per flavour (leave out @pytest.mark.asyncfork_loops, or the asyncfork_loops "
            "ini option with -o asyncfork_loops=)",
            pytrace=False,
        )
    seeds: list[int] = []
    try:
        seeds = seeds_to_run(runs, seed, f"@pytest.mark.{_MARKER}")
    except (TypeError, ValueError) as exc:
        bad = str(exc)
    else:
        bad = ""
    if bad:  # raised outside the except: no "during handling" chain in the report
        pytest.fail(bad, pytrace=False)
    funcargs = pyfuncitem.funcargs
    names = pyfuncitem._fixtureinfo.argnames  # pyright: ignore[reportPrivateUsage]
    kwargs = {name: funcargs[name] for name in names}
    call = _call(body, kwargs)

    def checked_call(s: int) -> None:
        call(s)
        # The leak check of the run's loop, made before the loop closed (asyncfork's plugin
        # stashes it): each run is checked, not only the last.
        found = pop_loop_findings(pyfuncitem)
        if found:
            raise _RunLeaked(found.report())

    leaked = ""
    try:
        run_seeds(
            checked_call,
            seeds,
            lambda s: _replay_command(pyfuncitem, s),
            (pytest.skip.Exception, pytest.xfail.Exception),
        )
    except _RunLeaked as exc:
        leaked = "\n".join([str(exc), *getattr(exc, "__notes__", ())])
    if leaked:
        pytest.fail(leaked, pytrace=False)
    return True


class _RunLeaked(Exception):
    """One explored run left work behind: the leak check's report."""


class Findings(Protocol):
    """What the leak check found (``asyncfork._leaks.Findings``)."""

    def __bool__(self) -> bool: ...

    def report(self) -> str:
        """The failure message."""
        ...


# Where asyncfork's plugin leaves the leak check of an async test's own loop, made on that
# loop right after the body: once per explored run.
LOOP_FINDINGS = pytest.StashKey[Findings]()


def pop_loop_findings(item: pytest.Item) -> Findings | None:
    """The leak check of the test's own loop that the plugin stashed, taken out; None if
    there is none (a sync test, or one the check skips)."""
    found = item.stash.get(LOOP_FINDINGS, None)
    if found is not None:
        del item.stash[LOOP_FINDINGS]
    return found


def _call(body: Callable[..., Any], kwargs: dict[str, Any]) -> Callable[[int], None]:
    """One run of the test body with its fixtures' values, on an exploring loop of a seed:
    an async body as a coroutine fork, a sync one as a sync fork."""
    program: Callable[[], Any]
    if inspect.iscoroutinefunction(body):

        async def main() -> None:
            await body(**kwargs)

        program = main
    else:
        program = lambda: body(**kwargs)  # noqa: E731
    return partial(run_once, program)


def _on_asyncio(item: pytest.Function, body: Callable[..., Any]) -> bool:
    """An async test that pytest-asyncio runs, or anyio's on its asyncio backend (not trio's)."""
    if not inspect.iscoroutinefunction(body):
        return False
    if item.get_closest_marker("anyio") is not None:
        return _anyio_backend(item) == "asyncio"
    return item.get_closest_marker("asyncio") is not None


def _flavoured(item: pytest.Function, body: Callable[..., Any]) -> bool:
    """A test run once per loop flavour (asyncfork's ``asyncfork_loops``, marker or, for
    an async test, ini option)."""
    if item.get_closest_marker("asyncfork_loops") is not None:
        return True
    if not inspect.iscoroutinefunction(body):
        return False
    try:
        names: list[str] = item.config.getini("asyncfork_loops")
    except ValueError:  # asyncfork's plugin is not loaded: no flavours
        return False
    return bool(names)


def _anyio_backend(item: pytest.Function) -> str | None:
    """The backend of an anyio test (its ``anyio_backend`` fixture), else None."""
    backend: object = item.funcargs.get("anyio_backend")
    if isinstance(backend, tuple):
        backend = cast("tuple[object, ...]", backend)[0]
    return backend if isinstance(backend, str) else None


def _body(item: pytest.Function) -> Callable[..., Any]:
    """The test function: under pytest-asyncio, the coroutine function it wrapped."""
    func: Callable[..., Any] = item.obj
    wrapped = getattr(func, "__wrapped__", None)
    if not inspect.iscoroutinefunction(func) and inspect.iscoroutinefunction(wrapped):
        assert wrapped is not None
        return wrapped  # pytest-asyncio's runner is bypassed: each run has its own loop
    return func


def _runs_of(marker: pytest.Mark) -> int | None:
    if marker.args:
        pytest.fail(
            f"{_MARKER} takes runs as a keyword: @pytest.mark.{_MARKER}(runs=50)", pytrace=False
        )
    unknown = set(marker.kwargs) - {"runs"}
    if unknown:
        pytest.fail(
            f"{_MARKER} takes only runs=N, not {', '.join(sorted(unknown))}; "
            "replay a seed with --asyncfork-seed=S",
            pytrace=False,
        )
    runs: int | None = marker.kwargs.get("runs")
    return runs


def _replay_command(item: pytest.Function, seed: int) -> str:
    command = ["pytest", _node_path(item), f"--asyncfork-seed={seed}"]
    plugin = sys.modules.get("asyncfork.pytest_plugin")
    if plugin is None or not item.config.pluginmanager.is_registered(plugin):
        # Loaded without asyncfork's plugin (as -p asyncfork._pytest_explore): say so.
        command[1:1] = ["-p", __name__]
    return shlex.join(command)


def _node_path(item: pytest.Function) -> str:
    """The test's node id with its file relative to the directory pytest was started in
    (a node id is relative to the rootdir, which may be elsewhere), so that the replay
    command works as printed, from there."""
    _, sep, rest = item.nodeid.partition("::")
    try:
        path = os.path.relpath(item.path, item.config.invocation_params.dir)
    except ValueError:  # another drive (Windows): the absolute path
        path = str(item.path)
    return f"{Path(path).as_posix()}{sep}{rest}" if sep else item.nodeid
