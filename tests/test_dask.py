"""Forks on a real Dask cluster (asyncfork.dask): connecting, nesting, cancelling, errors.

The session's cluster (``dask_client``, tests/dask_fixtures.py) has 2 worker processes
with 1 thread each. Functions that run on workers are module-level, so that the workers
import this module to find them; they talk back through files under ``tmp_path``
(workers share this machine) and Dask Events.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import distributed
import pytest

import asyncfork as af
from asyncfork.dask import connect, use

T = 30.0  # bound of every wait on the cluster: generous, it is a loaded 2-core machine


def pid() -> int:
    return os.getpid()


async def forks_pid() -> int:
    """A coroutine fork (it runs here, on its loop) whose sync child is sent by use()."""
    return await af.fork(pid)


def token(_: int) -> str:
    return uuid.uuid4().hex


def current_name() -> str | None:
    fut = af.current()
    return None if fut is None else fut.name


def tree(depth: int) -> int:
    """A binary fan-out: each level forks two children and waits for them."""
    if depth == 0:
        return 1
    left, right = af.fork(tree, depth - 1), af.fork(tree, depth - 1)
    return int(af.wait(left)) + int(af.wait(right))


def tree_as_completed(depth: int) -> int:
    """The fan-out, its children collected with `for ... in af.as_completed(...)`."""
    if depth == 0:
        return 1
    kids = [af.fork(tree_as_completed, depth - 1) for _ in range(2)]
    return sum(int(fut.result()) for fut in af.as_completed(kids, timeout=T))


async def tree_run(depth: int) -> int:
    kids = [af.fork(tree, depth) for _ in range(2)]  # sync forks: to the cluster
    return sum([await fut for fut in kids])


def run_a_loop(depth: int) -> int:
    """A remote fork that runs an event loop whose sync forks go to the cluster."""
    return af.run(tree_run, depth)


def exits(code: int) -> None:
    raise SystemExit(code)


class Failure(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(code: int) -> None:
    raise Failure("it failed", code)


def fork_failing_child() -> str:
    af.fork(fail, 3)  # never retrieved
    return "parent's value"


def write_later(path: str, seconds: float) -> None:
    time.sleep(seconds)
    Path(path).write_text("done")


def fork_and_leave(path: str) -> str:
    af.fork(write_later, path, 0.3)  # not waited for: the implicit join waits for it
    return "returned"


def make_lock() -> threading.Lock:
    return threading.Lock()


def identity(value: Any) -> Any:
    return value


def block_on(event: str) -> str:
    assert distributed.Event(event).wait(T)
    return "released"


def write(path: str) -> None:
    Path(path).write_text("ran")


def until_cancelled(started: str, path: str) -> str:
    """Signal that it runs, then poll af.check_cancelled(); note the cancellation seen."""
    distributed.Event(started).set()
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        try:
            af.check_cancelled()
        except asyncio.CancelledError:
            time.sleep(0.2)  # still running: a "wait" cancel settles only after this
            Path(path).write_text(str(time.time()))
            raise
        time.sleep(0.001)
    return "never cancelled"


def until_cancelled_in_child(started: str, path: str) -> str:
    return str(af.wait(af.fork(until_cancelled, started, path)))


def event_name() -> str:
    return f"asyncfork-test-{uuid.uuid4().hex}"


def test_a_client_as_executor_runs_the_fork_on_a_worker(dask_client: Any) -> None:
    fut = af.fork.options(executor=dask_client)(pid)
    assert fut.result(timeout=T) != os.getpid()
    assert fut.kind == "executor"


def test_every_fork_runs_even_with_equal_arguments(dask_client: Any) -> None:
    """Impure: Dask's default would merge two calls of one function on equal arguments."""
    forker = af.fork.options(executor=dask_client)
    first, second = forker(token, 1), forker(token, 1)
    assert first.result(timeout=T) != second.result(timeout=T)


def test_use_sends_the_sync_forks_of_its_scope_to_the_cluster(dask_client: Any) -> None:
    assert af.fork(pid).result(timeout=T) == os.getpid()
    with use(dask_client):
        assert af.fork(pid).result(timeout=T) != os.getpid()
        with use(None):  # back to asyncfork's worker threads
            assert af.fork(pid).result(timeout=T) == os.getpid()
        # A fork made in the scope inherits it: its sync forks go to the cluster too.
        assert af.fork(forks_pid).result(timeout=T) != os.getpid()
    assert af.fork(pid).result(timeout=T) == os.getpid()


def test_use_leaves_coroutine_forks_on_their_loop(dask_client: Any) -> None:
    async def here() -> int:
        await asyncio.sleep(0)
        return os.getpid()

    with use(dask_client):
        assert af.fork(here).result(timeout=T) == os.getpid()


async def test_a_remote_fork_is_awaited_on_the_loop(dask_client: Any) -> None:
    fut = af.fork.options(executor=dask_client)(pid)
    assert await asyncio.wait_for(fut, T) != os.getpid()


