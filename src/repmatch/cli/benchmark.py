"""``repmatch benchmark``: built-in validations of the measures.

``repmatch benchmark layer-id``: train K copies of one network and score every measure by how often
it finds the same layer in another copy (Kornblith et al. 2019; :mod:`repmatch.layerid`).
"""

from __future__ import annotations

import json
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("benchmark", help="built-in validations of the measures (layer identification)",
                       description="Built-in validations of every measure on networks trained here.")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bsub.required = True
    q = bsub.add_parser(
        "layer-id",
        help="score every measure by layer identification accuracy across seeds (Kornblith et al. 2019)",
        description=(
            "Train K networks of one architecture from seeds 0..K-1 (or reuse them in OUT), extract every ReLU "
            "layer (conv layers average-pooled over positions, one row per image) on the same images, and for "
            "every ordered pair of networks (A, B) and every layer of A ask each measure which layer of B is "
            "most similar. Prints the accuracy of every measure (ties get fractional credit; chance = 1 / "
            "layers) beside Kornblith et al.'s CIFAR-10 figures (linear CKA 99.3%, PWCCA 11.1%, SVCCA "
            "9.9-15.1%). Needs PyTorch."),
    )
    q.add_argument("--dataset", default="digits", help="digits (default, bundled), mnist or fashion-mnist")
    q.add_argument("--seeds", type=int, default=5, metavar="K", help="number of networks, seeds 0..K-1 (default 5)")
    q.add_argument("--arch", default="small-cnn", help="architecture (default small-cnn)")
    q.add_argument("--epochs", type=int, help="training epochs (default 10 for digits, 3 otherwise)")
    q.add_argument("--width", type=float, default=1.0, help="channel multiplier (default 1)")
    q.add_argument("--n-train", type=int, help="use only the first N training images")
    q.add_argument("--n-images", type=int,
                   help="probe images (default: all 1,797 digits; the first 2,000 test images otherwise)")
    q.add_argument("--data-dir", help="where the dataset files are (see docs/networks.md)")
    q.add_argument("--measures", nargs="+", metavar="MEASURE",
                   help="measures to score (default: all but sparse_fvu); see docs/reproduce.md")
    q.add_argument("--lr", type=float, help="base learning rate (default: the authors' 0.1)")
    q.add_argument("--min-accuracy", type=float, default=0.0,
                   help="leave out networks whose best test accuracy is below this (failed training; default 0)")
    q.add_argument("--out", help="directory for the networks and layer-id.json (default runs/layer-id-ARCH-DATASET)")
    q.add_argument("--device", default="cpu", help="torch device (default cpu)")
    q.add_argument("--no-progress", action="store_true", help="no progress messages")
    q.set_defaults(func=run_layer_id)


_OPTIONS = {"dataset": "--dataset", "seeds": "--seeds", "arch": "--arch", "epochs": "--epochs",
            "measures": "--measures", "n_images": "--n-images", "width": "--width", "n_train": "--n-train",
            "min_accuracy": "--min-accuracy", "lr": "--lr"}


def run_layer_id(args) -> int:
    from .._atomic import atomic_write_text
    from ..layerid import run_benchmark
    from ..reproduce import _jsonable

    progress = not args.no_progress

    def say(msg):
        if progress:
            print(f"[layer-id] {msg}", file=sys.stderr, flush=True)

    if isinstance(args.seeds, int) and args.seeds < 2:
        raise ValueError(f"--seeds: at least 2 networks are needed, got {args.seeds}")
    try:
        out = run_benchmark(args.dataset, args.seeds, arch=args.arch, epochs=args.epochs, width=args.width,
                            n_train=args.n_train, n_images=args.n_images, data_dir=args.data_dir, out=args.out,
                            device=args.device, measures=args.measures, progress=progress, say=say,
                            min_accuracy=args.min_accuracy, lr=args.lr)
    except ValueError as exc:
        msg = str(exc)
        head = msg.split(" ", 1)[0].rstrip(":")
        if head in _OPTIONS:
            rest = msg[len(head) + 1:].lstrip() if msg.startswith(f"{head}:") else msg
            msg = f"{_OPTIONS[head]}: {rest}"
        raise ValueError(msg) from None
    res = out["result"]
    cfg = out["config"]
    print(f"layer identification: {cfg['arch']} on {cfg['dataset']}, {len(cfg['seeds'])} networks "
          f"(seeds {', '.join(out['test_acc'])}; test accuracy {', '.join(f'{a:.3f}' for a in out['test_acc'].values())}), "
          f"{cfg['epochs']} epochs" + (f"; left out (accuracy below {cfg['min_accuracy']:g}): "
                                       + ", ".join(f"seed {s} ({a:.3f})" for s, a in out["excluded"].items())
                                       if out["excluded"] else ""))
    print(res.table())
    path = os.path.join(cfg["out"], "layer-id.json")
    atomic_write_text(path, json.dumps(_jsonable({**out, "result": res.to_dict()}), indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return 0
