"""OpenTelemetry spans for forks: one span per fork, from ``fork()`` until it settles.

Install an :class:`OpenTelemetryInstrument` like any instrument (it needs the
``otel`` extra: ``pip install 'asyncfork[otel]'``, which brings ``opentelemetry-api``;
an SDK or a distro of your choice does the exporting)::

    import asyncio

    import asyncfork as af
    from asyncfork.otel import OpenTelemetryInstrument
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def leaf(x: int) -> int:
        return 2 * x

    async def main() -> list[int]:
        return await af.wait([af.fork(leaf, i) for i in range(3)])

    with af.instrument(OpenTelemetryInstrument(tracer_provider=provider)):
        assert asyncio.run(main()) == [0, 2, 4]
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["leaf"] * 3

Without ``tracer`` or ``tracer_provider`` the global tracer provider is used
(``opentelemetry.trace.set_tracer_provider``, or what a distro configured).

What a span holds
-----------------
- name: the fork's name (``fut.name``: ``fork.options(name=...)`` or the callable's
  qualified name);
- start: when ``fork()`` was called; end: when the fork settled, its children included;
- attribute ``asyncfork.kind``: ``"coroutine"``, ``"thread"`` or ``"executor"``;
- event ``asyncfork.started``, with attribute ``asyncfork.where`` (the thread that runs
  the fork's code, or the executor's type name), when its code starts: the time before
  it is the time spent queued (behind a group's limit or busy worker threads);
- a failure: status ``ERROR`` (described as ``"Type: message"``) and the exception
  recorded as an ``exception`` event; a timeout is a failure (``TimeoutError``);
- a cancellation: attribute ``asyncfork.cancelled = True``, status left unset;
- a value: status left unset (instrumentation leaves ``OK`` to the application).

Parenting
---------
A fork's span is the child of the span current where ``fork()`` is called, with one
exception: when that span is merely the one the parent fork's own ``fork()`` saw (the
parent fork's code has no more specific span current), the fork's span is the child of
the parent fork's span instead. So spans nest like the fork tree, and a span that code
opens inside a fork (``tracer.start_as_current_span``) sits between the fork and the
forks made under it. Forks made outside any fork (root forks, detached forks) are
children of the span current at ``fork()``, or roots of new traces if there is none.

Inside a fork's code, the current span is:

- in a coroutine fork or a sync fork (``"thread"``), the fork's own span: it is made
  current as the fork's code starts, in the fork's own context (a coroutine fork's
  task context; a sync fork's private copy of the forking code's context, also when a
  waiting worker runs it inline), so it ends with the fork and never leaks into the
  forking code, the worker thread, or the next fork that thread runs. Spans its code
  opens (``tracer.start_as_current_span``), and OpenTelemetry-instrumented libraries
  it calls, are children of the fork's span, and forks made under such a span are its
  children;
- in an executor fork, whatever the executor provides (``concurrent.futures``
  executors do not carry contexts over).

A fork made before the instrument was installed has no span; a fork that settles after
it was removed keeps its span open (it is never exported): install the instrument for
as long as the forks you want to see run.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ImportError(
        "asyncfork.otel needs OpenTelemetry's API: pip install 'asyncfork[otel]'"
    ) from exc

from ._instruments import Instrument
from ._version import __version__

if TYPE_CHECKING:
    from ._future import Future

__all__ = ["OpenTelemetryInstrument"]

#: The tracer's instrumentation scope name.
SCOPE_NAME = "asyncfork"

_EXECUTOR = "executor"


class _Open:
    """A fork's span while it is open, and the span that was current at its ``fork()``."""

    __slots__ = ("inherited", "span")

    def __init__(self, span: Span, inherited: Span) -> None:
        self.span = span
        self.inherited = inherited


class OpenTelemetryInstrument(Instrument):
    """An instrument that opens one OpenTelemetry span per fork (see the module's docs).

    ``tracer``: the tracer to start spans with. Else one is taken from
    ``tracer_provider`` (default: the global provider) under the scope name
    ``"asyncfork"``. Install it with ``af.instrument(...)``; one instance may be
    installed once at a time, and several instances (say, for two providers) may be
    installed together.
    """

    def __init__(
        self, tracer: Tracer | None = None, *, tracer_provider: TracerProvider | None = None
    ) -> None:
        if tracer is not None and tracer_provider is not None:
            raise TypeError("pass a tracer or a tracer_provider, not both")
        if tracer is None:
            tracer = trace.get_tracer(SCOPE_NAME, __version__, tracer_provider=tracer_provider)
        self._tracer = tracer
        self._lock = threading.Lock()
        # Future -> its open span. Weak keys: a fork that settles after this instrument
        # was removed is never reported, and must not be kept alive by this table.
        self._open: weakref.WeakKeyDictionary[Future[Any], _Open] = weakref.WeakKeyDictionary()

    @property
    def tracer(self) -> Tracer:
        """The tracer the spans are started with."""
        return self._tracer

    def span_of(self, fut: Future[Any]) -> Span | None:
        """The open span of ``fut``; ``None`` once it has settled (or if it has no span)."""
        with self._lock:
            entry = self._open.get(fut)
        return None if entry is None else entry.span

    def fork_made(self, fut: Future[Any]) -> None:
        """Start the fork's span, under the parent the module's parenting rule gives."""
        current = trace.get_current_span()  # the forking code's context: fork_made runs in it
        parent = current
        parent_fork = fut.parent
        if parent_fork is not None:
            with self._lock:
                above = self._open.get(parent_fork)
            if above is not None and above.inherited is current:
                parent = above.span  # the parent fork's code opened no span of its own
        span = self._tracer.start_span(
            fut.name,
            context=trace.set_span_in_context(parent),
            attributes={"asyncfork.kind": fut.kind},
        )
        with self._lock:
            self._open[fut] = _Open(span, current)

    def fork_started(self, fut: Future[Any], where: str) -> None:
        """Mark the start of the fork's code; make its span current unless it runs in an
        executor."""
        with self._lock:
            entry = self._open.get(fut)
        if entry is None:
            return
        entry.span.add_event("asyncfork.started", {"asyncfork.where": where})
        if fut.kind != _EXECUTOR:
            # A coroutine fork's fork_started runs in its task, in the task's own context;
            # a sync fork's runs in its worker thread (or in the waiting worker that runs
            # it inline), inside the fork's private copy of the forking context. Either
            # way a context nobody else runs in, entered just before the fork's code runs
            # in it: attaching here makes the span current for that code and nothing
            # else. The context goes away with the fork (the worker thread goes back to
            # its own context when the call returns), so there is nothing to detach, and
            # the token is dropped: detaching it elsewhere would be in the wrong context.
            # (An executor fork's fork_started runs on the loop, in the loop's context.)
            # A sync fork that returns a coroutine starts again on its loop, in a task
            # that runs in that same private context: attaching again there is harmless.
            otel_context.attach(trace.set_span_in_context(entry.span))

    def fork_finished(self, fut: Future[Any], exc: BaseException | None) -> None:
        """End the fork's span with its outcome."""
        with self._lock:
            entry = self._open.pop(fut, None)
        if entry is None:
            return
        span = entry.span
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        elif fut.cancelled():
            span.set_attribute("asyncfork.cancelled", True)
        span.end()

    def __repr__(self) -> str:
        return f"<asyncfork.otel.OpenTelemetryInstrument tracer={self._tracer!r}>"
