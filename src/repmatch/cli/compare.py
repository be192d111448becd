"""``repmatch compare``: compare the layers of two networks from activation or reduction files."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from .._validate import check_eps_grid, check_finite, check_positive_int
from ..protocol import AUTHORS_EPS as DEFAULT_EPS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two networks' layers (subspace match and other measures)",
        description=(
            "Compare layers of two networks. A and B are .npy or .npz activation files of the two networks "
            "(rows = the same inputs in the same order, columns = neurons; for .npz every array name present "
            "in both files is a layer compared with its twin). Alternatively give a single reductions file "
            "written by `repmatch extract` (it already holds both networks), or --example for the activations "
            "that ship with repmatch."
        ),
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="A B (activations) or one reductions file")
    p.add_argument("--example", action="store_true", help="use the example activations shipped with repmatch")
    p.add_argument("--eps", type=float, nargs="+", default=list(DEFAULT_EPS), metavar="EPS",
                   help="ε values for the maximum match (default: the authors' 0.15 0.2 0.25 0.3 0.5)")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="only these layers (default: all common layers)")
    p.add_argument("--simple", action="store_true", help="also find simple matches at every ε (size distribution)")
    p.add_argument("--restarts", type=int, default=None,
                   help="random deletion orders per neuron for --simple (default 0)")
    p.add_argument("--method", choices=("gram", "qr"), default=None,
                   help="reduction for in-memory activations: gram (default; fast, tol 1e-6) or qr (exact matches "
                        "to 1e-10); a reductions file keeps the method it was reduced with")
    p.add_argument("--measures", nargs="+", metavar="NAME",
                   help="measures to compute (default: subspace plus a sensible set; see --list-measures)")
    p.add_argument("--list-measures", action="store_true", help="list the available measures and exit")
    p.add_argument("--permutations", type=int, default=0, metavar="N",
                   help="permutation null with N row shuffles beside every scalar (needs activation files)")
    p.add_argument("--alphas", type=float, nargs="+", metavar="A", help="LASSO penalties for --measures sparse")
    p.add_argument("--n-clusters", type=int, metavar="K", help="number of clusters for --measures clusters")
    p.add_argument("--mi-bins", type=int, metavar="B", help="bins per axis for --measures mi (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed for randomised parts (restarts, nulls)")
    p.add_argument("--json", metavar="OUT", help="also write every number as JSON to OUT")
    p.set_defaults(func=run)


def example_paths() -> tuple[str, str]:
    """Paths of the example activation files shipped with the package."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
    return os.path.join(here, "example_seed0.npz"), os.path.join(here, "example_seed1.npz")


def _load_inputs(args):
    """Return (list of (layer, X, Y, reduction)), description)."""
    from .. import io
    from ..reduce import Reduction

    files = list(args.files)
    if args.example:
        if files:
            raise ValueError("give either FILE arguments or --example, not both")
        files = list(example_paths())
    if len(files) == 1:
        if not io.is_reduction_file(files[0]):
            if not os.path.exists(files[0]):
                raise FileNotFoundError(f"FILE: no such file: {files[0]}")
            io.load_activations(files[0], "FILE")  # a damaged file: say what is wrong with it
            raise ValueError(
                f"FILE: {files[0]} is not a reductions file; to compare activations give two files A B"
            )
        reds, meta = io.load_reductions(files[0], "FILE")
        _check_reduction_flags(args, files[0], reds)
        items = [(name, None, None, r) for name, r in reds.items()]
        return items, {"reductions": os.path.abspath(files[0]), "metadata": meta}
    if len(files) != 2:
        raise ValueError(f"expected two activation files A B (or one reductions file), got {len(files)} file(s)")
    a = io.load_activations(files[0], "A")
    b = io.load_activations(files[1], "B")
    if len(a) == 1 and len(b) == 1 and (files[0].endswith(".npy") or files[1].endswith(".npy")):
        # two single-layer files: compare them whatever their names
        (ka, va), (kb, vb) = next(iter(a.items())), next(iter(b.items()))
        a, b = {ka: va}, {ka: vb}
    common = [k for k in a if k in b]
    if not common:
        raise ValueError(f"A and B share no layer name: A has {sorted(a)}, B has {sorted(b)}")
    items = []
    for name in common:
        X, Y = a[name], b[name]
        if X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"layer {name!r}: A has {X.shape[0]} rows and B has {Y.shape[0]}; rows must be the same inputs"
            )
        for arr, side, path in ((X, "A", files[0]), (Y, "B", files[1])):
            check_finite(arr, f"{side}: layer {name!r} of {path}")
        items.append((name, X, Y, Reduction.from_arrays(X, Y, method=args.method or "gram")))
    return items, {"A": os.path.abspath(files[0]), "B": os.path.abspath(files[1])}


