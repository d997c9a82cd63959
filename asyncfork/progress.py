"""A progress bar for many forks: how many of the forks made have finished.

It needs the ``progress`` extra (``pip install 'asyncfork[progress]'``, which brings
``tqdm``). Open a bar around the code that forks the work::

    import asyncio

    import asyncfork as af
    from asyncfork.progress import bar

    async def job(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> None:
        with bar(desc="jobs") as progress:
            await af.wait([af.fork(job, i) for i in range(100)])
        assert (progress.made, progress.finished) == (100, 100)

    asyncio.run(main())

The bar's count is the forks finished (with a value, a failure or cancelled); its
total is the forks made so far, unless you pass a fixed ``total``. Failures and
cancellations are shown after the bar (``failed=2, cancelled=1``) and counted in
:attr:`ForkProgress.failed` and :attr:`ForkProgress.cancelled`.

Which forks count
-----------------
- ``forks="children"`` (the default): the forks made directly by the code that opened
  the bar: the children of :func:`asyncfork.current` at that moment (forks made into
  its groups included), not their own children, so that a job that forks helpers
  still counts once. Opened outside any fork (in plain sync code, or in an asyncio task
  that is not a fork), that is the root forks, from any thread;
- ``forks="all"``: every fork made while the bar is open, at any depth, in any thread;
- ``forks=callable``: the forks for which ``callable(fut)`` is true. It is called in the
  forking thread at ``fork()``: it must be quick and must not block.

``prefix="fetch"`` further keeps only the forks whose name starts with ``"fetch"``
(see ``fork.options(name=...)``). A fork is counted if it is made while the bar is
open; if it finishes after the bar closed, the bar does not see it.

How it works
------------
:class:`ForkProgress` is an :class:`asyncfork.Instrument`. Its hooks, called in many
threads, only count under a lock; a small daemon thread (``asyncfork-progress``) moves
the counts to the tqdm bar every ``interval`` seconds, so no fork ever waits on the
terminal. Leaving the ``with`` block removes the instrument, stops that thread, draws
the final counts and closes the bar (a bar you passed in is left open).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

try:
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.std import tqdm
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ImportError("asyncfork.progress needs tqdm: pip install 'asyncfork[progress]'") from exc

from ._future import Future
from ._instruments import Installation, Instrument, instrument
from ._run import current

__all__ = ["ForkProgress", "Selection", "bar"]

Selection = Literal["children", "all"] | Callable[[Future[Any]], bool]
"""Which forks a :class:`ForkProgress` counts: see the module's documentation."""

_NOT_STARTED, _STARTED, _CLOSED = 0, 1, 2


