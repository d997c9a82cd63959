"""asyncfork.otel: one OpenTelemetry span per fork, parented like the fork tree."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import asyncfork as af
import asyncfork.otel
from asyncfork.otel import OpenTelemetryInstrument

T = 5.0  # the bound on every wait that should end promptly


class Spans:
    """The test's own provider and exporter, and the installed instrument."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")
        self.instrument = OpenTelemetryInstrument(tracer_provider=self.provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        found = [span for span in self.finished() if span.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return sorted(span.name for span in self.finished())


@pytest.fixture
def spans() -> Iterator[Spans]:
    """A private TracerProvider (the global one is never set) and the instrument on it."""
    s = Spans()
    with af.instrument(s.instrument):
        yield s
    s.provider.shutdown()


def parent_of(span: ReadableSpan, spans: Spans) -> ReadableSpan | None:
    if span.parent is None:
        return None
    for other in spans.finished():
        if other.context is not None and other.context.span_id == span.parent.span_id:
            return other
    raise AssertionError(f"the parent of {span.name!r} is not among the finished spans")


def assert_child(child: str, parent: str, spans: Spans) -> None:
    above = parent_of(spans.named(child), spans)
    assert above is not None, f"{child!r} is a root span"
    assert above.name == parent, f"{child!r} is a child of {above.name!r}, not of {parent!r}"


async def done(fut: af.Future[Any]) -> Any:
    async with asyncio.timeout(T):
        return await fut


# -- names, kinds, outcomes ---------------------------------------------------------


async def test_span_per_fork_with_name_kind_and_times(spans: Spans) -> None:
    async def coro() -> int:
        return 1

    def sync() -> int:
        return 2

    with ThreadPoolExecutor(1) as pool:
        futs = [
            af.fork(coro),
            af.fork.options(name="named")(coro),
            af.fork(sync),
            af.fork.options(executor=pool, name="on-pool")(sync),
        ]
        for fut in futs:
            await done(fut)

    assert spans.names() == sorted([futs[0].name, "named", futs[2].name, "on-pool"]), (
        "one span per fork, named after it"
    )
    assert futs[0].name.endswith("coro")
    assert futs[2].name.endswith("sync")
    kinds = {span.name: (span.attributes or {}).get("asyncfork.kind") for span in spans.finished()}
    assert kinds == {
        futs[0].name: "coroutine",
        "named": "coroutine",
        futs[2].name: "thread",
        "on-pool": "executor",
    }
    for span in spans.finished():
        assert span.status.status_code is StatusCode.UNSET, "a value leaves the status unset"
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.start_time <= span.end_time
        assert span.parent is None, "root forks made outside any span start traces"
        [started] = [event for event in span.events if event.name == "asyncfork.started"]
        assert started.attributes is not None
        where = started.attributes["asyncfork.where"]
        if span.name == "on-pool":
            assert where == "ThreadPoolExecutor"
        elif (span.attributes or {}).get("asyncfork.kind") == "thread":
            assert isinstance(where, str)
            assert re.fullmatch(r"asyncfork-worker-\d+", where)
        else:
            assert where == threading.current_thread().name, "coroutines run on this loop"
        assert "asyncfork.cancelled" not in (span.attributes or {})


async def test_failure_sets_error_status_and_records_the_exception(spans: Spans) -> None:
    async def broken() -> None:
        raise ValueError("bad input")

    fut = af.fork(broken)
    with pytest.raises(ValueError, match="bad input"):
        await done(fut)

    span = spans.named(fut.name)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad input"
    [event] = [event for event in span.events if event.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad input"
    assert "broken" in str(event.attributes["exception.stacktrace"])


def test_sync_fork_failure_and_timeout_are_errors(spans: Spans, loop_kind: str) -> None:
    def broken() -> None:
        raise KeyError("k")

    async def slow() -> None:
        await asyncio.get_running_loop().create_future()  # until the timeout cancels it

    failed = af.fork(broken)
    timed_out = af.fork.options(timeout=0.01, name="slow")(slow)
    with pytest.raises(KeyError):
        af.wait(failed, timeout=T)
    with pytest.raises(TimeoutError):
        af.wait(timed_out, timeout=T)

    assert spans.named(failed.name).status.status_code is StatusCode.ERROR
    slow_span = spans.named("slow")
    assert slow_span.status.status_code is StatusCode.ERROR
    assert (slow_span.status.description or "").startswith("TimeoutError")


async def test_cancelled_fork_has_the_cancelled_attribute(spans: Spans) -> None:
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.get_running_loop().create_future()

    async def never_runs() -> None:
        raise AssertionError("cancelled before it started")

    running = af.fork.options(name="running")(waits)
    unstarted = af.fork.options(name="unstarted")(never_runs)
    unstarted.cancel()
    async with asyncio.timeout(T):
        await started.wait()
    running.cancel()
    for fut in (running, unstarted):
        with pytest.raises(asyncio.CancelledError):
            await done(fut)

    for name in ("running", "unstarted"):
        span = spans.named(name)
        assert (span.attributes or {}).get("asyncfork.cancelled") is True
        assert span.status.status_code is StatusCode.UNSET, "a cancellation is not an error"
        assert not [event for event in span.events if event.name == "exception"]
    assert [e.name for e in spans.named("unstarted").events] == [], "its code never started"


# -- parenting ----------------------------------------------------------------------


async def test_spans_nest_like_the_fork_tree(spans: Spans) -> None:
    """Depth 2 through coroutines, and sync forks: a child's parent is its fork's span."""

    async def leaf() -> str:
        return "leaf"

    def sync_leaf() -> str:
        return "sync_leaf"

    async def middle() -> list[str]:
        return await af.wait(
            [af.fork.options(name="leaf")(leaf), af.fork.options(name="sync_leaf")(sync_leaf)]
        )

    def sync_middle() -> str:
        # In a worker thread, with this fork's own span current.
        return af.wait(af.fork.options(name="leaf_of_sync")(leaf), timeout=T)

    async def root() -> list[Any]:
        return await af.wait(
            [
                af.fork.options(name="middle")(middle),
                af.fork.options(name="sync_middle")(sync_middle),
            ]
        )

    assert await done(af.fork.options(name="root")(root)) == [["leaf", "sync_leaf"], "leaf"]

    assert spans.names() == sorted(
        ["root", "middle", "sync_middle", "leaf", "sync_leaf", "leaf_of_sync"]
    )
    assert parent_of(spans.named("root"), spans) is None
    assert_child("middle", "root", spans)
    assert_child("sync_middle", "root", spans)
    assert_child("leaf", "middle", spans)
    assert_child("sync_leaf", "middle", spans)
    assert_child("leaf_of_sync", "sync_middle", spans)
    trace_ids = {span.context.trace_id for span in spans.finished() if span.context is not None}
    assert len(trace_ids) == 1, "one fork tree, one trace"
    # A parent's span ends after its children's: it settles once they are joined.
    for child, parent in [("leaf", "middle"), ("middle", "root"), ("leaf_of_sync", "sync_middle")]:
        child_end = spans.named(child).end_time
        parent_end = spans.named(parent).end_time
        assert child_end is not None
        assert parent_end is not None
        assert child_end <= parent_end


async def test_forks_under_a_user_span(spans: Spans) -> None:
    async def job() -> None:
        return None

    with spans.tracer.start_as_current_span("request"):
        fut = af.fork.options(name="job")(job)
        detached = af.fork.options(name="detached", detached=True)(job)
        await done(fut)
        await done(detached)
    outside = af.fork.options(name="outside")(job)
    await done(outside)

    assert_child("job", "request", spans)
    assert_child("detached", "request", spans)
    assert parent_of(spans.named("outside"), spans) is None


def test_forks_under_a_user_span_from_sync_code(spans: Spans, loop_kind: str) -> None:
    """From code with no running loop: the forks run on the background loop."""

    async def job() -> None:
        return None

    def sync_job() -> None:
        return None

    with spans.tracer.start_as_current_span("batch"):
        af.wait([af.fork.options(name="a")(job), af.fork.options(name="b")(sync_job)], timeout=T)
    assert_child("a", "batch", spans)
    assert_child("b", "batch", spans)


def test_af_run_root_fork_and_its_children(spans: Spans, loop_kind: str) -> None:
    async def leaf(i: int) -> int:
        return i

    async def main() -> list[int]:
        return await af.wait([af.fork(leaf, i) for i in range(2)])

    with spans.tracer.start_as_current_span("script"):
        assert af.run(main) == [0, 1]
    main_name = next(name for name in spans.names() if name.endswith("main"))
    leaf_names = [name for name in spans.names() if name.endswith("leaf")]
    assert len(leaf_names) == 2
    assert_child(main_name, "script", spans)
    for span in spans.finished():
        if span.name.endswith("leaf"):
            above = parent_of(span, spans)
            assert above is not None
            assert above.name == main_name


async def test_coroutine_fork_runs_with_its_span_current(spans: Spans) -> None:
    """Spans opened in a coroutine fork's code are children of the fork's span, and forks
    made under such a span are its children."""
    seen: list[trace.SpanContext] = []

    async def child() -> None:
        return None

    async def work() -> None:
        seen.append(trace.get_current_span().get_span_context())
        with spans.tracer.start_as_current_span("step"):
            await af.fork.options(name="child")(child)
        await af.fork.options(name="after_step")(child)

    with spans.tracer.start_as_current_span("outer") as outer:
        await done(af.fork.options(name="work")(work))
        # The fork's context is its own: the span it made current did not leak out here.
        assert trace.get_current_span() is outer

    work_span = spans.named("work")
    assert work_span.context is not None
    assert seen == [work_span.context], "the fork's own span is current in its code"
    assert_child("work", "outer", spans)
    assert_child("step", "work", spans)
    assert_child("child", "step", spans)
    assert_child("after_step", "work", spans)


def own_span(spans: Spans) -> trace.Span:
    """The open span of the fork whose code calls this."""
    fut = af.current()
    assert fut is not None, "not in a fork's code"
    span = spans.instrument.span_of(fut)
    assert span is not None, f"fork {fut.name!r} has no open span"
    return span


async def test_sync_fork_runs_with_its_span_current(spans: Spans) -> None:
    """As in a coroutine fork: spans opened in a sync fork's code are children of the
    fork's span, and forks made under such a span are its children."""
    seen: list[bool] = []

    async def child() -> None:
        return None

    def work() -> str:
        seen.append(trace.get_current_span() is own_span(spans))
        with spans.tracer.start_as_current_span("sync_step"):
            af.wait(af.fork.options(name="child")(child), timeout=T)
        seen.append(trace.get_current_span() is own_span(spans))
        af.wait(af.fork.options(name="after_step")(child), timeout=T)
        return threading.current_thread().name

    with spans.tracer.start_as_current_span("outer") as outer:
        where = await done(af.fork.options(name="work")(work))
        # The fork's context is its own: the span it made current did not leak out here.
        assert trace.get_current_span() is outer

    assert re.fullmatch(r"asyncfork-worker-\d+", where), "it ran in a worker thread"
    assert seen == [True, True], "the fork's own span is current in its code"
    assert_child("work", "outer", spans)
    assert_child("sync_step", "work", spans)
    assert_child("child", "sync_step", spans)
    assert_child("after_step", "work", spans)


def test_sync_fork_run_inline_by_its_waiting_worker_has_its_span_current(
    spans: Spans, loop_kind: str
) -> None:
    """A worker that waits on a queued sync fork runs it inline: in the fork's own
    context, so the inline fork's span is current in its code, and the waiting fork's
    span is current again once it returns."""
    seen: dict[str, Any] = {}

    def grandchild() -> int:
        seen["grandchild"] = trace.get_current_span() is own_span(spans)
        return threading.get_ident()

    def inline() -> int:
        seen["inline"] = trace.get_current_span() is own_span(spans)
        with spans.tracer.start_as_current_span("inline_step"):
            below = af.wait(
                af.fork.options(name="grandchild")(grandchild)
            )  # no timeout: it is helped
        seen["inline_after"] = trace.get_current_span() is own_span(spans)
        assert below == threading.get_ident(), "the grandchild ran inline too"
        return threading.get_ident()

    def waiter() -> int:
        mine = own_span(spans)
        ran_on = af.wait(af.fork.options(name="inline")(inline))  # no timeout: it is helped
        seen["waiter_after"] = trace.get_current_span() is mine
        assert ran_on == threading.get_ident(), "the child ran inline, in the waiting worker"
        return ran_on

    af.configure(workers=1)  # the waiter holds the only slot: its child stays queued
    try:
        with spans.tracer.start_as_current_span("outer") as outer:
            af.wait(af.fork.options(name="waiter")(waiter), timeout=T)
            assert trace.get_current_span() is outer
    finally:
        af.configure(workers=None)

    assert seen == {
        "grandchild": True,
        "inline": True,
        "inline_after": True,
        "waiter_after": True,
    }
    assert_child("waiter", "outer", spans)
    assert_child("inline", "waiter", spans)
    assert_child("inline_step", "inline", spans)
    assert_child("grandchild", "inline_step", spans)


def test_a_reused_worker_thread_does_not_keep_a_fork_span_current(
    spans: Spans, loop_kind: str
) -> None:
    """Two sync forks in turn on the one worker thread: each sees its own span, never
    the span of the fork that ran there before it."""
    ran: list[tuple[str, int, trace.SpanContext, trace.SpanContext]] = []
    first_done = threading.Event()

    def record(name: str) -> None:
        current = trace.get_current_span().get_span_context()
        ran.append((name, threading.get_ident(), current, own_span(spans).get_span_context()))

    def first() -> None:
        record("first")
        first_done.set()

    def second() -> None:
        assert first_done.is_set(), "one worker: the second runs after the first"
        record("second")

    af.configure(workers=1)  # both queued at once: the worker runs one, then the other
    try:
        futs = [af.fork.options(name="first")(first), af.fork.options(name="second")(second)]
        af.wait(futs, timeout=T)
    finally:
        af.configure(workers=None)

    assert [name for name, *_ in ran] == ["first", "second"]
    assert ran[0][1] == ran[1][1], "the same worker thread ran both"
    first_ctx = spans.named("first").context
    second_ctx = spans.named("second").context
    assert first_ctx is not None
    assert second_ctx is not None
    assert ran[0][2] == ran[0][3] == first_ctx
    assert ran[1][2] == ran[1][3] == second_ctx, "not the first fork's span"
    assert parent_of(spans.named("second"), spans) is None, "a root fork: no span above it"


async def test_coroutine_returned_by_a_sync_fork_runs_with_its_span_current(
    spans: Spans,
) -> None:
    seen: list[bool] = []

    async def later() -> str:
        seen.append(trace.get_current_span() is own_span(spans))
        with spans.tracer.start_as_current_span("later_step"):
            await af.fork.options(name="child")(later_child)
        return "later"

    async def later_child() -> None:
        return None

    def work() -> Any:
        seen.append(trace.get_current_span() is own_span(spans))
        return later()

    assert await done(af.fork.options(name="work")(work)) == "later"
    assert seen == [True, True]
    assert_child("later_step", "work", spans)
    assert_child("child", "later_step", spans)


async def test_group_forks_are_children_of_the_group_owner(spans: Spans) -> None:
    async def item(i: int) -> int:
        return i

    async def owner() -> list[int]:
        async with af.group(limit=1) as g:
            futs = [g.fork.options(name=f"item{i}")(item, i) for i in range(3)]
        return [fut.result() for fut in futs]

    assert await done(af.fork.options(name="owner")(owner)) == [0, 1, 2]
    for i in range(3):
        assert_child(f"item{i}", "owner", spans)


# -- installation -------------------------------------------------------------------


async def test_only_forks_made_while_installed_are_recorded() -> None:
    s = Spans()

    async def job() -> None:
        return None

    before = af.fork.options(name="before")(job)  # made, not started yet
    with af.instrument(s.instrument):
        await done(before)  # started and finished while installed: no span to end
        await done(af.fork.options(name="inside")(job))
        gate = asyncio.Event()

        async def straddles() -> None:
            await gate.wait()

        straddling = af.fork.options(name="straddles")(straddles)
    gate.set()
    await done(straddling)
    await done(af.fork.options(name="after")(job))

    assert s.names() == ["inside"], "forks made before, or settled after, are not reported"
    assert s.instrument.span_of(before) is None
    assert s.instrument.span_of(straddling) is not None, "its span stays open, never exported"


def test_tracer_or_provider_not_both() -> None:
    provider = TracerProvider()
    with pytest.raises(TypeError):
        OpenTelemetryInstrument(provider.get_tracer("x"), tracer_provider=provider)
    tracer = provider.get_tracer("x")
    assert OpenTelemetryInstrument(tracer).tracer is tracer
    assert "OpenTelemetryInstrument" in repr(OpenTelemetryInstrument(tracer))


def test_module_docstring_example_runs() -> None:
    doc = asyncfork.otel.__doc__
    assert doc is not None
    code = _indented_block(doc.split("::\n", 1)[1])
    assert "af.instrument(OpenTelemetryInstrument" in code
    exec(compile(code, "asyncfork.otel docstring", "exec"), {})


def _indented_block(text: str) -> str:
    lines: list[str] = []
    for line in text.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"
