"""The test data of a trained network, preprocessed exactly as in training (for extraction).

:func:`evaluation_data` reads what a checkpoint's ``data`` entry recorded: for images the image size and
the training normalisation (not the new dataset's); for text the context length and the corpus's
SHA-256, which must match (a corpus that changed, e.g. ``python-docs`` under another Python
version, has other windows and maybe another vocabulary: a ValueError says so).
"""

from __future__ import annotations

import numpy as np

__all__ = ["evaluation_data"]


def evaluation_data(data_info: dict, *, dataset=None, data_dir=None, n_train=None, n_test=None, batch_size: int = 256,
                    all_images: bool = False):
    """``(n_test, loader)``: the number of test samples and ``loader(lo, hi)`` over samples ``lo:hi``.

    ``loader(lo, hi)`` yields ``(inputs, targets)`` batches of ``batch_size`` (images, or windows of
    character ids). ``all_images``: images only, the training images follow the test images (more
    samples per neuron where the test set is small, e.g. the digits).

    Parameters
    ----------
    data_info : dict
        The ``data`` entry of a checkpoint: ``name``, and ``image_size``, ``mean``, ``std`` for
        images or ``kind="text"``, ``context``, ``sha256`` (and ``source``) for text.
    dataset : str, optional
        Dataset to load instead of ``data_info["name"]``.
    data_dir : str, optional
        Where image datasets are looked for.
    n_train, n_test : int, optional
        Limits on the training and test samples loaded.
    batch_size : int, default 256
    all_images : bool, default False
        As above.

    Returns
    -------
    n_test : int
        Number of samples ``loader`` can cover.
    loader : callable
        ``loader(lo, hi)`` -> an iterable of ``(inputs, targets)`` batches over samples ``lo:hi``
        (normalised with the checkpoint's mean and std for images).

    Raises
    ------
    ValueError
        When the text found here is not the text the network was trained on (another sha256).
    """
    from .datasets import BatchLoader, load_dataset

    name = dataset or data_info["name"]
    if data_info.get("kind") == "text":
        from .text import load_text_dataset

        data = load_text_dataset(name, context=int(data_info["context"]), n_train=n_train, n_test=n_test)
        if data.sha256 != data_info.get("sha256"):
            raise ValueError(f"dataset {name!r}: the text here (sha256 {data.sha256[:12]}..., {data.source}) is not "
                             f"the text the network was trained on (sha256 {str(data_info.get('sha256'))[:12]}..., "
                             f"{data_info.get('source')}); train again on this machine")
        return len(data.y_test), lambda lo, hi: data.loader("test", batch_size=batch_size, lo=lo, hi=hi)
    data = load_dataset(name, data_dir, image_size=data_info["image_size"], n_train=n_train, n_test=n_test)
    mean = np.asarray(data_info["mean"], dtype=np.float32)
    std = np.asarray(data_info["std"], dtype=np.float32)
    x, y = data.x_test, data.y_test
    if all_images:
        x, y = np.concatenate([data.x_test, data.x_train]), np.concatenate([data.y_test, data.y_train])
    return len(y), lambda lo, hi: BatchLoader(x[lo:hi], y[lo:hi], mean, std, batch_size=batch_size)
