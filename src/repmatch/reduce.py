"""Streaming reductions: one pass over batches of rows of (X, Y), mergeable, memory O(n^2).

Every measure in repmatch depends on the data only through low-order statistics of the joint
activation matrix ``M = [X Y]`` (shape ``(n_samples, n_x + n_y)``):

* the subspace match (spec/subspace-match.md section 4) needs the geometry of the columns of M,
  i.e. the uncentred Gram matrix ``G = M^T M`` or a factor ``R`` with ``M = Q R``;
* correlation matching, sparse prediction, clustering and CKA (spec/convergent-learning.md section 1)
  need counts, means and centred second moments within and between the two layers.

:class:`Reduction` accumulates all of these in float64 in one pass. Centred co-moments are merged
with the pairwise update of Chan, Golub & LeVeque (1979), so they stay accurate even when means are
large compared with standard deviations; the uncentred Gram matrix is rebuilt from them as
``C + n mu mu^T``. Two reductions of disjoint sets of rows merge into the reduction of all of them
(the result equals a single pass up to rounding), so batches can be reduced on different machines.

Two methods, which differ only in what they keep for the subspace match:

``"gram"`` (default)
    Keeps the moments only. Fast: about the cost of ``M.T @ M``. Each batch is read once: its rows
    are shifted by the running mean (the first batch by its own mean), converted to float64 a chunk
    at a time into a cache-sized buffer with an extra row of ones, and added to
    ``sum [z; 1][z; 1]^T`` by a symmetric rank-k product while the chunk is in cache; the batch's
    mean and centred co-moment follow from those shifted sums (:func:`shifted_moments`), then the
    Chan merge. Conv outputs ``(batch, C, *spatial)`` are read in place (every (input, position) a
    sample), without a transposed copy. Forming a Gram matrix squares the condition number, so relative distances near 0
    are resolved only to about ``GRAM_TOL`` (1e-6): an exact match is found at ``eps=0`` when every
    neuron of it lies within ``GRAM_TOL`` (relative) of the other side's span.
``"qr"``
    Additionally keeps the triangular factor ``R`` of the uncentred data, updated as
    ``R <- qr([R; batch]).R`` (TSQR). About 5-7x slower per row, but distances are resolved to
    about ``QR_TOL`` (1e-10): use it when exact matches (``eps`` near 0) matter.

Devices
-------
``Reduction(..., device="cuda")`` (any PyTorch device, ``"cpu"`` included) keeps the accumulators as
float64 torch tensors on that device and runs the batch update with torch operations there, so
activations produced on a GPU are reduced where they are: :meth:`Reduction.update` accepts torch
tensors (moved to the device if needed) or arrays, and copies nothing back to the host but one
boolean (the finiteness check) per batch. Everything that reads the statistics (``mean``,
``comoment``, ``gram()``, ``save``, ``merge`` with a NumPy reduction) sees a host float64 copy
made lazily, once per update, and cached. Accumulation is float64 on every device, so the moments
agree with the NumPy path to rounding (tested to 1e-10 relative); float32 accumulation was not
adopted. Torch is imported only when a device is given. See docs/scaling.md.
"""

from __future__ import annotations


import numpy as np
import scipy.linalg

from ._atomic import atomic_savez
from ._validate import as_real_array, check_finite, check_positive_int, to_numpy

__all__ = ["Reduction", "GRAM_TOL", "QR_TOL", "METHODS"]

#: Numerical tolerance of the subspace match on a Gram reduction: relative distances (and singular
#: values of unit-norm neuron sets) below this are treated as zero. Rounding in a float64 Gram matrix
#: leaves in-span residuals of about sqrt(machine eps * n) ~ 1e-7; 1e-6 sits an order above that.
GRAM_TOL = 1e-6
#: The same tolerance on a QR reduction or in-memory QR: residuals are ~1e-15 there.
QR_TOL = 1e-10

METHODS = ("gram", "qr")

_FORMAT_VERSION = 1


