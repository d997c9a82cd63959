"""The cluster that sync forks go to in a scope (``asyncfork.dask.use``), as the core sees it.

This module never imports ``distributed``: the core reads the context variable on a sync
fork's branch, and recognises a ``distributed.Client`` only if the program imported it.
"""

from __future__ import annotations

import importlib
import sys
from concurrent.futures import Executor
from contextvars import ContextVar

# The executor that sync forks made in this context run on when they name none
# (asyncfork.dask.use(client) sets it; None: asyncfork's worker threads).
SCOPED_EXECUTOR: ContextVar[Executor | None] = ContextVar("asyncfork.dask.use", default=None)


def cluster_executor(obj: object) -> Executor | None:
    """An executor for ``obj`` if it is a ``distributed.Client``, else None.

    The adapter's module sits above the core (it builds on ``fork``), so it is loaded by
    name, and only once ``distributed`` is loaded: a Client cannot exist before.
    """
    distributed = sys.modules.get("distributed")
    if distributed is None or not isinstance(obj, distributed.Client):
        return None
    executor_module = importlib.import_module("asyncfork._dask_executor")
    executor: Executor = executor_module.ClusterExecutor(obj)
    return executor
