"""``repmatch reproduce``: train networks from several seeds and compare every pair at every layer."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train (or load) one network per seed, compare every pair at every ReLU layer, write a report",
        description=(
            "Train ARCH on DATASET once per seed (or reuse the networks already trained in OUT), reduce every ReLU "
            "layer of every pair of seeds, and compute the subspace match (similarity against a fine ε grid, "
            "max_epsilon, simple matches), semi- and bipartite matching, sparse prediction, clustering, MI matching "
            "on small layers and the reference measures, each beside an untrained-network null and a shuffled-row "
            "null. Writes OUT/results.json, OUT/tables/*.csv, OUT/figures/*.png|svg and OUT/report.html. "
            "Interrupt and rerun to finish the remaining work; changing a parameter recomputes only what depends "
            "on it. Needs PyTorch and matplotlib."
        ),
    )
    p.add_argument("--arch", default="small-cnn",
                   help="architecture (default small-cnn), e.g. vgg11, vgg16_bn, plain20, resnet20, vit-tiny; char-tiny "
                        "with --dataset python-docs")
    p.add_argument("--dataset", default="digits",
                   help="digits (default, bundled), mnist, fashion-mnist, cifar10, or python-docs (text, for char-tiny)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="at least two seeds; every pair is compared (default 0 1 2)")
    p.add_argument("--epochs", type=int, help="training epochs (default 10 for small-cnn, 30 otherwise)")
    p.add_argument("--out", help="run directory (default runs/<arch>-<dataset>)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier, e.g. 0.25 for CPU runs (default 1)")
    p.add_argument("--data-dir", help="where the dataset files are (see docs/networks.md)")
    p.add_argument("--n-train", type=int, help="use only the first N training images")
    p.add_argument("--n-test", type=int, help="use only the first N test images")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    p.add_argument("--simple-eps", type=float, default=0.25, help="ε of the simple matches (default 0.25)")
    p.add_argument("--permutations", type=int, default=99,
                   help="permutations of the shuffled-row null (default 99: p can reach 0.01; fewer than 19 cannot "
                        "reach 0.05 and the report then says 'not testable')")
    p.add_argument("--images", choices=("auto", "test", "all"), default="auto",
                   help="images compared: test, all (training + test), auto (default: all for digits, else test)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the report's claims (default 0.05)")
    p.add_argument("--sample-rows", type=int, default=10000,
                   help="rows per layer in the in-memory sample for the shuffled null and MI (default 10000)")
    p.add_argument("--eps", type=float, nargs="+", metavar="EPS",
                   help="ε grid (default 25 values in [0, 0.6]); the authors' 0.15 0.2 0.25 0.3 0.5 are always added")
    p.add_argument("--layers", nargs="+", metavar="LAYER",
                   help="compare only these layers (names, or types such as type:ReLU; default every ReLU)")
    p.add_argument("--no-heatmap", action="store_true", help="skip the layer x layer heatmap")
    p.add_argument("--no-report", action="store_true", help="write results.json only (build later with repmatch report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or messages")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import reproduce as rp

    kwargs = dict(epochs=args.epochs, out=args.out, width=args.width, data_dir=args.data_dir, n_train=args.n_train,
                  n_test=args.n_test, device=args.device, simple_eps=args.simple_eps, permutations=args.permutations,
                  sample_rows=args.sample_rows, heatmap=not args.no_heatmap, progress=not args.no_progress,
                  images=args.images, alpha=args.alpha, layers=tuple(args.layers) if args.layers else None)
    if args.eps:
        kwargs["eps_grid"] = tuple(args.eps)
    try:
        cfg = rp.ReproduceConfig(arch=args.arch, dataset=args.dataset, seeds=tuple(args.seeds), **kwargs)
    except ValueError as exc:
        raise ValueError(_as_option(str(exc))) from None
    from .. import _rundir
    from ._checks import device, output_dir

    device(args.device)
    out = output_dir(cfg.out, "--out", must_write=False)  # a read-only OUT is fine if everything is cached
    # One lock around the computation and the report: a second run into the same OUT is refused.
    with _rundir.RunLock(out, option="--out", config=cfg.to_dict()) as lock:
        try:
            results = rp.run(cfg)
        except ValueError as exc:  # e.g. "layers: unknown layer ..." from the extraction: name the option
            raise ValueError(_as_option(str(exc))) from None
        prov = results["provenance"]
        if lock.readonly:
            print(f"{out} is read-only: every unit was cached and nothing was written ({len(prov['reused'])} units "
                  f"read; the results are those of {os.path.join(out, 'results.json')})", file=sys.stderr)
            return 0
        if not args.no_report:
            from ..report.build import build_report

            page = build_report(out, results=results)
            print(f"wrote {page}", file=sys.stderr)
    print(f"wrote {os.path.join(out, 'results.json')}  ({len(prov['computed'])} units computed, "
          f"{len(prov['reused'])} reused, {prov['seconds']:.1f} s)", file=sys.stderr)
    return 0


def _as_option(message: str) -> str:
    """Name the command-line option in a configuration error ("n_test must ..." -> "--n-test: n_test must ...")."""
    head = message.split(" ", 1)[0].rstrip(":")
    names = {"arch", "dataset", "seeds", "epochs", "width", "n_train", "n_test", "eps_grid", "simple_eps",
             "permutations", "sample_rows", "images", "alpha", "layers"}
    if head in names:
        opt = {"eps_grid": "eps"}.get(head, head).replace("_", "-")
        if message.startswith(f"{head}:"):  # "layers: unknown layer" -> "--layers: unknown layer"
            return f"--{opt}:{message[len(head) + 1:]}"
        return f"--{opt}: {message}"
    return message
