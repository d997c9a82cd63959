"""Carriers: thread-bound state taken at fork(), entered around the fork's code, undone after.

torch's carrier has its own tests (tests/test_torch_carriers.py); these need no torch.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest
from helpers import T, within

import asyncfork as af


class RequestId(af.Carrier):
    """A user's thread-local request id, carried into forks."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.calls: list[str] = []

    def get(self) -> str | None:
        return getattr(self.local, "value", None)

    def set(self, value: str | None) -> None:
        self.local.value = value

    def capture(self) -> str | None:
        return self.get()

    def enter(self, state: str) -> str | None:
        self.calls.append("enter")
        previous = self.get()
        self.set(state)
        return previous

    def exit(self, token: str | None) -> None:
        self.calls.append("exit")
        self.set(token)


@pytest.fixture
def request_id() -> Iterator[RequestId]:
    carrier = RequestId()
    with af.carry(carrier):
        yield carrier
    carrier.set(None)


def test_sync_fork_gets_the_forking_threads_value(request_id: RequestId) -> None:
    request_id.set("r-1")
    assert af.wait(af.fork(request_id.get), timeout=T) == "r-1"
    request_id.set("r-2")
    assert af.wait(af.fork(request_id.get), timeout=T) == "r-2"


def test_coroutine_fork_from_sync_code_gets_it_on_the_loop_thread(request_id: RequestId) -> None:
    async def read() -> tuple[str | None, str | None]:
        before = request_id.get()
        await asyncio.sleep(0)
        return before, request_id.get()

    request_id.set("r-3")
    assert af.wait(af.fork(read), timeout=T) == ("r-3", "r-3")


async def test_coroutine_fork_keeps_the_state_of_its_fork_across_awaits(
    request_id: RequestId,
) -> None:
    """Taken at fork(), not when the fork runs; held on every step, whatever the loop's
    thread has meanwhile; and the forking task's own value is untouched."""
    go = asyncio.Event()

    async def read() -> list[str | None]:
        seen = [request_id.get()]
        await go.wait()
        seen.append(request_id.get())
        return seen

    request_id.set("at-fork")
    fut = af.fork(read)
    request_id.set("later")  # the fork has not run yet: it must not see this
    await asyncio.sleep(0)
    assert request_id.get() == "later"  # the fork's step did not leak into this task
    go.set()
    assert await within(fut) == ["at-fork", "at-fork"]
    assert request_id.get() == "later"


def test_nothing_to_carry_calls_neither_enter_nor_exit(request_id: RequestId) -> None:
    request_id.set(None)
    assert af.wait(af.fork(request_id.get), timeout=T) is None
    assert request_id.calls == []


def test_a_worker_gets_its_own_value_back(request_id: RequestId, one_worker: None) -> None:
    """What a fork sets in its thread ends with it: the next fork on that worker does not see it."""

    def set_it() -> None:
        request_id.set("leaked")

    request_id.set("mine")
    af.wait(af.fork(set_it), timeout=T)
    request_id.set(None)  # nothing carried: the next fork reads its worker's own value
    assert af.wait(af.fork(request_id.get), timeout=T) is None


def test_removed_carrier_is_not_captured() -> None:
    carrier = RequestId()
    handle = af.carry(carrier)
    assert repr(handle) == f"<asyncfork.carry {carrier!r}>"
    carrier.set("x")
    assert af.wait(af.fork(carrier.get), timeout=T) == "x"
    assert handle.remove() is True
    assert handle.remove() is False
    assert af.wait(af.fork(carrier.get), timeout=T) is None


async def test_carry_as_async_context_manager() -> None:
    carrier = RequestId()
    async with af.carry(carrier):
        carrier.set("y")
        assert await within(af.fork(asyncio.to_thread, carrier.get)) is None  # not a fork
        assert await within(af.fork(carrier.get)) == "y"
    assert await within(af.fork(carrier.get)) is None


def test_bad_carriers_are_refused() -> None:
    with pytest.raises(
        TypeError, match=r"not the class RequestId: write af.carry\(RequestId\(\)\)"
    ):
        af.carry(RequestId)

    class Partial:
        def capture(self) -> None:
            return None

    with pytest.raises(TypeError, match=r"it has no enter, exit method\. Subclass af\.Carrier"):
        af.carry(Partial())
    with pytest.raises(TypeError, match="abstract"):
        af.Carrier()  # type: ignore[abstract]  # pyright: ignore[reportAbstractUsage]
    carrier = RequestId()
    with af.carry(carrier), pytest.raises(RuntimeError, match="already installed"):
        af.carry(carrier)


