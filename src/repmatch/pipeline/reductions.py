"""Stage: reductions and in-memory samples, the only stage that runs the networks on the inputs
(besides the heatmap's pooled extraction).

* :func:`reduce_networks` — THE call to the networks for reductions: given the networks
  (``models``, a dict ``{network id: module}``), the pairs of ids needed and the range of inputs
  (``loader(lo, hi)``), one streamed :class:`repmatch.Reduction` per pair and layer;
* :func:`sample_networks` — the in-memory rows of the shuffled null, for the same inputs (up to
  ``k`` positions of every image, the same for every network; equal to the per-pair reference
  :func:`repmatch.testing.sample_rows`);
* :class:`Resources` — both, cached on disk (``.npz``, keys of :class:`repmatch.pipeline.cache.Keys`)
  and in memory for the pair being computed.

A network id is a seed (a trained network) or ``("untrained", b)`` (the null network that stands in
for seed ``b``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import _rundir
from .._atomic import atomic_savez
from .cache import digest
from .config import UNTRAINED_SEED_OFFSET
from .train import say

__all__ = ["reduce_networks", "sample_networks", "Resources"]


def reduce_networks(models: dict, pairs, loader, lo: int, hi: int, layer_names, *, conv_mode="positions",
                    device="cpu", progress=False) -> dict:
    """``{(id_a, id_b): {layer: Reduction}}`` of every pair in ``pairs`` on inputs ``lo..hi``.

    Parameters
    ----------
    models : dict
        Network id -> torch module (in eval mode, on ``device``).
    pairs : sequence of (id, id)
        The pairs needed.
    loader : callable
        ``loader(lo, hi)`` iterates the batches of inputs ``lo..hi`` in a fixed order.
    lo, hi : int
        The range of inputs.
    layer_names : list of str
    conv_mode, device, progress
        As in :func:`repmatch.activations.reduce_pair`.

    Returns
    -------
    dict
        ``{(id_a, id_b): {layer: Reduction}}`` for every pair of ``pairs`` (``{}`` when it is empty).
    """
    from .. import activations

    pairs = [tuple(p) for p in pairs]
    if not pairs:
        return {}
    # one pass: every network runs once per batch and feeds every pair it is in (issue 15)
    reds = activations.reduce_networks({k: models[k] for p in pairs for k in p}, loader(lo, hi), pairs,
                                       layer_names, conv_mode=conv_mode, device=device, progress=progress)
    return {p: reds[p] for p in pairs}


def sample_networks(models: dict, pairs, loader, lo: int, hi: int, layer_names, *, rows_per_image: int, seed=0,
                    device="cpu") -> dict:
    """``{(id_a, id_b): {layer: (X, Y, groups)}}``: the in-memory sample of every pair, equal to
    :func:`repmatch.testing.sample_rows` per pair, from one pass in which every network runs once per batch.

    Parameters
    ----------
    models : dict
        Network id -> torch module (in eval mode, on ``device``).
    pairs : sequence of (id, id)
        The pairs needed.
    loader : callable
        ``loader(lo, hi)`` iterates the batches of inputs ``lo..hi`` in a fixed order.
    lo, hi : int
        The range of inputs (``lo`` numbers the first image, as in the groups).
    layer_names : list of str
    rows_per_image : int
        Positions drawn per image (at least 1).
    seed : int, default 0
        Seed of the positions' draw.
    device : str, default "cpu"

    Returns
    -------
    dict
        ``{(id_a, id_b): {layer: (X, Y, groups)}}``: float64 rows of both networks and the image
        index of every row (``{}`` when ``pairs`` is empty).
    """
    from .. import activations

    pairs = [tuple(p) for p in pairs]
    ids = list(dict.fromkeys(k for p in pairs for k in p))
    if not ids:
        return {}
    got = activations.reduce_networks({k: models[k] for k in ids}, loader(lo, hi), [], layer_names, device=device,
                                      rows_per_image=max(1, int(rows_per_image)), rows_seed=seed, rows_networks=ids,
                                      first_image=lo)
    return {(a, b): {layer: got.sample(a, b, layer) for layer in layer_names} for a, b in pairs}


class Resources:
    """Reductions (two halves of the inputs, merged for the full set) and samples, computed when first
    needed, cached on disk, and kept in memory until :meth:`free`."""

    def __init__(self, cfg, nets, inputs, cache, keys, pairs=None):
        self.cfg, self.nets, self.inputs, self.cache, self.keys = cfg, nets, inputs, cache, keys
        self.pairs = list(pairs) if pairs is not None else []  # every pair of the run
        self.memo: dict = {}
        self.inner_progress = False

    def _file(self, a, b, null, part) -> tuple:
        """(cache name, .npz path) of the reductions of (a, b) (or its null) on half ``part``."""
        name = f"reductions-{'untrained' if null else 'trained'}-{a}-{b}-half{part}"
        return name, self.cache.npz_path(name, digest(self.keys.reductions(a, b, null)))

    def _reduce_missing(self, a, b, null, part, lo, hi) -> dict:
        """Reduce, in one call of :func:`reduce_networks`, the pair (a, b) and every other pair of the run
        (same kind: trained or null) whose file for this half is missing; save them all; return (a, b)'s.

        Every network then runs once per batch for all its pairs when :func:`reduce_networks` shares
        the forward passes."""
        from ..io import save_reductions

        cfg, cache, inp = self.cfg, self.cache, self.inputs
        todo = [(a, b)] + [(x, y) for x, y in self.pairs if (x, y) != (a, b)
                           and not os.path.exists(self._file(x, y, null, part)[1])]
        cache.need(f"{os.path.basename(self._file(a, b, null, part)[1])} is not cached")
        kind = "untrained " if null else "seed "
        say(cfg, f"reducing {', '.join(f'seed {x} vs {kind}{y}' for x, y in todo)}, test images {lo}..{hi}")
        models = {x: self.nets.models[x] for x, _ in todo}
        ids = {}
        for x, y in todo:
            ids[(x, y)] = ("untrained", y) if null else y
            models.setdefault(ids[(x, y)], self.untrained(y) if null else self.nets.models[y])
        t0 = time.perf_counter()
        got = reduce_networks(models, [(x, ids[(x, y)]) for x, y in todo], inp.loader, lo, hi, inp.layer_names,
                              conv_mode=cfg.conv_mode, device=cfg.device, progress=self.inner_progress)
        cache.seconds["reduce"] = cache.seconds.get("reduce", 0.0) + time.perf_counter() - t0
        out = None
        for x, y in todo:
            # The rows are reduced where the networks run (on a GPU with --device cuda); the
            # measures are solved on host copies (O(n^2) numbers), the same whether the
            # reductions were just computed or read back from the cache. LAPACK's pivoted
            # Cholesky beats a loop of small device kernels on layers of a few hundred units.
            reds = {k: r if r.device is None else r.to(None) for k, r in got[(x, ids[(x, y)])].items()}
            name, path = self._file(x, y, null, part)
            save_reductions(path, reds, metadata=self.keys.reductions(x, y, null))
            cache.computed.append(name)
            if (x, y) == (a, b):
                out = reds
        return out

    def untrained(self, b: int):
        from ..nets import build_model

        model = build_model(seed=UNTRAINED_SEED_OFFSET + b, **self.nets.info0["model_kwargs"]).to(self.cfg.device)
        return model.eval()

    def reductions(self, a: int, b: int, null: bool) -> tuple:
        """``(full, half0, half1)``: ``{layer: Reduction}`` of seed a against seed b (or its untrained null)."""
        key = ("red", a, b, null)
        if key in self.memo:
            return self.memo[key]
        inp = self.inputs
        halves = []
        for part, (lo, hi) in enumerate(((0, inp.half), (inp.half, inp.n))):
            name, path = self._file(a, b, null, part)
            # a damaged file (truncated, CRC error, missing layers) is a miss, with a warning
            reds = _rundir.load_cached_reductions(path, inp.layer_names) if os.path.exists(path) else None
            if reds is not None:
                self.cache.reused.append(name)
            else:
                reds = self._reduce_missing(a, b, null, part, lo, hi)
            halves.append(reds)
        full = {k: halves[0][k].merge(halves[1][k]) for k in inp.layer_names}
        self.memo[key] = (full, halves[0], halves[1])
        return self.memo[key]

    def sample(self, a: int, b: int) -> dict:
        """``{layer: (X, Y, groups)}``: up to ``k_rows`` positions of every input (groups = input index)."""
        key = ("sample", a, b)
        if key in self.memo:
            return self.memo[key]
        cfg, cache, inp = self.cfg, self.cache, self.inputs
        path = self._sample_path(a, b)
        arrs = _rundir.load_cached_sample(path, inp.layer_names, groups=True) if os.path.exists(path) else None
        if arrs is not None:
            cache.reused.append(f"sample-{a}-{b}")
        else:
            # this pair and every other pair of the run whose sample is missing, in one pass
            todo = [(a, b)] + [p for p in self.pairs if p != (a, b) and not os.path.exists(self._sample_path(*p))]
            cache.need(f"{os.path.basename(path)} is not cached")
            say(cfg, f"sampling rows of {', '.join(f'seeds {x} and {y}' for x, y in todo)} ({inp.k_rows} position(s) "
                "per input) for the shuffled null")
            got = sample_networks(self.nets.models, todo, inp.loader, 0, inp.n, inp.layer_names,
                                  rows_per_image=inp.k_rows, seed=0, device=cfg.device)
            for x, y in todo:
                # float32 on disk loses nothing: the activations come from float32 forward passes.
                atomic_savez(self._sample_path(x, y),
                             **{f"{i}_{s}": (got[(x, y)][layer][j].astype(np.float32) if j < 2 else got[(x, y)][layer][j])
                                for i, layer in enumerate(inp.layer_names) for j, s in enumerate("xyg")})
                cache.computed.append(f"sample-{x}-{y}")
            arrs = got[(a, b)]
        self.memo[key] = arrs
        return arrs

    def _sample_path(self, a, b) -> str:
        return self.cache.npz_path(f"sample-{a}-{b}", digest(self.keys.sample(a, b)))

    def free(self, a: int, b: int) -> None:
        """Drop the pair's reductions and samples from memory."""
        for k in [k for k in self.memo if k[1:3] == (a, b)]:
            del self.memo[k]
