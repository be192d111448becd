"""One-to-many alignment: predict every unit of one network from all units of the other (LASSO).

Follows spec/convergent-learning.md section 3. Units are z-scored with the training statistics
(as the authors did) and each target unit ``y_j`` is predicted by a linear map plus bias with an L1
penalty::

    minimise over w_j   1/2 * mean_rows (y_j - x . w_j - b_j)^2  +  alpha * ||w_j||_1

(the objective of scikit-learn's ``Lasso`` with ``fit_intercept=True``). Because the units are
centred and scaled, the loss depends on the data only through the training correlation matrices
``C_xx`` and ``C_xy``: ``1/2 (1 - 2 w.c_j + w' C_xx w)``. The path is therefore solved *exactly*
from streamed moments, warm-started from the largest penalty down: a few sweeps of cyclic
coordinate descent on ``C_xx`` (vectorised over all target units at once) find the support, then an
active-set step per target lands on the exact optimum (see Convergence); ``alpha = 0`` is solved directly by least
squares (minimum-norm solution if ``C_xx`` is singular). The authors' SGD runs were not converged
(spec section 3); this is.

Held-out error
--------------
The fraction of variance unexplained ``FVU_j = mean_test (y_j - yhat_j)^2 / var_test(y_j)`` (= 1 - R^2;
the authors' loss is about FVU / 2) is computed from the *test* moments alone, since the residual is
linear in the data. Give either arrays (a seeded random split, ``test_fraction`` of the rows held
out) or a training :class:`~repmatch.Reduction` plus ``test=`` a second Reduction of other rows.
Without held-out rows (``test_fraction=0`` or a Reduction without ``test``) the FVU is the
training error and ``held_out`` is False.

Convergence
-----------
After a few coordinate-descent sweeps every target is solved exactly by an active-set method
(KKT conditions verified to rounding); targets where that fails (a singular active block) continue
coordinate descent until no weight moved by more than ``tol`` (default
:data:`CD_TOL`) in a full sweep, or ``max_iter`` sweeps pass (then ``converged`` is False for that
penalty and a warning is issued).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ._resolve import as_reduction, as_rows
from ._validate import (CONSTANT_TOL, as_rng, check_choice, check_fraction, check_positive_int, check_tol,
                        constant_units, report_constant, warn)
from .protocol import AUTHORS_ALPHAS
from .reduce import Reduction

__all__ = ["CD_TOL", "DEFAULT_ALPHAS", "SparsePath", "SparsePrediction", "sparse_prediction", "lasso_path_from_moments"]

#: Coordinate descent stops when the largest weight change in a sweep is below this (weights are in
#: z-score units, so 1e-10 is far below anything measurable; tests check agreement with scikit-learn
#: to 1e-6).
CD_TOL = 1e-10
#: The authors' penalties (spec section 3), from :mod:`repmatch.protocol`.
DEFAULT_ALPHAS = AUTHORS_ALPHAS
DIRECTIONS = ("x_to_y", "y_to_x", "both")


def _check_alphas(alphas) -> np.ndarray:
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64)) if not isinstance(alphas, str) else None
    if a is None or a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alphas must be a non-empty 1-D sequence of finite numbers >= 0, got {alphas!r}")
    return a


def _active_set(C, c, alpha, w0, max_steps):
    """Exact LASSO solution for one target by an active-set method, started from ``w0``.

    Osborne, Presnell & Turlach (2000): on the active set A with signs s the optimum solves
    ``C_AA w_A = c_A - alpha s``. If that solution flips a sign, step from the current weights
    towards it until the first coordinate reaches zero and drop that coordinate; otherwise add the
    inactive coordinate that violates ``|c_i - (C w)_i| <= alpha`` most. Every step lowers the
    objective; it stops when the KKT conditions hold to rounding (then the result is the exact
    optimum) and returns None if ``C_AA`` is singular or ``max_steps`` pass.
    """
    p = c.size
    slack = 1e-12 * max(alpha, 1.0)
    w = w0.copy()
    s = np.sign(w)
    active = np.flatnonzero(w)
    for _ in range(max_steps):
        if active.size:
            try:  # C_AA is a correlation block: Cholesky, which also flags a singular block
                factor = scipy.linalg.cho_factor(C[np.ix_(active, active)], check_finite=False)
                d = scipy.linalg.cho_solve(factor, c[active] - alpha * s[active], check_finite=False)
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                return None
            if not np.all(np.isfinite(d)):
                return None
            bad = d * s[active] <= 0
            if bad.any():
                wa = w[active]
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = np.where(bad, wa / (wa - d), np.inf)
                kk = int(np.argmin(t))
                w[active] = wa + t[kk] * (d - wa)
                w[active[kk]] = 0.0
                s[active[kk]] = 0.0
                active = np.delete(active, kk)
                continue
            w[:] = 0.0
            w[active] = d
        else:
            w[:] = 0.0
        g = c - C @ w
        viol = np.abs(g) - alpha
        viol[active] = -np.inf
        k = int(np.argmax(viol)) if p else 0
        if p == 0 or viol[k] <= slack:
            return w
        s[k] = np.sign(g[k])
        active = np.append(active, k)
    return None


def lasso_path_from_moments(Cxx, Cxy, alphas, *, tol: float = CD_TOL, max_iter: int = 10000, warm_sweeps: int = 20):
    """Exact LASSO path on standardised data from its correlation matrices.

    Parameters
    ----------
    Cxx : ndarray (p, p)
        Correlation matrix of the inputs (unit diagonal).
    Cxy : ndarray (p, q)
        Correlations of inputs with the q targets.
    alphas : sequence of float >= 0
    tol, max_iter
        Stopping rule of the coordinate-descent fallback (see Notes).
    warm_sweeps : int
        Coordinate-descent sweeps before the exact active-set step.

    Returns
    -------
    W : ndarray (n_alphas, p, q)
        Weights for each penalty, in the order of ``alphas``.
    n_iter : ndarray of int (n_alphas,)
        Coordinate-descent sweeps used (0 for ``alpha = 0``, solved directly).
    converged : ndarray of bool (n_alphas,)

    Notes
    -----
    Per penalty (largest first, each warm-started from the previous): a few sweeps of cyclic
    coordinate descent vectorised over all targets find the approximate support; then every
    target is solved exactly by an active-set method from there (its KKT conditions are verified to
    rounding). Targets where that fails (singular active block, e.g. duplicated inputs, for which
    the LASSO solution is not unique) continue coordinate descent until no weight moves by more
    than ``tol`` in a full sweep, or ``max_iter`` sweeps pass (then ``converged`` is False).
    ``alpha = 0`` is ordinary least squares (minimum-norm if ``Cxx`` is singular).
    """
    alphas = _check_alphas(alphas)
    tol = float(tol)
    max_iter = check_positive_int(max_iter, "max_iter")
    warm_sweeps = check_positive_int(warm_sweeps, "warm_sweeps", minimum=0)
    p, q = Cxy.shape
    W_all = np.zeros((alphas.size, p, q))
    n_iter = np.zeros(alphas.size, dtype=int)
    converged = np.ones(alphas.size, dtype=bool)
    if p == 0 or q == 0:  # no live inputs or no live targets: the empty model
        return W_all, n_iter, converged
    W = np.zeros((p, q))
    for a_idx in np.argsort(-alphas, kind="stable"):
        alpha = alphas[a_idx]
        if alpha == 0.0:
            W_all[a_idx] = np.linalg.lstsq(Cxx, Cxy, rcond=None)[0]
            continue
        sweeps, _ = _cd(Cxx, Cxy, W, np.arange(q), alpha, tol, min(warm_sweeps, max_iter))
        failed = []
        for j in range(q):
            w = _active_set(Cxx, Cxy[:, j], alpha, W[:, j], max_steps=4 * p + 20)
            if w is None:
                failed.append(j)
            else:
                W[:, j] = w
        if failed:
            more, ok = _cd(Cxx, Cxy, W, np.array(failed), alpha, tol, max(max_iter - sweeps, 1))
            sweeps += more
            converged[a_idx] = ok
        n_iter[a_idx] = sweeps
        W_all[a_idx] = W
    return W_all, n_iter, converged


def _cd(Cxx, Cxy, W, cols, alpha, tol, max_sweeps):
    """Cyclic coordinate descent on the columns ``cols`` of W (in place), glmnet-style active set.

    Returns (sweeps used, converged: no weight moved by more than ``tol`` in a full sweep).
    """
    p = Cxx.shape[0]
    Wt = W[:, cols].copy()
    Ct = Cxy[:, cols]
    G = Cxx @ Wt  # kept equal to Cxx @ Wt
    sweep, full, done = 0, True, False
    while sweep < max_sweeps:
        sweep += 1
        rows = range(p) if full else np.flatnonzero(np.any(Wt != 0, axis=1))
        biggest = 0.0
        for k in rows:
            r = Ct[k] - G[k] + Wt[k]  # Cxx[k, k] == 1
            new = np.sign(r) * np.maximum(np.abs(r) - alpha, 0.0)
            d = new - Wt[k]
            m = np.abs(d).max()
            if m > 0.0:
                G += np.outer(Cxx[:, k], d)
                Wt[k] = new
                biggest = max(biggest, m)
        if biggest <= tol:
            if full:
                done = True
                break
            full = True
        else:
            full = False
    W[:, cols] = Wt
    return sweep, done


@dataclass(frozen=True)
class SparsePath:
    """LASSO path for one direction (inputs -> targets).

    Attributes
    ----------
    direction : str
        ``"x_to_y"`` (predict Y's units from X's) or ``"y_to_x"``.
    alphas : ndarray (n_alphas,)
    weights : ndarray (n_alphas, n_inputs, n_targets)
        Standardised weights (z-score units); rows of constant inputs and columns of constant
        targets are 0.
    targets : ndarray of int
        The live target units; ``fvu`` and ``n_nonzero`` have one column per entry.
    fvu : ndarray (n_alphas, n_live_targets)
        Fraction of variance unexplained on held-out rows (training rows if ``held_out`` is False).
    n_nonzero : ndarray of int (n_alphas, n_live_targets)
        Non-zero inputs per predicted unit.
    constant_inputs, constant_targets : ndarray of int
    held_out : bool
    n_train, n_test : int
    n_iter : ndarray of int
    converged : ndarray of bool
    """

    direction: str
    alphas: np.ndarray
    weights: np.ndarray
    targets: np.ndarray
    fvu: np.ndarray
    n_nonzero: np.ndarray
    constant_inputs: np.ndarray
    constant_targets: np.ndarray
    held_out: bool
    n_train: int
    n_test: int
    n_iter: np.ndarray
    converged: np.ndarray

    larger_is_more_similar = False  # for fvu

    @property
    def mean_fvu(self) -> np.ndarray:
        """Mean FVU over live targets, per penalty (0.0 when there are none)."""
        return self.fvu.mean(axis=1) if self.fvu.shape[1] else np.zeros(self.alphas.size)

    @property
    def mean_nonzero(self) -> np.ndarray:
        return self.n_nonzero.mean(axis=1) if self.n_nonzero.shape[1] else np.zeros(self.alphas.size)

    def strongest_input(self, k: int) -> np.ndarray:
        """For penalty index ``k``, the input with the largest |weight| for every target (-1 if none)."""
        A = np.abs(self.weights[k])
        if A.shape[0] == 0 or A.shape[1] == 0:
            return np.full(A.shape[1], -1, dtype=int)
        best = np.argmax(A, axis=0)
        best[A.max(axis=0) == 0] = -1
        return best

    def to_dict(self, *, arrays: bool = True) -> dict:
        """A JSON-ready dict; ``arrays=False`` leaves out the (n_alphas, n_inputs, n_targets) weights."""
        return {
            **({"weights": self.weights.tolist(), "weights_shape": list(self.weights.shape)} if arrays else {}),
            "n_iter": np.asarray(self.n_iter).tolist(),
            "kind": "sparse_prediction",
            "direction": self.direction,
            "alphas": self.alphas.tolist(),
            "mean_fvu": self.mean_fvu.tolist(),
            "mean_nonzero": self.mean_nonzero.tolist(),
            "median_nonzero": (np.median(self.n_nonzero, axis=1).tolist() if self.n_nonzero.shape[1] else [0.0] * self.alphas.size),
            "n_nonzero": self.n_nonzero.tolist(),
            "fvu": self.fvu.tolist(),
            "n_inputs": int(self.weights.shape[1]) if self.weights is not None else int(self.__dict__["_n_inputs"]),
            "targets": self.targets.tolist(),
            "constant_inputs": self.constant_inputs.tolist(),
            "constant_targets": self.constant_targets.tolist(),
            "held_out": self.held_out,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "converged": self.converged.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SparsePath":
        """The inverse of :meth:`to_dict`; ``weights`` is None when it was written with ``arrays=False``."""
        from ._schema import check_kind, floats, ints

        d = check_kind(d, "sparse_prediction", "SparsePath")
        n_alphas = len(d["alphas"])
        n_t = len(d["targets"])
        out = cls(direction=str(d["direction"]), alphas=floats(d["alphas"]),
                   weights=floats(d["weights"], shape=tuple(d["weights_shape"])) if "weights" in d else None,
                   targets=ints(d["targets"]), fvu=floats(d["fvu"], shape=(n_alphas, n_t)),
                   n_nonzero=np.asarray(d["n_nonzero"], dtype=np.intp).reshape(n_alphas, n_t),
                   constant_inputs=ints(d["constant_inputs"]), constant_targets=ints(d["constant_targets"]),
                   held_out=bool(d["held_out"]), n_train=int(d["n_train"]), n_test=int(d["n_test"]),
                   n_iter=np.asarray(d["n_iter"], dtype=int).reshape(np.shape(d["n_iter"])),
                   converged=np.asarray(d["converged"], dtype=bool).reshape(np.shape(d["converged"])))
        if out.weights is None:  # written with arrays=False: keep the input count the weights would give
            object.__setattr__(out, "_n_inputs", int(d["n_inputs"]))
        return out


@dataclass(frozen=True)
class SparsePrediction:
    """Sparse prediction in one or both directions, with mutual strongest-weight pairs.

    ``mutual_pairs[k]`` lists, for penalty ``alphas[k]``, the pairs ``(i, j)`` (unit i of X,
    unit j of Y) that pick each other as strongest input: with both directions, i is the
    strongest input of Y_j in X->Y and j the strongest input of X_i in Y->X; with one direction,
    i is the strongest input of target j and j is the target on which input i has its largest
    |weight|.
    """

    alphas: np.ndarray
    x_to_y: SparsePath | None
    y_to_x: SparsePath | None
    mutual_pairs: tuple

    def to_dict(self, *, arrays: bool = True) -> dict:
        """A JSON-ready dict; ``arrays=False`` leaves out the paths' weights."""
        return {
            "kind": "sparse_prediction",
            "alphas": self.alphas.tolist(),
            "x_to_y": None if self.x_to_y is None else self.x_to_y.to_dict(arrays=arrays),
            "y_to_x": None if self.y_to_x is None else self.y_to_x.to_dict(arrays=arrays),
            "mutual_pairs": [[list(map(int, p)) for p in pairs] for pairs in self.mutual_pairs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SparsePrediction":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, floats

        d = check_kind(d, "sparse_prediction", "SparsePrediction")
        path = lambda p: None if p is None else SparsePath.from_dict(p)  # noqa: E731
        return cls(floats(d["alphas"]), path(d["x_to_y"]), path(d["y_to_x"]),
                   tuple(tuple(tuple(int(i) for i in p) for p in pairs) for pairs in d["mutual_pairs"]))


def _moments(r: Reduction):
    C = r.covariance(ddof=0)
    return r.mean, C


def _path(direction, mean_tr, C_tr, test, n_x, alphas, tol, max_iter, n_train, constant_tol=CONSTANT_TOL) -> SparsePath:
    n = C_tr.shape[0]
    if direction == "x_to_y":
        inp, tgt = np.arange(n_x), np.arange(n_x, n)
    else:
        inp, tgt = np.arange(n_x, n), np.arange(n_x)
    std = np.sqrt(np.maximum(np.diag(C_tr), 0.0))
    const = constant_units(mean_tr, std, tol=constant_tol)
    li = inp[~const[inp]]
    lt = tgt[~const[tgt]]
    s_i, s_t = std[li], std[lt]
    Cxx = C_tr[np.ix_(li, li)] / np.outer(s_i, s_i)
    np.fill_diagonal(Cxx, 1.0)
    Cxy = C_tr[np.ix_(li, lt)] / np.outer(s_i, s_t)
    W_live, n_iter, converged = lasso_path_from_moments(Cxx, Cxy, alphas, tol=tol, max_iter=max_iter)
    if not converged.all():
        bad = alphas[~converged].tolist()
        warn(f"sparse_prediction: coordinate descent did not reach tol={tol:g} in max_iter={max_iter} sweeps for alphas {bad}")
    W = np.zeros((alphas.size, inp.size, tgt.size))
    W[np.ix_(np.arange(alphas.size), ~const[inp], ~const[tgt])] = W_live
    # Held-out FVU from the evaluation moments: yhat = mu_t + s_t * ((x - mu_i) / s_i) @ w.
    mean_ev, C_ev = (test[0], test[1]) if test is not None else (mean_tr, C_tr)
    var_ev = np.diag(C_ev)[lt]
    if np.any(var_ev <= 0):
        raise ValueError(
            "sparse_prediction: a target unit is constant on the held-out rows; give more test rows "
            "(test_fraction) or a larger test Reduction"
        )
    Sii, Sit = C_ev[np.ix_(li, li)], C_ev[np.ix_(li, lt)]
    fvu = np.empty((alphas.size, lt.size))
    for k in range(alphas.size):
        B = W_live[k] * (s_t[None, :] / s_i[:, None])
        c = mean_tr[lt] - mean_tr[li] @ B
        resid_mean = mean_ev[lt] - c - mean_ev[li] @ B
        resid_var = var_ev - 2.0 * np.sum(B * Sit, axis=0) + np.sum(B * (Sii @ B), axis=0)
        fvu[k] = (np.maximum(resid_var, 0.0) + resid_mean**2) / var_ev
    return SparsePath(
        direction=direction,
        alphas=alphas,
        weights=W,
        targets=lt - tgt[0],
        fvu=fvu,
        n_nonzero=(W_live != 0).sum(axis=1),
        constant_inputs=inp[const[inp]] - inp[0],
        constant_targets=tgt[const[tgt]] - tgt[0],
        held_out=test is not None,
        n_train=int(n_train),
        n_test=0 if test is None else int(test[2]),
        n_iter=n_iter,
        converged=converged,
    )


def _mutual(xy: SparsePath | None, yx: SparsePath | None, k: int):
    if xy is not None and yx is not None:
        si = xy.strongest_input(k)  # for each Y unit, its strongest X input
        sj = yx.strongest_input(k)  # for each X unit, its strongest Y input
        return tuple((int(i), int(j)) for j, i in enumerate(si) if i >= 0 and sj[i] == j)
    path = xy if xy is not None else yx
    A = np.abs(path.weights[k])
    if A.size == 0:
        return ()
    col_best = path.strongest_input(k)
    row_best = np.argmax(A, axis=1)
    pairs = [(int(i), int(j)) for j, i in enumerate(col_best) if i >= 0 and row_best[i] == j]
    if path.direction == "y_to_x":
        pairs = [(j, i) for i, j in pairs]
    return tuple(sorted(pairs))


def sparse_prediction(
    X,
    Y=None,
    *,
    alphas=DEFAULT_ALPHAS,
    direction: str = "both",
    test=None,
    test_fraction: float = 0.2,
    rng=None,
    tol: float = CD_TOL,
    max_iter: int = 10000,
    constant_tol: float = CONSTANT_TOL,
) -> SparsePrediction:
    """Predict every unit of one network from all units of the other with an exact LASSO path.

    Parameters
    ----------
    X : array (n_samples, n_x) or Reduction
        Activations of network A, or a training :class:`~repmatch.Reduction` of both layers
        (then ``Y`` is omitted and held-out rows come from ``test``).
    Y : array (n_samples, n_y), optional
    alphas : sequence of float >= 0
        L1 penalties on the z-scored problem (default: the authors' grid, spec section 3).
    direction : {"both", "x_to_y", "y_to_x"}
    test : Reduction, optional
        Held-out rows, when ``X`` is a Reduction.
    test_fraction : float in [0, 1)
        With arrays: share of rows held out (a seeded random split). 0 evaluates on the training rows.
    rng : None, int or numpy.random.Generator
        Seed of the split (None: fixed seed 0).
    tol : float
        Coordinate descent stops when no weight moves by more than this in a sweep (default
        :data:`CD_TOL`; module docstring).
    max_iter : int
        Most sweeps per penalty; ``converged`` is False (and a warning says so) when they run out.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` on the training rows are constant (default
        :data:`repmatch.CONSTANT_TOL`): they get zero weights, are not predicted, and are listed in
        ``constant_inputs`` / ``constant_targets`` and in a :class:`~repmatch.RepmatchWarning`.

    Returns
    -------
    SparsePrediction
        ``x_to_y`` / ``y_to_x`` :class:`SparsePath` objects (held-out FVU, non-zero counts and
        weights per penalty) and ``mutual_pairs`` per penalty.

    Examples
    --------
    >>> import numpy as np, repmatch
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 6)); Y = X @ rng.standard_normal((6, 4))
    >>> res = repmatch.sparse_prediction(X, Y, alphas=[0.0, 0.1], direction="x_to_y")
    >>> bool(res.x_to_y.mean_fvu[0] < 1e-12)
    True
    """
    alphas = _check_alphas(alphas)
    check_choice(direction, "direction", DIRECTIONS)
    tol = check_tol(tol, "tol", allow_zero=False)
    max_iter = check_positive_int(max_iter, "max_iter")
    constant_tol = check_tol(constant_tol, "constant_tol")
    if isinstance(X, Reduction):
        train = as_reduction(X, Y, measure="sparse prediction", min_samples=2)
        if test is not None:
            if not isinstance(test, Reduction):
                raise ValueError(f"test must be a Reduction, got {type(test).__name__}")
            if (test.n_x, test.n_y) != (train.n_x, train.n_y):
                raise ValueError(
                    f"test has (n_x, n_y) = {(test.n_x, test.n_y)}, the training Reduction {(train.n_x, train.n_y)}"
                )
            test = as_reduction(test, measure="sparse prediction's held-out rows", names=("test", "Y"), min_samples=2)
    else:
        if test is not None:
            raise ValueError("test is only used with a Reduction; with arrays use test_fraction")
        Xa, Ya = as_rows(X, Y, measure="sparse prediction", min_samples=2)
        f = check_fraction(test_fraction, "test_fraction")
        n = Xa.shape[0]
        n_test = int(round(f * n))
        if f > 0 and (n_test < 2 or n - n_test < 2):
            raise ValueError(f"test_fraction={f} of {n} rows leaves too few rows for training or testing (2 each)")
        order = as_rng(rng).permutation(n)
        tr, te = order[n_test:], order[:n_test]
        train = Reduction.from_arrays(Xa[tr], Ya[tr])
        test = Reduction.from_arrays(Xa[te], Ya[te]) if n_test else None
    mean_tr, C_tr = _moments(train)
    ev = None if test is None else (*_moments(test), test.n_samples)
    xy = yx = None
    if direction in ("x_to_y", "both"):
        xy = _path("x_to_y", mean_tr, C_tr, ev, train.n_x, alphas, tol, max_iter, train.n_samples, constant_tol)
    if direction in ("y_to_x", "both"):
        yx = _path("y_to_x", mean_tr, C_tr, ev, train.n_x, alphas, tol, max_iter, train.n_samples, constant_tol)
    mutual = tuple(_mutual(xy, yx, k) for k in range(alphas.size))
    std_tr = np.sqrt(np.maximum(np.diag(C_tr), 0.0))
    const = constant_units(mean_tr, std_tr, tol=constant_tol)
    report_constant(const[: train.n_x], const[train.n_x:], measure="sparse prediction", stacklevel=3,
                    consequence="they get zero weights and are not predicted",
                    see="constant_inputs / constant_targets of each path")
    return SparsePrediction(alphas=alphas, x_to_y=xy, y_to_x=yx, mutual_pairs=mutual)
