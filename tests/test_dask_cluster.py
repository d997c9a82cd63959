"""asyncfork.dask.local_cluster itself, on a small cluster of this module's own: no side
effects on the calling process, and workers killed under a fork (Dask's retries)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import distributed
import pytest
from dask_fixtures import Snapshot

import asyncfork as af
from asyncfork.dask import local_cluster

T = 30.0


def environ() -> dict[str, str]:
    """os.environ, less the variable pytest itself changes at each test phase."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(scope="module")
def small_cluster() -> Iterator[tuple[Any, dict[str, str]]]:
    """2 workers that may be killed; a task is tried twice (allowed-failures=1).

    Yields the client and ``os.environ`` as it was before the cluster started; checks
    after closing it that the environment is back and nothing is left behind.
    """
    before = environ()
    snapshot = Snapshot()
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        local_cluster(n_workers=2, threads_per_worker=1) as client,
    ):
        yield client, before
    assert environ() == before
    snapshot.assert_nothing_left()


def kill_my_worker_once(marker: str) -> int:
    """Kill this worker process the first time only; the retry then returns its pid."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def kill_my_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_cluster_changes_nothing_in_this_process(
    small_cluster: tuple[Any, dict[str, str]],
) -> None:
    client, before = small_cluster
    assert environ() == before  # nannies set OMP_NUM_THREADS etc. for workers only
    with pytest.raises(ValueError, match="No clients found"):
        distributed.default_client()  # not Dask's default client
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])


def test_a_fork_whose_worker_is_killed_is_retried(
    small_cluster: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    client, before = small_cluster
    marker = tmp_path / "killed"
    fut = af.fork.options(executor=client)(kill_my_worker_once, str(marker))
    assert fut.result(timeout=T) != int(marker.read_text())  # another process ran it
    # Its nanny spawned a new worker, writing OMP_NUM_THREADS etc. here for it: put back
    # once the spawn is over, which ends a little after the new worker registers.
    client.wait_for_workers(2, timeout=T)
    deadline = time.monotonic() + T
    while environ() != before and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # polling a condition, with a deadline
    assert environ() == before


def test_killed_worker_reaches_the_waiter_once_retries_are_spent(
    small_cluster: tuple[Any, dict[str, str]],
) -> None:
    client, _ = small_cluster
    fut = af.fork.options(executor=client)(kill_my_worker)
    with pytest.raises(distributed.KilledWorker):
        fut.result(timeout=T)
