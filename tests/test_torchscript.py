"""Scripted callables fork onto torch's inter-op pool through ``torch.jit.fork``, and keep
every rule of a fork: scope, cancellation, trace records, errors, waits, timeouts.

Real torch (the CPU build), as in test_torch_carriers.py: required on Python 3.11, where
the test extra installs it; on 3.12+ the module skips.
"""

import asyncio
import gc
import subprocess
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import WORKER_NAME, T, within

import asyncfork as af
from asyncfork import _torchscript

if sys.version_info >= (3, 12):
    torch = pytest.importorskip(
        "torch",
        reason="torch is installed for Python 3.11 only (no CPU wheel for 3.12+ here)",
    )
else:  # the test extra installs it on 3.11: missing, this module fails loudly
    import torch

from torch import Tensor


def script(obj: Any) -> Any:
    """``torch.jit.script`` without its deprecation warning (warnings are errors here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(obj)


# A scripted call that blocks in Python until the test releases it: an ignored function
# runs as Python in the thread that runs the scripted code, holding the GIL only there.
_GATES: dict[int, tuple[threading.Event, threading.Event, list[str]]] = {}


@torch.jit.ignore  # type: ignore[untyped-decorator, misc]
def _pass_gate(key: int) -> int:
    started, release, seen = _GATES[key]
    seen.append(threading.current_thread().name)
    started.set()
    release.wait(T)
    return key


def _gated(key: int) -> int:
    return _pass_gate(key)


def _failing(x: Tensor) -> Tensor:
    if bool(x.sum() > 0):
        raise ValueError("bad input")
    return x


def _grad_enabled(x: Tensor) -> bool:
    return torch.is_grad_enabled()


def _scale(x: Tensor, n: int = 3, shift: float = 0.0) -> Tensor:
    return x * n + shift


def _bump(x: Tensor) -> Tensor:
    return x.add_(1)


gated = script(_gated)
failing = script(_failing)
grad_enabled = script(_grad_enabled)
scale = script(_scale)
bump = script(_bump)


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: Tensor, k: int = 2) -> Tensor:
        return self.linear(x) * k

    @torch.jit.export
    def encode(self, x: Tensor) -> Tensor:
        return x + 1


class Gate:
    """One gated call: ``key`` for ``gated``, set when it starts, released by the test."""

    _next = 0

    def __init__(self) -> None:
        Gate._next += 1
        self.key = Gate._next
        self.started = threading.Event()
        self.release = threading.Event()
        self.threads: list[str] = []
        _GATES[self.key] = (self.started, self.release, self.threads)

    def wait_started(self) -> None:
        assert self.started.wait(T), "the scripted call never started"


@pytest.fixture(autouse=True)
def _gates_released() -> Iterator[None]:
    """A failing test leaves no scripted call blocked on torch's pool."""
    yield
    for _, release, _ in _GATES.values():
        release.set()
    _GATES.clear()


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call that reached torch.jit.fork (a launcher's submit_fork), in order."""
    seen: list[Any] = []
    submit_fork = _torchscript.TorchScriptLauncher.submit_fork

    def spy(self: Any, fut: Any, func: Any, args: Any, kwargs: Any) -> Any:
        seen.append(func)
        return submit_fork(self, fut, func, args, kwargs)

    monkeypatch.setattr(_torchscript.TorchScriptLauncher, "submit_fork", spy)
    return seen


# ---------------------------------------------------------------- the route


def test_scripted_callables_run_on_torchs_pool(launches: list[Any]) -> None:
    """A script function, a scripted module and a method of one go through
    torch.jit.fork: an executor fork, its call in one of torch's threads."""
    model = script(_Model())
    x = torch.ones(3, 4)
    gate = Gate()
    fut = af.fork(gated, gate.key)
    gate.wait_started()
    assert fut.kind == "executor"
    assert not WORKER_NAME.fullmatch(gate.threads[0])
    assert gate.threads[0] != threading.current_thread().name
    gate.release.set()
    assert af.wait(fut, timeout=T) == gate.key
    assert torch.equal(af.wait(af.fork(model, x), timeout=T), model(x))
    assert torch.equal(af.wait(af.fork(model, x, k=5), timeout=T), model(x, k=5))
    assert torch.equal(af.wait(af.fork(model.encode, x), timeout=T), x + 1)
    assert launches == [gated, model, model, model.encode]


def test_a_root_fork_from_a_plain_thread_needs_no_loop() -> None:
    """Launched inside fork(), as a thread fork is queued at once, joined to the root set
    there and settled in torch's thread: a blocked loop delays none of it."""
    busy, release = threading.Event(), threading.Event()

    async def hog_the_loop() -> None:
        busy.set()
        release.wait(10 * T)  # blocks the background loop's thread on purpose

    hog = af.fork(hog_the_loop)
    try:
        assert busy.wait(T)
        gate = Gate()
        fut = af.fork(gated, gate.key)
        gate.wait_started()  # while the loop is still blocked
        assert not fut.done()
        gate.release.set()
        assert af.wait(fut, timeout=T) == gate.key  # and still blocked
    finally:
        release.set()
    af.wait(hog, timeout=T)


def test_torchs_pool_threads_keep_their_python_thread_state() -> None:
    """torch runs a callback in a Python thread state made for that call, unless its thread
    keeps one: asyncfork keeps one per pool thread, however many forks end there."""
    x = torch.ones(2)
    before = _torchscript.KEPT_THREAD_STATES[0]
    for _ in range(30):
        assert len(af.wait([af.fork(scale, x) for _ in range(4)], timeout=T)) == 4
    # One per pool thread, and maybe the forking thread (a call done before its callback
    # was added runs the callback there); 120 without the kept state.
    assert _torchscript.KEPT_THREAD_STATES[0] - before <= torch.get_num_interop_threads() + 1


def test_arguments_in_every_form() -> None:
    x = torch.ones(2)
    forks = [
        af.fork(scale, x),
        af.fork(scale, x, 2),
        af.fork(scale, x, shift=1.0),
        af.fork(scale, x=x, n=4, shift=0.5),
        af.fork(scale, x, 2, 1.0),
    ]
    got = [t.tolist() for t in af.wait(forks, timeout=T)]
    assert got == [[3.0, 3.0], [2.0, 2.0], [4.0, 4.0], [4.5, 4.5], [3.0, 3.0]]


def test_a_launcher_is_an_executor_too() -> None:
    launcher = _torchscript.torchscript_executor(scale)
    assert launcher is not None
    assert launcher.submit(scale, torch.ones(2), 2).result(timeout=T).tolist() == [2.0, 2.0]
    with pytest.raises(RuntimeError, match="Expected a value of type 'Tensor'"):
        launcher.submit(scale, "x").result(timeout=T)


def test_bad_arguments_fail_the_future_as_the_call_would() -> None:
    fut = af.fork(scale, "not a tensor")
    with pytest.raises(RuntimeError, match="Expected a value of type 'Tensor' for argument 'x'"):
        af.wait(fut, timeout=T)
    with pytest.raises(RuntimeError, match="missing value for argument 'x'"):
        af.wait(af.fork(scale), timeout=T)


def test_eager_callables_and_a_wrapped_call_take_the_thread_path(launches: list[Any]) -> None:
    """The opt-out: a lambda (any plain function) around a scripted call runs in a worker."""
    model = _Model()
    x = torch.ones(1, 4)
    eager = [af.fork(model, x), af.fork(_scale, x)]
    af.wait(eager, timeout=T)
    assert [fut.kind for fut in eager] == ["thread", "thread"]
    gate = Gate()
    fut = af.fork(lambda: gated(gate.key))
    gate.wait_started()
    assert fut.kind == "thread"
    assert WORKER_NAME.fullmatch(gate.threads[0])
    gate.release.set()
    assert af.wait(fut, timeout=T) == gate.key
    assert launches == []


def test_a_module_under_global_python_hooks_runs_them_in_a_worker() -> None:
    """module(x) runs the hooks of register_module_forward_pre_hook; torch.jit.fork would
    skip them."""
    model = script(_Model())
    calls: list[str] = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: calls.append("pre")
    )
    try:
        fut = af.fork(model, torch.ones(1, 4))
        af.wait(fut, timeout=T)
    finally:
        handle.remove()
    assert fut.kind == "thread"
    assert calls == ["pre"]
    fut = af.fork(model, torch.ones(1, 4))
    af.wait(fut, timeout=T)
    assert fut.kind == "executor"
    assert calls == ["pre"]


