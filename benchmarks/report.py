"""Markdown tables, and the check against docs/design.md's performance targets."""
# ruff: noqa: RUF001  (the multiplication sign in the tables is on purpose)

from __future__ import annotations

from typing import Any, NamedTuple

from . import torch_cases
from ._common import D1_REF, D1_ROW, D2_REF, D2_ROW, FULL, LOOP_KINDS, QUICK, Config

Result = dict[str, Any]

THREAD = ("s4", "s5", "s6a", "s6b")
LOOPS: tuple[str, ...] = LOOP_KINDS  # one column each in the targets table, in this order


def titles(cfg: Config) -> dict[str, str]:
    return {
        "s1": "1. fork + await one coroutine, repeated (round-trip latency) — µs per round trip",
        "s2": "2. 1000 forks in a group, then join — µs per fork",
        "s3": f"3. fib({cfg.s3_k}) tree, every call forks two children and waits — µs per call",
        "s4": "4. plain thread: fork + wait one coroutine, repeated (sync→async latency) "
        "— µs per round trip",
        "s5": "5. plain thread: fork 1000 coroutines, then wait all (sync→async throughput) "
        "— µs per fork",
        "s6a": "6a. async code: 1000 sync callables forked at once, then awaited — µs per call",
        "s6b": "6b. async code: one sync callable at a time — µs per call",
        "s7": f"7. memory per pending fork ({cfg.s7_n:,} blocked on an event) — traced bytes "
        "per fork",
        "s8": "8. scaling: n no-op forks in one group",
        "d1": f"D1. Dask: {cfg.d1_n:,} no-op forks, then wait all (throughput) — µs per fork",
        "d2": "D2. Dask: fork + wait one no-op, repeated (round trip) — µs per round trip",
        "d3": f"D3. Dask: {cfg.d3_calls} CPU-bound pure-Python calls of ~"
        f"{cfg.d3_seconds * 1e3:.0f} ms at once — ms per fan-out",
        "t1": torch_cases.title(cfg),
    }


class Target(NamedTuple):
    """One row of the performance targets: asyncfork's row ÷ the scenario's reference."""

    scenario: str
    what: str
    to: str
    limit: dict[str, float]  # loop kind -> the highest ratio that meets the target
    pinned: bool  # checked on the pinned run (thread-crossing scenarios)
    # By name, when not the scenario's target and reference rows (the eager rows).
    row_name: str = ""
    ref_name: str = ""

    def row(self, result: Result) -> dict[str, Any] | None:
        name = self.row_name
        return row_of(result, lambda x: x["name"] == name if name else x["target"])

    def ref(self, result: Result) -> dict[str, Any] | None:
        name = self.ref_name
        return row_of(result, lambda x: x["name"] == name if name else x["ref"])


def _both(limit: float) -> dict[str, float]:
    return dict.fromkeys(LOOPS, limit)


