"""The self-contained HTML view of a trace."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._trace import Trace


def write_html(trace: Trace, path: str | os.PathLike[str]) -> None:
    raise NotImplementedError
