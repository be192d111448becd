"""Stage 0 of the reproduce pipeline: the configuration, checked once, and the protocol's constants.

Every field is validated with the shared vocabulary of :mod:`repmatch._validate` (the API and the
CLI use the same functions), so a bad value gets the same message everywhere; the CLI prefixes the
option's name.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .._validate import check_eps, check_eps_grid, check_positive_int
from ..protocol import AUTHORS_EPS, DEFAULT_EPS_GRID, PIPELINE_ALPHAS

__all__ = ["ReproduceConfig", "RESULTS_FORMAT", "DEFAULT_PERMUTATIONS", "DEFAULT_ALPHA", "IMAGES",
           "HEATMAP_PERMUTATIONS", "UNTRAINED_SEED_OFFSET", "UNIT_VERSION", "AUTHORS_EPS", "DEFAULT_EPS_GRID"]

#: Format of results.json. Version 2: every unit holds the measures' result objects (``to_dict``).
RESULTS_FORMAT = "repmatch-reproduce-2"
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
#: Part of every cache hash; bump it when the computation or the layout of a unit changes so that old
#: caches are recomputed, not misread. 4: units hold result objects' to_dict.
UNIT_VERSION = 4
#: Default epochs per architecture family, chosen to reach decent accuracy quickly on a CPU.
_DEFAULT_EPOCHS = {"smallcnn": 10, "vit-tiny": 10, "char-tiny": 10}
CONV_MODES = ("positions", "avgpool", "flatten")


def _canonical_arch(arch) -> str:
    from ..nets import ARCHITECTURES

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


def _check_seeds(seeds) -> tuple:
    seeds = list(seeds) if not isinstance(seeds, (int, str)) else [seeds]
    try:
        seeds = [check_positive_int(s, "seeds", minimum=0) for s in seeds]
    except ValueError:
        raise ValueError(f"seeds must be non-negative integers, got {seeds!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if len(seeds) < 2:
        raise ValueError(f"seeds must list at least 2 seeds to compare, got {seeds}")
    return tuple(seeds)


def _check_fraction(v, name) -> float:
    """A number strictly between 0 and 1."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not 0 < float(v) < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")
    return float(v)


@dataclass
class ReproduceConfig:
    """Everything a reproduce run depends on; see :func:`repmatch.reproduce.reproduce` for each field."""

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
        from ..nets import DATASETS
        from ..nets.datasets import _canonical
        from ..nets.text import TEXT_DATASETS

        self.arch = _canonical_arch(self.arch)
        try:
            self.dataset = _canonical(self.dataset)
        except ValueError:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS + TEXT_DATASETS)}; got {self.dataset!r}") from None
        if (self.arch == "char-tiny") != (self.dataset in TEXT_DATASETS):
            raise ValueError(f"dataset {self.dataset} does not fit arch {self.arch}: char-tiny is trained on the text "
                             f"datasets {', '.join(TEXT_DATASETS)}, every other architecture on images")
        self.seeds = _check_seeds(self.seeds)
        if self.epochs is None:
            self.epochs = _DEFAULT_EPOCHS.get(self.arch, 30)
        self.epochs = check_positive_int(self.epochs, "epochs")
        if self.out is None:
            self.out = os.path.join("runs", f"{self.arch}-{self.dataset}")
        self.out = os.fspath(self.out)
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                setattr(self, name, check_positive_int(getattr(self, name), name, minimum=2))
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"width must be a positive number, got {self.width!r}")
        self.width = float(self.width)
        try:
            grid = check_eps_grid(self.eps_grid, "eps_grid")
        except ValueError:
            raise ValueError(f"eps_grid must be a non-empty list of values in [0, 1), got {self.eps_grid!r}") from None
        # The authors' values are always on the grid: the headline figure and table are drawn at them.
        self.eps_grid = tuple(sorted(set(float(e) for e in grid) | set(AUTHORS_EPS)))
        self.simple_eps = check_eps(self.simple_eps, "simple_eps")
        if self.simple_eps == 0:
            raise ValueError(f"simple_eps must be in (0, 1), got {self.simple_eps!r}")
        self.permutations = check_positive_int(self.permutations, "permutations")
        if self.conv_mode not in CONV_MODES and not str(self.conv_mode).startswith("sample:"):
            raise ValueError(f"conv_mode must be positions, avgpool, flatten or sample:K; got {self.conv_mode!r}")
        for name in ("sample_rows", "n_clusters", "batch_size", "mi_max_units", "simple_max_units", "n_rotations"):
            setattr(self, name, check_positive_int(getattr(self, name), name))
        self.n_boot = check_positive_int(self.n_boot, "n_boot", minimum=2)
        if self.images not in IMAGES:
            raise ValueError(f"images must be one of {', '.join(IMAGES)}; got {self.images!r}")
        if self.images == "auto":
            self.images = "all" if self.dataset == "digits" else "test"
        self.alpha = _check_fraction(self.alpha, "alpha")
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
