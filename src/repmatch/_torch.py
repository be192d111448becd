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
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_device", "to_device", "pair", "joint_batch", "checked_moments", "centred_moments", "stack_r", "normalised_gram",
           "gram_distances", "submatrix"]


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
