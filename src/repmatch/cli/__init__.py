"""The ``repmatch`` command line: a thin layer over the Python API (no logic of its own).

Each subcommand lives in a module of this package that defines ``add_parser(subparsers)``; the
parser it adds sets ``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order they are listed by ``repmatch --help``.
_MODULES = ("compare", "train", "extract", "reproduce", "report", "scale", "benchmark")


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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ImportError) as exc:  # ImportError: an extra is not installed
        print(f"repmatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"repmatch {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `repmatch compare ... | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
