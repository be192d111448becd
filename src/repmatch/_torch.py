"""The PyTorch device backend of :class:`~repmatch.Reduction` and of the Gram distance kernel.

Imported lazily (only when a reduction is given a ``device``), so ``import repmatch`` never imports
torch. Everything here works on any torch device; CI runs it on ``device="cpu"`` against the NumPy
path (tests/test_torch_backend.py).

Reductions
    A batch is moved to the device (a no-op for tensors already there), converted to float64,
    checked for finiteness (one boolean crosses to the host), centred, and its co-moment
    ``z^T z`` formed by a float64 matmul; the Chan et al. merge is the one in reduce.py, on tensors.
    The QR method stacks ``[R; batch]`` and keeps ``torch.linalg.qr(mode="r")``.

    Every batch is divided by the reduction's per-neuron power-of-two units (``Reduction.scale``),
    chosen from its per-neuron maxima (one vector of n numbers crosses to the host), so data of
    any finite scale neither under- nor overflows.

Distances (Gram geometry on a device)
    :func:`gram_evaluate` is the device twin of ``GramSpace.evaluate``: a right-looking pivoted
    Cholesky of the unit-diagonal Gram block of B with the pivot rule of LAPACK ``dpstrf`` (largest
    remaining diagonal, first on ties; stop when it is ``<= floor``, the span's resolution),
    carried through the columns of A, whose remaining diagonal after the last pivot is their
    squared distance to the resolved span. The error bounds use every candidate's exact
    coefficients and the Frobenius norm of the factor's inverse, both computed on the device by
    triangular solves; the unresolved tail's cross products with the candidates are formed there
    too. Only vectors of |A| numbers (and the |T| x |A| tail block) come back to the host, where
    the bounds are finished by the same formulas as the host kernel's; the n x n Gram matrix
    stays on the device. Both kernels compute a squared distance as 1 minus a sum of squares, in a
    different order: they agree to ~1e-15 and their bounds cover the difference.

Assignment (bipartite matching on a device)
    :func:`auction_assignment` maximises ``sum_i A[i, s(i)]`` over one-to-one assignments with
    Bertsekas' auction algorithm, vectorised: every unassigned row bids at once (Jacobi bidding),
    with epsilon-scaling (epsilon divided by :data:`AUCTION_SCALING` per phase, down to
    ``tol / (2 n)`` for n rows, but never below 64 ulps of the values' size) and, for rectangular
    problems, reverse-auction phases that bring the prices of unassigned columns down to the
    lowest assigned price. It returns the assignment
    with a **certified optimality gap**: the dual bound ``sum_i max_j (A_ij - q_j) + sum_j q_j``
    (``q`` the final prices shifted down by the lowest assigned price, clipped at 0), minus the
    assignment's total. The bound holds for any prices, so the gap is an upper bound on how far
    the total is from the optimum, whatever happened; epsilon-complementary slackness makes it at
    most ``n * epsilon = tol / 2`` plus rounding. Nothing but the assignment and two numbers
    crosses to the host; each bidding round reads one size (the unassigned rows) there. A round
    limit (:data:`AUCTION_ROUNDS_PER_UNIT`) bounds the work on heavily tied inputs; past it the
    result is an infinite gap and the caller solves exactly instead.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_device", "to_device", "pair", "joint_batch", "scaled_batch", "checked_moments", "centred_moments",
           "stack_r", "normalised_gram", "gram_evaluate", "submatrix", "auction_assignment", "AUCTION_SCALING",
           "AUCTION_ROUNDS_PER_UNIT"]

#: Factor by which the auction's epsilon shrinks from one phase to the next. Measured on CPU torch
#: (64x64 to 1024x1024, 502x512, 200x700 correlation matrices): 8 took the fewest rounds on 4 of
#: the 5 shapes; 4 and 16 took up to 1.7x and 1.4x more.
AUCTION_SCALING = 8.0


def as_device(device) -> torch.device:
    """``device`` as a :class:`torch.device`, checked; a bare ``"cuda"`` is pinned to the current GPU.

    Parameters
    ----------
    device : str, int or torch.device
        Anything :class:`torch.device` accepts, e.g. ``"cpu"``, ``"cuda:0"``.

    Returns
    -------
    torch.device
        With an index for CUDA (the GPU current now when none was given).

    Raises
    ------
    ValueError
        When ``device`` is not a torch device, or names CUDA on a machine without it.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is None:
        # pin "cuda" to the GPU current now: a bare "cuda" would follow whichever GPU is current in
        # the thread that later moves a batch (a worker thread's is GPU 0)
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def all_finite(*tensors) -> torch.Tensor:
    """A 0-d boolean tensor on the tensors' device: are they all finite (no host sync)."""
    ok = torch.isfinite(tensors[0]).all()
    for t in tensors[1:]:
        ok = ok & torch.isfinite(t).all()
    return ok


