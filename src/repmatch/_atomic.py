"""Atomic file writes: write to a temporary file in the target's directory, fsync, then rename.

A reader (or a resumed job) never sees a half-written file: either the old one or the new one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_savez"]


def atomic_write_bytes(path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, fsync, rename).

    Missing parent directories are created; the file gets the usual permissions (0666 less the
    umask). On any error the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists).
    data : bytes
        Its new content.

    Returns
    -------
    str
        ``path`` as a string (``os.fspath``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> str:
    """Write ``text``, UTF-8 encoded, to ``path`` with :func:`atomic_write_bytes`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists).
    text : str
        Its new content.

    Returns
    -------
    str
        ``path`` as a string.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, **kwargs) -> str:
    """Write ``obj`` as JSON to ``path`` with :func:`atomic_write_text`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists).
    obj : object
        Anything :func:`json.dumps` accepts.
    **kwargs
        Passed to :func:`json.dumps`; ``indent`` defaults to 1.

    Returns
    -------
    str
        ``path`` as a string.
    """
    kwargs.setdefault("indent", 1)
    return atomic_write_text(path, json.dumps(obj, **kwargs))


def atomic_savez(path, **arrays) -> str:
    """``np.savez`` to memory, then :func:`atomic_write_bytes`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists); no ``.npz`` suffix is added.
    **arrays : array-like
        The arrays to store, by name.

    Returns
    -------
    str
        ``path`` as a string.
    """
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())
