"""Real networks: offline datasets, the authors' architectures and seeded, resumable training.

Needs PyTorch (``pip install 'repmatch[torch]'``); ``import repmatch`` alone never imports it.
See docs/networks.md.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "repmatch.nets needs PyTorch: pip install 'repmatch[torch]' (install the CPU build of torch first where you have no GPU)"
    ) from exc

from .architectures import ARCHITECTURES, VGG_CONFIGS, build_model, init_weights, input_size_for
from .datasets import (
    DATASETS,
    NATIVE_SIZE,
    BatchLoader,
    DatasetNotFoundError,
    ImageDataset,
    find_dataset_dir,
    load_dataset,
    read_cifar10,
    read_idx,
)
from .checkpoints import CheckpointError, UnsafeCheckpointError, read_checkpoint
from .training import TrainResult, default_lr, evaluate, load_checkpoint, milestones, train, train_seeds

__all__ = [
    "ARCHITECTURES",
    "VGG_CONFIGS",
    "DATASETS",
    "NATIVE_SIZE",
    "BatchLoader",
    "DatasetNotFoundError",
    "ImageDataset",
    "TrainResult",
    "build_model",
    "init_weights",
    "input_size_for",
    "find_dataset_dir",
    "load_dataset",
    "read_cifar10",
    "read_idx",
    "train",
    "train_seeds",
    "evaluate",
    "load_checkpoint",
    "read_checkpoint",
    "CheckpointError",
    "UnsafeCheckpointError",
    "default_lr",
    "milestones",
]
