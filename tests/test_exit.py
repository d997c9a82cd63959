"""Whole-process behaviour in fresh interpreters: exit drain, Ctrl-C, signals, os.fork()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# -- helpers -------------------------------------------------------------------------------

Spawn = Callable[[str], subprocess.Popen[str]]

ROOT = Path(__file__).resolve().parent.parent

NOISE = (
    "Task was destroyed but it is pending",
    "Exception in thread",
    "never retrieved",
    "Traceback",
    "Exception ignored",
    "Warning",
)

# Each script runs in a fresh interpreter (``-W error`` so warnings show up as errors) on
# both loop kinds (``ASYNCFORK_LOOP``); the tests check its output, exit status and that
# stderr carries no noise for work that was handled.
#
# Signals must land while the child's main thread is really blocked inside asyncfork (in
# ``wait``, ``result``, a group exit or the exit drain), not a few bytecodes before. So the
# child runs a *watcher* thread that prints ``ready`` once the main thread's innermost
# Python frame has been in asyncfork's code, on the same line, for two polls in a row: only
# then does the parent send SIGINT.
#
# Prepended to every child script.
PRELUDE = """\
import asyncio, os, sys, threading, time
import asyncfork as af

_AF_DIR = os.path.dirname(af.__file__)

def say(line):
    '''Write one whole line at once: prints from several threads never interleave.'''
    os.write(1, (line + "\\n").encode())

_MAIN = threading.main_thread()

def _main_blocked_in_asyncfork(exiting):
    frame = sys._current_frames().get(_MAIN.ident)
    if frame is None or (exiting and _MAIN.is_alive()):
        return None
    if not frame.f_code.co_filename.startswith(_AF_DIR):
        return None
    return (frame.f_code, frame.f_lineno)

def announce_when_blocked(line="ready", exiting=False):
    '''Print `line` once the main thread sits still in asyncfork's code.'''
    def watch():
        last = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            where = _main_blocked_in_asyncfork(exiting)
            if where is not None and where == last:
                say(line)
                return
            last = where
            time.sleep(0.005)
        say("watcher gave up")
    threading.Thread(target=watch, daemon=True).start()
"""

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(params=["asyncio", "uvloop"])
def child_loop(request: pytest.FixtureRequest) -> str:
    """The loop kind the child's asyncfork loops use (via ASYNCFORK_LOOP)."""
    return str(request.param)


