"""How a fork ends: the outcome rules applied once its body and its children are done."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from asyncio import CancelledError
from typing import Any

from ._future import FINISHED, Future


def on_timeout(fut: Future[Any]) -> None:
    fut._timer = None
    fut._timed_out = True
    fut._cancel_on_loop(None)


def finish(fut: Future[Any], value: Any, exc: BaseException | None) -> None:
    """Settle a fork whose body and children are done, by DESIGN's outcome rules."""
    if exc is None and fut._failed is None:  # the common case: a value, no failed child
        fut._settle(FINISHED, value, None)
        return
    errors = fut._unretrieved_failures()
    cancelled = isinstance(exc, CancelledError)
    if errors:
        if exc is not None and not cancelled:
            errors.insert(0, exc)
        fut._set_exception(
            BaseExceptionGroup(f"unretrieved failures in children of fork {fut.name!r}", errors)
        )
    elif cancelled:
        if fut._timed_out:
            timeout_error = TimeoutError(f"fork {fut.name!r} timed out after {fut._timeout}s")
            timeout_error.__cause__ = exc
            fut._set_exception(timeout_error)
        else:
            fut._set_cancelled()
    elif exc is not None:
        fut._set_exception(exc)
    else:
        fut._set_result(value)
