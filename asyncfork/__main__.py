"""``python -m asyncfork demo``: see the package at work."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["demo"] and len(argv) == 1:
        from ._demo import main as demo

        demo()
        return 0
    print("usage: python -m asyncfork demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
