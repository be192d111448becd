"""Mutual information between every pair of units, with the convergent-learning authors' estimator.

Follows spec/convergent-learning.md section 2 ("Mutual information variant"): a 2-D histogram per
unit pair with ``n_bins`` bins per axis. Bin 0 holds the (near-)zeros, ``x < zero_threshold`` (the
ReLU mass); the other ``n_bins - 1`` bins split the values above it into equal-mass bins. MI is the
plug-in estimate in nats minus the Miller-Madow bias term.

Streaming
---------
Once the bin edges are fixed (by :func:`mi_bin_edges`, from all rows or from a sample), the joint
counts of all unit pairs accumulate batch by batch in :class:`MIHistogram` and two histograms of
disjoint rows merge by adding counts. The joint counts of all pairs are one matrix product of one-hot
codes, ``onehot(x).T @ onehot(y)``, so a batch costs about as much as one ``X.T @ Y`` with
``n_bins`` times as many columns.

Estimator
---------
With ``N`` samples, ``m_xy`` non-empty joint cells and ``m_x``, ``m_y`` non-empty marginal bins,
Miller-Madow adds ``(m - 1) / (2N)`` to each plug-in entropy, so for ``I = H(x) + H(y) - H(x, y)``::

    I_MM = I_plugin + (m_x + m_y - m_xy - 1) / (2N)

The correction is not clipped: for independent units ``I_MM`` is centred near 0 and may be slightly
negative, which is what makes it unbiased. A unit that falls in one bin only (constant, or never
above ``zero_threshold``) has ``I_MM = 0`` exactly with every other unit.
"""

from __future__ import annotations


import numpy as np

from ._validate import as_activations, check_pair, check_positive_int

__all__ = ["ZERO_THRESHOLD", "mi_bin_edges", "MIHistogram", "mutual_information"]

_CHUNK = 1 << 16  # rows per one-hot product: small enough for memory, far below float32's 2**24

#: Values below this count as the ReLU zero (the authors' threshold, spec section 2).
ZERO_THRESHOLD = 1e-6


def _check_threshold(zero_threshold):
    if zero_threshold is None:
        return None
    t = float(zero_threshold)
    if not np.isfinite(t):
        raise ValueError(f"zero_threshold must be a finite number or None, got {zero_threshold!r}")
    return t


def mi_bin_edges(A, *, n_bins: int = 10, zero_threshold: float | None = ZERO_THRESHOLD, name: str = "A") -> list:
    """Fix the bin edges of every unit of one layer from a sample of its rows.

    Parameters
    ----------
    A : array of shape (n_samples, n_units)
        Activations (all rows, or a representative sample).
    n_bins : int
        Bins per unit, at least 2. With ``zero_threshold`` set, bin 0 is the zero bin and
        ``n_bins - 1`` equal-mass bins cover the values above it.
    zero_threshold : float or None
        Values ``< zero_threshold`` go to the zero bin. ``None``: no zero bin, ``n_bins`` equal-mass
        bins over the whole range (for activations that are not ReLU outputs).

    Returns
    -------
    list of ndarray
        Per unit, the sorted interior edges ``e``; a value ``v`` (above the zero threshold) falls in
        bin ``offset + searchsorted(e, v, side="right")``. Tied quantiles are merged, so units with
        few distinct values get fewer bins (a constant unit gets one).
    """
    A = as_activations(A, name)
    n_bins = check_positive_int(n_bins, "n_bins", minimum=2)
    t = _check_threshold(zero_threshold)
    n_eq = n_bins - 1 if t is not None else n_bins
    qs = np.arange(1, n_eq) / n_eq
    edges = []
    for j in range(A.shape[1]):
        col = A[:, j]
        pos = col[col >= t] if t is not None else col
        if pos.size == 0 or n_eq == 1:
            edges.append(np.empty(0))
            continue
        e = np.unique(np.quantile(pos, qs))
        # An edge at the minimum would leave an empty lowest bin: drop it.
        edges.append(e[e > pos.min()])
    return edges


def _codes(A: np.ndarray, edges: list, t, n_bins: int) -> np.ndarray:
    """Bin index (0 .. n_bins-1) of every entry, per unit."""
    codes = np.empty(A.shape, dtype=np.intp)
    offset = 1 if t is not None else 0
    for j in range(A.shape[1]):
        col = A[:, j]
        c = offset + np.searchsorted(edges[j], col, side="right")
        if t is not None:
            c[col < t] = 0
        codes[:, j] = c
    return codes