def _env(loop: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ASYNCFORK_LOOP"] = loop
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONWARNINGS", None)
    return env


def _script(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def run_script(body: str, loop: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", _script(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=_env(loop),
    )


def run_bare_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
        check=False,
    )


@pytest.fixture
def spawn(child_loop: str) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start child scripts with pipes; kill and close whatever is left at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(body: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-W", "error", "-c", _script(body)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=_env(child_loop),
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def read_line(proc: subprocess.Popen[str]) -> str:
    """The child's next stdout line (the child is bounded by its own watcher deadline)."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line and proc.poll() is not None:  # the child ended: show why
        assert proc.stderr is not None
        pytest.fail(f"child exited ({proc.returncode}) early; stderr:\n{proc.stderr.read()}")
    return line


def finish(proc: subprocess.Popen[str], timeout: float = 10) -> tuple[str, str]:
    """Wait for the child to exit; return the rest of its stdout and its stderr.

    Not ``communicate()``: it reads the raw pipes and would skip what ``read_line``
    has already buffered.
    """
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        out, err = proc.stdout.read(), proc.stderr.read()
        pytest.fail(f"child did not exit within {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.stdout.read(), proc.stderr.read()


def assert_quiet(stderr: str) -> None:
    for noise in NOISE:
        assert noise not in stderr, f"{noise!r} on stderr:\n{stderr}"


# -- interpreter exit: the drain -----------------------------------------------------------


@posix_only
def test_exit_drains_pending_forks(child_loop: str) -> None:
    """Interpreter exit drains pending forks on B, as Python does for non-daemon threads."""
    res = run_script(
        """
        async def coro():
            await asyncio.sleep(0.2)
            say("coroutine fork done")

        def sync():
            time.sleep(0.2)
            say("sync fork done")

        af.fork(coro)
        af.fork(sync)
        say("script end")
        """,
        child_loop,
    )
    lines = res.stdout.splitlines()
    assert res.returncode == 0, res.stderr
    assert lines[0] == "script end"
    assert sorted(lines[1:]) == ["coroutine fork done", "sync fork done"]
    assert_quiet(res.stderr)


@posix_only
def test_exit_drain_runs_sync_forks_that_need_a_new_worker_thread(child_loop: str) -> None:
    """Forks made during the exit drain that need a worker thread run, even on 3.12.

    Python 3.12 refuses new threads while the interpreter exits; there the draining
    thread serves the worker queue itself. More such forks than the worker limit, one of
    them waiting on a sync child of its own, all finish, and the process exits.
    """
    res = run_script(
        """
        af.configure(workers=2)

        def child(i):
            return i * 10

        def sync(i):
            return af.wait(af.fork(child, i))

        async def coro():
            await asyncio.sleep(0.2)  # so the forks below are made during the exit drain
            futs = [af.fork(sync, i) for i in range(5)]
            say(f"got {[await f for f in futs]}")

        af.fork(coro)
        say("script end")
        """,
        child_loop,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["script end", "got [0, 10, 20, 30, 40]"]
    assert_quiet(res.stderr)


@posix_only
def test_exit_drains_nested_children(child_loop: str) -> None:
    """The drain waits for a pending fork's children too (implicit join)."""
    res = run_script(
        """
        async def leaf():
            await asyncio.sleep(0.1)
            say("leaf done")

        def parent():
            af.fork(leaf)  # a child of this sync fork, joined before it completes

        af.fork(parent)
        """,
        child_loop,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["leaf done"]
    assert_quiet(res.stderr)


@posix_only
def test_exit_lets_cancelled_forks_finish_cleanup(child_loop: str) -> None:
    """Forks already cancelled finish their cleanup during the exit drain."""
    res = run_script(
        """
        started = threading.Event()

        async def worker():
            try:
                started.set()
                await asyncio.sleep(60)
            finally:
                await asyncio.sleep(0.1)
                say("coroutine cleanup done")

        sync_started = threading.Event()

        def sync_worker():
            sync_started.set()
            time.sleep(0.2)  # a running sync fork cannot be interrupted: it runs to the end
            say("sync fork returned")

        fut = af.fork(worker)
        sfut = af.fork(sync_worker)
        assert started.wait(5) and sync_started.wait(5)
        assert fut.cancel() and sfut.cancel()
        say("script end")
        """,
        child_loop,
    )
    lines = res.stdout.splitlines()
    assert res.returncode == 0, res.stderr
    assert lines[0] == "script end"
    assert sorted(lines[1:]) == ["coroutine cleanup done", "sync fork returned"]
    assert_quiet(res.stderr)


@posix_only
def test_unretrieved_root_failure_is_logged_once_not_as_noise(child_loop: str) -> None:
    """A root fork that fails unretrieved is reported once via the `asyncfork` logger."""
    res = run_script(
        """
        import logging
        logging.basicConfig(format="LOG %(name)s %(message)s")

        async def boom():
            raise ValueError("lost-error")

        af.fork(boom)
        """,
        child_loop,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("lost-error") >= 1
    reports = [line for line in res.stderr.splitlines() if line.startswith("LOG asyncfork")]
    assert len(reports) == 1, res.stderr
    assert "Task was destroyed" not in res.stderr
    assert "Exception in thread" not in res.stderr


@posix_only
def test_daemon_forks_are_cancelled_not_drained_at_exit(child_loop: str) -> None:
    """fork.options(daemon=True): cancelled at interpreter exit, the process ends promptly."""
    t0 = time.monotonic()
    res = run_script(
        """
        started = threading.Event()

        async def forever():
            try:
                started.set()
                while True:
                    await asyncio.sleep(0.01)
            finally:
                say("daemon cancelled")

        async def ordinary():
            await asyncio.sleep(0.1)
            say("ordinary drained")

        af.fork.options(daemon=True)(forever)
        af.fork(ordinary)
        assert started.wait(5)
        """,
        child_loop,
    )
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == ["daemon cancelled", "ordinary drained"]
    assert elapsed < 5
    assert_quiet(res.stderr)


@posix_only
def test_daemon_sync_fork_still_running_is_abandoned_at_exit(child_loop: str) -> None:
    """A daemon sync fork (a heartbeat that never stops by itself) is abandoned at exit, not
    waited for: the process ends promptly once the ordinary forks are drained."""
    t0 = time.monotonic()
    res = run_script(
        """
        beating = threading.Event()

        def heartbeat():
            beating.set()
            while True:
                threading.Event().wait(0.005)

        def ordinary():
            say("ordinary drained")

        beat = af.fork.options(daemon=True)(heartbeat)
        af.fork(ordinary)
        assert beating.wait(5)
        say("script end")
        """,
        child_loop,
        timeout=15,
    )
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == ["ordinary drained", "script end"]
    assert elapsed < 10
    assert_quiet(res.stderr)


# -- Ctrl-C during the exit drain ----------------------------------------------------------


@posix_only
def test_ctrl_c_during_exit_drain_cancels_what_is_left(spawn: Spawn) -> None:
    """A KeyboardInterrupt during the drain cancels what is left; exit status is -SIGINT."""
    proc = spawn(
        """
        started = threading.Event()

        async def forever():
            try:
                started.set()
                await asyncio.sleep(60)
            finally:
                await asyncio.sleep(0.05)  # cleanup that needs the loop
                say("cleanup")

        af.fork(forever)
        assert started.wait(5)
        announce_when_blocked("draining", exiting=True)
        """,
    )
    assert read_line(proc) == "draining"
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    assert out.splitlines() == ["cleanup"]
    # CPython ends a script killed by an unhandled Ctrl-C with SIGINT itself (-2), and so here.
    assert proc.returncode == -signal.SIGINT, err
    assert_quiet(err)


@posix_only
def test_plain_python_ctrl_c_exit_status_is_minus_sigint() -> None:
    """Reference for the rule above: an unhandled KeyboardInterrupt ends CPython with -SIGINT."""
    res = subprocess.run(
        [sys.executable, "-c", "raise KeyboardInterrupt"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == -signal.SIGINT


@posix_only
def test_second_ctrl_c_during_exit_drain_abandons_cleanup(spawn: Spawn) -> None:
    """A second Ctrl-C abandons what is left of the drain; the process ends promptly."""
    proc = spawn(
        """
        started = threading.Event()

        async def forever():
            try:
                started.set()
                await asyncio.sleep(60)
            finally:
                say("cleanup started")
                await asyncio.sleep(60)  # a cleanup that takes far too long
                say("cleanup finished")

        af.fork(forever)
        assert started.wait(5)
        announce_when_blocked("draining", exiting=True)
        """,
    )
    assert read_line(proc) == "draining"
    proc.send_signal(signal.SIGINT)
    assert read_line(proc) == "cleanup started"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, timeout=5)
    assert time.monotonic() - t0 < 3
    assert "cleanup finished" not in out
    assert proc.returncode == -signal.SIGINT, err
    assert "Exception in thread" not in err
    assert "Task was destroyed" not in err


# -- Ctrl-C during af.shutdown() ----------------------------------------------------------


@posix_only
def test_ctrl_c_during_shutdown_keeps_the_background_loop(spawn: Spawn) -> None:
    """Ctrl-C in `af.shutdown()` raises there; the loop it was closing stays the background
    loop (later forks run on it, no second loop starts), and its pending fork is drained
    at exit."""
    proc = spawn(
        """
        gate = threading.Event()

        async def loop_id():
            return id(asyncio.get_running_loop())

        async def pending():
            await asyncio.to_thread(gate.wait, 10)
            say("pending fork done")

        before = af.fork(loop_id).result(timeout=5)
        af.fork(pending)
        announce_when_blocked()
        try:
            af.shutdown()
        except KeyboardInterrupt:
            say("interrupted")
        after = af.fork(loop_id).result(timeout=5)
        loops = [t for t in threading.enumerate() if t.name == "asyncfork-loop"]
        say(f"same loop {after == before}, {len(loops)} loop thread")
        af.fork(gate.set)
        """,
    )
    assert read_line(proc) == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    assert out.splitlines() == ["interrupted", "same loop True, 1 loop thread", "pending fork done"]
    assert proc.returncode == 0, err
    assert_quiet(err)


@posix_only
def test_ctrl_c_during_shutdown_while_a_new_loop_started_drains_both_at_exit(
    spawn: Spawn,
) -> None:
    """A thread forks while `af.shutdown()` waits: its fork starts a new background loop.
    Ctrl-C then leaves two loops serving; the exit drains the forks of both."""
    proc = spawn(
        """
        gate, new_done = threading.Event(), threading.Event()

        async def pending(name):
            await asyncio.to_thread(gate.wait, 10)
            say(f"{name} done")
            new_done.set()

        async def pending_longer():  # still running once the new loop is drained
            await asyncio.to_thread(new_done.wait, 10)
            await asyncio.sleep(0.3)
            say("old loop's fork done")

        af.fork(pending_longer)

        def fork_once_shutdown_waits():
            while not _main_blocked_in_asyncfork(False):
                time.sleep(0.005)
            af.fork(pending, "new loop's fork")  # no background loop now: a new one
            announce_when_blocked()

        threading.Thread(target=fork_once_shutdown_waits, daemon=True).start()
        try:
            af.shutdown()
        except KeyboardInterrupt:
            say("interrupted")
        loops = [t for t in threading.enumerate() if t.name == "asyncfork-loop"]
        say(f"{len(loops)} loop threads")
        af.fork(gate.set)
        """,
    )
    assert read_line(proc) == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    lines = out.splitlines()
    assert lines[:2] == ["interrupted", "2 loop threads"]
    assert sorted(lines[2:]) == ["new loop's fork done", "old loop's fork done"]
    assert proc.returncode == 0, err
    assert_quiet(err)


# -- Ctrl-C while blocked ------------------------------------------------------------------

BLOCKING_CALLS = {
    "wait": "af.wait(fut)",
    "wait_list": "af.wait([fut, fut2])",
    "result": "fut.result()",
    "exception": "fut.exception()",
}


@posix_only
@pytest.mark.parametrize("call", list(BLOCKING_CALLS))
def test_ctrl_c_while_blocked_raises_there_and_cancels_awaited(spawn: Spawn, call: str) -> None:
    """Ctrl-C while blocked in wait/result: KeyboardInterrupt there promptly; Futures cancelled."""
    proc = spawn(
        f"""
        started = threading.Barrier(3)

        async def forever():
            started.wait(5)
            await asyncio.sleep(60)

        def forever_sync():
            started.wait(5)
            while True:
                af.check_cancelled()
                time.sleep(0.01)

        fut = af.fork(forever)
        fut2 = af.fork(forever_sync)
        started.wait(5)
        announce_when_blocked()
        try:
            {BLOCKING_CALLS[call]}
        except KeyboardInterrupt:
            say("interrupted")
        else:
            say("not interrupted")
        for f in (fut, fut2) if {call == "wait_list"} else (fut,):
            try:
                f.exception(timeout=2)
            except asyncio.CancelledError:
                say("cancelled")
            except TimeoutError:
                say("still running")
            else:
                say("not cancelled")
        fut.cancel()
        fut2.cancel()
        """,
    )
    assert read_line(proc) == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    line = read_line(proc)
    delay = time.monotonic() - t0
    assert line == "interrupted"
    assert delay <= 0.5  # the rule: <= 0.2 s; the margin is scheduling on a busy box
    out, err = finish(proc)
    expected = ["cancelled", "cancelled"] if call == "wait_list" else ["cancelled"]
    assert out.splitlines() == expected
    assert proc.returncode == 0, err
    assert_quiet(err)


@posix_only
def test_ctrl_c_while_blocked_in_sync_group_exit(spawn: Spawn) -> None:
    """Ctrl-C at a sync `with af.group()` exit: KeyboardInterrupt there; children cancelled."""
    proc = spawn(
        """
        running = []
        started = threading.Event()
        cleaned = []

        async def forever(i):
            try:
                running.append(i)
                if len(running) == 2:
                    started.set()
                await asyncio.sleep(60)
            finally:
                cleaned.append(i)

        futs = []
        try:
            with af.group() as g:
                futs.append(g.fork(forever, 1))
                futs.append(g.fork(forever, 2))
                assert started.wait(5)
                announce_when_blocked()
        except KeyboardInterrupt:
            say("interrupted")
        else:
            say("not interrupted")
        for f in futs:
            try:
                f.exception(timeout=2)
            except asyncio.CancelledError:
                say("cancelled")
            except TimeoutError:
                say("still running")
            else:
                say("not cancelled")
        say("cleaned " + str(sorted(cleaned)))
        """,
    )
    assert read_line(proc) == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    line = read_line(proc)
    delay = time.monotonic() - t0
    assert line == "interrupted"
    assert delay <= 0.5
    out, err = finish(proc)
    assert out.splitlines() == ["cancelled", "cancelled", "cleaned [1, 2]"]
    assert proc.returncode == 0, err
    assert_quiet(err)


@posix_only
def test_ctrl_c_in_af_run_cancels_everything_and_propagates(spawn: Spawn) -> None:
    """af.run on Ctrl-C: everything is cancelled, cleanup runs, KeyboardInterrupt propagates."""
    proc = spawn(
        """
        started = threading.Barrier(3)

        async def child():
            try:
                started.wait(5)
                await asyncio.sleep(60)
            finally:
                await asyncio.sleep(0)  # cleanup may still await
                say("child cleanup")

        def sync_child():
            started.wait(5)
            while True:
                af.check_cancelled()
                time.sleep(0.01)

        async def main():
            af.fork(child)
            af.fork(sync_child)
            try:
                await asyncio.to_thread(started.wait, 5)
                say("ready")
                await asyncio.sleep(60)
            finally:
                say("main cleanup")

        t0 = time.monotonic()
        try:
            af.run(main)
        except KeyboardInterrupt:
            say("interrupted")
        else:
            say("not interrupted")
        """,
    )
    assert read_line(proc) == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, timeout=5)
    delay = time.monotonic() - t0
    lines = out.splitlines()
    assert lines[-1] == "interrupted", (out, err)
    assert sorted(lines[:-1]) == ["child cleanup", "main cleanup"]
    assert delay < 3
    assert proc.returncode == 0, err
    assert_quiet(err)


# -- a fork raising KeyboardInterrupt / SystemExit -----------------------------------------


@posix_only
def test_fork_raising_keyboardinterrupt_or_systemexit_keeps_background_loop(
    child_loop: str,
) -> None:
    """B survives any exception a fork raises, KeyboardInterrupt and SystemExit included."""
    res = run_script(
        """
        async def ki():
            raise KeyboardInterrupt

        async def se():
            raise SystemExit(3)

        def sync_ki():
            raise KeyboardInterrupt

        async def ok():
            return 42

        for func, exc in ((ki, KeyboardInterrupt), (se, SystemExit), (sync_ki, KeyboardInterrupt)):
            fut = af.fork(func)
            try:
                fut.result(timeout=5)
            except exc:
                say("raised " + exc.__name__)
        say("value " + str(af.wait(af.fork(ok), timeout=5)))
        """,
        child_loop,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "raised KeyboardInterrupt",
        "raised SystemExit",
        "raised KeyboardInterrupt",
        "value 42",
    ]
    assert_quiet(res.stderr)


# -- signal handlers and os.fork() ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_no_signal_handlers_installed(kind: str) -> None:
    """asyncfork installs no signal handlers and leaves the user's handlers as they were."""
    script = """
        import asyncio, signal
        import asyncfork as af

        def user_handler(signum, frame):
            pass

        signal.signal(signal.SIGTERM, user_handler)
        SIGS = (signal.SIGINT, signal.SIGTERM)
        before = {s: signal.getsignal(s) for s in SIGS}
        during = {}

        async def child():
            await asyncio.sleep(0)
            return 1

        async def main():
            during.update({s: signal.getsignal(s) for s in SIGS})
            return await af.fork(child)

        assert af.run(main) == 1
        assert af.wait(af.fork(child), timeout=5) == 1
        assert af.wait(af.fork(lambda: 2), timeout=5) == 2
        with af.group() as g:
            g.fork(child)
        after_use = {s: signal.getsignal(s) for s in SIGS}
        af.shutdown(timeout=5)
        after_shutdown = {s: signal.getsignal(s) for s in SIGS}
        assert during == before, (during, before)
        assert after_use == before, (after_use, before)
        assert after_shutdown == before, (after_shutdown, before)
        print("OK")
    """
    proc = run_bare_script(script, ASYNCFORK_LOOP=kind)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_os_fork_child_gets_a_fresh_background_loop_and_workers(kind: str) -> None:
    """After os.fork() the child resets B and the workers; they start afresh on first use."""
    script = """
        import asyncio, os, sys, threading, warnings
        import asyncfork as af

        async def where():
            return asyncio.get_running_loop(), threading.current_thread()

        def sync_where():
            return threading.current_thread().name

        parent_loop, parent_thread = af.wait(af.fork(where), timeout=5)
        af.wait(af.fork(sync_where), timeout=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                loop, thread = af.wait(af.fork(where), timeout=5)
                worker = af.wait(af.fork(sync_where), timeout=5)
                assert loop is not parent_loop, "child reused the parent's loop"
                assert thread is not parent_thread, "child reused the parent's thread"
                assert thread.name == "asyncfork-loop" and thread.is_alive()
                assert worker.startswith("asyncfork-worker-"), worker
                af.shutdown(timeout=5)
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        assert af.wait(af.fork(where), timeout=5)[0] is parent_loop, "parent's B changed"
        print("OK")
    """
    proc = run_bare_script(script, ASYNCFORK_LOOP=kind)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "child exit 0" in proc.stdout, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
