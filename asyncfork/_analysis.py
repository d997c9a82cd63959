"""The two views of a trace: the time view and Cilk's work/span profile."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._trace import Trace


@attrs.frozen
class TraceSummary:
    """What ``Trace.summary()`` returns. (Filled in by the tracing analysis.)"""

    def text(self) -> str:
        """The summary as the lines ``Trace.summary()`` prints."""
        raise NotImplementedError


def summarize(trace: Trace) -> TraceSummary:
    raise NotImplementedError