def to_device(a, device: torch.device) -> torch.Tensor:
    """A float64 tensor on ``device`` (from an array or a tensor on any device).

    Parameters
    ----------
    a : array-like or torch.Tensor
        The data (a tensor is detached first).
    device : torch.device
        Where the result lives.

    Returns
    -------
    torch.Tensor of float64
        Same shape as ``a``.
    """
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)


def _as_tensor(a, name: str) -> torch.Tensor:
    """``a`` as a tensor, left where it is (arrays wrapped without a copy); ValueError naming ``name``."""
    if not isinstance(a, torch.Tensor):
        a = np.asarray(a)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{name} must be a numeric array or tensor, got dtype {a.dtype}")
        if not a.dtype.isnative:  # torch reads native byte order only
            a = a.astype(a.dtype.newbyteorder("="))
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
    without a copy); raises ValueError naming X or Y.

    Parameters
    ----------
    X, Y : array-like or torch.Tensor of shape (n_samples, n_x) and (n_samples, n_y)
        Numeric activations; arrays are wrapped (byte order made native when needed).

    Returns
    -------
    X, Y : torch.Tensor
        In their own dtypes and devices.

    Raises
    ------
    ValueError
        When either is not numeric or not 2-D, or their row counts differ.
    """
    out = [_as_2d(X, "X"), _as_2d(Y, "Y")]
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (the same inputs): X has shape "
                         f"{tuple(out[0].shape)}, Y has shape {tuple(out[1].shape)}")
    return tuple(out)


def joint_batch(red, x, y, names=("x", "y")) -> torch.Tensor:
    """The checked joint batch ``[x y]`` as a float64 (b, n_x + n_y) tensor on ``red.device``.

    Parameters
    ----------
    red : Reduction
        A reduction on a torch device (``red.device`` set).
    x, y : array-like or torch.Tensor
        One batch of each side: (b, n) rows, or (B, n, *spatial) conv outputs whose every (input,
        position) becomes a row, image-major.
    names : tuple of str, default ("x", "y")
        What to call the two sides in messages.

    Returns
    -------
    torch.Tensor of float64, shape (b, n_x + n_y)
        On ``red.device``.

    Raises
    ------
    ValueError
        When a side is not numeric, has fewer than 2 dimensions, the wrong width, complex values
        or no samples, or the two sides give different numbers of rows.
    """
    xt = _as_batch(x, names[0], red.n_x, "n_x", red.device)
    yt = _as_batch(y, names[1], red.n_y, "n_y", red.device)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (the same inputs): {names[0]} gives "
            f"{xt.shape[0]} samples, {names[1]} gives {yt.shape[0]}"
        )
    return torch.cat([xt, yt], dim=1)


def scaled_batch(red, z: torch.Tensor, names) -> torch.Tensor:
    """``z`` checked finite (ValueError naming the side) and divided by the reduction's units,
    which change first if the batch needs it (Reduction._scales_for).

    Parameters
    ----------
    red : Reduction
        A reduction on a torch device (``red.device`` set).
    z : torch.Tensor of float64, shape (b, n_x + n_y)
        A joint batch (:func:`joint_batch`).
    names : tuple of str
        What to call the X and the Y side in messages.

    Returns
    -------
    torch.Tensor of float64, shape (b, n_x + n_y)
        ``z`` divided by the (possibly updated) ``red.scale``; ``z`` itself when every unit is 1.

    Raises
    ------
    ValueError
        When a side holds NaN or Inf.
    """
    maxabs = z.abs().amax(dim=0).cpu().numpy()  # NaN/Inf propagate into the maxima
    if not np.isfinite(maxabs).all():
        sides = ((slice(0, red.n_x), names[0]), (slice(red.n_x, None), names[1]))
        for sl, name in sides:
            if not np.isfinite(maxabs[sl]).all():
                raise ValueError(f"{name} contains non-finite values (NaN or Inf); activations must be finite")
    red.rescale_for(maxabs)
    if (red.scale != 1.0).any():
        from .reduce import _exponent, _pow2

        z = _pow2(z, -_exponent(red.scale)[None, :])
    return z


def checked_moments(red, z: torch.Tensor, names) -> tuple:
    """(mean, centred co-moment) of the rows of z (centred in place), checked finite.

    One boolean crosses to the host per batch: NaN/Inf in the input propagate into the mean and
    the diagonal, and so does float64 overflow of a square; only then are the sides inspected
    to say which one, and whether it held non-finite values or overflowed.

    Parameters
    ----------
    red : Reduction
        A reduction on a torch device (``red.device`` set).
    z : torch.Tensor of float64, shape (b, n_x + n_y)
        A joint batch; centred in place.
    names : tuple of str
        What to call the X and the Y side in messages.

    Returns
    -------
    mean : torch.Tensor of shape (n_x + n_y,)
    comoment : torch.Tensor of shape (n_x + n_y, n_x + n_y)
        ``zc^T zc`` of the centred rows.

    Raises
    ------
    ValueError
        When a side holds NaN or Inf, or its squares overflow float64.
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
    """(mean, centred co-moment) of the rows of z; centres z in place.

    Parameters
    ----------
    z : torch.Tensor, shape (b, n)
        Rows to reduce; overwritten with the centred rows.

    Returns
    -------
    mean : torch.Tensor of shape (n,)
    comoment : torch.Tensor of shape (n, n)
        ``zc^T zc`` of the centred rows (unchecked: see :func:`checked_moments`).
    """
    mean = z.mean(dim=0)
    z -= mean
    return mean, z.T @ z