def test_use_takes_only_a_client() -> None:
    with (
        ThreadPoolExecutor() as pool,
        pytest.raises(TypeError, match=r"takes a distributed\.Client .* not ThreadPool"),
    ):
        use(pool)  # type: ignore[arg-type]


def test_a_recursive_fan_out_completes_on_two_single_thread_workers(dask_client: Any) -> None:
    """127 forks of depth 6 on 2 slots: each waiting parent gives its slot back."""
    with use(dask_client):
        assert af.fork(tree, 6).result(timeout=T) == 64


def test_as_completed_on_a_worker_gives_its_slot_back(dask_client: Any) -> None:
    """Without lending its slot while it iterates, a depth-3 tree deadlocks 2 slots."""
    with use(dask_client):
        assert af.fork(tree_as_completed, 3).result(timeout=T) == 8


def test_af_run_on_a_worker_gives_its_slot_back(dask_client: Any) -> None:
    """Two remote forks each running a loop whose children need the 2 slots they hold."""
    with use(dask_client):
        futs = [af.fork(run_a_loop, 1) for _ in range(2)]
        assert af.wait(futs, timeout=T) == [4, 4]


def test_a_remote_system_exit_reaches_the_waiter_and_spares_the_worker(dask_client: Any) -> None:
    """Dask would let a SystemExit take the worker down, and retry the task elsewhere."""
    workers = set(dask_client.scheduler_info()["workers"])
    fut = af.fork.options(executor=dask_client)(exits, 3)
    with pytest.raises(SystemExit) as raised:
        fut.result(timeout=T)
    assert raised.value.code == 3
    assert "in fork 'exits'" in raised.value.__notes__[-1]
    assert set(dask_client.scheduler_info()["workers"]) == workers  # none restarted


def test_af_current_on_a_worker_is_the_fork(dask_client: Any) -> None:
    fut = af.fork.options(executor=dask_client, name="named")(current_name)
    assert fut.result(timeout=T) == "named"


