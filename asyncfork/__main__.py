"""The command line: ``python -m asyncfork demo [-o DIR]``, and
``python -m asyncfork trace [-o DIR] script.py [args...]``."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback
from typing import NoReturn

USAGE = "python -m asyncfork demo [-o DIR] | trace [-o DIR] script.py [args...]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Always the whole usage line: it names both commands.
        print(f"usage: {USAGE}\npython -m asyncfork: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m asyncfork", usage=USAGE)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser(
        "demo", usage="python -m asyncfork demo [-o DIR]", help="see asyncfork at work (about 5 s)"
    )
    demo.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default=None,
        help="keep the trace of part 4 (trace.html, trace.json) in DIR "
        "(default: a temporary folder, removed at the end)",
    )
    trace = commands.add_parser(
        "trace",
        usage="python -m asyncfork trace [-o DIR] script.py [args...]",
        help="run a script under af.trace(); write trace.json and trace.html, print the summary",
    )
    trace.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default="asyncfork-trace",
        help="where to write trace.json and trace.html (default: ./asyncfork-trace)",
    )
    trace.add_argument("script", help="the Python script to run, as `python script.py` would")
    trace.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    return parser


def main(argv: list[str]) -> int:
    options = _parser().parse_args(argv)
    if options.command == "demo":
        from ._demo import main as demo

        demo(options.output)
        return 0
    return trace_script(options.script, options.args, options.output)


def trace_script(script: str, args: list[str], directory: str) -> int:
    """Run ``script`` as ``__main__`` under ``af.trace()``, then write and summarise the trace.

    The trace is written however the script ends. Returns the exit code: the
    script's ``sys.exit`` code, 1 if it raised (130 for Ctrl-C), else 0.
    """
    import asyncfork as af

    if not os.path.isfile(script):
        print(f"python -m asyncfork trace: no such script: {script}", file=sys.stderr)
        return 2
    code = 0
    saved_argv = sys.argv
    sys.argv = [script, *args]
    script_dir = os.path.dirname(os.path.abspath(script))
    sys.path.insert(0, script_dir)  # as `python script.py` makes its imports work
    try:
        with af.trace() as t:
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit as exc:
                code = _exit_code(exc)
            except BaseException as exc:
                _print_traceback(exc)
                code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            # Background forks still running are drained as at interpreter exit, so
            # the trace holds the whole program.
            try:
                af.shutdown()
            except KeyboardInterrupt:
                code = code or 130
    finally:
        sys.argv = saved_argv
        if script_dir in sys.path:
            sys.path.remove(script_dir)
    sys.stdout.flush()
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "trace.json")
    html_path = os.path.join(directory, "trace.html")
    written = [(json_path, t.to_chrome_trace(json_path)), (html_path, t.to_html(html_path))]
    print()
    try:
        t.summary()
    except Exception:  # the trace files are written; say so even if the summary fails
        traceback.print_exc()
    for path, ok in written:
        print(f"{'wrote' if ok else 'could not write'} {path}")
    return code


def _print_traceback(exc: BaseException) -> None:
    """Print the traceback as ``python script.py`` would: from the script's frames on."""
    tb = exc.__traceback__
    here = os.path.abspath(__file__)
    while tb is not None and (
        tb.tb_frame.f_globals.get("__name__") == "runpy"
        or os.path.abspath(tb.tb_frame.f_code.co_filename) == here
    ):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _exit_code(exc: SystemExit) -> int:
    """The process exit code ``raise SystemExit(exc.code)`` would give, as Python computes it."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # sys.exit("message") prints it and exits 1
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