def test_the_launcher_does_not_keep_the_model_alive() -> None:
    model = script(_Model())
    af.wait(af.fork(model, torch.ones(1, 4)), timeout=T)
    af.wait(af.fork(model.encode, torch.ones(1, 4)), timeout=T)
    dead = weakref.ref(model)
    del model
    gc.collect()
    assert dead() is None


def test_a_torch_still_being_imported_is_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork while another thread imports torch (in sys.modules, not yet filled in) takes
    the thread path instead of failing."""
    monkeypatch.setattr(_torchscript, "_kinds", ())
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    fut = af.fork(len, [1, 2])
    assert af.wait(fut, timeout=T) == 2
    assert fut.kind == "thread"
    assert _torchscript._kinds == ()  # asked again on the next fork


def test_detection_costs_nothing_without_torch() -> None:
    """asyncfork never imports torch: a program that did not has no torch after forking."""
    code = (
        "import sys, asyncfork as af\n"
        "assert af.wait(af.fork(len, [1, 2]), timeout=5) == 2\n"
        "assert af.wait(af.fork(sum, [1, 2]), timeout=5) == 3\n"
        "assert 'torch' not in sys.modules, 'asyncfork imported torch'\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- waits, errors, traces


async def test_waits_from_async_code() -> None:
    x = torch.ones(2)
    assert (await within(af.fork(scale, x))).tolist() == [3.0, 3.0]
    got = await within(af.wait_async([af.fork(scale, x, 1), af.fork(scale, x, 2)]))
    assert [t.tolist() for t in got] == [[1.0, 1.0], [2.0, 2.0]]
    assert (await within(af.fork(scale, x).wait())).tolist() == [3.0, 3.0]


def test_waits_from_sync_code() -> None:
    x = torch.ones(2)
    assert af.fork(scale, x).wait().tolist() == [3.0, 3.0]
    assert af.fork(scale, x).result(timeout=T).tolist() == [3.0, 3.0]
    fut = af.fork(scale, x, 2)
    assert af.wait(fut, timeout=T).tolist() == af.wait(fut, timeout=T).tolist() == [2.0, 2.0]


def test_an_error_keeps_its_type_and_gets_the_fork_site_note() -> None:
    """torch's Future raises RuntimeError for a failed scripted call, as TorchScript's own
    torch.jit.wait does; the note names the fork() line, once however often it is waited."""
    fut = af.fork(failing, torch.ones(1))
    line = sys._getframe().f_lineno - 1
    for _ in range(2):
        with pytest.raises(RuntimeError, match="bad input") as info:
            af.wait(fut, timeout=T)
    notes = info.value.__notes__
    assert len(notes) == 1
    assert f"test_torchscript.py:{line} in " in notes[0]


def test_forks_are_named_after_the_scripted_code() -> None:
    """Not after torch's wrapper classes ('torch.jit.ScriptFunction', 'RecursiveScriptModule'),
    in the Future, the trace and the fork-site note."""
    model = script(_Model())
    futs = [
        af.fork(scale, torch.ones(1)),
        af.fork(model, torch.ones(4)),
        af.fork(model.encode, torch.ones(4)),
    ]
    assert [f.name for f in futs] == ["_scale", "_Model", "_Model.encode"]
    fut = af.fork(failing, torch.ones(1))
    with pytest.raises(RuntimeError) as info:
        af.wait([*futs, fut], timeout=T)
    assert info.value.__notes__[0].startswith("in fork '_failing' (forked at ")


def test_trace_records_and_hooks() -> None:
    seen: list[tuple[str, str]] = []

    class Log(af.Instrument):
        def fork_made(self, fut: af.Future[Any]) -> None:
            seen.append(("made", fut.kind))

        def fork_started(self, fut: af.Future[Any], where: str) -> None:
            seen.append(("started", where))

        def fork_finished(self, fut: af.Future[Any], exc: BaseException | None) -> None:
            seen.append(("finished", type(exc).__name__))

    with af.instrument(Log()), af.trace() as trace:
        af.wait(af.fork(scale, torch.ones(1)), timeout=T)
        af.wait(af.fork(failing, torch.ones(1)), timeout=T, return_exceptions=True)
    assert seen == [
        ("made", "executor"),
        ("started", "TorchScriptLauncher"),
        ("finished", "NoneType"),
        ("made", "executor"),
        ("started", "TorchScriptLauncher"),
        ("finished", "RuntimeError"),
    ]
    assert [(r.kind, r.outcome) for r in trace.forks] == [
        ("executor", "value"),
        ("executor", "RuntimeError"),
    ]
    assert len(trace.waits) == 2


# ---------------------------------------------------------------- structure


def test_a_scripted_child_is_joined_before_its_parent_completes() -> None:
    gate = Gate()
    returned = threading.Event()
    child: list[af.Future[int]] = []

    def parent() -> str:
        child.append(af.fork(gated, gate.key))
        returned.set()
        return "parent"

    fut = af.fork(parent)
    assert returned.wait(T)
    gate.wait_started()
    assert child[0].parent is fut
    with pytest.raises(TimeoutError):
        af.wait(fut, timeout=0.05)  # its body returned; its scripted child runs on
    gate.release.set()
    assert af.wait(fut, timeout=T) == "parent"
    assert child[0].done()


async def test_a_failing_scripted_child_fails_its_group_fast() -> None:
    async def body() -> None:
        async with af.group() as g:
            g.fork(failing, torch.ones(1))
            await asyncio.sleep(T)  # cancelled by the child's failure

    started = time.monotonic()
    with pytest.raises(ExceptionGroup) as info:
        await within(body())
    assert time.monotonic() - started < T / 2
    assert [type(e) for e in info.value.exceptions] == [RuntimeError]


# ---------------------------------------------------------------- cancellation, timeouts


def test_cancelled_before_its_start_it_never_reaches_torch(launches: list[Any]) -> None:
    blocker = threading.Event()
    x = torch.zeros(1)
    with af.group(limit=1) as g:
        first = g.fork(blocker.wait, T)
        queued = g.fork(bump, x)
        assert queued.cancel()
        blocker.set()
    assert af.wait(first, timeout=T)
    assert queued.cancelled()
    assert launches == []
    assert x.item() == 0.0


def test_a_fork_of_a_cancelled_fork_never_reaches_torch(launches: list[Any]) -> None:
    started, proceed = threading.Event(), threading.Event()
    children: list[af.Future[Any]] = []

    def parent() -> None:
        started.set()
        proceed.wait(T)
        try:
            children.append(af.fork(bump, torch.zeros(1)))
        except asyncio.CancelledError:
            pass  # refused at fork(): never started either

    fut = af.fork(parent)
    assert started.wait(T)
    assert fut.cancel()
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        af.wait(fut, timeout=T)
    assert all(child.cancelled() for child in children)
    assert launches == []


def test_cancel_of_a_running_call_waits_for_it_and_drops_its_result() -> None:
    """Once torch runs it, it cannot be interrupted: like a running sync fork with
    on_cancel="wait", the Future turns cancelled when the call returns."""
    gate = Gate()
    fut = af.fork(gated, gate.key)
    gate.wait_started()
    assert fut.cancel()
    with pytest.raises(TimeoutError):
        af.wait(fut, timeout=0.05)
    assert not fut.done()
    gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        af.wait(fut, timeout=T)


def test_on_cancel_abandon_settles_at_once() -> None:
    gate = Gate()
    fut = af.fork.options(on_cancel="abandon")(gated, gate.key)
    gate.wait_started()
    assert fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        af.wait(fut, timeout=T)  # while torch still runs it
    assert not gate.release.is_set()


def test_a_fork_timeout_raises_once_the_call_returns() -> None:
    gate = Gate()
    fut = af.fork.options(timeout=0.01)(gated, gate.key)
    gate.wait_started()
    deadline = time.monotonic() + T
    while not fut._cancel_requested:  # the fork's timer fires on its loop
        assert time.monotonic() < deadline, "the fork's timeout never fired"
        time.sleep(0.005)
    assert not fut.done()
    gate.release.set()
    with pytest.raises(TimeoutError, match=r"timed out after 0\.01s"):
        af.wait(fut, timeout=T)


def test_a_wait_timeout_only_stops_watching() -> None:
    gate = Gate()
    fut = af.fork(gated, gate.key)
    with pytest.raises(TimeoutError):
        af.wait(fut, timeout=0.01)
    gate.release.set()
    assert af.wait(fut, timeout=T) == gate.key


# ---------------------------------------------------------------- thread-bound modes


@pytest.mark.parametrize("where", ["this thread", "a plain thread"])
def test_grad_and_inference_modes_reach_the_scripted_call(where: str) -> None:
    """A root fork from this thread or another plain thread is launched inside fork(), in
    the caller's modes, and torch hands them on to its pool."""

    def fork_under_no_grad() -> tuple[bool, bool, bool]:
        with torch.no_grad():
            off = af.wait(af.fork(grad_enabled, torch.ones(1)), timeout=T)
        with torch.inference_mode():
            inference = af.wait(af.fork(scale, torch.ones(1)), timeout=T).is_inference()
        return off, inference, af.wait(af.fork(grad_enabled, torch.ones(1)), timeout=T)

    if where == "this thread":
        got = fork_under_no_grad()
    else:
        out: list[tuple[bool, bool, bool]] = []
        thread = threading.Thread(target=lambda: out.append(fork_under_no_grad()))
        thread.start()
        thread.join(T)
        got = out[0]
    assert got == (False, True, True)


