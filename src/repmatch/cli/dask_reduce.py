"""``repmatch dask-reduce``: reduce stored activations on a dask cluster into a reductions file.

Named after its command (it was ``repmatch.cli.scale``, still importable, deprecated); the engine
it drives is :mod:`repmatch.distributed`."""

from __future__ import annotations

import contextlib
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dask-reduce",
        help="reduce chunked activations (zarr stores or an `extract --save` directory) on a dask cluster",
        description=(
            "Reduce stored activations as a tree of exact merges on a dask cluster and write a reductions file "
            "(read by `repmatch compare OUT`). Either give two zarr stores A B (one layer of each network, rows = "
            "the same inputs in the same order), or --saved DIR written by `repmatch extract --save DIR` (every "
            "layer saved for both networks; all layers are reduced in one parallel job). Runs on the scheduler at "
            "--scheduler ADDRESS, or on a LocalCluster of --workers processes on this machine. Needs "
            "dask[array], distributed and zarr (pip install 'repmatch[dask]')."
        ),
    )
    p.add_argument("stores", nargs="*", metavar="ZARR", help="A B: zarr stores of the two networks' layer")
    p.add_argument("--saved", metavar="DIR", help="a directory written by `repmatch extract --save DIR`")
    p.add_argument("--layers", nargs="+", metavar="NAME",
                   help="with --saved: only these layers; with A B: the layer's name (default: A's file name)")
    p.add_argument("--out", required=True, metavar="NPZ", help="reductions file to write")
    p.add_argument("--method", choices=("gram", "qr"), default="gram", help="reduction method (default gram)")
    p.add_argument("--chunk-rows", type=int, metavar="R",
                   help="rows per task (default: the stored chunks); memory per worker grows with it")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask scheduler (tcp://host:8786)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the --scheduler before giving up (default 10)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the LocalCluster started without --scheduler (default: one per core)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import distributed as dd

    try:
        dd._require_dask()
    except ImportError as exc:
        raise ValueError(str(exc)) from exc
    from ..io import save_reductions

    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers starts a local cluster; it cannot be combined with --scheduler")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be positive, got {args.workers}")
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise ValueError(f"--chunk-rows must be positive, got {args.chunk_rows}")
    if not args.connect_timeout > 0:
        raise ValueError(f"--connect-timeout must be positive, got {args.connect_timeout}")
    from ._checks import output_file

    output_file(args.out, "--out")
    if args.saved:
        if args.stores:
            raise ValueError("give either ZARR stores A B or --saved DIR, not both")
        pairs = _saved_pairs(dd, args.saved, args.layers)
        source = {"saved": os.path.abspath(args.saved)}
    else:
        if len(args.stores) != 2:
            raise ValueError(f"give two zarr stores A B (or --saved DIR), got {len(args.stores)}")
        if args.layers is not None and len(args.layers) != 1:
            raise ValueError("--layers: with stores A B give one name (the layer they hold)")
        name = args.layers[0] if args.layers else os.path.splitext(os.path.basename(os.path.normpath(args.stores[0])))[0]
        pairs = {name: (args.stores[0], args.stores[1])}
        source = {"A": os.path.abspath(args.stores[0]), "B": os.path.abspath(args.stores[1])}
    with contextlib.ExitStack() as stack:
        # connect first: an unreachable scheduler is an error after --connect-timeout seconds, before any work
        try:
            client = stack.enter_context(dd.get_client(args.scheduler, n_workers=args.workers,
                                                       connect_timeout=args.connect_timeout))
        except ValueError as exc:
            if args.scheduler is None:
                raise
            raise ValueError(f"--scheduler {args.scheduler}: {str(exc).split(': ', 1)[-1]}") from None
        lazy = {name: dd.reduce_blocks(x, y, method=args.method, chunk_rows=args.chunk_rows)
                for name, (x, y) in pairs.items()}
        info = client.scheduler_info()
        print(f"dask scheduler {info.get('address')}, {len(info.get('workers', {}))} worker(s)", file=sys.stderr)
        results = client.gather(client.compute(list(lazy.values())))
    reds = dict(zip(lazy, results))
    print(f"{'layer':<40} {'n_x':>6} {'n_y':>6} {'samples':>12}")
    for key, r in reds.items():
        print(f"{key:<40} {r.n_x:>6} {r.n_y:>6} {r.n_samples:>12}")
    save_reductions(args.out, reds, metadata={**source, "method": args.method, "engine": "dask"})
    print(f"wrote {args.out}  (compare with: repmatch compare {args.out})", file=sys.stderr)
    return 0


def _saved_pairs(dd, directory, layers) -> dict:
    try:
        nets = dd.saved_layers(directory)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--saved: {exc} (not written by `repmatch extract --save`?)") from exc
    if set(nets) != {"a", "b"}:
        raise ValueError(f"--saved: {directory} must hold two networks 'a' and 'b', found {sorted(nets)}")
    common = [layer for layer in nets["a"] if layer in nets["b"]]
    if layers:
        missing = [layer for layer in layers if layer not in common]
        if missing:
            raise ValueError(f"--layers: {missing} not saved for both networks; saved: {common}")
        common = [layer for layer in common if layer in layers]
    if not common:
        raise ValueError(f"--saved: {directory} has no layer saved for both networks")
    return {layer: (dd.saved_layer(directory, "a", layer), dd.saved_layer(directory, "b", layer)) for layer in common}
