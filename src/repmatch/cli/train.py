"""``repmatch train``: train networks from several seeds with the authors' recipe (resumable)."""

from __future__ import annotations

import json
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one network per seed (seeded, deterministic, resumable)",
        description=(
            "Train ARCH on DATASET once per seed with the authors' recipe (SGD momentum 0.9, weight decay 5e-4, "
            "batch 128, lr 0.1 or 0.05 for vgg16, x0.1 at 50% and 75% of the epochs; the transformers vit-tiny and char-tiny: AdamW, lr 1e-3, weight decay 0.05). Each seed writes "
            "OUT/seed<k>/last.pt (every epoch), best.pt (best test accuracy) and train.json. Rerunning the same "
            "command after an interruption resumes from the last completed epoch. Needs PyTorch."
        ),
    )
    p.add_argument("--arch", required=True, help="architecture, e.g. vgg11, vgg16_bn, plain20, resnet20, smallcnn")
    p.add_argument("--dataset", default="digits", help="digits (default), mnist, fashion-mnist or cifar10")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="seeds (default: 0)")
    p.add_argument("--epochs", type=int, required=True, help="total epochs (authors: 160)")
    p.add_argument("--out", required=True, help="output directory (one subdirectory per seed)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier, e.g. 0.25 for CPU runs (default 1)")
    p.add_argument("--data-dir", help="where the dataset files are (see docs/networks.md for the default places)")
    p.add_argument("--n-train", type=int, help="use only the first N training images")
    p.add_argument("--n-test", type=int, help="use only the first N test images")
    p.add_argument("--image-size", type=int, help="pad/resize images to this size (default: what ARCH needs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, help="base learning rate (default 0.1; 0.05 for vgg16)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, help="default 5e-4 (SGD, the CNNs) or 0.05 (AdamW, the transformers)")
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/seed<k>/last.pt exists")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH")
    p.set_defaults(func=run)


def _check_arguments(args) -> None:
    """Everything that can be checked before any image is read or any epoch runs."""
    from ._checks import device, non_negative, output_dir, output_file, positive

    device(args.device)
    for seed in args.seeds:
        non_negative(seed, "--seeds")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds must be distinct, got {args.seeds}")
    positive(args.epochs, "--epochs")
    positive(args.batch_size, "--batch-size")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    if not args.width > 0:
        raise ValueError(f"--width must be positive, got {args.width}")
    output_dir(args.out, "--out")
    if args.json:
        output_file(args.json, "--json")


def run(args) -> int:
    try:
        from ..nets import CheckpointError, train_seeds
    except ImportError as exc:
        raise ValueError(str(exc)) from exc
    from .._rundir import RunDirReadOnly, RunLock

    _check_arguments(args)
    lock = RunLock(args.out, option="--out")
    try:
        lock.acquire()  # a second `repmatch train` into the same --out is refused while this one runs
        if lock.readonly:
            raise RunDirReadOnly(f"--out: cannot write in {args.out}")
        results = train_seeds(
            args.arch, args.dataset, args.seeds, out=args.out, data_dir=args.data_dir, n_train=args.n_train,
            n_test=args.n_test, image_size=args.image_size, epochs=args.epochs, width=args.width, lr=args.lr,
            batch_size=args.batch_size, momentum=args.momentum, weight_decay=args.weight_decay,
            augment=not args.no_augment, device=args.device, resume=not args.no_resume, progress=not args.quiet)
    except KeyboardInterrupt:
        print("repmatch train: interrupted; every completed epoch is saved - rerun the same command to resume",
              file=sys.stderr)
        return 130
    except CheckpointError as exc:  # a damaged or unsafe last.pt in --out
        raise ValueError(f"--out: {exc}") from None
    except FloatingPointError as exc:
        raise FloatingPointError(f"--lr: {exc}; every completed epoch is saved") from None
    finally:
        lock.release()
    print(f"{'seed':>4}  {'epochs':>6}  {'best acc':>8}  {'(epoch)':>7}  {'last acc':>8}  {'images/s':>9}  "
          "best checkpoint")
    for r in results:
        ips = "resumed" if r.resumed_from == r.epochs_completed else f"{r.images_per_s:9.0f}"
        print(f"{r.seed:>4}  {r.epochs_completed:>6}  {r.best_test_acc:8.4f}  {r.best_epoch:>7}  "
              f"{r.last_test_acc:8.4f}  {ips:>9}  {r.best_checkpoint}")
    if args.json:
        from .._atomic import atomic_write_bytes

        summary = {"arch": args.arch, "dataset": args.dataset, "out": os.path.abspath(args.out),
                   "runs": [r.to_dict() for r in results]}
        atomic_write_bytes(args.json, json.dumps(summary, indent=1).encode())
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
