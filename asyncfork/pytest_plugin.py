"""asyncfork's pytest plugin, loaded by pytest through the ``pytest11`` entry point.

- **Leak check**, on by default: a test fails if, once its body has returned, it left
  forks pending, a failure nobody retrieved, tasks on its event loop, or asyncfork
  worker threads busy. The report shows the forks as ``af.tree()`` does. The leftovers
  are then cancelled, so the next test starts clean. Switch it off for one test (or a
  module, with ``pytestmark``) with ``@pytest.mark.asyncfork_no_leak_check``, or for a
  run with the ini option ``asyncfork_leak_check = false`` (``-o
  asyncfork_leak_check=false`` on the command line).
- ``@pytest.mark.asyncfork_loops``: run the test once per loop flavour, ``asyncio``,
  ``uvloop`` and ``eager`` (Python 3.12+): an async test through pytest-asyncio's
  loop factories, a sync test with asyncfork's own loops of that flavour.
- Fixtures: ``af_workers`` (call it with a worker limit), ``af_one_worker`` and
  ``af_two_workers``, each restoring the previous limit afterwards; ``af_loop``, the
  flavour a test runs on.

It builds on pytest-asyncio (and works beside anyio's plugin) and imports neither.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, cast

import pytest

from . import _fork, _leaks, _runner, _threads
from ._errors import describe
from ._pytest_explore import LOOP_FINDINGS, pop_loop_findings
from ._run import configure, shutdown

# The serial mode's and schedule exploration's pytest parts, loaded with this plugin.
pytest_plugins = ["asyncfork._pytest_serial", "asyncfork._pytest_explore"]

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_NO_CHECK = "asyncfork_no_leak_check"
_LOOPS = "asyncfork_loops"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "asyncfork_leak_check",
        type="bool",
        default=True,
        help="asyncfork: fail tests that leave forks, unretrieved failures, tasks or busy "
        "worker threads behind (default: true)",
    )
    parser.addini(
        "asyncfork_loops",
        type="args",
        default=[],
        help="asyncfork: run every pytest-asyncio test once per loop flavour named here "
        "(asyncio, uvloop, eager), as @pytest.mark.asyncfork_loops does for one test",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.getini("asyncfork_leak_check")
    except (ValueError, pytest.UsageError) as exc:
        raise pytest.UsageError(
            f"asyncfork_leak_check: {exc}; write true or false (e.g. -o asyncfork_leak_check=false)"
        ) from None
    config.addinivalue_line(
        "markers",
        f"{_NO_CHECK}: asyncfork: do not check this test for forks, failures, tasks or "
        "busy worker threads left behind (and do not clean them up)",
    )
    config.addinivalue_line(
        "markers",
        f"{_LOOPS}(*flavours): asyncfork: run the test once per event loop flavour "
        f"(default: all of {', '.join(_available())}; choose with names)",
    )


# -- loop flavours ----------------------------------------------------------------------


def _asyncio_loop() -> asyncio.AbstractEventLoop:
    # Not through the policy, which may have been set to uvloop's.
    if sys.platform == "win32":  # pragma: no cover
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop()


def _uvloop_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def _eager_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop with asyncio's eager task factory; asyncfork's forks start eagerly
    too while the test runs (the ``_asyncfork_flavour_settings`` fixture sees to that)."""
    loop = _asyncio_loop()
    if sys.version_info >= (3, 12):
        loop.set_task_factory(asyncio.eager_task_factory)
    return loop


_FLAVOURS: dict[str, LoopFactory] = {
    "asyncio": _asyncio_loop,
    "uvloop": _uvloop_loop,
    "eager": _eager_loop,
}


def _available() -> list[str]:
    """The flavours run when the marker names none: uvloop off Windows, eager on 3.12+."""
    names = ["asyncio"]
    if sys.platform != "win32":
        names.append("uvloop")
    if sys.version_info >= (3, 12):
        names.append("eager")
    return names


def _chosen(marker: pytest.Mark, where: str) -> list[str]:
    args: tuple[object, ...] = marker.args
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(cast("list[object] | tuple[object, ...]", args[0]))  # one list of names
    names: list[Any] = list(args) or _available()
    unknown = [name for name in names if not isinstance(name, str) or name not in _FLAVOURS]
    if unknown or marker.kwargs:
        pytest.fail(
            f"{where}: @pytest.mark.{_LOOPS} takes flavour names from {list(_FLAVOURS)}, "
            f"e.g. @pytest.mark.{_LOOPS}('asyncio', 'eager'); got "
            f"{unknown or marker.kwargs!r}",
            pytrace=False,
        )
    return names


