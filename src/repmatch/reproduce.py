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

The headline statistics (the MMS curve on [0, 1), eps_50, max_epsilon, area), the nulls of every
figure, soft matching and the calibrated baselines are computed in :mod:`repmatch.reproduce_units`.

Layout of a run directory (see docs/reproduce.md)::

    OUT/nets/train-<hash>/seed<k>/   training checkpoints (best.pt is used), resumable
    OUT/cache/*.json, *.npz          one file per unit of work, keyed by a hash of its inputs
    OUT/results.json                 every number, the configuration, versions, seeds
    OUT/tables/*.csv, figures/*.{png,svg}, report.html   written by repmatch.report.build

Caching. Every unit of work (one measure family on one pair of seeds and one layer) has a key and
a hash of exactly the parameters it depends on (checkpoint file hashes, data subset, conv mode and
the measure's own parameters). A cached unit whose hash matches is reused, so an interrupted run
finishes only the remaining units and changing e.g. ``simple_eps`` recomputes only the simple-match
units. Everything is written atomically (temporary file, then rename).

Torch is imported lazily: ``import repmatch`` does not need it, this module's functions do.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import _rundir
from ._atomic import atomic_savez, atomic_write_text
from ._progress import progress, stderr_is_tty
from .protocol import AUTHORS_EPS, DEFAULT_EPS_GRID, PIPELINE_ALPHAS

__all__ = ["ReproduceConfig", "run", "reproduce", "AUTHORS_EPS", "DEFAULT_EPS_GRID", "RESULTS_FORMAT",
           "load_results"]

RESULTS_FORMAT = "repmatch-reproduce-1"
#: Default permutations of the shuffled-row null: the smallest possible p-value is 1 / (1 + 99) = 0.01.
DEFAULT_PERMUTATIONS = 99
#: Significance level of the report's claims (a claim needs p <= ALPHA in every pair of seeds).
DEFAULT_ALPHA = 0.05
#: Which images the networks are compared on: "test", "all" (training and test images), or "auto":
#: "all" for the digits, whose 359 test images give too few samples per neuron for 128-unit
#: layers (1.4; 7.0 with all 1,797), "test" otherwise.
IMAGES = ("auto", "test", "all")
#: Permutations of the heatmap's shuffled null (a mean per cell, no p-values).
HEATMAP_PERMUTATIONS = 20
#: Seed offset of the untrained null networks (seed 1000 + b stands in for trained seed b).
UNTRAINED_SEED_OFFSET = 1000
#: Part of every cache hash; bump it when the computation of a unit changes so that old caches are recomputed.
UNIT_VERSION = 3
#: Default epochs per architecture family, chosen to reach decent accuracy quickly on a CPU.
_DEFAULT_EPOCHS = {"smallcnn": 10, "vit-tiny": 10, "char-tiny": 10}


def _canonical_arch(arch) -> str:
    from .nets import ARCHITECTURES

    if not isinstance(arch, str):
        raise ValueError(f"arch must be one of {ARCHITECTURES}; got {arch!r}")
    key = arch.strip().lower()
    if key not in ARCHITECTURES and key.replace("-", "") in ARCHITECTURES:
        key = key.replace("-", "")  # "small-cnn" -> "smallcnn"
    if key not in ARCHITECTURES and key.replace("-", "_") in ARCHITECTURES:
        key = key.replace("-", "_")  # "vgg11-bn" -> "vgg11_bn"
    if key not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)} (or small-cnn); got {arch!r}")
    return key


@dataclass
class ReproduceConfig:
    """Everything a reproduce run depends on; see :func:`reproduce` for the meaning of each field."""

    arch: str = "smallcnn"
    dataset: str = "digits"
    seeds: tuple = (0, 1, 2)
    epochs: int | None = None
    out: str | None = None
    width: float = 1.0
    n_train: int | None = None
    n_test: int | None = None
    data_dir: str | None = None
    device: str = "cpu"
    eps_grid: tuple = DEFAULT_EPS_GRID
    simple_eps: float = 0.25
    permutations: int = DEFAULT_PERMUTATIONS
    conv_mode: str = "positions"
    sample_rows: int = 10000
    alphas: tuple = PIPELINE_ALPHAS
    n_clusters: int = 8
    mi_max_units: int = 64
    simple_max_units: int = 512
    heatmap: bool = True
    batch_size: int = 256
    progress: bool = True
    images: str = "auto"
    n_rotations: int = 20
    n_boot: int = 200
    alpha: float = DEFAULT_ALPHA
    layers: tuple | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        from .nets import DATASETS
        from .nets.datasets import _canonical

        self.arch = _canonical_arch(self.arch)
        from .nets.text import TEXT_DATASETS

        try:
            self.dataset = _canonical(self.dataset)
        except ValueError:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS + TEXT_DATASETS)}; got {self.dataset!r}") from None

        if (self.arch == "char-tiny") != (self.dataset in TEXT_DATASETS):
            raise ValueError(f"dataset {self.dataset} does not fit arch {self.arch}: char-tiny is trained on the text "
                             f"datasets {', '.join(TEXT_DATASETS)}, every other architecture on images")
        seeds = list(self.seeds) if not isinstance(self.seeds, (int, str)) else [self.seeds]
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
            raise ValueError(f"seeds must be non-negative integers, got {self.seeds!r}")
        seeds = [int(s) for s in seeds]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        if len(seeds) < 2:
            raise ValueError(f"seeds must list at least 2 seeds to compare, got {seeds}")
        self.seeds = tuple(seeds)
        if self.epochs is None:
            self.epochs = _DEFAULT_EPOCHS.get(self.arch, 30)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        self.epochs = int(self.epochs)
        if self.out is None:
            self.out = os.path.join("runs", f"{self.arch}-{self.dataset}")
        self.out = os.fspath(self.out)
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2):
                raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
        if not (isinstance(self.width, (int, float)) and self.width > 0):
            raise ValueError(f"width must be a positive number, got {self.width!r}")
        self.width = float(self.width)
        grid = np.asarray(self.eps_grid, dtype=float).ravel()
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0) or np.any(grid >= 1):
            raise ValueError(f"eps_grid must be a non-empty list of values in [0, 1), got {self.eps_grid!r}")
        # The authors' values are always on the grid: the headline figure and table are drawn at them.
        self.eps_grid = tuple(sorted(set(float(e) for e in grid) | set(AUTHORS_EPS)))
        if not (0 < float(self.simple_eps) < 1):
            raise ValueError(f"simple_eps must be in (0, 1), got {self.simple_eps!r}")
        self.simple_eps = float(self.simple_eps)
        if isinstance(self.permutations, bool) or not isinstance(self.permutations, (int, np.integer)) \
                or self.permutations < 1:
            raise ValueError(f"permutations must be a positive integer, got {self.permutations!r}")
        self.permutations = int(self.permutations)
        if self.conv_mode not in ("positions", "avgpool", "flatten") and not str(self.conv_mode).startswith("sample:"):
            raise ValueError(f"conv_mode must be positions, avgpool, flatten or sample:K; got {self.conv_mode!r}")
        for name in ("sample_rows", "n_clusters", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.images not in IMAGES:
            raise ValueError(f"images must be one of {', '.join(IMAGES)}; got {self.images!r}")
        if self.images == "auto":
            self.images = "all" if self.dataset == "digits" else "test"
        for name in ("n_rotations", "n_boot"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (2 if name == "n_boot" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'n_boot' else 1}, got {v!r}")
            setattr(self, name, int(v))
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be a number in (0, 1), got {self.alpha!r}")
        self.alpha = float(self.alpha)
        if self.layers is not None:
            names = [self.layers] if isinstance(self.layers, str) else list(self.layers)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"layers must be a list of layer names (or types such as 'type:ReLU'), got {self.layers!r}")
            self.layers = tuple(names)
        alphas = np.asarray(self.alphas, dtype=float).ravel()
        if alphas.size == 0 or np.any(~np.isfinite(alphas)) or np.any(alphas < 0):
            raise ValueError(f"alphas must be a non-empty list of penalties >= 0, got {self.alphas!r}")
        self.alphas = tuple(float(a) for a in alphas)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["eps_grid"] = list(self.eps_grid)
        d["alphas"] = list(self.alphas)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d


# ------------------------------------------------------------------------------------------ files & cache
def _jsonable(obj):
    """Make numpy scalars/arrays, tuples and non-finite floats JSON-safe (NaN/inf become None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    return obj


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(_jsonable(obj), sort_keys=True).encode()).hexdigest()[:20]


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


class _Cache:
    """One JSON file per unit of work in ``directory``: ``{"key", "hash", "value"}``."""

    def __init__(self, directory: str, readonly: bool = False):
        self.directory = directory
        self.readonly = readonly  # a read-only run directory: every unit must be cached
        if not readonly:
            os.makedirs(directory, exist_ok=True)
        self.computed: list = []
        self.reused: list = []
        self.seconds: dict = {}

    def _path(self, key: str, ext: str = ".json") -> str:
        return os.path.join(self.directory, key.replace("/", "__") + ext)

    def get(self, key: str, h: str):
        # a damaged file (truncated, not JSON, wrong type) is a miss, with a warning: recomputed
        return _rundir.read_unit_json(self._path(key), key, h)

    def need(self, what: str):
        """Raise when ``what`` must be computed but the run directory is read-only."""
        if self.readonly:
            raise _rundir.RunDirReadOnly(
                f"--out: {os.path.dirname(self.directory)} is read-only, but {what}; a read-only run directory "
                "can only be read by a run whose every unit is cached (make it writable or copy it)")

    def put(self, key: str, h: str, value) -> None:
        atomic_write_text(self._path(key), json.dumps({"key": key, "hash": h, "value": _jsonable(value)}))

    def unit(self, key: str, deps: dict, compute):
        """The cached value of ``key`` if its dependencies hash the same, else ``compute()`` (stored)."""
        # The version is part of every hash: bump UNIT_VERSION when a unit's computation changes.
        h = _hash({"unit_version": UNIT_VERSION, **deps})
        value = self.get(key, h)
        if value is not None:
            self.reused.append(key)
            return value
        self.need(f"unit {key} is not cached")
        import warnings

        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = compute()
        ours = [w for w in caught if issubclass(w.category, _rundir.RunDirWarning)]
        caught = [w for w in caught if w not in ours]
        for w in ours:  # about the run directory (a damaged cache file recomputed), not about this unit's numbers
            warnings.warn(w.message, w.category, stacklevel=2)
        if isinstance(value, dict):
            msgs = sorted({str(w.message) for w in caught})
            if msgs:
                value = {**value, "warnings": msgs}
        value = _jsonable(value)
        self.put(key, h, value)
        self.computed.append(key)
        self.seconds[key.split("/")[0]] = self.seconds.get(key.split("/")[0], 0.0) + time.perf_counter() - t0
        return value

    def npz_path(self, key: str, h: str) -> str:
        return self._path(f"{key}-{h}", ".npz")


# ------------------------------------------------------------------------------------------ measures
def _subspace_unit(r, eps_grid):
    from .reproduce_units import subspace_unit  # the curve on the grid, eps_50, max_epsilon, area

    return subspace_unit(r, eps_grid)


def _simple_unit(r, eps, max_units):
    from .simple import simple_matches

    if r.n_x + r.n_y > max_units:
        return {"eps": eps, "skipped": f"layer has {r.n_x + r.n_y} units > simple_max_units={max_units}"}
    s = simple_matches(r, eps=eps)
    dist = s.size_distribution()
    return {"eps": eps, "n_matches": len(s.matches), "sizes": s.sizes.tolist(),
            "size_distribution": [[kx, ky, n] for (kx, ky), n in dist.items()],
            "maximum_similarity": s.maximum.similarity, "maximum_size": len(s.maximum.x) + len(s.maximum.y)}


def _alignment_unit(r, *, keep_matrix: bool, max_matrix: int = 128):
    from .alignment import bipartite_match
    from .stats import correlation_from_reduction

    stats = correlation_from_reduction(r)
    b = bipartite_match(r)
    sc = b.sorted_curve()
    out = {"semi_mean": b.semi.mean, "bipartite_mean": b.mean, "agree": b.agree, "agreement": b.agreement,
           "n_matched": int(b.x.size), "chance": b.chance, "semi_distinct_y": b.semi.n_distinct_y,
           "sorted_semi": sc.get("semi"), "sorted_bipartite": sc.get("bipartite"), "n_x": b.n_x, "n_y": b.n_y}
    if keep_matrix:
        S = np.nan_to_num(np.asarray(stats.between, dtype=float))
        k = min(max_matrix, b.x.size)
        order = np.argsort(-b.values, kind="stable")[:k]  # the best-matched units first
        xs, ys = b.x[order], b.y[order]
        out["permuted_matrix"] = np.round(S[np.ix_(xs, ys)], 3).tolist()
        out["permuted_matrix_note"] = (f"correlations between the {k} best bipartite-matched units of A (rows, "
                                       "sorted by matched correlation) and their partners in B (columns)")
    return out


def _reference_unit(r):
    from .reference import linear_cka, procrustes_distance, pwcca, svcca

    out = {}
    for name, f in (("linear_cka", linear_cka), ("svcca", svcca), ("pwcca", pwcca), ("procrustes", procrustes_distance)):
        try:
            out[name] = f(r).value
        except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. too few samples for CCA
            out[name] = None
            out[f"{name}_error"] = str(exc)
    return out


def _untrained_unit(r, eps_grid, halves=None, **extras):
    from .reproduce_units import untrained_unit

    return untrained_unit(r, *(halves or (None, None)), eps_grid, **extras)


def _live(X):
    return np.flatnonzero(X.std(axis=0) > 1e-12)


def _shuffled_unit(X, Y, eps_grid, n_perm, seed, **extras):
    """Shuffled-row null of every scalar of the report (:func:`repmatch.reproduce_units.shuffled_unit`)."""
    from .reproduce_units import shuffled_unit

    return shuffled_unit(X, Y, eps_grid, n_perm, seed, **extras)


def _sparse_unit(train, test, alphas, sample=None, tol=1e-6, max_iter=500):
    """Sparse prediction fitted on the first half of the test images, scored on the second half.

    When a unit is constant on one half (sparse or nearly dead ReLUs), fall back to the in-memory sample
    (``sample()`` -> arrays) without the units that are constant there, with a seeded random split of its rows.
    """
    from .sparse import sparse_prediction

    split = "halves of the test images (fit on the first, scored on the second)"
    dropped = None
    try:
        res = sparse_prediction(train, test=test, alphas=list(alphas), tol=tol, max_iter=max_iter)
    except ValueError as exc:
        if sample is None:
            return {"alphas": list(alphas), "skipped": str(exc)}
        from .reduce import Reduction

        X, Y = sample()  # rows are grouped by image, so its two halves are two sets of images
        h = X.shape[0] // 2
        lx = np.intersect1d(_live(X[:h]), _live(X[h:]))
        ly = np.intersect1d(_live(Y[:h]), _live(Y[h:]))
        dropped = [int(X.shape[1] - lx.size), int(Y.shape[1] - ly.size)]
        split = (f"halves of the in-memory sample's rows (the first and the second half of the images, a few "
                 f"positions of each for conv layers), because the halves of the test images "
                 f"failed ({exc}); units "
                 f"constant on either half dropped (A: {dropped[0]}, B: {dropped[1]})")
        try:
            if not (lx.size and ly.size):
                raise ValueError("no unit is live on both halves of the sample")
            res = sparse_prediction(Reduction.from_arrays(X[:h, lx], Y[:h, ly]),
                                    test=Reduction.from_arrays(X[h:, lx], Y[h:, ly]), alphas=list(alphas), tol=tol,
                                    max_iter=max_iter)
        except ValueError as exc2:
            return {"alphas": list(alphas), "skipped": f"{exc}; on the in-memory sample: {exc2}"}
    out = {"alphas": list(alphas), "n_train": None, "n_test": None, "split": split, "dropped_units": dropped}
    for d in ("x_to_y", "y_to_x"):
        p = getattr(res, d)
        out[d] = {"mean_fvu": p.mean_fvu.tolist(), "mean_nonzero": p.mean_nonzero.tolist(),
                  "median_nonzero": (np.median(p.n_nonzero, axis=1).tolist() if p.n_nonzero.shape[1]
                                     else [0.0] * len(alphas)),
                  "n_inputs": int(p.weights[0].shape[0]) if len(p.weights) else 0,
                  "converged": bool(np.all(p.converged))}
        out["n_train"], out["n_test"] = int(p.n_train), int(p.n_test)
    out["mutual_pairs"] = [len(pairs) for pairs in res.mutual_pairs]
    return out


def _clusters_unit(r, n_clusters, seed):
    from .clusters import spectral_clusters

    live = r.n_x + r.n_y
    k = max(2, min(n_clusters, live // 2))
    c = spectral_clusters(r, n_clusters=k, n_random=100, rng=seed)
    d = c.to_dict()
    base = d.get("baseline") or {}
    return {"n_clusters": c.n_clusters, "count_x": np.asarray(c.count_x).tolist(),
            "count_y": np.asarray(c.count_y).tolist(), "within": d.get("within_score"),
            "between": d.get("between_score"), "mixed_share": d.get("mixed_share"), "baseline": base}


def _mi_unit(X, Y, max_units):
    from .alignment import bipartite_match

    if X.shape[1] > max_units or Y.shape[1] > max_units:
        return {"skipped": f"layer has more than mi_max_units={max_units} units"}
    b = bipartite_match(X, Y, measure="mi")
    c = bipartite_match(X, Y)
    same = len(set(zip(b.semi.x.tolist(), b.semi.y.tolist())) & set(zip(c.semi.x.tolist(), c.semi.y.tolist())))
    return {"semi_mean": b.semi.mean, "bipartite_mean": b.mean, "chance": b.chance, "agree": b.agree,
            "n_rows": int(X.shape[0]), "semi_pairs_shared_with_correlation": same, "n_x": b.n_x}


def _simple_nulls_unit(untrained_full, X, Y, seed, eps, max_units):
    from .reproduce_units import simple_nulls_unit

    return simple_nulls_unit(untrained_full, X, Y, seed, eps, max_units)


def _soft_unit(r):
    from .reproduce_units import soft_unit

    return soft_unit(r)


def _calibration_unit(full, half0, half1, X, Y, groups, **kwargs):
    from .reproduce_units import calibration_unit

    return calibration_unit(full, half0, half1, X, Y, groups, **kwargs)


def _sparse_nulls_unit(u_train, u_test, sample, alphas, seed):
    """Sparse prediction against both nulls: the untrained network (halves), shuffled rows (sample)."""
    from .reduce import Reduction

    out = {"untrained": _sparse_unit(u_train, u_test, alphas)}
    X, Y = sample[0], sample[1]
    Ys = Y[np.random.default_rng(seed).permutation(Y.shape[0])]
    h = X.shape[0] // 2
    lx = np.intersect1d(_live(X[:h]), _live(X[h:]))
    ly = np.intersect1d(_live(Ys[:h]), _live(Ys[h:]))
    if lx.size and ly.size:
        out["shuffled"] = _sparse_unit(Reduction.from_arrays(X[:h, lx], Ys[:h, ly]),
                                       Reduction.from_arrays(X[h:, lx], Ys[h:, ly]), alphas)
    else:
        out["shuffled"] = {"alphas": list(alphas), "skipped": "no unit is live on both halves of the sample"}
    return out


# ------------------------------------------------------------------------------------------ the pipeline
def _versions() -> dict:
    import scipy

    from . import __version__

    out = {"repmatch": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "platform": platform.platform()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _say(cfg, msg):
    if cfg.progress:
        print(f"[reproduce] {msg}", file=sys.stderr, flush=True)


def run(config: ReproduceConfig) -> dict:
    """Run (or resume) the reproduce pipeline for ``config``; write and return ``results.json``'s dict.

    The run directory is locked for the duration (``OUT/repmatch.lock``; a second run is refused with
    :class:`repmatch._rundir.RunDirLocked`). In a read-only run directory a fully cached run only
    reads (nothing is written; ``provenance["read_only"]`` is true); anything else is refused.
    """
    with _rundir.RunLock(config.out, option="--out", config=config.to_dict()) as lock:
        return _run(config, lock.readonly)


def _run(config: ReproduceConfig, readonly: bool) -> dict:
    from . import activations
    from .io import save_reductions
    from .nets import CheckpointError, UnsafeCheckpointError, build_model, load_checkpoint, read_checkpoint, \
        train_seeds
    from .nets.evaluation import evaluation_data
    from .nets.training import recipe_text
    from .nets.transformers import comparison_layers, is_transformer, layer_labels

    cfg = config
    t_start = time.perf_counter()
    out = cfg.out
    if readonly:  # checked before any work: only a finished run of this configuration can be read
        if not os.path.exists(os.path.join(out, "results.json")) or _rundir.previous_results(out, cfg.to_dict()):
            raise _rundir.RunDirReadOnly(
                f"--out: {out} is read-only and holds no finished results of this configuration; make it "
                "writable or choose another --out")
    else:
        os.makedirs(out, exist_ok=True)
    cache = _Cache(os.path.join(out, "cache"), readonly)

    # ---- 1. train (resumable inside train()); the directory is named after the training config so that
    # changing --epochs/--width/--n-train trains new networks instead of clashing with old checkpoints.
    train_cfg = {"arch": cfg.arch, "dataset": cfg.dataset, "epochs": cfg.epochs, "width": cfg.width,
                 "n_train": cfg.n_train, "n_test": cfg.n_test}
    nets_dir = os.path.join(out, "nets", "train-" + _hash(train_cfg)[:10])
    train_cfg_path = os.path.join(nets_dir, "train-config.json")
    if not readonly and _read_text(train_cfg_path) != json.dumps(train_cfg, indent=2):  # nothing rewritten needlessly
        os.makedirs(nets_dir, exist_ok=True)
        atomic_write_text(train_cfg_path, json.dumps(train_cfg, indent=2))
    need_training = [s for s in cfg.seeds if not _finished(os.path.join(nets_dir, f"seed{s}"), cfg.epochs)]
    if need_training:
        cache.need(f"seed(s) {need_training} are not trained")
        for s in need_training:  # a damaged last.pt is not resumed from: that seed starts over
            last = os.path.join(nets_dir, f"seed{s}", "last.pt")
            if os.path.exists(last) and not os.path.exists(os.path.join(os.path.dirname(last), "best.pt")):
                # best.pt is written before last.pt: without it, resuming could never rewrite it
                _rundir.quarantine(last, "has no best.pt beside it", f"seed {s} is trained from the start")
            elif os.path.exists(last):
                try:
                    read_checkpoint(last)
                except UnsafeCheckpointError:
                    raise
                except CheckpointError as exc:
                    _rundir.quarantine(last, exc.reason, f"seed {s} is trained from the start")
        _say(cfg, f"training {cfg.arch} on {cfg.dataset}, seeds {need_training}, {cfg.epochs} epochs -> {nets_dir}")
        t0 = time.perf_counter()
        train_seeds(cfg.arch, cfg.dataset, need_training, out=nets_dir, epochs=cfg.epochs, width=cfg.width,
                    n_train=cfg.n_train, n_test=cfg.n_test, data_dir=cfg.data_dir, device=cfg.device,
                    progress=cfg.progress)  # per-epoch lines; bars only on a terminal
        cache.seconds["train"] = time.perf_counter() - t0
    models, infos, ckpt_hash = {}, {}, {}
    for s in cfg.seeds:
        path = os.path.join(nets_dir, f"seed{s}", "best.pt")
        try:
            models[s], infos[s] = load_checkpoint(path, device=cfg.device)
        except UnsafeCheckpointError:
            raise  # a planted pickle is refused, never overwritten unseen
        except CheckpointError as exc:  # damaged (truncated, empty...): retrain that seed, deterministically
            cache.need(f"{path} is damaged and seed {s} must be retrained")
            _rundir.quarantine(path, exc.reason, f"retraining seed {s}")
            train_seeds(cfg.arch, cfg.dataset, [s], out=nets_dir, epochs=cfg.epochs, width=cfg.width,
                        n_train=cfg.n_train, n_test=cfg.n_test, data_dir=cfg.data_dir, device=cfg.device,
                        progress=cfg.progress, resume=False)
            models[s], infos[s] = load_checkpoint(path, device=cfg.device)
        ckpt_hash[s] = _file_hash(path)
    info0 = infos[cfg.seeds[0]]
    data_info = info0["data"]

    # ---- 2. the test images (or text windows), preprocessed exactly as in training (as `repmatch extract` does);
    # with images="all", every image (test images first): more samples per neuron
    n_test, loader = evaluation_data(data_info, dataset=cfg.dataset, data_dir=cfg.data_dir, n_train=cfg.n_train,
                                     n_test=cfg.n_test, batch_size=cfg.batch_size, all_images=cfg.images == "all")
    half = n_test // 2

    data_key = {"dataset": cfg.dataset, "n_test": n_test, "n_train": cfg.n_train, "image_size": data_info["image_size"],
                "batch_size": cfg.batch_size, "images": cfg.images,
                **({"text_sha256": data_info["sha256"]} if "sha256" in data_info else {})}
    inner_progress = cfg.progress and stderr_is_tty()  # nested bars only on a terminal
    # CNNs: every ReLU; transformers: every block's MLP activation and output (every token a sample);
    # or the layers asked for.
    model0 = models[cfg.seeds[0]]
    if cfg.layers is not None:
        layer_names = list(activations.resolve_layers(model0, list(cfg.layers)))
    else:
        layer_names = comparison_layers(model0) if is_transformer(model0) else list(activations.resolve_layers(model0))
    labels = layer_labels(model0) if is_transformer(model0) else {}
    data_key["layers"] = layer_names  # reductions and samples hold exactly these layers
    # How each layer's output is read (sequence or channels, and why), from one batch: results.json says it.
    layouts = {d["name"]: d for d in activations.describe_layers(model0, next(iter(loader(0, min(n_test, 8)))),
                                                                 layer_names)}

    def untrained(b):
        model = build_model(seed=UNTRAINED_SEED_OFFSET + b, **info0["model_kwargs"]).to(cfg.device)
        return model.eval()

    # ---- lazy, cached resources: reductions (two halves of the test images, merged for the full set)
    # and in-memory row samples.
    memo: dict = {}

    def reductions(a, b, null: bool):
        key = ("red", a, b, null)
        if key in memo:
            return memo[key]
        deps = {"a": ckpt_hash[a], "b": (UNTRAINED_SEED_OFFSET + b, info0["model_kwargs"]) if null else ckpt_hash[b],
                "data": data_key, "conv_mode": cfg.conv_mode}
        h = _hash(deps)
        name = f"reductions-{'untrained' if null else 'trained'}-{a}-{b}"
        halves = []
        for part, (lo, hi) in enumerate(((0, half), (half, n_test))):
            path = cache.npz_path(f"{name}-half{part}", h)
            # a damaged file (truncated, CRC error, missing layers) is a miss, with a warning
            reds = _rundir.load_cached_reductions(path, layer_names) if os.path.exists(path) else None
            if reds is not None:
                cache.reused.append(f"{name}-half{part}")
            else:
                cache.need(f"{os.path.basename(path)} is not cached")
                _say(cfg, f"reducing seed {a} vs {'untrained ' if null else 'seed '}{b}, test images {lo}..{hi}")
                mb = untrained(b) if null else models[b]
                t0 = time.perf_counter()
                reds = activations.reduce_pair(models[a], mb, loader(lo, hi), layer_names, conv_mode=cfg.conv_mode,
                                               device=cfg.device, progress=inner_progress)
                # The rows are reduced where the networks run (on a GPU with --device cuda); the
                # measures are solved on host copies (O(n^2) numbers), the same whether the
                # reductions were just computed or read back from the cache. LAPACK's pivoted
                # Cholesky beats a loop of small device kernels on layers of a few hundred units.
                reds = {k: r if r.device is None else r.to(None) for k, r in reds.items()}
                cache.seconds["reduce"] = cache.seconds.get("reduce", 0.0) + time.perf_counter() - t0
                save_reductions(path, reds, metadata=deps)
                cache.computed.append(f"{name}-half{part}")
            halves.append(reds)
        full = {k: halves[0][k].merge(halves[1][k]) for k in layer_names}
        memo[key] = (full, halves[0], halves[1])
        return memo[key]

    from .reproduce_units import rows_per_image, sample_rows

    k_rows = rows_per_image(cfg.sample_rows, n_test)

    def sample(a, b):
        """{layer: (X, Y, groups)}: up to k_rows positions of every image (groups = image index)."""
        key = ("sample", a, b)
        if key in memo:
            return memo[key]
        deps = {"a": ckpt_hash[a], "b": ckpt_hash[b], "data": data_key, "k": k_rows, "sampler": "per-image-v1"}
        path = cache.npz_path(f"sample-{a}-{b}", _hash(deps))
        arrs = _rundir.load_cached_sample(path, layer_names, groups=True) if os.path.exists(path) else None
        if arrs is not None:
            cache.reused.append(f"sample-{a}-{b}")
        else:
            cache.need(f"{os.path.basename(path)} is not cached")
            _say(cfg, f"sampling rows of seeds {a} and {b} ({k_rows} position(s) per input) for the shuffled null")
            arrs = sample_rows(models[a], models[b], loader(0, n_test), layer_names, rows_per_image=k_rows,
                               seed=0, device=cfg.device)
            # float32 on disk loses nothing: the activations come from float32 forward passes.
            atomic_savez(path, **{f"{i}_{s}": (arrs[layer][j].astype(np.float32) if j < 2 else arrs[layer][j])
                                  for i, layer in enumerate(layer_names) for j, s in enumerate("xyg")})
            cache.computed.append(f"sample-{a}-{b}")
        memo[key] = arrs
        return arrs

    # ---- 3. units of work per pair and layer
    pairs = list(itertools.combinations(cfg.seeds, 2))
    results_pairs = []
    bar = progress(range(len(pairs) * len(layer_names)), total=len(pairs) * len(layer_names),
                    desc="pairs x layers", enabled=cfg.progress)
    bar_iter = iter(bar)
    for pi, (a, b) in enumerate(pairs):
        base = {"a": ckpt_hash[a], "b": ckpt_hash[b], "data": data_key, "conv_mode": cfg.conv_mode}
        null_base = {**base, "b": (UNTRAINED_SEED_OFFSET + b, info0["model_kwargs"])}
        sample_base = {"a": ckpt_hash[a], "b": ckpt_hash[b], "data": data_key, "k": k_rows, "rows": cfg.sample_rows}
        figure_extras = {"keep_matrix": pi == 0}
        per_layer = {}
        for layer in layer_names:
            p = f"pair{a}-{b}/{layer}"
            full = lambda: reductions(a, b, False)[0][layer]  # noqa: E731
            L = {}
            L["subspace"] = cache.unit(f"subspace/{p}", {**base, "eps": cfg.eps_grid},
                                       lambda: _subspace_unit(full(), cfg.eps_grid))
            L["simple"] = cache.unit(f"simple/{p}", {**base, "eps": cfg.simple_eps, "max": cfg.simple_max_units},
                                     lambda: _simple_unit(full(), cfg.simple_eps, cfg.simple_max_units))
            L["alignment"] = cache.unit(f"alignment/{p}", {**base, "matrix": pi == 0},
                                        lambda: _alignment_unit(full(), keep_matrix=pi == 0))
            L["reference"] = cache.unit(f"reference/{p}", base, lambda: _reference_unit(full()))
            L["untrained"] = cache.unit(
                f"untrained/{p}", {**null_base, "eps": cfg.eps_grid, **figure_extras},
                lambda: _untrained_unit(reductions(a, b, True)[0][layer], cfg.eps_grid,
                                        halves=[reductions(a, b, True)[k][layer] for k in (1, 2)], **figure_extras))
            L["shuffled"] = cache.unit(
                f"shuffled/{p}", {**sample_base, "eps": cfg.eps_grid, "perm": cfg.permutations, **figure_extras},
                lambda: _shuffled_unit(*sample(a, b)[layer][:2], cfg.eps_grid, cfg.permutations, seed=pi,
                                       **figure_extras))
            L["simple_nulls"] = cache.unit(
                f"simple_nulls/{p}", {**null_base, **sample_base, "eps": cfg.simple_eps, "max": cfg.simple_max_units},
                lambda: _simple_nulls_unit(reductions(a, b, True)[0][layer], *sample(a, b)[layer][:2], pi,
                                           cfg.simple_eps, cfg.simple_max_units))
            L["soft"] = cache.unit(f"soft/{p}", base, lambda: _soft_unit(full()))
            L["calibration"] = cache.unit(
                f"calibration/{p}", {**base, **sample_base, "rot": cfg.n_rotations, "boot": cfg.n_boot},
                lambda: _calibration_unit(*[reductions(a, b, False)[k][layer] for k in range(3)], *sample(a, b)[layer],
                                          n_rotations=cfg.n_rotations, n_boot=cfg.n_boot, seed=pi))
            L["sparse"] = cache.unit(f"sparse/{p}", {**base, **sample_base, "alphas": cfg.alphas},
                                     lambda: _sparse_unit(reductions(a, b, False)[1][layer],
                                                          reductions(a, b, False)[2][layer], cfg.alphas,
                                                          sample=lambda: sample(a, b)[layer][:2]))
            if pi == 0:  # the sparse-prediction figures and table (first pair) get both nulls
                L["sparse_nulls"] = cache.unit(
                    f"sparse_nulls/{p}", {**null_base, **sample_base, "alphas": cfg.alphas},
                    lambda: _sparse_nulls_unit(reductions(a, b, True)[1][layer], reductions(a, b, True)[2][layer],
                                               sample(a, b)[layer], cfg.alphas, seed=pi))
            L["clusters"] = cache.unit(f"clusters/{p}", {**base, "k": cfg.n_clusters},
                                       lambda: _clusters_unit(full(), cfg.n_clusters, seed=pi))
            L["mi"] = cache.unit(f"mi/{p}", {**sample_base, "max": cfg.mi_max_units},
                                 lambda: _mi_unit(*sample(a, b)[layer][:2], cfg.mi_max_units))
            per_layer[layer] = L
            next(bar_iter, None)
        results_pairs.append({"a": a, "b": b, "layers": per_layer})
        for k in [k for k in memo if k[1:3] == (a, b)]:
            del memo[k]  # free the pair's reductions and samples
    if hasattr(bar, "close"):
        bar.close()

    # ---- 4. layer x layer heatmap between the first two seeds
    heat = None
    if cfg.heatmap:
        a, b = cfg.seeds[0], cfg.seeds[1]

        def heatmap():
            from .layerid import linear_cka_matrix

            _say(cfg, f"layer x layer heatmap, seed {a} vs seed {b} and vs untrained (avgpool)")
            acts = {}
            for name, model in (("a", models[a]), ("b", models[b]), ("u", untrained(b))):
                acts[name] = activations.extract(model, loader(0, n_test), layer_names, conv_mode="avgpool",
                                                 seq_mode="mean", device=cfg.device)
            M = linear_cka_matrix(acts["a"], acts["b"], layer_names)
            U = linear_cka_matrix(acts["a"], acts["u"], layer_names)
            n_perm = HEATMAP_PERMUTATIONS
            g = np.random.default_rng(0)
            S = np.zeros_like(M)
            for _ in range(n_perm):  # the same image permutation for every layer of B
                S += linear_cka_matrix(acts["a"], acts["b"], layer_names, perm=g.permutation(n_test))
            return {"a": a, "b": b, "measure": "linear_cka", "conv_mode": "avgpool", "layers": layer_names,
                    "matrix": M.tolist(), "untrained_matrix": U.tolist(), "shuffled_matrix": (S / n_perm).tolist(),
                    "n_permutations": n_perm}

        heat = cache.unit("heatmap", {"a": ckpt_hash[a], "b": ckpt_hash[b], "data": data_key,
                                      "perm": HEATMAP_PERMUTATIONS,
                                      "untrained": (UNTRAINED_SEED_OFFSET + b, info0["model_kwargs"])}, heatmap)

    # ---- 5. results.json
    layers_info = []
    first = results_pairs[0]["layers"]
    for layer in layer_names:
        s = first[layer]["subspace"]
        layers_info.append({"name": layer, "n_units": s["n_x"], "n_samples": s["n_samples"],
                            "samples_per_neuron": s["samples_per_neuron"], "label": labels.get(layer, layer),
                            "layout": layouts[layer]["layout"], "layout_reason": layouts[layer]["reason"]})
    networks = {}
    for s in cfg.seeds:
        inf = infos[s]
        networks[str(s)] = {"seed": s, "test_acc": float(inf.get("best_test_acc", inf.get("test_acc", float("nan")))),
                            "best_epoch": int(inf.get("best_epoch", inf.get("epoch", 0))),
                            "epochs": int(inf["config"]["epochs"]),
                            "checkpoint": os.path.relpath(os.path.join(nets_dir, f"seed{s}", "best.pt"), out),
                            "sha256_20": ckpt_hash[s]}
    results = {
        "format": RESULTS_FORMAT,
        "question": "Do networks trained from different seeds learn the same representation, and at what granularity?",
        "config": cfg.to_dict(),
        "versions": _versions(),
        "seeds": list(cfg.seeds),
        "pairs": [[a, b] for a, b in pairs],
        "authors_eps": list(AUTHORS_EPS),
        "eps_grid": list(cfg.eps_grid),
        "untrained_seed_offset": UNTRAINED_SEED_OFFSET,
        "significance": {"alpha": cfg.alpha, "n_permutations": cfg.permutations,
                         "min_p": 1.0 / (1 + cfg.permutations),
                         "testable": 1.0 / (1 + cfg.permutations) <= cfg.alpha},
        "data": {**{k: v for k, v in data_info.items() if k not in ("mean", "std")}, "n_test_used": n_test,
                 "images": cfg.images, "rows_per_image_in_sample": k_rows,
                 "split_for_sparse": [half, n_test - half]},
        "networks": networks,
        "layers": layers_info,
        "recipe": recipe_text(info0["config"]),
        "results": results_pairs,
        "heatmap": heat,
        "provenance": {"computed": list(cache.computed), "reused": list(cache.reused),
                       "seconds": time.perf_counter() - t_start,
                       "seconds_by_unit": dict(cache.seconds),
                       "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    results = _jsonable(results)
    if readonly:
        results["provenance"]["read_only"] = True  # everything was cached; nothing written
        return results
    # the report files of a different configuration are kept (moved to OUT/previous/config-<hash>/)
    _rundir.archive_previous_results(out, results["config"])
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(results, indent=1))
    return results


def _read_text(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


def _split_pair_key(key: str, layer_names) -> tuple:
    """Split a ``pairs="all"`` reduction key ``"layerA|layerB"`` into its two layer names."""
    la, sep, lb = str(key).partition("|")
    if not sep or la not in layer_names or lb not in layer_names:
        raise ValueError(f"cannot split reduction key {key!r} into two layer names")
    return la, lb


def _finished(seed_dir: str, epochs: int) -> bool:
    """Whether ``seed_dir`` holds a finished training run (train.json lists ``epochs`` epochs)."""
    path = os.path.join(seed_dir, "train.json")
    if not (os.path.exists(path) and os.path.exists(os.path.join(seed_dir, "best.pt"))):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    return len(doc.get("history", [])) >= epochs


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


def load_results(run_dir) -> dict:
    """Read ``run_dir/results.json`` (or a path to the file itself)."""
    path = os.fspath(run_dir)
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no results.json at {path} (write one with `repmatch reproduce --out "
                                f"{os.path.dirname(path) or '.'}` first)")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except ValueError as exc:  # truncated, not JSON, not UTF-8
        raise ValueError(f"{path} is damaged: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a repmatch reproduce results file (format {RESULTS_FORMAT})")
    return doc
