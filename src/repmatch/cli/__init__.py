"""The ``repmatch`` command line: a thin layer over the Python API (no logic of its own).

Each subcommand lives in a module of this package that defines ``add_parser(subparsers)``; the
parser it adds sets ``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order they are listed by ``repmatch --help``.
_MODULES = ("compare", "train", "extract", "reproduce", "report", "dask_reduce", "benchmark")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="repmatch",
        description="Do two networks trained from different seeds learn the same representation, "
        "and at what granularity?",
    )
    parser.add_argument("--version", action="version", version=f"repmatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def _one_line(text) -> str:
    """Messages are printed on one line, whatever the exception held (tracebacks of dask, torch...)."""
    return " ".join(str(text).split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename is not None:
        # "[Errno 13] Permission denied: 'x'" -> "x: permission denied"; the file first, as everywhere else
        what = exc.strerror or type(exc).__name__
        target = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return f"{target}: {what[:1].lower()}{what[1:]}"
    return str(exc) or type(exc).__name__


def main(argv=None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    from .._validate import RepmatchWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        # repmatch's own warnings (damaged caches recomputed, a stale lock taken over...) as one line
        if issubclass(category, RepmatchWarning):
            print(f"repmatch {args.command}: warning: {_one_line(message)}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        warnings.showwarning = show
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (e.g. `repmatch compare ... | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, ImportError, FloatingPointError) as exc:
        # ValueError: bad input, damaged files (CheckpointError...), a locked run directory; OSError:
        # unreadable or unwritable files, an unreachable scheduler; ImportError: an extra is not
        # installed; FloatingPointError: training diverged
        print(f"repmatch {args.command}: error: {_one_line(_describe(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"repmatch {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