# The targets, as median ratios in one run on the same loop kind.
TARGETS = (
    Target(
        "s1",
        "fork + await one coroutine",
        "asyncio create_task + await",
        {"asyncio": 1.3, "uvloop": 1.45},
        False,
    ),
    Target(
        "s2",
        "1000 forks in a group, then join",
        "asyncio TaskGroup",
        {"asyncio": 1.2, "uvloop": 1.5},
        False,
    ),
    Target(
        "s3",
        "fib tree (implicit scopes)",
        "fib with asyncio TaskGroup",
        {"asyncio": 1.15, "uvloop": 1.3},
        False,
    ),
    Target(
        "s4",
        "sync thread: fork + wait one",
        "run_coroutine_threadsafe().result()",
        _both(1.0),
        True,
    ),
    Target("s5", "sync thread: fork 1000, wait all", "run_coroutine_threadsafe", _both(0.6), True),
    Target("s6a", "async: 1000 sync forks, then await", "loop.run_in_executor", _both(1.1), True),
    Target(
        "s1",
        "fork + await one coroutine, eager",
        "asyncio create_task + await, eager task factory",
        _both(1.8),
        False,
        row_name="asyncfork fork.options(eager=True)",
        ref_name="asyncio create_task (eager task factory)",
    ),
    Target(
        "s3",
        "fib tree, eager",
        "fib with asyncio TaskGroup, eager task factory",
        _both(1.8),
        False,
        row_name="asyncfork fork.options(eager=True) + await",
        ref_name="asyncio TaskGroup (eager task factory)",
    ),
    Target("s7", "memory per pending fork", "a pending asyncio Task", _both(1.35), False),
    Target(
        "d1",
        "Dask: n forks, then wait all",
        "client.submit xn, then client.gather",
        _both(1.1),
        False,
        row_name=D1_ROW,
        ref_name=D1_REF,
    ),
    Target(
        "d2",
        "Dask: fork + wait one",
        "client.submit(f).result()",
        _both(1.1),
        False,
        row_name=D2_ROW,
        ref_name=D2_REF,
    ),
)
# Scenario 8: asyncfork's group ÷ asyncio.TaskGroup, per fork, at the largest n (10⁶ in a
# full run); and the traced memory still held after it, against TaskGroup's.
S8_TARGET = _both(1.2)
S8_TARGET_N = 1_000_000
S8_HELD_SLACK = 64 * 1024  # bytes held after the group beyond TaskGroup's


def _limit_text(limit: dict[str, float]) -> str:
    values = [limit[loop] for loop in LOOPS]
    if len(set(values)) == 1:
        return f"≤ {values[0]}"
    return " / ".join(f"≤ {v}" for v in values)


def _cfg(data: Result) -> Config:
    return QUICK if data["mode"] == "quick" else FULL


def _fmt_time(v: float) -> str:
    us = v * 1e6
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def _fmt(v: float, scenario: str) -> str:
    return f"{v:,.0f}" if scenario == "s7" else _fmt_time(v)


def _columns(results: list[Result]) -> list[Result]:
    # pinned columns first (the stable basis for the ratios), asyncio before uvloop
    return sorted(results, key=lambda r: (not r["pinned"], r["loop"] != "asyncio"))


def _col_name(r: Result, scenario: str) -> str:
    if scenario in THREAD:
        return f"{r['loop']}, {'pinned to CPU ' + str(r['cpu']) if r['pinned'] else 'unpinned'}"
    return r["loop"]


def ref_value(result: Result) -> float | None:
    for row in result["rows"]:
        if row["ref"]:
            return row["median"]  # type: ignore[no-any-return]
    return None


def ratio_spread(row: dict[str, Any], ref: dict[str, Any]) -> tuple[float, float] | None:
    """The lowest and highest of the row's samples over the reference's taken with them.

    Samples are interleaved (one pass of every row, then the next), so the i-th sample of
    the row and of its reference saw the same machine state: their ratio is one
    measurement of the ratio, and the range of those shows the run-to-run drift.
    """
    pairs = [
        (value, base)
        for value, base in zip(row.get("samples", ()), ref.get("samples", ()), strict=False)
        if base
    ]
    if len(pairs) < 2:
        return None
    ratios = [value / base for value, base in pairs]
    return min(ratios), max(ratios)


def row_of(result: Result, pred: Any) -> dict[str, Any] | None:
    for row in result["rows"]:
        if pred(row):
            return row  # type: ignore[no-any-return]
    return None


