"""What installing something process-wide returns: a handle to remove it, or a block."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Handle:
    """Stays installed until :meth:`remove`, or until the ``with`` / ``async with`` block
    that holds it ends. Subclasses say what ``remove`` uninstalls."""

    __slots__ = ()

    def remove(self) -> bool:
        """Uninstall; False if it was gone already."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
