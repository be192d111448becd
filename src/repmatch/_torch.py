"""The PyTorch device backend of :class:`~repmatch.Reduction` and of the Gram distance kernel.

Imported lazily (only when a reduction is given a ``device``), so ``import repmatch`` never imports
torch. Everything here works on any torch device; CI runs it on ``device="cpu"`` against the NumPy
path (tests/test_torch_backend.py).

Reductions
    A batch is moved to the device (a no-op for tensors already there), converted to float64,
    checked for finiteness (one boolean crosses to the host), centred, and its co-moment
    ``z^T z`` formed by a float64 matmul; the Chan et al. merge is the one in reduce.py, on tensors.
    The QR method stacks ``[R; batch]`` and keeps ``torch.linalg.qr(mode="r")``.

Distances (Gram geometry on a device)
    :func:`gram_distances` is the device twin of ``GramSpace.distances``: a right-looking pivoted
    Cholesky of the unit-diagonal Gram block of B with the pivot rule of LAPACK ``dpstrf`` (largest
    remaining diagonal, first on ties; stop when it is ``<= tol**2``), carried through the columns
    of A, whose remaining diagonal after the last pivot is their squared distance to span(B).
    Same tolerance semantics as the host kernel (``tol`` = ``GRAM_TOL`` by default). Both compute a
    squared distance as 1 minus a sum of squares, in a different order, so squared distances agree
    to ~1e-15: distances above 1e-3 agree to 1e-9 (tested), smaller ones less well in relative terms
    but both fall on the same side of ``tol`` (tested, with a neuron at 0.3 and 3 times ``tol``).
    Match decisions can differ only for a distance within ~1e-12 of a threshold.
    Only the |A| distances come back to the host (the pruning logic there decides which neurons
    stay); the n x n Gram matrix stays on the device.

Assignment (bipartite matching on a device)
    :func:`auction_assignment` maximises ``sum_i A[i, s(i)]`` over one-to-one assignments with
    Bertsekas' auction algorithm, vectorised: every unassigned row bids at once (Jacobi bidding),
    with epsilon-scaling (epsilon divided by :data:`AUCTION_SCALING` per phase, down to
    ``tol / (2 n)`` for n rows) and, for rectangular problems, reverse-auction phases that bring
    the prices of unassigned columns down to the lowest assigned price. It returns the assignment
    with a **certified optimality gap**: the dual bound ``sum_i max_j (A_ij - q_j) + sum_j q_j``
    (``q`` the final prices shifted down by the lowest assigned price, clipped at 0), minus the
    assignment's total. The bound holds for any prices, so the gap is an upper bound on how far
    the total is from the optimum, whatever happened; epsilon-complementary slackness makes it at
    most ``n * epsilon = tol / 2`` plus rounding. Nothing but the assignment and two numbers
    crosses to the host; each bidding round reads one size (the unassigned rows) there.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_device", "to_device", "pair", "joint_batch", "checked_moments", "centred_moments", "stack_r", "normalised_gram",
           "gram_distances", "submatrix", "auction_assignment", "AUCTION_SCALING"]

#: Factor by which the auction's epsilon shrinks from one phase to the next. Measured on CPU torch
#: (64x64 to 1024x1024, 502x512, 200x700 correlation matrices): 8 took the fewest rounds on 4 of
#: the 5 shapes; 4 and 16 took up to 1.7x and 1.4x more.
AUCTION_SCALING = 8.0


def as_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine")
    return dev


def to_device(a, device: torch.device) -> torch.Tensor:
    """A float64 tensor on ``device`` (from an array or a tensor on any device)."""
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)


def _as_tensor(a, name: str) -> torch.Tensor:
    """``a`` as a tensor, left where it is (arrays wrapped without a copy); ValueError naming ``name``."""
    if not isinstance(a, torch.Tensor):
        a = np.asarray(a)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{name} must be a numeric array or tensor, got dtype {a.dtype}")
        a = torch.from_numpy(np.ascontiguousarray(a))
    return a


def _as_2d(a, name: str) -> torch.Tensor:
    """``a`` as a 2-D tensor (see _as_tensor); ValueError naming ``name``."""
    a = _as_tensor(a, name)
    if a.dim() != 2:
        raise ValueError(f"{name} must be 2-D (samples, neurons), got shape {tuple(a.shape)}")
    return a


def _as_batch(a, name: str, width: int, wname: str, device) -> torch.Tensor:
    """One side of a batch as (samples, width): (b, n) as is; (B, n, *spatial) -> (B * L, n) image-major."""
    a = _as_tensor(a, name)
    if a.dim() < 2:
        raise ValueError(f"{name} must be 2-D (samples, neurons) or (batch, neurons, *spatial), got shape "
                         f"{tuple(a.shape)}")
    if a.shape[1] != width:
        raise ValueError(f"{name} must have {wname}={width} {'columns' if a.dim() == 2 else 'channels (axis 1)'}, "
                         f"got shape {tuple(a.shape)}")
    if a.is_complex():
        raise ValueError(f"{name} must be real, got dtype {a.dtype}")
    if a.numel() == 0:
        raise ValueError(f"{name} has no samples (shape {tuple(a.shape)}); need at least one")
    a = a.detach().to(device=device)
    if a.dim() > 2:  # conv output: every (input, position) is a sample
        a = a.reshape(a.shape[0], width, -1).transpose(1, 2).reshape(-1, width)
    return a.to(dtype=torch.float64)


def pair(X, Y) -> tuple:
    """X and Y as 2-D tensors with the same number of rows, left where they are (arrays wrapped
    without a copy); raises ValueError naming X or Y."""
    out = [_as_2d(X, "X"), _as_2d(Y, "Y")]
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (the same inputs): X has shape "
                         f"{tuple(out[0].shape)}, Y has shape {tuple(out[1].shape)}")
    return tuple(out)


def joint_batch(red, x, y, names=("x", "y")) -> torch.Tensor:
    """The checked joint batch ``[x y]`` as a float64 (b, n_x + n_y) tensor on ``red.device``."""
    xt = _as_batch(x, names[0], red.n_x, "n_x", red.device)
    yt = _as_batch(y, names[1], red.n_y, "n_y", red.device)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (the same inputs): {names[0]} gives "
            f"{xt.shape[0]} samples, {names[1]} gives {yt.shape[0]}"
        )
    return torch.cat([xt, yt], dim=1)


def checked_moments(red, z: torch.Tensor, names) -> tuple:
    """(mean, centred co-moment) of the rows of z (centred in place), checked finite.

    One boolean crosses to the host per batch: NaN/Inf in the input propagate into the mean and
    the diagonal, and so does float64 overflow of a square; only then are the sides inspected
    to say which one, and whether it held non-finite values or overflowed.
    """
    finite_in = torch.isfinite(z).all(dim=0)
    mean, com = centred_moments(z)
    ok = finite_in.all() & torch.isfinite(mean).all() & torch.isfinite(torch.diagonal(com)).all()
    if not bool(ok):
        bad_in = (~finite_in).cpu().numpy()
        diag_bad = (~torch.isfinite(torch.diagonal(com))).cpu().numpy()
        sides = ((slice(0, red.n_x), names[0]), (slice(red.n_x, None), names[1]))
        for sl, name in sides:
            if bad_in[sl].any():
                raise ValueError(f"{name} contains non-finite values (NaN or Inf); activations must be finite")
        bad = [name for sl, name in sides if diag_bad[sl].any()]
        raise ValueError(f"{' and '.join(bad) or names[0]} overflow float64 in the co-moments "
                         "(squares of values above ~1e154); rescale the activations")
    return mean, com


def centred_moments(z: torch.Tensor) -> tuple:
    """(mean, centred co-moment) of the rows of z; centres z in place."""
    mean = z.mean(dim=0)
    z -= mean
    return mean, z.T @ z


def stack_r(parts, n: int) -> torch.Tensor:
    """The R factor of the rows of all ``parts`` stacked, at most n rows (TSQR step)."""
    stacked = torch.cat(parts, dim=0)
    if stacked.shape[0] == 0:
        return stacked
    return torch.linalg.qr(stacked, mode="r")[1][: min(n, stacked.shape[0])]


def normalised_gram(red) -> tuple:
    """Unit-diagonal Gram matrix of the live neurons on the reduction's device, and the host mask of
    live neurons (non-zero diagonal); the device twin of subspace._geometry_from_reduction."""
    mean, com = red._acc["mean"], red._acc["comoment"]
    G = com + red.n_samples * (mean[:, None] * mean[None, :])
    diag = torch.diagonal(G).clone()
    live_t = diag > 0
    s = torch.sqrt(torch.where(live_t, diag, torch.ones_like(diag)))
    Gn = torch.where(live_t[:, None] & live_t[None, :], G / (s[:, None] * s[None, :]), torch.zeros_like(G))
    Gn.fill_diagonal_(0.0)
    Gn += torch.diag(live_t.to(G.dtype))
    return Gn, live_t.cpu().numpy()


def submatrix(G: torch.Tensor, cols) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=G.device)
    return G.index_select(0, idx).index_select(1, idx)


def gram_distances(G: torch.Tensor, A, B, tol: float) -> np.ndarray:
    """Relative distance of every neuron in A to span(B) on a unit-diagonal Gram matrix on a device.

    Pivoted Cholesky over B carried through A (module docstring); returns a host float64 array.
    """
    nb = len(B)
    idx = torch.as_tensor(np.concatenate([np.asarray(B), np.asarray(A)]).astype(np.int64), device=G.device)
    K = G.index_select(0, idx).index_select(1, idx[:nb])  # (|B| + |A|, |B|): columns of B only
    d = torch.diagonal(G).index_select(0, idx).clone()  # remaining squared distance of every row
    L = torch.zeros((idx.numel(), nb), dtype=G.dtype, device=G.device)
    free = torch.ones(nb, dtype=torch.bool, device=G.device)
    tol2 = tol * tol
    neg = torch.tensor(-np.inf, dtype=G.dtype, device=G.device)
    for k in range(nb):
        cand = torch.where(free, d[:nb], neg)
        j = int(torch.argmax(cand))  # first maximum, as dpstrf
        pivot = float(d[j])
        if not pivot > tol2:
            break
        col = (K[:, j] - L[:, :k] @ L[j, :k]) / pivot**0.5
        L[:, k] = col
        d -= col * col
        free[j] = False
    return np.sqrt(np.clip(d[nb:].cpu().numpy(), 0.0, 1.0))


def _bid_rounds(A, prices, owner, assigned, eps: float, stats: dict) -> None:
    """Forward auction: unassigned rows bid for columns until every row holds one.

    Each unassigned row bids for its best column (value ``A_ij - p_j``) the price that makes it
    indifferent to its second best, plus ``eps``; each column goes to its highest bidder (lowest
    row index on ties) and the row it displaces becomes unassigned. Keeps eps-complementary
    slackness for every assigned row.
    """
    n, m = A.shape
    ninf = torch.full_like(prices, -np.inf)
    nobody = torch.full_like(owner, n)
    bidders = torch.nonzero(assigned < 0).squeeze(1)
    while bidders.numel():
        stats["bidding_rounds"] += 1
        top_v, top_j = (A.index_select(0, bidders) - prices).topk(2, dim=1)
        j = top_j[:, 0]
        bid = prices.index_select(0, j) + (top_v[:, 0] - top_v[:, 1]) + eps
        best = ninf.scatter_reduce(0, j, bid, "amax", include_self=True)
        cand = torch.where(bid == best.index_select(0, j), bidders, n)
        winner = nobody.scatter_reduce(0, j, cand, "amin", include_self=True)
        cols = torch.nonzero(winner < n).squeeze(1)
        rows = winner.index_select(0, cols)
        displaced = owner.index_select(0, cols)
        assigned[displaced[displaced >= 0]] = -1
        owner[cols] = rows
        assigned[rows] = cols
        prices[cols] = best.index_select(0, cols)
        bidders = torch.nonzero(assigned < 0).squeeze(1)


def _reverse_rounds(A, prices, owner, assigned, eps: float, stats: dict) -> None:
    """Reverse auction (rectangular problems, all rows assigned): every unassigned column priced
    above ``lam`` (the lowest assigned price) either takes the row that values it most, at the
    price that keeps eps-complementary slackness for every row, or drops its price to ``lam``.

    Ends with unassigned prices <= lam <= assigned prices, the condition under which the shifted
    dual bound of :func:`auction_assignment` is within ``n * eps`` of the assignment's total.
    Each taken row gains at least ``eps`` profit, so the loop ends.
    """
    n, m = A.shape
    lam = prices[owner >= 0].min()
    ninf = torch.full((n,), -np.inf, dtype=A.dtype, device=A.device)
    nobody = torch.full((n,), m, dtype=torch.long, device=A.device)
    slot = torch.full((m,), -1, dtype=torch.long, device=A.device)
    while True:
        cols = torch.nonzero((owner < 0) & (prices > lam)).squeeze(1)
        if not cols.numel():
            return
        stats["reverse_rounds"] += 1
        profit = A.gather(1, assigned[:, None]).squeeze(1) - prices.index_select(0, assigned)
        top_v, top_i = (A.index_select(1, cols).T - profit).topk(2, dim=1)
        drop = top_v[:, 0] - eps <= lam
        prices[cols[drop]] = lam
        take = ~drop
        cols, rows = cols[take], top_i[take, 0]
        if not cols.numel():
            continue
        offer = torch.maximum(top_v[take, 1] - eps, lam)
        gain = A[rows, cols] - offer  # the row's profit if it accepts
        best = ninf.scatter_reduce(0, rows, gain, "amax", include_self=True)
        cand = torch.where(gain == best.index_select(0, rows), cols, m)
        chosen = nobody.scatter_reduce(0, rows, cand, "amin", include_self=True)
        won = torch.nonzero(chosen < m).squeeze(1)
        new_cols = chosen.index_select(0, won)
        slot[cols] = torch.arange(cols.numel(), device=A.device)
        prices[new_cols] = offer.index_select(0, slot.index_select(0, new_cols))
        owner[assigned.index_select(0, won)] = -1
        owner[new_cols] = won
        assigned[won] = new_cols


def auction_assignment(S, tol: float) -> tuple:
    """Maximum-total one-to-one assignment of the rows and columns of ``S`` on S's device.

    Parameters
    ----------
    S : tensor (n_x, n_y), float64
        Similarities; ``min(n_x, n_y)`` pairs are formed.
    tol : float
        Target optimality gap on the total (absolute): the final epsilon is ``tol / (2 k)`` with
        ``k = min(n_x, n_y)``.

    Returns
    -------
    rows, cols : ndarray of int
        The pairs, sorted by row.
    gap : float
        Certified upper bound on ``optimum - S[rows, cols].sum()`` (module docstring); the caller
        checks it against ``tol``.
    stats : dict
        Bidding and reverse rounds, phases.
    """
    transposed = S.shape[0] > S.shape[1]
    A = (S.T if transposed else S).contiguous()
    n, m = A.shape
    stats = {"bidding_rounds": 0, "reverse_rounds": 0, "phases": 0}
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, 0.0, stats
    if n == 1 or m == 1:
        if n == 1:
            assigned = torch.argmax(A, dim=1)
        else:  # one row, one column
            assigned = torch.zeros(1, dtype=torch.long, device=A.device)
        gap = 0.0
    else:
        span = float(A.max() - A.min())
        eps_final = tol / (2 * n)
        eps = max(span / 4, eps_final)
        prices = torch.zeros(m, dtype=A.dtype, device=A.device)
        owner = torch.full((m,), -1, dtype=torch.long, device=A.device)
        assigned = torch.full((n,), -1, dtype=torch.long, device=A.device)
        while True:
            stats["phases"] += 1
            # rows that break eps-complementary slackness at the new epsilon bid again
            V = A - prices
            own = V.gather(1, assigned.clamp(min=0)[:, None]).squeeze(1)
            slack = (assigned >= 0) & (own < V.max(dim=1).values - eps)
            owner[assigned[slack]] = -1
            assigned[slack] = -1
            _bid_rounds(A, prices, owner, assigned, eps, stats)
            if n < m:  # every phase: only at the last took 2-7x more rounds (measured)
                _reverse_rounds(A, prices, owner, assigned, eps, stats)
            if eps <= eps_final:
                break
            eps = max(eps / AUCTION_SCALING, eps_final)
        total = A.gather(1, assigned[:, None]).sum()
        q = (prices - prices[owner >= 0].min()).clamp(min=0.0)
        bound = (A - q).max(dim=1).values.sum() + q.sum()
        gap = max(float(bound - total), 0.0)
    assigned = assigned.cpu().numpy()
    rows, cols = np.arange(n), assigned
    if transposed:
        rows, cols = cols, rows
        order = np.argsort(rows)
        rows, cols = rows[order], cols[order]
    return rows, cols, gap, stats
