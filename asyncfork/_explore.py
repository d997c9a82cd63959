"""``af.explore``: run a program under many seeded schedules; name the seed of a failure.

Each run is one call of the program on a new :class:`ExploringLoop` of its seed, as the
root fork of that loop (as ``af.run`` runs its function): a coroutine function as a
coroutine fork, a sync callable as a sync fork. Its forks are joined before the run ends,
so a failure nobody retrieved fails the run. The first failure is raised with a note
naming its seed and how to replay it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from typing import Any, cast

from ._errors import describe
from ._explore_loop import ExploringLoop
from ._fork import fork
from ._future import Future
from ._runner import ROOTS
from ._serial import serial

# The runs of an exploration when nobody says: seeds 0, 1, ... 99.
DEFAULT_RUNS = 100


def explore(
    func: Callable[[], Any], /, *, runs: int | None = None, seed: int | None = None
) -> None:
    """Run ``func()`` under ``runs`` seeded schedules (seeds 0 to ``runs - 1``).

    ``func`` is a coroutine function, or a sync callable (run as a sync fork), taking
    no arguments (bind them with a lambda or ``functools.partial``). Each run is on a new
    event loop whose ready forks, and sync forks' completions, go in an order chosen
    from the run's seed; the same seed gives the same order. The first run that raises
    stops the exploration: its exception is raised with a note naming the seed, and
    ``af.explore(func, seed=S)`` replays that one schedule. Must be called where no
    event loop runs.
    """
    seeds = seeds_to_run(runs, seed, "af.explore")
    check_program(func, "af.explore")
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            "af.explore() runs its own event loop, so it cannot be called from a running "
            "one: call it from sync code (a test function, or a script's top level)"
        )

    def replay(s: int) -> str:
        return f"af.explore({getattr(func, '__qualname__', 'func')}, seed={s})"

    run_seeds(lambda s: run_once(func, s), seeds, replay)


def seeds_to_run(runs: int | None, seed: int | None, who: str) -> list[int]:
    """The seeds of an exploration: ``seed`` alone (a replay), else ``range(runs)``."""
    if seed is not None:
        if not isinstance(cast(object, seed), int) or isinstance(seed, bool):
            raise TypeError(
                f"{who}: seed must be an int (a seed a failure reported), got {describe(seed)}"
            )
        if runs is not None:
            raise ValueError(
                f"{who}: give runs (explore that many seeds) or seed (replay one), not both"
            )
        return [seed]
    if runs is None:
        runs = DEFAULT_RUNS
    if not isinstance(cast(object, runs), int) or isinstance(runs, bool):
        raise TypeError(f"{who}: runs must be an int of at least 1, got {describe(runs)}")
    if runs < 1:
        raise ValueError(f"{who}: runs must be an int of at least 1, got {describe(runs)}")
    return list(range(runs))


def check_program(func: object, who: str) -> None:
    """Refuse, before any run, what cannot be called with no arguments."""
    if inspect.iscoroutine(func):
        name = getattr(func, "__qualname__", "main")
        func.close()  # never to run: no "never awaited" warning on top of this error
        raise TypeError(
            f"{who} takes the coroutine function, not a coroutine object: write "
            f"af.explore({name}) instead of af.explore({name}()), so each run makes its own"
        )
    if not callable(func):
        raise TypeError(
            f"{who} takes a coroutine function or a sync callable, called with no arguments, "
            f"not {describe(func)}"
        )
    try:
        inspect.signature(func).bind()
    except TypeError:
        raise TypeError(
            f"{who} calls {getattr(func, '__qualname__', 'func')} with no arguments, and it "
            "needs some: bind them with functools.partial(func, ...) or a lambda"
        ) from None
    except ValueError:  # no signature to read (some builtins): the run will tell
        pass


def run_once(func: Callable[[], Any], seed: int) -> Any:
    """One run of ``func`` on a new exploring loop of ``seed``."""
    loops: list[ExploringLoop] = []

    def new_loop() -> ExploringLoop:
        loops.append(ExploringLoop(seed))
        return loops[-1]

    try:
        # Serial mode (af.serial(), ASYNCFORK_SERIAL=1, --asyncfork-serial) is off in the
        # run: a fork run inline inside fork() has no order left for the seed to choose.
        with serial(False), asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(_as_root(func))
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise  # the run was stopped, not a schedule that failed
        if loops and loops[0].uncontrolled is not None:
            exc.add_note(
                f"schedule exploration did not control all of this run ({loops[0].uncontrolled}):"
                " a replay may take another order"
            )
        raise


async def _as_root(func: Callable[[], Any]) -> Any:
    """``func`` as the root fork of the running loop, as ``af.run`` makes it: its children
    are joined before it completes, and a failure of one nobody retrieved is its failure.
    Then the loop's other root forks are joined too (daemons cancelled), as ``af.run``
    joins them, so that nothing the run started is cancelled silently when its loop closes."""
    root: Future[Any] = fork.options(detached=True)(func)
    roots = ROOTS.get(asyncio.get_running_loop())
    try:
        return await root
    except asyncio.CancelledError:
        task = asyncio.current_task()
        # Ctrl-C (asyncio.Runner cancels this task, not the root): stop everything.
        if roots is not None and task is not None and task.cancelling():
            roots.cancel_all("KeyboardInterrupt")
        raise
    finally:
        if roots is not None:
            roots.cancel_daemons()
            await roots.drained()


def run_seeds(
    call: Callable[[int], object],
    seeds: Iterable[int],
    replay: Callable[[int], str],
    passthrough: tuple[type[BaseException], ...] = (),
) -> None:
    """``call(seed)`` for each seed until one raises; its error gets a note with the replay."""
    seeds = list(seeds)
    for index, seed in enumerate(seeds):
        try:
            call(seed)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit, *passthrough)):
                raise
            exc.add_note(
                f"schedule exploration: run {index + 1} of {len(seeds)} failed, with seed "
                f"{seed}; replay exactly that schedule: {replay(seed)}"
            )
            raise
