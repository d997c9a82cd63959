"""asyncfork under a real gunicorn with ``--preload``: sync workers, two of them, 127.0.0.1.

With ``--preload`` the app module is imported once in the master, which then forks the
workers. The app is the one docs/wsgi.md shows (read from the page, so the page is
tested): it forks at import time, in the master, and per request, in the workers, and
makes its HTTP client on first use on the loop that uses it. A second variant makes and
uses a client in the master, which is what the page warns about.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apps_helpers import (
    REQUEST_TIMEOUT,
    ROOT,
    Lines,
    backend,
    get,
    in_threads,
    python_blocks,
    stop,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn runs on POSIX only")

DOC = ROOT / "docs" / "wsgi.md"
APP = next(block for block in python_blocks(DOC) if block.startswith("# myapp.py"))

# Settings of the test's own, in a config file: gunicorn >= 27 would otherwise make a
# control socket under the home directory (older versions ignore the unknown name).
CONFIG = """\
bind = "127.0.0.1:0"
workers = 2
worker_class = "sync"
preload_app = True
graceful_timeout = 5
control_socket_disable = True
"""

# The hazard: a client made and used in the master, then used by the workers.
MASTER_CLIENT = """

MASTER_CLIENT = httpx.AsyncClient(base_url=API_URL, timeout=10)


async def call_api_with_the_masters_client(path: str) -> str:
    response = await MASTER_CLIENT.get(path)
    return response.text


af.wait(af.fork(call_api_with_the_masters_client, "/echo/warm-up"), timeout=10)
call_api = call_api_with_the_masters_client  # what the requests use from now on
"""


class Gunicorn:
    """A gunicorn master serving ``myapp:application`` from a directory, and its log."""

    def __init__(self, proc: subprocess.Popen[str], log: Lines, port: int) -> None:
        self.proc = proc
        self.log = log
        self.port = port


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """Start gunicorn on an app's source; every server is stopped at the end of the test."""
    started: list[Gunicorn] = []

    def run(source: str, api_url: str) -> Gunicorn:
        (tmp_path / "myapp.py").write_text(source, encoding="utf-8")
        (tmp_path / "gunicorn_test.conf.py").write_text(CONFIG, encoding="utf-8")
        env = {**os.environ, "API_URL": api_url, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONWARNINGS", None)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(tmp_path / "gunicorn_test.conf.py"),
                "--preload",
                "--chdir",
                str(tmp_path),
                "myapp:application",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        log = Lines(proc.stderr)  # gunicorn logs to stderr
        server = Gunicorn(proc, log, 0)
        started.append(server)
        # Bound: a request now waits in the listen queue until a worker takes it.
        server.port = int(log.until(r"Listening at: http://127\.0\.0\.1:(\d+)").group(1))
        return server

    yield run
    for server in started:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(REQUEST_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        stop(server.proc, server.log)


def _terminate(server: Gunicorn) -> str:
    """Stop gunicorn as its operators do (SIGTERM: graceful); its log."""
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(REQUEST_TIMEOUT)
    return "".join(server.log.seen) + server.log.rest()


def test_preload_app_forks_at_import_and_per_request_in_every_worker(start: Any) -> None:
    with backend(parties=2) as api:
        server = start(APP, api.url)
        master = server.proc.pid
        # Two requests at once: each waits in the API until the other arrives, so two
        # workers must serve them together.
        results = in_threads([lambda: get(server.port, "/meet")] * 2)
        answers = []
        for result in results:
            assert not isinstance(result, BaseException), result
            status, body = result
            assert status == 200, body
            answers.append(json.loads(body))
        assert [answer["api"] for answer in answers] == ["met", "met"]
        assert [answer["words"] for answer in answers] == [1, 1]
        workers = {answer["worker"] for answer in answers}
        assert len(workers) == 2  # both workers served
        assert master not in workers
        assert {answer["loaded_by"] for answer in answers} == {master}  # imported in the master
        # More requests, each worker's client reused.
        for i in range(4):
            status, body = get(server.port, f"/echo/{i}")
            assert status == 200, body
            assert json.loads(body)["api"] == str(i)
        log = _terminate(server)
    assert server.proc.returncode == 0, log
    assert "Traceback" not in log, log
    assert "Error" not in log, log


def test_a_client_used_in_the_master_fails_in_the_worker(start: Any) -> None:
    """What docs/wsgi.md warns about: the master's pooled connection, bound to the
    master's loop, is reused by a worker, whose first request fails."""
    with backend(parties=2) as api:
        server = start(APP + MASTER_CLIENT, api.url)
        status, _ = get(server.port, "/echo/first")
        log = _terminate(server)
    assert status == 500
    assert "RuntimeError" in log, log
    assert "is bound to a different event loop" in log, log


def test_the_backend_sees_concurrent_requests() -> None:
    """The API stand-in's barrier: alone, a request times out (so the test above can fail)."""
    with backend(parties=2) as api:
        api.barrier.abort()  # as if the other party never came
        assert get(int(api.url.rsplit(":", 1)[1]), "/meet") == (504, "alone")
