"""The worker side of a fork on a Dask cluster: the call, its slot, its cancellation.

A fork sent to the cluster runs ``run_remote`` in a Dask worker's task thread. That runs
the user's function as a local sync fork of the worker process, executed right in the
task thread, so that everything a sync fork has holds there too: ``af.current()``,
``af.check_cancelled()``, the implicit join of its children and the ``ExceptionGroup`` of
their unretrieved failures. Its sync children go to the same cluster, and while the task
thread blocks on them it gives its Dask slot back (``secede``) and takes one again after
(``rejoin``). This module runs only where ``distributed`` is loaded (on a worker).
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import distributed
from dask.context import thread_state

from . import _threads
from ._dask_scope import SCOPED_EXECUTOR, cluster_executor
from ._errors import describe
from ._fork import fork
from ._future import Future
from ._scope import CURRENT

# cloudpickle (distributed's own dependency) is untyped.
_cloudpickle_dumps: Any = importlib.import_module("cloudpickle").dumps

# Where a remote call ran: the worker's address, and its start and stop (time.time()).
Ran = tuple[str, float, float]
# The attribute a remote error carries its Ran on, back to the client (then removed).
RAN_ATTRIBUTE = "__asyncfork_ran__"

# How long a task thread waits, its slot kept, for the loop to settle a fork whose
# call has returned: past it the fork is joining children, and the slot is lent.
_SETTLE_GRACE = 0.01
# Keys cancelled before their call started here: at most this many are remembered.
_MAX_CANCELLED = 10_000

_lock = threading.Lock()
_running: dict[str, Future[Any]] = {}  # key -> the local fork of a call running here
# key -> set once its task's run_remote here has returned (from its start on): a cancel
# that waits, waits for it, so that a call is never ended mid-way by Dask's own cancel.
_returned: dict[str, threading.Event] = {}
_cancelled: dict[str, None] = {}  # keys whose cancellation came before their call
# Keys whose failure goes back to its fork's waiter: the worker's own "Compute Failed"
# log of them is noise (asyncfork delivers it, and reports it if nobody looks).
_delivered: dict[str, None] = {}


class _DeliveredFailures(logging.Filter):
    """Drops the worker's error log of a task whose failure asyncfork delivers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed") or not record.args:
            return True
        key = record.args[0] if isinstance(record.args, tuple) else None
        with _lock:
            return _delivered.pop(str(key), 0) is not None


_log_filter = _DeliveredFailures()


class _DaskSlot:
    """What a task thread lends while it blocks in asyncfork: its slot of the worker."""

    def lend_slot(self) -> None:
        distributed.secede()  # type: ignore[no-untyped-call]  # distributed leaves it unannotated

    def reclaim_slot(self) -> None:
        distributed.rejoin()  # type: ignore[no-untyped-call]  # distributed leaves it unannotated


_SLOT = _DaskSlot()


class _WorkerExecutor(Executor):
    """The cluster as seen from a worker: the worker's own client, made on first use."""

    def __init__(self) -> None:
        self.worker: Any = None  # this process's distributed.Worker, set by each call
        self._executor: Any = None  # a ClusterExecutor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the cluster (outside any fork)."""
        return self.submit_fork(None, fn, args, kwargs)

    def submit_fork(
        self, fut: Future[Any] | None, func: Callable[..., Any], args: Any, kwargs: Any
    ) -> Any:
        # On the worker process's asyncfork loop: not a task thread, so the client is
        # asked of the worker itself (what distributed.get_client() does in a task).
        executor: Any = self._executor
        if executor is None or executor.client.status != "running":
            executor = self._executor = cluster_executor(self.worker._get_client())
        return executor.submit_fork(fut, func, args, kwargs)


_WORKER_EXECUTOR = _WorkerExecutor()


