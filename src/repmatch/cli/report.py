"""``repmatch report``: rebuild the tables, figures and report.html of a reproduce run from results.json."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild report.html, tables and figures of a `repmatch reproduce` run from its results.json",
        description="Read RUN/results.json (written by `repmatch reproduce`) and write RUN/tables/*.csv, "
                    "RUN/figures/*.png|svg and RUN/report.html. Needs matplotlib, not PyTorch.",
    )
    p.add_argument("run_dir", metavar="RUN", help="run directory holding results.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report.build import build_report

    page = build_report(args.run_dir)
    print(f"wrote {page}", file=sys.stderr)
    return 0
