"""Stage: the layer x layer heatmap (linear CKA) between the first two seeds, with both nulls.

Conv layers are average-pooled over positions. The untrained null is seed a against the untrained
network that stands in for seed b; the shuffled null is the mean over ``HEATMAP_PERMUTATIONS``
permutations of the images of B (the same permutation for every layer).
"""

from __future__ import annotations

import numpy as np

from .config import HEATMAP_PERMUTATIONS
from .train import say

__all__ = ["heatmap_stage"]


def heatmap_stage(cfg, nets, inputs, res, cache, keys):
    """The cached heatmap unit of seeds ``cfg.seeds[0]`` and ``cfg.seeds[1]`` (None without ``cfg.heatmap``).

    Parameters
    ----------
    cfg : ReproduceConfig
    nets : Networks
    inputs : Inputs
    res
        The run's resources; ``res.untrained(seed)`` gives the untrained twin of a seed.
    cache : Cache
    keys : Keys
        The dependencies of the unit.

    Returns
    -------
    dict or None
        Linear CKA of every layer of A with every layer of B (average-pooled): ``matrix``,
        ``untrained_matrix``, ``shuffled_matrix`` (mean over ``n_permutations`` image
        permutations), with ``a``, ``b``, ``layers`` and the settings.
    """
    if not cfg.heatmap:
        return None
    a, b = cfg.seeds[0], cfg.seeds[1]

    def compute():
        from .. import activations
        from ..layerid import linear_cka_matrix

        say(cfg, f"layer x layer heatmap, seed {a} vs seed {b} and vs untrained (avgpool)")
        layers = inputs.layer_names
        acts = {}
        for name, model in (("a", nets.models[a]), ("b", nets.models[b]), ("u", res.untrained(b))):
            acts[name] = activations.extract(model, inputs.loader(0, inputs.n), layers, conv_mode="avgpool",
                                             seq_mode="mean", device=cfg.device)
        M = linear_cka_matrix(acts["a"], acts["b"], layers)
        U = linear_cka_matrix(acts["a"], acts["u"], layers)
        g = np.random.default_rng(0)
        S = np.zeros_like(M)
        for _ in range(HEATMAP_PERMUTATIONS):  # the same image permutation for every layer of B
            S += linear_cka_matrix(acts["a"], acts["b"], layers, perm=g.permutation(inputs.n))
        return {"a": a, "b": b, "measure": "linear_cka", "conv_mode": "avgpool", "layers": layers,
                "matrix": M.tolist(), "untrained_matrix": U.tolist(),
                "shuffled_matrix": (S / HEATMAP_PERMUTATIONS).tolist(), "n_permutations": HEATMAP_PERMUTATIONS}

    return cache.unit("heatmap", keys.heatmap(a, b, HEATMAP_PERMUTATIONS), compute)
