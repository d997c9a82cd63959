"""A real FastAPI app on uvicorn: forks from sync and async endpoints, one shared client,
anyio worker threads forking onto the app's loop, and af.drain at graceful shutdown.

Each server binds 127.0.0.1 on a free port, runs in a thread of the test, and is stopped by
the test (``should_exit``, as uvicorn's own signal handler sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio.to_thread
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from helpers import T, within

import asyncfork as af

# -- a server started and stopped by each test ---------------------------------------------


@contextlib.contextmanager
def serving(make_app: Callable[[str], FastAPI], loop: str) -> Iterator[tuple[str, Any]]:
    """Run the app ``make_app(base_url)`` on uvicorn in a thread; yield its URL and server.

    The socket is bound here, so the port is known before the app is made (its lifespan's
    client calls the app itself). Leaving the block stops the server gracefully.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(make_app(url), loop=loop, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="uvicorn-under-test")
    thread.start()
    try:
        deadline = time.monotonic() + T
        while not server.started:  # polling a server until it answers, with a deadline
            assert thread.is_alive(), f"uvicorn ended before it started: {errors}"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.01)
        yield url, server
    finally:
        server.should_exit = True
        thread.join(T)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop in time"
    assert not errors, errors


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


async def fetch(client: httpx.AsyncClient, n: int) -> int:
    """A coroutine fork that uses the app's shared client (bound to the app's loop)."""
    response = await client.get(f"/echo/{n}")
    response.raise_for_status()
    value: int = response.json()["n"]
    return value


