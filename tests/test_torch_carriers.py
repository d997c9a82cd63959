"""torch's thread-bound modes reach forks as they reach a scripted ``torch.jit.fork``.

Real torch (the CPU build): the test extra installs it on Python 3.11, where it is
required; on 3.12+ no CPU wheel is available to these machines, and the module skips.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from helpers import T, within

import asyncfork as af

if sys.version_info >= (3, 12):
    torch = pytest.importorskip(
        "torch",
        reason="torch is installed for Python 3.11 only (no CPU wheel for 3.12+ here)",
    )
else:  # the test extra installs it on 3.11: missing, this module fails loudly
    import torch

ROOT = Path(__file__).resolve().parent.parent

MODES: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "no_grad": torch.no_grad,
    "set_grad_enabled": lambda: torch.set_grad_enabled(False),
    "inference_mode": torch.inference_mode,
}


def _grad_of_matmul() -> tuple[bool, bool, bool]:
    """What the fork's code sees: grad mode, inference mode, and whether a product of a
    tensor that requires grad records a graph."""
    w = torch.ones(2, 2, requires_grad=True)
    return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), (w @ w).requires_grad


async def _grad_of_matmul_async() -> tuple[bool, bool, bool]:
    await asyncio.sleep(0)
    return _grad_of_matmul()


@pytest.fixture(autouse=True)
def _torch_state_restored() -> Iterator[None]:
    """A test that fails half-way leaves this thread's torch modes as they were."""
    threads = torch.get_num_threads()
    yield
    torch.set_grad_enabled(True)
    torch.set_num_threads(threads)
    assert not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("func", [_grad_of_matmul, _grad_of_matmul_async], ids=["sync", "coro"])
def test_grad_modes_reach_forks(mode: str, func: Callable[[], Any]) -> None:
    """A sync fork (a worker thread) and a coroutine fork from sync code (the background
    loop's thread) compute with the caller's grad mode, as a scripted fork does."""
    with MODES[mode]():
        expected = _grad_of_matmul()
        got = af.wait(af.fork(func), timeout=T)
    assert expected == (False, mode == "inference_mode", False)
    assert got == expected
    assert af.wait(af.fork(func), timeout=T) == (True, False, True)  # and out of it, back


@pytest.mark.parametrize("kind", ["sync", "coro"])
def test_autocast_reaches_forks(kind: str) -> None:
    a = torch.ones(4, 4)

    def product() -> torch.dtype:
        return (a @ a).dtype

    async def product_async() -> torch.dtype:
        await asyncio.sleep(0)
        return (a @ a).dtype

    func: Callable[[], Any] = product if kind == "sync" else product_async
    with torch.autocast("cpu", torch.bfloat16):
        assert af.wait(af.fork(func), timeout=T) == torch.bfloat16
    assert af.wait(af.fork(func), timeout=T) == torch.float32


def test_a_forks_grad_mode_does_not_leak_into_the_next_fork(one_worker: None) -> None:
    """One worker: the second fork runs on the thread where the first turned grad off."""

    def turn_grad_off() -> int:
        torch.set_grad_enabled(False)
        torch.set_num_threads(1)
        torch.set_autocast_enabled("cpu", True)
        return threading.get_ident()

    def read() -> tuple[int, bool, bool, int]:
        return (
            threading.get_ident(),
            torch.is_grad_enabled(),
            torch.is_autocast_enabled("cpu"),
            torch.get_num_threads(),
        )

    thread = af.wait(af.fork(turn_grad_off), timeout=T)
    assert af.wait(af.fork(read), timeout=T) == (thread, True, False, torch.get_num_threads())


def test_set_num_threads_reaches_forks() -> None:
    """Also in a worker that computed before the caller changed it."""
    a = torch.ones(64, 64)
    before = torch.get_num_threads()
    assert (
        af.wait(af.fork(lambda: ((a @ a).sum(), torch.get_num_threads())), timeout=T)[1] == before
    )
    torch.set_num_threads(1)
    assert af.wait(af.fork(torch.get_num_threads), timeout=T) == 1
    torch.set_num_threads(before)
    assert af.wait(af.fork(torch.get_num_threads), timeout=T) == before


