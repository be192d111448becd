"""Activation extraction from any ``torch.nn.Module``, streamed into repmatch reductions.

Data flow (shared/spec/house.md): model + data loader -> activations (hooks, conv mode) ->
reductions. Nothing here computes a measure; :func:`reduce_pair` returns ``{layer: Reduction}``
that every measure reads. :func:`reduce_networks` does it for many networks and pairs in one pass
(each network runs once per batch, whatever the number of pairs it is in), optionally keeping the
shuffled null's per-input row sample from the same pass; :func:`reduce_pair` is its two-network case.

Layers
    Chosen by module name (``"features.3"``, ``"layer2.1.relu2"``), by integer index into the list
    of leaf modules (``list_layers``; negative indices count from the end), or by type (``"ReLU"``,
    ``"type:Conv2d"`` or the class ``torch.nn.ReLU``: every module of that type). The default is
    every ReLU, the papers' convention. A forward hook on the module itself records its output, so
    an in-place ReLU is captured after the ReLU. The recorded tensor is either copied at once
    (``LayerRecorder(copy=True)``, what :func:`extract`, :func:`stream_pair` and overlapped
    reductions use) or kept as a view whose autograd version counter is checked after the forward
    pass; a layer overwritten in place later in the pass is then switched to copying and the batch
    run again (:func:`_forward`), so later in-place operations never change what is reduced. Hooks
    are registered in a context manager and removed even when the forward pass raises.
    ``DataParallel``/``DistributedDataParallel`` wrappers are unwrapped (names may be given with
    or without the ``module.`` prefix).

Conv modes (for outputs of shape (batch, channels, *spatial); 2-D outputs are used as they are)
    ``positions`` (default, the papers' convention): channels are neurons and every (image,
    position) is a sample: (batch * H * W, C), rows ordered image-major.
    ``flatten``: every (channel, position) is a neuron: (batch, C * H * W).
    ``avgpool``: spatial mean per channel: (batch, C).
    ``sample:K``: K random (image, position) samples per batch, (K, C); 2-D (fully connected)
    outputs are kept whole, as the authors used all images for FC layers. The draw is a function of
    ``(sample_seed, batch index)`` only, so both networks get the same images and positions.
    Positions are drawn as relative coordinates in [0, 1) and mapped to each layer's grid, so layers
    of different spatial size are sampled at corresponding places of the same images (with
    replacement). The authors sampled 10,000 coordinates and averaged over 16 repeats: repeat with
    16 values of ``sample_seed``.

Sequence layers (transformers; see :mod:`repmatch._sequence` for the rules in full)
    A 3-D output is either (batch, tokens, features) -- ``layout="sequence"``, features are neurons --
    or (batch, channels, positions) -- ``layout="channels"``, a Conv1d-style output read by the conv
    mode. Which one is decided by ``layout=`` (one value or ``{layer: value}``), else by the module's
    type (Linear, LayerNorm, Embedding, batch-first attention and transformer layers: sequence;
    Conv1d, BatchNorm1d, 1-D pooling: channels), else by the type of the nearest module of a known
    type that ran before it and returned the same shape (a GELU after a Linear; a block whose last
    module is a Linear), else a ValueError asks for ``layout=``. Never guessed silently: the result's
    ``layouts`` attribute (and saved metadata) says which layout each layer got, and why.
    ``seq_mode`` reads sequence layers: ``tokens`` (default: every valid token of every sequence is a
    sample), ``cls`` (first valid token), ``mean`` (masked mean), ``last`` (last valid token),
    ``sample:K`` (K random valid tokens per batch, drawn like ``conv_mode="sample:K"``).
    An attention mask (``mask=``: default ``batch["attention_mask"]`` of a dict batch; a key; a
    callable ``mask(batch)``; ``False``) excludes padding from every sequence mode, so the samples
    do not depend on how a batch was padded.

Inputs (see :mod:`repmatch._inputs`)
    A loader may yield tensors, NumPy arrays, ``(inputs, labels, ...)`` tuples (the first element is
    the input) or dicts passed as ``model(**batch)`` (Hugging Face style). ``input_fn(batch)`` turns
    a batch into the model's inputs instead (a tensor, a tuple of positional inputs or a dict of
    keyword inputs); for two networks ``input_fn_b`` and ``loader_b`` give network B its own
    preprocessing of the same samples, in the same order. Modules returning tuples, dicts or
    dataclasses are recorded through their ``last_hidden_state`` or first tensor, or ``output_key``
    (one key, attribute or index, or ``{layer: key}``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import itertools
import os
import tempfile
import zipfile

import numpy as np
import torch
import torch.nn as nn

from ._atomic import _umask, atomic_savez, atomic_write_bytes, atomic_write_json
from ._progress import progress as _bar
from ._inputs import batch_call, batch_mask, batch_size_of, clone_call, unwrap_output
from ._sequence import LAYOUTS, SEQ_MODES, apply_seq_mode, check_layout_arg, module_layout, parse_seq_mode
from ._threads import available_cores, single_threaded_blas
from ._validate import check_finite, check_positive_int
from .io import SAVED_FORMAT, read_saved_manifest
from .reduce import Reduction

__all__ = [
    "CONV_MODES",
    "SEQ_MODES",
    "LAYOUTS",
    "LayerDict",
    "describe_layers",
    "list_layers",
    "resolve_layers",
    "unwrap",
    "parse_conv_mode",
    "apply_conv_mode",
    "LayerRecorder",
    "extract",
    "stream_pair",
    "reduce_pair",
    "reduce_networks",
    "NetworkReductions",
    "pair_key",
    "load_saved_activations",
    "saved_to_npz",
    "save_activations_npz",
]

CONV_MODES = ("positions", "flatten", "avgpool", "sample:K")


class LayerDict(dict):
    """``{layer: value}`` as returned by :func:`extract` and :func:`reduce_pair`, plus ``layouts``.

    ``layouts`` says how each layer's output was read: for :func:`extract` ``{layer: info}``, for
    :func:`reduce_pair` ``{"a": {layer: info}, "b": {...}}``, with ``info`` a dict of ``layout``
    (``"sequence"``, ``"channels"`` or ``"2-D"``), ``reason`` (why), ``type`` (the module's class)
    and ``shape`` (the output's shape after the batch dimension, first batch).
    """

    layouts = None


# ---------------------------------------------------------------------------------------------- layers
def unwrap(model: nn.Module) -> nn.Module:
    """Strip ``DataParallel`` / ``DistributedDataParallel`` wrappers (any depth).

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        The innermost wrapped module (``model`` itself when it is not wrapped).

    Raises
    ------
    ValueError
        When ``model`` is not a ``torch.nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _leaves(model: nn.Module) -> list:
    return [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]


def list_layers(model: nn.Module) -> list:
    """``[(index, name, type_name)]`` of the leaf modules, the candidates for integer layer indices.

    Parameters
    ----------
    model : torch.nn.Module
        DataParallel wrappers are unwrapped first.

    Returns
    -------
    list of (int, str, str)
        Index, module name and class name of every module without children, in module order.
    """
    return [(i, n, type(m).__name__) for i, (n, m) in enumerate(_leaves(unwrap(model)))]


def _available_message(model: nn.Module) -> str:
    leaves = _leaves(model)
    names = [n for n, _ in leaves]
    shown = ", ".join(names[:60]) + (f", ... ({len(names)} in all)" if len(names) > 60 else "")
    types = sorted({type(m).__name__ for _, m in leaves})
    return (f"available layer names: {shown or '(none)'}; indices 0..{len(names) - 1} (or negative); "
            f"types: {', '.join(types)}")


def resolve_layers(model: nn.Module, layers=None) -> dict:
    """Turn a layer specification into ``{name: module}`` in the model's module order.

    ``layers`` is one item or a list of items; each item is a module name, an int (index into
    :func:`list_layers`; also as a string such as ``"-1"``), a type name (``"ReLU"`` or
    ``"type:ReLU"``) or an ``nn.Module`` subclass. ``None`` means every ``nn.ReLU``. Raises ValueError
    listing the available names for anything unknown.

    Parameters
    ----------
    model : torch.nn.Module
        DataParallel wrappers are unwrapped first (names may keep the ``module.`` prefix).
    layers : None, str, int, type, torch.nn.Module or list of these
        The specification (an ``nn.Module`` instance must be a submodule of ``model``).

    Returns
    -------
    dict of str to torch.nn.Module
        The chosen modules by name, in the model's module order, each once.

    Raises
    ------
    ValueError
        When the list is empty, or an item is unknown, out of range, of an unsupported kind, or
        matches no module.
    """
    model = unwrap(model)
    named = {n: m for n, m in model.named_modules() if n}
    leaves = _leaves(model)
    if layers is None:
        layers = [nn.ReLU]
    elif isinstance(layers, (str, int, type)) or (isinstance(layers, nn.Module)):
        layers = [layers]
    else:
        layers = list(layers)
        if not layers:
            raise ValueError("layers must name at least one layer; " + _available_message(model))
    chosen = set()
    for item in layers:
        if isinstance(item, nn.Module):
            hits = [n for n, m in named.items() if m is item]
            if not hits:
                raise ValueError("layers: the module given is not part of the model")
            chosen.add(hits[0])
            continue
        if isinstance(item, type):
            if not issubclass(item, nn.Module):
                raise ValueError(f"layers: a type must be an nn.Module subclass, got {item!r}")
            hits = [n for n, m in named.items() if isinstance(m, item)]
            if not hits:
                raise ValueError(f"layers: the model has no module of type {item.__name__}; "
                                 + _available_message(model))
            chosen.update(hits)
            continue
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            index = int(item)
        elif isinstance(item, str) and item.strip().lstrip("-").isdigit():
            index = int(item)
        elif isinstance(item, str):
            name = item.strip()
            if name.startswith("module.") and name not in named:
                name = name[len("module."):]
            if name in named:
                chosen.add(name)
                continue
            type_name = name[len("type:"):] if name.startswith("type:") else name
            hits = [n for n, m in named.items() if type(m).__name__ == type_name]
            if not hits and isinstance(getattr(nn, type_name, None), type):
                hits = [n for n, m in named.items() if isinstance(m, getattr(nn, type_name))]
            if hits:
                chosen.update(hits)
                continue
            raise ValueError(f"layers: unknown layer {item!r}; " + _available_message(model))
        else:
            raise ValueError(f"layers: each item must be a name, an index or a module type, got {item!r}")
        if not -len(leaves) <= index < len(leaves):
            raise ValueError(f"layers: index {index} out of range for {len(leaves)} leaf modules; "
                             + _available_message(model))
        chosen.add(leaves[index][0])
    return {n: named[n] for n in named if n in chosen}


# ---------------------------------------------------------------------------------------------- conv modes
def parse_conv_mode(conv_mode: str) -> tuple:
    """``"positions"`` -> ("positions", None); ``"sample:1000"`` -> ("sample", 1000).

    Parameters
    ----------
    conv_mode : str
        One of :data:`CONV_MODES` (case and surrounding spaces ignored), K a positive integer.

    Returns
    -------
    mode : str
        ``"positions"``, ``"flatten"``, ``"avgpool"`` or ``"sample"``.
    k : int or None
        K for ``"sample"``, else None.

    Raises
    ------
    ValueError
        When ``conv_mode`` is none of these.
    """
    if isinstance(conv_mode, str):
        mode = conv_mode.strip().lower()
        if mode in ("positions", "flatten", "avgpool"):
            return mode, None
        if mode.startswith("sample:"):
            k = mode[len("sample:"):]
            if k.isdigit() and int(k) > 0:
                return "sample", int(k)
    raise ValueError(f"conv_mode must be one of {CONV_MODES} (K a positive integer), got {conv_mode!r}")


def _sample_draw(batch_size: int, k: int, sample_seed: int, batch_index: int, device) -> tuple:
    g = torch.Generator()
    g.manual_seed((int(sample_seed) * 1_000_003 + int(batch_index) * 7919 + 17) % (2**63 - 1))
    b = torch.randint(0, batch_size, (k,), generator=g)
    u = torch.rand(k, generator=g, dtype=torch.float64)
    v = torch.rand(k, generator=g, dtype=torch.float64)
    return b.to(device), u.to(device), v.to(device)


def apply_conv_mode(t: torch.Tensor, mode: str, draw=None) -> torch.Tensor:
    """Turn one layer output (batch, C, *spatial) into a 2-D (samples, neurons) tensor (see module doc).

    Parameters
    ----------
    t : torch.Tensor
        The layer's output: (batch, features) is returned as is; (batch, C, *spatial) is read by
        ``mode``.
    mode : {"positions", "flatten", "avgpool", "sample"}
        The parsed mode (:func:`parse_conv_mode`).
    draw : tuple of torch.Tensor, optional
        For ``"sample"`` only: ``(image index, u, v)``, K image indices and K relative coordinates
        in [0, 1) along the first and second spatial axis, from the batch's seeded draw.

    Returns
    -------
    torch.Tensor, 2-D
        ``"positions"``: (batch * prod(spatial), C), image-major; ``"flatten"``: (batch, C *
        prod(spatial)); ``"avgpool"``: (batch, C); ``"sample"``: (K, C).

    Raises
    ------
    ValueError
        When ``t`` has fewer than 2 dimensions, ``"sample"`` meets more than 2 spatial axes, or
        ``mode`` is unknown.
    """
    if t.dim() == 2:
        return t
    if t.dim() < 2:
        raise ValueError(f"layer output has shape {tuple(t.shape)}; need (batch, features) or (batch, C, ...)")
    b, c = t.shape[:2]
    if mode == "positions":
        return t.reshape(b, c, -1).transpose(1, 2).reshape(-1, c)
    if mode == "flatten":
        return t.reshape(b, -1)
    if mode == "avgpool":
        return t.reshape(b, c, -1).mean(dim=2)
    if mode == "sample":
        bi, u, v = draw
        spatial = t.shape[2:]
        if len(spatial) == 1:
            h = (u * spatial[0]).long().clamp_(max=spatial[0] - 1)
            return t[bi, :, h]
        if len(spatial) == 2:
            h = (u * spatial[0]).long().clamp_(max=spatial[0] - 1)
            w = (v * spatial[1]).long().clamp_(max=spatial[1] - 1)
            return t[bi, :, h, w]
        raise ValueError(f"conv_mode 'sample:K' supports 1-D and 2-D feature maps, got shape {tuple(t.shape)}")
    raise ValueError(f"unknown conv mode {mode!r}")


def _rows(t: torch.Tensor) -> np.ndarray:
    """A recorded output as a 2-D (samples, neurons) array: (B, C, L) -> (B * L, C), image-major."""
    if t.dim() == 3:
        t = t.transpose(1, 2).reshape(-1, t.shape[1])
    return t.cpu().numpy()


def _n_samples(t: torch.Tensor) -> int:
    return t.shape[0] * t.shape[2] if t.dim() == 3 else t.shape[0]


def _n_neurons(t: torch.Tensor) -> int:
    return t.shape[1]


# ---------------------------------------------------------------------------------------------- hooks
class LayerRecorder(contextlib.AbstractContextManager):
    """Forward hooks on the chosen modules that keep each one's last output.

    Use as a context manager: hooks are registered on entry and always removed on exit, also when
    the forward pass raises. ``outputs[name]`` holds the current batch, detached: a (B, C, positions)
    tensor for conv outputs in ``positions`` mode, else the 2-D (samples, neurons) result of the
    conv mode (channel layouts) or of the sequence mode (sequence layouts). ``copy=True`` copies it
    at once; ``copy=False`` keeps a view and its version counter (see :meth:`modified`).
    Inference-mode tensors (no version counter) are always copied. ``layouts`` records, per layer,
    the layout used and why (module docstring); set ``mask`` (a (B, T) bool tensor or None) and the
    sample draws before each forward pass.
    """

    def __init__(self, model: nn.Module, layers=None, *, conv_mode: str = "positions", seq_mode: str = "tokens",
                 layout=None, output_key=None, copy: bool = True):
        self.model = unwrap(model)
        self.modules = resolve_layers(self.model, layers)
        self.mode, self.k = parse_conv_mode(conv_mode)
        self.seq_mode, self.seq_k = parse_seq_mode(seq_mode)
        check_layout_arg(layout, self.modules)
        self.layout_arg = layout
        if isinstance(output_key, dict):
            unknown = [k for k in output_key if k not in self.modules]
            if unknown:
                raise ValueError(f"output_key: {unknown} not among the chosen layers {list(self.modules)}")
        self.output_key = output_key
        # copy=False keeps views of the modules' outputs and their autograd version counters; a
        # consumer calls modified() after the forward pass (see _forward) instead of paying a copy.
        self.copy = bool(copy)
        self.copy_layers: set = set()  # layers found modified in place after their hook: always copied
        self.outputs: dict = {}
        self.layouts: dict = {}
        self._versions: dict = {}
        self.draw = None
        self.seq_draw = None
        self.mask = None
        self.rows = None  # a _RowSampler: each hook also keeps sampled rows of its layer (reduce_networks)
        self.row_out: dict = {}
        self._handles: list = []
        self._trace_handles: list = []
        self._trace: list = []

    @property
    def samples_drawn(self) -> bool:
        """Whether a forward pass needs ``draw``/``seq_draw`` (a ``sample:K`` mode)."""
        return self.mode == "sample" or self.seq_mode == "sample"

    def _layout(self, name, module, out) -> str:
        """The layout of a 3-D output of layer ``name``, decided once (module docstring)."""
        info = self.layouts.get(name)
        if info is not None:
            return info["layout"]
        arg = self.layout_arg
        if isinstance(arg, str):
            lay, why = arg, "layout= given"
        elif isinstance(arg, dict) and name in arg:
            lay, why = arg[name], "layout= given for this layer"
        else:
            lay = module_layout(module)
            why = f"module type {type(module).__name__}"
            if lay is None:
                shape = tuple(out.shape)
                hit = next((t for t in reversed(self._trace) if t[2] == shape and t[0] != name), None)
                if hit is None:
                    raise ValueError(
                        f"layer {name!r} ({type(module).__name__}) returns a 3-D output of shape {shape}, which is "
                        "either (batch, tokens, features) or (batch, channels, positions), and neither its type nor "
                        "a module of known type before it with the same output shape tells which; pass "
                        f"layout='sequence' or layout='channels' (or layout={{{name!r}: ...}})")
                lay, why = hit[3], f"follows {hit[0]} ({hit[1]}) with the same output shape"
        self.layouts[name] = {"layout": lay, "reason": why, "type": type(module).__name__,
                              "shape": [int(d) for d in out.shape[1:]]}
        return lay

    def _hook(self, name):
        def hook(module, inputs, output):
            key = self.output_key.get(name) if isinstance(self.output_key, dict) else self.output_key
            output = unwrap_output(output, key, name=f"layer {name!r} ({type(module).__name__})")
            out = output.detach()
            if out.dtype not in (torch.float32, torch.float64):
                out = out.float()  # half/bfloat16/int: NumPy-friendly, nothing lost
            if out.dim() == 3:
                layout = self._layout(name, module, out)
            else:
                layout = "channels" if out.dim() > 3 else "2-D"
                if name not in self.layouts:
                    self.layouts[name] = {"layout": layout, "reason": f"{out.dim()}-D output",
                                          "type": type(module).__name__, "shape": [int(d) for d in out.shape[1:]]}
            if self.rows is not None:  # a copy, taken before later in-place operations can touch the output
                self.row_out[name] = self.rows.take(name, out, layout, self.mask)
            if layout == "sequence":
                t = apply_seq_mode(out, self.seq_mode, self.mask, self.seq_draw, name=f"layer {name!r}")
            elif self.mode == "positions" and out.dim() >= 3:
                t = out.reshape(out.shape[0], out.shape[1], -1)  # (B, C, positions): a view when contiguous
            else:
                t = apply_conv_mode(out, self.mode, self.draw)
            # inference-mode tensors have no version counter: those are always copied
            if self.copy or name in self.copy_layers or t.is_inference():
                t = t.contiguous()
                if t.untyped_storage().data_ptr() == output.untyped_storage().data_ptr():
                    t = t.clone()  # still the module's own output: copy before later in-place ops overwrite it
            else:
                self._versions[name] = t._version  # shared with the output: in-place writes bump it
            self.outputs[name] = t
        return hook

    def _trace_hook(self, name):
        def hook(module, inputs, output):
            try:
                out = unwrap_output(output)
            except ValueError:
                return
            if out.dim() == 3:
                self._trace.append((name, type(module).__name__, tuple(out.shape), module_layout(module)))
        return hook

    def begin_pass(self) -> None:
        """Called before each forward pass: forget the previous pass's outputs and module trace."""
        self.outputs, self._versions, self._trace, self.row_out = {}, {}, [], {}

    def end_pass(self) -> None:
        """Called after a complete forward pass: stop tracing once every layer's layout is decided."""
        if self._trace_handles and all(n in self.layouts for n in self.modules):
            for h in self._trace_handles:
                h.remove()
            self._trace_handles.clear()
        self._trace = []

    def modified(self, outputs=None) -> list:
        """Layers whose recorded (uncopied) output was changed in place after its hook ran
        (``outputs``: the recorded dict to check, default the current one)."""
        outputs = self.outputs if outputs is None else outputs
        return [n for n, v in self._versions.items() if n in outputs and outputs[n]._version != v]

    def __enter__(self):
        try:
            # Modules of known layout are traced during the first pass: a 3-D output of any other
            # module (GELU, a block) takes the layout of the nearest one before it with its shape.
            for name, module in self.model.named_modules():
                if name and module_layout(module) is not None:
                    self._trace_handles.append(module.register_forward_hook(self._trace_hook(name)))
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for h in self._handles + self._trace_handles:
            h.remove()
        self._handles.clear()
        self._trace_handles.clear()

    def __exit__(self, *exc):
        self.remove()
        self.outputs = {}
        self._versions = {}
        return False


def _forward(rec: LayerRecorder, model: nn.Module, call: tuple, tag: str) -> dict:
    """Run ``model`` on a private copy of the inputs ``call = (args, kwargs)``; return the recorded
    ``{layer: tensor}``, checked complete.

    The copy keeps the inputs intact for the other model and for a re-run, whatever the forward
    pass does to them in place (an output may even be the input itself, e.g. an Identity or an
    eval-mode Dropout, later overwritten by an in-place ReLU). Without copies, a layer whose output
    was overwritten in place later in the pass (its version counter moved) is switched to copying
    and the batch is run again on a fresh copy, so what is returned equals the output at the moment
    the layer produced it. Writes that bypass autograd's version counter (through ``.data`` or a
    NumPy view) are not seen: use copies (``overlap=True``) for such models.
    """
    for _ in range(2):
        rec.begin_pass()
        args, kwargs = clone_call(*call)
        try:
            model(*args, **kwargs)
        except TypeError as exc:
            if kwargs and "argument" in str(exc):
                raise ValueError(f"{tag}: calling the model as model(**batch) with keys {sorted(kwargs)} failed "
                                 f"({exc}); pass input_fn= to turn a batch into the model's inputs") from exc
            raise
        missing = [n for n in rec.modules if n not in rec.outputs]
        if missing:
            raise ValueError(f"{tag}: layers {missing} were not called in the forward pass")
        bad = rec.modified()
        rec.end_pass()
        if not bad:
            break
        rec.copy_layers.update(bad)
    out = {n: rec.outputs[n] for n in rec.modules}
    rec.outputs = {}
    return out


def _model_device(model: nn.Module):
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def _model_float_dtype(model: nn.Module):
    """The floating dtype NumPy float inputs are given to ``model`` in (its first floating parameter's)."""
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _set_draws(rec: LayerRecorder, batch_size: int, sample_seed: int, batch_index: int, device) -> None:
    """The ``sample:K`` draws of one batch, a function of ``(sample_seed, batch index)`` alone."""
    if rec.mode == "sample":
        rec.draw = _sample_draw(batch_size, rec.k, sample_seed, batch_index, device)
    if rec.seq_mode == "sample":
        rec.seq_draw = _sample_draw(batch_size, rec.seq_k, sample_seed, batch_index, device)


def describe_layers(model: nn.Module, batch, layers=None, *, conv_mode: str = "positions", seq_mode: str = "tokens",
                    layout=None, output_key=None, mask=None, input_fn=None, device=None) -> list:
    """Run one batch and say how each chosen layer would be read, without reducing anything.

    Returns one dict per layer: ``name``, ``type``, ``shape`` (the output after the batch
    dimension), ``layout`` and ``reason`` (see the module docstring), ``rows`` (samples this batch
    gives) and ``neurons``. Arguments as in :func:`extract`.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode (its mode is restored); moved to ``device`` when given.
    batch
        One batch as a loader would yield it.
    layers
        See :func:`resolve_layers`; default every ReLU.
    conv_mode, seq_mode, layout, output_key, mask, input_fn, device
        As in :func:`extract`.

    Returns
    -------
    list of dict
        One per chosen layer, in module order.
    """
    model = unwrap(model)
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    rec = LayerRecorder(model, layers, conv_mode=conv_mode, seq_mode=seq_mode, layout=layout, output_key=output_key)
    with rec, _eval_mode(model), torch.no_grad():
        call = batch_call(batch, input_fn, device=dev, float_dtype=_model_float_dtype(model))
        rec.mask = batch_mask(batch, mask, device=dev)
        if rec.samples_drawn:
            _set_draws(rec, batch_size_of(*call), 0, 0, dev)
        acts = _forward(rec, model, call, "model")
    return [{"name": n, **rec.layouts[n], "rows": _n_samples(t), "neurons": _n_neurons(t)} for n, t in acts.items()]


@contextlib.contextmanager
def _eval_mode(*models):
    states = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, s in zip(models, states):
            m.train(s)


# ---------------------------------------------------------------------------------------------- one model
def extract(model: nn.Module, loader, layers=None, *, conv_mode: str = "positions", seq_mode: str = "tokens",
            layout=None, output_key=None, mask=None, input_fn=None, device=None, sample_seed: int = 0,
            max_batches: int | None = None, progress: bool = False) -> LayerDict:
    """Activations of one model over a whole loader, in memory: ``{layer_name: ndarray (samples, neurons)}``.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode for the pass (its mode is restored afterwards); DataParallel is unwrapped.
    loader : iterable
        Yields input tensors or NumPy arrays, ``(inputs, labels, ...)`` tuples or dicts of keyword
        inputs (``model(**batch)``): a DataLoader, a :class:`~repmatch.nets.BatchLoader`, a list.
    layers
        See :func:`resolve_layers`; default every ReLU.
    conv_mode : {"positions", "flatten", "avgpool", "sample:K"}
        How (batch, channels, *spatial) outputs are read.
    seq_mode : {"tokens", "cls", "mean", "last", "sample:K"}
        How (batch, tokens, features) outputs are read (module docstring).
    layout : None, "sequence", "channels" or {layer: layout}
        How 3-D outputs are read; None decides by module type (module docstring).
    output_key : None, str, int or {layer: key}
        Which entry of a tuple/dict/dataclass module output is recorded (default
        ``last_hidden_state`` or the first tensor).
    mask : None, False, str or callable
        The attention mask of each batch (default ``batch["attention_mask"]`` when present).
    input_fn : callable, optional
        ``input_fn(batch)`` -> the model's inputs (a tensor, a tuple of positional inputs or a dict
        of keyword inputs).
    device : str or torch.device, optional
        Where to run; the model is moved there (``model.to(device)``). Default: the model's device.
    sample_seed : int
        Seed of the ``sample:K`` draws (the same seed and batches give the same positions).

    Returns
    -------
    LayerDict
        ``{layer: ndarray}`` with ``.layouts`` saying how each layer was read.

    Raises ValueError naming the layer and batch when a layer's output holds NaN or Inf (as
    :func:`reduce_pair` does). Use :func:`reduce_pair` to compare two networks without holding all
    activations.
    """
    model = unwrap(model)
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    dtype = _model_float_dtype(model)
    chunks: dict = {}
    rec = LayerRecorder(model, layers, conv_mode=conv_mode, seq_mode=seq_mode, layout=layout, output_key=output_key)
    with rec, _eval_mode(model), torch.no_grad():
        for i, batch in enumerate(_bar(loader, desc="extract", enabled=progress)):
            if max_batches is not None and i >= max_batches:
                break
            call = batch_call(batch, input_fn, device=dev, float_dtype=dtype)
            rec.mask = batch_mask(batch, mask, device=dev)
            if rec.samples_drawn:
                _set_draws(rec, batch_size_of(*call), sample_seed, i, dev)
            for name, t in _forward(rec, model, call, "model").items():
                rows = _rows(t)
                if not np.isfinite(rows).all():  # refused as reduce_pair refuses it, naming the layer
                    check_finite(rows, f"layer {name!r} of model (batch {i})")
                chunks.setdefault(name, []).append(rows)
    if not chunks:
        raise ValueError("loader yielded no batches")
    out = LayerDict((name, np.concatenate(parts)) for name, parts in chunks.items())
    out.layouts = dict(rec.layouts)
    return out


# ---------------------------------------------------------------------------------------------- two models
def pair_key(layer_a: str, layer_b: str) -> str:
    """Key of a cross-layer pair in :func:`reduce_pair`'s result (``pairs="all"``): ``"<a>|<b>"``.

    Parameters
    ----------
    layer_a, layer_b : str
        Layer names in network A and in network B.

    Returns
    -------
    str
    """
    return f"{layer_a}|{layer_b}"


def stream_pair(model_a: nn.Module, model_b: nn.Module, loader, layers=None, *, layers_b=None,
                conv_mode: str = "positions", seq_mode: str = "tokens", layout=None, output_key=None, mask=None,
                input_fn=None, input_fn_b=None, loader_b=None, device=None, sample_seed: int = 0,
                max_batches: int | None = None, progress: bool = False):
    """Feed both models the same batches in the same order; yield ``(batch_index, acts_a, acts_b)``.

    ``acts_a``/``acts_b`` are ``{layer_name: float ndarray (samples, neurons)}`` for the current
    batch only, so any streaming statistic can consume them without holding the dataset's
    activations. ``layers_b`` defaults to ``layers``; the other arguments are those of
    :func:`reduce_pair`. Hooks are removed when the generator is exhausted, closed or
    garbage-collected, or when anything raises.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two networks (run in eval mode).
    loader : iterable
        Batches fed to both (as in :func:`extract`).
    layers, layers_b
        Layer specifications for each model (:func:`resolve_layers`); ``layers_b`` defaults to
        ``layers``. Default: every ReLU.
    conv_mode, seq_mode, layout, output_key, mask, input_fn, input_fn_b, loader_b, device, sample_seed
        As in :func:`reduce_pair`.
    max_batches : int, optional
        Stop after this many batches.
    progress : bool, default False
        Show a progress bar.

    Yields
    ------
    batch_index : int
    acts_a, acts_b : dict of str to ndarray
        This batch's rows of every layer of each network.

    Returns
    -------
    generator
        Of the tuples above.
    """
    raw = _stream_raw(model_a, model_b, loader, layers, layers_b=layers_b, conv_mode=conv_mode, seq_mode=seq_mode,
                      layout=layout, output_key=output_key, mask=mask, input_fn=input_fn, input_fn_b=input_fn_b,
                      loader_b=loader_b, device=device, sample_seed=sample_seed, max_batches=max_batches,
                      progress=progress)
    try:
        for i, ta, tb in raw:
            yield i, {n: _rows(t) for n, t in ta.items()}, {n: _rows(t) for n, t in tb.items()}
    finally:
        raw.close()


def _sub(spec, names):
    """The part of a ``{layer: value}`` argument that concerns ``names`` (other values unchanged)."""
    return {k: v for k, v in spec.items() if k in names} if isinstance(spec, dict) else spec


_END = object()


def _stream_raw(model_a, model_b, loader, layers=None, *, layers_b=None, conv_mode="positions", seq_mode="tokens",
                layout=None, output_key=None, mask=None, input_fn=None, input_fn_b=None, loader_b=None, device=None,
                sample_seed=0, max_batches=None, progress=False, copy=True, layouts=None):
    """Like :func:`stream_pair` but yields the recorded tensors (positions kept as (B, C, L)).

    ``copy=False``: the tensors are views of the modules' outputs (checked intact after each
    forward pass, see :func:`_forward`), valid until the consumer asks for the next batch.
    ``layouts``: a dict that receives ``{"a": ..., "b": ...}``, each network's layer layouts.
    """
    nets = _pair_nets(model_a, model_b, layers, layers_b, input_fn, input_fn_b, loader_b)
    stream = _stream_many(nets, loader, conv_mode=conv_mode, seq_mode=seq_mode, layout=layout, output_key=output_key,
                          mask=mask, device=device, sample_seed=sample_seed, max_batches=max_batches,
                          progress=progress, copy=copy, layouts=layouts)
    try:
        for i, acts in stream:
            yield i, acts["a"], acts["b"]
    finally:
        stream.close()


class _Net:
    """One network of a pass over shared batches: its name in the results, the model, its layer
    specification, its own ``input_fn``/``loader`` (None: the shared ones) and its name in messages."""

    def __init__(self, name, model, layers, input_fn, loader, tag):
        self.name, self.model, self.layers, self.input_fn, self.loader, self.tag = \
            name, unwrap(model), layers, input_fn, loader, tag


def _pair_nets(model_a, model_b, layers, layers_b, input_fn, input_fn_b, loader_b) -> list:
    """The two networks of :func:`reduce_pair` / :func:`stream_pair` (names "a" and "b")."""
    fn_b = input_fn_b if input_fn_b is not None else input_fn
    own_b = loader_b is not None or input_fn_b is not None
    return [_Net("a", model_a, layers, input_fn, None, "model_a"),
            _Net("b", model_b, layers if layers_b is None else layers_b, fn_b if own_b else input_fn, loader_b,
                 "model_b")]


def _stream_many(nets, loader, *, conv_mode="positions", seq_mode="tokens", layout=None, output_key=None, mask=None,
                 device=None, sample_seed=0, max_batches=None, progress=False, copy=True, layouts=None, rows=None):
    """Feed every network of ``nets`` (a list of :class:`_Net`) the same batches, each network's
    forward pass once per batch; yield ``(batch_index, {name: {layer: tensor}})``.

    A network with its own ``input_fn`` or ``loader`` (``own``) gets its own inputs, which must
    hold as many samples as the shared ones; the others share one conversion of each batch (per
    parameter dtype). ``copy``: see :func:`_stream_raw`. ``layouts`` receives ``{name: layouts}``.
    ``rows``: a :class:`_RowSampler` that every recorder of ``rows.networks`` feeds (its hooks take
    the sampled rows while the outputs are fresh); it is told where each batch starts and collects
    the rows after the batch's passes.
    """
    if device is not None:
        for net in nets:
            net.model.to(device)
    dev = _model_device(nets[0].model)
    for net in nets[1:]:
        if _model_device(net.model) != dev:
            raise ValueError(f"{nets[0].tag} is on {dev} but {net.tag} is on {_model_device(net.model)}; pass device=")
    chosen = [resolve_layers(net.model, net.layers) for net in nets]
    every = {}
    for names in chosen:
        every.update(names)
    check_layout_arg(layout, every)
    if isinstance(output_key, dict):
        unknown = [k for k in output_key if k not in every]
        if unknown:
            raise ValueError(f"output_key: {unknown} not among the chosen layers {sorted(every)}")
    recs = [LayerRecorder(net.model, net.layers, conv_mode=conv_mode, seq_mode=seq_mode, layout=_sub(layout, names),
                          output_key=_sub(output_key, names), copy=copy) for net, names in zip(nets, chosen)]
    if rows is not None:
        for net, rec in zip(nets, recs):
            if net.name in rows.networks:
                rec.rows = rows
    if layouts is not None:
        for net, rec in zip(nets, recs):
            layouts[net.name] = rec.layouts
    dtypes = [_model_float_dtype(net.model) for net in nets]
    own = [net.loader is not None or net.input_fn is not nets[0].input_fn for net in nets]
    own[0] = False
    iters = [iter(net.loader) if net.loader is not None else None for net in nets]
    with contextlib.ExitStack() as stack:
        for rec in recs:
            stack.enter_context(rec)
        stack.enter_context(_eval_mode(*[net.model for net in nets]))
        stack.enter_context(torch.no_grad())
        i = -1
        first_image = 0
        for i, batch in enumerate(_bar(loader, desc="extract", enabled=progress)):
            if max_batches is not None and i >= max_batches:
                iters = [None] * len(nets)  # stopped early on purpose: own loaders need not be exhausted
                break
            shared: dict = {}  # the shared inputs, converted once per dtype
            calls, batches = [], []
            for net, dtype, mine, it in zip(nets, dtypes, own, iters):
                b = batch
                if it is not None:
                    b = next(it, _END)
                    if b is _END:
                        raise ValueError(f"{_loader_tag(net)} yielded fewer batches than loader (ran out at batch {i})")
                if mine:
                    calls.append(batch_call(b, net.input_fn, device=dev, float_dtype=dtype,
                                            tag=_loader_tag(net) if net.loader is not None else "loader"))
                else:
                    if dtype not in shared:
                        shared[dtype] = batch_call(batch, nets[0].input_fn, device=dev, float_dtype=dtype,
                                                   tag="loader")
                    calls.append(shared[dtype])
                batches.append(b)
            shared_mask = batch_mask(batch, mask, device=dev)
            for rec, b, mine in zip(recs, batches, own):
                rec.mask = batch_mask(b, mask, device=dev) if mine else shared_mask
            n_0 = None
            if rows is not None or any(own) or any(rec.samples_drawn for rec in recs):
                n_0 = batch_size_of(*calls[0])
                for net, call, mine in zip(nets, calls, own):
                    if mine and batch_size_of(*call) != n_0:
                        raise ValueError(f"batch {i}: {nets[0].tag}'s inputs hold {n_0} samples but {net.tag}'s hold "
                                         f"{batch_size_of(*call)}; every network must see the same samples in "
                                         "the same order")
                for rec in recs:
                    _set_draws(rec, n_0, sample_seed, i, dev)
            if rows is not None:
                rows.begin_batch(first_image)
            acts = [_forward(rec, net.model, call, net.tag) for rec, net, call in zip(recs, nets, calls)]
            # a later network's pass wrote into an earlier one's outputs (shared storage, e.g. the same
            # module in two networks): copy those layers and run that network again
            for j in range(len(nets) - 1):
                changed = recs[j].modified(acts[j])
                if changed:
                    recs[j].copy_layers.update(changed)
                    acts[j] = _forward(recs[j], nets[j].model, calls[j], nets[j].tag)
            if rows is not None:
                for net, rec in zip(nets, recs):
                    if rec.rows is not None:
                        rows.collect(net.name, net.tag, rec)
                first_image += n_0
            yield i, {net.name: a for net, a in zip(nets, acts)}
        for net, it in zip(nets, iters):
            if it is not None and i >= 0 and next(it, _END) is not _END:
                raise ValueError(f"{_loader_tag(net)} yielded more batches than loader ({i + 1})")


def _loader_tag(net) -> str:
    return "loader_b" if net.tag == "model_b" else f"the loader of {net.tag}"


class _RowSampler:
    """Up to ``k`` rows (positions, tokens) of every input for every layer, the same ones in every
    network: the in-memory sample of the shuffled null (:func:`reduce_networks`, ``rows_per_image``).

    For layer number ``li`` (in the networks' common layer order) and input number ``m`` (counted from
    ``first_image``) with ``p`` rows (positions of a conv map, valid tokens of a sequence, 1 for a 2-D
    output), ``min(k, p)`` of them are drawn without replacement by ``np.random.default_rng([seed,
    li, m])`` (sorted; all of them when ``k >= p``), as ``testing.sample_rows`` does. Rows
    are float64 copies; ``groups[layer]`` holds the input number of every row.
    """

    def __init__(self, k: int, seed: int, layer_names: list, networks, first_image: int = 0):
        self.k, self.seed, self.first_image = int(k), int(seed), int(first_image)
        self.index = {name: li for li, name in enumerate(layer_names)}
        self.networks = set(networks)
        self.rows = {net: {name: [] for name in layer_names} for net in networks}
        self.groups = {name: [] for name in layer_names}
        self._batch_groups: dict = {}
        self._batch_index: dict = {}
        self._draws: dict = {}
        self._first = self.first_image

    def begin_batch(self, first: int) -> None:
        self._first = self.first_image + int(first)
        self._draws, self._batch_groups, self._batch_index = {}, {}, {}

    def _positions(self, li: int, image: int, per: int) -> np.ndarray:
        key = (li, image, per)
        pos = self._draws.get(key)
        if pos is None:
            take = min(self.k, per)
            if take < per:
                pos = np.sort(np.random.default_rng([self.seed, li, image]).choice(per, size=take, replace=False))
            else:
                pos = np.arange(per)
            self._draws[key] = pos
        return pos

    def take(self, name, out: torch.Tensor, layout: str, mask):
        """The sampled rows of one layer output (batch first), and the input number of each row."""
        li = self.index[name]
        b = out.shape[0]
        if layout == "sequence":
            if mask is not None:
                valid = [np.flatnonzero(m) for m in mask.to("cpu").numpy().astype(bool)]
            else:
                valid = [np.arange(out.shape[1])] * b
        else:
            valid = [None] * b
            per = int(np.prod(out.shape[2:], dtype=np.int64)) if out.dim() > 2 else 1
        # the same (layer, rows per input) in every network of the batch: index tensors built once
        key = (li, b, per) if valid[0] is None else (li, b, tuple(tuple(v) for v in valid))
        hit = self._batch_index.get(key)
        if hit is None or hit[0].device != out.device:
            img, pos = [], []
            for m in range(b):
                p = self._positions(li, self._first + m, per if valid[m] is None else len(valid[m]))
                pos.append(p if valid[m] is None else valid[m][p])
                img.append(np.full(len(p), m, dtype=np.int64))
            img, pos = np.concatenate(img), np.concatenate(pos)
            hit = (torch.as_tensor(img, device=out.device), torch.as_tensor(pos, device=out.device), img + self._first)
            self._batch_index[key] = hit
        gi, gp, groups = hit
        if layout == "sequence":
            picked = out[gi, gp]
        else:
            picked = out.reshape(b, out.shape[1], -1)[gi, :, gp]
        return picked, groups

    def collect(self, net, tag: str, rec: LayerRecorder) -> None:
        """After a batch: move the rows ``rec``'s hooks took into this sample."""
        for name in self.index:
            picked, groups = rec.row_out[name]
            known = self._batch_groups.get(name)
            if known is None:
                self._batch_groups[name] = groups
                self.groups[name].append(groups)
            elif not np.array_equal(known, groups):
                raise ValueError(f"layer {name!r} of {tag} gives other rows per input than the other networks "
                                 "(different attention masks or output shapes): rows cannot be sampled alike")
            self.rows[net][name].append(picked.cpu().numpy().astype(np.float64))
        rec.row_out = {}

    def result(self) -> tuple:
        """``({network: {layer: (rows, neurons) float64}}, {layer: input number of every row})``."""
        rows = {net: {name: np.concatenate(parts) for name, parts in layers.items()}
                for net, layers in self.rows.items()}
        return rows, {name: np.concatenate(parts) for name, parts in self.groups.items()}


def _resolve_pairs(names_a, names_b, pairs, tags=("model_a", "model_b"), arg="pairs") -> list:
    ta, tb = tags
    if pairs == "same":
        missing = [n for n in names_a if n not in names_b]
        if missing or len(names_a) != len(names_b):
            raise ValueError(f"{arg}='same' needs the same layer names in both models; only in {ta}: "
                             f"{missing}, only in {tb}: {[n for n in names_b if n not in names_a]} "
                             f"(use {arg}='all' or explicit (layer_a, layer_b) pairs)")
        return [(n, n, n) for n in names_a]
    if pairs == "all":
        return [(a, b, pair_key(a, b)) for a in names_a for b in names_b]
    if isinstance(pairs, str):
        raise ValueError(f"{arg} must be 'same', 'all' or a list of (layer_a, layer_b) tuples, got {pairs!r}")
    out = []
    for p in pairs:
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise ValueError(f"{arg}: each explicit pair must be (layer_a, layer_b), got {p!r}")
        a, b = p
        if a not in names_a or b not in names_b:
            raise ValueError(f"{arg}: ({a!r}, {b!r}) is not among the chosen layers; {ta}: {names_a}, "
                             f"{tb}: {names_b}")
        out.append((a, b, a if a == b else pair_key(a, b)))
    return out


class _ChunkWriter:
    """Per-layer chunked ``.npy`` files plus ``manifest.json`` (written last, atomically)."""

    def __init__(self, directory, networks, meta):
        self.dir = os.fspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.meta = meta
        self.layers = {net: {} for net in networks}

    def add(self, net: str, batch_index: int, acts: dict) -> None:
        for layer, arr in acts.items():
            rel = os.path.join(net, layer, f"{batch_index:06d}.npy")
            buf = io.BytesIO()
            np.save(buf, arr)
            atomic_write_bytes(os.path.join(self.dir, rel), buf.getvalue())
            entry = self.layers[net].setdefault(layer, {"rows": 0, "neurons": int(arr.shape[1]),
                                                         "dtype": str(arr.dtype), "chunks": []})
            entry["rows"] += int(arr.shape[0])
            entry["chunks"].append(rel.replace(os.sep, "/"))

    def finish(self) -> str:
        manifest = {"format": SAVED_FORMAT, **self.meta, "networks": self.layers}
        return atomic_write_json(os.path.join(self.dir, "manifest.json"), manifest, indent=2)


def reduce_pair(model_a: nn.Module, model_b: nn.Module, loader, layers=None, *, layers_b=None,
                pairs="same", conv_mode: str = "positions", seq_mode: str = "tokens", layout=None,
                output_key=None, mask=None, input_fn=None, input_fn_b=None, loader_b=None, device=None,
                method: str = "gram", sample_seed: int = 0, save=None, save_npz=None,
                max_batches: int | None = None, progress: bool = False, metadata: dict | None = None,
                overlap: bool | None = None, threads: int | None = None, reduction_device=None) -> LayerDict:
    """Stream two networks over the same batches straight into :class:`~repmatch.Reduction` objects.

    The two-network case of :func:`reduce_networks` (the same code path).

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
    loader : iterable of input tensors or ``(inputs, ...)`` tuples, read once.
    layers, layers_b
        Layer specifications for each model (:func:`resolve_layers`); ``layers_b`` defaults to
        ``layers``. Default: every ReLU.
    pairs : {"same", "all"} or list of (layer_a, layer_b)
        ``"same"``: layer ``l`` of A against layer ``l`` of B (key ``l``). ``"all"``: every layer
        of A against every layer of B (key ``pair_key(a, b)`` = ``"a|b"``), for a layer x layer
        heatmap; with ``conv_mode="positions"`` only layers with equal spatial size can be paired
        (``sample:K`` pairs any two conv layers; ``avgpool``/``flatten`` pair anything).
    conv_mode, seq_mode, layout, output_key, mask, input_fn, device, sample_seed
        As in :func:`extract`; ``input_fn`` and ``mask`` apply to both networks.
    input_fn_b : callable, optional
        Network B's own ``input_fn`` (default ``input_fn``), when the two need different inputs.
    loader_b : iterable, optional
        Network B's own loader, yielding the same samples as ``loader`` in the same order and
        batches (its own preprocessing or tokenisation); a different number of batches or of
        samples in a batch is a ValueError. Default: ``loader`` feeds both.
    method : {"gram", "qr"}
        Passed to :class:`~repmatch.Reduction`.
    save : path, optional
        Also write every batch's activations to this directory (``a/<layer>/NNNNNN.npy``,
        ``b/<layer>/...`` and ``manifest.json``); read back with :func:`load_saved_activations`.
    save_npz : (path_a, path_b), optional
        Also write one ``.npz`` per network (one array per layer), readable by
        :func:`repmatch.io.load_activations` and ``repmatch compare a.npz b.npz``. Built from the
        chunks one layer at a time (in a temporary directory beside ``path_a`` when ``save`` is None).
    overlap : bool or None
        Reduce batch ``i`` on a worker thread while batch ``i + 1`` runs through the networks.
        The recorded outputs are then copied (the next forward pass runs while they are read);
        without overlap each batch is reduced straight from the modules' outputs before the next
        one starts. ``None`` (default): overlap when torch leaves a core idle
        (``torch.get_num_threads()`` below the cores available to the process) and the
        reductions are on the host. Results are identical either way for the same ``threads``.
        ``True`` with reductions on a device is a ValueError. Outputs of models on a GPU are
        copied to the host on the calling thread (the forward pass's stream), never by the worker.
    threads : int or None
        Threads that reduce one batch on the host (its row chunks are split between them, each
        with single-threaded BLAS, and their sums added in a fixed order: results are
        deterministic for a given value and differ across values only by rounding). ``None``
        (default): the idle cores when overlapping, else torch's thread count. BLAS is held to
        one thread for the call (threadpoolctl, when installed), since spinning BLAS threads and
        torch's OpenMP threads slow each other down.
    reduction_device : None, "host" or a torch device
        Where the reductions live. ``None`` (default): where the activations are, i.e. NumPy on
        the host for models on the CPU and float64 torch accumulators on the models' device
        otherwise (a GPU's activations never cross to the host). ``"host"``: always NumPy.

    Returns
    -------
    LayerDict
        ``{key: Reduction}`` with X = model A's layer, Y = model B's layer, and ``.layouts``
        (``{"a": {layer: info}, "b": ...}``, how each layer was read). Save it with
        :func:`repmatch.io.save_reductions`.
    """
    nets = _pair_nets(model_a, model_b, layers, layers_b, input_fn, input_fn_b, loader_b)
    rec_names_a = list(resolve_layers(nets[0].model, nets[0].layers))
    rec_names_b = list(resolve_layers(nets[1].model, nets[1].layers))
    plan = [(("a", "b"), la, lb, key) for la, lb, key in _resolve_pairs(rec_names_a, rec_names_b, pairs)]
    if save_npz is not None:
        if isinstance(save_npz, (str, os.PathLike)) or len(save_npz) != 2:
            raise ValueError("save_npz must be a pair of paths (path_a, path_b)")
    out = _reduce_many(nets, loader, plan, conv_mode=conv_mode, seq_mode=seq_mode, layout=layout,
                       output_key=output_key, mask=mask, device=device, method=method, sample_seed=sample_seed,
                       save=save, save_npz=save_npz, max_batches=max_batches, progress=progress, metadata=metadata,
                       overlap=overlap, threads=threads, reduction_device=reduction_device)
    return out[("a", "b")]


class NetworkReductions(dict):
    """``{(name_a, name_b): LayerDict}`` as returned by :func:`reduce_networks`, plus the pass's extras.

    Attributes
    ----------
    layouts : dict
        ``{name: {layer: info}}``: how each network's layers were read (see :class:`LayerDict`).
    rows : dict or None
        ``{name: {layer: ndarray (rows, neurons) float64}}``: the row sample (``rows_per_image``),
        the same inputs and positions in every network; None when no sample was asked for.
    groups : dict or None
        ``{layer: ndarray}``: the input number of every sampled row (``first_image`` + its index
        in the loader), for resampling by input (``groups=``).
    """

    layouts = None
    rows = None
    groups = None

    def sample(self, a, b, layer) -> tuple:
        """``(X, Y, groups)`` of one layer from the row sample: network ``a``'s rows, ``b``'s, the inputs."""
        if self.rows is None:
            raise ValueError("no row sample was drawn: pass rows_per_image= to reduce_networks")
        for name in (a, b):
            if name not in self.rows:
                raise ValueError(f"network {name!r} is not in the row sample (rows_networks: {sorted(self.rows, key=str)})")
        return self.rows[a][layer], self.rows[b][layer], self.groups[layer]


def reduce_networks(models, loader, pairs=None, layers=None, *, layer_pairs="same", conv_mode: str = "positions",
                    seq_mode: str = "tokens", layout=None, output_key=None, mask=None, input_fn=None, device=None,
                    method: str = "gram", sample_seed: int = 0, max_batches: int | None = None,
                    progress: bool = False, overlap: bool | None = None, threads: int | None = None,
                    reduction_device=None, rows_per_image: int | None = None, rows_seed: int = 0,
                    rows_networks=None, first_image: int = 0) -> NetworkReductions:
    """Reductions of many network pairs, and a row sample, from one pass over the data.

    Every network needed runs once per batch; its recorded layers feed every pair it is in (with
    K networks and all pairs, K forward passes per batch instead of the K (K - 1) of a
    :func:`reduce_pair` per pair). The reductions equal those of :func:`reduce_pair` on each pair
    (the same code path, batch by batch): for the same ``threads``, bit for bit.

    Parameters
    ----------
    models : dict or list
        ``{name: torch.nn.Module}`` (any hashable names) or a list (names 0, 1, ...).
    loader : iterable
        Batches as for :func:`extract`, read once; every network gets the same inputs.
    pairs : list of (name_a, name_b), optional
        The network pairs to reduce, X = ``name_a``'s layer, Y = ``name_b``'s. Default: every pair
        ``(models[i], models[j])`` with i < j, in the order of ``models``. ``[]``: none (only a
        row sample). Networks in no pair and not in ``rows_networks`` are not run.
    layers : layer specification or {name: specification}, optional
        As in :func:`resolve_layers`, for every network or per network (a network missing from the
        dict gets the default). Default: every ReLU.
    layer_pairs : {"same", "all"} or list of (layer_a, layer_b)
        Which layers of a network pair are reduced together: ``pairs`` of :func:`reduce_pair`.
    conv_mode, seq_mode, layout, output_key, mask, device, sample_seed
        As in :func:`extract`; the ``sample:K`` draws are a function of ``(sample_seed, batch
        index)`` only, so every network of a batch is sampled at the same positions.
    input_fn : callable or {name: callable}, optional
        Turns a batch into a network's inputs (:func:`extract`); per network when a dict (missing
        names: the batch as it is).
    method, max_batches, progress, overlap, threads, reduction_device
        As in :func:`reduce_pair`.
    rows_per_image : int, optional
        Also keep an in-memory sample of rows: ``min(rows_per_image, p)`` of the ``p`` rows of
        every input (positions of a conv map, valid tokens of a sequence, the one row of a 2-D
        output), drawn without replacement, whatever ``conv_mode``/``seq_mode`` the reductions
        use. Positions depend only on ``rows_seed``, the layer's number in the common layer list
        and the input's number, so every network gets the same rows (the sampler of
        ``testing.sample_rows``, whose result this equals). Needs the same layers in
        every sampled network.
    rows_seed : int
        Seed of the row sample.
    rows_networks : list of names, optional
        The networks whose rows are kept (default: every network of ``models``).
    first_image : int
        The number of the loader's first input in the row sample (``groups`` and the draws): a
        loader over inputs ``lo..hi`` of a larger set passes ``first_image=lo``, so samples of
        consecutive parts concatenate into the sample of the whole.

    Returns
    -------
    NetworkReductions
        ``{(name_a, name_b): LayerDict}``, each a ``{key: Reduction}`` like :func:`reduce_pair`'s
        (``.layouts`` = ``{"a": ..., "b": ...}``), plus ``.layouts`` per network, ``.rows``,
        and ``.groups``.

    Examples
    --------
    >>> seeds = {s: load(s) for s in (0, 1, 2)}                       # doctest: +SKIP
    >>> reds = reduce_networks(seeds, loader)                         # doctest: +SKIP
    >>> repmatch.maximum_match(reds[(0, 2)]["features.1"], eps=0.25)  # doctest: +SKIP
    """
    if isinstance(models, dict):
        named = dict(models)
    elif isinstance(models, (list, tuple)):
        named = dict(enumerate(models))
    else:
        raise ValueError(f"models must be a dict {{name: nn.Module}} or a list of modules, got {type(models).__name__}")
    if not named:
        raise ValueError("models must hold at least one network")
    for name, m in named.items():
        if not isinstance(m, nn.Module):
            raise ValueError(f"models[{name!r}] must be a torch.nn.Module, got {type(m).__name__}")
    if pairs is None:
        pairs = list(itertools.combinations(named, 2))
    pairs = list(pairs)
    seen = set()
    for p in pairs:
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise ValueError(f"pairs: each pair must be (name_a, name_b), got {p!r}")
        for name in p:
            if name not in named:
                raise ValueError(f"pairs: network {name!r} is not in models ({list(named)})")
        if tuple(p) in seen:
            raise ValueError(f"pairs: {tuple(p)!r} is listed twice")
        seen.add(tuple(p))
    pairs = [tuple(p) for p in pairs]
    if rows_per_image is not None:
        rows_per_image = check_positive_int(rows_per_image, "rows_per_image")
        rows_networks = list(named) if rows_networks is None else list(rows_networks)
        for name in rows_networks:
            if name not in named:
                raise ValueError(f"rows_networks: network {name!r} is not in models ({list(named)})")
        if isinstance(first_image, bool) or not isinstance(first_image, (int, np.integer)) or first_image < 0:
            raise ValueError(f"first_image must be a non-negative integer, got {first_image!r}")
    elif rows_networks is not None:
        raise ValueError("rows_networks applies to a row sample only: pass rows_per_image=")
    else:
        rows_networks = []
    if not pairs and not rows_networks:
        raise ValueError("nothing to do: pairs is empty and no row sample was asked for (rows_per_image=)")
    if isinstance(layers, dict):
        unknown = [k for k in layers if k not in named]
        if unknown:
            raise ValueError(f"layers: {unknown} are not networks of models ({list(named)}); give one layer "
                             "specification for every network or {name: specification}")
        spec = dict(layers)
    else:
        spec = {name: layers for name in named}
    if isinstance(input_fn, dict):
        unknown = [k for k in input_fn if k not in named]
        if unknown:
            raise ValueError(f"input_fn: {unknown} are not networks of models ({list(named)})")
        fns = dict(input_fn)
    else:
        fns = {name: input_fn for name in named}
    used = [name for name in named if name in rows_networks or any(name in p for p in pairs)]
    nets = [_Net(name, named[name], spec.get(name), fns.get(name), None, f"network {name!r}") for name in used]
    # networks are never given their own loader here: "own" inputs differ only by input_fn
    chosen = {net.name: list(resolve_layers(net.model, net.layers)) for net in nets}
    plan = []
    for a, b in pairs:
        for la, lb, key in _resolve_pairs(chosen[a], chosen[b], layer_pairs, (f"network {a!r}", f"network {b!r}"),
                                         "layer_pairs"):
            plan.append(((a, b), la, lb, key))
    rows = None
    if rows_networks:
        common = chosen[rows_networks[0]]
        for name in rows_networks[1:]:
            if chosen[name] != common:
                raise ValueError(f"rows_per_image: the sampled networks must have the same layers; network "
                                 f"{rows_networks[0]!r} has {common}, network {name!r} has {chosen[name]}")
        rows = _RowSampler(rows_per_image, rows_seed, common, rows_networks, first_image)
    return _reduce_many(nets, loader, plan, pairs=pairs, conv_mode=conv_mode, seq_mode=seq_mode, layout=layout,
                        output_key=output_key, mask=mask, device=device, method=method, sample_seed=sample_seed,
                        max_batches=max_batches, progress=progress, overlap=overlap, threads=threads,
                        reduction_device=reduction_device, rows=rows)


def _reduce_many(nets, loader, plan, *, pairs=(("a", "b"),), conv_mode="positions", seq_mode="tokens", layout=None,
                 output_key=None, mask=None, device=None, method="gram", sample_seed=0, save=None, save_npz=None,
                 max_batches=None, progress=False, metadata=None, overlap=None, threads=None, reduction_device=None,
                 rows=None) -> NetworkReductions:
    """The one reduction loop behind :func:`reduce_pair` and :func:`reduce_networks`.

    ``plan``: ``[(pair, layer_a, layer_b, key)]`` with ``pair = (name_a, name_b)`` of ``nets``.
    Each batch runs every network once (:func:`_stream_many`); every layer is moved or converted
    once however many pairs it is in; then every entry of the plan updates its reduction.
    ``save``/``save_npz`` (one path per network) write the activations as :func:`reduce_pair` does.
    """
    parse_conv_mode(conv_mode)  # validate before any work
    parse_seq_mode(seq_mode)
    if method not in ("gram", "qr"):
        raise ValueError(f"method must be one of ('gram', 'qr'), got {method!r}")
    tags = {net.name: net.tag for net in nets}
    red_device = _reduction_device(reduction_device, device, nets[0].model)
    cores = available_cores()
    if overlap is None:
        overlap = red_device is None and torch.get_num_threads() < cores
    elif overlap and red_device is not None:
        raise ValueError(f"overlap=True needs host reductions, but they are on {red_device} (the device "
                         "already runs the reductions beside the forward pass); use overlap=None or "
                         "reduction_device='host'")
    if threads is None:
        threads = max(1, cores - torch.get_num_threads()) if overlap else max(1, min(torch.get_num_threads(), cores))
    threads = check_positive_int(threads, "threads")
    meta = {"conv_mode": conv_mode, "seq_mode": seq_mode, "sample_seed": int(sample_seed), **(metadata or {})}
    tmpdir = None
    if save is None and save_npz is not None:
        npz_dir = os.path.dirname(os.path.abspath(os.fspath(save_npz[0])))
        os.makedirs(npz_dir, exist_ok=True)  # as saved_to_npz would; errors then name this directory
        tmpdir = tempfile.TemporaryDirectory(dir=npz_dir, prefix=".repmatch-chunks-")
    writer = _ChunkWriter(save if save is not None else tmpdir.name, [net.name for net in nets], meta) \
        if (save is not None or tmpdir is not None) else None
    results = NetworkReductions((pair, LayerDict()) for pair in pairs)
    layouts: dict = {}
    # Without overlap each batch is reduced before the next forward pass, straight from the
    # modules' outputs (no copy; checked intact through their version counters).
    stream = _stream_many(nets, loader, conv_mode=conv_mode, seq_mode=seq_mode, layout=layout, output_key=output_key,
                          mask=mask, device=device, sample_seed=sample_seed, max_batches=max_batches,
                          progress=progress, copy=overlap, layouts=layouts, rows=rows)
    split = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="repmatch-split") \
        if threads > 1 and red_device is None else None
    pool = (split, threads) if split is not None else None
    used = {net.name: set() for net in nets}  # the layers of each network that some pair reads
    for (a, b), la, lb, _ in plan:
        used[a].add(la)
        used[b].add(lb)

    def prepared(acts, names):
        # Each layer is moved or converted once per batch, however many pairs it is in: to the host
        # for host reductions (outputs of models on a GPU), to (rows, C) float64 on the reductions'
        # device for device reductions.
        if red_device is None:
            return {n: acts[n].cpu() if acts[n].device.type != "cpu" else acts[n] for n in names}
        from ._torch import _as_batch

        return {n: _as_batch(acts[n], f"layer {n!r}", acts[n].shape[1], "channels", red_device) for n in names}

    def add_batch(acts):
        # Host Gram reductions read the (B, C, positions) outputs in place, chunk by chunk
        # (Reduction.update on conv outputs); device reductions take the (rows, C) float64 tensors
        # prepared on their device.
        for (a, b), la, lb, key in plan:
            results[(a, b)][key].update(acts[a][la], acts[b][lb],
                                        names=(f"layer {la!r} of {tags[a]}", f"layer {lb!r} of {tags[b]}"), pool=pool)

    # Batch i is reduced on one worker thread while batch i + 1 runs through the networks (NumPy and
    # BLAS release the GIL). One batch in flight at a time and a single worker keep the order of the
    # updates, so the numbers are exactly those of the sequential loop.
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="repmatch-reduce") if overlap else None
    pending = None
    n_batches = 0
    blas = single_threaded_blas() if red_device is None else contextlib.nullcontext()
    try:
        blas.__enter__()
        # stream.close() in finally: on an error the hooks go now, not when the traceback dies
        for i, acts in stream:
            n_batches += 1
            if writer is not None:
                for name, a in acts.items():
                    writer.add(name, i, {n: _rows(t) for n, t in a.items()})
            for (a, b), la, lb, key in plan:  # validate and create here, so errors surface at once
                ta, tb = acts[a][la], acts[b][lb]
                na, nb = _n_samples(ta), _n_samples(tb)
                if na != nb:
                    raise ValueError(
                        f"layer {la!r} of {tags[a]} gives {na} samples per batch but layer {lb!r} of {tags[b]} "
                        f"gives {nb} with conv_mode={conv_mode!r}, seq_mode={seq_mode!r} (different spatial "
                        "sizes or token counts, or a conv layer against a fully connected one, which 'sample:K' "
                        "does not sample); use conv_mode='avgpool' or 'flatten', or seq_mode='mean', 'cls' or "
                        "'last', to compare them")
                if key not in results[(a, b)]:
                    results[(a, b)][key] = Reduction(_n_neurons(ta), _n_neurons(tb), method=method,
                                                     device=red_device)
            # on this thread: copies from a GPU are made on the stream the forward pass ran on
            acts = {name: prepared(a, used[name]) for name, a in acts.items()}
            if executor is None:
                add_batch(acts)
            else:
                if pending is not None:
                    pending.result()  # re-raises a worker error here
                pending = executor.submit(add_batch, acts)
        if pending is not None:
            pending.result()
            pending = None
        if not n_batches:
            raise ValueError("loader yielded no batches")
        results.layouts = {k: dict(v) for k, v in layouts.items()}
        for (a, b), reds in results.items():
            reds.layouts = {"a": results.layouts[a], "b": results.layouts[b]}
        if rows is not None:
            results.rows, results.groups = rows.result()
        if writer is not None:
            writer.meta["layouts"] = results[pairs[0]].layouts if pairs else results.layouts
            writer.finish()
            if save_npz is not None:
                for net, path in zip(nets, save_npz):
                    saved_to_npz(writer.dir, net.name, path)
    finally:
        stream.close()
        if executor is not None:
            executor.shutdown(wait=True)  # never leave a worker writing into the reductions
        if split is not None:
            split.shutdown(wait=True)
        blas.__exit__(None, None, None)
        if tmpdir is not None:
            tmpdir.cleanup()
    return results


