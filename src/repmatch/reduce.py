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
    about ``QR_TOL`` (1e-9): use it when exact matches (``eps`` near 0) matter.

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

__all__ = ["Reduction", "GRAM_TOL", "QR_TOL", "RANK_TOL", "METHODS"]

#: Exact-match tolerance of the subspace match on a Gram reduction: a neuron within this relative
#: distance of a span counts as in it (``eps`` is used as ``max(eps, tol)``). A float64 Gram matrix
#: resolves relative distances near 0 only to about sqrt(u) ~ 1e-8 (squared distances carry ~1e-16);
#: 1e-6 sits two orders above that. Decisions its error bound cannot settle are re-decided or
#: reported uncertain (docs/subspace.md, "Guarantees").
GRAM_TOL = 1e-6
#: The same tolerance on a QR reduction or in-memory QR: residuals are ~1e-15 there, but which of two
#: near-duplicate neurons a span keeps (the rank convention, RANK_TOL) can move a distance by about
#: RANK_TOL (1 + ||c||_1): the exact-match tolerance sits an order above RANK_TOL so that exact matches
#: stay certifiable.
QR_TOL = 1e-9
#: Numerical rank of a span, on every method: a neuron whose relative distance to the span of the
#: neurons chosen before it (greedy pivoting) is below this adds no direction. Far below GRAM_TOL on
#: purpose: a direction of relative size 1e-7 is real data and can put a neuron exactly into a span.
RANK_TOL = 1e-10

METHODS = ("gram", "qr")

_FORMAT_VERSION = 2
#: Versions of the reduction file format that load: 1 (no scales or error bookkeeping; see load()).
_KNOWN_VERSIONS = (1, 2)