async def test_coroutine_fork_takes_the_mode_of_its_fork_and_holds_it() -> None:
    """State is captured at fork(), not when the fork first runs; it holds across awaits
    though another task turns grad off on the loop's thread meanwhile, and the fork's
    steps leave the forking task's mode alone."""
    turned_off = asyncio.Event()
    go_on = asyncio.Event()

    async def read_twice() -> list[bool]:
        seen = [torch.is_grad_enabled()]
        await go_on.wait()
        seen.append(torch.is_grad_enabled())
        return seen

    async def careless() -> None:  # leaves grad off on the loop's thread across an await
        torch.set_grad_enabled(False)
        turned_off.set()
        await go_on.wait()
        torch.set_grad_enabled(True)

    with torch.no_grad():
        fut = af.fork(read_twice)  # not started yet
    other = asyncio.create_task(careless())  # a plain task: what it sets stays on the thread
    await within(turned_off.wait())
    assert torch.is_grad_enabled() is False  # what careless left on this thread
    torch.set_grad_enabled(True)
    fut2 = af.fork(read_twice)  # forked with grad on, runs while careless has it off
    await asyncio.sleep(0)
    torch.set_grad_enabled(False)
    go_on.set()
    torch.set_grad_enabled(True)
    assert await within(fut) == [False, False]
    assert await within(fut2) == [True, True]
    await within(other)
    assert torch.is_grad_enabled()


async def test_a_coroutine_forks_mode_stays_in_it() -> None:
    """A coroutine fork that turns grad off mid-way: the loop's other code never sees it,
    and the fork keeps it off across its own awaits."""

    async def turn_grad_off() -> list[bool]:
        torch.set_grad_enabled(False)
        await asyncio.sleep(0)
        seen = [torch.is_grad_enabled()]
        await asyncio.sleep(0)
        return [*seen, torch.is_grad_enabled()]

    fut = af.fork(turn_grad_off)
    for _ in range(3):
        await asyncio.sleep(0)
        assert torch.is_grad_enabled()
    assert await within(fut) == [False, False]
    assert torch.is_grad_enabled()


async def test_inference_mode_held_across_an_await_stays_in_the_fork() -> None:
    """`with torch.inference_mode():` open across an await: between the fork's steps the
    loop's other code is not in inference mode, and makes no inference tensors."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def holder() -> bool:
        with torch.inference_mode():
            entered.set()
            await release.wait()
            return torch.is_inference_mode_enabled()

    fut = af.fork(holder)
    await within(entered.wait())
    await asyncio.sleep(0)
    assert not torch.is_inference_mode_enabled()
    assert not torch.ones(2).is_inference()
    release.set()
    assert await within(fut) is True
    assert not torch.is_inference_mode_enabled()


def test_sync_fork_that_returns_a_coroutine_keeps_the_mode() -> None:
    def returns_coroutine() -> Any:
        return _grad_of_matmul_async()

    with torch.no_grad():
        fut = af.fork(returns_coroutine)
    assert af.wait(fut, timeout=T) == (False, False, False)


def test_nested_forks_carry_the_mode_down() -> None:
    """Children get the parent fork's mode; a child that changes it, even one the waiting
    parent runs inline on its own thread, leaves the parent's mode alone."""

    def child() -> bool:
        seen = torch.is_grad_enabled()
        torch.set_grad_enabled(True)
        return seen

    def parent() -> tuple[list[Any], bool]:
        kids = af.wait([af.fork(child), af.fork(_grad_of_matmul_async)], timeout=T)
        return kids, torch.is_grad_enabled()

    with torch.no_grad():
        (first, (grad, _, _)), after = af.wait(af.fork(parent), timeout=T)
    assert (first, grad, after) == (False, False, False)


def test_user_carrier_beside_torch() -> None:
    """A user's carrier and torch's: both reach the same fork."""
    local = threading.local()

    class Tag(af.Carrier):
        def capture(self) -> str | None:
            return getattr(local, "tag", None)

        def enter(self, state: str) -> str | None:
            previous = getattr(local, "tag", None)
            local.tag = state
            return previous

        def exit(self, token: str | None) -> None:
            local.tag = token

    def read() -> tuple[str | None, bool]:
        return getattr(local, "tag", None), torch.is_grad_enabled()

    local.tag = "req-7"
    with af.carry(Tag()), torch.no_grad():
        assert af.wait(af.fork(read), timeout=T) == ("req-7", False)


def _torch_blocks(page: str) -> str:
    return "\n".join(
        re.findall(r"```python torch\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)
    )


def test_torch_examples_in_the_docs_run() -> None:
    """docs/torch.md's torch examples (```python torch blocks: test_docs.py runs the plain
    ones everywhere, these need torch)."""
    code = _torch_blocks("torch.md")
    assert "torch.no_grad()" in code
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