async def test_modes_reach_a_scripted_fork_queued_on_the_loop() -> None:
    """Queued behind a group's limit, the launch runs later on the loop's thread, in the
    fork's modes, not the loop's."""
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    async with af.group(limit=1) as g:
        g.fork(hold)
        with torch.no_grad():
            queued = g.fork(grad_enabled, torch.ones(1))
        release.set()
    assert queued.result() is False


def test_modes_reach_a_scripted_child_of_a_sync_fork() -> None:
    """A child is launched on the loop's thread (its parent's cancel is seen first there):
    the modes of its fork() call hold all the same."""

    def parent() -> tuple[bool, torch.dtype]:
        with torch.no_grad():
            grad = af.wait(af.fork(grad_enabled, torch.ones(1)), timeout=T)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dtype = af.wait(af.fork(_LINEAR, torch.ones(2, 4)), timeout=T).dtype
        return grad, dtype

    assert af.wait(af.fork(parent), timeout=T) == (False, torch.bfloat16)


_LINEAR = script(torch.nn.Linear(4, 4))


def test_autocast_reaches_the_scripted_call() -> None:
    model = script(torch.nn.Linear(4, 4))
    x = torch.ones(2, 4)
    out: list[Tensor] = []

    def in_thread() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(af.wait(af.fork(model, x), timeout=T))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(T)
    assert out[0].dtype == torch.bfloat16
    assert af.wait(af.fork(model, x), timeout=T).dtype == torch.float32
