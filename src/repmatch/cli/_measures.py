"""Measures other than the subspace match, for ``repmatch compare --measures``.

``compute(name, layer, X, Y, reduction, options)`` returns ``(json_dict, table_lines)`` for one
layer pair; ``X``/``Y`` are in-memory activations or ``None`` when only a reduction is available.
"""

from __future__ import annotations

AVAILABLE: tuple = ()
DEFAULT: tuple = ()


def compute(name, layer, X, Y, reduction, options):
    raise ValueError(f"unknown measure {name!r}; available: subspace{', ' if AVAILABLE else ''}{', '.join(AVAILABLE)}")