def _call(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """The local fork's body: its sync children go to the cluster."""
    SCOPED_EXECUTOR.set(_WORKER_EXECUTOR)
    return func(*args, **kwargs)


def _fork_here(name: str, func: Callable[..., Any], args: Any, kwargs: Any) -> Future[Any]:
    CURRENT.set(None)  # a worker in the client's process may pass the client's context on
    SCOPED_EXECUTOR.set(None)  # the fork itself runs here; its body sets the cluster
    return fork.options(name=name, detached=True, daemon=True)(_call, func, args, kwargs)


def run_remote(name: str, func: Callable[..., Any], args: Any, kwargs: Any) -> tuple[Any, Ran]:
    """Run ``func(*args, **kwargs)`` as the fork ``name`` in this Dask task's thread."""
    start = time.time()
    key = str(thread_state.key)  # the task's key, as Dask's own secede() reads it
    worker_log = logging.getLogger("distributed.worker")
    if _log_filter not in worker_log.filters:
        worker_log.addFilter(_log_filter)
    worker = distributed.get_worker()
    _WORKER_EXECUTOR.worker = worker
    address = str(worker.address)
    returned = threading.Event()
    with _lock:
        if _cancelled.pop(key, 0) is None:  # the client cancelled it before it started here
            return None, (address, start, start)  # nobody reads it: the key is cancelled
        _returned[key] = returned
    try:
        return _run_remote(key, address, start, name, func, args, kwargs)
    finally:
        with _lock:
            _returned.pop(key, None)
        returned.set()


def _run_remote(
    key: str,
    address: str,
    start: float,
    name: str,
    func: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> tuple[Any, Ran]:
    # A copy of the task's context (Dask's get_worker() reads it), as a root fork.
    local = contextvars.copy_context().run(_fork_here, name, func, args, kwargs)
    item = local._item
    # Run it here, in the task's own thread and slot; else a worker thread took it first
    # (rare), and this thread waits for it with its slot lent.
    claimed = type(item) is _threads.WorkItem and _threads.pool().claim(item)
    with _lock:
        cancelled = _cancelled.pop(key, 0) is None  # meanwhile
        if not cancelled:
            _running[key] = local
    if cancelled:
        local.cancel("cancelled on the client before it started")
        if claimed:  # ours to end: it ends cancelled, without running the function
            item.func = _refuse
    previous = _threads._local.lender
    _threads._local.lender = _SLOT
    try:
        if claimed:
            item.run()
        _wait_settled(local)
    finally:
        _threads._local.lender = previous
        with _lock:
            _running.pop(key, None)
            cancelled = _cancelled.pop(key, 0) is None or cancelled
    ran = (address, start, time.time())
    if cancelled:  # by the client: it reads nothing back (Dask would log an error)
        return None, ran
    try:
        value = local.result()
    except BaseException as exc:
        try:
            setattr(exc, RAN_ATTRIBUTE, ran)
        except Exception:  # an exception type that takes no attributes: no timing then
            pass
        with _lock:
            if len(_delivered) >= _MAX_CANCELLED:
                _delivered.pop(next(iter(_delivered)))
            _delivered[key] = None
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # Dask lets these take the worker down (and retries the task elsewhere): they
            # travel back inside an Exception, which the client unwraps.
            raise RemoteInterrupt(exc).with_traceback(exc.__traceback__) from None
        raise
    _check_picklable(value, name)
    return value, ran


class RemoteInterrupt(Exception):
    """A fork's SystemExit or KeyboardInterrupt on its way back from a worker."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original
        # Dask's transport rebuilds a SystemExit without its code: it travels beside it.
        self.code = getattr(original, "code", None)

    def unwrap(self) -> BaseException:
        original = self.original
        if isinstance(original, SystemExit):
            original.code = self.code
        return original


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise asyncio.CancelledError("cancelled on the client before it started")


def _wait_settled(local: Future[Any]) -> None:
    settled = threading.Event()
    local.add_done_callback(lambda _: settled.set())
    if settled.wait(_SETTLE_GRACE):
        return
    _SLOT.lend_slot()  # joining its children: they may need this very slot
    try:
        settled.wait()
    finally:
        _SLOT.reclaim_slot()


def _check_picklable(value: Any, name: str) -> None:
    """Fail here, naming the result, rather than later in Dask's transfer of it."""
    if type(value) in _PLAIN:
        return
    problem = unpicklable(value)
    if problem is not None:
        raise TypeError(
            f"fork {name!r}: its result, {describe(value)}, cannot be pickled to send it "
            f"back from the Dask worker ({type(problem).__name__}: {problem}); return plain "
            "data instead"
        ) from problem


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def unpicklable(obj: Any) -> Exception | None:
    """Why Dask could not pickle ``obj`` (pickle, then cloudpickle, as Dask tries), or None.

    Out-of-band buffers (arrays) are only referenced, not copied, by the attempt.
    """
    buffers: list[Any] = []
    try:
        pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        return None
    except Exception:
        pass
    try:
        _cloudpickle_dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        return exc
    return None


async def cancel_remote(key: str, wait: bool) -> bool:
    """On each worker, from a client that cancelled the fork ``key``: cancel its call here.

    True if the call was running here (with ``wait``, once it has returned); else the key
    is remembered, so that a call starting after this never runs the function.
    """
    with _lock:
        _cancelled[key] = None
        while len(_cancelled) > _MAX_CANCELLED:
            del _cancelled[next(iter(_cancelled))]
        local = _running.get(key)
        returned = _returned.get(key)
    if returned is None:
        return False
    if local is not None:
        local.cancel("cancelled on the client")
    # Else it is starting: it finds the key cancelled, and ends without calling anything.
    if wait and not returned.is_set():
        await asyncio.to_thread(returned.wait)
    return True
