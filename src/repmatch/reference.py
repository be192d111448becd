"""Reference measures of representational similarity: the CKA family, the CCA family, Procrustes.

These are the layer-level scores other tools report (spec/field.md), offered next to the
neuron-level measures so that a reader can compare them on the same data. Each returns a
:class:`Score` whose ``larger_is_more_similar`` says which way is "more alike", and
:data:`REFERENCE_MEASURES` documents every measure's direction, range, invariances and whether it
can be computed from a streamed :class:`~repmatch.Reduction`.

From moments (arrays or a Reduction)
    :func:`linear_cka` (feature-space form, exact), :func:`cca`, :func:`mean_squared_cca`,
    :func:`svcca`, :func:`pwcca`, :func:`procrustes_distance`. All need only the centred
    covariance of ``[X Y]``.
In memory only (arrays)
    :func:`debiased_linear_cka` (needs fourth moments per row) and :func:`rbf_cka` (needs the
    n x n kernel matrices). Passing a Reduction raises ValueError.

Degenerate input
----------------
* fewer than 2 rows (4 for debiased CKA): ValueError naming the argument;
* constant units (the rule of :data:`repmatch.CONSTANT_TOL`, ``constant_tol=`` of every function)
  are centred to exactly zero, so every score equals the score of the layers without them; they
  are reported in a :class:`~repmatch.RepmatchWarning` (with ``center=False`` they are kept: an
  uncentred constant unit is a real direction);
* a layer with no variance at all (every unit constant): ValueError, since every score would be 0/0;
* rank-deficient layers: CCA-based scores use the numerical rank (eigenvalues of the covariance
  above :data:`RANK_TOL` times the largest); the rank is reported in ``Score.details``. When
  ``n_samples <= rank_x + rank_y`` canonical correlations are inflated (centred data span only
  ``n - 1`` dimensions, so ``rank_x + rank_y - (n - 1)`` of them equal 1 whatever the data) and a
  :class:`~repmatch.RepmatchWarning` says so.

No score is ever NaN.

References: Kornblith et al., ICML 2019 (CKA; golden values in spec/field.md); Raghu et al. 2017
(SVCCA); Morcos et al. 2018 (PWCCA); Ding et al. 2021 and Williams et al. 2021 (Procrustes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._resolve import as_reduction, as_rows
from ._validate import CONSTANT_TOL, check_tol, constant_units, report_constant, warn

__all__ = [
    "RANK_TOL",
    "Score",
    "MeasureInfo",
    "REFERENCE_MEASURES",
    "linear_cka",
    "debiased_linear_cka",
    "rbf_cka",
    "cca",
    "mean_squared_cca",
    "svcca",
    "pwcca",
    "procrustes_distance",
]

#: Covariance eigenvalues at or below ``RANK_TOL * largest`` count as zero (singular values of the
#: centred data below ~1e-6 of the largest): a float64 covariance carries ~1e-16 relative rounding,
#: so directions below this are noise once squared condition numbers are taken into account.
RANK_TOL = 1e-12


@dataclass(frozen=True)
class MeasureInfo:
    """What a reference measure means: direction, range, invariances, how it can be computed."""

    larger_is_more_similar: bool
    range: tuple
    streaming: bool
    symmetric: bool
    invariant_to_permutation: bool
    invariant_to_orthogonal: bool
    invariant_to_isotropic_scaling: bool
    invariant_to_invertible_linear: bool
    invariant_to_translation: bool
    invariant_to_unit_scaling: bool  # rescaling each neuron separately


#: Documented registry of the reference measures (see docs/reference-measures.md).
REFERENCE_MEASURES = {
    "linear_cka": MeasureInfo(True, (0.0, 1.0), True, True, True, True, True, False, True, False),
    "debiased_linear_cka": MeasureInfo(True, (-1.0, 1.0), False, True, True, True, True, False, True, False),
    "rbf_cka": MeasureInfo(True, (0.0, 1.0), False, True, True, True, True, False, True, False),
    "mean_squared_cca": MeasureInfo(True, (0.0, 1.0), True, True, True, True, True, True, True, True),
    "svcca": MeasureInfo(True, (0.0, 1.0), True, True, True, True, True, False, True, False),
    "pwcca": MeasureInfo(True, (0.0, 1.0), True, False, True, False, True, False, True, False),
    "procrustes": MeasureInfo(False, (0.0, float(np.sqrt(2.0))), True, True, True, True, True, False, True, False),
}


@dataclass(frozen=True)
class Score:
    """One scalar similarity or distance between two layers.

    Attributes
    ----------
    name : str
        Key of :data:`REFERENCE_MEASURES`.
    value : float
    larger_is_more_similar : bool
        False for distances (Procrustes).
    n_samples : int
    details : dict
        Measure-specific extras (canonical correlations, numerical ranks, kernel bandwidths).

    ``float(score)`` is ``score.value``.
    """

    name: str
    value: float
    larger_is_more_similar: bool
    n_samples: int
    details: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "value": float(self.value),
            "larger_is_more_similar": self.larger_is_more_similar,
            "n_samples": self.n_samples,
        }
        for k, v in self.details.items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Score":
        """The inverse of :meth:`to_dict`: every other key is a detail (lists of numbers read back as arrays)."""
        from ._schema import floats, num

        if not isinstance(d, dict) or "name" not in d or "value" not in d:
            raise ValueError("Score.from_dict needs the dict of Score.to_dict() (with 'name' and 'value')")
        core = ("name", "value", "larger_is_more_similar", "n_samples")
        details = {k: floats(v) if isinstance(v, list) and all(x is None or isinstance(x, (int, float)) for x in v)
                   and not all(isinstance(x, bool) for x in v) else v for k, v in d.items() if k not in core}
        return cls(str(d["name"]), num(d["value"]), bool(d["larger_is_more_similar"]), int(d["n_samples"]), details)


def _score(name, value, n, **details) -> Score:
    return Score(name, float(value), REFERENCE_MEASURES[name].larger_is_more_similar, int(n), details)


def _covariances(X, Y, measure, center=True, constant_tol=CONSTANT_TOL):
    constant_tol = check_tol(constant_tol, "constant_tol")
    r = as_reduction(X, Y, measure=measure, min_samples=2)
    # each layer in units of its own largest neuron scale (Reduction.side_scaled), then each block
    # divided by its largest entry: every measure here is invariant to scaling a whole layer, and
    # nothing under- or overflows when the scores square the covariances (data at 1e-300 or 1e300)
    C = r.side_scaled(center)
    nx = r.n_x
    if center:  # the constant-unit rule, in the stored units (mean and spread in the same units)
        const = constant_units(r.stored_mean, np.sqrt(np.maximum(np.diag(r.stored_comoment), 0.0) / r.n_samples),
                               tol=constant_tol)
        C[const, :] = 0.0
        C[:, const] = 0.0
        report_constant(const[:nx], const[nx:], measure=measure, stacklevel=4,
                        consequence="they are centred to zero and take no part in the score", see=None)
    for sl in (slice(0, nx), slice(nx, None)):
        big = np.abs(C[sl, sl]).max()
        if big > 0:
            f = 1.0 / np.sqrt(big)
            C[sl, :] *= f
            C[:, sl] *= f
    Sxx, Syy, Sxy = C[:nx, :nx], C[nx:, nx:], C[:nx, nx:]
    for name, S in (("X", Sxx), ("Y", Syy)):
        if not np.trace(S) > 0:
            raise ValueError(f"{name} has no variance (every unit is constant); {measure} is undefined")
    return Sxx, Syy, Sxy, r.n_samples


def _in_memory(X, Y, measure, min_samples, constant_tol=CONSTANT_TOL):
    constant_tol = check_tol(constant_tol, "constant_tol")
    Xa, Ya = as_rows(X, Y, measure=measure, min_samples=min_samples)
    out, consts = [], []
    for name, A in (("X", Xa), ("Y", Ya)):
        # a power of two (exact) brings the layer's largest value to [0.5, 1): the scores below are
        # invariant to scaling a layer, and its squares and kernels then neither under- nor overflow
        big = float(np.abs(A).max())
        unit = float(np.ldexp(1.0, int(np.frexp(big)[1]))) if big > 0 else 1.0
        As = A / unit
        mean = As.mean(axis=0)
        Ac = As - mean
        const = constant_units(mean, np.sqrt(np.mean(Ac**2, axis=0)), tol=constant_tol)
        Ac[:, const] = 0.0
        consts.append(const)
        if not np.any(Ac):
            raise ValueError(f"{name} has no variance (every unit is constant); {measure} is undefined")
        out.append((Ac, unit))
    report_constant(consts[0], consts[1], measure=measure, stacklevel=4,
                    consequence="they are centred to zero and take no part in the score", see=None)
    return out[0][0], out[1][0], out[0][1], out[1][1]


# ---------------------------------------------------------------------------- CKA
def linear_cka(X, Y=None, *, constant_tol: float = CONSTANT_TOL) -> Score:
    """Linear centred kernel alignment, exact, in feature space (Kornblith et al. 2019, eq. 5).

    ``CKA = ||S_xy||_F^2 / (||S_xx||_F ||S_yy||_F)`` with ``S`` the centred covariances, which equals
    the Gram-matrix definition ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with linear kernels.
    Accepts arrays or a :class:`~repmatch.Reduction` (``Y`` omitted). Range [0, 1], larger = more
    similar; invariant to orthogonal transforms, isotropic scaling and translation, not to
    arbitrary invertible maps or per-unit scaling.

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a :class:`~repmatch.Reduction` of both (``Y`` omitted).
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        ``value`` in [0, 1], larger = more similar.
    """
    Sxx, Syy, Sxy, n = _covariances(X, Y, "linear_cka", constant_tol=constant_tol)
    value = np.sum(Sxy**2) / (np.linalg.norm(Sxx) * np.linalg.norm(Syy))
    return _score("linear_cka", min(max(value, 0.0), 1.0), n)


def _hsic_unbiased_linear(Xc, Yc):
    """Unbiased HSIC (Song et al. 2012) with linear kernels, in O(n p^2) without n x n matrices."""
    n = Xc.shape[0]
    dk = np.einsum("ij,ij->i", Xc, Xc)  # diag of K = X X^T
    dl = np.einsum("ij,ij->i", Yc, Yc)
    tr_kl = np.sum((Xc.T @ Yc) ** 2) - dk @ dl  # tr(K~ L~), diagonals removed
    k1 = Xc @ Xc.sum(axis=0) - dk  # K~ 1
    l1 = Yc @ Yc.sum(axis=0) - dl
    sk, sl = k1.sum(), l1.sum()
    return (tr_kl + sk * sl / ((n - 1) * (n - 2)) - 2.0 * (k1 @ l1) / (n - 2)) / (n * (n - 3))


def debiased_linear_cka(X, Y=None, *, constant_tol: float = CONSTANT_TOL) -> Score:
    """Linear CKA with the unbiased HSIC estimator (Kornblith et al. 2019; Song et al. 2012).

    Removes the positive bias of plain CKA at small ``n_samples / n_units``; can be slightly
    negative for unrelated layers. In memory only (needs per-row norms, which a Reduction does not
    keep); needs at least 4 rows. Computed in O(n p^2) without forming n x n kernels.

    Parameters
    ----------
    X : array of shape (n_samples, n_x)
        Activations of the first layer (in memory; a Reduction raises ValueError).
    Y : array of shape (n_samples, n_y)
        Activations of the second layer on the same inputs.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        ``value`` in [-1, 1] (slightly negative for unrelated layers).
    """
    Xc, Yc, _, _ = _in_memory(X, Y, "debiased_linear_cka", 4, constant_tol)
    hxy = _hsic_unbiased_linear(Xc, Yc)
    hxx = _hsic_unbiased_linear(Xc, Xc)
    hyy = _hsic_unbiased_linear(Yc, Yc)
    if not (hxx > 0 and hyy > 0):
        raise ValueError(
            "debiased_linear_cka: the unbiased self-similarity of X or Y is not positive (too few samples "
            "for the number of units); use linear_cka or more rows"
        )
    return _score("debiased_linear_cka", hxy / np.sqrt(hxx * hyy), Xc.shape[0])


def _rbf_gram(A, threshold):
    sq = np.einsum("ij,ij->i", A, A)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (A @ A.T), 0.0)
    med = np.median(d2)
    if not med > 0:
        raise ValueError("rbf_cka: the median squared distance between rows is 0 (most rows identical)")
    sigma2 = threshold**2 * med
    return np.exp(-d2 / (2.0 * sigma2)), float(np.sqrt(sigma2))


def rbf_cka(X, Y=None, *, threshold: float = 0.5, constant_tol: float = CONSTANT_TOL) -> Score:
    """CKA with Gaussian (RBF) kernels, in memory (Kornblith et al. 2019).

    The bandwidth of each layer is ``sigma = threshold * sqrt(median squared distance)`` over all
    pairs of rows (diagonal included, as in the CKA authors' demo), so the score is invariant to
    isotropic scaling. Memory O(n^2): subsample rows for large n. Larger = more similar, range [0, 1].

    Parameters
    ----------
    X : array of shape (n_samples, n_x)
        Activations of the first layer (in memory; a Reduction raises ValueError).
    Y : array of shape (n_samples, n_y)
        Activations of the second layer on the same inputs.
    threshold : float
        Bandwidth as a multiple of the root median squared distance (> 0).
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        ``value`` in [0, 1]; ``details`` has the bandwidths ``sigma_x``, ``sigma_y`` (data units).
    """
    t = float(threshold)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    Xc, Yc, ux, uy = _in_memory(X, Y, "rbf_cka", 2, constant_tol)
    K, sx = _rbf_gram(Xc, t)
    L, sy = _rbf_gram(Yc, t)
    sx, sy = sx * ux, sy * uy  # bandwidths in the data's units
    def centre(G):
        return G - G.mean(axis=0)[None, :] - G.mean(axis=1)[:, None] + G.mean()

    Kc, Lc = centre(K), centre(L)
    value = np.sum(Kc * Lc) / (np.linalg.norm(Kc) * np.linalg.norm(Lc))
    return _score("rbf_cka", min(max(value, 0.0), 1.0), Xc.shape[0], sigma_x=sx, sigma_y=sy)


# ---------------------------------------------------------------------------- CCA
def _whitener(S):
    """Orthonormal basis of the numerical range of S and the matching inverse square roots."""
    w, U = np.linalg.eigh(S)
    keep = w > RANK_TOL * w.max()
    return U[:, keep], w[keep]


def _cca_from_cov(Sxx, Syy, Sxy, n, name):
    Ux, wx = _whitener(Sxx)
    Uy, wy = _whitener(Syy)
    Wx = Ux / np.sqrt(wx)
    Wy = Uy / np.sqrt(wy)
    T = Wx.T @ Sxy @ Wy
    A, rho, Bt = np.linalg.svd(T, full_matrices=False)
    rho = np.clip(rho, 0.0, 1.0)
    rank_x, rank_y = wx.size, wy.size
    if n <= rank_x + rank_y:
        forced = max(rank_x + rank_y - (n - 1), 0)
        warn(
            f"{name}: {n} samples for layers of numerical rank {rank_x} and {rank_y}: canonical correlations "
            f"are inflated when n_samples <= rank_x + rank_y ({forced} of them equal 1 whatever the data)"
        )
    # canonical directions in the original unit coordinates (columns), for PWCCA
    return rho, Wx @ A, rank_x, rank_y


def cca(X, Y=None, *, center: bool = True, constant_tol: float = CONSTANT_TOL) -> np.ndarray:
    """Canonical correlations of X and Y, descending, ``min(rank_x, rank_y)`` of them, in [0, 1].

    From moments (arrays or a Reduction). Numerical ranks as in the module docstring.
    ``center=False`` uses uncentred second moments (see :func:`mean_squared_cca`).

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a :class:`~repmatch.Reduction` of both (``Y`` omitted).
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs.
    center : bool
        Centre each unit first (default); ``False`` uses uncentred second moments.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    ndarray
        The canonical correlations, descending, in [0, 1].
    """
    Sxx, Syy, Sxy, n = _covariances(X, Y, "cca", center, constant_tol)
    return _cca_from_cov(Sxx, Syy, Sxy, n, "cca")[0]


def mean_squared_cca(X, Y=None, *, center: bool = True, constant_tol: float = CONSTANT_TOL) -> Score:
    """Mean squared canonical correlation ``R^2_CCA`` (Kornblith et al. 2019, Table 1).

    Invariant to any invertible linear map of either layer (and so to per-unit scaling). Larger =
    more similar, range [0, 1]. The mean runs over ``min(rank_x, rank_y)`` correlations.

    ``center=True`` (default) centres each unit first, so the score is translation invariant.
    ``center=False`` works on the raw (uncentred) columns, which is what the CKA authors' demo
    does for CCA: the golden value 0.54312 of spec/field.md is the uncentred one (centred: 0.54540).

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a :class:`~repmatch.Reduction` of both (``Y`` omitted).
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs.
    center : bool
        Centre each unit first (default); ``False`` uses uncentred second moments.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        ``value`` in [0, 1]; ``details`` has the numerical ranks and ``center``.
    """
    Sxx, Syy, Sxy, n = _covariances(X, Y, "mean_squared_cca", center, constant_tol)
    rho, _, rx, ry = _cca_from_cov(Sxx, Syy, Sxy, n, "mean_squared_cca")
    return _score("mean_squared_cca", np.mean(rho**2), n, rank_x=rx, rank_y=ry, center=bool(center))


def _top_variance(S, keep):
    w, U = np.linalg.eigh(S)
    w, U = w[::-1], U[:, ::-1]
    w = np.maximum(w, 0.0)
    frac = np.cumsum(w) / w.sum()
    k = int(np.searchsorted(frac, keep - 1e-12) + 1)
    k = min(k, int(np.sum(w > RANK_TOL * w[0])))
    return U[:, :k]


def svcca(X, Y=None, *, keep: float = 0.99, constant_tol: float = CONSTANT_TOL) -> Score:
    """SVCCA (Raghu et al. 2017): keep the top principal directions of each layer explaining
    ``keep`` of its variance, then the mean canonical correlation between the reduced layers.

    From moments. Larger = more similar, range [0, 1]. Invariant to orthogonal maps and isotropic
    scaling (not to per-unit scaling, which changes the principal directions).

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a :class:`~repmatch.Reduction` of both (``Y`` omitted).
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs.
    keep : float in (0, 1]
        Share of each layer's variance its kept principal directions explain.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        ``value`` in [0, 1]; ``details`` has the directions kept, ``kept_x`` and ``kept_y``.
    """
    k = float(keep)
    if not (0.0 < k <= 1.0):
        raise ValueError(f"keep must lie in (0, 1], got {keep!r}")
    Sxx, Syy, Sxy, n = _covariances(X, Y, "svcca", constant_tol=constant_tol)
    Vx, Vy = _top_variance(Sxx, k), _top_variance(Syy, k)
    rho, _, rx, ry = _cca_from_cov(Vx.T @ Sxx @ Vx, Vy.T @ Syy @ Vy, Vx.T @ Sxy @ Vy, n, "svcca")
    return _score("svcca", np.mean(rho), n, kept_x=int(Vx.shape[1]), kept_y=int(Vy.shape[1]))


def pwcca(X, Y=None, *, constant_tol: float = CONSTANT_TOL) -> Score:
    """Projection-weighted CCA (Morcos et al. 2018): canonical correlations averaged with weights
    ``alpha_i = sum_j |<h_i, x_j>|``, ``h_i`` the i-th unit-norm canonical variate of X and ``x_j``
    the centred activation vector of unit j of X (the weights come from X: not symmetric).

    From moments. Larger = more similar, range [0, 1].

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a :class:`~repmatch.Reduction` of both (``Y`` omitted).
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        ``value`` in [0, 1]; ``details`` has the numerical ranks.
    """
    Sxx, Syy, Sxy, n = _covariances(X, Y, "pwcca", constant_tol=constant_tol)
    rho, A, rx, ry = _cca_from_cov(Sxx, Syy, Sxy, n, "pwcca")
    A = A[:, : rho.size]
    # <h_i, x_j> / n = (Sxx a_i)_j ; ||h_i||^2 / n = a_i^T Sxx a_i (= 1 by whitening)
    proj = (Sxx @ A) / np.sqrt(np.einsum("ji,jk,ki->i", A, Sxx, A))[None, :]
    alpha = np.abs(proj).sum(axis=0)
    if not alpha.sum() > 0:  # pragma: no cover - excluded by the variance check
        raise ValueError("pwcca: all projection weights are zero")
    alpha = alpha / alpha.sum()
    return _score("pwcca", float(alpha @ rho), n, rank_x=rx, rank_y=ry)


# ---------------------------------------------------------------------------- Procrustes
def procrustes_distance(X, Y=None, *, constant_tol: float = CONSTANT_TOL) -> Score:
    """Orthogonal Procrustes distance between centred, Frobenius-normalised layers.

    ``d = sqrt(2 - 2 ||X~^T Y~||_*)`` with ``X~ = X_c / ||X_c||_F`` (Ding et al. 2021); the
    minimum over orthogonal ``Q`` of ``||X~ Q - Y~||_F`` (zero-padding the narrower layer). A
    distance: smaller = more similar, range [0, sqrt(2)], 0 iff Y is a rotated, scaled, shifted X.
    From moments.

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a :class:`~repmatch.Reduction` of both (``Y`` omitted).
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and centred to exactly zero
        (default :data:`repmatch.CONSTANT_TOL`; module docstring).

    Returns
    -------
    Score
        A distance in [0, sqrt(2)], smaller = more similar.
    """
    Sxx, Syy, Sxy, n = _covariances(X, Y, "procrustes", constant_tol=constant_tol)
    nuc = np.linalg.svd(Sxy, compute_uv=False).sum() / np.sqrt(np.trace(Sxx) * np.trace(Syy))
    return _score("procrustes", np.sqrt(max(0.0, 2.0 - 2.0 * min(nuc, 1.0))), n)
