"""Stage: the compared inputs and layers.

The test images (or text windows), preprocessed exactly as in training (as ``repmatch extract``
does); with ``images="all"`` every image, test images first (more samples per neuron). The layers:
every ReLU of a CNN, every block's MLP activation and output of a transformer (every token a
sample), or the layers asked for; how each layer's output is read (sequence or channels, and why)
is recorded from one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Inputs", "data_stage", "rows_per_image"]


def rows_per_image(sample_rows_target: int, n_images: int) -> int:
    """Positions per image that give about ``sample_rows_target`` rows in all.

    Parameters
    ----------
    sample_rows_target : int
        Rows wanted in all.
    n_images : int
        Images available.

    Returns
    -------
    int
        ``ceil(sample_rows_target / n_images)``, at least 1.
    """
    return max(1, math.ceil(sample_rows_target / max(1, n_images)))


@dataclass
class Inputs:
    """What the networks are compared on.

    ``loader(lo, hi)`` iterates batches of inputs ``lo..hi``; ``key`` is everything that selects
    them (part of every cache key)."""

    n: int
    loader: object
    layer_names: list
    labels: dict
    layouts: dict
    key: dict
    data_info: dict
    k_rows: int

    @property
    def half(self) -> int:
        """Inputs ``0..half`` and ``half..n`` are the two halves (held-out matching, sparse prediction)."""
        return self.n // 2


def data_stage(cfg, nets) -> Inputs:
    """The inputs the networks are compared on, the layers compared and how they are read.

    Parameters
    ----------
    cfg : ReproduceConfig
        Dataset, ``n_train``/``n_test``, ``images``, ``batch_size``, ``layers`` and ``sample_rows``.
    nets : Networks
        The trained networks (the first seed's model chooses the layers and their layouts).

    Returns
    -------
    Inputs
        The number of inputs and their loader, the layer names (``cfg.layers``, else every ReLU or
        a transformer's comparison layers), their labels and layouts, the cache key of the inputs,
        the checkpoint's data description and the rows per image of the row sample.

    Raises
    ------
    ValueError
        When ``cfg.layers`` names no layer of the model, or the text differs from the one trained on.
    """
    from .. import activations
    from ..nets.evaluation import evaluation_data
    from ..nets.transformers import comparison_layers, is_transformer, layer_labels

    data_info = nets.info0["data"]
    n, loader = evaluation_data(data_info, dataset=cfg.dataset, data_dir=cfg.data_dir, n_train=cfg.n_train,
                                n_test=cfg.n_test, batch_size=cfg.batch_size, all_images=cfg.images == "all")
    key = {"dataset": cfg.dataset, "n_test": n, "n_train": cfg.n_train, "image_size": data_info["image_size"],
           "batch_size": cfg.batch_size, "images": cfg.images,
           **({"text_sha256": data_info["sha256"]} if "sha256" in data_info else {})}
    model0 = nets.models[cfg.seeds[0]]
    if cfg.layers is not None:
        layer_names = list(activations.resolve_layers(model0, list(cfg.layers)))
    else:
        layer_names = comparison_layers(model0) if is_transformer(model0) else list(activations.resolve_layers(model0))
    labels = layer_labels(model0) if is_transformer(model0) else {}
    key["layers"] = layer_names  # reductions and samples hold exactly these layers
    layouts = {d["name"]: d for d in activations.describe_layers(model0, next(iter(loader(0, min(n, 8)))),
                                                                 layer_names)}
    return Inputs(n, loader, layer_names, labels, layouts, key, data_info, rows_per_image(cfg.sample_rows, n))