def test_a_remote_fork_joins_its_children_before_it_completes(
    dask_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "child"
    fut = af.fork.options(executor=dask_client)(fork_and_leave, str(path))
    assert fut.result(timeout=T) == "returned"
    assert path.read_text() == "done"


def test_an_unretrieved_child_failure_fails_the_remote_parent(dask_client: Any) -> None:
    fut = af.fork.options(executor=dask_client)(fork_failing_child)
    with pytest.raises(ExceptionGroup) as info:
        fut.result(timeout=T)
    (failure,) = info.value.exceptions
    assert isinstance(failure, Failure)
    assert failure.code == 3


def test_a_remote_error_keeps_its_type_attributes_and_traceback(dask_client: Any) -> None:
    fut = af.fork.options(executor=dask_client)(fail, 7)
    with pytest.raises(Failure) as info:
        fut.result(timeout=T)
    assert info.value.code == 7
    assert "fail" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert not hasattr(info.value, "__asyncfork_ran__")  # the timing is not left on it


def test_an_argument_that_cannot_be_pickled_is_named(dask_client: Any) -> None:
    forker = af.fork.options(executor=dask_client, name="sender")
    with pytest.raises(TypeError, match=r"^fork 'sender': argument 1, a thread\.lock .*pickled"):
        forker(identity, threading.Lock()).result(timeout=T)
    with pytest.raises(TypeError, match=r"^fork 'sender': keyword argument 'value', a thread"):
        forker(identity, value=threading.Lock()).result(timeout=T)


def test_a_result_that_cannot_be_pickled_is_named(dask_client: Any) -> None:
    fut = af.fork.options(executor=dask_client)(make_lock)
    with pytest.raises(TypeError, match=r"^fork 'make_lock': its result, a thread\.lock"):
        fut.result(timeout=T)


def test_queued_work_that_is_cancelled_never_runs(dask_client: Any, tmp_path: Path) -> None:
    release = event_name()
    path = tmp_path / "ran"
    forker = af.fork.options(executor=dask_client)
    started = [event_name(), event_name()]
    blockers = [forker(signal_then_block, name, release) for name in started]
    for name in started:  # both slots are taken
        assert distributed.Event(name, client=dask_client).wait(T)
    queued = forker(write, str(path))
    try:
        assert queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            queued.result(timeout=T)
    finally:
        distributed.Event(release, client=dask_client).set()
    assert af.wait(blockers, timeout=T) == ["released", "released"]
    # Both workers are free again: anything left queued would have run by now.
    af.wait([forker(pid) for _ in range(4)], timeout=T)
    assert not path.exists()


@pytest.mark.parametrize("child", [False, True], ids=["fork", "its-child"])
def test_a_running_fork_sees_its_cancellation_and_wait_settles_after_it_returns(
    dask_client: Any, tmp_path: Path, child: bool
) -> None:
    """``on_cancel="wait"``: the Future settles once the call has returned. Cancelling a
    remote parent reaches its remote child the same way."""
    started, path = event_name(), tmp_path / "saw-cancel"
    function = until_cancelled_in_child if child else until_cancelled
    fut = af.fork.options(executor=dask_client)(function, started, str(path))
    assert distributed.Event(started, client=dask_client).wait(T)
    cancelled_at = time.time()
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        fut.result(timeout=T)
    assert cancelled_at < float(path.read_text()) < time.time()


def test_abandon_settles_a_running_fork_at_once(dask_client: Any) -> None:
    release, started = event_name(), event_name()
    forker = af.fork.options(executor=dask_client, on_cancel="abandon")
    fut = forker(signal_then_block, started, release)
    try:
        assert distributed.Event(started, client=dask_client).wait(T)
        assert fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            fut.result(timeout=T)  # while the call still blocks
    finally:
        distributed.Event(release, client=dask_client).set()


def signal_then_block(started: str, release: str) -> str:
    distributed.Event(started).set()
    return block_on(release)


def test_cancelling_a_group_cancels_its_remote_forks(dask_client: Any, tmp_path: Path) -> None:
    started, path = event_name(), tmp_path / "saw-cancel"
    remote = af.fork.options(executor=dask_client)
    with af.group() as g:
        child = g.fork(lambda: remote(until_cancelled, started, str(path)).result(timeout=T))
        assert distributed.Event(started, client=dask_client).wait(T)
        g.cancel()
    assert child.cancelled()
    assert path.exists()  # the remote call saw it, and returned before the group ended


def test_the_instrument_hears_where_and_when_a_fork_ran(dask_client: Any) -> None:
    heard: list[tuple[str, str, float, float]] = []

    class Ears(af.Instrument):
        def fork_ran_remotely(
            self, fut: af.Future[Any], worker: str, start: float, stop: float
        ) -> None:
            heard.append((fut.name, worker, start, stop))

    before = time.time()
    with af.instrument(Ears()):
        af.fork.options(executor=dask_client, name="heard")(pid).result(timeout=T)
    ((name, worker, start, stop),) = heard
    assert name == "heard"
    assert worker in dask_client.scheduler_info()["workers"]
    assert before - 1 < start <= stop < time.time() + 1  # one machine: the clocks agree


def test_connect_to_a_dead_or_silent_address_fails_in_bounded_time() -> None:
    """Nothing listening, or a listener that never answers (a bare Client would hang)."""
    with socket.socket() as dead, socket.socket() as silent:
        dead.bind(("127.0.0.1", 0))
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for sock in (dead, silent):
            address = "tcp://{}:{}".format(*sock.getsockname())
            began = time.monotonic()
            with (
                pytest.raises(ConnectionError, match=r"no Dask scheduler answered at .* 0\.5s"),
                connect(address, timeout=0.5),
            ):
                pass
            assert time.monotonic() - began < 5


def test_connect_reads_the_address_from_the_environment(
    dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = dask_client.scheduler.address
    monkeypatch.setenv("ASYNCFORK_DASK_SCHEDULER", address)
    with connect(timeout=T) as client:
        assert client.scheduler is not None
        assert client.scheduler.address == address
        assert af.fork.options(executor=client)(pid).result(timeout=T) != os.getpid()


def test_a_client_is_refused_where_a_coroutine_function_is_forked(dask_client: Any) -> None:
    async def coroutine_function() -> None:
        pass

    with pytest.raises(TypeError, match=r"runs sync callables"):
        af.fork.options(executor=dask_client)(coroutine_function)


def test_options_refuse_what_is_neither_executor_nor_client() -> None:
    with pytest.raises(TypeError, match=r"Executor .* or a distributed\.Client, not"):
        af.fork.options(executor="tcp://127.0.0.1:8786")  # type: ignore[arg-type]


def test_a_remote_fork_times_out_and_its_call_sees_the_cancel(
    dask_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "saw-cancel"
    fut = af.fork.options(executor=dask_client, timeout=0.5)(
        until_cancelled, event_name(), str(path)
    )
    with pytest.raises(TimeoutError):
        fut.result(timeout=T)
    assert path.exists()  # "wait": settled after the call saw the cancel and returned


DELIVERED_FAILURE = """\
import asyncfork as af
from asyncfork.dask import local_cluster

def fail():
    raise ValueError("nope")

def parent():
    return af.fork(fail).result()

if __name__ == "__main__":
    with local_cluster(n_workers=1) as client:
        try:
            af.fork.options(executor=client)(parent).result(timeout=30)
        except ValueError as exc:
            print("delivered:", exc)
"""


def test_a_failure_asyncfork_delivers_is_not_logged_by_the_worker(tmp_path: Path) -> None:
    """The waiter gets the error (and an unretrieved one is reported as any fork's): the
    worker's own "Compute Failed" error log, one per level, would be noise."""
    script = tmp_path / "delivered_failure.py"
    script.write_text(DELIVERED_FAILURE)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=2 * T
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "delivered: nope\n"
    assert "Compute Failed" not in proc.stderr