#: Each neuron is stored divided by a power-of-two scale so that its values stay within
#: [2^-_SAFE_EXP, 2^_SAFE_EXP]: squares and sums of 2^60 rows of them neither underflow nor overflow,
#: whatever the scale of the data (1e-300 or 1e300). Powers of two scale exactly, so data already in
#: range are stored bit for bit as before.
_SAFE_EXP = 200


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
        # _mean / _comoment / _r, which give host arrays. They hold the data divided by _scale
        # (powers of two per neuron, see _SAFE_EXP); "sqsum" is the per-neuron sum over batches of
        # the squares actually accumulated (shifted rows), which bounds the rounding error (_noise).
        self._acc = {"mean": self._to_acc(np.zeros(n)), "comoment": self._to_acc(np.zeros((n, n))),
                     "r": self._to_acc(np.zeros((0, n))) if method == "qr" else None,
                     "sqsum": self._to_acc(np.zeros(n))}
        self._scale = np.ones(n)
        #: Longest chain of dependent roundings behind any accumulated entry (rows summed in one
        #: chunk + chunks + merges; TSQR: rows x columns of every factorisation on the chain).
        self._depth = 0
        self._raw = None  # (X, Y) float64 arrays when built by from_arrays for a solver (subspace.geometry)
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
    _sqsum = property(lambda self: self._host("sqsum"), lambda self, v: self._set_acc("sqsum", v),
                      doc="Host copy of the per-neuron sum of accumulated squares (error bookkeeping).")

    # ------------------------------------------------------------------ scales
    def _rescale(self, new_scale: np.ndarray) -> None:
        """Re-express the accumulators in units of ``new_scale`` (powers of two: exact, except that
        values pushed below the float64 range vanish, which only happens to terms that are
        negligible beside the data that caused the larger scale)."""
        d = _exponent(self._scale) - _exponent(new_scale)
        if not d.any():
            return
        acc = self._acc
        if self.n_samples:
            # one factor at a time, by exponents: f_i f_j alone can overflow where C_ij f_i f_j cannot
            with np.errstate(under="ignore", over="ignore"):
                acc["mean"] = _pow2(acc["mean"], d)
                acc["comoment"] = _pow2(_pow2(acc["comoment"], d[:, None]), d[None, :])
                acc["sqsum"] = _pow2(acc["sqsum"], 2 * d)
                if acc["r"] is not None:
                    acc["r"] = _pow2(acc["r"], d[None, :])
        self._scale = np.array(new_scale, dtype=np.float64)
        self._cache.clear()

    def _scales_for(self, maxabs: np.ndarray) -> np.ndarray:
        """Scales that keep a batch with per-neuron maxima ``maxabs`` (true units) in the safe range,
        changing a neuron's scale only when it leaves the range: upwards for large values, downwards
        for small ones only while everything accumulated for that neuron is small too. Scales are
        powers of two between 2^-1074 and 2^1023, so every finite value (subnormal ones included)
        has one."""
        scale = self._scale.copy()
        e_data = np.frexp(np.where(maxabs > 0, maxabs, 1.0))[1]  # maxabs < 2^e_data
        rel = e_data - _exponent(scale)  # the batch's size in the current units, as a power of two
        e_new = np.clip(e_data, -1074, 1023)
        up = (maxabs > 0) & (rel > _SAFE_EXP)
        scale[up] = np.ldexp(1.0, e_new[up])
        down = (maxabs > 0) & (rel < -_SAFE_EXP)
        if down.any() and self.n_samples:
            lo_lim = 2.0**-_SAFE_EXP
            g = np.diag(self._comoment) + self.n_samples * self._mean**2  # accumulated squares (scaled)
            down &= ~(g > self.n_samples * lo_lim**2)
        scale[down] = np.ldexp(1.0, e_new[down])
        return scale

    def _all_zero(self) -> np.ndarray:
        """Neurons whose every value seen so far is 0 (no data to keep in any unit)."""
        if self.n_samples == 0:
            return np.ones(self.n_neurons, dtype=bool)
        return (self._mean == 0) & (np.diag(self._comoment) == 0)

    @property
    def scale(self) -> np.ndarray:
        """Power-of-two unit of every neuron's stored statistics (1 unless the data needed it)."""
        return self._scale.copy()

    def device_tensors(self) -> dict:
        """The accumulators where they live: ``{"mean", "comoment", "r"}`` (torch tensors on
        ``device``, or NumPy arrays for a host reduction). Not copies: do not modify them."""
        return dict(self._acc)

    def to(self, device) -> "Reduction":
        """A copy of this reduction on ``device`` (a torch device, or ``None`` for NumPy on the host)."""
        out = Reduction(self.n_x, self.n_y, method=self.method, device=device)
        out.n_samples = self.n_samples
        out._scale = self._scale.copy()
        out._depth = self._depth
        out._raw = self._raw
        for name in ("mean", "comoment", "r", "sqsum"):
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

    def update(self, x, y, *, names=("x", "y"), pool=None) -> "Reduction":
        """Add a batch of rows: ``x`` of shape (b, n_x) and ``y`` of shape (b, n_y), the same b inputs.

        Conv outputs may be given as they are: an array of shape (batch, n_x, *spatial) (e.g.
        (B, C, H, W)) is a batch of ``batch * prod(spatial)`` samples, one per (input, position),
        ordered input-major: the papers' convention, without a transposed copy. ``x`` and ``y`` must
        have the same number of samples.

        Returns ``self`` so that calls can be chained. Raises ValueError naming ``x`` or ``y`` for
        wrong shapes or non-finite values; nothing is accumulated from a rejected batch.
        On a device reduction ``x`` and ``y`` may be torch tensors (on any device) or arrays.

        Parameters
        ----------
        x, y : array or torch.Tensor
            The batch of each layer, as above.
        names : tuple of str, default ("x", "y")
            What error messages call the two sides (extraction names the layers and networks).
        pool : concurrent.futures.Executor, optional
            Threads for the host Gram path's chunked products (:func:`shifted_moments`).

        Returns
        -------
        Reduction
            ``self``.
        """
        return self._update(x, y, tuple(names), pool)

    def _update(self, x, y, names, pool=None) -> "Reduction":
        """:meth:`update` with the two sides called ``names`` in error messages; ``pool`` as in
        :func:`shifted_moments` (host Gram path only)."""
        self._raw = None
        if self.device is not None:
            backend = _torch_backend()
            z = backend.joint_batch(self, x, y, names)  # float64 (b, n) tensor on self.device
            z = backend.scaled_batch(self, z, names)  # checked finite, in this reduction's units
            r_new = backend.stack_r([self._acc["r"], z], self.n_neurons) if self._acc["r"] is not None else None
            mean_b, com_b = backend.checked_moments(self, z, names)  # raises before anything is kept
            if r_new is not None:
                self._acc["r"] = r_new
                self._depth = max(self._depth, 1) + (z.shape[0] + self.n_neurons) * self.n_neurons
            self._combine(z.shape[0], mean_b, com_b, depth=z.shape[0] + 2, sqsum=_copy(com_b.diagonal()))
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
        """Gram path: one batch given as (B, n_i, L) parts, X's neurons first (see shifted_moments).

        The batch is reduced in the current units; only if that overflows, or a neuron comes out so
        small or so large that its squares leave the safe range (_SAFE_EXP), are the batch's
        per-neuron maxima read (one more pass, on this rare path only), the units changed and the
        batch reduced again: data of ordinary scale are read once, as before."""
        offsets = np.cumsum([0] + [p.shape[1] for p in parts])
        rows = parts[0].shape[0] * parts[0].shape[2]
        for attempt in (0, 1):
            inv = None if not (self._scale != 1.0).any() else -_exponent(self._scale)  # 2^inv per neuron
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    if self.n_samples == 0:
                        if inv is None:
                            shift = np.concatenate([p.sum(axis=(0, 2), dtype=np.float64) for p in parts]) / rows
                        else:  # in the new units (a copy, on this rare path only): the raw sum may overflow
                            shift = np.concatenate([np.ldexp(np.asarray(p, dtype=np.float64),
                                                             inv[offsets[i]:offsets[i + 1]][None, :, None]).sum(axis=(0, 2))
                                                    for i, p in enumerate(parts)]) / rows
                    else:
                        shift = self._mean
                    if not np.isfinite(shift).all():
                        _check_parts_finite(parts, originals, names)  # NaN/Inf named; else overflow
                        raise _Overflow
                    rows, mean_b, com_b, depth, sq = shifted_moments(parts, shift, names, pool, originals, inv=inv)
            except _Overflow:
                if attempt:  # pragma: no cover - the new units cannot overflow
                    raise ValueError(f"{names[0]} or {names[1]} could not be reduced without overflow")
                self._rescale(self._scales_for(_blocks_maxabs(parts, offsets)))
                continue
            diag = np.diagonal(com_b)
            lo, hi = rows * 2.0 ** (-2 * _SAFE_EXP), rows * 2.0 ** (2 * _SAFE_EXP)
            odd = ((diag < lo) & (np.abs(mean_b) < 2.0**-_SAFE_EXP)) | (diag > hi) | (np.abs(mean_b) > 2.0**_SAFE_EXP)
            if attempt == 0 and odd.any():
                cols = np.flatnonzero(odd)
                maxabs = self._scale.copy() * 0.5  # in range: leaves other neurons alone
                maxabs[cols] = _blocks_maxabs(parts, offsets, cols)
                new = self._scales_for(maxabs)
                if not np.array_equal(new, self._scale):
                    self._rescale(new)
                    continue
            break
        self._combine(rows, mean_b, com_b, depth=depth, sqsum=sq)
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
        # the factor needs every row anyway (n^2 work per row): the maxima cost little beside it
        self._rescale(self._scales_for(np.abs(z).max(axis=0)))
        if (self._scale != 1.0).any():
            np.ldexp(z, -_exponent(self._scale), out=z)
        stacked = np.vstack([self._r, z])
        self._r = scipy.linalg.qr(stacked, mode="r", overwrite_a=True, check_finite=False)[0][: min(n, stacked.shape[0])]
        self._depth = max(self._depth, 1) + stacked.shape[0] * n
        mean_b = z.mean(axis=0)
        z -= mean_b
        com_b = z.T @ z  # NumPy dispatches A.T @ A to a symmetric rank-k update
        self._combine(b, mean_b, com_b, depth=b + 2, sqsum=np.diag(com_b).copy())
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
        self._raw = None
        # units for these moments too: a mean of 1e200 must not overflow n mean^2 (per-neuron size:
        # |mean| + standard deviation, computed without squaring)
        host_mean, host_diag = to_numpy(mean), np.maximum(to_numpy(comoment.diagonal()), 0.0)
        self._rescale(self._scales_for(np.abs(host_mean) + np.sqrt(host_diag) / np.sqrt(n_b)))
        if (self._scale != 1.0).any():
            d = -_exponent(self._scale)
            mean = _pow2(mean, d)
            comoment = _pow2(_pow2(comoment, d[:, None]), d[None, :])
        # how the producer rounded is unknown: count its rows as one sequential sum
        d = _copy(comoment.diagonal())
        self._combine(n_b, mean, comoment, depth=n_b + 2, sqsum=d + n_b * mean * mean)
        self._cache.clear()
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, com_b: np.ndarray, *, depth: int, sqsum) -> None:
        """Chan et al. pairwise merge of (count, mean, centred co-moment), in this reduction's units.

        ``depth`` is the batch's longest rounding chain and ``sqsum`` the squares it accumulated per
        neuron (error bookkeeping, see :meth:`_noise`)."""
        acc = self._acc
        mean_b, com_b = self._to_acc(mean_b), self._to_acc(com_b)
        acc["sqsum"] = acc["sqsum"] + self._to_acc(sqsum)
        n_a = self.n_samples
        self._depth = max(self._depth, int(depth)) + (3 if n_a else 0)
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
        out._raw = None
        if other.n_samples == 0:
            return out
        other = other.copy()
        # shrink the smaller units (cannot overflow); a neuron that is all zero on one side has no
        # data there, so its unit on that side is ignored (else 1 would swallow 1e-300 data)
        zero_a, zero_b = out._all_zero(), other._all_zero()
        target = np.where(zero_a, other._scale, np.where(zero_b, out._scale, np.maximum(out._scale, other._scale)))
        out._rescale(target)
        other._rescale(target)
        out._combine(other.n_samples, other._acc["mean"], other._acc["comoment"], depth=other._depth,
                     sqsum=other._acc["sqsum"])
        if out._acc["r"] is not None:
            parts = [out._acc["r"], out._to_acc(other._acc["r"])]
            if self.device is not None:
                out._acc["r"] = _torch_backend().stack_r(parts, self.n_neurons)
            else:
                stacked = np.vstack(parts)
                if stacked.shape[0]:
                    out._acc["r"] = scipy.linalg.qr(stacked, mode="r", check_finite=False)[0][: min(self.n_neurons, stacked.shape[0])]
            out._depth += 2 * self.n_neurons**2
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
        """Per-neuron means, X's columns first, shape (n_x + n_y,).

        In the data's units; for data near the ends of the float64 range these may over- or
        underflow, which the solvers never see (they read the statistics in the stored units)."""
        self._require_samples()
        with np.errstate(over="ignore", under="ignore"):
            return self._mean * self._scale

    @property
    def comoment(self) -> np.ndarray:
        """Centred co-moment matrix sum_i (z_i - mu)(z_i - mu)^T of the joint columns [X Y]."""
        self._require_samples()
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return self._comoment * np.outer(self._scale, self._scale)

    def covariance(self, ddof: int = 0) -> np.ndarray:
        """Joint covariance matrix of [X Y] (within-X, between, within-Y blocks)."""
        self._require_samples(ddof + 1)
        return self.comoment / (self.n_samples - ddof)

    def gram(self) -> np.ndarray:
        """Uncentred Gram matrix M^T M of the joint activation matrix, float64, shape (n, n)."""
        self._require_samples()
        if "gram" not in self._cache:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                self._cache["gram"] = self._scaled_gram() * np.outer(self._scale, self._scale)
        return self._cache["gram"]

    def _scaled_gram(self) -> np.ndarray:
        """The Gram matrix in the stored units (each neuron divided by ``scale``): never overflows."""
        key = "scaled_gram"
        if key not in self._cache:
            if self._r is not None:
                g = self._r.T @ self._r
            else:
                g = self._comoment + self.n_samples * np.outer(self._mean, self._mean)
            self._cache[key] = g
        return self._cache[key]

    def _side_scaled(self, center: bool = True) -> np.ndarray:
        """Covariance (``center``) or Gram / n of [X Y] with each layer in units of its own largest
        scale: every neuron keeps its size relative to the others of its layer (what CKA, CCA and
        Procrustes read), and nothing under- or overflows unless one layer spans > 1e300 in scale."""
        C = self._comoment if center else self._scaled_gram()
        nx = self.n_x
        rel = self._scale.copy()
        rel[:nx] /= rel[:nx].max()
        rel[nx:] /= rel[nx:].max()
        with np.errstate(under="ignore"):
            return C * np.outer(rel, rel) / self.n_samples

    def column_norms(self) -> np.ndarray:
        """Euclidean norm of every activation vector (sqrt of the Gram diagonal)."""
        with np.errstate(over="ignore", under="ignore"):
            return np.sqrt(np.maximum(np.diag(self._scaled_gram()), 0.0)) * self._scale

    @property
    def r_factor(self) -> np.ndarray | None:
        """Triangular factor R of the uncentred data (``method="qr"`` only), ``M = Q R``."""
        if self._r is None:
            return None
        with np.errstate(over="ignore", under="ignore"):
            return self._r * self._scale

    # ------------------------------------------------------------------ public accessors
    # What code outside this module reads instead of the private fields (issue 15): the statistics
    # in the stored units, the rounding bookkeeping, the rows kept for a solver, the cache of derived
    # values, the persisted fields and the device backend. Arrays come back as read-only views.
    @staticmethod
    def _read_only(a: np.ndarray) -> np.ndarray:
        v = a.view()
        v.setflags(write=False)
        return v

    @property
    def backend(self):
        """The device backend (the module ``repmatch._torch``) of a device reduction; None on the host.

        Measures hand device work to it (e.g. ``r.backend.between_correlation``) so that they never
        import torch themselves."""
        return None if self.device is None else _torch_backend()

    @property
    def stored_mean(self) -> np.ndarray:
        """Per-neuron means in the stored units (the data divided by :attr:`scale`), host float64."""
        return self._read_only(self._mean)

    @property
    def stored_comoment(self) -> np.ndarray:
        """The centred co-moment in the stored units (``comoment / outer(scale, scale)``), host float64."""
        return self._read_only(self._comoment)

    @property
    def stored_r(self) -> np.ndarray | None:
        """The TSQR factor in the stored units (``method="qr"``), else None."""
        r = self._r
        return None if r is None else self._read_only(r)

    def scaled_gram(self) -> np.ndarray:
        """The uncentred Gram matrix in the stored units: never under- or overflows (read-only)."""
        return self._read_only(self._scaled_gram())

    def side_scaled(self, center: bool = True) -> np.ndarray:
        """Covariance (``center``) or Gram / n with each layer in units of its own largest scale
        (what CKA, CCA and Procrustes read); a new array."""
        return self._side_scaled(center)

    def noise(self) -> np.ndarray:
        """Per-neuron rounding-error scale of the unit-diagonal Gram matrix (see ``_noise``)."""
        return self._noise()

    def factor_noise(self) -> float:
        """Relative column-wise backward error of the TSQR factor (see ``_factor_noise``)."""
        return self._factor_noise()

    @property
    def rows(self):
        """``(X, Y)`` float64 arrays kept by :meth:`attach_rows` (for solvers that settle close calls
        on the raw data), or None."""
        return self._raw

    def attach_rows(self, X: np.ndarray, Y: np.ndarray) -> "Reduction":
        """Keep the rows this reduction was built from (checked: float64 with matching shapes)."""
        X, Y = np.asarray(X), np.asarray(Y)
        if X.dtype != np.float64 or Y.dtype != np.float64 or X.shape != (self.n_samples, self.n_x) \
                or Y.shape != (self.n_samples, self.n_y):
            raise ValueError(f"attach_rows needs float64 arrays of shapes {(self.n_samples, self.n_x)} and "
                             f"{(self.n_samples, self.n_y)}, got {X.dtype} {X.shape} and {Y.dtype} {Y.shape}")
        self._raw = (X, Y)
        return self

    def cached(self, key, compute):
        """``compute()``, memoised on this reduction under ``key`` until its next update or merge."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def npz_fields(self) -> dict:
        """The arrays a file stores for this reduction (what :meth:`save` and ``io.save_reductions`` write)."""
        return self._npz_fields()

    @classmethod
    def from_npz_fields(cls, fields: dict, source: str = "<npz>") -> "Reduction":
        """A reduction from the fields :meth:`npz_fields` gave, checked (``source`` names them in errors)."""
        return cls._from_npz_dict(fields, source)

    def rescale_for(self, maxabs: np.ndarray) -> None:
        """Backend hook: re-express the accumulators in units safe for a batch of per-neuron maxima
        ``maxabs`` (true units), before the batch is divided by :attr:`scale` and accumulated."""
        self._rescale(self._scales_for(np.asarray(maxabs, dtype=np.float64)))

    # ------------------------------------------------------------------ error bookkeeping
    def _noise(self) -> np.ndarray:
        """Per-neuron error scale ``eta`` of the unit-diagonal Gram matrix of the live neurons.

        Entry (i, j) of ``G / sqrt(G_ii G_jj)`` is within ``eta_i eta_j`` of the exact value for the
        data (rounding model of repmatch._certify). The shifted sums of a batch err by at most
        gamma(depth) sqrt(S_ii S_jj), with S the squares actually accumulated (``sqsum``, which can
        be much smaller than G_ii when the shift is close to the mean); rebuilding
        ``C + n mu mu^T`` and normalising add a few units of roundoff.
        For ``method="qr"`` the solver reads the factor instead (:meth:`_factor_noise`).
        """
        from ._certify import U, gamma

        G = np.diag(self._scaled_gram())
        sq = np.maximum(self._sqsum, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(G > 0, sq / G, 0.0)
        return np.sqrt(gamma(max(self._depth, 1)) * ratio + 8 * U)

    def _factor_noise(self) -> float:
        """Relative column-wise backward error of the TSQR factor: R is the exact factor of data
        whose every column differs from the real one by at most this times its norm."""
        from ._certify import U, gamma

        return gamma(max(self._depth, 1)) + 4 * U

    # ------------------------------------------------------------------ persistence
    def _npz_fields(self) -> dict:
        """The arrays a file stores for this reduction (shared by save() and io.save_reductions)."""
        arrays = {
            "method": np.array(self.method),
            "n_x": np.array(self.n_x),
            "n_y": np.array(self.n_y),
            "n_samples": np.array(self.n_samples),
            "mean": self._mean,
            "comoment": self._comoment,
            "scale": self._scale,
            "sqsum": self._sqsum,
            "depth": np.array(self._depth),
        }
        if self._r is not None:
            arrays["r"] = self._r
        arrays["digest"] = np.array(_digest(arrays))
        return arrays

    def save(self, path) -> None:
        """Write the reduction to an ``.npz`` file atomically (temporary file, then rename)."""
        atomic_savez(path, repmatch_reduction=np.array(_FORMAT_VERSION), **self._npz_fields())

    @classmethod
    def load(cls, path) -> "Reduction":
        """Read a file written by :meth:`save`.

        Every field is checked (type, shape, finiteness, ranges and the consistency of the moments):
        a damaged or edited file raises ValueError naming the file and the field, never yields numbers.
        """
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as f:
                return cls._from_npz_dict(f, str(path))
        except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_npz_dict(cls, f, source: str = "<npz>") -> "Reduction":
        if "repmatch_reduction" not in f:
            raise ValueError(f"{source} is not a repmatch reduction file (no 'repmatch_reduction' entry)")
        return _read_fields(cls, {k: f[k] for k in f}, source)

    def __repr__(self) -> str:
        dev = "" if self.device is None else f", device={str(self.device)!r}"
        return f"Reduction(n_x={self.n_x}, n_y={self.n_y}, method={self.method!r}, n_samples={self.n_samples}{dev})"


# --------------------------------------------------------------------------------------- file checks
def _field(d: dict, name: str, source: str, *, required: bool = True):
    if name not in d:
        if required:
            raise ValueError(f"{source}: field {name!r} is missing; not a complete repmatch reduction")
        return None
    return np.asarray(d[name])


def _int_field(d, name, source, minimum):
    a = _field(d, name, source)
    if a.ndim != 0 or not (np.issubdtype(a.dtype, np.integer) or (np.issubdtype(a.dtype, np.floating)
                                                                     and np.isfinite(a) and float(a) == int(a))):
        raise ValueError(f"{source}: field {name!r} must be an integer, got {a.dtype} of shape {a.shape}")
    v = int(a)
    if v < minimum:
        raise ValueError(f"{source}: field {name!r} must be >= {minimum}, got {v}")
    return v


def _float_field(d, name, source, shape, *, required=True):
    a = _field(d, name, source, required=required)
    if a is None:
        return None
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{source}: field {name!r} must be a float array, got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{source}: field {name!r} has shape {a.shape}, expected {shape}")
    a = np.array(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{source}: field {name!r} holds non-finite values (NaN or Inf)")
    return a


def _read_fields(cls, d: dict, source: str) -> "Reduction":
    """A Reduction from the arrays of a file, every field checked (see Reduction.load)."""
    ver = _field(d, "repmatch_reduction", source)
    if ver.ndim != 0 or not np.issubdtype(ver.dtype, np.integer) or int(ver) not in _KNOWN_VERSIONS:
        raise ValueError(f"{source}: unknown reduction format version {ver.tolist()!r} "
                         f"(this repmatch reads {', '.join(map(str, _KNOWN_VERSIONS))})")
    version = int(ver)
    method = _field(d, "method", source)
    if method.ndim != 0 or method.dtype.kind not in "US" or str(method) not in METHODS:
        raise ValueError(f"{source}: field 'method' must be one of {METHODS}, got {method.tolist()!r}")
    n_x = _int_field(d, "n_x", source, 1)
    n_y = _int_field(d, "n_y", source, 1)
    n_samples = _int_field(d, "n_samples", source, 0)
    n = n_x + n_y
    mean = _float_field(d, "mean", source, (n,))
    com = _float_field(d, "comoment", source, (n, n))
    r = cls(n_x, n_y, method=str(method))
    diag = np.diag(com)
    big = max(float(np.abs(com).max(initial=0.0)), np.finfo(np.float64).tiny)
    if (diag < -1e-9 * big).any():
        raise ValueError(f"{source}: field 'comoment' has a negative variance on its diagonal (index "
                         f"{int(np.argmax(diag < -1e-9 * big))}); the file is damaged or edited")
    if np.abs(com - com.T).max(initial=0.0) > 1e-9 * big:
        raise ValueError(f"{source}: field 'comoment' is not symmetric; the file is damaged or edited")
    dpos = np.sqrt(np.maximum(diag, 0.0))
    if (np.abs(com) > np.outer(dpos, dpos) * (1 + 1e-6) + 1e-12 * big).any():
        raise ValueError(f"{source}: field 'comoment' violates |C_ij| <= sqrt(C_ii C_jj) (not a co-moment "
                         "matrix); the file is damaged or edited")
    if n_samples == 0 and (np.any(mean) or np.any(com)):
        raise ValueError(f"{source}: field 'n_samples' is 0 but the moments are not: the file is inconsistent")
    r.n_samples = n_samples
    r._mean, r._comoment = mean, com
    if version >= 2:
        scale = _float_field(d, "scale", source, (n,))
        if (scale <= 0).any() or (np.frexp(scale)[0] != 0.5).any():
            raise ValueError(f"{source}: field 'scale' must hold positive powers of two")
        sq = _float_field(d, "sqsum", source, (n,))
        if (sq < 0).any():
            raise ValueError(f"{source}: field 'sqsum' must be >= 0")
        r._scale, r._sqsum = scale, sq
        r._depth = _int_field(d, "depth", source, 1 if n_samples else 0)
    else:  # format 1 kept no error bookkeeping: assume a sequential sum of every row
        r._depth = max(n_samples, 1)
        r._sqsum = 4.0 * np.maximum(diag + n_samples * mean**2, 0.0)
    if r.method == "qr":
        k = min(n, n_samples)
        R = _float_field(d, "r", source, (k, n))
        if np.abs(np.tril(R, -1)).max(initial=0.0) > 0:
            raise ValueError(f"{source}: field 'r' is not upper triangular; the file is damaged or edited")
        g_r = np.sum(R * R, axis=0)
        g_m = diag + n_samples * mean**2
        if n_samples and not np.allclose(g_r, g_m, rtol=1e-6, atol=1e-9 * max(float(g_m.max(initial=0.0)), 1e-300)):
            raise ValueError(f"{source}: fields 'r' and 'mean'/'comoment'/'n_samples' describe different data "
                             "(the factor's column norms disagree with the moments); the file is inconsistent")
        r._r = R
    elif "r" in d:
        raise ValueError(f"{source}: field 'r' is present but method is 'gram'; the file is inconsistent")
    if version >= 2:  # last: every field above is plausible, yet one may have been edited (n_samples...)
        digest = _field(d, "digest", source)
        fields = {k: np.asarray(d[k]) for k in _DIGESTED if k in d}
        if digest.ndim != 0 or str(digest) != _digest(fields):
            raise ValueError(f"{source}: field 'digest' does not match the contents (a field such as n_samples was "
                             "edited or damaged); rewrite the file with repmatch rather than editing it")
    return r


#: The fields a file's digest covers, in this order.
_DIGESTED = ("method", "n_x", "n_y", "n_samples", "mean", "comoment", "scale", "sqsum", "depth", "r")


def _digest(arrays: dict) -> str:
    """SHA-256 of a reduction's fields (dtype, shape and bytes of each, in _DIGESTED order): edits that
    leave every field plausible (n_samples of zero-mean data, say) still change it."""
    import hashlib

    h = hashlib.sha256()
    for k in _DIGESTED:
        if k not in arrays:
            continue
        a = np.ascontiguousarray(np.asarray(arrays[k]))
        if a.dtype.kind in "US":
            a = np.ascontiguousarray(a.astype("U"))
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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


def _exponent(scale) -> np.ndarray:
    """e with ``scale = 2^e`` for an array of powers of two (subnormal ones included)."""
    return np.frexp(np.asarray(scale, dtype=np.float64))[1].astype(np.int64) - 1


def _pow2(a, e):
    """``a * 2^e`` exactly (no overflowing factor), for a NumPy array or a torch tensor; ``e`` int array."""
    if isinstance(a, np.ndarray):
        return np.ldexp(a, e)
    # torch: 2^e itself may not be representable (|e| up to ~2100): multiply in steps of at most 2^1000
    import torch

    e = np.broadcast_to(np.asarray(e, dtype=np.int64), np.broadcast_shapes(np.shape(e), tuple(a.shape)))
    out = a
    while np.any(e):
        step = np.clip(e, -1000, 1000)
        out = out * torch.as_tensor(np.ldexp(1.0, step), dtype=a.dtype, device=a.device)
        e = e - step
    return out


class _Overflow(ArithmeticError):
    """Finite input whose squares or sums overflow float64 in the current units (reduce.py rescales)."""


def _check_parts_finite(parts, originals, names) -> None:
    """ValueError naming the side (index in the caller's shape) if a batch holds NaN or Inf."""
    originals = parts if originals is None else originals
    for p, name in zip(originals, names):
        p = to_numpy(p)
        check_finite(p[:, :, 0] if p.ndim == 3 and p.shape[2] == 1 else p, name)


def _blocks_maxabs(parts, offsets, cols=None) -> np.ndarray:
    """Per-neuron max |value| of a batch given as (B, n_i, L) parts (only ``cols`` when given)."""
    n = int(offsets[-1])
    out = np.zeros(n)
    wanted = np.arange(n) if cols is None else np.asarray(cols)
    for i, p in enumerate(parts):
        sel = wanted[(wanted >= offsets[i]) & (wanted < offsets[i + 1])]
        if sel.size:
            out[sel] = np.abs(to_numpy(p)[:, sel - offsets[i], :]).max(axis=(0, 2))
    return out[wanted] if cols is not None else out


def shifted_moments(parts, shift: np.ndarray, names, pool=None, originals=None, inv=None) -> tuple:
    """(rows, mean, centred co-moment, depth, sqsum) of one batch whose neurons are spread over ``parts``.

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

    ``inv``: optional per-neuron powers of two (integer exponents) the rows are scaled by before the
    shift, which is then in those units; the results are in those units too. ``depth`` is the
    longest chain of roundings behind an entry (rows of a chunk + chunks + the correction) and
    ``sqsum`` the diagonal of the shifted sums, for the reduction's error bound. Finite input that
    overflows raises ``_Overflow`` (the caller changes units and retries).

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
    invs = None if inv is None else [inv[offsets[i]:offsets[i + 1]] for i in range(len(parts))]
    blocks = list(_row_blocks(B, L, chunk_rows))
    job = (parts, shifts, offsets, widths, n, min(rows, chunk_rows), invs)
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
        _check_parts_finite(parts, originals, names)
        raise _Overflow
    sq = np.diagonal(S)[:n].copy()
    # a variance is >= 0: the shifted form can leave -1e-16 relative for a unit that is constant
    # within the batch, where the centred sum of squares would give exactly 0
    np.fill_diagonal(com, np.maximum(diag, 0.0))
    depth = min(rows, chunk_rows) + len(blocks) + workers + 2
    return rows, shift + sums / rows, com, depth, sq


def _accumulate(job, blocks) -> np.ndarray:
    """``sum [z; 1][z; 1]^T`` over the row chunks ``blocks`` (see shifted_moments)."""
    parts, shifts, offsets, widths, n, max_rows, invs = job
    flat = np.empty((n + 1) * max_rows)
    S = np.zeros((n + 1, n + 1))
    prod = np.empty((n + 1, n + 1))
    with np.errstate(over="ignore", invalid="ignore"):
        for b0, b1, l0, l1 in blocks:
            nb, nl = b1 - b0, l1 - l0
            k = nb * nl
            if nl == 1:  # one row per image (a fully connected layer): row-major buffer (k, n + 1)
                buf = flat[: k * (n + 1)].reshape(k, n + 1)
                for i, (p, s, o, w) in enumerate(zip(parts, shifts, offsets, widths)):
                    if invs is None:
                        np.subtract(p[b0:b1, :, l0], s, out=buf[:, o:o + w])
                    else:  # other units: exact powers of two, then the shift
                        dst = buf[:, o:o + w]  # float64 first, then exact powers of two, then the shift
                        np.copyto(dst, p[b0:b1, :, l0])
                        np.ldexp(dst, invs[i], out=dst)
                        dst -= s
                buf[:, n] = 1.0
                S += np.matmul(buf.T, buf, out=prod)
            else:  # neuron-major buffer (n + 1, k): contiguous runs along the positions
                buf = flat[: (n + 1) * k].reshape(n + 1, k)
                view = buf.reshape(n + 1, nb, nl)
                for i, (p, s, o, w) in enumerate(zip(parts, shifts, offsets, widths)):
                    src = p[b0:b1, :, l0:l1].transpose(1, 0, 2)
                    if invs is None:
                        np.subtract(src, s[:, None, None], out=view[o:o + w])
                    else:
                        dst = view[o:o + w]
                        np.copyto(dst, src)
                        np.ldexp(dst, invs[i][:, None, None], out=dst)
                        dst -= s[:, None, None]
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