def stack_r(parts, n: int) -> torch.Tensor:
    """The R factor of the rows of all ``parts`` stacked, at most n rows (TSQR step).

    Parameters
    ----------
    parts : sequence of torch.Tensor of shape (k_i, n)
        The previous R factor and new (centred) rows, on one device.
    n : int
        Number of columns (the most rows R needs).

    Returns
    -------
    torch.Tensor of shape (min(n, sum k_i), n)
        Upper triangular; the (empty) stack itself when there are no rows.
    """
    stacked = torch.cat(parts, dim=0)
    if stacked.shape[0] == 0:
        return stacked
    return torch.linalg.qr(stacked, mode="r")[1][: min(n, stacked.shape[0])]


def normalised_gram(red) -> tuple:
    """Unit-diagonal Gram matrix of the live neurons on the reduction's device, and the host mask of
    live neurons (non-zero diagonal); the device twin of subspace._geometry_from_reduction.

    Parameters
    ----------
    red : Reduction
        A reduction on a torch device (``red.device`` set).

    Returns
    -------
    G : torch.Tensor of float64, shape (n_x + n_y, n_x + n_y)
        The uncentred Gram matrix ``comoment + n mean mean^T`` scaled to unit diagonal on live
        neurons; rows and columns of dead neurons are 0.
    live : ndarray of bool, shape (n_x + n_y,)
        Whether each neuron's Gram diagonal is positive.
    """
    acc = red.device_tensors()
    mean, com = acc["mean"], acc["comoment"]
    G = com + red.n_samples * (mean[:, None] * mean[None, :])
    diag = torch.diagonal(G).clone()
    live_t = diag > 0
    s = torch.sqrt(torch.where(live_t, diag, torch.ones_like(diag)))
    Gn = torch.where(live_t[:, None] & live_t[None, :], G / (s[:, None] * s[None, :]), torch.zeros_like(G))
    Gn.fill_diagonal_(0.0)
    Gn += torch.diag(live_t.to(G.dtype))
    return Gn, live_t.cpu().numpy()


def submatrix(G: torch.Tensor, cols) -> torch.Tensor:
    """``G[cols][:, cols]`` for a host index array, on ``G``'s device.

    Parameters
    ----------
    G : torch.Tensor, shape (n, n)
    cols : array-like of int
        Indices into both axes.

    Returns
    -------
    torch.Tensor, shape (len(cols), len(cols))
    """
    idx = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=G.device)
    return G.index_select(0, idx).index_select(1, idx)


#: gram_evaluate reads whether the factorisation has stopped once per this many pivots (one host
#: sync each time), so a rank-deficient B ends early without a sync per pivot.
_STOP_CHECK = 32


