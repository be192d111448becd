"""Subspace-match engine benchmarks: repmatch against naive baselines timed in the same run.

Run:  python benchmarks/bench_subspace.py            (all parts, about 5 minutes on 2 cores)
      python benchmarks/bench_subspace.py --only maxmatch curve

Every part prints the time of repmatch, the time of the baseline and their ratio, and checks that
both give identical results. Targets (issue: subspace match engine):
  maxmatch : maximum match, 512 + 512 neurons, 10,000 samples, ReLU layers sharing part of a latent
             space (several pruning rounds) -> >= 5x faster than per-round least squares
  curve    : a 20-point ε curve on the same data -> >= 50x faster than 20 naive maximum matches
  reduce   : streaming reduction -> <= 2x the time of NumPy's own M.T @ M on the same data
  simple   : simple matches of a 128 + 128 layer (4,000 samples) -> >= 50x faster than the naive deletion algorithm
             on the naive maximum match (the naive one is timed on a sample of neurons: all of them
             would take hours; the per-neuron times are compared and the results checked equal)
  simple512: simple matches of the 512 + 512 maximum-match data (10,000 samples, eps = 0.25), all
             of them -> under 60 s (issue: the house). Timed with one process and with one per core;
             the baseline is the certified per-neuron deletion search used before the shared tree,
             timed on a sample of neurons (results checked equal)
  memory   : 10 million samples streamed through a 256 + 256 reduction -> peak memory < 1 GB
  certify  : what the certificates cost on ordinary (well-conditioned) data: maximum match and the
             20-point curve with and without error bounds, same data, same run -> <= 10% more
             (issue: certified answers); also how many decisions needed the precise or exact tier
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

import repmatch
from repmatch.testing import naive_maximum_match, naive_v_minimal_match, relu_layers


def best_of(fn, repeat=3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def report(name, ours, base, target, higher_is_better=True, extra=""):
    ratio = base / ours
    ok = ratio >= target if higher_is_better else ratio <= target
    print(f"[{name}] repmatch {ours:.3f} s | baseline {base:.3f} s | ratio {ratio:.1f}x "
          f"(target {'>=' if higher_is_better else '<='} {target}x) {'OK' if ok else 'MISSED'} {extra}")
    return {"name": name, "repmatch_s": ours, "baseline_s": base, "ratio": ratio, "target": target, "ok": bool(ok)}


def bench_maxmatch(X, Y, eps=0.2):
    stats = {}
    t_naive, (nx, ny) = best_of(lambda: naive_maximum_match(X, Y, eps, stats=stats), repeat=1)
    t_ours, m = best_of(lambda: repmatch.maximum_match(X, Y, eps=eps), repeat=3)
    assert np.array_equal(m.x, nx) and np.array_equal(m.y, ny), "results differ"
    return report("maxmatch", t_ours, t_naive, 5,
                  extra=f"(eps={eps}, rounds={stats['rounds']}, |x|={len(m.x)}, |y|={len(m.y)}, identical)")


def bench_curve(X, Y):
    grid = np.linspace(0.05, 0.6, 20)
    t0 = time.perf_counter()
    naive = [naive_maximum_match(X, Y, e) for e in grid]
    t_naive = time.perf_counter() - t0
    t_ours, curve = best_of(lambda: repmatch.similarity_curve(X, Y, eps=grid), repeat=3)
    for (nx, ny), sx, sy in zip(naive, curve.size_x, curve.size_y):
        assert (len(nx), len(ny)) == (sx, sy), "results differ"
    return report("curve", t_ours, t_naive, 50, extra="(20 eps in [0.05, 0.6], reduction included, identical)")


def bench_reduce(X, Y):
    M = np.hstack([X, Y])
    t_mtm, _ = best_of(lambda: M.T @ M, repeat=5)
    t_red, _ = best_of(lambda: repmatch.Reduction.from_arrays(X, Y, batch_size=10000), repeat=5)
    ratio = t_red / t_mtm
    ok = ratio <= 2
    print(f"[reduce] Reduction {t_red:.3f} s | NumPy M.T @ M {t_mtm:.3f} s | ratio {ratio:.2f}x (target <= 2x) "
          f"{'OK' if ok else 'MISSED'} (10,000 x 1024, float64)")
    t_qr, _ = best_of(lambda: repmatch.Reduction.from_arrays(X, Y, method="qr", batch_size=10000), repeat=2)
    print(f"[reduce] method='qr' (exact-match precision) {t_qr:.3f} s = {t_qr / t_mtm:.1f}x M.T @ M (no target)")
    return {"name": "reduce", "repmatch_s": t_red, "baseline_s": t_mtm, "ratio": ratio, "target": 2, "ok": bool(ok)}


def bench_simple(n_samples=4000, n_sample_v=2, n=128):
    X, Y = relu_layers(n_samples=n_samples, n_x=n, n_y=n, shared_dim=n // 2, private_dim=n // 2, rng=3)
    eps = 0.25
    t0 = time.perf_counter()
    sm = repmatch.simple_matches(X, Y, eps)
    t_all = time.perf_counter() - t0
    S = [("x", int(i)) for i in sm.maximum.x] + [("y", int(j)) for j in sm.maximum.y]
    per_v_ours = t_all / len(S)
    rng = np.random.default_rng(0)
    sample = [S[i] for i in sorted(rng.choice(len(S), size=min(n_sample_v, len(S)), replace=False))]
    t0 = time.perf_counter()
    naive = [naive_v_minimal_match(X, Y, eps, side=s, index=i) for s, i in sample]
    per_v_naive = (time.perf_counter() - t0) / len(sample)
    by_v = {}
    for m, found in zip(sm.matches, sm.found_for):
        for v in found:
            by_v[v] = m
    for (s, i), (nx, ny) in zip(sample, naive):
        m = by_v[(s, i)]
        assert m.x.tolist() == nx.tolist() and m.y.tolist() == ny.tolist(), "results differ"
    print(f"[simple] {len(sm)} distinct simple matches from {len(S)} neurons of the maximum match "
          f"(|x|={len(sm.maximum.x)}, |y|={len(sm.maximum.y)}), all in {t_all:.2f} s; "
          f"size distribution {dict(list(sm.size_distribution().items())[:6])}...")
    return report("simple", per_v_ours, per_v_naive, 50,
                  extra=f"(per neuron; naive timed on {len(sample)} neurons, est. {per_v_naive * len(S) / 60:.0f} min for all; identical)")


def bench_simple_large(X, Y, eps=0.25, n_sample_v=2, target_s=60.0):
    from repmatch._threads import available_cores, single_threaded_blas
    from repmatch.simple import _deletion, _order, _plan

    r = repmatch.Reduction.from_arrays(X, Y)
    runs = {}
    for jobs in sorted({1, min(2, available_cores())}):
        t0 = time.perf_counter()
        sm = repmatch.simple_matches(r, eps=eps, n_jobs=jobs)
        runs[jobs] = (time.perf_counter() - t0, sm)
    keys = {j: [(m.x.tolist(), m.y.tolist(), f) for m, f in zip(sm.matches, sm.found_for)] for j, (_, sm) in runs.items()}
    assert all(k == keys[1] for k in keys.values()), "n_jobs changed the result"
    sm = runs[1][1]
    geo, eps, thr, I, J, S, *_ = _plan(r, None, eps, rng=None, restarts=0, method=None, tol=None)
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(S, size=min(n_sample_v, S.size), replace=False).tolist())
    by_v = {}
    for m, found in zip(sm.matches, sm.found_for):
        for side, i in found:
            by_v[i if side == "x" else geo.n_x + i] = m
    t0 = time.perf_counter()
    with single_threaded_blas():
        for v in sample:
            a, b, _ = _deletion(geo, I, J, v, _order(S, v, None), thr)
            m = by_v[v]
            assert a.tolist() == m.x.tolist() and (b - geo.n_x).tolist() == m.y.tolist(), "results differ"
    per_v = (time.perf_counter() - t0) / len(sample)
    base = per_v * S.size
    best_jobs = min(runs, key=lambda j: runs[j][0])
    t_best = runs[best_jobs][0]
    ok = t_best < target_s
    times = ", ".join(f"n_jobs={j}: {t:.1f} s" for j, (t, _) in sorted(runs.items()))
    print(f"[simple512] {len(sm)} distinct simple matches from {S.size} neurons (|x|={len(sm.maximum.x)}, "
          f"|y|={len(sm.maximum.y)}), all of them in {times} (target < {target_s:g} s) {'OK' if ok else 'MISSED'} "
          f"| per-neuron certified search {per_v:.2f} s/neuron (timed on {len(sample)}), est. {base:.0f} s for all "
          f"| ratio {base / runs[1][0]:.1f}x (n_jobs=1) | uncertain: {len(sm.not_minimal_for)}; identical")
    return {"name": "simple512", "repmatch_s": runs[1][0], "repmatch_best_s": t_best, "best_n_jobs": best_jobs,
            "baseline_s": base, "ratio": base / runs[1][0], "target_s": target_s, "ok": bool(ok)}


def bench_certify(X, Y, eps=0.2, repeat=5):
    """Certified vs uncertified solver on the same data (a module switch, for this benchmark only)."""
    from repmatch import subspace

    grid = np.linspace(0.05, 0.6, 20)
    out = {}
    for label, fn in (("maxmatch", lambda: repmatch.maximum_match(X, Y, eps=eps)),
                      ("curve", lambda: repmatch.similarity_curve(X, Y, eps=grid))):
        times = {}
        results = {}
        for certify in (False, True, False, True):  # interleaved: drift of a noisy machine hits both
            subspace._CERTIFY = certify
            try:
                t, res = best_of(fn, repeat=repeat // 2 + 1)
            finally:
                subspace._CERTIFY = True
            times[certify] = min(times.get(certify, np.inf), t)
            results[certify] = res
        same = (results[True].key() == results[False].key()) if label == "maxmatch" else (
            np.array_equal(results[True].size_x, results[False].size_x)
            and np.array_equal(results[True].size_y, results[False].size_y))
        assert same, "certified and plain answers differ on ordinary data"
        overhead = times[True] / times[False] - 1
        ok = overhead <= 0.10
        print(f"[certify] {label}: certified {times[True]:.3f} s | plain {times[False]:.3f} s | overhead "
              f"{100 * overhead:+.1f}% (target <= +10%) {'OK' if ok else 'MISSED'} (reduction included, identical)")
        out[label] = {"certified_s": times[True], "plain_s": times[False], "overhead": overhead, "ok": bool(ok)}
    geo = subspace.geometry(X, Y)
    repmatch.similarity_curve(geo, eps=grid)
    st = geo.tiers.stats
    print(f"[certify] decisions of one curve: {st['fast']} by the Gram bound, {st['precise']} re-decided on "
          f"the raw data's QR, {st['exact']} in exact arithmetic, {st['uncertain']} left uncertain")
    return {"name": "certify", **out, "tiers": dict(st)}


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB. /proc's VmHWM belongs to this program alone;
    ru_maxrss on Linux also keeps the high-water mark of the parent that forked it (it survives
    exec), which made earlier figures include the benchmark's own parent process."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(n_total, n_x, n_y, batch):
    g = np.random.default_rng(0)
    r = repmatch.Reduction(n_x, n_y)
    done = 0
    t0 = time.perf_counter()
    pool = g.random((batch, n_x + n_y), dtype=np.float32)
    while done < n_total:
        b = min(batch, n_total - done)
        shift = g.random(n_x + n_y, dtype=np.float32)  # cheap fresh data per batch
        z = pool[:b] * shift
        r.update(z[:, :n_x], z[:, n_x:])
        done += b
    elapsed = time.perf_counter() - t0
    m = repmatch.maximum_match(r, eps=0.5)
    peak_mb = _peak_rss_mb()
    print(json.dumps({"samples": r.n_samples, "seconds": elapsed, "peak_mb": peak_mb, "mms": m.similarity}))


def bench_memory(n_total=10_000_000):
    cmd = [sys.executable, __file__, "--memory-child", str(n_total)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    data = json.loads(res.stdout.strip().splitlines()[-1])
    ok = data["peak_mb"] < 1024
    print(f"[memory] {data['samples']:,} samples through a 256 + 256 reduction in {data['seconds']:.1f} s "
          f"({data['samples'] / data['seconds'] / 1e6:.2f} M rows/s); peak RSS {data['peak_mb']:.0f} MB "
          f"(target < 1024 MB) {'OK' if ok else 'MISSED'}")
    return {"name": "memory", "peak_mb": data["peak_mb"], "seconds": data["seconds"], "ok": bool(ok)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=["maxmatch", "curve", "reduce", "simple", "simple512", "memory", "certify"])
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; figures meaningless)")
    args = p.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child, 256, 256, 20000)
        return
    warnings.simplefilter("ignore", repmatch.RepmatchWarning)
    parts = args.only or ["maxmatch", "curve", "reduce", "certify", "simple", "simple512", "memory"]
    print(f"repmatch {repmatch.__version__}, numpy {np.__version__}, {os.cpu_count()} cores")
    results = []
    if {"maxmatch", "curve", "reduce", "certify", "simple512"} & set(parts):
        X, Y = (relu_layers(n_samples=1500, n_x=64, n_y=64, shared_dim=32, private_dim=32, rng=0) if args.quick
                else relu_layers(n_samples=10000, n_x=512, n_y=512, rng=0))
        if "maxmatch" in parts:
            results.append(bench_maxmatch(X, Y))
        if "curve" in parts:
            results.append(bench_curve(X, Y))
        if "reduce" in parts:
            results.append(bench_reduce(X, Y))
        if "certify" in parts:
            results.append(bench_certify(X, Y))
        if "simple512" in parts:
            results.append(bench_simple_large(X, Y, target_s=60.0))
    if "simple" in parts:
        results.append(bench_simple(n_samples=600, n=24) if args.quick else bench_simple())
    if "memory" in parts:
        results.append(bench_memory())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