def _reduction_device(reduction_device, device, model):
    """None (NumPy on the host) or the torch device the reductions of reduce_pair live on."""
    if reduction_device is None:
        dev = torch.device(device) if device is not None else _model_device(unwrap(model))
        return None if dev.type == "cpu" else dev
    if isinstance(reduction_device, str) and reduction_device == "host":
        return None
    from ._torch import as_device

    try:
        return as_device(reduction_device)
    except ValueError as exc:
        raise ValueError(f"reduction_device: {exc}") from None


# ---------------------------------------------------------------------------------------------- saved files
def load_saved_activations(directory, network: str = "a", layers=None, *, mmap: bool = False) -> dict:
    """Concatenate the chunks saved by ``reduce_pair(save=...)``: ``{layer: ndarray}`` for one network.

    Parameters
    ----------
    directory : str or os.PathLike
        The ``save=`` directory (with its ``manifest.json``).
    network : str, default "a"
        Which network's activations (a key of the manifest's ``networks``: ``"a"`` or ``"b"``).
    layers : sequence of str, optional
        Layers to read (default: every saved layer of that network, in saved order).
    mmap : bool, default False
        Memory-map the chunks while concatenating (the result is still an in-memory array).

    Returns
    -------
    dict of str to ndarray of shape (samples, neurons)

    Raises
    ------
    FileNotFoundError
        When the directory has no manifest.json.
    ValueError
        When the manifest is damaged, or ``network`` or a layer was not saved.
    """
    manifest = read_saved_manifest(directory)
    nets = manifest["networks"]
    if network not in nets:
        raise ValueError(f"network must be one of {sorted(nets)}, got {network!r}")
    names = list(nets[network]) if layers is None else list(layers)
    out = {}
    for layer in names:
        if layer not in nets[network]:
            raise ValueError(f"layer {layer!r} not saved; saved layers: {list(nets[network])}")
        parts = [np.load(os.path.join(os.fspath(directory), c), mmap_mode="r" if mmap else None)
                 for c in nets[network][layer]["chunks"]]
        out[layer] = np.concatenate(parts)
    return out