def _check_reduction_flags(args, path, reds) -> None:
    """Options that need rows or that fix the reduction cannot apply to a reductions file: errors."""
    if args.permutations and args.permutations > 0:
        raise ValueError(
            f"--permutations: a permutation null shuffles rows, but {path} is a reductions file (moments only, no "
            "rows); extract with --save-npz A.npz B.npz and compare those two files")
    methods = sorted({r.method for r in reds.values()})
    if args.method is not None and methods != [args.method]:
        raise ValueError(
            f"--method {args.method}: {path} holds {'/'.join(methods)} reductions; the method is chosen when "
            f"reducing (repmatch extract --method {args.method}), not when comparing")


def _check_options(args, measures) -> None:
    """Option values and combinations, checked before any file is read."""
    from ._checks import non_negative

    non_negative(args.seed, "--seed")
    non_negative(args.permutations, "--permutations")
    if args.restarts is not None:
        non_negative(args.restarts, "--restarts")
        if not args.simple:
            raise ValueError("--restarts applies to simple matches only; add --simple (or drop --restarts)")
    for option, value, measure in (("--alphas", args.alphas, "sparse"), ("--n-clusters", args.n_clusters, "clusters"),
                                   ("--mi-bins", args.mi_bins, "mi")):
        if value is not None and measure not in measures:
            raise ValueError(f"{option} applies to --measures {measure}, which is not among the measures computed "
                             f"({' '.join(measures)})")
    if args.alphas is not None:
        bad = [a for a in args.alphas if not (np.isfinite(a) and a >= 0)]
        if bad:
            raise ValueError(f"--alphas: penalties must be finite and >= 0, got {bad}")
    if args.n_clusters is not None:
        check_positive_int(args.n_clusters, "--n-clusters", minimum=1)
    if args.mi_bins is not None:
        check_positive_int(args.mi_bins, "--mi-bins", minimum=2)
    if args.json:
        from ._checks import output_file

        output_file(args.json, "--json")


def _check_against_data(args, measures, items) -> None:
    """Options that the loaded layers cannot satisfy: errors naming the layer, before any measure runs."""
    from . import _measures

    if any(X is None for _, X, _, _ in items):
        rows = [m for m in measures if m in _measures.NEED_ROWS]
        if rows:
            raise ValueError(
                f"--measures: measure(s) {', '.join(repr(m) for m in rows)} need the activations themselves, but a "
                "reductions file holds only moments; compare two activation files instead (repmatch extract "
                "--save-npz A.npz B.npz)")
    if args.n_clusters is not None and "clusters" in measures:
        for layer, X, Y, r in items:
            n_live = _measures.live_units(X, Y, r)
            if 0 < n_live < args.n_clusters:
                raise ValueError(f"--n-clusters {args.n_clusters}: layer {layer!r} has only {n_live} live "
                                 f"(non-constant) units in both networks together; give at most {n_live} or choose "
                                 "layers with --layers")


def _select_layers(items, wanted):
    if not wanted:
        return items
    names = [it[0] for it in items]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"--layers: unknown layer(s) {missing}; available: {names}")
    return [it for it in items if it[0] in wanted]


