"""Sequence layers: which 3-D outputs are (batch, tokens, features), and how tokens become samples.

Used by :mod:`repmatch.activations`, whose docstring is the user-facing description.

Layout of a 3-D output (4-D and larger outputs are always (batch, channels, *spatial))
    ``"sequence"``: (batch, tokens, features): features are neurons, tokens are read by ``seq_mode``.
    ``"channels"``: (batch, channels, positions), a Conv1d-style output read by ``conv_mode``.
    Resolved, in this order: (1) ``layout=`` (one value for every layer, or ``{layer: value}``);
    (2) the module's own type (:data:`SEQUENCE_TYPES`, :data:`CHANNEL_TYPES`); (3) for any other
    module (an activation function, a container block, a custom module) the type of the nearest
    module of a known type that ran before it in the same forward pass and returned a tensor of
    the same shape (a GELU after a Linear is a sequence layer; a ReLU after a Conv1d a channel
    layer); (4) otherwise a ValueError asks for ``layout=``. What was used, and why, is reported
    (``layouts`` of the results).

Sequence modes (``seq_mode``)
    ``tokens`` (default): every valid token of every sequence is a sample: (valid tokens, features),
    sequence-major. ``cls``: the first valid token of each sequence (position 0 without a mask or
    with right padding). ``mean``: the mean over the valid tokens (in float64). ``last``: the last
    valid token (a causal model's summary). ``sample:K``: K random (sequence, valid token) pairs per
    batch, drawn like ``conv_mode="sample:K"`` from ``(sample_seed, batch index)`` alone, as a
    relative position within each sequence's valid tokens.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SEQ_MODES", "LAYOUTS", "SEQUENCE_TYPES", "CHANNEL_TYPES", "parse_seq_mode", "module_layout",
           "apply_seq_mode", "check_layout_arg"]

SEQ_MODES = ("tokens", "cls", "mean", "last", "sample:K")
LAYOUTS = ("sequence", "channels")

#: Modules whose 3-D outputs are (batch, tokens, features).
SEQUENCE_TYPES = tuple(t for t in (
    nn.Linear, nn.Bilinear, nn.LazyLinear, nn.LayerNorm, getattr(nn, "RMSNorm", None), nn.Embedding,
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.TransformerDecoder,
) if t is not None)
#: Modules whose 3-D outputs are (batch, channels, positions).
CHANNEL_TYPES = (nn.Conv1d, nn.ConvTranspose1d, nn.LazyConv1d, nn.BatchNorm1d, nn.InstanceNorm1d,
                 nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.LPPool1d)


def parse_seq_mode(seq_mode) -> tuple:
    """``"tokens"`` -> ("tokens", None); ``"sample:500"`` -> ("sample", 500).

    Parameters
    ----------
    seq_mode : str
        One of :data:`SEQ_MODES` (case and surrounding spaces ignored), K a positive integer.

    Returns
    -------
    mode : str
        ``"tokens"``, ``"cls"``, ``"mean"``, ``"last"`` or ``"sample"``.
    k : int or None
        K for ``"sample"``, else None.

    Raises
    ------
    ValueError
        When ``seq_mode`` is none of these.
    """
    if isinstance(seq_mode, str):
        mode = seq_mode.strip().lower()
        if mode in ("tokens", "cls", "mean", "last"):
            return mode, None
        if mode.startswith("sample:"):
            k = mode[len("sample:"):]
            if k.isdigit() and int(k) > 0:
                return "sample", int(k)
    raise ValueError(f"seq_mode must be one of {SEQ_MODES} (K a positive integer), got {seq_mode!r}")


def check_layout_arg(layout, names) -> None:
    """Validate ``layout=``: None, one of :data:`LAYOUTS`, or ``{layer: layout}`` over chosen layers.

    Parameters
    ----------
    layout : None, str or dict
        The ``layout=`` argument.
    names : collection of str
        The chosen layers (the keys a dict may use).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        When ``layout`` is of another type, names a layout not in :data:`LAYOUTS`, or (a dict) a
        layer that was not chosen.
    """
    if layout is None:
        return
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, a dict {{layer: layout}} or None, got {layout!r}")
        return
    if isinstance(layout, dict):
        for k, v in layout.items():
            if k not in names:
                raise ValueError(f"layout: {k!r} is not among the chosen layers {list(names)}")
            if v not in LAYOUTS:
                raise ValueError(f"layout[{k!r}] must be one of {LAYOUTS}, got {v!r}")
        return
    raise ValueError(f"layout must be one of {LAYOUTS}, a dict {{layer: layout}} or None, got {type(layout).__name__}")


def module_layout(module: nn.Module):
    """``"sequence"``, ``"channels"`` or None (not decided by this module's type).

    Parameters
    ----------
    module : torch.nn.Module
        The layer.

    Returns
    -------
    str or None
        ``"sequence"`` for :data:`SEQUENCE_TYPES` and batch-first attention / RNN modules,
        ``"channels"`` for :data:`CHANNEL_TYPES`, otherwise None.
    """
    if isinstance(module, nn.MultiheadAttention):
        return "sequence" if module.batch_first else None
    if isinstance(module, nn.RNNBase):
        return "sequence" if module.batch_first else None
    if isinstance(module, SEQUENCE_TYPES):
        return "sequence"
    if isinstance(module, CHANNEL_TYPES):
        return "channels"
    return None


def _first_valid(mask):
    return mask.to(torch.int8).argmax(dim=1)


def _last_valid(mask):
    return mask.shape[1] - 1 - mask.flip(1).to(torch.int8).argmax(dim=1)


def apply_seq_mode(t: torch.Tensor, mode: str, mask=None, draw=None, *, name="layer") -> torch.Tensor:
    """A (batch, tokens, features) output as 2-D (samples, features) rows (module docstring).

    Parameters
    ----------
    t : torch.Tensor of shape (batch, tokens, features)
        The layer's output.
    mode : {"tokens", "cls", "mean", "last", "sample"}
        The parsed mode (:func:`parse_seq_mode`).
    mask : torch.Tensor of bool, shape (batch, tokens), optional
        Valid tokens (an attention mask); None treats every token as valid.
    draw : tuple of torch.Tensor, optional
        For ``"sample"`` only: ``(sequence index, u, v)``, K sequence indices and K relative
        positions ``u`` in [0, 1) (``v`` unused), from the batch's seeded draw.
    name : str, default "layer"
        Used in messages.

    Returns
    -------
    torch.Tensor, 2-D (samples, features)
        ``"tokens"``: (valid tokens, features), sequence-major; ``"cls"`` / ``"last"`` / ``"mean"``:
        (batch, features), ``"mean"`` in float64; ``"sample"``: (K, features).

    Raises
    ------
    ValueError
        When ``mask`` does not have shape (batch, tokens), a sequence has no valid token, or
        ``mode`` is unknown.
    """
    b, n_tok, _ = t.shape
    if mask is not None:
        if tuple(mask.shape) != (b, n_tok):
            raise ValueError(f"{name}: output has {b} sequences of {n_tok} tokens but the attention mask has shape "
                             f"{tuple(mask.shape)}; pass mask=False for layers whose tokens do not follow the "
                             "input's, or a mask= function that matches")
        lengths = mask.sum(dim=1)
        if bool((lengths == 0).any()):
            raise ValueError(f"{name}: sequence {int((lengths == 0).nonzero()[0])} of the batch has no valid "
                             "token (its attention mask is all zero)")
        if mask.device != t.device:
            mask = mask.to(t.device)
    if mode == "tokens":
        return t.reshape(b * n_tok, -1) if mask is None else t[mask]
    rows = torch.arange(b, device=t.device)
    if mode == "cls":
        return t[:, 0] if mask is None else t[rows, _first_valid(mask)]
    if mode == "last":
        return t[:, -1] if mask is None else t[rows, _last_valid(mask)]
    if mode == "mean":
        t64 = t.to(torch.float64)
        if mask is None:
            return t64.mean(dim=1)
        m = mask.to(torch.float64)
        return (t64 * m[:, :, None]).sum(dim=1) / m.sum(dim=1, keepdim=True)
    if mode == "sample":
        bi, u, _ = draw
        bi, u = bi.to(t.device), u.to(t.device)
        if mask is None:
            pos = (u * n_tok).long().clamp_(max=n_tok - 1)
            return t[bi, pos]
        lengths = mask.sum(dim=1)[bi]
        k = torch.minimum((u * lengths).long(), lengths - 1)  # the k-th valid token of sequence bi
        cs = mask.to(torch.int64).cumsum(dim=1)[bi]  # (K, tokens)
        pos = (cs >= (k + 1)[:, None]).to(torch.int8).argmax(dim=1)
        return t[bi, pos]
    raise ValueError(f"unknown seq mode {mode!r}")
