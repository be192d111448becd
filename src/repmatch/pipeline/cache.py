"""Stage: the cache. One file per unit of work, keyed by a hash of exactly what it depends on.

:class:`Cache` stores JSON units (``OUT/cache/<unit>__pair<a>-<b>__<layer>.json``) and names the
``.npz`` files of reductions and in-memory samples. :class:`Keys` is the one place where the
dependencies of every cached thing are written down: checkpoint hashes, the data subset, the conv
mode, the measure's own parameters and the seed of its random draws. A cached unit is reused when its
hash matches, so an interrupted run finishes only the remaining units and changing one parameter
recomputes only what depends on it. ``tests/test_reproduce_cache.py`` checks that changing each
parameter changes exactly the keys that list it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings

import numpy as np

from .. import _rundir
from .._atomic import atomic_write_text
from .config import UNIT_VERSION, UNTRAINED_SEED_OFFSET

__all__ = ["Cache", "Keys", "jsonable", "digest", "file_digest"]


def jsonable(obj):
    """Make numpy scalars/arrays, tuples and non-finite floats JSON-safe (NaN/inf become None).

    Parameters
    ----------
    obj : object
        Nested dicts, lists, tuples, arrays and scalars.

    Returns
    -------
    object
        The same structure with string keys, lists for tuples and arrays, Python bools, ints and
        floats, and None for non-finite floats; other objects unchanged.
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    return obj


def digest(obj) -> str:
    """A short SHA-256 of ``obj``'s canonical JSON (keys sorted).

    Parameters
    ----------
    obj : object
        Anything :func:`jsonable` makes JSON-serialisable.

    Returns
    -------
    str
        The first 20 hex digits.
    """
    return hashlib.sha256(json.dumps(jsonable(obj), sort_keys=True).encode()).hexdigest()[:20]


def file_digest(path: str) -> str:
    """A short SHA-256 of a file's bytes (read in 1 MiB chunks).

    Parameters
    ----------
    path : str

    Returns
    -------
    str
        The first 20 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


class Keys:
    """The dependencies of every cached thing of one run (see the module docstring).

    Parameters
    ----------
    cfg : ReproduceConfig
    ckpt_hash : dict
        seed -> digest of its checkpoint file.
    data_key : dict
        What selects and preprocesses the compared inputs (dataset, subset, image size, batch size,
        layers).
    model_kwargs : dict
        How the untrained null networks are built (with seed ``UNTRAINED_SEED_OFFSET + b``).
    k_rows : int
        Positions per input in the in-memory sample.
    """

    def __init__(self, cfg, ckpt_hash: dict, data_key: dict, model_kwargs: dict, k_rows: int):
        self.cfg, self.ckpt_hash, self.data_key, self.model_kwargs, self.k_rows = cfg, ckpt_hash, data_key, model_kwargs, k_rows

    def network(self, seed: int, untrained: bool = False):
        return (UNTRAINED_SEED_OFFSET + seed, self.model_kwargs) if untrained else self.ckpt_hash[seed]

    def reductions(self, a: int, b: int, untrained: bool) -> dict:
        """The streamed reductions (two halves of the inputs) of seed ``a`` against ``b`` or its null."""
        return {"a": self.network(a), "b": self.network(b, untrained), "data": self.data_key,
                "conv_mode": self.cfg.conv_mode}

    def sample(self, a: int, b: int) -> dict:
        """The in-memory rows of the shuffled null: ``k_rows`` positions of every input (seed 0)."""
        return {"a": self.network(a), "b": self.network(b), "data": self.data_key, "k": self.k_rows,
                "rows": self.cfg.sample_rows, "seed": 0, "sampler": "per-image-v1"}

    def unit(self, name: str, a: int, b: int, pair_index: int) -> dict:
        """The dependencies of unit ``name`` on the pair (a, b), the ``pair_index``-th pair of the run."""
        cfg = self.cfg
        full = self.reductions(a, b, False)
        null = self.reductions(a, b, True)
        sample = self.sample(a, b)
        first = pair_index == 0  # figures are drawn for the first pair: it keeps their extras
        seed = {"rng": pair_index}  # the seed of the unit's random draws
        table = {
            "subspace": [full, {"eps": cfg.eps_grid}],
            "simple": [full, {"eps": cfg.simple_eps, "max": cfg.simple_max_units}],
            "alignment": [full, {"matrix": first}],
            "reference": [full],
            "soft": [full],
            "untrained": [null, {"eps": cfg.eps_grid, "keep_matrix": first}],
            "shuffled": [sample, {"eps": cfg.eps_grid, "perm": cfg.permutations, "keep_matrix": first}, seed],
            "simple_nulls": [null, sample, {"eps": cfg.simple_eps, "max": cfg.simple_max_units}, seed],
            "calibration": [full, sample, {"rot": cfg.n_rotations, "boot": cfg.n_boot}, seed],
            "sparse": [full, sample, {"alphas": cfg.alphas}],
            "sparse_nulls": [null, sample, {"alphas": cfg.alphas}, seed],
            "clusters": [full, {"k": cfg.n_clusters}, seed],
            "mi": [sample, {"max": cfg.mi_max_units}],
        }
        if name not in table:
            raise ValueError(f"unknown unit {name!r}; units are {', '.join(table)}")
        out = {"unit": name}
        for i, part in enumerate(table[name]):
            out[f"part{i}"] = part
        return out

    def heatmap(self, a: int, b: int, n_permutations: int) -> dict:
        return {"a": self.network(a), "b": self.network(b), "data": self.data_key, "perm": n_permutations,
                "untrained": self.network(b, True)}


class Cache:
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
        atomic_write_text(self._path(key), json.dumps({"key": key, "hash": h, "value": jsonable(value)}))

    @staticmethod
    def hash(deps: dict) -> str:
        # The version is part of every hash: bump UNIT_VERSION when a unit's computation changes.
        return digest({"unit_version": UNIT_VERSION, **deps})

    def unit(self, key: str, deps: dict, compute):
        """The cached value of ``key`` if its dependencies hash the same, else ``compute()`` (stored).

        Warnings raised while computing are kept in the value (``"warnings"``), those about the run
        directory itself are passed on."""
        h = self.hash(deps)
        value = self.get(key, h)
        if value is not None:
            self.reused.append(key)
            return value
        self.need(f"unit {key} is not cached")
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
        value = jsonable(value)
        self.put(key, h, value)
        self.computed.append(key)
        self.seconds[key.split("/")[0]] = self.seconds.get(key.split("/")[0], 0.0) + time.perf_counter() - t0
        return value

    def npz_path(self, key: str, h: str) -> str:
        return self._path(f"{key}-{h}", ".npz")