def _configured(config: pytest.Config) -> list[str]:
    """The flavours of the ``asyncfork_loops`` ini option, those this platform has."""
    names: list[str] = config.getini("asyncfork_loops")
    unknown = [name for name in names if name not in _FLAVOURS]
    if unknown:
        raise pytest.UsageError(
            f"asyncfork_loops: unknown flavours {unknown}; write names from {list(_FLAVOURS)}, "
            "e.g. asyncfork_loops = asyncio uvloop"
        )
    available = _available()
    return [name for name in names if name in available or name == "eager"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(_LOOPS)
    if marker is None:
        return
    names = _chosen(marker, metafunc.definition.nodeid)
    if not inspect.iscoroutinefunction(metafunc.function):
        # A sync test: asyncfork's own loops (the background loop, af.run's) take the flavour.
        if "af_loop" not in metafunc.fixturenames:
            metafunc.fixturenames.append("af_loop")
        metafunc.parametrize("af_loop", names, indirect=True)
        return
    if "anyio_backend" in metafunc.fixturenames:
        pytest.fail(
            f"{metafunc.definition.nodeid}: @pytest.mark.{_LOOPS} runs async tests through "
            "pytest-asyncio; with anyio's plugin, parametrize anyio_backend instead "
            "(e.g. ('asyncio', {'use_uvloop': True}))",
            pytrace=False,
        )
    if not hasattr(metafunc.config.hook, "pytest_asyncio_loop_factories"):
        pytest.fail(
            f"{metafunc.definition.nodeid}: @pytest.mark.{_LOOPS} on an async test needs "
            "pytest-asyncio 1.4 or later (its pytest_asyncio_loop_factories hook)",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Generator[None, Mapping[str, LoopFactory] | None, Mapping[str, LoopFactory] | None]:
    """pytest-asyncio's loop factories: the flavours of the marker or of the ini option,
    else those of the project's own hook, else pytest-asyncio's default loop."""
    theirs = yield
    marker = item.get_closest_marker(_LOOPS)
    names = _configured(config) if marker is None else _chosen(marker, item.nodeid)
    if names:
        return {name: _FLAVOURS[name] for name in names}
    if theirs is None:
        # Nobody else implements the hook, and pytest-asyncio asks every async test once one
        # exists: keep its default, a loop from the current policy.
        return {"asyncio": asyncio.new_event_loop}
    return theirs


def _flavour_of(item: pytest.Item) -> str | None:
    """The flavour an async test runs on, when it came from this plugin's marker."""
    params: dict[str, Any] = getattr(getattr(item, "callspec", None), "params", {})
    factory = params.get("_asyncio_loop_factory")
    for name, candidate in _FLAVOURS.items():
        if factory is candidate:
            return name
    return None


@pytest.fixture(autouse=True)
def _asyncfork_flavour_settings(request: pytest.FixtureRequest) -> Iterator[None]:
    """An async test on the eager flavour: asyncfork's forks start eagerly too."""
    if _flavour_of(request.node) != "eager":
        yield
        return
    previous = _fork.EAGER_DEFAULT
    configure(eager=True)
    try:
        yield
    finally:
        configure(eager=previous)


@pytest.fixture
def af_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """The loop flavour of this test: ``"asyncio"``, ``"uvloop"`` or ``"eager"``
    (``"asyncio"`` for a test that is not run per flavour).

    In a sync test marked ``@pytest.mark.asyncfork_loops`` it sets asyncfork's own loops
    to that flavour: the background loop is restarted before and shut down (cancelling)
    after, and the previous setting restored.
    """
    flavour: str | None = getattr(request, "param", None)
    if flavour is None:  # an async test: its loop came from pytest-asyncio
        yield _flavour_of(request.node) or "asyncio"
        return
    if flavour not in _FLAVOURS:
        raise pytest.UsageError(f"af_loop: unknown flavour {flavour!r}, not one of {_FLAVOURS}")
    previous_loop, previous_eager = _runner._loop_choice, _fork.EAGER_DEFAULT
    shutdown(cancel=True, timeout=_leaks.CLEANUP_SECONDS)
    configure(loop="uvloop" if flavour == "uvloop" else "asyncio", eager=flavour == "eager")
    try:
        yield flavour
    finally:
        try:
            shutdown(cancel=True, timeout=_leaks.CLEANUP_SECONDS)
        finally:
            configure(loop=previous_loop, eager=previous_eager)  # type: ignore[arg-type]


# -- small worker pools -------------------------------------------------------------------


@pytest.fixture
def af_workers() -> Iterator[Callable[[int], None]]:
    """Call it with a worker limit (``af_workers(1)``) to run at most that many sync forks
    at once for the rest of the test, to expose code that starves a small pool; the
    previous limit is restored afterwards."""
    previous = _threads._limit
    try:
        yield _set_workers
    finally:
        configure(workers=previous)


def _set_workers(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(cast(object, limit), int):
        raise TypeError(
            f"af_workers(limit) takes an int of at least 1 (af_workers(1)), not {describe(limit)}"
        )
    if limit < 1:
        raise ValueError(
            f"af_workers(limit) takes an int of at least 1 (af_workers(1)), not {limit}"
        )
    configure(workers=limit)


@pytest.fixture
def af_one_worker(af_workers: Callable[[int], None]) -> None:
    """At most one sync fork runs at once during the test; the previous limit is restored."""
    af_workers(1)


@pytest.fixture
def af_two_workers(af_workers: Callable[[int], None]) -> None:
    """At most two sync forks run at once during the test; the previous limit is restored."""
    af_workers(2)


# -- the leak check -----------------------------------------------------------------------


def _checked(item: pytest.Item) -> bool:
    if not item.config.getini("asyncfork_leak_check"):
        return False
    marker = item.get_closest_marker(_NO_CHECK)
    if marker is not None and (marker.args or marker.kwargs):
        pytest.fail(
            f"@pytest.mark.{_NO_CHECK} takes no arguments: write @pytest.mark.{_NO_CHECK} "
            "to switch the check off, and leave the marker out to keep it on",
            pytrace=False,
        )
    return marker is None


def _in_loop_check(item: pytest.Item, test: Callable[..., Any]) -> Callable[..., Any]:
    """The async test wrapped so that the check of its own loop runs on that loop, after the
    body and before the async plugin (pytest-asyncio, anyio) closes the loop."""

    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio._get_running_loop()  # None under trio: nothing of asyncio's to check
        baseline = _leaks.Baseline(loop)
        try:
            result = await test(*args, **kwargs)
        except KeyboardInterrupt:
            raise  # the run is being stopped: no cleanup to wait for
        except BaseException:
            if loop is not None:
                await _leaks.check_loop(baseline)  # the cleanup; the test's error is its report
            raise
        if loop is not None:
            item.stash[LOOP_FINDINGS] = await _leaks.check_loop(baseline)
        return result

    return checked


def _loop_findings(item: pytest.Item) -> _leaks.Findings:
    """The check of the test's own loop (none for a sync test, or an explored one: each of
    its runs was checked by exploration)."""
    found = pop_loop_findings(item)
    if found is None:
        return _leaks.Findings()
    assert isinstance(found, _leaks.Findings)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    if not _checked(item):
        return (yield)
    # An async test: its own loop is checked on that loop (not a Hypothesis one, whose
    # inner test pytest-asyncio runs).
    wrapped = (
        item
        if isinstance(item, pytest.Function)
        and inspect.iscoroutinefunction(item.obj)
        and not getattr(item.obj, "is_hypothesis_test", False)
        else None
    )
    test: Any = None if wrapped is None else wrapped.obj
    if wrapped is not None:
        wrapped.obj = _in_loop_check(item, test)
    baseline = _leaks.Baseline()
    with _leaks.BodyGarbage() as garbage, _leaks.UnretrievedFailures() as unretrieved:
        try:
            result = yield
        except KeyboardInterrupt:
            raise  # the run is being stopped: no cleanup to wait for
        except BaseException:
            _leaks.check_threads(baseline)  # the cleanup; the test's own error is its report
            garbage.collect()  # its dropped failures are reported now, not in a later test
            raise
        finally:
            if wrapped is not None:
                wrapped.obj = test
            found = _loop_findings(item)
        found.merge(_leaks.check_threads(baseline))
        garbage.collect()  # a failure dropped in a reference cycle is reported now
    found.unretrieved += unretrieved.seen
    if found:
        pytest.fail(found.report(), pytrace=False)
    return result
