"""Batches as people have them, turned into model calls; module outputs turned into one tensor.

Used by :mod:`repmatch.activations` (which documents the behaviour for users). Three jobs:

* **Calls.** A batch from a loader becomes ``(args, kwargs)`` for ``model(*args, **kwargs)``:
  a tensor or NumPy array is the one positional input; a tuple or list is ``(inputs, labels, ...)``
  and only its first element is passed (the classic ``(x, y)`` loader); a mapping (a dict, a
  Hugging Face ``BatchEncoding``) is passed whole as keyword arguments, ``model(**batch)``. An
  ``input_fn(batch)`` replaces that rule: whatever it returns is called the same way, except that
  a tuple it returns is passed as positional arguments. NumPy arrays become tensors (floating ones
  in the model's floating dtype, since a float64 array is a float32 image to a float32 network;
  integer ones keep their dtype: token ids), and every tensor is moved to the model's device.
* **Attention masks.** ``mask=None`` takes ``batch["attention_mask"]`` when the batch is a mapping
  holding one; a string names another key; a callable ``mask(batch)`` computes it; ``False``
  means no mask. The mask is (batch, tokens), non-zero for real tokens.
* **Outputs.** Modules may return tuples (``nn.MultiheadAttention``), dicts or dataclasses
  (Hugging Face ``ModelOutput``): the recorded tensor is the ``last_hidden_state`` entry when
  there is one, else the first tensor, or the entry named by ``output_key`` (a key, an attribute
  name or a tuple index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["batch_call", "batch_mask", "batch_size_of", "unwrap_output", "clone_call"]


def _to_tensor(v, device, float_dtype):
    if isinstance(v, np.ndarray) or (isinstance(v, np.generic) and not isinstance(v, (str, bytes))):
        arr = np.asarray(v)
        if arr.dtype == object:
            raise ValueError(f"a NumPy input of dtype object cannot be given to a model (shape {arr.shape})")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if t.is_floating_point() and float_dtype is not None:
            t = t.to(float_dtype)
        v = t
    if isinstance(v, torch.Tensor):
        return v.to(device) if device is not None and v.device != torch.device(device) else v
    return v


def _convert(obj, device, float_dtype):
    if isinstance(obj, (torch.Tensor, np.ndarray, np.generic)):
        return _to_tensor(obj, device, float_dtype)
    if isinstance(obj, Mapping):
        return {k: _convert(v, device, float_dtype) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_convert(v, device, float_dtype) for v in obj) if isinstance(obj, tuple) \
            else [_convert(v, device, float_dtype) for v in obj]
    return obj


def batch_call(batch, input_fn=None, *, device=None, float_dtype=None, tag="loader") -> tuple:
    """``(args, kwargs)`` for one batch (module docstring), on ``device``.

    Parameters
    ----------
    batch : object
        One batch from a loader.
    input_fn : callable, optional
        Turns a batch into the model's inputs.
    device, float_dtype : optional
        Where and in which floating dtype the tensors go.
    tag : str
        Name of the loader, for messages.

    Returns
    -------
    tuple
        ``(args, kwargs)`` for ``model(*args, **kwargs)``.
    """
    if input_fn is not None:
        inp = input_fn(batch)
        if isinstance(inp, Mapping):
            return (), _convert(dict(inp), device, float_dtype)
        if isinstance(inp, tuple):
            return tuple(_convert(v, device, float_dtype) for v in inp), {}
        if isinstance(inp, (torch.Tensor, np.ndarray)):
            return (_convert(inp, device, float_dtype),), {}
        raise ValueError(f"input_fn must return a tensor, an array, a tuple of positional inputs or a dict of "
                         f"keyword inputs, got {type(inp).__name__}")
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return (_convert(batch, device, float_dtype),), {}
    if isinstance(batch, Mapping):
        if not batch:
            raise ValueError(f"{tag} yielded an empty dict batch")
        return (), _convert(dict(batch), device, float_dtype)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], (torch.Tensor, np.ndarray)):
        return (_convert(batch[0], device, float_dtype),), {}
    raise ValueError(f"{tag} must yield tensors, NumPy arrays, (inputs, ...) tuples or dicts of model inputs "
                     f"(passed as model(**batch)), got {type(batch).__name__}; or pass input_fn= to turn a batch "
                     "into the model's inputs")


def clone_call(args, kwargs) -> tuple:
    """A private copy of every tensor of a call (the model may write into its inputs in place).

    Parameters
    ----------
    args, kwargs
        A call.

    Returns
    -------
    tuple
        ``(args, kwargs)`` with every tensor cloned.
    """
    def c(v):
        return v.clone() if isinstance(v, torch.Tensor) else v

    return tuple(c(a) for a in args), {k: c(v) for k, v in kwargs.items()}


def batch_size_of(args, kwargs) -> int:
    """The leading dimension of the first tensor of a call.

    Parameters
    ----------
    args, kwargs
        A call, as :func:`batch_call` returns it.

    Returns
    -------
    int
    """
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, torch.Tensor) and v.dim() >= 1:
            return int(v.shape[0])
    raise ValueError("the batch holds no tensor with a batch dimension")


def batch_mask(batch, mask, *, device=None):
    """The (batch, tokens) bool attention mask of ``batch`` (module docstring), or None.

    Parameters
    ----------
    batch : object
        One batch.
    mask : None, False, str or callable
        Where the mask comes from (module docstring).
    device : optional
        Where the mask goes.

    Returns
    -------
    torch.Tensor or None
        The (batch, tokens) bool mask.
    """
    if mask is False:
        return None
    if mask is None:
        if isinstance(batch, Mapping) and "attention_mask" in batch:
            m = batch["attention_mask"]
        else:
            return None
    elif isinstance(mask, str):
        if not isinstance(batch, Mapping) or mask not in batch:
            keys = sorted(batch) if isinstance(batch, Mapping) else f"a {type(batch).__name__}, not a dict"
            raise ValueError(f"mask: the batch has no key {mask!r} (keys: {keys})")
        m = batch[mask]
    elif callable(mask):
        m = mask(batch)
    else:
        raise ValueError(f"mask must be None (batch['attention_mask'] when present), False, a key or a callable, "
                         f"got {type(mask).__name__}")
    if isinstance(m, np.ndarray):
        m = torch.from_numpy(np.ascontiguousarray(m))
    if not isinstance(m, torch.Tensor) or m.dim() != 2:
        raise ValueError(f"mask: an attention mask must be a (batch, tokens) tensor or array, got "
                         f"{tuple(m.shape) if hasattr(m, 'shape') else type(m).__name__}")
    m = m.to(device) if device is not None else m
    return m != 0


def _tensor_entries(output):
    """``[(key, value)]`` of a tuple/list/mapping/dataclass output, in order."""
    if isinstance(output, Mapping):
        return list(output.items())
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    if isinstance(output, (tuple, list)):
        return list(enumerate(output))
    return None


def unwrap_output(output, key=None, *, name="layer"):
    """The tensor recorded for a module output (module docstring); ValueError naming ``name`` otherwise.

    Parameters
    ----------
    output : object
        What a module returned.
    key : object, optional
        The entry to record (key, attribute name or index).
    name : str
        The layer's name, for messages.

    Returns
    -------
    torch.Tensor
    """
    if isinstance(output, torch.Tensor) and key is None:
        return output
    entries = _tensor_entries(output)
    if entries is None:
        what = "a tensor" if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"{name}: output is {what}; " + ("output_key applies only to tuple, dict or "
                         "dataclass outputs" if key is not None else "need a tensor, or a tuple/dict/dataclass "
                         "holding one"))
    if key is None:
        d = dict(entries)
        if isinstance(d.get("last_hidden_state"), torch.Tensor):
            return d["last_hidden_state"]
        for _, v in entries:
            if isinstance(v, torch.Tensor):
                return v
        raise ValueError(f"{name}: the {type(output).__name__} it returned holds no tensor")
    d = dict(entries)
    if key not in d:
        raise ValueError(f"{name}: output_key {key!r} not in its {type(output).__name__} output; it has "
                         f"{[k for k, _ in entries]}")
    v = d[key]
    if not isinstance(v, torch.Tensor):
        raise ValueError(f"{name}: output entry {key!r} is {type(v).__name__}, not a tensor")
    return v
