"""Real Dask clusters for tests/test_dask*.py (imported into tests/conftest.py).

``dask_client``: one LocalCluster per test session (per xdist worker), 2 worker processes
with 1 thread each, on 127.0.0.1. Once it is closed, the session checks that it left
nothing behind: no child process, no thread of its own, no listening socket.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Threads that outlive any one cluster by design: the process-wide offload pool of Dask.
_PROCESS_WIDE = re.compile(r"^Dask-Offload")
# Threads a cluster and its clients start (others, of other tests of the session, are not
# this check's business): by name, or by the library whose code the thread runs.
_DASK_NAMES = re.compile(r"^(IO loop|AsyncProcess|QueueFeederThread|Dask-|Profile|TCP-Executor)")
_DASK_MODULES = ("distributed", "dask", "tornado", "multiprocessing")


def _is_dask(thread: threading.Thread) -> bool:
    if _PROCESS_WIDE.match(thread.name):
        return False
    target = getattr(thread, "_target", None)
    module = getattr(target, "__module__", None) or type(thread).__module__
    return bool(_DASK_NAMES.match(thread.name)) or module.startswith(_DASK_MODULES)


def listening_sockets() -> set[str]:
    """Local addresses this process listens on (TCP, from /proc: Linux only)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1])
    return found


class Snapshot:
    """The child processes, Dask threads and listening sockets of this process now."""

    def __init__(self) -> None:
        self.children = set(multiprocessing.active_children())
        self.threads = {t for t in threading.enumerate() if _is_dask(t)}
        self.sockets = listening_sockets()

    def assert_nothing_left(self) -> None:
        """After a cluster closed: nothing more than before it started (waits up to 10 s
        for processes and threads that are ending)."""
        deadline = time.monotonic() + 10
        while True:
            now = Snapshot()
            children = now.children - self.children
            threads = now.threads - self.threads
            sockets = now.sockets - self.sockets
            if not (children or threads or sockets) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not children, f"child processes left behind: {children}"
        assert not threads, f"threads left behind: {sorted(t.name for t in threads)}"
        assert not sockets, f"listening sockets left behind: {sockets}"


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A client of a LocalCluster of 2 worker processes, 1 thread each, for the session."""
    from asyncfork.dask import local_cluster

    before = Snapshot()
    with local_cluster(n_workers=2, threads_per_worker=1) as client:
        yield client
    before.assert_nothing_left()