def gram_evaluate(space, A, B, t2=None) -> tuple:
    """``(d2, lo, hi)`` of ``GramSpace.evaluate`` for a unit-diagonal Gram matrix on a device.

    Pivoted Cholesky over B carried through A (module docstring). The pivot choice and the stopping
    test stay on the device (masked updates after the stop), so the loop reads nothing on the host
    but a stop flag every :data:`_STOP_CHECK` pivots.

    Parameters
    ----------
    space : GramSpace
        Whose ``G`` is a unit-diagonal torch tensor, with per-neuron error levels ``eta`` and
        ``rank_tol``.
    A, B : array-like of int
        Non-empty neuron indices: distances of A's neurons to span(B).
    t2 : float, optional
        The caller's squared threshold, accepted for the host kernel's signature (unused here).

    Returns
    -------
    d2, lo, hi : ndarray of float64, shape (len(A),)
        Squared relative distances in [0, 1] and bounds on the exact ones (all three equal when
        certification is off).
    """
    from . import _certify as cert
    from .subspace import _CERTIFY, _GRAM_FLOOR, _gram_finish

    G = space.G
    A = np.asarray(A)
    B = np.asarray(B)
    nb = len(B)
    dev = G.device
    idx = torch.as_tensor(np.concatenate([B, A]).astype(np.int64), device=dev)
    K = G.index_select(0, idx).index_select(1, idx[:nb])  # (|B| + |A|, |B|): columns of B only
    d = torch.diagonal(G).index_select(0, idx).clone()  # remaining squared distance of every row
    L = torch.zeros((idx.numel(), nb), dtype=G.dtype, device=dev)
    order = torch.zeros(nb, dtype=torch.long, device=dev)
    free = torch.ones(nb, dtype=torch.bool, device=dev)
    positions = torch.arange(nb, device=dev)
    neg = torch.tensor(-np.inf, dtype=G.dtype, device=dev)
    zero = torch.zeros((), dtype=G.dtype, device=dev)
    going = torch.ones((), dtype=torch.bool, device=dev)  # no pivot has fallen to the floor yet
    eta_B = space.eta[B]
    floor = _GRAM_FLOOR * float(eta_B.max()) ** 2 if _CERTIFY else space.rank_tol**2
    rank = torch.zeros((), dtype=torch.long, device=dev)
    for k in range(nb):
        cand = torch.where(free, d[:nb], neg)
        j = torch.argmax(cand).reshape(1)  # first maximum, as dpstrf
        pivot = cand.index_select(0, j)[0]
        going = going & (pivot > floor)
        col = (K.index_select(1, j)[:, 0] - L[:, :k] @ L.index_select(0, j)[0, :k]) / torch.sqrt(
            torch.where(going, pivot, torch.ones_like(pivot)))
        col = torch.where(going, col, zero)
        L[:, k] = col
        d -= col * col
        order[k] = torch.where(going, j[0], order[k])
        rank = rank + going.long()
        free &= ~((positions == j) & going)
        if k % _STOP_CHECK == _STOP_CHECK - 1 and not bool(going):
            break
    raw = (1.0 - (L[nb:] * L[nb:]).sum(dim=1)).cpu().numpy()
    d2 = np.clip(raw, 0.0, 1.0)
    if not _CERTIFY:
        return d2, d2, d2
    r = int(rank)
    piv_pos = order[:r]
    tail_pos = torch.nonzero(free).flatten()
    Lp = L.index_select(0, piv_pos)[:, :r]  # lower triangular: the factor U^T in pivot order
    WA = L[nb:, :r].T  # (r, |A|): coordinates of A on the orthonormal basis of the resolved span
    kern = 3.0 * cert.gamma(r + 2)
    eta_K = torch.as_tensor(space.eta[B[piv_pos.cpu().numpy()]], device=dev)
    eK = torch.sqrt(eta_K**2 + kern)
    if r:
        C = torch.linalg.solve_triangular(Lp.T, WA, upper=True)  # coefficients on the pivots' unit vectors
        cw = (eK @ C.abs()).cpu().numpy()
        inv = torch.linalg.solve_triangular(Lp, torch.eye(r, dtype=G.dtype, device=dev), upper=False)
        kappa2 = float(torch.linalg.matrix_norm(inv))  # ||U^-1||_F >= ||U^-1||_2
    else:
        cw, kappa2 = np.zeros(len(A)), 0.0
    s = (float((eta_K**2).sum()) + r * kern) * kappa2**2
    rho = 1.0 / (1.0 - s) if s < 0.5 else np.inf
    eA2 = space.eta[A] ** 2 + kern
    S = eT = None
    nt = int(tail_pos.numel())
    if nt:
        if nt <= cert.MAX_TAIL:
            LT = L.index_select(0, tail_pos)[:, :r]  # (|T|, r)
            GTA = K[nb:].index_select(1, tail_pos).T  # (|T|, |A|)
            S = (GTA - LT @ WA).cpu().numpy()
            cT = torch.linalg.solve_triangular(Lp.T, LT.T, upper=True) if r else torch.zeros((0, nt), dtype=G.dtype,
                                                                                             device=dev)
            cwT = (eK @ cT.abs()).cpu().numpy() if r else np.zeros(nt)
            eT = np.sqrt(space.eta[B[tail_pos.cpu().numpy()]] ** 2 + kern) + cwT
        else:
            S = np.full((nt, len(A)), np.inf)
            eT = np.zeros(nt)
    swap = float(np.sqrt(nt * 1.02 * floor)) if nt else 0.0
    eK_min = float(eK.min()) if r else 1.0
    return _gram_finish(raw, eA2, cw, rho, r, space.rank_tol, S, eT, swap, eK_min)