def _onehot(codes: np.ndarray, n_bins: int) -> np.ndarray:
    # float32 is exact for counts up to 2**24; update() feeds at most _CHUNK rows per product
    b, n = codes.shape
    out = np.zeros((b, n * n_bins), dtype=np.float32)
    cols = codes + (np.arange(n) * n_bins)[None, :]
    out[np.arange(b)[:, None], cols] = 1.0
    return out


class MIHistogram:
    """Streaming, mergeable joint histograms of every (unit of X, unit of Y) pair with fixed edges.

    Parameters
    ----------
    edges_x, edges_y : list of ndarray
        Per-unit interior edges from :func:`mi_bin_edges` (same ``n_bins`` and ``zero_threshold``).
    n_bins : int
    zero_threshold : float or None

    Notes
    -----
    Memory is ``n_x * n_y * n_bins**2`` float64 counts (210 MB for 512 x 512 units with 10 bins).
    Counts are exact integers held in float64 (exact up to 2**53 samples).
    """

    def __init__(self, edges_x, edges_y, *, n_bins: int = 10, zero_threshold: float | None = ZERO_THRESHOLD):
        self.n_bins = check_positive_int(n_bins, "n_bins", minimum=2)
        self.zero_threshold = _check_threshold(zero_threshold)
        self.edges_x = [np.asarray(e, dtype=np.float64) for e in edges_x]
        self.edges_y = [np.asarray(e, dtype=np.float64) for e in edges_y]
        if not self.edges_x or not self.edges_y:
            raise ValueError("edges_x and edges_y must hold the edges of at least one unit each")
        limit = self.n_bins - (1 if self.zero_threshold is not None else 0) - 1
        for name, es in (("edges_x", self.edges_x), ("edges_y", self.edges_y)):
            for j, e in enumerate(es):
                if e.size > limit:
                    raise ValueError(f"{name}[{j}] has {e.size} interior edges; at most {limit} fit n_bins={self.n_bins}")
        self.n_x = len(self.edges_x)
        self.n_y = len(self.edges_y)
        self.n_samples = 0
        self.counts = np.zeros((self.n_x * self.n_bins, self.n_y * self.n_bins))

    @classmethod
    def from_arrays(cls, X, Y, *, n_bins: int = 10, zero_threshold: float | None = ZERO_THRESHOLD, batch_size: int = 8192):
        """Edges from all rows of X and Y, then one pass over them."""
        Xa, Ya = check_pair(X, Y)
        h = cls(
            mi_bin_edges(Xa, n_bins=n_bins, zero_threshold=zero_threshold, name="X"),
            mi_bin_edges(Ya, n_bins=n_bins, zero_threshold=zero_threshold, name="Y"),
            n_bins=n_bins,
            zero_threshold=zero_threshold,
        )
        batch_size = check_positive_int(batch_size, "batch_size")
        for s in range(0, Xa.shape[0], batch_size):
            h.update(Xa[s : s + batch_size], Ya[s : s + batch_size])
        return h

    def update(self, x, y) -> "MIHistogram":
        """Add a batch of rows (same inputs on both sides); returns ``self``."""
        xa, ya = check_pair(x, y, names=("x", "y"))
        if xa.shape[1] != self.n_x:
            raise ValueError(f"x must have n_x={self.n_x} columns, got shape {xa.shape}")
        if ya.shape[1] != self.n_y:
            raise ValueError(f"y must have n_y={self.n_y} columns, got shape {ya.shape}")
        for s in range(0, xa.shape[0], _CHUNK):
            ox = _onehot(_codes(xa[s : s + _CHUNK], self.edges_x, self.zero_threshold, self.n_bins), self.n_bins)
            oy = _onehot(_codes(ya[s : s + _CHUNK], self.edges_y, self.zero_threshold, self.n_bins), self.n_bins)
            self.counts += (ox.T @ oy).astype(np.float64)
        self.n_samples += xa.shape[0]
        return self

    def merge(self, other: "MIHistogram") -> "MIHistogram":
        """Histogram of the union of the (disjoint) rows seen by ``self`` and ``other``."""
        if not isinstance(other, MIHistogram):
            raise ValueError(f"other must be an MIHistogram, got {type(other).__name__}")
        same = (
            other.n_bins == self.n_bins
            and other.zero_threshold == self.zero_threshold
            and (other.n_x, other.n_y) == (self.n_x, self.n_y)
            and all(np.array_equal(a, b) for a, b in zip(self.edges_x + self.edges_y, other.edges_x + other.edges_y))
        )
        if not same:
            raise ValueError("cannot merge histograms with different units, bins or edges")
        out = MIHistogram(self.edges_x, self.edges_y, n_bins=self.n_bins, zero_threshold=self.zero_threshold)
        out.counts = self.counts + other.counts
        out.n_samples = self.n_samples + other.n_samples
        return out

    def joint_counts(self, i: int, j: int) -> np.ndarray:
        """The ``n_bins x n_bins`` contingency table of unit i of X and unit j of Y."""
        b = self.n_bins
        return self.counts[i * b : (i + 1) * b, j * b : (j + 1) * b].copy()

    def mutual_information(self, *, bias_correction: bool = True) -> np.ndarray:
        """(n_x, n_y) matrix of MI in nats (Miller-Madow corrected unless told otherwise)."""
        if self.n_samples < 2:
            raise ValueError(f"the histogram has seen {self.n_samples} sample(s); MI needs at least 2")
        b = self.n_bins
        N = float(self.n_samples)
        P = self.counts.reshape(self.n_x, b, self.n_y, b).transpose(0, 2, 1, 3) / N  # (nx, ny, b, b)
        px = P.sum(axis=3)  # (nx, ny, b) -- identical over j
        py = P.sum(axis=2)  # (nx, ny, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = P / (px[..., :, None] * py[..., None, :])
            terms = np.where(P > 0, P * np.log(np.where(P > 0, ratio, 1.0)), 0.0)
        mi = terms.sum(axis=(2, 3))
        if bias_correction:
            m_xy = (P > 0).sum(axis=(2, 3))
            m_x = (px > 0).sum(axis=2)
            m_y = (py > 0).sum(axis=2)
            mi = mi + (m_x + m_y - m_xy - 1) / (2.0 * N)
        # a unit confined to one bin carries no information; make that exact, not 1e-16
        mi[self.single_bin_x(), :] = 0.0
        mi[:, self.single_bin_y()] = 0.0
        return mi

    def single_bin_x(self) -> np.ndarray:
        """Mask of X units whose values all fall in one bin (no information: MI 0 with everything)."""
        b = self.n_bins
        px = self.counts.reshape(self.n_x, b, self.n_y, b)[:, :, 0, :].sum(axis=2)
        return (px > 0).sum(axis=1) <= 1

    def single_bin_y(self) -> np.ndarray:
        b = self.n_bins
        py = self.counts.reshape(self.n_x, b, self.n_y, b)[0].sum(axis=0)
        return (py > 0).sum(axis=1) <= 1


