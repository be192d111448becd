"""Checks of command-line arguments made before any long work, each failing with a ValueError that
names the option and the path or value. Values are checked by the API's own vocabulary
(:mod:`repmatch._validate`, with the option's spelling as the name), so a mistake reads the same
from Python, from a pipeline config and from the command line (``main`` prints it on one line and exits with status 2).

Output files must go into an existing, writable directory (a typo in a path is an error, not a new
directory tree); output directories are created, with their parents, where that is possible.
Writability is tried (a file is created and removed), not guessed from permission bits, which say
"writable" to root in a read-only directory.
"""

from __future__ import annotations

import os

__all__ = ["output_file", "output_dir", "device", "non_negative", "positive"]


def _shown_parent(path: str) -> str:
    return os.path.dirname(path) or "."


def output_file(path, option: str) -> str:
    """``path`` if a file can be written there: not a directory, in an existing writable directory.

    Parameters
    ----------
    path : str or PathLike
        The file to write.
    option : str
        The option's spelling, for the message.

    Returns
    -------
    str
    """
    from .._rundir import writable

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{option}: {path} is a directory; give the name of a file to write")
    parent = _shown_parent(path)
    if not os.path.exists(parent):
        raise ValueError(f"{option}: the directory {parent} does not exist (create it first, or give another "
                         f"path for {os.path.basename(path)})")
    if not os.path.isdir(parent):
        raise ValueError(f"{option}: {parent} is a file, not a directory, so {path} cannot be written")
    ok, why = writable(parent)
    if not ok:
        raise ValueError(f"{option}: cannot write in the directory {parent} ({why})")
    return path


def output_dir(path, option: str, *, must_write: bool = True) -> str:
    """``path`` if it is (or can be created as) a directory; with ``must_write``, a writable one.

    Parameters
    ----------
    path : str or PathLike
        The directory.
    option : str
        The option's spelling, for the message.
    must_write : bool
        Whether the directory must be writable.

    Returns
    -------
    str
    """
    from .._rundir import writable

    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option}: {path} is a file, expected a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{option}: {existing} is a file, so the directory {path} cannot be created")
    if must_write or existing != os.path.abspath(path):
        ok, why = writable(existing)
        if not ok:
            where = "" if existing == os.path.abspath(path) else f" (to create {path})"
            raise ValueError(f"{option}: cannot write in the directory {existing}{where} ({why})")
    return path


def device(name, option: str = "--device") -> str:
    """``name`` if torch can run on that device here; ValueError naming the option otherwise.

    Parameters
    ----------
    name : str
        A torch device name.
    option : str
        The option's spelling, for the message.

    Returns
    -------
    str
    """
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{option} {name}: not a torch device (cpu, cuda, cuda:N, mps, ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"{option} {name}: CUDA is not available ({why}, torch {torch.__version__}); "
                             "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{option} {name}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{option} {name}: Apple MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise ValueError(f"{option} {name}: cannot use this device ({' '.join(str(exc).split())[:120]})") \
                from None
    return name


def non_negative(value, option: str):
    """``value`` if it is None or an integer >= 0 (the API's :func:`~repmatch._validate.check_positive_int`).

    Parameters
    ----------
    value : int or None
        The option's value (None: not given).
    option : str
        The option's spelling, for the message (``"--seed must be an integer >= 0, got -1"``).

    Returns
    -------
    int or None
    """
    from .._validate import check_positive_int

    return None if value is None else check_positive_int(value, option, minimum=0)


def positive(value, option: str):
    """``value`` if it is None or an integer >= 1 (the API's :func:`~repmatch._validate.check_positive_int`).

    Parameters
    ----------
    value : int or None
        The option's value (None: not given).
    option : str
        The option's spelling, for the message.

    Returns
    -------
    int or None
    """
    from .._validate import check_positive_int

    return None if value is None else check_positive_int(value, option, minimum=1)
