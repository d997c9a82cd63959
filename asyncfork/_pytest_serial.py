"""Serial mode's pytest part, loaded with asyncfork's pytest plugin.

- ``@pytest.mark.asyncfork_serial``: run the test (its fixtures' setup and teardown too)
  in serial mode, every fork inline inside ``fork()``, as under ``with af.serial():``.
- ``--asyncfork-serial``: the same for every test of the run. A test marked
  ``@pytest.mark.asyncfork_serial(False)`` runs as usual, under this option or
  ``ASYNCFORK_SERIAL=1`` alike.

The switch is the process default of serial mode for the test's duration, not a context
variable set around the call: pytest-asyncio runs a test in a context of its own, which
a variable set here would not reach. ``with af.serial(False):`` still works inside.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import _serial

_MARKER = "asyncfork_serial"
_OPTION = "--asyncfork-serial"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("asyncfork").addoption(
        _OPTION,
        action="store_true",
        default=False,
        help="run every test in asyncfork's serial mode (every fork inline, inside fork())",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(enabled=True): run the test in asyncfork's serial mode, every fork inline "
        "inside fork() (asyncfork_serial(False): not, even under --asyncfork-serial)",
    )


def _wanted(item: pytest.Item) -> bool | None:
    """True or False as the marker or the option say; None: neither says (or the marker
    is malformed: the test's setup fails, see ``pytest_runtest_setup``)."""
    marker = item.get_closest_marker(_MARKER)
    if marker is None:
        return True if item.config.getoption(_OPTION) else None
    if _malformed(marker) is not None:
        return None
    args: tuple[Any, ...] = marker.args
    enabled: bool = args[0] if args else marker.kwargs.get("enabled", True)
    return enabled


def _malformed(marker: pytest.Mark) -> str | None:
    """What is wrong with the marker's arguments, or None."""
    args: tuple[Any, ...] = marker.args
    if args:
        enabled = args[0]
        extra = len(args) > 1 or bool(marker.kwargs)
    else:
        extra = bool(set(marker.kwargs) - {"enabled"})
        enabled = marker.kwargs.get("enabled", True)
    if type(enabled) is bool and not extra:
        return None
    given = ", ".join(
        [repr(arg) for arg in marker.args] + [f"{k}={v!r}" for k, v in marker.kwargs.items()]
    )
    return (
        f"@pytest.mark.{_MARKER}({given}): it takes one argument, True or False: write "
        f"@pytest.mark.{_MARKER} or @pytest.mark.{_MARKER}(False)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A malformed marker fails its test, not the session."""
    marker = item.get_closest_marker(_MARKER)
    if marker is not None:
        problem = _malformed(marker)
        if problem is not None:
            pytest.fail(problem, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    wanted = _wanted(item)
    if wanted is None:
        return (yield)
    previous = _serial.DEFAULT[0]
    _serial.DEFAULT[0] = wanted
    _serial.ON.append(item)  # fork() reads the switch only while ON is not empty
    try:
        return (yield)
    finally:
        _serial.ON.remove(item)
        _serial.DEFAULT[0] = previous
