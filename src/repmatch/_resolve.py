"""The one input resolver of the measures: "two activation arrays ``(X, Y)``, or a Reduction".

Every measure takes either the two layers' activations on the same inputs, ``f(X, Y)``, or a
:class:`~repmatch.Reduction` that already holds both, ``f(r)`` with ``Y`` omitted. Measures read
moments (correlation, matchings, CKA, sparse prediction...) and take :func:`as_reduction`; those
that must see the rows themselves (resampling nulls, RBF CKA, the bootstrap) take :func:`as_rows`.

Contract (both functions)
-------------------------
* They return checked inputs: a :class:`Reduction` with at least ``min_samples`` rows, or two
  float64 arrays of shape (n, n_x) and (n, n_y) with the same n >= ``min_samples``.
* Every failure is a ``ValueError`` whose message starts with the argument's name (``names``,
  ``("X", "Y")`` by default), then says what was expected and what was seen, and names the measure:
  ``"Y is required for linear CKA when X is an activation array (or pass a Reduction as X)"``.
* Arrays are validated by :func:`repmatch._validate.check_pair` (2-D, numeric, finite, same rows).

The subspace match (lead's subspace.geometry) can use :func:`as_reduction` with ``method=`` and
``keep_rows=True`` for its "(X, Y) or a Reduction" branch.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_pair, check_positive_int
from .reduce import Reduction

__all__ = ["as_reduction", "as_rows"]


def as_reduction(X, Y=None, *, measure: str = "this measure", names=("X", "Y"), min_samples: int = 1,
                 method: str | None = None, keep_rows: bool = False) -> Reduction:
    """``X`` if it is a :class:`Reduction` (``Y`` omitted), else the reduction of ``(X, Y)``.

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first layer, or a reduction holding both layers.
    Y : array of shape (n_samples, n_y), optional
        Activations of the second layer on the same inputs; must be omitted when ``X`` is a
        Reduction.
    measure : str
        The measure's name, for the messages.
    names : tuple of str
        The two arguments' names, for the messages.
    min_samples : int
        Fewer rows than this raise a ValueError (default 1: a reduction that has seen nothing).
    method : {None, "gram", "qr"}
        The reduction method to build from arrays (None: ``"gram"``); given with a Reduction, it
        must be that reduction's method.
    keep_rows : bool
        Keep the checked arrays on a reduction built here (``Reduction.rows``), for measures that
        settle close calls on the raw data.

    Returns
    -------
    Reduction
        ``X`` itself (not copied) or a new host reduction of the checked arrays.
    """
    nx_name, ny_name = names
    min_samples = check_positive_int(min_samples, "min_samples")
    if not isinstance(X, Reduction) and Y is None:
        raise ValueError(f"{ny_name} is required for {measure} when {nx_name} is an activation array "
                         f"(or pass a Reduction as {nx_name})")
    if isinstance(X, Reduction):
        if Y is not None:
            raise ValueError(f"{ny_name} must be omitted when {nx_name} is a Reduction (it already holds both layers)")
        if method is not None and method != X.method:
            raise ValueError(f"method={method!r} does not apply to a {X.method!r} Reduction that is already built")
        if X.n_samples == 0:
            raise ValueError(f"{nx_name} is a Reduction that has seen no samples; call update() first")
        if X.n_samples < min_samples:
            raise ValueError(f"{nx_name} is a Reduction of {X.n_samples} sample(s); {measure} needs at least "
                             f"{min_samples}")
        return X
    Xa, Ya = as_rows(X, Y, measure=measure, names=names, min_samples=min_samples)
    r = Reduction.from_arrays(Xa, Ya, method=method or "gram")
    if keep_rows:
        r.attach_rows(Xa, Ya)
    return r


def as_rows(X, Y=None, *, measure: str = "this measure", names=("X", "Y"), min_samples: int = 1,
            needs: str = "the rows themselves", alternative: str | None = None) -> tuple:
    """The two activation arrays, checked, for a measure that needs the rows themselves.

    Parameters
    ----------
    X : array of shape (n_samples, n_x)
        Activations of the first layer. A Reduction is refused (it holds moments, not rows).
    Y : array of shape (n_samples, n_y)
        Activations of the second layer on the same inputs.
    measure : str
        The measure's name, for the messages.
    names : tuple of str
        The two arguments' names, for the messages.
    min_samples : int
        Fewer rows than this raise a ValueError.
    needs, alternative : str
        For the message refusing a Reduction: what the measure needs instead of moments, and
        another object it accepts (e.g. ``"an MIHistogram"``).

    Returns
    -------
    (ndarray, ndarray)
        float64 arrays of shapes (n, n_x) and (n, n_y).
    """
    nx_name, ny_name = names
    if isinstance(X, Reduction):
        other = f" or {alternative}" if alternative else ""
        raise ValueError(
            f"{nx_name} is a Reduction, but {measure} needs {needs}, not streamed moments: pass activation "
            f"arrays ({nx_name}, {ny_name}){other}, not a Reduction"
        )
    if Y is None:
        raise ValueError(f"{ny_name} is required for {measure} when {nx_name} is an activation array")
    Xa, Ya = check_pair(X, Y, names=names)
    if Xa.shape[0] < min_samples:
        raise ValueError(f"{nx_name} and {ny_name} have {Xa.shape[0]} row(s); {measure} needs at least {min_samples}")
    return np.asarray(Xa), np.asarray(Ya)
