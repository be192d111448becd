"""PyTorch device backend against the NumPy CPU path (issue 6), on whatever device is given.

Run:  python benchmarks/bench_gpu.py                  (cuda if available, else cpu torch)
      python benchmarks/bench_gpu.py --device cuda:0 --rows 20000000

Parts (each prints both times, the ratio NumPy time / torch time, and checks the results agree):
  reduce : streaming Gram reduction of ``--rows`` rows x (``--neurons`` + ``--neurons``) float32
           activations in batches of ``--batch`` rows. The torch path gets the batches already on
           the device (as activations hooked on a GPU are); the NumPy path gets host arrays.
           Prints rows/s of both. Moments must agree to 1e-10 relative.
  curve  : a 20-point similarity curve on a 256 + 256 ReLU layer pair (10,000 samples), geometry
           on the device vs on the host. Sizes must be identical.
  extract: ``reduce_pair`` of two vgg11 (``--width``) over ``--images`` random 32x32 images, every
           ReLU in ``positions`` mode: models and reductions on the device (no activation crosses
           to the host) vs models on the CPU with NumPy reductions. Prints images/s of both, the
           ratio, and each side's ratio to its own plain forward pass. Moments must agree to 1e-4
           relative (float32 convolutions differ between devices, TF32 off; the reductions are float64).
  assign : bipartite matching of a device reduction (``--units`` + ``--units``, and a rectangular
           problem with 2% fewer live units on one side, as dead ReLUs make): the auction solver on
           the device vs SciPy's LAPJV on the host (its time includes copying the correlation
           matrix to the host). Pairs must be identical and the certified gap <= ASSIGN_TOL.

Without a GPU it says so and runs on CPU torch: the ratio then measures torch-on-CPU against NumPy,
not a GPU speed-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import repmatch
from repmatch import Reduction
from repmatch.testing import relu_layers


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_reduce(device, rows, n, batch, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    n_batches = -(-rows // batch)
    # a pool of distinct batches generated on the device (reused cyclically) so that the timed loop
    # measures the reduction, not the random number generator
    pool = [(torch.randn(batch, n, generator=g, device=device).relu_(),
             torch.randn(batch, n, generator=g, device=device).relu_()) for _ in range(min(4, n_batches))]
    host_pool = [(x.cpu().numpy(), y.cpu().numpy()) for x, y in pool]

    def run_torch():
        r = Reduction(n, n, device=device)
        for i in range(n_batches):
            r.update(*pool[i % len(pool)])
        _sync(device)
        return r

    def run_numpy():
        r = Reduction(n, n)
        for i in range(n_batches):
            r.update(*host_pool[i % len(host_pool)])
        return r

    run_torch()  # warm-up (kernels, allocator)
    t0 = time.perf_counter()
    rt = run_torch()
    t_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    rn = run_numpy()
    t_numpy = time.perf_counter() - t0
    err = np.abs(rt.comoment - rn.comoment).max() / np.abs(rn.comoment).max()
    assert err < 1e-10, f"moments differ: {err:.2e}"
    total = n_batches * batch
    print(f"[reduce] {total:,} rows x ({n} + {n}) float32, batches of {batch:,}: "
          f"torch on {device} {total / t_torch / 1e6:.2f} M rows/s ({t_torch:.2f} s) | "
          f"NumPy CPU {total / t_numpy / 1e6:.2f} M rows/s ({t_numpy:.2f} s) | ratio {t_numpy / t_torch:.2f}x "
          f"| max rel. diff {err:.1e}")


def bench_curve(device):
    X, Y = relu_layers(n_samples=10000, n_x=256, n_y=256, shared_dim=128, private_dim=128)
    grid = np.linspace(0.05, 0.6, 20)
    host = Reduction.from_arrays(X, Y)
    dev = Reduction.from_arrays(X.astype(np.float64), Y, device=device)
    t0 = time.perf_counter()
    ch = repmatch.similarity_curve(host, eps=grid)
    t_host = time.perf_counter() - t0
    t0 = time.perf_counter()
    cd = repmatch.similarity_curve(dev, eps=grid)
    _sync(device)
    t_dev = time.perf_counter() - t0
    same = np.array_equal(ch.size_x, cd.size_x) and np.array_equal(ch.size_y, cd.size_y)
    print(f"[curve] 20-point curve, 256 + 256 neurons: torch on {device} {t_dev:.2f} s | NumPy/LAPACK host "
          f"{t_host:.2f} s | ratio {t_host / t_dev:.2f}x | sizes {'identical' if same else 'DIFFER'}")
    assert same


def _time_extract(where, width, host_batches, reduction_device=None):
    """(plain forward time, reduce_pair time, reductions) for two vgg11 on ``where``."""
    from repmatch.activations import reduce_pair
    from repmatch.nets import build_model

    a = build_model("vgg11", in_channels=1, width=width, seed=0).to(where).eval()
    b = build_model("vgg11", in_channels=1, width=width, seed=1).to(where).eval()
    batches = [xb.to(where) for xb in host_batches]

    @torch.no_grad()
    def plain():
        for xb in batches:
            a(xb)
            b(xb)
        _sync(where)

    plain()  # warm-up
    t0 = time.perf_counter()
    plain()
    t_plain = time.perf_counter() - t0
    reduce_pair(a, b, batches[:1], reduction_device=reduction_device)  # warm-up
    t0 = time.perf_counter()
    reds = reduce_pair(a, b, batches, reduction_device=reduction_device)
    _sync(where)
    return t_plain, time.perf_counter() - t0, reds


#: Relative agreement of the extract part's moments across devices: the float32 convolutions run in
#: different orders on a GPU and a CPU (TF32 is switched off for this script), so activations differ
#: by ~1e-7-1e-6 relative; the float64 reductions add nothing to that.
EXTRACT_RTOL = 1e-4


def bench_extract(device, width, images, batch=256):
    x = torch.randn(images, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    host_batches = list(torch.split(x, batch))
    # on a GPU the default puts the reductions there; on CPU torch ask for the torch backend explicitly
    tp_d, tr_d, rd = _time_extract(device, width, host_batches, None if device.type != "cpu" else device)
    tp_h, tr_h, rh = _time_extract(torch.device("cpu"), width, host_batches)
    err = max(np.abs(rd[k].comoment - rh[k].comoment).max() / np.abs(rh[k].comoment).max() for k in rh)
    where = {str(r.device) for r in rd.values()}
    print(f"[extract] vgg11 width {width}, {images} images 32x32, every ReLU (positions): models on {device}, "
          f"reductions on {', '.join(sorted(where))}: {images / tr_d:,.0f} images/s ({tr_d / tp_d:.2f}x its plain "
          f"forward) | CPU + NumPy reductions: {images / tr_h:,.0f} images/s ({tr_h / tp_h:.2f}x its plain "
          f"forward) | ratio {tr_h / tr_d:.2f}x | max rel. diff {err:.1e}")
    assert err < EXTRACT_RTOL, f"moments differ: {err:.2e}"


def bench_assign(device, units, seed=0):
    from repmatch.alignment import ASSIGN_TOL

    rng = np.random.default_rng(seed)
    for n_x, n_y in ((units, units), (units - units // 50, units)):
        Z = rng.standard_normal((4 * units, n_y))
        W = Z[:, :n_x] @ (0.3 * rng.standard_normal((n_x, n_x))) + rng.standard_normal((4 * units, n_x))
        r = Reduction.from_arrays(W, Z, device=device)
        repmatch.bipartite_match(r, solver="auction")  # warm-up (kernels, the correlation cache)
        t0 = time.perf_counter()
        a = repmatch.bipartite_match(r, solver="auction")
        t_auction = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = repmatch.bipartite_match(r, solver="scipy")
        t_scipy = time.perf_counter() - t0
        same = np.array_equal(a.x, s.x) and np.array_equal(a.y, s.y)
        print(f"[assign] {n_x} x {n_y} units: auction on {device} {t_auction * 1e3:.0f} ms (gap "
              f"{a.optimality_gap:.1e}) | SciPy on the host {t_scipy * 1e3:.0f} ms | ratio {t_scipy / t_auction:.2f}x "
              f"| pairs {'identical' if same else 'DIFFER'}")
        assert same and a.optimality_gap <= ASSIGN_TOL


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--neurons", type=int, default=256, help="neurons per layer (default 256 + 256)")
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--width", type=float, default=0.5, help="vgg11 width multiplier of the extract part")
    ap.add_argument("--images", type=int, default=2048, help="images of the extract part")
    ap.add_argument("--units", type=int, default=1024, help="units per side of the assign part")
    parts = ("reduce", "curve", "extract", "assign")
    ap.add_argument("--only", nargs="+", choices=parts, default=parts)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU is available on this machine")
        # true float32 convolutions and products (TF32 would make the GPU's activations differ from the
        # CPU's by ~1e-3 and the extract check compare rounding modes instead of code paths)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        print(f"device: {torch.cuda.get_device_name(device)} (torch {torch.__version__}); TF32 off")
    else:
        print(f"NO GPU: running the torch backend on {device} (torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads); ratios compare CPU torch with NumPy, not a GPU")
    if "reduce" in args.only:
        bench_reduce(device, args.rows, args.neurons, args.batch)
    if "curve" in args.only:
        bench_curve(device)
    if "extract" in args.only:
        bench_extract(device, args.width, args.images)
    if "assign" in args.only:
        bench_assign(device, args.units)


if __name__ == "__main__":
    main()
