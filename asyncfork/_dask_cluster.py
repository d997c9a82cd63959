"""Clients of Dask clusters: an embedded LocalCluster that changes nothing in the
caller's process, and a connection to a scheduler by address, bounded in time."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, cast

import dask.config
import distributed
import distributed.comm.core

# distributed's annotations are partial: its untyped parts are used as Any, here only.
comm_connect: Any = cast(Any, distributed.comm.core).connect
config_get: Any = cast(Any, dask.config).get

# Where connect() finds a scheduler's address when it is given none.
SCHEDULER_VARIABLE = "ASYNCFORK_DASK_SCHEDULER"


@contextmanager
def local_cluster(
    n_workers: int | None = None, threads_per_worker: int = 1, **cluster_kwargs: Any
) -> Generator[distributed.Client, None, None]:
    """See ``asyncfork.dask.local_cluster``."""
    options: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "worker_class": _EnvKeepingNanny,
        **cluster_kwargs,
    }
    # Without a dashboard the scheduler still serves a few HTTP routes (health, metrics),
    # by default on port 8787, or a random one with a warning if that is taken.
    options["scheduler_kwargs"] = {
        "dashboard": False,
        "dashboard_address": "127.0.0.1:0",
        **(cluster_kwargs.get("scheduler_kwargs") or {}),
    }
    # A nanny writes into its own process's os.environ what its worker is to inherit
    # (OMP_NUM_THREADS=1, PYTHONHASHSEED, __DASK_PARENT_PID, ...) before it spawns one, at
    # the start and at each restart: put back the ones Dask names, and any the start wrote.
    before = dict(os.environ)
    written = {str(name) for name in config_get("distributed.nanny.pre-spawn-environ", {})}
    written |= _NANNY_WRITES
    try:
        with distributed.LocalCluster(**options) as cluster:  # type: ignore[no-untyped-call]  # distributed leaves it unannotated
            written |= {name for name, value in os.environ.items() if before.get(name) != value}
            _restore(before, written)
            with distributed.Client(cluster, set_as_default=False) as client:  # type: ignore[no-untyped-call]  # distributed leaves it unannotated
                yield client
    finally:
        _restore(before, written)


class _EnvKeepingNanny(distributed.Nanny):
    """A nanny that puts back, once its worker process is spawned (at the start and at each
    restart), the environment variables it wrote into this process for that spawn."""

    async def instantiate(self) -> Any:
        names = set(self.pre_spawn_env) | _NANNY_WRITES
        before = {name: os.environ.get(name) for name in names}
        try:
            return await super().instantiate()
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_NANNY_WRITES = frozenset({"PYTHONHASHSEED", "__DASK_PARENT_PID"})


def _restore(before: dict[str, str], names: set[str]) -> None:
    for name in names:
        value = before.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def connect(
    address: str | None = None, *, timeout: float = 10.0
) -> Generator[distributed.Client, None, None]:
    """See ``asyncfork.dask.connect``."""
    address = address or os.environ.get(SCHEDULER_VARIABLE) or None
    if address is None:
        with local_cluster() as client:
            yield client
        return
    began = time.monotonic()
    try:
        _probe(address, timeout)
        remaining = max(0.1, timeout - (time.monotonic() - began))
        client = distributed.Client(address, timeout=remaining, set_as_default=False)  # type: ignore[no-untyped-call]  # distributed leaves it unannotated
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"asyncfork.dask.connect: no Dask scheduler answered at {address!r} within "
            f"{timeout}s ({type(exc).__name__}{': ' if str(exc) else ''}{exc}). Start one "
            "(`dask scheduler`), or "
            f"check the address (argument, or ${SCHEDULER_VARIABLE})"
        ) from exc
    with client:
        yield client


def _probe(address: str, timeout: float) -> None:
    """Ask the scheduler at ``address`` who it is, within ``timeout`` seconds.

    A Client to an address that accepts the connection but never answers waits for good,
    whatever its ``timeout``, and one that fails leaves its event loop's thread running:
    so a Client is made only once a scheduler has answered. The question is asked on an
    event loop of its own, in a thread of its own (this thread may run a loop: Jupyter).
    """
    outcome: list[BaseException | None] = []

    async def identify() -> None:
        comm = await comm_connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            await comm.read()
        finally:
            await comm.close()

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(identify(), timeout))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="asyncfork-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    error = outcome[0] if outcome else TimeoutError(f"no answer within {timeout}s")
    if error is not None:
        if isinstance(error, (OSError, TimeoutError)):
            raise error
        raise OSError(f"{type(error).__name__}: {error}") from error
