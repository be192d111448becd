"""``repmatch report``: rebuild the tables, figures and report.html of a reproduce run from results.json."""

from __future__ import annotations

import os
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


def check_shape(doc: dict, path: str) -> None:
    """The parts of results.json that the report reads, with the first misshapen entry named."""

    def bad(where, what):
        raise ValueError(f"RUN: {path} does not have the shape `repmatch reproduce` writes: {where} {what}")

    kinds = {"config": dict, "seeds": list, "pairs": list, "eps_grid": list, "authors_eps": list, "layers": list,
             "results": list, "networks": dict, "provenance": dict, "question": str}
    for key, kind in kinds.items():
        if key not in doc:
            bad(f"'{key}'", "is missing")
        if not isinstance(doc[key], kind):
            bad(f"'{key}'", f"is a {type(doc[key]).__name__}, expected a {kind.__name__}")
    names = []
    for i, layer in enumerate(doc["layers"]):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
            bad(f"layers[{i}]", "is not an object with a 'name'")
        names.append(layer["name"])
    if not names:
        bad("'layers'", "is empty")
    if len(doc["results"]) != len(doc["pairs"]) or not doc["pairs"]:
        bad("'results'", f"has {len(doc['results'])} entries for {len(doc['pairs'])} pairs of seeds")
    for i, pair in enumerate(doc["results"]):
        if not isinstance(pair, dict) or not isinstance(pair.get("layers"), dict):
            bad(f"results[{i}]", "is not an object with 'layers'")
        for name in names:
            if not isinstance(pair["layers"].get(name), dict):
                bad(f"results[{i}].layers", f"has no entry for layer {name!r}")


def run(args) -> int:
    from .._rundir import RunLock
    from ..report.build import build_report
    from ..io import load_results

    path = os.path.join(args.run_dir, "results.json")
    doc = load_results(args.run_dir)
    check_shape(doc, path)
    with RunLock(args.run_dir, option="RUN") as lock:  # not while a reproduce run writes there
        if lock.readonly:
            raise ValueError(f"RUN: cannot write in {args.run_dir} (read-only); copy it to rebuild the report")
        try:
            page = build_report(args.run_dir, results=doc)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"RUN: {path} does not have the shape `repmatch reproduce` writes "
                             f"({type(exc).__name__}: {exc} while building the report)") from None
    print(f"wrote {page}", file=sys.stderr)
    return 0
