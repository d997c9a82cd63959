"""``af.run``: the core's root runner, plus its switch for tracing (``ASYNCFORK_TRACE``).

It sits above the tracing package so that the core never imports tracing.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, cast, overload

from . import _threads
from ._classify import reject_coroutine_object
from ._run import run_root

P = ParamSpec("P")
T = TypeVar("T")


@overload
def run(func: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


@overload
def run(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


def run(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` as the root fork on a new event loop and return its value.

    Like ``asyncio.run``: the loop is made in this thread (uvloop when installed)
    and closed at the end. Every fork made on it is joined first; forks made with
    ``fork.options(daemon=True)`` are cancelled instead. On Ctrl-C (or a fork's
    ``KeyboardInterrupt`` or ``SystemExit``) everything is cancelled, its cleanup
    runs, and the interrupt is raised from here.

    With the environment variable ``ASYNCFORK_TRACE=DIR`` set (and no trace
    active), the run is traced and ``DIR/trace.json`` and ``DIR/trace.html`` are
    written at its end.

    Raises:
        BaseException: what ``func`` raised, or the unretrieved failures of its
            children (an ``ExceptionGroup``), as its Future would.
        KeyboardInterrupt: on Ctrl-C, after everything was cancelled and cleaned up.
        RuntimeError: when called on a thread whose event loop is running.
        TypeError: for a coroutine object (``af.run(main())``): pass the function.
    """
    if isinstance(cast(object, func), CoroutineType):  # af.run(main()): name af.run
        reject_coroutine_object(func, "run")
    # In a Dask task running asyncfork code (asyncfork.dask) the loop's sync forks go to the
    # cluster: the task's slot is lent out for the run, or a full cluster would deadlock.
    lender = _threads._local.lender
    if lender is None:
        return _run(func, args, kwargs)
    lender.lend_slot()
    try:
        return _run(func, args, kwargs)
    finally:
        lender.reclaim_slot()


def _run(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    trace_dir = os.environ.get("ASYNCFORK_TRACE")
    if not trace_dir:
        return run_root(func, args, kwargs)
    from ._tracing.recorder import run_traced

    return run_traced(run_root, func, args, kwargs, trace_dir)
