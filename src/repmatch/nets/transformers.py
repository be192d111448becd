"""Small transformers, seeded and deterministic like the CNNs: a Vision Transformer and a causal
character-level language model.

Both use the same pre-norm block (Dosovitskiy et al. 2021; Radford et al. 2019)::

    x = x + attn(norm1(x))          multi-head self-attention, one qkv Linear and one output Linear
    x = x + mlp(norm2(x))           fc1 -> GELU (its own module, ``mlp.act``) -> fc2

* ``VisionTransformer`` (``vit-tiny``): a Conv2d patch embedding (kernel = stride = patch size),
  a learned class token and position embeddings, ``depth`` blocks, a final LayerNorm and a linear
  head on the class token. ``vit-tiny`` defaults: 28x28 images in 7x7 patches (16 patches + the
  class token = 17 tokens), width 64, depth 4, 4 heads, MLP width 128.
* ``CharTransformer`` (``char-tiny``): token and learned position embeddings, ``depth`` causal
  blocks, a final LayerNorm and a linear head giving next-character logits at every position.
  ``forward(input_ids, attention_mask=None)``: with a mask, padded keys are never attended to and
  positions count valid tokens only, so a sequence gives the same activations at its valid tokens
  however it is padded (left or right). Defaults: context 64, width 64, depth 4, 4 heads, MLP 128.

``width`` multiplies the model width and MLP width (rounded to a multiple of ``heads``).
Initialisation: Linear, Conv2d (patch embedding) and Embedding weights N(0, 0.02^2), zero biases,
LayerNorm (1, 0), class token and position embeddings N(0, 0.02^2) -- the usual transformer
initialisation, not the CNN papers' (which is defined for ReLU networks).

The layers compared by ``repmatch reproduce`` (:func:`comparison_layers`): for every block the MLP
activation (``blocks.<i>.mlp.act``, the GELU output) and the block output (``blocks.<i>``), both
(batch, tokens, features) sequence layers: every token of every input is a sample.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TRANSFORMER_ARCHS", "TRANSFORMER_DEFAULTS", "VisionTransformer", "CharTransformer", "Block",
           "comparison_layers", "layer_labels", "build_transformer", "is_transformer"]

#: Presets: every field can be overridden through build_model(..., depth=, dim=, heads=, ...).
TRANSFORMER_DEFAULTS = {
    "vit-tiny": {"dim": 64, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "patch_size": 7},
    "char-tiny": {"dim": 64, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "context": 64},
}
TRANSFORMER_ARCHS = tuple(TRANSFORMER_DEFAULTS)
#: Standard deviation of the normal initialisation of weights and embeddings.
INIT_STD = 0.02


class Attention(nn.Module):
    """Multi-head self-attention on (batch, tokens, dim); optional causal and key-padding masks."""

    def __init__(self, dim, heads, *, causal=False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, key_mask=None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        allowed = None
        if self.causal:
            allowed = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        if key_mask is not None:
            km = key_mask[:, None, None, :].bool()  # (b, 1, 1, t): padded keys are never attended to
            allowed = km if allowed is None else (allowed & km)
            # every query may attend to itself, so a padded query never sees an empty row (no NaN);
            # valid queries are unaffected, and padded positions are never read as samples
            allowed = allowed | torch.eye(t, dtype=torch.bool, device=x.device)
        if allowed is None:
            out = F.scaled_dot_product_attention(q, k, v)
        elif key_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim, heads, hidden, *, causal=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal=causal)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, hidden)

    def forward(self, x, key_mask=None):
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))


def _init(model: nn.Module, extra=()) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for p in extra:
        nn.init.normal_(p, 0.0, INIT_STD)
    return model


def _widths(dim, heads, mlp_ratio, width):
    from .._validate import check_positive_int

    heads = check_positive_int(heads, "heads")
    dim = max(heads, int(round(check_positive_int(dim, "dim") * width / heads)) * heads)
    if not (isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0):
        raise ValueError(f"mlp_ratio must be a positive number, got {mlp_ratio!r}")
    return dim, heads, max(1, int(round(dim * mlp_ratio)))


class VisionTransformer(nn.Module):
    """ViT for small images: patch embedding, class token, ``blocks``, ``norm``, ``head`` (module doc)."""

    def __init__(self, *, num_classes=10, in_channels=1, image_size=28, patch_size=7, dim=64, depth=4, heads=4,
                 mlp_ratio=2.0, width=1.0):
        super().__init__()
        from .._validate import check_positive_int

        patch_size = check_positive_int(patch_size, "patch_size")
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
        depth = check_positive_int(depth, "depth")
        dim, heads, hidden = _widths(dim, heads, mlp_ratio, width)
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        _init(self, (self.cls_token, self.pos_embed))

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (batch, patches, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


class CharTransformer(nn.Module):
    """Causal character-level language model: embeddings, causal ``blocks``, ``norm``, ``head`` (module doc)."""

    def __init__(self, *, vocab_size, context=64, dim=64, depth=4, heads=4, mlp_ratio=2.0, width=1.0):
        super().__init__()
        from .._validate import check_positive_int

        self.context = check_positive_int(context, "context")
        vocab_size = check_positive_int(vocab_size, "vocab_size")
        depth = check_positive_int(depth, "depth")
        dim, heads, hidden = _widths(dim, heads, mlp_ratio, width)
        self.tok_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.context, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, causal=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        _init(self, (self.pos_embed,))

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        if t > self.context:
            raise ValueError(f"input_ids has {t} tokens, more than the context of {self.context}")
        if attention_mask is None:
            pos = self.pos_embed[:, :t]
        else:  # positions count valid tokens, so left padding does not shift them
            idx = (attention_mask.long().cumsum(dim=1) - 1).clamp_(min=0)
            pos = self.pos_embed[0, idx]
        x = self.tok_embed(input_ids) + pos
        for blk in self.blocks:
            x = blk(x, attention_mask)
        return self.head(self.norm(x))


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is one of this module's transformers.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    bool
    """
    return isinstance(model, (VisionTransformer, CharTransformer))


