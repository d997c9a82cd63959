"""``af.tree()``: the forks running now, as a tree, for debugging a hang."""

# The package's modules share each other's private names by design.
# pyright: reportPrivateUsage=false

from __future__ import annotations


def tree(*, show: bool = True) -> str:
    """The forks running now as a tree with names, states and ages; printed unless show=False."""
    raise NotImplementedError