def _subspace(layer, X, Y, r, eps, args, lines):
    import repmatch

    curve = repmatch.similarity_curve(r, eps=eps)
    null = None
    if args.permutations and X is not None:
        null = repmatch.similarity_curve_null(X, Y, eps=eps, n_permutations=args.permutations,
                                              method=args.method, rng=args.seed)
    out = {"similarity_curve": curve.to_dict(), "samples_per_neuron": r.n_samples / (r.n_x + r.n_y)}
    lines.append(
        f"  subspace match  (n_x={r.n_x}, n_y={r.n_y}, samples={r.n_samples}, "
        f"samples/neuron={r.n_samples / (r.n_x + r.n_y):.1f}, tol={curve.tol:g})"
    )
    lines.append(f"    dead neurons: X {len(curve.dead_x)}, Y {len(curve.dead_y)}    max_epsilon: {curve.max_epsilon:.4f}")
    lines.append("    eps      similarity   |x|    |y|"
                 + ("    null mean ± sd   p" if null is not None else "")
                 + ("    simple matches (count; sizes |x|+|y|)" if args.simple else ""))
    simple = []
    if null is not None:
        out["permutation_null"] = null.to_dict()
    for k, (e, s, sx, sy) in enumerate(zip(curve.eps, curve.similarity, curve.size_x, curve.size_y)):
        row = f"    {e:<8g} {s:<12.4f} {sx:<6d} {sy:<6d}"
        if null is not None:
            row += f"    {null.null_mean[k]:.4f} ± {null.null_std[k]:.4f}  {null.p_value[k]:.3g}"
        if args.simple:
            sm = repmatch.simple_matches(r, eps=float(e), restarts=args.restarts, rng=args.seed)
            simple.append(sm.to_dict())
            sizes = sm.sizes
            desc = "-" if len(sm) == 0 else f"{len(sm)}; median {int(np.median(sizes))}, max {int(sizes.max())}"
            row += f"    {desc}"
        lines.append(row)
    if args.simple:
        out["simple_matches"] = simple
    return out


def run(args) -> int:
    from . import _measures

    if args.list_measures:
        print("subspace" + "".join(f"\n{m}" for m in _measures.AVAILABLE))
        return 0
    eps = check_eps_grid([float(e) for e in args.eps], "--eps").tolist()
    measures = list(args.measures) if args.measures else ["subspace", *_measures.DEFAULT]
    unknown = [m for m in measures if m != "subspace" and m not in _measures.AVAILABLE]
    if unknown:
        raise ValueError(f"--measures: unknown measure(s) {unknown}; available: {['subspace', *_measures.AVAILABLE]}")
    _check_options(args, measures)
    items, source = _load_inputs(args)
    if args.method is None:
        args.method = "gram"
    if args.restarts is None:
        args.restarts = 0
    items = _select_layers(items, args.layers)
    _check_against_data(args, measures, items)
    results = {"source": source, "eps": eps, "measures": measures, "layers": {}}
    meta = source.get("metadata") or {}
    if meta:  # what `repmatch extract` recorded: checkpoints, dataset, conv mode, accuracies...
        shown = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, list)) and len(str(v)) < 200}
        print("reductions: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + "\n")
    options = {"seed": args.seed, "eps": eps, "method": args.method, "permutations": args.permutations,
               "alphas": args.alphas, "n_clusters": args.n_clusters, "n_bins": args.mi_bins}
    caught, undefined = [], []
    for layer, X, Y, r in items:
        lines = [f"layer {layer}"]
        entry = {}
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            for m in measures:
                # A measure that is undefined on this layer (e.g. CKA of a constant layer) is reported as
                # such; the other measures and layers are still computed.
                try:
                    if m == "subspace":
                        entry[m] = _subspace(layer, X, Y, r, eps, args, lines)
                    else:
                        data, mlines = _measures.compute(m, layer, X, Y, r, options)
                        entry[m] = data
                        lines.extend(mlines)
                except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
                    reason = " ".join(str(exc).split()) or type(exc).__name__
                    entry[m] = {"undefined": True, "reason": reason}
                    undefined.append({"layer": layer, "measure": m, "reason": reason})
                    lines.append(f"  {m}: undefined for this layer: {reason}")
        for message in dict.fromkeys(str(warning.message) for warning in w):  # each distinct warning once
            caught.append(f"layer {layer}: {message}")
            lines.append(f"  warning: {message}")
        results["layers"][layer] = entry
        print("\n".join(lines))
        print()
    results["warnings"] = caught
    results["undefined"] = undefined
    for u in undefined:
        print(f"repmatch compare: warning: {u['measure']} is undefined for layer {u['layer']!r}: {u['reason']}",
              file=sys.stderr)
    if args.json:
        _write_json(args.json, results)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _write_json(path, obj) -> None:
    from .._atomic import atomic_write_json

    atomic_write_json(path, obj, default=_json_default)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