def shared_client_app(url: str) -> FastAPI:
    """Sync and async endpoints forking coroutines that share one client made in the lifespan."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["loop"] = asyncio.get_running_loop()
        async with httpx.AsyncClient(base_url=url, timeout=T) as client:
            state["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/echo/{n}")
    async def echo(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/async")
    async def async_endpoint() -> dict[str, Any]:
        futs = [af.fork(fetch, state["client"], n) for n in range(3)]
        values = [await fut for fut in futs]
        return {"values": values, "on_app_loop": futs[0].get_loop() is state["loop"]}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, Any]:  # runs in an anyio worker thread
        futs = [af.fork(fetch, state["client"], n) for n in range(3)]
        return {
            "values": af.wait(futs, timeout=T),
            "on_app_loop": futs[0].get_loop() is state["loop"],
        }

    @app.get("/sync-group")
    def sync_group_endpoint() -> dict[str, Any]:
        with af.group(timeout=T) as g:
            futs = [g.fork(fetch, state["client"], n) for n in range(3)]
        return {
            "values": [fut.result() for fut in futs],
            "on_app_loop": futs[0].get_loop() is state["loop"],
        }

    return app


# -- the tests -------------------------------------------------------------------------------


@LOOPS
def test_sync_and_async_endpoints_fork_onto_the_app_loop_and_share_its_client(loop: str) -> None:
    with (
        serving(shared_client_app, loop) as (url, _),
        httpx.Client(base_url=url, timeout=T) as http,
    ):
        for path in ("/async", "/sync", "/sync-group", "/sync"):  # twice: a worker reused
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)
            assert response.json() == {"values": [0, 1, 2], "on_app_loop": True}, path


async def test_anyio_worker_thread_forks_onto_its_host_loop() -> None:
    loop = asyncio.get_running_loop()

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def in_worker() -> tuple[Any, ...]:
        fut = af.fork(where)
        sync_fut = af.fork(lambda: af.fork(where).result(timeout=T))  # a sync fork's child
        with af.group() as g:
            in_group = g.fork(where)
        return fut.result(timeout=T), sync_fut.result(timeout=T), in_group.result(), fut

    first, nested, grouped, fut = await within(anyio.to_thread.run_sync(in_worker))
    assert first is loop
    assert nested is loop
    assert grouped is loop
    assert fut.parent is None  # a root fork of the host loop
    # The thread caches its host loop; a second call (maybe another thread) agrees.
    again = await within(anyio.to_thread.run_sync(in_worker))
    assert again[0] is loop


async def test_finding_the_host_loop_needs_no_call_to_it() -> None:
    """A worker's first fork must not wait for its host loop: here the loop's thread waits
    for a lock that the worker holds while it forks."""
    lock = threading.Lock()
    holding = threading.Event()

    async def one() -> int:
        return 1

    def worker() -> af.Future[int]:
        with lock:
            holding.set()
            return af.fork(one)  # the loop thread is blocked on the lock meanwhile

    running = asyncio.ensure_future(anyio.to_thread.run_sync(worker))
    await asyncio.to_thread(holding.wait, T)
    acquired = lock.acquire(timeout=T)  # sync code on the loop thread takes the same lock
    assert acquired, "the worker's fork waited for the blocked loop"
    lock.release()
    fut = await within(running)
    assert await within(fut) == 1


async def test_anyio_worker_root_forks_are_joined_and_failures_never_lost() -> None:
    gate = threading.Event()

    async def fails() -> None:
        raise ValueError("lost?")

    def in_worker() -> af.Future[Any]:
        af.fork(gate.wait, T)  # a sync root fork of the host loop
        return af.fork(fails)

    failing = await within(anyio.to_thread.run_sync(in_worker))
    with pytest.raises(ValueError, match="lost"):
        await within(failing)  # its failure reaches a waiter on the host loop
    # af.drain waits for the host loop's root forks made from the worker thread.
    drained = asyncio.ensure_future(af.drain(timeout=T))
    await asyncio.sleep(0)
    assert not drained.done()
    gate.set()
    await within(drained)


@pytest.mark.asyncfork_no_leak_check  # its subject is a failure nobody retrieves
async def test_anyio_worker_root_failure_nobody_retrieved_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncfork")
    name = f"unretrieved-from-worker-{id(caplog)}"  # other tests' leftovers may log too

    async def fails() -> None:
        raise ValueError("nobody looked")

    def in_worker() -> None:
        af.fork.options(name=name)(fails)  # its Future is dropped at once

    await within(anyio.to_thread.run_sync(in_worker))
    await within(af.drain(timeout=T))  # the app loop's root set joins it
    gc.collect()
    gc.collect()
    records = [r for r in caplog.records if name in r.getMessage()]
    assert len(records) == 1
    assert "never retrieved" in records[0].getMessage()


def test_a_thread_that_is_no_anyio_worker_still_uses_the_background_loop() -> None:
    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def main() -> None:
        app_loop = asyncio.get_running_loop()
        other = await asyncio.to_thread(lambda: af.fork(where).result(timeout=T))
        assert other is not app_loop  # asyncio.to_thread's pool: no known host loop

    asyncio.run(main())


def test_a_cached_host_loop_that_has_closed_is_never_returned() -> None:
    from asyncfork import _hosts

    closed = asyncio.new_event_loop()
    closed.close()
    found: list[Any] = []

    def in_thread() -> None:
        _hosts._cache.loop = closed  # as if this thread's host loop had ended
        found.append(_hosts.foreign_host_loop())

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(T)
    assert found == [None]


# -- graceful shutdown: af.drain in the lifespan ----------------------------------------


def drain_app(
    url: str, record: dict[str, Any], gate: threading.Event, shutdown: Callable[[], Any]
) -> FastAPI:
    """Endpoints that start forks still running when the server stops; the lifespan's
    shutdown runs ``shutdown()`` (an af.drain call) and records what it saw."""

    async def slow_coroutine(name: str) -> None:
        try:
            await asyncio.to_thread(gate.wait, T)
            record.setdefault("finished", set()).add(name)
        except asyncio.CancelledError:
            record.setdefault("cancelled", set()).add(name)
            raise

    def slow_sync(name: str) -> None:
        gate.wait(T)
        record.setdefault("finished", set()).add(name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        record["draining"].set()
        try:
            await shutdown()
        except TimeoutError as exc:
            record["timeout"] = str(exc)
            raise
        finally:
            record["at_drain_end"] = (
                set(record.get("finished", ())),
                set(record.get("cancelled", ())),
            )

    app = FastAPI(lifespan=lifespan)

    @app.get("/start-async")
    async def start_async() -> str:
        af.fork(slow_coroutine, "coroutine from async")
        af.fork(slow_sync, "sync from async")
        return "started"

    @app.get("/start-sync")
    def start_sync() -> str:  # an anyio worker thread: these are the app loop's roots too
        af.fork(slow_coroutine, "coroutine from sync")
        af.fork(slow_sync, "sync from sync")
        return "started"

    return app


ALL = {"coroutine from async", "sync from async", "coroutine from sync", "sync from sync"}


def run_and_stop(shutdown: Callable[[], Any], loop: str, release: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"draining": threading.Event()}
    gate = threading.Event()
    try:
        app = lambda url: drain_app(url, record, gate, shutdown)  # noqa: E731
        with serving(app, loop) as (url, server), httpx.Client(base_url=url, timeout=T) as http:
            assert http.get("/start-async").text == '"started"'
            assert http.get("/start-sync").text == '"started"'
            server.should_exit = True  # what uvicorn's SIGINT handler does
            assert record["draining"].wait(T)
            assert "finished" not in record  # the forks are in flight as shutdown starts
            if release:
                gate.set()
    finally:
        gate.set()
    return record


@LOOPS
def test_graceful_shutdown_drains_forks_in_flight(loop: str) -> None:
    record = run_and_stop(lambda: af.drain(timeout=T), loop, release=True)
    assert record["at_drain_end"] == (ALL, set())


@LOOPS
def test_shutdown_cancels_forks_in_flight_after_a_deadline(loop: str) -> None:
    async def wait_then_cancel() -> None:
        try:
            await af.drain(timeout=0.1)
        except TimeoutError as exc:
            record_timeout.append(str(exc))
            # The running sync calls cannot be interrupted: the gate is opened meanwhile.
            opener = asyncio.get_running_loop().call_later(0.05, gate_opener)
            try:
                await af.drain(cancel=True, timeout=T)
            finally:
                opener.cancel()

    record_timeout: list[str] = []
    gates: list[threading.Event] = []
    gate_opener = lambda: gates[0].set()  # noqa: E731

    record: dict[str, Any] = {"draining": threading.Event()}
    gate = threading.Event()
    gates.append(gate)
    try:
        app = lambda url: drain_app(url, record, gate, wait_then_cancel)  # noqa: E731
        with serving(app, loop) as (url, server), httpx.Client(base_url=url, timeout=T) as http:
            http.get("/start-async")
            http.get("/start-sync")
            server.should_exit = True
            assert record["draining"].wait(T)
    finally:
        gate.set()
    assert len(record_timeout) == 1
    assert "4 forks of this loop still running after 0.1s" in record_timeout[0]
    finished, cancelled = record["at_drain_end"]
    assert cancelled == {"coroutine from async", "coroutine from sync"}
    assert finished == {"sync from async", "sync from sync"}  # drained, not killed
