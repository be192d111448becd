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
    Keeps the moments only. Fast: one symmetric rank-b update per batch, about the cost of
    ``M.T @ M``. Forming a Gram matrix squares the condition number, so relative distances near 0
    are resolved only to about ``GRAM_TOL`` (1e-6): an exact match is found at ``eps=0`` when every
    neuron of it lies within ``GRAM_TOL`` (relative) of the other side's span.
``"qr"``
    Additionally keeps the triangular factor ``R`` of the uncentred data, updated as
    ``R <- qr([R; batch]).R`` (TSQR). About 5-7x slower per row, but distances are resolved to
    about ``QR_TOL`` (1e-10): use it when exact matches (``eps`` near 0) matter.
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import scipy.linalg

from ._validate import as_activations, check_finite, check_positive_int

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

    def __init__(self, n_x: int, n_y: int, *, method: str = "gram"):
        self.n_x = check_positive_int(n_x, "n_x")
        self.n_y = check_positive_int(n_y, "n_y")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        n = self.n_x + self.n_y
        self.n_samples = 0
        self._mean = np.zeros(n)
        self._comoment = np.zeros((n, n))
        self._r = np.zeros((0, n)) if method == "qr" else None
        self._cache: dict = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, X, Y, *, method: str = "gram", batch_size: int = 65536) -> "Reduction":
        """Reduce two in-memory activation matrices (rows = samples) in batches of ``batch_size``."""
        from ._validate import check_pair

        Xa, Ya = check_pair(X, Y, dtype=None)
        r = cls(Xa.shape[1], Ya.shape[1], method=method)
        batch_size = check_positive_int(batch_size, "batch_size")
        for start in range(0, Xa.shape[0], batch_size):
            r._update_checked(Xa[start : start + batch_size], Ya[start : start + batch_size])
        return r

    @property
    def n_neurons(self) -> int:
        return self.n_x + self.n_y

    def update(self, x, y) -> "Reduction":
        """Add a batch of rows: ``x`` of shape (b, n_x) and ``y`` of shape (b, n_y), the same b inputs.

        Returns ``self`` so that calls can be chained. Raises ValueError naming ``x`` or ``y`` for
        wrong shapes or non-finite values; nothing is accumulated from a rejected batch.
        """
        xa = as_activations(x, "x", dtype=None)
        ya = as_activations(y, "y", dtype=None)
        if xa.shape[1] != self.n_x:
            raise ValueError(f"x must have n_x={self.n_x} columns, got shape {xa.shape}")
        if ya.shape[1] != self.n_y:
            raise ValueError(f"y must have n_y={self.n_y} columns, got shape {ya.shape}")
        if xa.shape[0] != ya.shape[0]:
            raise ValueError(
                f"x and y must have the same number of rows (the same inputs): x has shape {xa.shape}, "
                f"y has shape {ya.shape}"
            )
        self._update_checked(xa, ya)
        return self

    def _update_checked(self, xa: np.ndarray, ya: np.ndarray) -> None:
        b = xa.shape[0]
        n = self.n_neurons
        z = np.empty((b, n), dtype=np.float64)
        z[:, : self.n_x] = xa
        z[:, self.n_x :] = ya
        if not np.isfinite(z).all():  # one pass; name the culprit only on failure
            check_finite(z[:, : self.n_x], "x")
            check_finite(z[:, self.n_x :], "y")
        if self._r is not None:
            stacked = np.vstack([self._r, z])
            self._r = scipy.linalg.qr(stacked, mode="r", overwrite_a=True, check_finite=False)[0][: min(n, stacked.shape[0])]
        mean_b = z.mean(axis=0)
        z -= mean_b
        com_b = z.T @ z  # NumPy dispatches A.T @ A to a symmetric rank-k update
        self._combine(b, mean_b, com_b)
        self._cache.clear()

    def _combine(self, n_b: int, mean_b: np.ndarray, com_b: np.ndarray) -> None:
        """Chan et al. pairwise merge of (count, mean, centred co-moment)."""
        n_a = self.n_samples
        if n_a == 0:
            self.n_samples = n_b
            self._mean = mean_b.copy()
            self._comoment = com_b.copy()
            return
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._comoment = self._comoment + com_b + np.outer(delta, delta) * (n_a * n_b / n)
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
        out._combine(other.n_samples, other._mean, other._comoment)
        if out._r is not None:
            stacked = np.vstack([self._r, other._r])
            if stacked.shape[0]:
                out._r = scipy.linalg.qr(stacked, mode="r", check_finite=False)[0][: min(self.n_neurons, stacked.shape[0])]
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
        out = Reduction(self.n_x, self.n_y, method=self.method)
        out.n_samples = self.n_samples
        out._mean = self._mean.copy()
        out._comoment = self._comoment.copy()
        out._r = None if self._r is None else self._r.copy()
        return out

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
        return f"Reduction(n_x={self.n_x}, n_y={self.n_y}, method={self.method!r}, n_samples={self.n_samples})"


def atomic_savez(path, **arrays) -> None:
    """``np.savez`` to a temporary file in the target's directory, then ``os.replace`` it into place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
