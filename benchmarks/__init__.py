"""Benchmarks: asyncfork against asyncio, anyio, trio, unsync, asyncer and asgiref.

Run ``python -m benchmarks`` (full, a few minutes) or ``python -m benchmarks --quick``
(under a minute; CI's smoke test). Every scenario runs in its own subprocess per loop
type (asyncio, uvloop) and, for the thread-crossing scenarios, once pinned to one CPU
and once unpinned. Results go to ``benchmarks/results/latest.{md,json}`` and PNG plots.
See ``docs/benchmarks.md``.
"""
