"""Shared test configuration.

Event loops
-----------
Every async test runs twice: on the stock asyncio loop (id ``asyncio``) and on
uvloop (id ``uvloop``). asyncfork's own pytest plugin does it, told by the
``asyncfork_loops`` ini option in pyproject.toml, through pytest-asyncio's
``pytest_asyncio_loop_factories`` hook (pytest-asyncio >= 1.4, pinned there). The
older approach, overriding the ``event_loop_policy`` fixture, emits a
PytestDeprecationWarning since 1.4, which ``filterwarnings = ["error"]`` turns into
an error; it is also built on event loop policies, which Python 3.14 deprecates.

Sync tests that need asyncfork's own loops on both kinds take the ``loop_kind``
fixture.

Browser
-------
The HTML trace view is checked in Debian's chromium (/usr/bin/chromium) driven by
Playwright: the ``browser`` fixture. ``make test`` installs chromium; missing, the tests
fail (never skip).

Thread exceptions
-----------------
An autouse fixture records every exception that escapes a thread (asyncfork
worker threads included) and fails the test during which it happened.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

# The real Dask cluster of tests/test_dask*.py, per session.
from dask_fixtures import dask_client  # noqa: F401

_ON_WINDOWS = sys.platform == "win32"


@pytest.fixture(
    params=[
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(_ON_WINDOWS, reason="uvloop does not support Windows"),
        ),
    ]
)
def loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """For sync tests: make asyncfork create loops of one kind, then clean up."""
    import asyncfork  # lazily: the package may not import while it is being written

    kind: str = request.param
    _shutdown()
    asyncfork.configure(loop=kind)  # type: ignore[arg-type]
    try:
        yield kind
    finally:
        _shutdown(cancel=True, timeout=5)
        asyncfork.configure(loop=None)


def _shutdown(**options: Any) -> None:
    """af.shutdown(), from a helper thread if this one runs a loop (Playwright's sync API
    keeps one running here while the browser is open): it raises DeadlockError there."""
    import asyncfork

    if asyncio._get_running_loop() is None:
        asyncfork.shutdown(**options)
        return
    errors: list[BaseException] = []

    def call() -> None:
        try:
            asyncfork.shutdown(**options)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(30)  # bounded: a shutdown that hangs fails the test
    assert not thread.is_alive(), "af.shutdown() did not return within 30 s"
    if errors:
        raise errors[0]


@pytest.fixture
def one_worker(af_one_worker: None) -> None:
    """At most one sync fork runs at once: the plugin's ``af_one_worker``."""


@pytest.fixture
def two_workers(af_two_workers: None) -> None:
    """At most two sync forks run at once: the plugin's ``af_two_workers``."""


@pytest.fixture(autouse=True)
def _fail_on_thread_exceptions() -> Iterator[None]:
    """Fail the test if any thread (e.g. an 'asyncfork-worker*' one) died of an exception."""
    seen: list[str] = []
    previous = threading.excepthook

    def record(args: Any) -> None:
        name = args.thread.name if args.thread is not None else "<unknown>"
        seen.append(f"{name}: {args.exc_type.__name__}: {args.exc_value!r}")
        previous(args)

    threading.excepthook = record
    try:
        yield
    finally:
        threading.excepthook = previous
    if seen:
        pytest.fail("Exception in thread during the test:\n  " + "\n  ".join(seen))


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope, not session: Playwright's sync API keeps its own event loop running in
# this thread while the browser is open, which later asyncio tests would collide with.
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium, headless, with a fresh profile; fails loudly if it is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(
            f"Python Playwright is missing ({exc}): run `bash .ci/run` "
            "(or `pip install -e '.[test]'`)",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash .ci/run` (it runs `apt-get install chromium`)",
            pytrace=False,
        )
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
