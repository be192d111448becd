"""One progress helper for every long loop (training, extraction, the pipeline, simple matches).

Bars are drawn with tqdm, and only when stderr is a terminal: in a log file every refresh would
leave carriage returns and escape codes, so a log gets the callers' plain per-step lines instead.
tqdm is optional; without it the iterable is returned unchanged.
"""

from __future__ import annotations

import sys

__all__ = ["progress", "stderr_is_tty"]


def stderr_is_tty() -> bool:
    """Whether stderr is a terminal (False when it is closed, redirected or replaced).

    Parameters
    ----------
    None

    Returns
    -------
    bool
    """
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable, *, desc: str, enabled: bool = True, total: int | None = None, unit: str = "it",
             leave: bool = False):
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` and stderr is a terminal.

    Parameters
    ----------
    iterable : iterable
        What to iterate over; returned unchanged when no bar is drawn.
    desc : str
        The bar's label.
    enabled : bool, default True
        The caller's ``progress=`` switch.
    total : int, optional
        Number of items; taken from ``len(iterable)`` when it has one.
    unit : str, default "it"
        The unit shown on the bar.
    leave : bool, default False
        Keep the finished bar on screen.

    Returns
    -------
    iterable
        A tqdm wrapper of ``iterable``, or ``iterable`` itself.
    """
    if not enabled or not stderr_is_tty():
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)
