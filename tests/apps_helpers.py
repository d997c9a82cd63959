"""Helpers for the tests that run asyncfork inside real apps: a Jupyter kernel, HTTP servers.

Every server here binds 127.0.0.1 on a port the OS picks, and every blocking call has a
timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import http.client
import http.server
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Seconds: the bound on one HTTP request, one notebook cell, a server's start.
REQUEST_TIMEOUT = 15.0
CELL_TIMEOUT = 20
STARTUP_TIMEOUT = 30.0


# -- notebooks -----------------------------------------------------------------------------


def ipython_blocks(path: Path) -> list[str]:
    """The ```ipython blocks of a docs page, in order: each one is a notebook cell."""
    return re.findall(r"```ipython\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a docs page, in order (what tests/test_docs.py runs)."""
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def run_notebook(sources: list[str], workdir: Path) -> list[Any]:
    """Run ``sources`` as the code cells of one notebook in a real ipykernel; the cells.

    The kernel is the python3 kernel of the interpreter running the tests
    (``sys.executable``), from a kernel spec written under ``workdir``; Jupyter and
    IPython keep their files (connection file, history) there too, never in the home
    directory. Errors do not stop the run: a cell that raised has an ``error`` output.
    """
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    kernels = workdir / "kernels"
    spec = kernels / "asyncfork-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor}",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    cwd = workdir / "cwd"
    cwd.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])
    with pytest.MonkeyPatch.context() as env:
        for name, sub in [
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_CONFIG_DIR", "config"),
            ("IPYTHONDIR", "ipython"),
        ]:
            (workdir / sub).mkdir()
            env.setenv(name, str(workdir / sub))
        env.setenv("JUPYTER_PLATFORM_DIRS", "1")  # the new paths, without a deprecation warning
        env.delenv("PYTHONWARNINGS", raising=False)
        specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
        manager = KernelManager(kernel_name="asyncfork-tests", kernel_spec_manager=specs)
        client = NotebookClient(
            nb,
            km=manager,
            timeout=CELL_TIMEOUT,
            startup_timeout=int(STARTUP_TIMEOUT),
            allow_errors=True,
            resources={"metadata": {"path": str(cwd)}},  # the kernel's working directory
        )
        client.execute(cleanup_kc=True)  # also shuts the kernel down
    return list(nb.cells)


def cell_with(cells: list[Any], snippet: str) -> Any:
    """The one cell whose source contains ``snippet``."""
    found = [cell for cell in cells if snippet in cell.source]
    assert len(found) == 1, f"{len(found)} cells contain {snippet!r}"
    return found[0]


def stdout_of(cell: Any) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def stderr_of(cell: Any) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")


def result_of(cell: Any, mime: str = "text/plain") -> str | None:
    """What the cell displayed as its value (``Out[n]``), in ``mime``; None if nothing."""
    for out in cell.outputs:
        if out.output_type == "execute_result":
            value = out.data.get(mime)
            return None if value is None else str(value)
    return None


def error_of(cell: Any) -> tuple[str, str] | None:
    """``(ename, evalue)`` of the exception the cell raised, or None."""
    for out in cell.outputs:
        if out.output_type == "error":
            return str(out.ename), str(out.evalue)
    return None


def no_error(cell: Any) -> None:
    """Fail with the cell's traceback if it raised, or if it wrote to stderr."""
    error = error_of(cell)
    assert error is None, f"cell raised {error}:\n{cell.source}"
    assert stderr_of(cell) == "", f"stderr of cell:\n{cell.source}\n---\n{stderr_of(cell)}"


# -- HTTP ----------------------------------------------------------------------------------


def get(port: int, path: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path; the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class Backend:
    """A small threaded HTTP/1.1 server (keep-alive) that the apps under test call.

    ``/echo/<x>`` answers ``x``. ``/meet`` answers once ``parties`` requests are in it at
    the same time (a cross-process barrier: proof that several servers' workers run at
    once), or 504 after the timeout.
    """

    def __init__(self, parties: int = 2) -> None:
        self.barrier = threading.Barrier(parties)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: clients pool their connections

            def do_GET(self) -> None:
                status, body = 200, self.path
                if self.path.startswith("/echo/"):
                    body = self.path.removeprefix("/echo/")
                elif self.path == "/meet":
                    try:
                        backend.barrier.wait(REQUEST_TIMEOUT / 2)
                        body = "met"
                    except threading.BrokenBarrierError:
                        status, body = 504, "alone"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (a process that exited with a pooled connection) is no
        # error of the server's; anything else is printed, as the base class does.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def backend(parties: int = 2) -> Iterator[Backend]:
    """A :class:`Backend` serving in a thread for the block; shut down at its end."""
    server = Backend(parties)
    thread = threading.Thread(target=server.server.serve_forever, name="test-backend")
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(REQUEST_TIMEOUT)
        assert not thread.is_alive()


class Lines:
    """A child process's stdout, read line by line in a thread, so that each read is bounded."""

    def __init__(self, stream: Any) -> None:
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self._lines.put(line)
            self._lines.put("")  # end of stream

        self._thread = threading.Thread(target=pump, name="test-child-stdout", daemon=True)
        self._thread.start()

    def next(self, timeout: float = REQUEST_TIMEOUT) -> str:
        """The next line, without its newline; "" at the end of the stream."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line from the child within {timeout}s; so far: {self.seen}")
        self.seen.append(line)
        return line.rstrip("\n")

    def until(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Read lines until one matches ``pattern`` (re.search); that match."""
        end = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, end - time.monotonic()))
            match = re.search(pattern, line)
            if match:
                return match
            if line == "":
                pytest.fail(f"the child ended before printing {pattern!r}: {self.seen}")

    def rest(self, timeout: float = REQUEST_TIMEOUT) -> str:
        """Everything up to the end of the stream."""
        lines = []
        try:
            while line := self._lines.get(timeout=timeout):
                lines.append(line)
        except queue.Empty:
            pytest.fail(f"the child's output did not end within {timeout}s: {self.seen + lines}")
        self.seen += lines
        return "".join(lines)

    def join(self, timeout: float = REQUEST_TIMEOUT) -> None:
        """Wait for the reading thread to reach the end of the stream (the child is gone)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive()


def stop(proc: subprocess.Popen[str], lines: Lines | None = None) -> None:
    """Make sure a child process is gone (killed if still running), and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(REQUEST_TIMEOUT)
    if lines is not None:
        lines.join()  # then closing stdout cannot break the thread reading it
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def in_threads(calls: list[Callable[[], Any]], timeout: float = REQUEST_TIMEOUT) -> list[Any]:
    """Run the calls at once, each in a thread; their results (or exceptions) in order."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a request did not finish in time"
    return results