class _RoundLimit(Exception):
    """The auction ran past its round limit (ties or values too large for its epsilon)."""


#: Round limit of the auction: ``AUCTION_ROUNDS_PER_UNIT * (n_x + n_y) + 1000`` bidding and reverse
#: rounds in all. Correlation matrices took 2.5-8 rounds per row (measured); many exact ties take
#: up to ~60. Past the limit the auction gives up (infinite gap: the caller solves with SciPy).
AUCTION_ROUNDS_PER_UNIT = 100

#: Epsilon is never below this many ulps of the largest |value| plus the span: below that, bids stop
#: raising prices in float64 and tied rows could trade a column forever.
_ULPS = 64


class _Auction:
    """State of an auction on ``A`` (n rows <= m columns): prices and owner of every column, column
    of every row (-1: none). Each vector has one spare slot at its end, where masked scatters put
    the writes they drop, so a round needs no host read to select what to write."""

    def __init__(self, A):
        self.A = A
        n, m = A.shape
        dev = A.device
        self.prices_x = torch.zeros(m + 1, dtype=A.dtype, device=dev)
        self.owner_x = torch.full((m + 1,), -1, dtype=torch.long, device=dev)
        self.assigned_x = torch.full((n + 1,), -1, dtype=torch.long, device=dev)
        self.prices, self.owner, self.assigned = self.prices_x[:m], self.owner_x[:m], self.assigned_x[:n]
        self.row_ids = torch.arange(n, device=dev)
        self.col_ids = torch.arange(m, device=dev)
        self.minus_one = torch.tensor(-1, device=dev)

    @staticmethod
    def _count(stats: dict, kind: str) -> None:
        """Count one round of ``kind``; raise _RoundLimit past the limit on all rounds."""
        stats[kind] += 1
        if stats["bidding_rounds"] + stats["reverse_rounds"] > stats["max_rounds"]:
            raise _RoundLimit

    def lowest_assigned_price(self):
        return torch.where(self.owner >= 0, self.prices, torch.full_like(self.prices, np.inf)).min()

    def release_slack(self, eps: float) -> None:
        """Rows that break eps-complementary slackness at this epsilon lose their column."""
        A, n, m = self.A, *self.A.shape
        V = A - self.prices
        held = self.assigned >= 0
        own = V.gather(1, self.assigned.clamp(min=0)[:, None])[:, 0]
        slack = held & (own < V.max(dim=1).values - eps)
        self.owner_x.index_put_((torch.where(slack, self.assigned, m),), self.minus_one)
        self.assigned.copy_(torch.where(slack, -1, self.assigned))

    def bid_rounds(self, eps: float, stats: dict) -> None:
        """Forward auction: unassigned rows bid for columns until every row holds one.

        Each unassigned row bids for its best column (value ``A_ij - p_j``) the price that makes it
        indifferent to its second best, plus ``eps``; each column goes to its highest bidder (lowest
        row index on ties) and the row it displaces becomes unassigned. Keeps eps-complementary
        slackness for every assigned row. One host read per round (the bidders).
        """
        A, n, m = self.A, *self.A.shape
        ninf = torch.full_like(self.prices, -np.inf)
        nobody = torch.full_like(self.owner, n)
        bidders = torch.nonzero(self.assigned < 0)[:, 0]
        while bidders.numel():
            self._count(stats, "bidding_rounds")
            top_v, top_j = (A.index_select(0, bidders) - self.prices).topk(2, dim=1)
            j = top_j[:, 0]
            bid = self.prices.index_select(0, j) + (top_v[:, 0] - top_v[:, 1]) + eps
            best = ninf.scatter_reduce(0, j, bid, "amax", include_self=True)
            cand = torch.where(bid == best.index_select(0, j), bidders, n)
            winner = nobody.scatter_reduce(0, j, cand, "amin", include_self=True)  # n: no bid
            won = winner < n
            # displaced rows (distinct: one owner per column) first, then the winners (distinct: one
            # bid per row); dropped writes land in the spare slot n
            self.assigned_x.index_put_((torch.where(won & (self.owner >= 0), self.owner, n),), self.minus_one)
            self.assigned_x.index_put_((torch.where(won, winner, n),), self.col_ids)
            self.owner.copy_(torch.where(won, winner, self.owner))
            self.prices.copy_(torch.where(won, best, self.prices))
            bidders = torch.nonzero(self.assigned < 0)[:, 0]

    def reverse_rounds(self, eps: float, stats: dict) -> None:
        """Reverse auction (rectangular problems, all rows assigned): every unassigned column priced
        above ``lam`` (the lowest assigned price) either takes the row that values it most, at the
        price that keeps eps-complementary slackness for every row, or drops its price to ``lam``.

        Ends with unassigned prices <= lam <= assigned prices, the condition under which the
        shifted dual bound of :func:`auction_assignment` is within ``n * eps`` of the assignment's
        total. Each taken row gains at least ``eps`` profit, so the loop ends. One host read per
        round (the columns that bid).
        """
        A, n, m = self.A, *self.A.shape
        lam = self.lowest_assigned_price()
        ninf = torch.full((n,), -np.inf, dtype=A.dtype, device=A.device)
        while True:
            cols = torch.nonzero((self.owner < 0) & (self.prices > lam))[:, 0]
            k = cols.numel()
            if not k:
                return
            self._count(stats, "reverse_rounds")
            profit = A.gather(1, self.assigned[:, None])[:, 0] - self.prices.index_select(0, self.assigned)
            top_v, top_i = (A.index_select(1, cols).T - profit).topk(2, dim=1)
            take = top_v[:, 0] - eps > lam  # else the column drops its price to lam
            self.prices_x.index_put_((cols,), torch.where(take, self.prices.index_select(0, cols), lam))
            rows = top_i[:, 0]
            offer = torch.maximum(top_v[:, 1] - eps, lam)
            gain = torch.where(take, A[rows, cols] - offer, -np.inf)  # the row's profit if it accepts
            best = ninf.scatter_reduce(0, rows, gain, "amax", include_self=True)
            slots = torch.arange(k, device=A.device)
            cand = torch.where(take & (gain == best.index_select(0, rows)), slots, k)  # lowest column on ties
            chosen = torch.full((n,), k, dtype=torch.long, device=A.device).scatter_reduce(
                0, rows, cand, "amin", include_self=True)
            won = chosen < k
            chosen = chosen.clamp(max=k - 1)
            new_cols = torch.where(won, cols.index_select(0, chosen), m)  # m: the spare slot
            # the rows' old columns (owned) and their new ones (unowned) are all distinct
            self.owner_x.index_put_((torch.where(won, self.assigned, m),), self.minus_one)
            self.owner_x.index_put_((new_cols,), self.row_ids)
            self.prices_x.index_put_((new_cols,), offer.index_select(0, chosen))
            self.assigned.copy_(torch.where(won, new_cols, self.assigned))


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
        checks it against ``tol``. ``inf`` when the auction gave up at its round limit
        (:data:`AUCTION_ROUNDS_PER_UNIT`); rows and cols are then empty.
    stats : dict
        Bidding and reverse rounds, phases, the round limit.

    Raises
    ------
    ValueError
        ``S`` is not a 2-D floating tensor, or holds NaN or Inf.
    """
    if S.dim() != 2 or not S.is_floating_point():
        raise ValueError(f"S must be a 2-D floating tensor, got shape {tuple(S.shape)} and dtype {S.dtype}")
    transposed = S.shape[0] > S.shape[1]
    A = (S.T if transposed else S).to(torch.float64).contiguous()
    n, m = A.shape
    stats = {"bidding_rounds": 0, "reverse_rounds": 0, "phases": 0,
             "max_rounds": AUCTION_ROUNDS_PER_UNIT * (n + m) + 1000}
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, 0.0, stats
    if not bool(all_finite(A)):
        raise ValueError("S contains non-finite values (NaN or Inf); the assignment needs finite similarities")
    if n == 1:  # rows <= columns after the transpose: one row takes its best column
        assigned = torch.argmax(A, dim=1)
        gap = 0.0
    else:
        hi, lo = float(A.max()), float(A.min())
        span = hi - lo
        eps_final = max(tol / (2 * n), _ULPS * np.finfo(np.float64).eps * (max(abs(hi), abs(lo)) + span))
        eps = max(span / 4, eps_final)
        auction = _Auction(A)
        try:
            while True:
                stats["phases"] += 1
                auction.release_slack(eps)  # rows that break eps-CS at the new epsilon bid again
                auction.bid_rounds(eps, stats)
                if n < m:  # every phase: only at the last took 2-7x more rounds (measured)
                    auction.reverse_rounds(eps, stats)
                if eps <= eps_final:
                    break
                eps = max(eps / AUCTION_SCALING, eps_final)
        except _RoundLimit:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, float("inf"), stats
        assigned = auction.assigned
        total = A.gather(1, assigned[:, None]).sum()
        q = (auction.prices - auction.lowest_assigned_price()).clamp(min=0.0)
        bound = (A - q).max(dim=1).values.sum() + q.sum()
        gap = max(float(bound - total), 0.0)
    assigned = assigned.cpu().numpy()
    rows, cols = np.arange(n), assigned
    if transposed:
        rows, cols = cols, rows
        order = np.argsort(rows)
        rows, cols = rows[order], cols[order]
    return rows, cols, gap, stats


# ---------------------------------------------------------------------------- measures' device work
# What the measures (correlation, matchings) do to tensors, so that they never import torch
# themselves: they reach these through ``Reduction.backend`` (issue 15).
def comoment_diagonal(red) -> np.ndarray:
    """The diagonal of a device reduction's co-moment (stored units) as a host float64 array."""
    return torch.diagonal(red.device_tensors()["comoment"]).cpu().numpy()