class Reduction:
    """Streaming, mergeable sufficient statistics of two layers observed on the same inputs.

    Parameters
    ----------
    n_x, n_y : int
        Number of neurons (columns) of the first and second layer.
    method : {"gram", "qr"}
        What is kept for the subspace match (see module docstring). Moments are kept in both.
    device : None, str or torch.device
        ``None`` (default): NumPy accumulators on the host. Otherwise a PyTorch device
        (``"cuda"``, ``"cuda:1"``, ``"cpu"``...): float64 torch accumulators on it (module docstring).

    Examples
    --------
    >>> r = Reduction(3, 2)
    >>> for xb, yb in batches:          # doctest: +SKIP
    ...     r.update(xb, yb)
    >>> repmatch.maximum_match(r, eps=0.25)   # doctest: +SKIP

    Notes
    -----
    Memory is O((n_x + n_y)^2) whatever the number of samples. Batches are copied to float64
    before accumulation, so float32 (or float16) activations lose nothing further.
    """

    def __init__(self, n_x: int, n_y: int, *, method: str = "gram", device=None):
        self.n_x = check_positive_int(n_x, "n_x")
        self.n_y = check_positive_int(n_y, "n_y")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.device = None if device is None else _torch_backend().as_device(device)
        n = self.n_x + self.n_y
        self.n_samples = 0
        # The accumulators: NumPy arrays, or float64 torch tensors on self.device. Read them through
        # _mean / _comoment / _r, which give host arrays.
        self._acc = {"mean": self._to_acc(np.zeros(n)), "comoment": self._to_acc(np.zeros((n, n))),
                     "r": self._to_acc(np.zeros((0, n))) if method == "qr" else None}
        self._cache: dict = {}

    # ------------------------------------------------------------------ backend
    def _to_acc(self, a):
        """``a`` (array or tensor) as an accumulator of this reduction's backend (float64)."""
        if self.device is None:
            return a if a is None or isinstance(a, np.ndarray) else to_numpy(a)
        return _torch_backend().to_device(a, self.device)

    def _host(self, name: str):
        a = self._acc[name]
        if a is None or isinstance(a, np.ndarray):
            return a
        key = ("host", name)  # one device -> host copy per update, cached (cleared by updates)
        if key not in self._cache:
            self._cache[key] = a.cpu().numpy()
        return self._cache[key]

    def _set_acc(self, name: str, value) -> None:
        self._acc[name] = None if value is None else self._to_acc(value)
        self._cache.clear()

    _mean = property(lambda self: self._host("mean"), lambda self, v: self._set_acc("mean", v),
                     doc="Host float64 copy of the mean accumulator (the array itself on the NumPy path).")
    _comoment = property(lambda self: self._host("comoment"), lambda self, v: self._set_acc("comoment", v),
                         doc="Host float64 copy of the centred co-moment accumulator.")
    _r = property(lambda self: self._host("r"), lambda self, v: self._set_acc("r", v),
                  doc="Host float64 copy of the TSQR factor (``method='qr'``), else None.")

    def device_tensors(self) -> dict:
        """The accumulators where they live: ``{"mean", "comoment", "r"}`` (torch tensors on
        ``device``, or NumPy arrays for a host reduction). Not copies: do not modify them."""
        return dict(self._acc)

    def to(self, device) -> "Reduction":
        """A copy of this reduction on ``device`` (a torch device, or ``None`` for NumPy on the host)."""
        out = Reduction(self.n_x, self.n_y, method=self.method, device=device)
        out.n_samples = self.n_samples
        for name in ("mean", "comoment", "r"):
            a = self._host(name) if device is None else self._acc[name]
            if a is not None:
                out._acc[name] = out._to_acc(_copy(a))
        return out

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, X, Y, *, method: str = "gram", batch_size: int = 65536, device=None) -> "Reduction":
        """Reduce two in-memory activation matrices (rows = samples) in batches of ``batch_size``.

        With ``device`` set, ``X`` and ``Y`` may be torch tensors (kept where they are until the
        batch is moved to ``device``); see the module docstring.
        """
        from ._validate import check_pair

        batch_size = check_positive_int(batch_size, "batch_size")
        if device is not None:
            Xt, Yt = _torch_backend().pair(X, Y)
            r = cls(Xt.shape[1], Yt.shape[1], method=method, device=device)
            for start in range(0, Xt.shape[0], batch_size):
                r.update(Xt[start : start + batch_size], Yt[start : start + batch_size])
            return r
        Xa, Ya = check_pair(X, Y, dtype=None)
        r = cls(Xa.shape[1], Ya.shape[1], method=method)
        for start in range(0, Xa.shape[0], batch_size):
            r._update_checked(Xa[start : start + batch_size], Ya[start : start + batch_size])
        return r

    @property
    def n_neurons(self) -> int:
        return self.n_x + self.n_y

    def update(self, x, y) -> "Reduction":
        """Add a batch of rows: ``x`` of shape (b, n_x) and ``y`` of shape (b, n_y), the same b inputs.

        Conv outputs may be given as they are: an array of shape (batch, n_x, *spatial) (e.g.
        (B, C, H, W)) is a batch of ``batch * prod(spatial)`` samples, one per (input, position),
        ordered input-major: the papers' convention, without a transposed copy. ``x`` and ``y`` must
        have the same number of samples.

        Returns ``self`` so that calls can be chained. Raises ValueError naming ``x`` or ``y`` for
        wrong shapes or non-finite values; nothing is accumulated from a rejected batch.
        On a device reduction ``x`` and ``y`` may be torch tensors (on any device) or arrays.
        """
        return self._update(x, y, ("x", "y"))

    def _update(self, x, y, names, pool=None) -> "Reduction":
        """:meth:`update` with the two sides called ``names`` in error messages; ``pool`` as in
        :func:`shifted_moments` (host Gram path only)."""
        if self.device is not None:
            backend = _torch_backend()
            z = backend.joint_batch(self, x, y, names)  # float64 (b, n) tensor on self.device
            r_new = backend.stack_r([self._acc["r"], z], self.n_neurons) if self._acc["r"] is not None else None
            mean_b, com_b = backend.checked_moments(self, z, names)  # raises before anything is kept
            if r_new is not None:
                self._acc["r"] = r_new
            self._combine(z.shape[0], mean_b, com_b)
            self._cache.clear()
            return self
        xa = _as_blocks(x, names[0], self.n_x, "n_x")
        ya = _as_blocks(y, names[1], self.n_y, "n_y")
        rows = [a.shape[0] * a.shape[2] for a in (xa, ya)]
        if rows[0] != rows[1]:
            raise ValueError(
                f"{names[0]} and {names[1]} must have the same number of rows (the same inputs): {names[0]} has "
                f"shape {_shape_of(x)} ({rows[0]} samples), {names[1]} has shape {_shape_of(y)} ({rows[1]} samples)"
            )
        if xa.shape[2] != ya.shape[2]:
            if np.ndim(x) > 2 and np.ndim(y) > 2:  # two conv outputs: the same images and positions
                raise ValueError(
                    f"{names[0]} and {names[1]} are conv outputs of different shapes {_shape_of(x)} and "
                    f"{_shape_of(y)}: each (input, position) of one must be a sample of the other")
            xa, ya = (_block_rows(a)[:, :, None] for a in (xa, ya))  # rows against a conv output
        if self.method == "qr":  # the factor needs the rows themselves
            self._update_checked(_block_rows(xa), _block_rows(ya), names)
        else:
            self._update_blocks([xa, ya], names, pool, (x, y))
        return self

    def _update_blocks(self, parts, names, pool=None, originals=None) -> None:
        """Gram path: one batch given as (B, n_i, L) parts, X's neurons first (see shifted_moments)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if self.n_samples == 0:
                rows = parts[0].shape[0] * parts[0].shape[2]
                shift = np.concatenate([p.sum(axis=(0, 2), dtype=np.float64) for p in parts]) / rows
            else:
                shift = self._mean
            rows, mean_b, com_b = shifted_moments(parts, shift, names, pool, originals)
        self._combine(rows, mean_b, com_b)
        self._cache.clear()

    def _update_checked(self, xa: np.ndarray, ya: np.ndarray, names=("x", "y")) -> None:
        b = xa.shape[0]
        n = self.n_neurons
        if self._r is None:
            self._update_blocks([xa[:, :, None], ya[:, :, None]], names)
            return
        z = np.empty((b, n), dtype=np.float64)
        z[:, : self.n_x] = xa
        z[:, self.n_x :] = ya
        if not np.isfinite(z).all():  # one pass; name the culprit only on failure
            check_finite(z[:, : self.n_x], names[0])
            check_finite(z[:, self.n_x :], names[1])
        stacked = np.vstack([self._r, z])
        self._r = scipy.linalg.qr(stacked, mode="r", overwrite_a=True, check_finite=False)[0][: min(n, stacked.shape[0])]
        mean_b = z.mean(axis=0)
        z -= mean_b
        com_b = z.T @ z  # NumPy dispatches A.T @ A to a symmetric rank-k update
        self._combine(b, mean_b, com_b)
        self._cache.clear()

    def add_moments(self, n_samples: int, mean, comoment) -> "Reduction":
        """Add a batch that is already reduced to (count, per-neuron mean, centred co-moment).

        For producers that centre activations where they are made (e.g. inside a forward hook) and
        never build the (rows, neurons) matrix: ``mean`` has shape (n_x + n_y,) and ``comoment``
        (n_x + n_y, n_x + n_y), X's neurons first. The batch is merged with the same Chan et al.
        update as :meth:`update`. Not available for ``method="qr"``, whose factor needs the rows.
        """
        if self.method == "qr":
            raise ValueError("add_moments needs a 'gram' reduction: the 'qr' factor is built from the rows (use update)")
        n_b = check_positive_int(n_samples, "n_samples")
        n = self.n_neurons
        if self.device is None:  # tensors on any device are copied to the host
            mean = np.asarray(to_numpy(mean), dtype=np.float64)
            comoment = np.asarray(to_numpy(comoment), dtype=np.float64)
        else:  # arrays or tensors on any device, moved to this reduction's device
            mean, comoment = self._to_acc(mean), self._to_acc(comoment)
        if tuple(mean.shape) != (n,):
            raise ValueError(f"mean must have shape ({n},), got {tuple(mean.shape)}")
        if tuple(comoment.shape) != (n, n):
            raise ValueError(f"comoment must have shape ({n}, {n}), got {tuple(comoment.shape)}")
        if self.device is None:
            check_finite(mean, "mean")
            check_finite(comoment, "comoment")
        elif not bool(_torch_backend().all_finite(mean, comoment)):  # one host sync
            bad = "mean" if not bool(_torch_backend().all_finite(mean)) else "comoment"
            raise ValueError(f"{bad} contains non-finite values (NaN or Inf)")
        self._combine(n_b, mean, comoment)
        self._cache.clear()
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, com_b: np.ndarray) -> None:
        """Chan et al. pairwise merge of (count, mean, centred co-moment)."""
        acc = self._acc
        mean_b, com_b = self._to_acc(mean_b), self._to_acc(com_b)
        n_a = self.n_samples
        if n_a == 0:
            self.n_samples = n_b
            acc["mean"] = _copy(mean_b)
            acc["comoment"] = _copy(com_b)
            return
        n = n_a + n_b
        delta = mean_b - acc["mean"]
        acc["mean"] = acc["mean"] + delta * (n_b / n)
        acc["comoment"] = acc["comoment"] + com_b + _outer(delta) * (n_a * n_b / n)
        self.n_samples = n

    def merge(self, other: "Reduction") -> "Reduction":
        """Return the reduction of the union of the rows seen by ``self`` and ``other`` (disjoint sets)."""
        if not isinstance(other, Reduction):
            raise ValueError(f"other must be a Reduction, got {type(other).__name__}")
        if (other.n_x, other.n_y) != (self.n_x, self.n_y):
            raise ValueError(
                f"cannot merge reductions of different layers: (n_x, n_y) = {(self.n_x, self.n_y)} "
                f"and {(other.n_x, other.n_y)}"
            )
        if other.method != self.method:
            raise ValueError(f"cannot merge a {self.method!r} reduction with a {other.method!r} reduction")
        out = self.copy()
        if other.n_samples == 0:
            return out
        out._combine(other.n_samples, other._acc["mean"], other._acc["comoment"])
        if out._acc["r"] is not None:
            parts = [out._acc["r"], out._to_acc(other._acc["r"])]
            if self.device is not None:
                out._acc["r"] = _torch_backend().stack_r(parts, self.n_neurons)
            else:
                stacked = np.vstack(parts)
                if stacked.shape[0]:
                    out._acc["r"] = scipy.linalg.qr(stacked, mode="r", check_finite=False)[0][: min(self.n_neurons, stacked.shape[0])]
        out._cache = {}
        return out

    def __add__(self, other: "Reduction") -> "Reduction":
        return self.merge(other)

    @staticmethod
    def merge_all(reductions) -> "Reduction":
        """Merge an iterable of reductions pairwise as a balanced tree (as a distributed engine would)."""
        items = list(reductions)
        if not items:
            raise ValueError("reductions must contain at least one Reduction")
        while len(items) > 1:
            items = [items[i].merge(items[i + 1]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
        return items[0]

    def copy(self) -> "Reduction":
        return self.to(self.device)

    # ------------------------------------------------------------------ statistics
    def _require_samples(self, minimum: int = 1) -> None:
        if self.n_samples < minimum:
            raise ValueError(
                f"the reduction has seen {self.n_samples} sample(s); at least {minimum} needed (call update first)"
            )

    @property
    def mean(self) -> np.ndarray:
        """Per-neuron means, X's columns first, shape (n_x + n_y,)."""
        self._require_samples()
        return self._mean.copy()

    @property
    def comoment(self) -> np.ndarray:
        """Centred co-moment matrix sum_i (z_i - mu)(z_i - mu)^T of the joint columns [X Y]."""
        self._require_samples()
        return self._comoment.copy()

    def covariance(self, ddof: int = 0) -> np.ndarray:
        """Joint covariance matrix of [X Y] (within-X, between, within-Y blocks)."""
        self._require_samples(ddof + 1)
        return self._comoment / (self.n_samples - ddof)

    def gram(self) -> np.ndarray:
        """Uncentred Gram matrix M^T M of the joint activation matrix, float64, shape (n, n)."""
        self._require_samples()
        if "gram" not in self._cache:
            g = self._comoment + self.n_samples * np.outer(self._mean, self._mean)
            if self._r is not None:
                g = self._r.T @ self._r
            self._cache["gram"] = g
        return self._cache["gram"]

    def column_norms(self) -> np.ndarray:
        """Euclidean norm of every activation vector (sqrt of the Gram diagonal)."""
        return np.sqrt(np.maximum(np.diag(self.gram()), 0.0))

    @property
    def r_factor(self) -> np.ndarray | None:
        """Triangular factor R of the uncentred data (``method="qr"`` only), ``M = Q R``."""
        return None if self._r is None else self._r.copy()

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the reduction to an ``.npz`` file atomically (temporary file, then rename)."""
        arrays = {
            "repmatch_reduction": np.array(_FORMAT_VERSION),
            "method": np.array(self.method),
            "n_x": np.array(self.n_x),
            "n_y": np.array(self.n_y),
            "n_samples": np.array(self.n_samples),
            "mean": self._mean,
            "comoment": self._comoment,
        }
        if self._r is not None:
            arrays["r"] = self._r
        atomic_savez(path, **arrays)

    @classmethod
    def load(cls, path) -> "Reduction":
        with np.load(path, allow_pickle=False) as f:
            return cls._from_npz_dict(f, str(path))

    @classmethod
    def _from_npz_dict(cls, f, source: str = "<npz>") -> "Reduction":
        if "repmatch_reduction" not in f:
            raise ValueError(f"{source} is not a repmatch reduction file (no 'repmatch_reduction' entry)")
        r = cls(int(f["n_x"]), int(f["n_y"]), method=str(f["method"]))
        r.n_samples = int(f["n_samples"])
        r._mean = np.array(f["mean"], dtype=np.float64)
        r._comoment = np.array(f["comoment"], dtype=np.float64)
        if r.method == "qr":
            r._r = np.array(f["r"], dtype=np.float64)
        return r

    def __repr__(self) -> str:
        dev = "" if self.device is None else f", device={str(self.device)!r}"
        return f"Reduction(n_x={self.n_x}, n_y={self.n_y}, method={self.method!r}, n_samples={self.n_samples}{dev})"


# --------------------------------------------------------------------------------------- batch kernel
#: Size of the float64 work buffer of the batch kernel, in doubles (2 MiB): each chunk of rows is
#: converted into it and multiplied while it is still in cache (L2/L3).
_CHUNK_DOUBLES = 262144
#: Fewest rows per chunk: below this the symmetric rank-k product spends more time reading and
#: writing its n x n output than multiplying.
_MIN_CHUNK_ROWS = 512
#: From this many neurons (+1) on, chunks have at least _WIDE_CHUNK_ROWS rows: converting a row costs
#: n operations against n^2 / 2 for its product, so cache residency no longer matters but long
#: products keep several BLAS threads busy.
_WIDE = 512
_WIDE_CHUNK_ROWS = 4096
#: Fewest rows per chunk when a batch is split between threads.
_MIN_SPLIT_ROWS = 256
#: Most extra memory the thread split of one batch may take (each thread's sums and buffers).
_SPLIT_BYTES = 256 * 2**20


def _shape_of(a) -> tuple:
    return tuple(getattr(a, "shape", np.shape(a)))


def _as_blocks(a, name: str, width: int, wname: str) -> np.ndarray:
    """One side of a batch as a 3-D (B, n, L) view: (b, n) -> (b, n, 1); (B, n, *spatial) -> (B, n, L).

    Checks dtype and shape (naming ``name``), not finiteness: the batch kernel detects NaN/Inf from
    its sums and then names the culprit, so valid batches are read only once."""
    arr = as_real_array(a, name)
    if arr.ndim < 2:
        raise ValueError(f"{name} must be 2-D (samples, neurons) or (batch, neurons, *spatial), got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.shape[1] != width:
        raise ValueError(f"{name} must have {wname}={width} {'columns' if arr.ndim == 2 else 'channels (axis 1)'}, "
                         f"got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} has no samples (shape {arr.shape}); need at least one")
    return arr[:, :, None] if arr.ndim == 2 else arr.reshape(arr.shape[0], arr.shape[1], -1)


def _block_rows(a: np.ndarray) -> np.ndarray:
    """(B, n, L) -> (B * L, n) rows, image-major (a copy unless L == 1)."""
    return a[:, :, 0] if a.shape[2] == 1 else a.transpose(0, 2, 1).reshape(-1, a.shape[1])


def _row_blocks(B: int, L: int, chunk_rows: int):
    """Split the B * L rows (image-major) into chunks ``(b0, b1, l0, l1)`` of about ``chunk_rows``:
    whole images when an image has at most ``chunk_rows`` positions, else runs of one image."""
    if L <= chunk_rows:
        step = max(1, chunk_rows // L)
        for b0 in range(0, B, step):
            yield b0, min(B, b0 + step), 0, L
    else:
        for b in range(B):
            for l0 in range(0, L, chunk_rows):
                yield b, b + 1, l0, min(L, l0 + chunk_rows)


def shifted_moments(parts, shift: np.ndarray, names, pool=None, originals=None) -> tuple:
    """(rows, mean, centred co-moment) of one batch whose neurons are spread over ``parts``.

    ``parts`` are 3-D (B, n_i, L) arrays (any real dtype, any strides) with the same B and L: the
    batch has B * L rows and n = sum(n_i) neurons. The rows are shifted by ``shift`` (n,), converted
    to float64 chunk by chunk into a small buffer with an extra row of ones, and each chunk is added
    to ``S = sum [z; 1][z; 1]^T`` by one symmetric rank-k BLAS product (NumPy hands ``A @ A.T`` to
    ``syrk`` and releases the GIL, so chunks can be split between threads) while it is in cache.
    ``S`` holds the shifted sums ``sum z`` and ``sum z z^T``, so
    ``mean = shift + sum z / rows`` and ``comoment = sum z z^T - (sum z)(sum z)^T / rows``.
    The subtraction loses about ``eps * |mean - shift|^2 / variance`` relative accuracy: callers pass
    the batch mean (first batch) or the running mean (later ones), for which it is negligible, and a
    unit that is constant at the shift gives exactly zero. Non-finite input (or float64 overflow of a
    square) is detected from the sums and the co-moment's diagonal and reported naming the part.

    ``pool``: an optional ``(executor, workers)``; the chunks are then split into ``workers``
    contiguous groups accumulated on the executor's threads (meant for single-threaded BLAS) and
    summed in group order, so results are deterministic for a given number of workers. Each group
    holds its own (n + 1)^2 sums and buffers, so the groups are fewer when that would exceed
    ``_SPLIT_BYTES``. ``originals``: the arrays as the caller gave them, for error messages.
    """
    B, _, L = parts[0].shape
    widths = [p.shape[1] for p in parts]
    n = sum(widths)
    rows = B * L
    chunk_rows = max(_MIN_CHUNK_ROWS, _CHUNK_DOUBLES // (n + 1))
    if n + 1 >= _WIDE:  # n^2 flops per row dwarf the conversion: favour long products (BLAS threads)
        chunk_rows = max(chunk_rows, _WIDE_CHUNK_ROWS)
    workers = 1
    if pool is not None:  # each group of chunks holds its own sums and buffer: cap their memory
        per_group = 8 * (n + 1) * (2 * (n + 1) + min(rows, chunk_rows))
        workers = max(1, min(pool[1], _SPLIT_BYTES // per_group))
    if workers > 1:  # enough chunks for every thread of the split
        chunk_rows = min(chunk_rows, max(_MIN_SPLIT_ROWS, -(-rows // workers)))
    offsets = np.cumsum([0] + widths)
    shifts = [shift[offsets[i]:offsets[i + 1]] for i in range(len(parts))]
    blocks = list(_row_blocks(B, L, chunk_rows))
    job = (parts, shifts, offsets, widths, n, min(rows, chunk_rows))
    if workers < 2 or len(blocks) < 2:
        S = _accumulate(job, blocks)
    else:
        executor = pool[0]
        groups = [g for g in np.array_split(np.arange(len(blocks)), min(workers, len(blocks))) if g.size]
        futures = [executor.submit(_accumulate, job, [blocks[i] for i in g]) for g in groups]
        S = futures[0].result()
        for f in futures[1:]:
            S += f.result()
    sums = S[:n, n]
    with np.errstate(over="ignore", invalid="ignore"):
        com = S[:n, :n] - np.outer(sums / rows, sums)
    diag = np.diagonal(com)
    if not (np.isfinite(diag).all() and np.isfinite(sums).all()):
        originals = parts if originals is None else originals
        for p, name in zip(originals, names):
            p = to_numpy(p)
            check_finite(p[:, :, 0] if p.ndim == 3 and p.shape[2] == 1 else p, name)
        bad = [name for o, w, name in zip(offsets, widths, names) if not np.isfinite(diag[o:o + w]).all()]
        raise ValueError(f"{' and '.join(bad) or names[0]} overflow float64 in the co-moments "
                         "(squares of values above ~1e154); rescale the activations")
    # a variance is >= 0: the shifted form can leave -1e-16 relative for a unit that is constant
    # within the batch, where the centred sum of squares would give exactly 0
    np.fill_diagonal(com, np.maximum(diag, 0.0))
    return rows, shift + sums / rows, com


def _accumulate(job, blocks) -> np.ndarray:
    """``sum [z; 1][z; 1]^T`` over the row chunks ``blocks`` (see shifted_moments)."""
    parts, shifts, offsets, widths, n, max_rows = job
    flat = np.empty((n + 1) * max_rows)
    S = np.zeros((n + 1, n + 1))
    prod = np.empty((n + 1, n + 1))
    with np.errstate(over="ignore", invalid="ignore"):
        for b0, b1, l0, l1 in blocks:
            nb, nl = b1 - b0, l1 - l0
            k = nb * nl
            if nl == 1:  # one row per image (a fully connected layer): row-major buffer (k, n + 1)
                buf = flat[: k * (n + 1)].reshape(k, n + 1)
                for p, s, o, w in zip(parts, shifts, offsets, widths):
                    np.subtract(p[b0:b1, :, l0], s, out=buf[:, o:o + w])
                buf[:, n] = 1.0
                S += np.matmul(buf.T, buf, out=prod)
            else:  # neuron-major buffer (n + 1, k): contiguous runs along the positions
                buf = flat[: (n + 1) * k].reshape(n + 1, k)
                view = buf.reshape(n + 1, nb, nl)
                for p, s, o, w in zip(parts, shifts, offsets, widths):
                    np.subtract(p[b0:b1, :, l0:l1].transpose(1, 0, 2), s[:, None, None], out=view[o:o + w])
                buf[n] = 1.0
                S += np.matmul(buf, buf.T, out=prod)
    return S


def _copy(a):
    return a.copy() if isinstance(a, np.ndarray) else a.clone()


def _outer(delta):
    """delta delta^T for a NumPy array or a torch tensor (same products as np.outer)."""
    return delta[:, None] * delta[None, :]


def _torch_backend():
    """The torch half of the reductions and solvers, imported on first use (``import repmatch``
    stays free of torch)."""
    from . import _torch

    return _torch
