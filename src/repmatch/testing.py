"""Reference implementations and synthetic data, for tests and benchmarks.

The ``naive_*`` functions are deliberately the straightforward algorithms of spec section 3 on the
raw data (one least-squares solve per pruning round, as in the authors' scripts): they are the
baselines benchmarks time repmatch against, and independent oracles for the tests. They are not
meant for real use.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "planted_subspace",
    "independent_blocks",
    "relu_layers",
    "naive_maximum_match",
    "naive_v_minimal_match",
    "brute_force_matches",
    "simple_from_matches",
    "sample_rows",
]


# ---------------------------------------------------------------------------- data
def planted_subspace(n_shared=20, dim=10, n_random=100, n_samples=2000, rng=0):
    """Spec section 7: ``n_shared`` neurons per side are random mixtures of one shared generic
    ``dim``-dimensional subspace; ``n_random`` more per side are random. Returns X, Y and the
    planted column indices (the first ``n_shared`` of each side, before the random columns).

    Parameters
    ----------
    n_shared, dim, n_random, n_samples : int
        Sizes (module docstring above).
    rng : int or Generator
        Seed.

    Returns
    -------
    tuple
        ``(X, Y, planted)``.
    """
    g = np.random.default_rng(rng)
    basis = g.standard_normal((n_samples, dim))
    X = np.hstack([basis @ g.standard_normal((dim, n_shared)), g.standard_normal((n_samples, n_random))])
    Y = np.hstack([basis @ g.standard_normal((dim, n_shared)), g.standard_normal((n_samples, n_random))])
    planted = np.arange(n_shared)
    return X, Y, planted


def independent_blocks(n_samples=500, rng=0):
    """Spec section 7: X = [2 vectors of block B1, 3 of block B2, 2 random]; Y = [2 independent
    mixtures of B1, 3 of B2, 2 random]. Blocks B1 (dim 2) and B2 (dim 3). Returns X, Y, blocks
    where blocks is a list of (x columns, y columns).

    Parameters
    ----------
    n_samples : int
        Rows.
    rng : int or Generator
        Seed.

    Returns
    -------
    tuple
        ``(X, Y, blocks)``.
    """
    g = np.random.default_rng(rng)
    B1 = g.standard_normal((n_samples, 2))
    B2 = g.standard_normal((n_samples, 3))
    X = np.hstack([B1, B2, g.standard_normal((n_samples, 2))])
    Y = np.hstack([B1 @ g.standard_normal((2, 2)), B2 @ g.standard_normal((3, 3)), g.standard_normal((n_samples, 2))])
    blocks = [(np.array([0, 1]), np.array([0, 1])), (np.array([2, 3, 4]), np.array([2, 3, 4]))]
    return X, Y, blocks


def relu_layers(n_samples=10000, n_x=512, n_y=512, shared_dim=256, private_dim=256, noise=0.5, rng=0):
    """Two non-negative (ReLU-like) layers that share part of a latent feature space.

    Latent features are ReLUs of random projections of Gaussian inputs; ``shared_dim`` of them are
    common to both layers, ``private_dim`` are private to each. Every neuron is a sparse
    non-negative mixture of shared features plus a private part whose weight varies from neuron to
    neuron, plus non-negative noise. Pruning removes the neurons that lean on private features,
    which shrinks spans and removes more, so the maximum match takes several rounds near the ε
    where the match collapses.

    Parameters
    ----------
    n_samples, n_x, n_y : int
        Shape of the two layers.
    shared_dim, private_dim : int
        Latent features shared by both layers / private to each.
    noise : float
        Scale of the non-negative noise.
    rng : int or Generator
        Seed.

    Returns
    -------
    (ndarray, ndarray)
        X of shape (n_samples, n_x) and Y of shape (n_samples, n_y).
    """
    g = np.random.default_rng(rng)

    def feats(k):
        z = g.standard_normal((n_samples, k))
        return np.maximum(z @ g.standard_normal((k, k)) / np.sqrt(k) + 0.2, 0)

    shared = feats(shared_dim)

    def layer(n):
        private = feats(private_dim)
        A = np.abs(g.standard_normal((shared_dim, n))) * (g.random((shared_dim, n)) < 8 / shared_dim)
        B = np.abs(g.standard_normal((private_dim, n))) * (g.random((private_dim, n)) < 8 / private_dim)
        weight = g.random(n) ** 2
        return shared @ A + (private @ B) * weight + noise * np.abs(g.standard_normal((n_samples, n)))

    return layer(n_x), layer(n_y)


# ---------------------------------------------------------------------------- naive algorithms
def _rel_dist_naive(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(A, axis=0)
    if B.shape[1] == 0:
        return np.ones(A.shape[1])
    coef = np.linalg.lstsq(B, A, rcond=None)[0]
    return np.linalg.norm(A - B @ coef, axis=0) / norms


def naive_maximum_match(X, Y, eps, *, x_cols=None, y_cols=None, stats=None):
    """Iterative pruning with a fresh least-squares solve on the raw data every round.

    Optionally restricted to candidate columns ``x_cols``/``y_cols``. Returns sorted (x, y).
    Dead (all-zero) neurons are dropped first, as the authors did. If ``stats`` is a dict, the
    number of rounds is stored under ``"rounds"``.

    Parameters
    ----------
    X, Y : ndarray
        The two layers.
    eps : float
        The ε of the match.
    x_cols, y_cols : sequence of int, optional
        Candidate columns.
    stats : dict, optional
        Receives the number of rounds.

    Returns
    -------
    (list, list)
        Sorted X and Y columns of the maximum match.
    """
    if stats is not None:
        stats["rounds"] = 0
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    I = np.arange(X.shape[1]) if x_cols is None else np.asarray(x_cols)
    J = np.arange(Y.shape[1]) if y_cols is None else np.asarray(y_cols)
    I = I[np.linalg.norm(X[:, I], axis=0) > 0]
    J = J[np.linalg.norm(Y[:, J], axis=0) > 0]
    while True:
        if I.size == 0 or J.size == 0:
            return np.array([], dtype=int), np.array([], dtype=int)
        if stats is not None:
            stats["rounds"] += 1
        I2 = I[_rel_dist_naive(X[:, I], Y[:, J]) <= eps]
        if I2.size == 0:
            return np.array([], dtype=int), np.array([], dtype=int)
        J2 = J[_rel_dist_naive(Y[:, J], X[:, I2]) <= eps]
        if I2.size == I.size and J2.size == J.size:
            return np.sort(I2), np.sort(J2)
        I, J = I2, J2


def naive_v_minimal_match(X, Y, eps, *, side="x", index=0, order=None):
    """The deletion algorithm of spec section 3 on top of :func:`naive_maximum_match`.

    ``order``: sequence of ("x"|"y", column) pairs to try removing; default X ascending then Y.
    Returns sorted (x, y) or None when the neuron is not in the maximum match.

    Parameters
    ----------
    X, Y : ndarray
        The two layers.
    eps : float
        The ε of the match.
    side : {"x", "y"}, index : int
        The neuron v.
    order : sequence of (str, int), optional
        Deletion order.

    Returns
    -------
    tuple or None
        Sorted (x, y) columns, or None when v is not in the maximum match.
    """
    Sx, Sy = naive_maximum_match(X, Y, eps)
    Sx, Sy = set(Sx.tolist()), set(Sy.tolist())
    if (side == "x" and index not in Sx) or (side == "y" and index not in Sy):
        return None
    if order is None:
        order = [("x", i) for i in sorted(Sx)] + [("y", j) for j in sorted(Sy)]
    for s, u in order:
        if (s, u) == (side, index):
            continue
        if (s == "x" and u not in Sx) or (s == "y" and u not in Sy):
            continue
        tx = sorted(Sx - {u}) if s == "x" else sorted(Sx)
        ty = sorted(Sy - {u}) if s == "y" else sorted(Sy)
        mx, my = naive_maximum_match(X, Y, eps, x_cols=np.array(tx, dtype=int), y_cols=np.array(ty, dtype=int))
        if (side == "x" and index in mx) or (side == "y" and index in my):
            Sx, Sy = set(tx), set(ty)  # the plain algorithm: drop u only
    # The plain algorithm's final set is the maximum match of what is left (spec section 3).
    mx, my = naive_maximum_match(X, Y, eps, x_cols=np.array(sorted(Sx), dtype=int), y_cols=np.array(sorted(Sy), dtype=int))
    return mx, my


def _is_match(X, Y, xs, ys, eps, slack=1e-9):
    if not xs and not ys:
        return False
    if not xs or not ys:
        return False
    A = X[:, list(xs)]
    B = Y[:, list(ys)]
    return bool((_rel_dist_naive(A, B) <= eps + slack).all() and (_rel_dist_naive(B, A) <= eps + slack).all())


def brute_force_matches(X, Y, eps):
    """Every ε-match (pairs of frozensets of columns) by enumerating all pairs of subsets.

    Only for tiny layers (n_x + n_y <= 12). Dead neurons are never included.

    Parameters
    ----------
    X, Y : ndarray
        Two tiny layers (n_x + n_y <= 12).
    eps : float
        The ε.

    Returns
    -------
    list
        Every ε-match as a pair of frozensets.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.shape[1] + Y.shape[1] > 12:
        raise ValueError("brute force is only for n_x + n_y <= 12")
    lx = [i for i in range(X.shape[1]) if np.linalg.norm(X[:, i]) > 0]
    ly = [j for j in range(Y.shape[1]) if np.linalg.norm(Y[:, j]) > 0]
    out = []
    for kx in range(1, len(lx) + 1):
        for xs in itertools.combinations(lx, kx):
            for ky in range(1, len(ly) + 1):
                for ys in itertools.combinations(ly, ky):
                    if _is_match(X, Y, xs, ys, eps):
                        out.append((frozenset(xs), frozenset(ys)))
    return out