def comparison_layers(model: nn.Module) -> list:
    """Module names compared by ``repmatch reproduce``: per block its MLP activation, then its output.

    Parameters
    ----------
    model : torch.nn.Module
        One of this module's transformers (it has ``blocks``).

    Returns
    -------
    list of str
        ``["blocks.0.mlp.act", "blocks.0", "blocks.1.mlp.act", ...]``.
    """
    out = []
    for i in range(len(model.blocks)):
        out += [f"blocks.{i}.mlp.act", f"blocks.{i}"]
    return out


def layer_labels(model: nn.Module) -> dict:
    """``{module name: label}`` of :func:`comparison_layers`, numbered by block from 1.

    Parameters
    ----------
    model : torch.nn.Module
        One of this module's transformers.

    Returns
    -------
    dict of str to str
        E.g. ``"blocks.0.mlp.act"`` -> ``"block 1 MLP (GELU)"``, ``"blocks.0"`` -> ``"block 1 output"``.
    """
    labels = {}
    for i in range(len(model.blocks)):
        labels[f"blocks.{i}.mlp.act"] = f"block {i + 1} MLP (GELU)"
        labels[f"blocks.{i}"] = f"block {i + 1} output"
    return labels


def build_transformer(arch, *, num_classes, in_channels, image_size, width, **overrides) -> nn.Module:
    """One of :data:`TRANSFORMER_ARCHS` with its preset, updated by ``overrides`` (module doc).

    Parameters
    ----------
    arch : {"vit-tiny", "char-tiny"}
        A canonical name from :data:`TRANSFORMER_ARCHS`.
    num_classes : int
        Classes (vit-tiny) or vocabulary size (char-tiny).
    in_channels, image_size : int
        The images (vit-tiny only).
    width : float
        Multiplier of the model and MLP width (rounded to a multiple of ``heads``).
    **overrides
        Preset options (``depth``, ``dim``, ...); None keeps the preset's value.

    Returns
    -------
    torch.nn.Module
        A ``VisionTransformer`` or a ``CharTransformer`` with its own initialisation.

    Raises
    ------
    ValueError
        When an option is not one of the preset's.
    """
    cfg = dict(TRANSFORMER_DEFAULTS[arch])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"{arch} takes the options {sorted(cfg)}, got unknown {unknown}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if arch == "vit-tiny":
        return VisionTransformer(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                                 width=width, **cfg)
    return CharTransformer(vocab_size=num_classes, width=width, **cfg)
