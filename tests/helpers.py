"""Small helpers shared by the test modules."""

from __future__ import annotations

import asyncio

# Seconds: the bound on every blocking call or await that should return promptly, so that a
# deadlock fails the test instead of hanging it.
T = 5.0


async def forever() -> None:
    """Await something that never happens (until cancelled)."""
    await asyncio.get_running_loop().create_future()
