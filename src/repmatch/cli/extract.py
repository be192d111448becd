"""``repmatch extract``: run checkpoints over a dataset and write reductions or activations."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "extract",
        help="extract activations of trained networks into reductions (or activation files)",
        description=(
            "Feed the same images, in the same order, to two checkpoints written by `repmatch train` and stream "
            "the chosen layers into reductions (--out, read by `repmatch compare OUT`), without holding the "
            "dataset's activations in memory. --save writes every batch's activations to a directory of chunks; "
            "--save-npz A.npz B.npz writes one file per network (read by `repmatch compare A.npz B.npz`). With a "
            "single --checkpoint only --save-npz PATH is possible. With three or more checkpoints every pair is "
            "reduced from one pass (each network runs once per batch) and --out names a directory that receives "
            "one reductions file per pair, I-J.npz (I < J their positions among the --checkpoint options, from 0), "
            "each read by `repmatch compare OUT/I-J.npz`. Needs PyTorch."
        ),
    )
    p.add_argument("--checkpoint", action="append", required=True, metavar="PT",
                   help="checkpoint (best.pt or last.pt); give it twice for networks A and B, or more often "
                        "for every pair of them")
    p.add_argument("--dataset", help="dataset (default: the one the first checkpoint was trained on)")
    p.add_argument("--data-dir", help="where the dataset files are")
    p.add_argument("--split", choices=("test", "train"), default="test", help="images to use (default test)")
    p.add_argument("--n-images", type=int, help="only the first N images of the split")
    p.add_argument("--layers", nargs="+", metavar="LAYER",
                   help="module names, leaf indices or types (e.g. ReLU); default: every ReLU")
    p.add_argument("--list-layers", action="store_true", help="print the layers of the first checkpoint and exit")
    p.add_argument("--conv-mode", default="positions",
                   help="positions (default), flatten, avgpool or sample:K")
    p.add_argument("--seq-mode", default="tokens",
                   help="how (batch, tokens, features) layers are read: tokens (default: every token a sample), cls, "
                        "mean, last or sample:K")
    p.add_argument("--layout", choices=("auto", "sequence", "channels"), default="auto",
                   help="how 3-D outputs are read: auto (default: by module type, reported), sequence (batch, tokens, "
                        "features) or channels (batch, channels, positions)")
    p.add_argument("--sample-seed", type=int, default=None, help="seed of the sample:K positions (default 0)")
    p.add_argument("--pairs", choices=("same", "all"), default="same",
                   help="same: layer l of A vs l of B (default); all: every layer of A vs every layer of B")
    p.add_argument("--method", choices=("gram", "qr"), default=None, help="reduction method (default gram)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", metavar="NPZ", help="reductions file to write (a directory with three or more "
                                                 "checkpoints: one I-J.npz per pair)")
    p.add_argument("--save", metavar="DIR", help="also write chunked activations and a manifest to DIR")
    p.add_argument("--save-npz", nargs="+", metavar="NPZ", help="also write one activations .npz per network")
    p.add_argument("--overlap", choices=("auto", "on", "off"), default=None,
                   help="reduce each batch on a worker thread while the next runs through the networks; auto "
                        "(default): when torch leaves a core idle")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads that reduce one batch on the host (default: the idle cores when overlapping, "
                        "else torch's thread count)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from .. import activations
        from ..nets import load_checkpoint, load_dataset
    except ImportError as exc:
        raise ValueError(str(exc)) from exc
    ckpts = args.checkpoint
    if not args.list_layers:
        _check_arguments(args, activations)
    models, infos = [], []
    for path in ckpts:  # read safely (tensors and JSON only); damaged files are one-line errors
        model, info = load_checkpoint(path, device=args.device, name="--checkpoint")
        models.append(model)
        infos.append(info)
    if args.list_layers:
        for i, name, kind in activations.list_layers(models[0]):
            print(f"{i:>4}  {name:<30} {kind}")
        return 0
    data_info = infos[0]["data"]
    layout = None if args.layout == "auto" else args.layout
    args.sample_seed = 0 if args.sample_seed is None else args.sample_seed
    if data_info.get("kind") == "text":  # char-tiny: windows of the corpus it was trained on
        return _run_text(args, models, infos, ckpts, layout)
    for other, path in zip(infos[1:], ckpts[1:]):
        shape = (other["data"]["image_size"], other["data"]["in_channels"])
        if shape != (data_info["image_size"], data_info["in_channels"]):
            raise ValueError(f"--checkpoint: {path} expects {other['data']['in_channels']}-channel "
                             f"{other['data']['image_size']}px images, {ckpts[0]} expects "
                             f"{data_info['in_channels']}-channel {data_info['image_size']}px images")
    name = args.dataset or data_info["name"]
    n = args.n_images
    data = load_dataset(name, args.data_dir, image_size=data_info["image_size"],
                        n_train=n if args.split == "train" else None, n_test=n if args.split == "test" else None)
    if data.in_channels != data_info["in_channels"]:
        raise ValueError(f"--dataset: {name} has {data.in_channels} channel(s) but the checkpoint expects "
                         f"{data_info['in_channels']}")
    import numpy as np

    # Preprocess exactly as in training: the checkpoint's normalisation, not the new dataset's.
    data.mean = np.asarray(data_info["mean"], dtype=np.float32)
    data.std = np.asarray(data_info["std"], dtype=np.float32)
    loader = data.loader(args.split, batch_size=args.batch_size)
    layers = args.layers
    meta = {"checkpoints": [os.path.abspath(c) for c in ckpts], "dataset": data.name, "split": args.split,
            "n_images": loader.n_samples, "conv_mode": args.conv_mode, "pairs": args.pairs,
            "sample_seed": args.sample_seed, "layers": layers,
            "test_acc": [float(i.get("test_acc", float("nan"))) for i in infos],
            "epochs": [int(i.get("epoch", 0)) for i in infos], "seeds": [i["config"]["seed"] for i in infos],
            "arch": [i["config"]["arch"] for i in infos]}
    return _extract_and_write(args, models, loader, layers, layout, meta, activations)


def _extract_and_write(args, models, loader, layers, layout, meta, activations) -> int:
    from ..io import save_reductions

    meta = {**meta, "seq_mode": args.seq_mode}
    if len(models) == 1:
        if not args.save_npz or len(args.save_npz) != 1 or args.out or args.save:
            raise ValueError("with one --checkpoint give exactly --save-npz PATH (reductions need two networks)")
        acts = activations.extract(models[0], loader, layers, conv_mode=args.conv_mode, seq_mode=args.seq_mode,
                                   layout=layout, sample_seed=args.sample_seed, progress=not args.quiet)
        activations.save_activations_npz(acts, args.save_npz[0])
        for layer, a in acts.items():
            print(f"{layer:<30} {a.shape[0]:>10} samples x {a.shape[1]:>5} neurons  "
                  f"({acts.layouts[layer]['layout']}: {acts.layouts[layer]['reason']})")
        print(f"wrote {args.save_npz[0]}", file=sys.stderr)
        return 0
    if len(models) > 2:
        return _write_all_pairs(args, models, loader, layers, layout, meta, activations)
    if not (args.out or args.save or args.save_npz):
        raise ValueError("give --out NPZ (reductions) and/or --save DIR / --save-npz A.npz B.npz (activations)")
    if args.save_npz and len(args.save_npz) != 2:
        raise ValueError(f"--save-npz: give two paths (network A, network B), got {len(args.save_npz)}")
    reds = activations.reduce_pair(models[0], models[1], loader, layers, pairs=args.pairs, conv_mode=args.conv_mode,
                                   seq_mode=args.seq_mode, layout=layout, method=args.method or "gram",
                                   sample_seed=args.sample_seed, save=args.save,
                                   save_npz=args.save_npz, progress=not args.quiet, metadata=meta,
                                   overlap={None: None, "auto": None, "on": True, "off": False}[args.overlap],
                                   threads=args.threads)
    print(f"{'layer':<40} {'n_x':>6} {'n_y':>6} {'samples':>10}  layout (A)")
    for key, r in reds.items():
        info = reds.layouts["a"].get(key.partition("|")[0], {})
        print(f"{key:<40} {r.n_x:>6} {r.n_y:>6} {r.n_samples:>10}  {info.get('layout', '?')}: {info.get('reason', '?')}")
    if args.out:
        save_reductions(args.out, reds, metadata=meta)
        print(f"wrote {args.out}  (compare with: repmatch compare {args.out})", file=sys.stderr)
    if args.save:
        print(f"wrote {args.save}/manifest.json", file=sys.stderr)
    if args.save_npz:
        print(f"wrote {args.save_npz[0]} {args.save_npz[1]}  (compare with: repmatch compare "
              f"{args.save_npz[0]} {args.save_npz[1]})", file=sys.stderr)
    return 0


#: Entries of extract's metadata that hold one value per checkpoint (cut down to the pair's two).
_PER_NETWORK = ("checkpoints", "test_acc", "epochs", "seeds", "arch")


def _write_all_pairs(args, models, loader, layers, layout, meta, activations) -> int:
    """Three or more checkpoints: every pair from one pass, one reductions file ``OUT/I-J.npz`` per pair."""
    from .._atomic import atomic_write_json
    from ..io import save_reductions

    reds = activations.reduce_networks(list(models), loader, None, layers, layer_pairs=args.pairs,
                                       conv_mode=args.conv_mode, seq_mode=args.seq_mode, layout=layout,
                                       method=args.method or "gram", sample_seed=args.sample_seed,
                                       progress=not args.quiet,
                                       overlap={None: None, "auto": None, "on": True, "off": False}[args.overlap],
                                       threads=args.threads)
    os.makedirs(args.out, exist_ok=True)
    written = []
    print(f"{'pair':<6} {'layer':<40} {'n_x':>6} {'n_y':>6} {'samples':>10}")
    for (i, j), pair in reds.items():
        pair_meta = {**meta, "pair": [i, j],
                     **{k: [meta[k][i], meta[k][j]] for k in _PER_NETWORK if isinstance(meta.get(k), list)}}
        for key, r in pair.items():
            print(f"{i}-{j:<4} {key:<40} {r.n_x:>6} {r.n_y:>6} {r.n_samples:>10}")
        path = os.path.join(args.out, f"{i}-{j}.npz")
        save_reductions(path, pair, metadata=pair_meta)
        written.append(os.path.basename(path))
    atomic_write_json(os.path.join(args.out, "pairs.json"),
                      {"checkpoints": meta["checkpoints"], "pairs": written, "layouts":
                       {str(i): lay for i, lay in reds.layouts.items()}}, indent=2)
    print(f"wrote {len(written)} reductions files to {args.out} (one pass, each network once per batch; compare "
          f"with: repmatch compare {os.path.join(args.out, written[0])})", file=sys.stderr)
    return 0


def _check_arguments(args, activations) -> None:
    """Everything that can be checked before the checkpoints and the images are read."""
    from ._checks import device, non_negative, output_dir, output_file, positive

    device(args.device)
    positive(args.batch_size, "--batch-size")
    positive(args.n_images, "--n-images")
    positive(args.threads, "--threads")
    non_negative(args.sample_seed, "--sample-seed")
    try:
        mode, _ = activations.parse_conv_mode(args.conv_mode)
    except ValueError as exc:
        raise ValueError(f"--conv-mode: {exc}") from None
    try:
        seq, _ = activations.parse_seq_mode(args.seq_mode)
    except ValueError as exc:
        raise ValueError(f"--seq-mode: {exc}") from None
    if args.sample_seed is not None and mode != "sample" and seq != "sample":
        raise ValueError(f"--sample-seed applies to --conv-mode sample:K or --seq-mode sample:K only, not "
                         f"{args.conv_mode} / {args.seq_mode}")
    if len(args.checkpoint) == 1:
        if not args.save_npz or len(args.save_npz) != 1 or args.out or args.save:
            raise ValueError("with one --checkpoint give exactly --save-npz PATH (reductions need two networks)")
        given = [opt for opt, value in (("--pairs all", args.pairs == "all"), ("--method", args.method is not None),
                                        ("--overlap", args.overlap is not None),
                                        ("--threads", args.threads is not None)) if value]
        if given:
            raise ValueError(f"{', '.join(given)}: appl{'ies' if len(given) == 1 else 'y'} to reductions of two "
                             "networks; with one --checkpoint only activations are written (--save-npz PATH)")
    elif len(args.checkpoint) > 2:
        if args.save or args.save_npz:
            raise ValueError(f"--save/--save-npz: with {len(args.checkpoint)} checkpoints only --out DIR is possible "
                             "(one reductions file per pair); save activations with one or two checkpoints")
        if not args.out:
            raise ValueError(f"give --out DIR: with {len(args.checkpoint)} checkpoints every pair's reductions are "
                             "written there (DIR/I-J.npz)")
        output_dir(args.out, "--out")
        return
    else:
        if not (args.out or args.save or args.save_npz):
            raise ValueError("give --out NPZ (reductions) and/or --save DIR / --save-npz A.npz B.npz (activations)")
        if args.save_npz and len(args.save_npz) != 2:
            raise ValueError(f"--save-npz: give two paths (network A, network B), got {len(args.save_npz)}")
    if args.out:
        output_file(args.out, "--out")
    for path in args.save_npz or ():
        output_file(path, "--save-npz")
    npz = [os.path.abspath(p) for p in args.save_npz or ()]
    if len(npz) == 2 and npz[0] == npz[1]:
        raise ValueError(f"--save-npz: the two paths are the same file ({args.save_npz[0]})")
    if args.save:
        output_dir(args.save, "--save")


def _run_text(args, models, infos, ckpts, layout) -> int:
    """``repmatch extract`` on char-tiny checkpoints: test (or training-text) windows of their corpus."""
    from .. import activations
    from ..nets.evaluation import evaluation_data

    if args.split != "test":
        raise ValueError("--split: text checkpoints are compared on the test windows of their corpus only")
    for other, path in zip(infos[1:], ckpts[1:]):
        if other["data"].get("sha256") != infos[0]["data"].get("sha256"):
            raise ValueError(f"--checkpoint: {path} was trained on another text than {ckpts[0]}")
    n, make = evaluation_data(infos[0]["data"], n_test=args.n_images, batch_size=args.batch_size)
    loader = make(0, n)
    meta = {"checkpoints": [os.path.abspath(c) for c in ckpts], "dataset": infos[0]["data"]["name"],
            "split": "test", "n_windows": n, "conv_mode": args.conv_mode, "pairs": args.pairs,
            "sample_seed": args.sample_seed, "layers": args.layers, "seeds": [i["config"]["seed"] for i in infos],
            "arch": [i["config"]["arch"] for i in infos]}
    return _extract_and_write(args, models, loader, args.layers, layout, meta, activations)