def scenario_table(scenario: str, results: list[Result]) -> list[str]:
    cols = _columns(results)
    names: list[str] = []
    for r in cols:
        for row in r["rows"]:
            if row["name"] not in names:
                names.append(row["name"])
    head = ["implementation"]
    for r in cols:
        head += [_col_name(r, scenario), "×"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for name in names:
        cells = []
        label = name
        for r in cols:
            row = row_of(r, lambda x, name=name: x["name"] == name)
            ref = ref_value(r)
            if row is None:
                cells += ["—", ""]
            elif row["error"]:
                cells += ["**ERROR**", ""]
                notes.append(f"{name} ({_col_name(r, scenario)}): {row['error']}")
            elif row["na"]:
                cells += ["n/a", ""]
                if f"n/a: {name}: {row['na']}" not in notes:
                    notes.append(f"n/a: {name}: {row['na']}")
            else:
                v = row["median"]
                ratio = f"{v / ref:.2f}" if ref else ""
                cells += [_fmt(v, scenario), ratio]
            if row is not None and row["ref"]:
                label = f"{name} *(reference)*"
            if row is not None and row["target"] and name.startswith("asyncfork"):
                label = f"**{name}**"
        lines.append("| " + " | ".join([label, *cells]) + " |")
    lines.append("")
    for n in notes:
        lines.append(f"- {n}")
    if notes:
        lines.append("")
    return lines


def speedup_table(results: list[Result]) -> list[str]:
    """Scenario D3: each row's time per fan-out, and its speed-up over the threads row
    (the reference) taken in the same run: the reference's median over the row's."""
    lines = [
        "| loop | implementation | ms per fan-out | speed-up over threads |",
        "|---|---|---|---|",
    ]
    for r in _columns(results):
        ref = ref_value(r)
        for row in r["rows"]:
            name = f"{row['name']} *(reference)*" if row["ref"] else row["name"]
            if row["error"] or row["median"] is None:
                lines.append(f"| {r['loop']} | {name} | **ERROR** | |")
                continue
            speedup = f"{ref / row['median']:.2f}×" if ref else "—"
            lines.append(f"| {r['loop']} | {name} | {row['median'] * 1e3:,.1f} | {speedup} |")
    lines.append("")
    return lines


def _s8_rows(result: Result) -> dict[str, dict[int, dict[str, Any]]]:
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for row in result["rows"]:
        label, n = row["name"].rsplit(" n=", 1)
        by.setdefault(label, {})[int(n)] = row
    return by


def scaling_table(results: list[Result]) -> list[str]:
    lines = [
        "| loop | implementation | n | µs per fork | × its n=10³ | × TaskGroup | peak bytes/fork "
        "| bytes held after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in _columns(results):
        by = _s8_rows(r)
        tg = by.get("asyncio TaskGroup", {})
        for label, sizes in by.items():
            base = sizes[min(sizes)]["median"]
            for n, row in sorted(sizes.items()):
                if row["error"] or row["median"] is None:
                    lines.append(f"| {r['loop']} | {label} | {n:,} | **ERROR** | | | | |")
                    continue
                v = row["median"]
                tg_v = tg.get(n, {}).get("median")
                ex = row["extra"]
                peak = f"{ex['peak_bytes_per_fork']:,.0f}" if ex else "—"
                after = f"{ex['after_bytes']:,.0f}" if ex else "—"
                vs_tg = f"{v / tg_v:.2f}" if tg_v else "—"
                lines.append(
                    f"| {r['loop']} | {label} | {n:,} | {_fmt_time(v)} | {v / base:.2f} | "
                    f"{vs_tg} | {peak} | {after} |"
                )
    lines += [
        "",
        "Bytes held after: traced bytes still allocated once the group has finished and gc has"
        " run. A value near 32 MiB at n=10⁶ is asyncio's own registry of all tasks (a WeakSet"
        " whose table keeps its grown size), charged to whichever row grew it first in the"
        " process; it is not memory of asyncfork's.",
        "",
    ]
    return lines


def _n_text(n: int) -> str:
    """10⁶ for a power of ten, else 1,500."""
    e = len(str(n)) - 1
    if n == 10**e and e > 1:
        return "10" + str(e).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{n:,}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _ratio_cell(ratio: float, limit: float, suffix: str = "") -> str:
    cell = f"{ratio:.2f}" if ratio <= limit else f"**{ratio:.2f}**"
    return cell + suffix


def target_table(data: Result) -> list[str]:
    by = _by_scenario(data)
    lines = [
        f"| scenario | ratio to | target ({' / '.join(LOOPS)}) | {' | '.join(LOOPS)} | met? |",
        "|---|---|---|" + "---|" * len(LOOPS) + "---|",
    ]
    for t in TARGETS:
        if t.scenario not in by:  # not run (--only): nothing to check
            continue
        cells = []
        ok = True
        na = ""
        for loop in LOOPS:
            ratios = {}
            spreads = {}
            for r in by.get(t.scenario, []):
                if r["loop"] != loop:
                    continue
                row = t.row(r)
                ref_row = t.ref(r)
                if row and row["na"]:
                    na = row["na"]
                ref = ref_row["median"] if ref_row else None
                if row and row["median"] and ref and ref_row:
                    ratios[r["pinned"]] = row["median"] / ref
                    spreads[r["pinned"]] = ratio_spread(row, ref_row)
            main = ratios.get(t.pinned)
            if main is None:
                cells.append("n/a" if na else "—")
                ok = False
                continue
            ok = ok and main <= t.limit[loop]
            spread = spreads.get(t.pinned)
            extra = f" [{spread[0]:.2f}–{spread[1]:.2f}]" if spread else ""
            if t.pinned and False in ratios:
                extra += f" (unpinned {ratios[False]:.2f})"
            cells.append(_ratio_cell(main, t.limit[loop], extra))
        basis = " (pinned)" if t.pinned else ""
        met = f"n/a: {na}" if na and not ok else _met(ok)
        lines.append(
            f"| {t.what}{basis} | {t.to} | {_limit_text(t.limit)} | {' | '.join(cells)} | {met} |"
        )
    if "s8" in by:
        lines += _scaling_targets(by["s8"])
    lines.append("")
    return lines


def _scaling_targets(results: list[Result]) -> list[str]:
    """Scenario 8's two rows: time per fork and memory held after, at the largest n."""
    time_cells: dict[str, str] = {}
    mem_cells: dict[str, str] = {}
    time_n: dict[str, int] = {}
    mem_n: dict[str, int] = {}
    ok_t = ok_m = True
    for loop in LOOPS:
        r = next((x for x in results if x["loop"] == loop), None)
        by = _s8_rows(r) if r else {}
        af_rows = by.get("asyncfork group", {})
        tg_rows = by.get("asyncio TaskGroup", {})
        timed = [
            n
            for n in af_rows
            if af_rows[n]["median"] and tg_rows.get(n, {}).get("median") is not None
        ]
        if not af_rows or len(timed) < len(af_rows):  # a row at some n failed
            time_cells[loop] = "—"
            ok_t = False
        else:
            n = time_n[loop] = max(timed)
            ratio = af_rows[n]["median"] / tg_rows[n]["median"]
            ok_t = ok_t and ratio <= S8_TARGET[loop]
            time_cells[loop] = _ratio_cell(ratio, S8_TARGET[loop])
        traced = [
            n
            for n in af_rows
            if "after_bytes" in (af_rows[n]["extra"] or {})
            and "after_bytes" in (tg_rows.get(n, {}).get("extra") or {})
        ]
        if not traced:
            mem_cells[loop] = "—"
            ok_m = False
            continue
        n = mem_n[loop] = max(traced)
        after = af_rows[n]["extra"]["after_bytes"]
        tg_after = tg_rows[n]["extra"]["after_bytes"]
        # asyncio's global task WeakSet keeps its grown table (32 MiB at 10^6) and
        # charges it to whichever row grows it first: held memory counts as a leak
        # only beyond what a TaskGroup of the same size leaves held.
        held_ok = after < max(tg_after, 0) + S8_HELD_SLACK
        ok_m = ok_m and held_ok
        cell = f"{after:,.0f} B (TaskGroup {tg_after:,.0f} B)"
        mem_cells[loop] = cell if held_ok else f"**{cell}**"

    def label(ns: dict[str, int], what: str, how: str) -> tuple[str, dict[str, str]]:
        # the row names the n it was checked at; a loop checked at another n says so
        top = max(ns.values(), default=S8_TARGET_N)
        note = ""
        if top != S8_TARGET_N:
            note = f" (largest n {how} in this run; the target is for {_n_text(S8_TARGET_N)})"
        suffix = {loop: f" (n={_n_text(n)})" for loop, n in ns.items() if n != top}
        return f"{_n_text(top)} {what}{note}", suffix

    t_label, t_suffix = label(time_n, "forks in one group, per fork", "timed")
    m_label, m_suffix = label(mem_n, "forks in one group: memory held after", "traced")
    t_row = [time_cells[loop] + t_suffix.get(loop, "") for loop in LOOPS]
    m_row = [mem_cells[loop] + m_suffix.get(loop, "") for loop in LOOPS]
    return [
        f"| {t_label} | asyncio TaskGroup at the same n | {_limit_text(S8_TARGET)} | "
        f"{' | '.join(t_row)} | {_met(ok_t)} |",
        f"| {m_label} | asyncio TaskGroup at the same n (baseline) | "
        f"< +{S8_HELD_SLACK // 1024} KiB | {' | '.join(m_row)} | {_met(ok_m)} |",
    ]


def _by_scenario(data: Result) -> dict[str, list[Result]]:
    by: dict[str, list[Result]] = {}
    for r in data["results"]:
        by.setdefault(r["scenario"], []).append(r)
    return by


def markdown(data: Result) -> str:
    cfg = _cfg(data)
    m = data["machine"]
    t = titles(cfg)
    lines = [
        f"# asyncfork benchmarks ({data['mode']} run)",
        "",
        f"- date: {m['date']}; total run time {data['elapsed_s']:.0f} s",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['platform']}",
        f"- asyncfork at git {m.get('git', 'unknown')}",
        f"- Python {m['python']} ({m['implementation']}); "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- median of {cfg.repeats} interleaved samples per row"
        + (" (no warm-up pass)" if cfg.quick else " after a warm-up pass")
        + f"; scenario 7: one traced pass; scenario 8: n ≥ {cfg.big_n:,} takes "
        f"{cfg.big_samples} time sample(s), and the traced memory pass runs for n ≤ "
        f"{cfg.s8_memory_max:,}; × = ratio to the scenario's reference on the same loop and "
        "pinning",
        "- trio rows run on trio's own loop; unsync rows on unsync's loop thread (a uvloop in "
        "the uvloop columns); lower is better",
        "",
        "## Performance targets (asyncfork row ÷ reference)",
        "",
        "Each ratio is the median row over the median reference; [low–high] is the range of "
        "the ratios of the samples taken together (the run-to-run spread).",
        "",
        *target_table(data),
    ]
    by = _by_scenario(data)
    for scenario in ("s1", "s2", "s3", "s4", "s5", "s6a", "s6b", "s7"):
        if scenario in by:
            lines += [f"## {t[scenario]}", "", *scenario_table(scenario, by[scenario])]
    if "s8" in by:
        lines += [f"## {t['s8']}", "", *scaling_table(by["s8"])]
    if any(d in by for d in ("d1", "d2", "d3")):
        lines += [
            "## Dask",
            "",
            "One LocalCluster for the whole run (2 worker processes of 1 thread, 127.0.0.1, "
            "from `asyncfork.dask.local_cluster`), started outside the timings; every "
            "submission impure (`pure=False`); unpinned. D1 and D2 are measured with "
            "asyncfork's loops of both kinds; "
            + (
                f"{cfg.dask_samples} samples per row."
                if cfg.dask_samples
                else f"{cfg.repeats} samples per row."
            ),
            "",
        ]
    for scenario in ("d1", "d2"):
        if scenario in by:
            lines += [f"## {t[scenario]}", "", *scenario_table(scenario, by[scenario])]
    if "d3" in by:
        lines += [f"## {t['d3']}", "", *speedup_table(by["d3"])]
    if "t1" in by:
        lines += [f"## {t['t1']}", "", *torch_cases.speedup_table(by["t1"])]
    if data["failures"]:
        lines += ["## Failures", "", *[f"- {f}" for f in data["failures"]], ""]
    return "\n".join(lines)
