"""A sync fork still running when a real uvicorn server stops (Ctrl-C) finishes before the
process exits: the exit drain covers the forks of a loop asyncfork does not own.

Each case runs in a fresh interpreter: a uvicorn server in its main thread on 127.0.0.1 (a
free port), a request that starts a sync fork blocked on the child's stdin, SIGINT while it
runs; the fork's side effect must appear once stdin says go, and the process exit cleanly.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

T = 10.0  # bound on every step: a fresh interpreter importing FastAPI takes a moment

SCRIPT = textwrap.dedent(
    """\
    import asyncio, contextlib, os, socket, sys
    import uvicorn
    from fastapi import FastAPI
    import asyncfork as af

    out_path, loop_kind = sys.argv[1], sys.argv[2]

    def say(line):
        os.write(1, (line + "\\n").encode())

    app_loop = []

    def slow_work(source):
        # A root fork of the server's loop, whichever endpoint made it.
        say(f"fork running, hosted by the server's loop: {af.current().get_loop() is app_loop[0]}")
        line = sys.stdin.readline()  # blocks until the parent says go
        with open(out_path, "w") as out:
            out.write(f"{source}: {line.strip()}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app_loop.append(asyncio.get_running_loop())
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/async")
    async def from_async() -> str:
        af.fork(slow_work, "async endpoint")
        return "started"

    @app.get("/sync")
    def from_sync() -> str:  # an anyio worker thread
        af.fork(slow_work, "sync endpoint")
        return "started"

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    say(f"port {sock.getsockname()[1]}")
    server = uvicorn.Server(uvicorn.Config(app, loop=loop_kind, log_level="warning"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once stopped
        pass
    say("server stopped")
    """
)


@contextlib.contextmanager
def child(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``script`` in a child Python (warnings as errors), its three pipes open; killed if
    the test leaves it running."""
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the child writes each line whole; it exits on failure
    assert time.monotonic() < deadline, "the child took too long"
    return line.strip()


@pytest.mark.parametrize(("endpoint", "loop"), [("async", "asyncio"), ("sync", "uvloop")])
def test_sync_fork_from_a_request_finishes_after_uvicorn_stops(
    tmp_path: Path, endpoint: str, loop: str
) -> None:
    out = tmp_path / "side-effect.txt"
    deadline = time.monotonic() + T
    with child(SCRIPT, str(out), loop) as proc:
        first = read_line(proc, deadline)
        assert first.startswith("port "), first + proc.communicate(timeout=T)[1]
        url = f"http://127.0.0.1:{first.split()[1]}/{endpoint}"
        while True:  # poll until the server answers, with a deadline
            try:
                response = httpx.get(url, timeout=T)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "uvicorn did not answer in time"
                time.sleep(0.02)
        assert response.text == '"started"'
        assert read_line(proc, deadline) == "fork running, hosted by the server's loop: True"
        proc.send_signal(signal.SIGINT)
        assert read_line(proc, deadline) == "server stopped"
        assert not out.exists()  # the fork still runs: the process must wait for it
        _, stderr = proc.communicate("go\n", timeout=T)
    assert proc.returncode == 0, stderr
    assert out.read_text() == f"{endpoint} endpoint: go"
    assert "Traceback" not in stderr, stderr
    assert "Exception" not in stderr, stderr


# -- the same rule without a server: asyncio.run's loop, a loop never closed, daemon forks ---

PLAIN = textwrap.dedent(
    """\
    import asyncio, os, sys, threading
    import asyncfork as af

    out_path, how = sys.argv[1], sys.argv[2]

    def say(line):
        os.write(1, (line + "\\n").encode())

    def slow_work():
        say("fork running")
        line = sys.stdin.readline()  # blocks until the parent says go
        with open(out_path, "w") as out:
            out.write(line.strip())

    running = threading.Event()

    def forever():
        say("fork running")
        running.set()
        threading.Event().wait()

    async def main():
        if how == "daemon":
            af.fork.options(daemon=True)(forever)
            await asyncio.to_thread(running.wait, 10)  # main ends after the fork started
        elif how == "never closed":
            af.fork(forever)  # not a daemon, but its loop is never closed
            await asyncio.to_thread(running.wait, 10)
        else:
            af.fork(slow_work)
        await asyncio.sleep(0)

    def watch_the_exit():  # says when the main thread waits in the exit drain for the fork
        main = threading.main_thread()
        while True:
            frame = sys._current_frames().get(main.ident)
            while frame is not None and frame.f_code.co_name != "_finish_foreign_sync_forks":
                frame = frame.f_back
            if frame is not None:
                say("exit waits")
                return
            threading.Event().wait(0.01)

    if how == "ctrl-c":
        threading.Thread(target=watch_the_exit, daemon=True).start()
    async def noop():
        pass

    async def another_loop():  # a new loop with forks: closed loops' root sets are pruned
        await af.fork(noop)

    if how == "never closed":  # stopped, never closed: it could still hold the fork's outcome
        asyncio.new_event_loop().run_until_complete(main())
    else:
        asyncio.run(main())
    if how == "then another loop":
        asyncio.run(another_loop())
    say("main over")
    """
)


# Printed if the exit wait lasts a second (a slow machine between the two lines and "go").
EXIT_NOTICE = (
    "asyncfork: waiting for the sync forks of closed event loops to return before the "
    "interpreter exits (Ctrl-C abandons them)\n"
)


@pytest.mark.parametrize("how", ["asyncio.run", "then another loop"])
def test_sync_fork_of_a_finished_loop_finishes_before_the_process_exits(
    tmp_path: Path, how: str
) -> None:
    out = tmp_path / "side-effect.txt"
    deadline = time.monotonic() + T
    with child(PLAIN, str(out), how) as proc:
        # In either order: the fork may start before or after its loop's end.
        lines = {read_line(proc, deadline), read_line(proc, deadline)}
        assert lines == {"fork running", "main over"}
        assert not out.exists()
        _, stderr = proc.communicate("go\n", timeout=T)
    assert proc.returncode == 0, stderr
    assert out.read_text() == "go"
    assert stderr in ("", EXIT_NOTICE)


def test_sync_fork_of_a_loop_never_closed_is_abandoned_with_a_notice(tmp_path: Path) -> None:
    """A stopped loop that was never closed may hold the fork's outcome where nothing runs
    it: waiting could hang the exit for good, so the fork is abandoned, and stderr says so."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", PLAIN, str(tmp_path / "unused"), "never closed"],
        capture_output=True,
        text=True,
        timeout=T,
    )
    stderr = proc.stderr
    assert proc.stdout.splitlines() == ["fork running", "main over"]
    assert proc.returncode == 0, stderr
    assert "sync forks of an event loop that was never closed" in stderr
    assert "are abandoned at exit" in stderr


NESTED_ON_A_STOPPED_LOOP = textwrap.dedent(
    """\
    import asyncio, threading
    import asyncfork as af

    child_started = threading.Event()
    release = threading.Event()

    def child():
        child_started.set()
        release.wait(10)
        return 1

    def parent():  # its child's outcome goes to a loop that has stopped: it never returns
        af.wait(af.fork(child))

    async def main():
        af.fork(parent)
        await asyncio.to_thread(child_started.wait, 10)

    asyncio.new_event_loop().run_until_complete(main())
    release.set()  # the child returns after its loop stopped
    print("main over")
    """
)

LOOP_IN_A_DAEMON_THREAD = textwrap.dedent(
    """\
    import asyncio, threading
    import asyncfork as af

    running = threading.Event()

    def forever():
        running.set()
        threading.Event().wait()

    async def serve():  # never ends: its thread is a daemon, abandoned at exit
        await af.fork(forever)

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    running.wait(10)
    print("main over")
    """
)


@pytest.mark.parametrize(
    "script", [NESTED_ON_A_STOPPED_LOOP, LOOP_IN_A_DAEMON_THREAD], ids=["stopped", "daemon"]
)
def test_exit_never_waits_for_a_loop_that_is_not_closed(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=T
    )
    assert proc.stdout == "main over\n"
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_daemon_sync_fork_of_a_finished_loop_is_not_waited_for_at_exit(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", PLAIN, str(tmp_path / "unused"), "daemon"],
        capture_output=True,
        text=True,
        timeout=T,
    )
    assert sorted(proc.stdout.splitlines()) == ["fork running", "main over"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_ctrl_c_while_exit_waits_for_such_a_fork_abandons_it(tmp_path: Path) -> None:
    deadline = time.monotonic() + T
    with child(PLAIN, str(tmp_path / "unused"), "ctrl-c") as proc:
        lines = {read_line(proc, deadline), read_line(proc, deadline)}
        assert lines == {"fork running", "main over"}
        assert read_line(proc, deadline) == "exit waits"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=T)  # stdin stays open: the fork never returns
    assert proc.returncode == -signal.SIGINT, stderr  # ends as an unhandled Ctrl-C ends Python
    assert "Traceback" not in stderr, stderr
