"""Dask: reductions of chunked activations as a tree, and sweeps as parallel tasks.

Activations too large for one machine's memory (or one machine's cores) are reduced where their
chunks are: every row chunk of the pair (X, Y) becomes a :class:`~repmatch.Reduction` on a worker,
and the per-chunk reductions are merged pairwise as a balanced tree with :meth:`Reduction.merge`
(the exact Chan et al. merge), in the same pairing as :meth:`Reduction.merge_all`. The result is
the reduction of all rows: it equals ``Reduction.merge_all`` of the per-chunk reductions bit for
bit and a single-machine ``Reduction.from_arrays`` to rounding (moments to 1e-10 relative, tested),
so every measure computed from it is the single-machine one. A worker holds one chunk (plus its
float64 copy) and O(n^2) statistics at a time: memory per worker is bounded by the chunk size,
not by the data.

Inputs are dask arrays, zarr arrays or paths to zarr stores (:func:`save_zarr` writes them), NumPy
arrays, or the chunk directory that ``repmatch extract --save DIR`` writes (:func:`saved_layer`).

Sweeps over many reductions (pairs of seeds x layers) and the per-neuron searches of the simple
matches run as independent tasks; their results are those of the serial functions, in the same
order (tested).

Where the work runs: pass a ``dask.distributed.Client`` (``client=``) or a scheduler address
(``scheduler="tcp://host:8786"``); with neither, :func:`get_client` starts a LocalCluster on
127.0.0.1 for the call and closes it afterwards.

Dask, distributed and zarr are imported on first use (``pip install repmatch[dask]``).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ._validate import check_choice, check_positive_int
from .reduce import METHODS, Reduction

__all__ = [
    "get_client",
    "as_dask_array",
    "reduce_dask",
    "reduce_blocks",
    "sweep",
    "simple_matches_parallel",
    "save_zarr",
    "saved_layers",
    "saved_layer",
]


def _require_dask():
    try:
        import dask  # noqa: F401
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("repmatch.distributed needs dask[array] and distributed: pip install 'repmatch[dask]'") from exc


# ---------------------------------------------------------------------------------------------- clients
@contextlib.contextmanager
def get_client(scheduler=None, *, client=None, n_workers: int | None = None, threads_per_worker: int = 1,
               processes: bool = True, memory_limit="auto", connect_timeout: float | None = None):
    """A ``dask.distributed.Client`` for a block of work; closes only what it started.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``"tcp://10.0.0.1:8786"``); connects to it.
    client : distributed.Client, optional
        Use this client as is (neither ``scheduler`` nor the cluster options may be given then).
    n_workers, threads_per_worker, processes, memory_limit
        Options of the LocalCluster started on 127.0.0.1 when neither ``client`` nor ``scheduler``
        is given (default: one single-threaded worker process per core).
    connect_timeout : float, optional
        Seconds to wait for ``scheduler`` (default: dask's ``distributed.comm.timeouts.connect``);
        an unreachable scheduler is a ValueError naming its address.

    Returns
    -------
    contextlib context manager
        Yields the client; on exit, closes the client and the cluster if this call started them.

    Examples
    --------
    >>> with get_client(n_workers=2) as c:           # doctest: +SKIP
    ...     r = reduce_dask("a.zarr", "b.zarr", client=c)
    """
    _require_dask()
    from distributed import Client, LocalCluster

    if client is not None:
        if scheduler is not None:
            raise ValueError("give either client or scheduler, not both")
        if not isinstance(client, Client):
            raise ValueError(f"client must be a distributed.Client, got {type(client).__name__}")
        yield client
        return
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler:
            raise ValueError(f"scheduler must be an address such as 'tcp://127.0.0.1:8786', got {scheduler!r}")
        try:
            c = Client(scheduler, timeout=connect_timeout) if connect_timeout is not None else Client(scheduler)
        except (OSError, ValueError, TypeError) as exc:  # refused, timed out, unknown host, bad address
            raise ValueError(f"scheduler {scheduler}: cannot reach the dask scheduler "
                             f"({' '.join(str(exc).split()) or type(exc).__name__})") from None
        try:
            yield c
        finally:
            c.close()
        return
    if n_workers is not None:
        n_workers = check_positive_int(n_workers, "n_workers")
    threads_per_worker = check_positive_int(threads_per_worker, "threads_per_worker")
    # Everything on loopback: tcp also for processes=False (threads), so that the scheduler has an
    # address other clients can connect to; its HTTP endpoint on a free port (not a fixed 8787).
    cluster = LocalCluster(host="127.0.0.1", protocol="tcp://", n_workers=n_workers,
                           threads_per_worker=threads_per_worker, processes=bool(processes),
                           memory_limit=memory_limit, dashboard_address="127.0.0.1:0")
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


# ---------------------------------------------------------------------------------------------- inputs
def _is_zarr_path(a) -> bool:
    return isinstance(a, (str, os.PathLike))


def as_dask_array(a, name: str = "X"):
    """A 2-D dask array from a dask array, a zarr array or store path, or an in-memory array.

    Raises ValueError naming ``name`` for anything else or for arrays that are not 2-D.

    Parameters
    ----------
    a : dask array, zarr array, str path to a zarr store, or array_like
        The activations.
    name : str
        The argument's name, for messages.

    Returns
    -------
    dask.array.Array
        2-D.
    """
    _require_dask()
    import dask.array as da

    if _is_zarr_path(a):
        path = os.fspath(a)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{name}: no such zarr store: {path}")
        try:
            arr = da.from_zarr(path)
        except Exception as exc:
            raise ValueError(f"{name}: {path} is not a zarr array ({exc})") from exc
    elif isinstance(a, da.Array):
        arr = a
    elif type(a).__module__.startswith("zarr"):
        arr = da.from_zarr(a)
    elif isinstance(a, np.ndarray) or hasattr(a, "__array__"):
        arr = np.asarray(a)
        if arr.ndim == 2:
            arr = da.from_array(arr, chunks=(max(1, min(arr.shape[0], 65536)), -1))
        else:
            raise ValueError(f"{name} must be 2-D (samples, neurons), got shape {arr.shape}")
    else:
        raise ValueError(f"{name} must be a dask array, a zarr array or path, or an array; got {type(a).__name__}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, neurons), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _aligned(X, Y, chunk_rows):
    """Rechunk X and Y to the same row chunks and a single column chunk."""
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of rows (the same inputs): X has shape {X.shape}, Y has shape {Y.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError("X and Y have no rows")
    rows = check_positive_int(chunk_rows, "chunk_rows") if chunk_rows is not None else X.chunks[0]
    X = X.rechunk({0: rows, 1: -1})
    Y = Y.rechunk({0: X.chunks[0], 1: -1})
    return X, Y


# ---------------------------------------------------------------------------------------------- tasks
def _reduce_block(x, y, method: str) -> Reduction:
    r = Reduction(x.shape[1], y.shape[1], method=method)
    r.update(x, y)
    return r


def _merge(a: Reduction, b: Reduction) -> Reduction:
    return a.merge(b)


def _tree(items, merge):
    """Balanced pairwise tree in the pairing of Reduction.merge_all."""
    while len(items) > 1:
        items = [merge(items[i], items[i + 1]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


def reduce_blocks(X, Y, *, method: str = "gram", chunk_rows: int | None = None):
    """The lazy tree reduction: a ``dask.delayed`` object whose value is the :class:`Reduction`.

    Build several of them (layers, pairs of seeds) and compute them together in one
    ``client.compute([...])`` call; :func:`reduce_dask` does this for one pair.

    Parameters
    ----------
    X, Y : as in :func:`reduce_dask`
    method : {"gram", "qr"}
        As in :class:`~repmatch.Reduction`.
    chunk_rows : int, optional
        Rows per task (default: X's row chunks).

    Returns
    -------
    dask.delayed.Delayed
        Computes to the merged :class:`~repmatch.Reduction`.
    """
    _require_dask()
    import dask

    check_choice(method, "method", METHODS)
    X, Y = _aligned(as_dask_array(X, "X"), as_dask_array(Y, "Y"), chunk_rows)
    bx = X.to_delayed().ravel()
    by = Y.to_delayed().ravel()
    block = dask.delayed(_reduce_block, pure=True)
    merge = dask.delayed(_merge, pure=True)
    return _tree([block(x, y, method) for x, y in zip(bx, by)], merge)


def reduce_dask(X, Y, *, method: str = "gram", chunk_rows: int | None = None, client=None, scheduler=None,
                n_workers: int | None = None) -> Reduction:
    """Reduce two chunked activation matrices on a dask cluster, as a tree of exact merges.

    Parameters
    ----------
    X, Y : dask array, zarr array, path to a zarr store, or array; shapes (n_samples, n_x), (n_samples, n_y)
        Activations of the two layers on the same inputs in the same order.
    method : {"gram", "qr"}
        As in :class:`~repmatch.Reduction`.
    chunk_rows : int, optional
        Rows per task (default: X's row chunks; Y is rechunked to match). Memory per worker is
        about ``chunk_rows * (n_x + n_y) * (itemsize + 8)`` bytes plus O(n^2).
    client, scheduler, n_workers
        Where to run (see :func:`get_client`).

    Returns
    -------
    Reduction
        Equal to ``Reduction.merge_all`` of the per-chunk reductions (bit for bit) and to
        ``Reduction.from_arrays(X, Y)`` up to rounding.
    """
    root = reduce_blocks(X, Y, method=method, chunk_rows=chunk_rows)
    with get_client(scheduler, client=client, n_workers=n_workers) as c:
        return c.compute(root).result()


# ---------------------------------------------------------------------------------------------- sweeps
def _curve_task(r, eps, tol):
    from .subspace import similarity_curve

    return similarity_curve(r, eps=eps, tol=tol)


def sweep(reductions: dict, eps, *, tol: float | None = None, client=None, scheduler=None,
          n_workers: int | None = None) -> dict:
    """Similarity curves of many reductions (pairs of seeds x layers) at every ε, as parallel tasks.

    One task per reduction: the ε grid of one reduction is solved in one task because each ε warm-
    starts from the match of the next larger one (see :func:`repmatch.similarity_curve`).

    Returns ``{key: SimilarityCurve}`` in the order of ``reductions``, equal to
    ``repmatch.similarity_curve(r, eps=eps)`` for every item. Reductions on a torch device are
    sent to the workers as host copies (``r.to(None)``).

    Parameters
    ----------
    reductions : dict
        ``{key: Reduction}``.
    eps : sequence of float
        The ε grid, each in [0, 1).
    tol : float, optional
        The distance tolerance of the solver (default: the reduction method's, see
        :func:`repmatch.similarity_curve`).
    client, scheduler, n_workers
        Where to run (see :func:`get_client`).

    Returns
    -------
    dict
        ``{key: SimilarityCurve}`` in the order of ``reductions``.
    """
    from ._validate import check_eps_grid

    if not isinstance(reductions, dict) or not reductions:
        raise ValueError("reductions must be a non-empty dict {key: Reduction}")
    for k, r in reductions.items():
        if not isinstance(r, Reduction):
            raise ValueError(f"reductions[{k!r}] must be a Reduction, got {type(r).__name__}")
    grid = check_eps_grid(eps)
    # device reductions are shipped as host copies (O(n^2) numbers): worker processes need no GPU,
    # and the curve equals the device one (tests/test_torch_backend.py)
    shipped = {k: r if r.device is None else r.to(None) for k, r in reductions.items()}
    with get_client(scheduler, client=client, n_workers=n_workers) as c:
        futures = {k: c.submit(_curve_task, r, grid, tol, pure=False) for k, r in shipped.items()}
        results = c.gather(list(futures.values()))
    return dict(zip(futures, results))


def _deletion_task(geo, I, J, thr, jobs):
    """The searches of one task, in the order of ``jobs``: the fixed-order ones as one shared tree
    (as :func:`repmatch.simple_matches` runs them), the random orders one tree each."""
    from .simple import _Searches

    search = _Searches(geo, I, J, thr)
    fixed = [v for v, order, k in jobs if k == 0]
    tree = search(fixed, search.S) if fixed else {}
    return [tree[v] if k == 0 else search([v], order)[v] for v, order, k in jobs]


def simple_matches_parallel(X, Y=None, eps=None, *, rng=None, restarts: int = 0, method: str | None = None,
                            tol: float | None = None, tasks: int | None = None, client=None, scheduler=None,
                            n_workers: int | None = None):
    """:func:`repmatch.simple_matches` with the v-minimal searches spread over a dask cluster.

    Same arguments and the same result (matches, their order and ``found_for``) as the serial
    function: the deletion orders are drawn on the client from ``rng`` in the serial order and the
    searches run as ``tasks`` tasks (default: 4 per worker). Within a task the fixed-order searches
    share one tree (:mod:`repmatch._searchtree`), so fewer, larger tasks share more.

    Parameters
    ----------
    X, Y, eps, rng, restarts, method, tol
        As in :func:`repmatch.simple_matches`.
    tasks : int, optional
        Number of tasks (default: 4 per worker).
    client, scheduler, n_workers
        Where to run (see :func:`get_client`).

    Returns
    -------
    SimpleMatches
        Equal to the serial function's result.
    """
    from .simple import _assemble, _plan

    geo, eps, thr, I, J, S, gen, restarts, hi = _plan(X, Y, eps, rng=rng, restarts=restarts, method=method, tol=tol)
    if not isinstance(getattr(geo.space, "G", getattr(geo.space, "F", None)), np.ndarray):
        raise ValueError("X is a reduction on a torch device; simple_matches_parallel needs a host reduction "
                         "(use reduction.to(None))")
    jobs = list(_jobs(S, gen, restarts))
    with get_client(scheduler, client=client, n_workers=n_workers) as c:
        n_tasks = tasks if tasks is not None else 4 * max(1, len(c.scheduler_info().get("workers", {})))
        n_tasks = max(1, min(check_positive_int(n_tasks, "tasks"), len(jobs) or 1))
        [geo_f] = c.scatter([geo], broadcast=True)
        # contiguous slices keep the results in the serial order when concatenated
        bounds = np.linspace(0, len(jobs), n_tasks + 1).astype(int)
        futures = [c.submit(_deletion_task, geo_f, I, J, thr, jobs[a:b], pure=False)
                   for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        results = [res for part in c.gather(futures) for res in part]
    return _assemble(geo, eps, restarts, I, J, [(v, res) for (v, _, _), res in zip(jobs, results)], hi)


def _jobs(S, gen, restarts):
    from .simple import _orders

    for v in S:
        for k, order in enumerate(_orders(S, int(v), gen, restarts)):
            yield int(v), order, k


# ---------------------------------------------------------------------------------------------- storage
def save_zarr(array, path, *, chunk_rows: int = 65536, overwrite: bool = False) -> str:
    """Write a 2-D array (NumPy, dask, or anything dask reads) to a zarr store chunked by rows.

    The store is written to ``path + ".tmp-<pid>"`` and renamed into place when complete, so a
    store at ``path`` is always whole. Returns ``path``.

    Parameters
    ----------
    array : array_like or dask array
        2-D.
    path : str
        Where the store goes.
    chunk_rows : int
        Rows per chunk.
    overwrite : bool
        Replace an existing store at ``path``.

    Returns
    -------
    str
        ``path``.
    """
    _require_dask()
    import shutil

    import dask.array as da

    path = os.fspath(path)
    chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"path {path} exists; pass overwrite=True to replace it")
    arr = as_dask_array(array, "array").rechunk({0: chunk_rows, 1: -1})
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    try:
        da.to_zarr(arr, tmp, overwrite=True)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def saved_layers(directory) -> dict:
    """``{network: {layer: entry}}`` from the manifest of a ``repmatch extract --save DIR`` directory.

    Parameters
    ----------
    directory : str or PathLike
        A ``repmatch extract --save`` directory.

    Returns
    -------
    dict
        ``{network: {layer: entry}}``.
    """
    from .io import read_saved_manifest

    return read_saved_manifest(directory).get("networks", {})


def saved_layer(directory, network: str, layer: str):
    """One layer of one network from a ``repmatch extract --save DIR`` directory, as a dask array
    with one chunk per saved batch (read lazily on the workers).

    Parameters
    ----------
    directory : str or PathLike
        A ``repmatch extract --save`` directory.
    network, layer : str
        Which network and layer.

    Returns
    -------
    dask.array.Array
        One chunk per saved batch.
    """
    _require_dask()
    import dask
    import dask.array as da

    directory = os.fspath(directory)
    nets = saved_layers(directory)
    if network not in nets:
        raise ValueError(f"network must be one of {sorted(nets)}, got {network!r}")
    if layer not in nets[network]:
        raise ValueError(f"layer {layer!r} not saved for network {network!r}; saved layers: {list(nets[network])}")
    entry = nets[network][layer]
    blocks = []
    for rel in entry["chunks"]:
        f = os.path.join(directory, rel)
        shape = np.load(f, mmap_mode="r").shape  # reads the header only
        blocks.append(da.from_delayed(dask.delayed(np.load, pure=True)(f), shape=shape, dtype=entry["dtype"]))
    return da.concatenate(blocks, axis=0)
