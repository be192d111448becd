"""The ``repmatch reproduce`` pipeline, in stages (docs/reproduce.md).

======================  ====================================================================
stage                   what it does
======================  ====================================================================
:mod:`.config`          :class:`ReproduceConfig`: every parameter, validated once
:mod:`.cache`           one file per unit of work; :class:`~.cache.Keys` lists what each depends on
:mod:`.train`           train (or load) one network per seed, resumable
:mod:`.data`            the compared inputs (preprocessed as in training) and layers
:mod:`.reductions`      the only forward passes: streamed reductions, in-memory samples
:mod:`.units`           one unit per measure family, pair and layer: the measures' ``to_dict``
:mod:`.heatmap`         layer x layer linear CKA between the first two seeds, with both nulls
:mod:`.assemble`        results.json from the units, the configuration and the provenance
======================  ====================================================================

:func:`run` runs them in order; :mod:`repmatch.reproduce` is the public façade. Torch is imported
lazily: importing this package does not need it.
"""

from __future__ import annotations

import itertools
import json
import os
import time

from .config import (AUTHORS_EPS, DEFAULT_ALPHA, DEFAULT_EPS_GRID, DEFAULT_PERMUTATIONS, HEATMAP_PERMUTATIONS, IMAGES,
                     RESULTS_FORMAT, UNIT_VERSION, UNTRAINED_SEED_OFFSET, ReproduceConfig)

__all__ = ["ReproduceConfig", "run", "AUTHORS_EPS", "DEFAULT_ALPHA", "DEFAULT_EPS_GRID", "DEFAULT_PERMUTATIONS",
           "HEATMAP_PERMUTATIONS", "IMAGES", "RESULTS_FORMAT", "UNIT_VERSION", "UNTRAINED_SEED_OFFSET"]


def run(config: ReproduceConfig) -> dict:
    """Run (or resume) the reproduce pipeline for ``config``; write and return ``results.json``'s dict.

    The run directory is locked for the duration (``OUT/repmatch.lock``; a second run is refused with
    :class:`repmatch._rundir.RunDirLocked`). In a read-only run directory a fully cached run only
    reads (nothing is written; ``provenance["read_only"]`` is true); anything else is refused.

    Parameters
    ----------
    config : ReproduceConfig
        The run's configuration (its ``out`` is the run directory).

    Returns
    -------
    dict
        The results document, as written to ``OUT/results.json`` (:func:`repmatch.io.load_results`
        reads it back).

    Raises
    ------
    RunDirLocked
        A ValueError: another live run holds the run directory.
    RunDirReadOnly
        A ValueError: the run directory is read-only and something is not cached.
    """
    from .. import _rundir

    with _rundir.RunLock(config.out, option="--out", config=config.to_dict()) as lock:
        return _run(config, lock.readonly)


def _run(cfg: ReproduceConfig, readonly: bool) -> dict:
    from .. import _rundir
    from .._atomic import atomic_write_text
    from .._progress import progress, stderr_is_tty
    from .assemble import assemble
    from .cache import Cache, Keys
    from .data import data_stage
    from .heatmap import heatmap_stage
    from .reductions import Resources
    from .train import train_stage
    from .units import pair_units

    t_start = time.perf_counter()
    out = cfg.out
    if readonly:  # checked before any work: only a finished run of this configuration can be read
        if not os.path.exists(os.path.join(out, "results.json")) or _rundir.previous_results(out, cfg.to_dict()):
            raise _rundir.RunDirReadOnly(
                f"--out: {out} is read-only and holds no finished results of this configuration; make it "
                "writable or choose another --out")
    else:
        os.makedirs(out, exist_ok=True)
    cache = Cache(os.path.join(out, "cache"), readonly)
    nets = train_stage(cfg, cache, readonly)
    inputs = data_stage(cfg, nets)
    keys = Keys(cfg, nets.ckpt_hash, inputs.key, nets.info0["model_kwargs"], inputs.k_rows)
    pairs = list(itertools.combinations(cfg.seeds, 2))
    res = Resources(cfg, nets, inputs, cache, keys, pairs)
    res.inner_progress = cfg.progress and stderr_is_tty()  # nested bars only on a terminal
    results_pairs = []
    total = len(pairs) * len(inputs.layer_names)
    bar = progress(range(total), total=total, desc="pairs x layers", enabled=cfg.progress)
    ticks = iter(bar)
    for pi, (a, b) in enumerate(pairs):
        per_layer = {}
        for layer in inputs.layer_names:
            per_layer[layer] = {name: cache.unit(f"{name}/pair{a}-{b}/{layer}", deps, compute)
                                for name, deps, compute in pair_units(cfg, res, keys, a, b, pi, layer)}
            next(ticks, None)
        results_pairs.append({"a": a, "b": b, "layers": per_layer})
        res.free(a, b)  # the pair's reductions and samples
    if hasattr(bar, "close"):
        bar.close()
    heat = heatmap_stage(cfg, nets, inputs, res, cache, keys)
    results = assemble(cfg, nets, inputs, pairs, results_pairs, heat, cache, time.perf_counter() - t_start)
    if readonly:
        results["provenance"]["read_only"] = True  # everything was cached; nothing written
        return results
    # the report files of a different configuration are kept (moved to OUT/previous/config-<hash>/)
    _rundir.archive_previous_results(out, results["config"])
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(results, indent=1))
    return results
