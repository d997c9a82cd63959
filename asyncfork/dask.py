"""Forks on a Dask cluster: ``pip install 'asyncfork[dask]'``.

A Dask cluster is one more place where sync forks run, under the same rules: a Future
per fork, nesting with the implicit join, cancellation, and failures that are never lost.

- :func:`local_cluster`: an embedded cluster of worker processes on this machine.
- :func:`connect`: a client to a scheduler's address (or ``$ASYNCFORK_DASK_SCHEDULER``),
  else to a :func:`local_cluster`.
- :func:`use`: every sync fork made in its scope runs on that cluster;
  ``af.fork.options(executor=client)`` sends one fork there.

A function running on a worker that forks sync callables sends them to the same cluster,
and gives its worker slot back while it waits for them. See docs/scaling.md.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import distributed

from ._dask_cluster import connect as _connect
from ._dask_cluster import local_cluster as _local_cluster
from ._dask_executor import ClusterExecutor
from ._dask_scope import SCOPED_EXECUTOR

__all__ = ["connect", "local_cluster", "use"]


def local_cluster(
    n_workers: int | None = None, threads_per_worker: int = 1, **cluster_kwargs: Any
) -> AbstractContextManager[distributed.Client]:
    """A ``with`` block's client to a new ``distributed.LocalCluster`` of worker processes.

    The cluster listens on 127.0.0.1 only and has no dashboard; ``cluster_kwargs`` go to
    ``LocalCluster`` and override those. It changes nothing in the calling process: the
    environment variables that Dask's nannies set for their workers are put back, and the
    client is not Dask's default client (``dask.compute`` does not pick it up). The client
    and the cluster are closed at the end of the block.
    """
    return _local_cluster(n_workers, threads_per_worker, **cluster_kwargs)


def connect(
    address: str | None = None, *, timeout: float = 10.0
) -> AbstractContextManager[distributed.Client]:
    """A ``with`` block's client to the Dask scheduler at ``address``.

    Without ``address``: ``$ASYNCFORK_DASK_SCHEDULER`` if it is set, else a new
    :func:`local_cluster`. A scheduler that does not answer within ``timeout`` seconds
    raises ``ConnectionError``. The client is closed at the end of the block (a cluster
    it did not start goes on running).

    Raises:
        ConnectionError: on entering the block, when no scheduler answered at ``address``
            within ``timeout`` seconds.
    """
    return _connect(address, timeout=timeout)


def use(client: distributed.Client | None) -> AbstractContextManager[None]:
    """Within this ``with`` block, sync forks that name no executor run on ``client``'s cluster.

    It sets a context variable: it holds for forks made in the block, in this thread, and
    in the forks and tasks started from there, which inherit the context. Coroutine forks
    still run on their event loop. ``use(None)`` sends sync forks to asyncfork's worker
    threads again inside an outer ``use``.

    Raises:
        TypeError: ``client`` is neither a ``distributed.Client`` nor ``None``.
    """
    return _scope(None if client is None else ClusterExecutor(_checked(client)))


@contextmanager
def _scope(executor: ClusterExecutor | None) -> Generator[None, None, None]:
    token = SCOPED_EXECUTOR.set(executor)
    try:
        yield
    finally:
        SCOPED_EXECUTOR.reset(token)


def _checked(client: object) -> distributed.Client:
    if not isinstance(client, distributed.Client):
        raise TypeError(
            "asyncfork.dask.use() takes a distributed.Client (from asyncfork.dask.local_cluster() "
            f"or connect()) or None, not {type(client).__name__}"
        )
    return client
