"""Exports of a trace: Trace Event Format JSON and Graphviz DOT."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._trace import Trace


def write_chrome_trace(trace: Trace, path: str | os.PathLike[str]) -> None:
    raise NotImplementedError


def write_dot(trace: Trace, path: str | os.PathLike[str]) -> None:
    raise NotImplementedError