def saved_to_npz(directory, network: str, path) -> None:
    """Write one network's saved chunks into a single ``.npz`` (one array per layer), atomically.

    Layers are written one at a time, so memory holds at most one layer's activations.

    Parameters
    ----------
    directory : str or os.PathLike
        The ``save=`` directory of :func:`reduce_pair`.
    network : str
        Which network (a key of the manifest's ``networks``, e.g. ``"a"``).
    path : str or os.PathLike
        The ``.npz`` to write (replaced if it exists); entries are named after the layers.

    Returns
    -------
    None

    Raises
    ------
    FileNotFoundError
        When the directory has no manifest.json.
    ValueError
        When the manifest is damaged.
    """
    manifest = read_saved_manifest(directory)
    layers = list(manifest["networks"][network])
    path = os.fspath(path)
    target_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(target_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".tmp-", suffix=".npz")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; the same permissions as every output
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for layer in layers:
                arr = load_saved_activations(directory, network, [layer])[layer]
                with zf.open(f"{layer}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
                del arr
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_activations_npz(activations: dict, path) -> None:
    """Write ``{layer: ndarray}`` (e.g. from :func:`extract`) to one ``.npz`` atomically.

    Parameters
    ----------
    activations : dict of str to array-like
        One array per layer; the layer names become the entries' keys.
    path : str or os.PathLike
        The file to write (replaced if it exists).

    Returns
    -------
    None
    """
    atomic_savez(path, **{k: np.asarray(v) for k, v in activations.items()})