def mutual_information(X, Y=None, *, n_bins: int = 10, zero_threshold: float | None = ZERO_THRESHOLD,
                       bias_correction: bool = True) -> np.ndarray:
    """Mutual information (nats) of every unit of X with every unit of Y (spec section 2).

    Parameters
    ----------
    X : array (n_samples, n_x) or MIHistogram
        Activations, or a streamed :class:`MIHistogram` (then ``Y`` is omitted).
    Y : array (n_samples, n_y), optional
    n_bins, zero_threshold
        Binning (see :func:`mi_bin_edges`); edges come from all rows of X and Y.
    bias_correction : bool
        Subtract the Miller-Madow bias (default, as the authors did).

    Returns
    -------
    ndarray of shape (n_x, n_y)

    Notes
    -----
    A :class:`~repmatch.Reduction` holds moments, not histograms: passing one raises ValueError.
    Stream an :class:`MIHistogram` instead.
    """
    from ._resolve import as_rows

    if isinstance(X, MIHistogram):
        if Y is not None:
            raise ValueError("Y must be omitted when X is an MIHistogram")
        return X.mutual_information(bias_correction=bias_correction)
    Xa, Ya = as_rows(X, Y, measure="mutual information", needs="histograms", alternative="an MIHistogram")
    return MIHistogram.from_arrays(Xa, Ya, n_bins=n_bins, zero_threshold=zero_threshold).mutual_information(
        bias_correction=bias_correction
    )