class Failing(RequestId):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def capture(self) -> str | None:
        if self.where == "capture":
            raise ValueError("capture failed")
        return "state"

    def enter(self, state: str) -> str | None:
        if self.where == "enter":
            raise ValueError("enter failed")
        return super().enter(state)

    def exit(self, token: str | None) -> None:
        if self.where == "exit":
            raise ValueError("exit failed")
        super().exit(token)


@pytest.mark.parametrize("where", ["capture", "enter", "exit"])
def test_failing_carrier_is_removed_and_logged(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    carrier = Failing(where)
    handle = af.carry(carrier)
    try:
        with caplog.at_level(logging.ERROR, logger="asyncfork"):
            assert af.wait(af.fork(lambda: 5), timeout=T) == 5  # the fork goes on
        assert f"carrier {carrier!r} raised in {where} and was removed" in caplog.text
        assert handle.remove() is False  # gone already
    finally:
        handle.remove()


def test_numpy_errstate_reaches_forks() -> None:
    """numpy 2 keeps errstate in a context variable, which every fork gets a copy of."""
    np = pytest.importorskip("numpy", reason="numpy is not installed")

    async def coroutine_read() -> str:
        await asyncio.sleep(0)
        return str(np.geterr()["divide"])

    def read() -> str:
        return str(np.geterr()["divide"])

    with np.errstate(divide="raise"):
        assert af.wait(af.fork(read), timeout=T) == "raise"
        assert af.wait(af.fork(coroutine_read), timeout=T) == "raise"
    with np.errstate(divide="ignore"):
        assert af.wait(af.fork(read), timeout=T) == "ignore"


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_asyncfork_never_imports_torch_or_numpy() -> None:
    out = _run(
        """
        import asyncio, sys
        import asyncfork as af

        async def coro():
            return 1

        async def main():
            return await af.fork(coro) + await af.fork(len, "ab")

        futs = [af.fork(coro), af.fork(len, "abc")]
        assert af.wait(futs, timeout=5) == [1, 3]
        assert asyncio.run(main()) == 3
        # With no carrier active, a Future keeps nothing for one (no instance entry).
        assert not any("_carried" in vars(fut) for fut in futs)
        print(sorted(m for m in ("torch", "numpy") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_numpy_1_error_state_is_carried() -> None:
    """numpy 1.x keeps its error state per thread (geterrobj/seterrobj): asyncfork carries it.

    A stand-in for numpy 1.x here (numpy 2 has neither function), imported after asyncfork,
    as a program's late import would be.
    """
    out = _run(
        """
        import sys, threading, types
        import asyncfork as af

        assert af.wait(af.fork(len, "x"), timeout=5) == 1  # forks made before the import
        local = threading.local()
        last = {}  # thread name -> the error state it was last given

        def seterrobj(obj):
            local.obj = obj
            last[threading.current_thread().name] = obj

        numpy = types.ModuleType("numpy")
        numpy.geterrobj = lambda: getattr(local, "obj", "default")
        numpy.seterrobj = seterrobj
        sys.modules["numpy"] = numpy

        def set_and_read():
            seen = numpy.geterrobj()
            numpy.seterrobj("set in the fork")
            return seen

        numpy.seterrobj("raise")
        print(af.wait(af.fork(set_and_read), timeout=5))
        # Each worker got its own state back: "default", never "raise" or the fork's.
        print(sorted({v for k, v in last.items() if k.startswith("asyncfork-worker")}))
        """
    )
    assert out.split("\n")[:2] == ["raise", "['default']"]


async def test_what_a_coroutine_fork_sets_is_its_own_across_awaits(request_id: RequestId) -> None:
    """Captured again after each step: the fork's change holds for its next steps, and the
    loop's other code (this test's task) keeps its own value."""
    stepped = asyncio.Event()
    go = asyncio.Event()

    async def change() -> str | None:
        request_id.set("set by the fork")
        stepped.set()
        await go.wait()
        return request_id.get()

    request_id.set("the test's")
    fut = af.fork(change)
    await within(stepped.wait())
    assert request_id.get() == "the test's"
    go.set()
    assert await within(fut) == "set by the fork"
    assert request_id.get() == "the test's"


@pytest.mark.parametrize("eager", [False, True])
async def test_coroutine_fork_gets_the_state_when_started_eagerly_or_traced(
    request_id: RequestId, eager: bool
) -> None:
    """An eager start runs the first step inside fork() (3.12+); a trace times each step:
    neither changes what the fork sees."""

    async def read() -> list[str | None]:
        seen = [request_id.get()]
        await asyncio.sleep(0)
        return [*seen, request_id.get()]

    request_id.set("r-9")
    with af.trace():
        fut = af.fork.options(eager=eager)(read)
        request_id.set(None)
        assert await within(fut) == ["r-9", "r-9"]