def between_correlation(red, scale: np.ndarray, const: np.ndarray) -> torch.Tensor:
    """The between-net correlation block ``C_xy * s_x s_y^T`` of a device reduction, on its device.

    ``scale`` (1 / sqrt(C_ii), 0 for constant units) and the constant-unit mask ``const`` are host
    arrays over all n_x + n_y neurons; the result is clipped to [-1, 1] and constant units' rows and
    columns are 0, as in ``correlation_from_reduction``."""
    C = red.device_tensors()["comoment"]
    nx = red.n_x
    sx = torch.as_tensor(scale[:nx], device=C.device)
    sy = torch.as_tensor(scale[nx:], device=C.device)
    R = C[:nx, nx:] * sx[:, None] * sy[None, :]
    R.clamp_(-1.0, 1.0)
    R[torch.as_tensor(const[:nx], device=C.device), :] = 0.0
    R[:, torch.as_tensor(const[nx:], device=C.device)] = 0.0
    return R


def select_block(S: torch.Tensor, rows, cols) -> torch.Tensor:
    """``S[rows][:, cols]`` for host index arrays, on ``S``'s device."""
    ri = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=S.device)
    ci = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=S.device)
    return S.index_select(0, ri).index_select(1, ci)


def row_best(S: torch.Tensor) -> tuple:
    """(argmax, max) of every row of ``S`` as host arrays (first maximum on ties, as NumPy)."""
    best = S.argmax(dim=1)
    return best.cpu().numpy(), S.gather(1, best[:, None]).squeeze(1).cpu().numpy()


def entries(S: torch.Tensor, rows, cols) -> np.ndarray:
    """``S[rows[k], cols[k]]`` for host index arrays, as a host array."""
    ri = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=S.device)
    ci = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=S.device)
    return S[ri, ci].cpu().numpy()


def to_host(t) -> np.ndarray:
    """A tensor as a host NumPy array (arrays pass through)."""
    return t if isinstance(t, np.ndarray) else t.detach().cpu().numpy()
