"""The client side of a fork on a Dask cluster: submit it, settle it, cancel it.

``ClusterExecutor`` adapts a ``distributed.Client`` to what asyncfork's executor forks
need: a ``concurrent.futures.Future`` per call, settled from the client's own event loop
as soon as Dask has the outcome, that remembers where and when the call ran.
"""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, InvalidStateError
from concurrent.futures import Future as ConcurrentFuture
from typing import TYPE_CHECKING, Any

import distributed

from ._dask_remote import (
    RAN_ATTRIBUTE,
    Ran,
    RemoteInterrupt,
    cancel_remote,
    run_remote,
    unpicklable,
)
from ._errors import callable_name, describe

if TYPE_CHECKING:
    from ._future import Future


class ClusterExecutor(Executor):
    """Runs sync forks on the Dask cluster of ``client``, each as a new task (impure)."""

    def __init__(self, client: distributed.Client) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"<asyncfork cluster executor of {self.client!r}>"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteCall:
        """Run ``fn(*args, **kwargs)`` on the cluster (outside any fork)."""
        return self.submit_fork(None, fn, args, kwargs)

    def submit_fork(
        self, fut: Future[Any] | None, func: Callable[..., Any], args: Any, kwargs: Any
    ) -> RemoteCall:
        """Send the call of fork ``fut`` to the cluster; called on the fork's loop thread."""
        name = fut.name if fut is not None else callable_name(func)
        client: Any = self.client  # distributed's annotations are partial
        if client.status not in _SUBMITS:  # Dask would hold the task, then drop it
            raise ConnectionError(
                f"fork {name!r} cannot be sent: the Dask client is {client.status}, not "
                f"connected to its scheduler ({getattr(client.scheduler, 'address', '?')})"
            )
        try:
            task = client.submit(
                run_remote, name, func, args, kwargs, key=f"{name}-{uuid.uuid4().hex}", pure=False
            )
        except Exception as exc:
            raise _submit_error(name, func, args, kwargs, exc) from exc
        call = RemoteCall(fut, client, task)
        call.loop.add_callback(call.watch)
        return call


# A client in these states takes tasks (a new one connects on its first).
_SUBMITS = frozenset({"running", "newly-created"})
# Why Dask cancels a task when its client is cut off from the scheduler: not a cancel, an error.
_CONNECTION_LOST = frozenset({"scheduler-connection-lost", "client-closed"})


class RemoteCall(ConcurrentFuture[Any]):
    """The outcome of one remote call, settled on the client's loop thread.

    ``ran`` is the worker's address and the call's start and stop there, once known.
    ``cancel()`` cancels the Dask task (a queued one never runs) and the call where it
    runs (``af.check_cancelled()`` sees it). It returns False: the fork's own policy then
    applies: ``"abandon"`` settles the fork at once, ``"wait"`` when this settles, once
    the call has returned (or was found never to have started).
    """

    ran: Ran | None = None

    def __init__(
        self, fork: Future[Any] | None, client: distributed.Client, task: distributed.Future[Any]
    ) -> None:
        super().__init__()
        self._fork = fork
        self._client: Any = client  # distributed's annotations are partial
        self._task: Any = task  # a distributed.Future, until the outcome is in
        # The client's event loop (typed optional by distributed: a running client has one).
        self.loop: Any = client.loop
        self._cancelling = False
        self._cancel_lock = threading.Lock()

    async def watch(self) -> None:
        task = self._task
        assert task is not None
        try:
            # Dask's own await of a task (no public coroutine of a sync client's Future).
            outcome: Any = await task._result(raiseit=False)
        except BaseException as exc:  # the client closed, the data was lost, ...
            self._settle(None, exc)
            return
        status = task.status
        if status == "finished":
            value, self.ran = outcome
            self._settle(value, None)
        elif status == "error":
            _, error, tb = outcome
            if isinstance(error, RemoteInterrupt):  # the fork's SystemExit / KeyboardInterrupt
                error = error.unwrap()
            self.ran = error.__dict__.pop(RAN_ATTRIBUTE, None)
            self._settle(None, error.with_traceback(tb))
        elif not self._cancelling:  # cancelled by Dask, or by the program through Dask
            reason = getattr(outcome, "reason", None)
            if reason in _CONNECTION_LOST or self._client.status != "running":
                self._settle(None, self._lost(reason or self._client.status, outcome))
            else:  # client.cancel(), a restart: the fork is cancelled
                self._settle(None, None, cancelled=True)
        # else our own cancel: cancel() settles once the call is known to have returned

    def _lost(self, reason: str, cancelled: BaseException) -> ConnectionError:
        name = self._fork.name if self._fork is not None else "a call"
        scheduler = getattr(self._client.scheduler, "address", None) or "its scheduler"
        error = ConnectionError(
            f"fork {name!r}: the Dask client lost the scheduler at {scheduler}, or was closed, "
            f"before the outcome came back ({reason}); Dask dropped the task: run it again "
            "once the scheduler is back"
        )
        error.__cause__ = cancelled
        return error

    def _settle(self, value: Any, error: BaseException | None, cancelled: bool = False) -> None:
        self._task = None  # Dask may forget the task now
        try:
            if cancelled:
                super().cancel()
            elif error is not None:
                self.set_exception(error)
            else:
                self.set_result(value)
        except InvalidStateError:  # settled meanwhile (a cancel), from another thread
            pass

    def cancel(self) -> bool:
        """Cancel the task and its call; False: see the class docstring."""
        fork = self._fork
        with self._cancel_lock:
            if self.done() or self._cancelling:
                return False
            self._cancelling = True
        wait = fork is not None and fork._on_cancel == "wait"
        self.loop.add_callback(self._cancel, wait)
        if fork is None:
            return super().cancel()
        return False

    async def _cancel(self, wait: bool) -> None:
        task = self._task
        client = self._client
        try:
            if task is not None:
                await client.cancel([task], asynchronous=True, reason="asyncfork: cancelled")
                # Every worker: the one running it cancels the call; the others remember
                # the key, so that a call starting late never runs the function.
                await client.run(
                    cancel_remote, task.key, wait, on_error="ignore", asynchronous=True
                )
        except Exception:  # the cluster is gone: nothing runs the call any more
            pass
        super().cancel()  # False if the call's outcome settled it first


def _submit_error(
    name: str, func: Callable[..., Any], args: Any, kwargs: Any, exc: Exception
) -> Exception:
    """Name what could not be sent, if pickling failed; else say where the submit failed."""
    parts: list[tuple[str, Any]] = [("the function", func)]
    parts += [(f"argument {i + 1}", arg) for i, arg in enumerate(args)]
    parts += [(f"keyword argument {key!r}", value) for key, value in kwargs.items()]
    for what, obj in parts:
        problem = unpicklable(obj)
        if problem is not None:
            return TypeError(
                f"fork {name!r}: {what}, {describe(obj)}, cannot be pickled to send it to the "
                f"Dask cluster ({type(problem).__name__}: {problem}); pass plain data, or "
                "make it in the function"
            )
    return RuntimeError(f"fork {name!r} could not be sent to the Dask cluster: {exc}")