class ForkProgress(Instrument):
    """Counts forks made and finished, and shows the counts on a ``tqdm`` bar.

    Use it as a ``with`` block (or call :meth:`start` and :meth:`close`); see the
    module's documentation for which forks count.

    - ``bar``: a tqdm bar to drive (left open at the end); by default one is made, with
      ``tqdm.auto.tqdm(**tqdm_kwargs)`` (``desc="forks"`` and ``unit="fork"`` unless
      given), and closed at the end.
    - ``total``: a fixed total for the made bar; by default the total is the number of
      forks made so far. (With ``bar=``, a bar that has a total keeps it.)
    - ``forks``, ``prefix``: which forks count.
    - ``interval``: seconds between two updates of the bar.
    """

    def __init__(
        self,
        bar: tqdm[Any] | None = None,
        *,
        total: float | None = None,
        forks: Selection = "children",
        prefix: str | None = None,
        interval: float = 0.1,
        **tqdm_kwargs: Any,
    ) -> None:
        if bar is not None and (tqdm_kwargs or total is not None):
            raise TypeError("pass a tqdm bar, or the arguments to make one, not both")
        if forks not in ("children", "all") and not callable(forks):
            raise ValueError(f"forks= must be 'children', 'all' or a callable, not {forks!r}")
        if not interval > 0:
            raise ValueError(f"interval= must be a positive number of seconds, not {interval!r}")
        self._given_bar = bar
        self._bar = bar
        self._fixed_total = total
        self._tqdm_kwargs = tqdm_kwargs
        # "children" tests the parent; a callable is called; "all" takes every fork.
        self._children_only = forks == "children"
        self._predicate: Callable[[Future[Any]], bool] | None = forks if callable(forks) else None
        self._prefix = prefix
        self._interval = interval
        self._owner: Future[Any] | None = None

        self._lock = threading.Lock()  # guards the counts and _pending, nothing else
        self._pending: set[Future[Any]] = set()  # counted forks not finished yet
        self._made = 0
        self._finished = 0
        self._failed = 0
        self._cancelled = 0

        self._state = _NOT_STARTED
        self._installation: Installation | None = None
        self._stop = threading.Event()
        self._drawer: threading.Thread | None = None
        self._track_total = True
        self._shown = 0  # the finished count already added to the bar
        self._postfix = ""

    # -- the counts ----------------------------------------------------------------

    @property
    def made(self) -> int:
        """How many counted forks were made."""
        return self._made

    @property
    def finished(self) -> int:
        """How many counted forks have finished (a value, a failure or a cancellation)."""
        return self._finished

    @property
    def failed(self) -> int:
        """How many counted forks have finished with an exception."""
        return self._failed

    @property
    def cancelled(self) -> int:
        """How many counted forks have finished cancelled."""
        return self._cancelled

    @property
    def bar(self) -> tqdm[Any]:
        """The tqdm bar; it exists once the progress has started."""
        if self._bar is None:
            raise RuntimeError("the progress bar is made when the ForkProgress starts")
        return self._bar

    # -- starting and closing ------------------------------------------------------

    def start(self) -> ForkProgress:
        """Make the bar (unless one was given), install the instrument, start updating.

        Raises:
            RuntimeError: this ForkProgress was started before (make a new one).
        """
        if self._state != _NOT_STARTED:
            raise RuntimeError("a ForkProgress starts once; make a new one for each use")
        if self._bar is None:
            kwargs: dict[str, Any] = {"desc": "forks", "unit": "fork", **self._tqdm_kwargs}
            self._bar = auto_tqdm(total=self._fixed_total, **kwargs)
            self._track_total = self._fixed_total is None
        else:
            self._track_total = self._bar.total is None
        self._state = _STARTED
        self._owner = current()  # "children": the forks this code makes
        self._installation = instrument(self)
        self._drawer = threading.Thread(
            target=self._draw_until_stopped, name="asyncfork-progress", daemon=True
        )
        self._drawer.start()
        return self

    def close(self) -> None:
        """Stop counting, draw the final counts and close the bar (unless it was given).

        Does nothing if the progress is not running.
        """
        if self._state != _STARTED:
            return
        self._state = _CLOSED
        assert self._installation is not None
        assert self._drawer is not None
        self._installation.remove()
        self._stop.set()
        self._drawer.join()
        self._draw()
        with self._lock:
            self._pending.clear()
        if self._given_bar is None:
            self.bar.close()  # draws the final counts
        else:
            self.bar.refresh()

    def __enter__(self) -> ForkProgress:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- hooks: many threads, count only ---------------------------------------------

    def _counts(self, fut: Future[Any]) -> bool:
        if self._children_only:
            selected = fut.parent is self._owner
        elif self._predicate is not None:
            selected = self._predicate(fut)
        else:
            selected = True
        return selected and (self._prefix is None or fut.name.startswith(self._prefix))

    def fork_made(self, fut: Future[Any]) -> None:
        """Count ``fut`` if it is one of the forks this progress counts."""
        if self._counts(fut):
            with self._lock:
                self._made += 1
                self._pending.add(fut)

    def fork_finished(self, fut: Future[Any], exc: BaseException | None) -> None:
        """Count ``fut`` as finished if it was counted when made."""
        with self._lock:
            try:
                self._pending.remove(fut)
            except KeyError:
                return
            self._finished += 1
            if exc is not None:
                self._failed += 1
            elif fut.cancelled():
                self._cancelled += 1

    # -- drawing: one thread at a time ---------------------------------------------------

    def _draw_until_stopped(self) -> None:
        while not self._stop.wait(self._interval):
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            made, finished = self._made, self._finished
            failed, cancelled = self._failed, self._cancelled
        bar = self.bar
        changed = False
        if self._track_total and bar.total != made:
            bar.total = made
            changed = True
        parts = [f"failed={failed}"] if failed else []
        if cancelled:
            parts.append(f"cancelled={cancelled}")
        postfix = ", ".join(parts)
        if postfix != self._postfix:
            self._postfix = postfix
            bar.set_postfix_str(postfix, refresh=False)
            changed = True
        if finished != self._shown:
            # update() keeps tqdm's rate estimate, but draws only when its own rules say so
            # (mininterval, miniters): draw anyway, so no count stays unshown. The rate of
            # drawing is bounded by this method's: once per interval.
            drawn = bar.update(finished - self._shown)
            self._shown = finished
            changed = not drawn
        if changed:
            bar.refresh()

    def __repr__(self) -> str:
        return (
            f"<asyncfork.progress.ForkProgress {self._finished}/{self._made} finished"
            f"{f', {self._postfix}' if self._postfix else ''}>"
        )


def bar(
    total: float | None = None,
    *,
    forks: Selection = "children",
    prefix: str | None = None,
    interval: float = 0.1,
    **tqdm_kwargs: Any,
) -> ForkProgress:
    """A :class:`ForkProgress` with a new tqdm bar: ``with bar(desc="jobs") as progress:``.

    ``tqdm_kwargs`` go to ``tqdm.auto.tqdm`` (``desc``, ``file``, ``leave``, ``disable``,
    ...); the other arguments are :class:`ForkProgress`'s.

    Raises:
        ValueError: for a ``forks`` selection or an ``interval`` that is not allowed.
    """
    return ForkProgress(total=total, forks=forks, prefix=prefix, interval=interval, **tqdm_kwargs)
