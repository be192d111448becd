"""K seeds: every network once per batch (reduce_networks) against a reduce_pair per pair.

Prints, for K = 3 and K = 6 small CNNs (``smallcnn``, untrained weights, seeds 0..K-1) on the
digits images (8x8; all 1,797 by default), two workloads:

  * ``pairs``: the reductions of every pair of seeds (K (K - 1) / 2 pairs, every ReLU layer);
  * ``stage``: what the reproduce pipeline's reductions stage needs: every trained pair, every
    (seed a, untrained b) pair, and the shuffled null's row sample (``rows_per_image`` rows per image
    of every trained network). Baseline: ``reduce_pair`` per pair (trained and untrained) plus
    ``testing.sample_rows`` per trained pair, as ``repmatch reproduce`` did before it used ``reduce_networks``.

For each: forward passes (counted by a hook on each network) and wall time of the naive loop and of
one ``reduce_networks`` call, in the same run, with the ratio. Rounds are interleaved (naive, one
pass, naive, ...) and the fastest of each is reported, as the machine may be shared. The
reductions (every stored field, via their digests) and the row samples are checked equal to the
baseline's; the script exits 1 if they differ.

Run:  python benchmarks/bench_kseeds.py [--ks 3 6] [--images 1797] [--repeats 3] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import _blas_threads  # noqa: F401  (before NumPy: sets the BLAS thread count)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from repmatch.activations import reduce_networks, reduce_pair  # noqa: E402
from repmatch.nets import build_model, load_dataset  # noqa: E402
from repmatch.testing import sample_rows  # noqa: E402

UNTRAINED = 1000  # seed offset of the untrained networks (the pipeline's UNTRAINED_SEED_OFFSET)


class Counter:
    def __init__(self, models):
        self.n = 0
        self.handles = [m.register_forward_pre_hook(self._hook) for m in models]

    def _hook(self, module, args):
        self.n += 1

    def remove(self):
        for h in self.handles:
            h.remove()


def timed(fn, models):
    count = Counter(models)
    t0 = time.perf_counter()
    out = fn()
    t = time.perf_counter() - t0
    count.remove()
    return t, count.n, out


def digests(reds):
    return {k: r._npz_fields()["digest"].item() for k, r in reds.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[3, 6])
    p.add_argument("--images", type=int, default=1797)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rows-per-image", type=int, default=6, help="row sample of the stage workload")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    p.add_argument("--quick", action="store_true", help="few images, one round (smoke test)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.repeats, args.ks = 96, 1, [3]
    d = load_dataset("digits")
    x = torch.as_tensor(np.concatenate([d.x_train, d.x_test]))[: args.images]
    batches = [(xb, None) for xb in torch.split(x, args.batch_size)]
    n = len(x)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}")
    print(f"data: {n} digits images (8x8), batch {args.batch_size}; networks: smallcnn width {args.width}, "
          f"untrained weights, every ReLU layer; times: fastest of {args.repeats} interleaved round(s)\n")
    ok = True
    for k in args.ks:
        def cnn(seed):
            return build_model("smallcnn", in_channels=1, image_size=8, width=args.width, seed=seed).eval()

        seeds = list(range(k))
        trained = {s: cnn(s) for s in seeds}
        untrained = {("untrained", b): cnn(UNTRAINED + b) for b in seeds[1:]}
        pairs = list(itertools.combinations(seeds, 2))
        null_pairs = [(a, ("untrained", b)) for a, b in pairs]
        models = {**trained, **untrained}
        layers = None  # every ReLU
        kr = args.rows_per_image

        def naive_pairs():
            return {pr: reduce_pair(trained[pr[0]], trained[pr[1]], batches, layers) for pr in pairs}

        def one_pass_pairs():
            return reduce_networks(trained, batches, pairs, layers)

        def naive_stage():
            out = {pr: reduce_pair(models[pr[0]], models[pr[1]], batches, layers) for pr in pairs + null_pairs}
            names = list(out[pairs[0]])
            samples = {pr: sample_rows(trained[pr[0]], trained[pr[1]], batches, names, rows_per_image=kr)
                       for pr in pairs}
            return out, samples

        def one_pass_stage():
            return reduce_networks(models, batches, pairs + null_pairs, layers, rows_per_image=kr,
                                   rows_networks=seeds)

        work = {"pairs": (naive_pairs, one_pass_pairs, list(trained.values())),
                "stage": (naive_stage, one_pass_stage, list(models.values()))}
        naive_pairs()  # warm up
        for name, (naive, fast, nets) in work.items():
            best = {"naive": (float("inf"), 0), "one pass": (float("inf"), 0)}
            results = {}
            for _ in range(args.repeats):
                for label, fn in (("naive", naive), ("one pass", fast)):
                    t, calls, out = timed(fn, nets)
                    best[label] = min(best[label], (t, calls))
                    results[label] = out
            ref, got = results["naive"], results["one pass"]
            if name == "pairs":
                same = all(digests(ref[pr]) == digests(got[pr]) for pr in pairs)
            else:
                same = all(digests(ref[0][pr]) == digests(got[pr]) for pr in pairs + null_pairs)
                for (a, b), smp in ref[1].items():
                    for layer, (X, Y, g) in smp.items():
                        gx, gy, gg = got.sample(a, b, layer)
                        same &= np.array_equal(X, gx) and np.array_equal(Y, gy) and np.array_equal(g, gg)
            ok &= same
            (tn, cn), (tf, cf) = best["naive"], best["one pass"]
            n_pairs = len(pairs) if name == "pairs" else len(pairs + null_pairs)
            print(f"K={k} {name:<5} ({n_pairs:>2} pairs{', rows' if name == 'stage' else ''}): "
                  f"naive {cn:>4} forward passes {tn:7.2f} s | reduce_networks {cf:>4} forward passes {tf:7.2f} s | "
                  f"ratio {tn / tf:5.2f}x  [{cn / cf:4.1f}x fewer passes; results identical: {same}]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
