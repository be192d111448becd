"""Stage: assemble results.json from the units (nothing is recomputed or re-picked here).

``results["results"][i]["layers"][layer][unit]`` is the unit's value as
:mod:`repmatch.pipeline.units` wrote it (the measures' ``to_dict``); the rest describes the run:
configuration, versions, seeds, networks, data, layers (their sizes are read from the subspace
unit), significance and provenance.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from .cache import jsonable
from .config import AUTHORS_EPS, RESULTS_FORMAT, UNTRAINED_SEED_OFFSET

__all__ = ["assemble", "versions", "QUESTION"]

QUESTION = "Do networks trained from different seeds learn the same representation, and at what granularity?"


def versions() -> dict:
    """The versions of repmatch, Python, NumPy, SciPy, the platform and (when installed) PyTorch.

    Parameters
    ----------
    None

    Returns
    -------
    dict of str to str
        ``repmatch``, ``python``, ``numpy``, ``scipy``, ``platform`` and, with PyTorch, ``torch``.
    """
    import scipy

    from .. import __version__

    out = {"repmatch": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "platform": platform.platform()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def assemble(cfg, nets, inputs, pairs, results_pairs, heat, cache, seconds: float) -> dict:
    """The results document of a run (``results.json``), from the outputs of every stage.

    Parameters
    ----------
    cfg : ReproduceConfig
    nets : Networks
        From :func:`~repmatch.pipeline.train.train_stage`.
    inputs : Inputs
        From :func:`~repmatch.pipeline.data.data_stage`.
    pairs : sequence of (int, int)
        The pairs of seeds compared.
    results_pairs : list of dict
        One per pair, in the order of ``pairs``: its ``layers`` (every unit's value per layer).
    heat : dict or None
        The heatmap unit (:func:`~repmatch.pipeline.heatmap.heatmap_stage`).
    cache : Cache
        Its ``computed``, ``reused`` and ``seconds`` go into the provenance.
    seconds : float
        Wall time of the run.

    Returns
    -------
    dict
        JSON-safe (:func:`~repmatch.pipeline.cache.jsonable`): ``format``, ``config``,
        ``versions``, ``seeds``, ``pairs``, ``significance``, ``data``, ``networks``, ``layers``,
        ``results``, ``heatmap``, ``provenance`` and the run's other constants.
    """
    from ..nets.training import recipe_text

    first = results_pairs[0]["layers"]
    layers_info = []
    for layer in inputs.layer_names:
        s = first[layer]["subspace"]
        layers_info.append({"name": layer, "n_units": s["n_x"], "n_samples": s["n_samples"],
                            "samples_per_neuron": s["samples_per_neuron"], "label": inputs.labels.get(layer, layer),
                            "layout": inputs.layouts[layer]["layout"], "layout_reason": inputs.layouts[layer]["reason"]})
    networks = {}
    for s in cfg.seeds:
        inf = nets.infos[s]
        networks[str(s)] = {"seed": s, "test_acc": float(inf.get("best_test_acc", inf.get("test_acc", float("nan")))),
                            "best_epoch": int(inf.get("best_epoch", inf.get("epoch", 0))),
                            "epochs": int(inf["config"]["epochs"]),
                            "checkpoint": os.path.relpath(os.path.join(nets.nets_dir, f"seed{s}", "best.pt"), cfg.out),
                            "sha256_20": nets.ckpt_hash[s]}
    min_p = 1.0 / (1 + cfg.permutations)
    results = {
        "format": RESULTS_FORMAT,
        "question": QUESTION,
        "config": cfg.to_dict(),
        "versions": versions(),
        "seeds": list(cfg.seeds),
        "pairs": [[a, b] for a, b in pairs],
        "authors_eps": list(AUTHORS_EPS),
        "eps_grid": list(cfg.eps_grid),
        "untrained_seed_offset": UNTRAINED_SEED_OFFSET,
        "significance": {"alpha": cfg.alpha, "n_permutations": cfg.permutations, "min_p": min_p,
                         "testable": min_p <= cfg.alpha},
        "data": {**{k: v for k, v in inputs.data_info.items() if k not in ("mean", "std")}, "n_test_used": inputs.n,
                 "images": cfg.images, "rows_per_image_in_sample": inputs.k_rows,
                 "split_for_sparse": [inputs.half, inputs.n - inputs.half]},
        "networks": networks,
        "layers": layers_info,
        "recipe": recipe_text(nets.info0["config"]),
        "results": results_pairs,
        "heatmap": heat,
        "provenance": {"computed": list(cache.computed), "reused": list(cache.reused), "seconds": seconds,
                       "seconds_by_unit": dict(cache.seconds),
                       "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    return jsonable(results)
