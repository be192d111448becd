"""``repmatch reproduce``: train networks from several seeds and compare every pair, layer by layer.

The whole protocol of shared/spec/subspace-match.md section 5 and shared/spec/convergent-learning.md
sections 2-5 in one resumable run: train (or load) one network per seed, reduce every ReLU layer of
every pair of seeds in one streaming pass, and compute the subspace match (similarity against a fine
ε grid, max_epsilon, simple matches), the one-to-one alignment (semi- and bipartite matching), the
one-to-many sparse prediction, the many-to-many clustering, MI matching on small layers, the reference
measures, a layer x layer heatmap, and two null baselines next to every number:

* **untrained**: trained seed ``a`` against an untrained network of the same architecture (fresh
  initialisation with seed ``1000 + b``), through exactly the same streamed measures;
* **shuffled**: on an in-memory sample of rows, the rows of network B are permuted
  (:func:`repmatch.similarity_curve_null`, :func:`repmatch.permutation_test`).

This module is the public façade; the stages live in :mod:`repmatch.pipeline` (config, cache, train,
data, reductions, units, heatmap, assemble). Every unit holds the measures' result objects
(``to_dict``; read them back with the classes' ``from_dict``).

Layout of a run directory (see docs/reproduce.md)::

    OUT/nets/train-<hash>/seed<k>/   training checkpoints (best.pt is used), resumable
    OUT/cache/*.json, *.npz          one file per unit of work, keyed by a hash of its inputs
    OUT/results.json                 every unit's results, the configuration, versions, seeds
    OUT/tables/*.csv, figures/*.{png,svg}, report.html   written by repmatch.report.build

Caching. Every unit of work (one measure family on one pair of seeds and one layer) has a key and
a hash of exactly the parameters it depends on (checkpoint file hashes, data subset, conv mode and
the measure's own parameters). A cached unit whose hash matches is reused, so an interrupted run
finishes only the remaining units and changing e.g. ``simple_eps`` recomputes only the simple-match
units. Everything is written atomically (temporary file, then rename).

Torch is imported lazily: ``import repmatch`` does not need it, this module's functions do.
"""

from __future__ import annotations

from . import _rundir
from .io import load_results
from .pipeline import run
from .pipeline.cache import jsonable as _jsonable  # noqa: F401  (cli/benchmark.py uses it)
from .pipeline.config import (AUTHORS_EPS, DEFAULT_ALPHA, DEFAULT_EPS_GRID, DEFAULT_PERMUTATIONS, HEATMAP_PERMUTATIONS,
                              IMAGES, RESULTS_FORMAT, UNIT_VERSION, UNTRAINED_SEED_OFFSET, ReproduceConfig)

__all__ = ["ReproduceConfig", "run", "reproduce", "AUTHORS_EPS", "DEFAULT_EPS_GRID", "RESULTS_FORMAT",
           "load_results", "DEFAULT_PERMUTATIONS", "DEFAULT_ALPHA", "IMAGES", "HEATMAP_PERMUTATIONS",
           "UNTRAINED_SEED_OFFSET", "UNIT_VERSION"]


def reproduce(arch: str = "smallcnn", dataset: str = "digits", seeds=(0, 1, 2), *, report: bool = True,
              **kwargs) -> dict:
    """Train (or load) one network per seed and compare every pair of seeds at every ReLU layer.

    Parameters
    ----------
    arch : str
        Architecture (``repmatch.nets.ARCHITECTURES``; ``small-cnn`` is accepted for ``smallcnn``).
    dataset : str
        ``digits`` (bundled), ``mnist``, ``fashion-mnist`` or ``cifar10`` (``data_dir``).
    seeds : sequence of int
        At least two; every pair is compared.
    report : bool
        Also build the CSV tables, figures and report.html (:func:`repmatch.report.build.build_report`).
    **kwargs
        Fields of :class:`ReproduceConfig`: ``epochs`` (default 10 for smallcnn, 30 otherwise), ``out``
        (default ``runs/<arch>-<dataset>``), ``width``, ``n_train``, ``n_test``, ``data_dir``, ``device``,
        ``eps_grid`` (40 values on [0, 1)), ``simple_eps`` (0.25), ``permutations`` (99, shuffled null),
        ``conv_mode`` (positions), ``sample_rows`` (about 10,000 rows per layer for the in-memory nulls),
        ``alphas``, ``n_clusters``, ``mi_max_units``, ``simple_max_units``, ``heatmap``, ``batch_size``,
        ``progress``, ``images`` ("auto": all images for the digits, else the test images),
        ``n_rotations`` (20) and ``n_boot`` (200) of the calibration, ``alpha`` (0.05, the report's
        significance level), ``layers`` (default every ReLU).

    Returns
    -------
    dict
        The content of ``OUT/results.json``.
    """
    cfg = ReproduceConfig(arch=arch, dataset=dataset, seeds=seeds, **kwargs)
    with _rundir.RunLock(cfg.out, option="--out", config=cfg.to_dict()) as lock:  # the report too
        results = run(cfg)
        if report and not lock.readonly:
            from .report.build import build_report

            build_report(cfg.out, results=results)
    return results
