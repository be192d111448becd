"""Dask tree reduction of a stored 10-million-row layer pair with 1 and 2 workers (issue 6).

Run:  python benchmarks/bench_dask.py                       (writes the store once, ~6 minutes on 2 cores)
      python benchmarks/bench_dask.py --rows 1000000         (a quicker check)
      python benchmarks/bench_dask.py --simple               (simple matches: serial vs parallel tasks)

The pair (X, Y) is ReLU-like float32 activations, ``--rows`` rows x (``--neurons`` + ``--neurons``)
columns, written once to two zarr stores under ``--store`` (default /tmp/repmatch-bench-dask) in
row chunks of ``--chunk-rows`` and reused by later runs. Then:

  serial  : one process reads the chunks in order and updates one Reduction (no dask, BLAS on one
            thread as in a dask worker)
  dask 1  : reduce_dask on a LocalCluster with 1 single-threaded worker process
  dask 2  : the same with 2 worker processes

For each it prints the time, rows/s, and for the dask runs the peak resident memory of every worker
process (VmHWM, which includes the ~0.1-0.2 GB of Python + NumPy + dask every worker holds)
next to the size of one chunk: memory per worker is bounded by the chunk size, not by the data.
It checks the dask result equals the serial one (moments to 1e-10 relative) and prints the
speed-up of 2 workers over 1.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

import repmatch
from repmatch import distributed as dd


def _block(block_id, rows, n, seed, total):
    """Chunk ``block_id`` of a ReLU layer pair sharing a 16-dim latent space (deterministic)."""
    g = np.random.default_rng([seed, block_id])
    start = block_id * rows
    b = min(rows, total - start)
    latent = g.standard_normal((b, 16), dtype=np.float32)
    mix = np.random.default_rng(seed).standard_normal((2, 16, n), dtype=np.float32)
    x = np.maximum(latent @ mix[0] + 0.2 * g.standard_normal((b, n), dtype=np.float32), 0)
    y = np.maximum(latent @ mix[1] + 0.2 * g.standard_normal((b, n), dtype=np.float32), 0)
    return x, y


def write_store(path_x, path_y, rows, n, chunk_rows, seed=0):
    import zarr

    if os.path.exists(path_x) and os.path.exists(path_y):
        zx, zy = zarr.open_array(path_x, mode="r"), zarr.open_array(path_y, mode="r")
        if zx.shape == (rows, n) and zy.shape == (rows, n) and zx.chunks[0] == chunk_rows:
            print(f"reusing {path_x} and {path_y}")
            return
    import dask
    import dask.array as da

    t0 = time.perf_counter()
    n_blocks = -(-rows // chunk_rows)
    for side, path in ((0, path_x), (1, path_y)):
        parts = [da.from_delayed(dask.delayed(lambda i, s=side: _block(i, chunk_rows, n, seed, rows)[s])(i),
                                 shape=(min(chunk_rows, rows - i * chunk_rows), n), dtype=np.float32)
                 for i in range(n_blocks)]
        with dask.config.set(scheduler="threads", num_workers=2):
            dd.save_zarr(da.concatenate(parts), path, chunk_rows=chunk_rows, overwrite=True)
    print(f"wrote {path_x} and {path_y} in {time.perf_counter() - t0:.1f} s")


def _peak_rss_gb():
    """Peak resident memory of this process (VmHWM: reset at exec, so a worker process does not
    inherit the peak of the process that started it, as ru_maxrss does)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def serial(path_x, path_y, chunk_rows):
    import zarr

    from threadpoolctl import threadpool_limits

    zx, zy = zarr.open_array(path_x, mode="r"), zarr.open_array(path_y, mode="r")
    r = repmatch.Reduction(zx.shape[1], zy.shape[1])
    with threadpool_limits(1):  # as in a dask worker (distributed sets OMP/OPENBLAS_NUM_THREADS=1)
        for s in range(0, zx.shape[0], chunk_rows):
            r.update(zx[s : s + chunk_rows], zy[s : s + chunk_rows])
    return r


