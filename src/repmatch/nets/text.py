"""An offline text corpus for the character-level transformer: Python's own reference documentation.

``python-docs`` is the text of ``pydoc_data.topics``, the module of the standard library that holds
the Python Language Reference's topics for ``help()`` (about 465,000 characters on Python 3.11,
79 topics). It ships with every CPython installation, so nothing is downloaded, and it is covered
by the Python Software Foundation License (the documentation of Python is distributed under the
PSF License Agreement), which allows its use and redistribution. The topics are joined in sorted
key order, each after a ``"\\n\\n== <topic> ==\\n"`` line; characters outside printable ASCII,
newline and tab are replaced by ``"?"`` (about 0.1% of them). The text differs between Python
versions: its SHA-256 is recorded (``describe()["sha256"]``) with every run.

Split: the first 90% of the characters are the training text, the last 10% the test text, so no
test window overlaps training text. The vocabulary is the sorted set of characters of the whole
text. Samples are windows of ``context`` characters; the target of each position is the next
character. Training batches take windows at random offsets of the training text (``n_train`` per
epoch, drawn from ``(seed, epoch)``), test windows are the consecutive, non-overlapping windows of
the test text (``n_test`` of them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TEXT_DATASETS", "TextDataset", "TextLoader", "load_text_dataset", "corpus_text"]

TEXT_DATASETS = ("python-docs",)
#: Share of the characters that are training text (the rest, at the end, is test text).
TRAIN_SHARE = 0.9


def corpus_text(name: str = "python-docs") -> str:
    """The raw text of a corpus in :data:`TEXT_DATASETS` (see the module docstring).

    Parameters
    ----------
    name : str, default "python-docs"
        The corpus.

    Returns
    -------
    str
        The text, characters outside printable ASCII, newline and tab replaced by "?".

    Raises
    ------
    ValueError
        When ``name`` is not in :data:`TEXT_DATASETS`.
    FileNotFoundError
        When this Python lacks the ``pydoc_data`` package.
    """
    if name != "python-docs":
        raise ValueError(f"dataset must be one of {TEXT_DATASETS}, got {name!r}")
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # pragma: no cover - stripped-down Python builds
        raise FileNotFoundError("dataset 'python-docs' needs the standard library's pydoc_data package, which this "
                                "Python installation lacks (some distributions split it out: install the full "
                                "standard library, e.g. Debian's libpython3-stdlib)") from exc
    parts = [f"\n\n== {k} ==\n{topics[k]}" for k in sorted(topics)]
    text = "".join(parts)
    return "".join(c if (32 <= ord(c) < 127 or c in "\n\t") else "?" for c in text)


class TextLoader:
    """Batches ``(x, y)`` of int64 (batch, context) windows and their next-character targets."""

    def __init__(self, ids, starts, context, *, batch_size=256):
        import torch

        from .._validate import check_positive_int

        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        self.starts = torch.from_numpy(np.asarray(starts, dtype=np.int64))
        self.context = int(context)

    def __len__(self) -> int:
        return (len(self.starts) + self.batch_size - 1) // self.batch_size

    @property
    def n_samples(self) -> int:
        return int(len(self.starts))

    def __iter__(self):
        import torch

        offs = torch.arange(self.context + 1)
        for lo in range(0, len(self.starts), self.batch_size):
            win = self.ids[self.starts[lo:lo + self.batch_size, None] + offs]  # (b, context + 1)
            yield win[:, :-1], win[:, 1:]


@dataclass
class TextDataset:
    """A character corpus split into training and test text, with its vocabulary (module docstring).

    ``y_train``/``y_test`` are the start offsets of the windows (so ``len`` counts samples, as for
    :class:`~repmatch.nets.ImageDataset`); ``num_classes`` is the vocabulary size.
    """

    name: str
    vocab: str
    train_ids: np.ndarray
    test_ids: np.ndarray
    context: int
    n_train: int
    y_test: np.ndarray
    sha256: str
    source: str
    info: dict = field(default_factory=dict)
    kind: str = "text"

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    @property
    def y_train(self) -> np.ndarray:
        return np.arange(self.n_train)  # one sample per training window of an epoch

    def encode(self, text: str) -> np.ndarray:
        """Character ids of ``text``; characters outside the vocabulary are a ValueError."""
        index = {c: i for i, c in enumerate(self.vocab)}
        bad = sorted({c for c in text if c not in index})
        if bad:
            raise ValueError(f"text holds characters outside the vocabulary: {bad[:10]!r}")
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).ravel())

    def loader(self, split: str = "test", *, batch_size: int = 256, shuffle: bool = False,
               augment: bool = False, seed: int = 0, epoch: int = 0, lo: int = 0, hi: int | None = None):
        """Batches of (windows, next characters) of ``split``; ``lo:hi`` selects test windows.

        Training windows start at offsets drawn from ``(seed, epoch)`` (``shuffle`` and ``augment``
        are accepted for the image loaders' signature: windows are always random for training).
        """
        if split == "train":
            g = np.random.default_rng([int(seed), int(epoch), 9173])
            starts = g.integers(0, len(self.train_ids) - self.context, size=self.n_train)
            return TextLoader(self.train_ids, starts, self.context, batch_size=batch_size)
        if split != "test":
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return TextLoader(self.test_ids, self.y_test[lo:hi], self.context, batch_size=batch_size)

    def describe(self) -> dict:
        """JSON-friendly summary, stored in checkpoints."""
        return {"name": self.name, "kind": "text", "n_train": int(self.n_train), "n_test": int(len(self.y_test)),
                "context": self.context, "num_classes": self.num_classes, "vocab": self.vocab,
                "train_chars": int(len(self.train_ids)), "test_chars": int(len(self.test_ids)),
                "sha256": self.sha256, "source": self.source, "image_size": None, "in_channels": None, **self.info}


def load_text_dataset(name: str = "python-docs", *, context: int = 64, n_train: int | None = None,
                      n_test: int | None = None) -> TextDataset:
    """Load a corpus of :data:`TEXT_DATASETS` (module docstring).

    ``n_train``: training windows per epoch (default: the training characters / ``context``, i.e.
    about one pass over the training text); ``n_test``: the first ``n_test`` test windows (default
    all of them).

    Parameters
    ----------
    name : str, default "python-docs"
        One of :data:`TEXT_DATASETS`.
    context : int, default 64
        Characters per window (positive).
    n_train, n_test : int, optional
        As above (positive).

    Returns
    -------
    TextDataset
        The vocabulary, the character ids of the training and test text, the test windows' start
        offsets, the corpus's sha256 and its source.

    Raises
    ------
    ValueError
        When ``name`` is unknown, ``context``, ``n_train`` or ``n_test`` is not a positive integer,
        or ``n_test`` exceeds the test windows.
    FileNotFoundError
        When this Python lacks the ``pydoc_data`` package.
    """
    import sys

    from .._validate import check_positive_int

    context = check_positive_int(context, "context")
    text = corpus_text(name)
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    cut = int(len(ids) * TRAIN_SHARE)
    train_ids, test_ids = ids[:cut], ids[cut:]
    starts = np.arange(0, len(test_ids) - context, context)  # consecutive windows, target inside the text
    for arg, val in (("n_train", n_train), ("n_test", n_test)):
        if val is not None and (not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1):
            raise ValueError(f"{arg} must be a positive integer or None, got {val!r}")
    if n_test is not None:
        if n_test > len(starts):
            raise ValueError(f"n_test={n_test} is more than the {len(starts)} test windows of {context} characters")
        starts = starts[:n_test]
    n_train = int(n_train) if n_train is not None else max(1, len(train_ids) // context)
    return TextDataset(name=name, vocab=vocab, train_ids=train_ids, test_ids=test_ids, context=context,
                       n_train=n_train, y_test=starts, sha256=hashlib.sha256(text.encode()).hexdigest(),
                       source=f"pydoc_data.topics of Python {sys.version.split()[0]}")