def simple_from_matches(matches):
    """Simple matches among a complete list of matches: those not the union of strictly smaller ones.

    Parameters
    ----------
    matches : list of (frozenset, frozenset)
        A complete list of matches.

    Returns
    -------
    list
        The simple ones.
    """
    mset = list(matches)
    simple = []
    for mx, my in mset:
        ux, uy = set(), set()
        for ax, ay in mset:
            if ax <= mx and ay <= my and (ax, ay) != (mx, my):
                ux |= ax
                uy |= ay
        if (ux, uy) != (set(mx), set(my)):
            simple.append((mx, my))
    return simple


# ---------------------------------------------------------------------------- networks
def sample_rows(model_a, model_b, batches, layer_names, *, rows_per_image: int, seed: int = 0, device=None):
    """In-memory rows of both networks: up to ``rows_per_image`` positions of every image.

    The per-pair reference of the row sampler in :func:`repmatch.activations.reduce_networks`
    (``rows_per_image=``), which the pipeline uses; tests check the two give the same rows.

    ``batches`` yields ``(inputs, ...)`` batches in a fixed order. For every conv layer,
    ``min(rows_per_image, positions)`` positions of each image are drawn without replacement
    (seeded by ``seed``, the layer and the image, the same positions for both networks); fully
    connected layers give one row per image. Returns ``{layer: (X, Y, groups)}`` with float64 rows
    and the image index of every row.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
    batches : iterable
        Batches of inputs (a tuple's first element is the input).
    layer_names : list of str
    rows_per_image : int
        Positions drawn per image (at least 1).
    seed : int, default 0
    device : str or torch.device, optional

    Returns
    -------
    dict of str to (ndarray, ndarray, ndarray)
        ``X`` (rows, n_x), ``Y`` (rows, n_y) and ``groups`` (rows,), image indices counted from 0
        over ``batches``.
    """
    from . import activations

    k = max(1, int(rows_per_image))
    parts = {name: ([], [], []) for name in layer_names}
    first = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        xa = activations.extract(model_a, [x], layer_names, conv_mode="positions", device=device)
        xb = activations.extract(model_b, [x], layer_names, conv_mode="positions", device=device)
        n_img = int(x.shape[0])
        for li, name in enumerate(layer_names):
            A, B = xa[name], xb[name]
            per = A.shape[0] // n_img  # positions per image (1 for fully connected layers)
            take = min(k, per)
            rows = []
            for i in range(n_img):
                g = np.random.default_rng([seed, li, first + i])
                pos = np.sort(g.choice(per, size=take, replace=False)) if take < per else np.arange(per)
                rows.append(i * per + pos)
            idx = np.concatenate(rows)
            parts[name][0].append(A[idx].astype(np.float64))
            parts[name][1].append(B[idx].astype(np.float64))
            parts[name][2].append(np.repeat(np.arange(first, first + n_img), take))
        first += n_img
    return {name: tuple(np.concatenate(p) for p in parts[name]) for name in layer_names}