def bench_simple(workers):
    """Simple matches of a 96 + 96 ReLU layer pair: serial vs simple_matches_parallel."""
    from threadpoolctl import threadpool_limits

    from repmatch.testing import relu_layers

    X, Y = relu_layers(n_samples=4000, n_x=96, n_y=96, shared_dim=48, private_dim=48)
    r = repmatch.Reduction.from_arrays(X, Y)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        ref = repmatch.simple_matches(r, eps=0.3)
    t_serial = time.perf_counter() - t0
    print(f"[simple serial] {len(ref)} simple matches of {ref.maximum.size} neurons: {t_serial:.1f} s")
    for k in workers:
        with dd.get_client(n_workers=k, threads_per_worker=1, processes=True) as c:
            c.wait_for_workers(k)
            t0 = time.perf_counter()
            par = dd.simple_matches_parallel(r, eps=0.3, client=c)
            t = time.perf_counter() - t0
        assert par.to_dict() == ref.to_dict(), "parallel simple matches differ from serial"
        print(f"[simple dask {k} worker{'s' if k > 1 else ''}] {t:.1f} s, {t_serial / t:.2f}x serial, identical")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--neurons", type=int, default=64, help="neurons per layer (default 64 + 64)")
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument("--store", default="/tmp/repmatch-bench-dask")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--simple", action="store_true", help="only time simple_matches_parallel against serial")
    args = ap.parse_args()
    if args.simple:
        bench_simple(args.workers)
        return
    os.makedirs(args.store, exist_ok=True)
    tag = f"{args.rows}x{args.neurons}-c{args.chunk_rows}"
    px, py = (os.path.join(args.store, f"{s}-{tag}.zarr") for s in ("x", "y"))
    write_store(px, py, args.rows, args.neurons, args.chunk_rows)
    gb = 2 * args.rows * args.neurons * 4 / 1e9
    chunk_mb = args.chunk_rows * args.neurons * 4 / 2**20
    print(f"data: X and Y each {args.rows:,} rows x {args.neurons} neurons float32 ({gb:.2f} GB in all, "
          f"zarr default compression); chunks of {args.chunk_rows:,} rows = {chunk_mb:.0f} MiB per side, "
          f"{2 * chunk_mb * 3:.0f} MiB with the float64 joint copy; {os.cpu_count()} CPU cores")

    t0 = time.perf_counter()
    ref = serial(px, py, args.chunk_rows)
    t_serial = time.perf_counter() - t0
    print(f"[serial] 1 process, no dask, 1 BLAS thread: {t_serial:.1f} s, {args.rows / t_serial / 1e6:.2f} M rows/s")

    times = {}
    for k in args.workers:
        with dd.get_client(n_workers=k, threads_per_worker=1, processes=True, memory_limit=0) as c:
            c.wait_for_workers(k)
            base = c.run(_peak_rss_gb)
            t0 = time.perf_counter()
            r = dd.reduce_dask(px, py, client=c)
            times[k] = time.perf_counter() - t0
            peak = c.run(_peak_rss_gb)
        err = np.abs(r.comoment - ref.comoment).max() / np.abs(ref.comoment).max()
        assert r.n_samples == args.rows and err < 1e-10, f"dask result differs from serial: {err:.2e}"
        per = ", ".join(f"{peak[w]:.2f} GB (at start {base[w]:.2f})" for w in sorted(peak))
        print(f"[dask {k} worker{'s' if k > 1 else ''}] {times[k]:.1f} s, {args.rows / times[k] / 1e6:.2f} M rows/s; "
              f"peak RSS per worker: {per}; max rel. diff vs serial {err:.1e}")
    if 1 in times and 2 in times:
        print(f"[speed-up] 2 workers vs 1: {times[1] / times[2]:.2f}x (on {os.cpu_count()} cores; the scheduler "
              f"and this client share them)")


if __name__ == "__main__":
    main()
