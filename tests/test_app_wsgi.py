"""asyncfork in a real threaded WSGI server: Flask on werkzeug's server, on 127.0.0.1.

A request runs in a plain thread of the server, without an event loop: ``af.fork``
sends coroutine work to the background loop and sync work to worker threads, and
``af.wait`` blocks. Each server is started and stopped by its test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from apps_helpers import REQUEST_TIMEOUT, ROOT, Lines, get, in_threads, stop
from werkzeug.serving import make_server

import asyncfork as af

T = 5.0
CONCURRENT = 4


def parse(n: int) -> int:
    time.sleep(0.01)  # blocking work
    return -n


async def fetch(n: int) -> str:
    await asyncio.sleep(0.01)  # the network
    return f"page {n}"


class Seen:
    """What the views saw, for the test to check."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(CONCURRENT)
        self.futures: list[af.Future[Any]] = []
        self.sibling_cancelled = threading.Event()


def make_app(seen: Seen) -> Any:
    app = flask.Flask("asyncfork_wsgi_test")

    @app.get("/page/<int:n>")
    def page(n: int) -> dict[str, Any]:
        size = af.fork(parse, n)  # a worker thread
        body = af.fork(fetch, n)  # the background loop
        seen.futures += [size, body]
        return {"size": af.wait(size, timeout=T), "body": af.wait(body, timeout=T)}

    @app.get("/meet/<int:n>")
    def meet(n: int) -> dict[str, Any]:
        # Each request's sync fork waits until CONCURRENT of them run at once: only a
        # server that handles requests concurrently, with forks that do too, gets past.
        met = af.fork(seen.barrier.wait, T)
        body = af.fork(fetch, n)
        return {"met": af.wait(met, timeout=T) >= 0, "body": af.wait(body, timeout=T)}

    @app.get("/fail")
    def fail() -> str:
        async def sibling() -> None:
            try:
                await asyncio.sleep(T * 2)
            except asyncio.CancelledError:
                seen.sibling_cancelled.set()
                raise

        def broken() -> None:
            raise ValueError("the sync fork failed")

        # The request's forks are joined before it answers; a failure cancels the rest.
        with af.group() as g:
            seen.futures += [g.fork(sibling), g.fork(broken)]
        return "not reached"

    return app


@pytest.fixture
def server() -> Iterator[tuple[int, Seen]]:
    """A threaded werkzeug server on 127.0.0.1 running the Flask app, for one test."""
    seen = Seen()
    srv = make_server("127.0.0.1", 0, make_app(seen), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, name="test-wsgi-server")
    thread.start()
    try:
        yield srv.server_port, seen
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(T)
        assert not thread.is_alive()


def test_a_view_forks_sync_and_coroutine_work_and_waits(server: tuple[int, Seen]) -> None:
    port, seen = server
    status, body = get(port, "/page/3")
    assert status == 200, body
    assert flask.json.loads(body) == {"size": -3, "body": "page 3"}
    assert len(seen.futures) == 2
    assert all(fut.done() for fut in seen.futures)
    assert {fut.kind for fut in seen.futures} == {"thread", "coroutine"}


def test_concurrent_requests_fork_and_wait_at_once(server: tuple[int, Seen]) -> None:
    port, _ = server
    results = in_threads([lambda n=n: get(port, f"/meet/{n}") for n in range(CONCURRENT)])
    for n, result in enumerate(results):
        assert not isinstance(result, BaseException), result
        status, body = result
        assert status == 200, body
        assert flask.json.loads(body) == {"met": True, "body": f"page {n}"}


def test_a_failed_fork_is_a_500_and_logged(
    server: tuple[int, Seen], caplog: pytest.LogCaptureFixture
) -> None:
    port, seen = server
    with caplog.at_level(logging.ERROR, logger="asyncfork_wsgi_test"):
        status, _ = get(port, "/fail")
    assert status == 500
    assert seen.sibling_cancelled.wait(T)  # the group cancelled the coroutine sibling
    assert all(fut.done() for fut in seen.futures)  # and joined both before answering
    [record] = [r for r in caplog.records if r.name == "asyncfork_wsgi_test"]
    assert record.getMessage() == "Exception on /fail [GET]"
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert isinstance(error, ExceptionGroup)
    assert [repr(e) for e in error.exceptions] == ["ValueError('the sync fork failed')"]


# The exit test's server, in a fresh interpreter: a view starts a sync fork and answers at
# once; the fork is still running when Ctrl-C stops the server, and it must be drained.
EXIT_SCRIPT = """
import os
import sys
import threading
import time

import flask
from werkzeug.serving import make_server

import asyncfork as af


def say(line):
    os.write(1, (line + "\\n").encode())


def job():
    say("job started")
    line = sys.stdin.readline().strip()  # the test answers once the server has stopped
    say(f"job done: {line}")


app = flask.Flask("exit_app")


@app.get("/start")
def start():
    af.fork(job)  # fire and forget: the answer does not wait for it
    return "started"


def say_when_draining():
    # Say "draining" once the main thread has ended and sits still in asyncfork's code:
    # the interpreter is exiting, and only the exit drain keeps the process alive.
    main = threading.main_thread()
    package = os.path.dirname(af.__file__)

    def watch():
        last = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(main.ident)
            where = None
            if frame is not None and not main.is_alive():
                if frame.f_code.co_filename.startswith(package):
                    where = (frame.f_code, frame.f_lineno)
            if where is not None and where == last:
                say("draining")
                return
            last = where
            time.sleep(0.005)
        say("watcher gave up")

    threading.Thread(target=watch, daemon=True).start()


server = make_server("127.0.0.1", 0, app, threaded=True)
say(f"port {server.server_port}")
server.serve_forever()  # until Ctrl-C, which werkzeug's server takes as "stop"
say("server stopped")
say_when_draining()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_sync_fork_still_running_at_exit_is_drained() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(EXIT_SCRIPT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    lines = Lines(proc.stdout)
    try:
        assert proc.stdin is not None
        port = int(lines.until(r"^port (\d+)$").group(1))
        assert get(port, "/start") == (200, "started")
        assert lines.next() == "job started"
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the server stops, the script ends
        assert lines.next() == "server stopped"
        # Without the drain the process would be gone by now, and this line never printed.
        assert lines.next() == "draining"
        proc.stdin.write("released\n")
        proc.stdin.flush()
        assert lines.rest() == "job done: released\n"
        proc.wait(REQUEST_TIMEOUT)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        stop(proc, lines)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "Warning" not in err, err
