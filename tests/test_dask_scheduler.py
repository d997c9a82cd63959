"""A Dask scheduler that dies under running forks: a clear error, in bounded time.

On a cluster of its own (the session's and the kill-a-worker cluster must not restart
workers under this test's check that nothing is left behind).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dask.config
import pytest
from dask_fixtures import Snapshot

import asyncfork as af
from asyncfork.dask import local_cluster

T = 30.0


def sleep_then(started: str, seconds: float) -> str:
    Path(started).write_text("started")
    time.sleep(seconds)
    return "slept"


def test_a_scheduler_that_dies_fails_the_forks_with_a_clear_error(tmp_path: Path) -> None:
    """The running fork fails at once, naming the scheduler; so does a new one."""
    snapshot = Snapshot()
    # The client gives up reconnecting after this, and only then closes.
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "3s"}),
        local_cluster(n_workers=1) as client,
    ):
        started = tmp_path / "started"
        running = af.fork.options(executor=client)(sleep_then, str(started), 0.5)
        deadline = time.monotonic() + T
        while not started.exists():  # it runs on the worker
            assert time.monotonic() < deadline
            time.sleep(0.01)
        cluster: Any = client.cluster  # the LocalCluster: its scheduler runs in this process
        cluster.sync(cluster.scheduler.close)  # the scheduler dies
        with pytest.raises(ConnectionError, match=r"^fork 'sleep_then': the Dask client lost"):
            running.result(timeout=T)
        later = af.fork.options(executor=client)(sleep_then, str(started), 0)
        with pytest.raises(ConnectionError, match=r"^fork 'sleep_then' cannot be sent: the Dask"):
            later.result(timeout=T)
    snapshot.assert_nothing_left()
