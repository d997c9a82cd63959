"""Markdown tables, and the check against docs/design.md's performance targets."""
# ruff: noqa: RUF001  (the multiplication sign in the tables is on purpose)

from __future__ import annotations

from typing import Any

from ._common import FULL, QUICK, Config

Result = dict[str, Any]

THREAD = ("s4", "s5", "s6a", "s6b")


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
    }


# (scenario, what, ratio to, target, pinned)
TARGETS = (
    ("s1", "fork + await one coroutine", "asyncio create_task + await", 1.25, False),
    ("s2", "1000 forks in a group, then join", "asyncio TaskGroup", 1.25, False),
    ("s3", "fib tree (implicit scopes)", "fib with asyncio TaskGroup", 1.25, False),
    ("s4", "sync thread: fork + wait one", "run_coroutine_threadsafe().result()", 1.0, True),
    ("s5", "sync thread: fork 1000, wait all", "run_coroutine_threadsafe", 0.6, True),
    ("s6a", "async: 1000 sync forks, then await", "loop.run_in_executor", 1.1, True),
    ("s7", "memory per pending fork", "a pending asyncio Task", 1.3, False),
)


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


def target_table(data: Result) -> list[str]:
    by = _by_scenario(data)
    lines = [
        "| scenario | ratio to | target | asyncio | uvloop | met? |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, what, to, target, pinned in TARGETS:
        cells = []
        ok = True
        for loop in ("asyncio", "uvloop"):
            ratios = {}
            for r in by.get(scenario, []):
                if r["loop"] != loop:
                    continue
                row = row_of(r, lambda x: x["target"])
                ref = ref_value(r)
                if row and row["median"] and ref:
                    ratios[r["pinned"]] = row["median"] / ref
            main = ratios.get(pinned)
            if main is None:
                cells.append("—")
                ok = False
                continue
            ok = ok and main <= target
            cell = f"{main:.2f}"
            if pinned and False in ratios:
                cell += f" (unpinned {ratios[False]:.2f})"
            cells.append(cell)
        basis = " (pinned)" if pinned else ""
        lines.append(
            f"| {what}{basis} | {to} | ≤ {target} | {cells[0]} | {cells[1]} | "
            f"{'yes' if ok else '**no**'} |"
        )
    for loop_results in [by.get("s8", [])]:
        cells_t, cells_m, ok_t, ok_m = [], [], True, True
        for loop in ("asyncio", "uvloop"):
            r = next((x for x in loop_results if x["loop"] == loop), None)
            sizes = _s8_rows(r).get("asyncfork group", {}) if r else {}
            if not sizes or any(s["median"] is None for s in sizes.values()):
                cells_t.append("—")
                cells_m.append("—")
                ok_t = ok_m = False
                continue
            lo, hi = min(sizes), max(sizes)
            ratio = sizes[hi]["median"] / sizes[lo]["median"]
            ok_t = ok_t and ratio <= 1.5
            cells_t.append(f"{ratio:.2f} (n={hi:,})")
            traced = [n for n, s in sizes.items() if "after_bytes" in s["extra"]]
            if not traced:
                cells_m.append("—")
                ok_m = False
                continue
            top = max(traced)
            after = sizes[top]["extra"]["after_bytes"]
            tg_row = _s8_rows(r).get("asyncio TaskGroup", {}).get(top, {})
            tg_after = tg_row.get("extra", {}).get("after_bytes", 0.0)
            # asyncio's global task WeakSet keeps its grown table (32 MiB at 10^6) and
            # charges it to whichever row grows it first: held memory counts as a leak
            # only beyond what a TaskGroup of the same size leaves held.
            ok_m = ok_m and after < max(tg_after, 0) + 64 * 1024
            cells_m.append(f"{after:,.0f} B (TaskGroup {tg_after:,.0f} B) (n={top:,})")
        lines.append(
            f"| largest group, per-fork time | per-fork time at n=10³ | ≤ 1.5 | {cells_t[0]} | "
            f"{cells_t[1]} | {'yes' if ok_t else '**no**'} |"
        )
        lines.append(
            f"| memory held after the largest group | baseline (TaskGroup's) | < +64 KiB | "
            f"{cells_m[0]} | {cells_m[1]} | {'yes' if ok_m else '**no**'} |"
        )
    lines.append("")
    return lines


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
        *target_table(data),
    ]
    by = _by_scenario(data)
    for scenario in ("s1", "s2", "s3", "s4", "s5", "s6a", "s6b", "s7"):
        if scenario in by:
            lines += [f"## {t[scenario]}", "", *scenario_table(scenario, by[scenario])]
    if "s8" in by:
        lines += [f"## {t['s8']}", "", *scaling_table(by["s8"])]
    if data["failures"]:
        lines += ["## Failures", "", *[f"- {f}" for f in data["failures"]], ""]
    return "\n".join(lines)
