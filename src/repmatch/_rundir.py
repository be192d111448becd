"""Run directories that survive hostile and unlucky use: a lock, self-healing caches, kept results.

Used by :mod:`repmatch.reproduce` (and the ``train``/``report`` commands); see docs/reproduce.md.

Lock
    :class:`RunLock` holds ``DIR/repmatch.lock`` for the duration of a run. The file records the
    holder's pid, host, start time, command line and configuration hash; the lock itself is an
    exclusive ``flock`` on it, which the kernel drops when the holder dies, however it dies. A second
    run is refused with :class:`RunDirLocked` (a ValueError naming the holder); a lock file left by a
    dead process is taken over with a warning. A directory that cannot be written (read-only
    permissions or file system) is not locked: the lock reports ``readonly`` and the caller may only
    read (a fully cached reproduce run then only reads). Nested locks of the same directory in the
    same thread are re-entrant.

Damaged caches
    :func:`read_unit_json`, :func:`load_cached_reductions` and :func:`load_cached_sample` return
    ``None`` (a cache miss) for a file that is truncated, not an archive, fails its CRC check,
    lacks entries or holds the wrong types, with a :class:`RunDirWarning` naming it; the caller
    recomputes and overwrites it atomically. :func:`quarantine` renames a damaged checkpoint to
    ``<name>.damaged`` so that its seed is retrained.

Results of other configurations
    :func:`archive_previous_results` moves the ``results.json``, ``report.html``, ``tables/`` and
    ``figures/`` of a different configuration to ``DIR/previous/config-<hash>/`` before they would be
    overwritten, and says so: nothing computed earlier is lost, and ``repmatch report`` rebuilds the
    old page from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
import zipfile

import numpy as np

from ._validate import RepmatchWarning

__all__ = ["RunDirWarning", "RunDirLocked", "RunDirReadOnly", "RunLock", "LOCK_NAME", "writable", "read_unit_json",
           "load_cached_reductions", "load_cached_sample", "quarantine", "archive_previous_results",
           "result_config", "config_hash", "PREVIOUS_DIR", "IGNORED_CONFIG_KEYS"]

LOCK_NAME = "repmatch.lock"
#: Where results of other configurations are kept, inside the run directory.
PREVIOUS_DIR = "previous"
#: Configuration fields that do not change any number (where, how verbose): they never make a run "different".
IGNORED_CONFIG_KEYS = ("out", "progress", "device", "data_dir")

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: fall back to O_EXCL plus a pid check
    fcntl = None


class RunDirWarning(RepmatchWarning):
    """Something in a run directory was damaged or stale and has been recomputed or taken over."""


class RunDirLocked(ValueError):
    """The run directory is held by another live repmatch process."""


class RunDirReadOnly(ValueError):
    """The run directory cannot be written and the run needs to write (something is not cached)."""


def _warn(message: str) -> None:
    warnings.warn(message, RunDirWarning, stacklevel=3)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}"


def writable(directory) -> tuple:
    """``(True, "")`` if a file can be created in ``directory`` (tried, not guessed: ``os.access`` says
    yes to root in a read-only directory), else ``(False, reason)``.

    Parameters
    ----------
    directory : str or os.PathLike
        An existing directory; a probe file is created in it and removed.

    Returns
    -------
    ok : bool
        Whether the probe file could be created.
    reason : str
        The OS error message when not, else ``""``.
    """
    try:
        fd, probe = tempfile.mkstemp(dir=os.fspath(directory), prefix=".repmatch-probe-")
    except OSError as exc:
        return False, exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:  # pragma: no cover
        pass
    return True, ""


# ------------------------------------------------------------------------------------------------ lock
_held: dict = {}  # (realpath, thread id) -> [RunLock, depth]
_held_guard = threading.Lock()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's live process
        return True
    except OSError:  # pragma: no cover
        return False
    return True


def config_hash(config) -> str:
    """A short hash of the number-changing part of a configuration dict (:func:`result_config`).

    Parameters
    ----------
    config : dict
        A run configuration (anything else hashes as an empty one); values that are not JSON are
        hashed by their ``str``.

    Returns
    -------
    str
        The first 12 hex digits of the SHA-256 of the sorted JSON of :func:`result_config`.
    """
    text = json.dumps(result_config(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def result_config(config) -> dict:
    """``config`` without the fields that change no number (:data:`IGNORED_CONFIG_KEYS`).

    Parameters
    ----------
    config : dict
        A run configuration.

    Returns
    -------
    dict
        A new dict without those keys; ``{}`` when ``config`` is not a dict.
    """
    if not isinstance(config, dict):
        return {}
    return {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}


class RunLock:
    """Exclusive use of a run directory (see the module doc).

    ``with RunLock(dir, option="--out", config=cfg_dict) as lock:`` creates ``dir`` if needed and
    either holds the lock (``lock.readonly`` false) or finds the directory read-only
    (``lock.readonly`` true, nothing written). Raises :class:`RunDirLocked` when a live process
    holds it.
    """

    def __init__(self, directory, *, option: str = "out", config=None, command=None):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.option = option
        self.config = config
        self.command = command if command is not None else " ".join([os.path.basename(sys.argv[0] or "python"),
                                                                     *sys.argv[1:]])
        self.readonly = False
        self.took_over = None
        self._fd = None
        self._key = None

    # -- helpers
    def _info(self) -> dict:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": self.command}
        if self.config is not None:
            info["config_hash"] = config_hash(self.config)
        return info

    @staticmethod
    def _parse(text: str) -> dict:
        try:
            info = json.loads(text)
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def _describe(self, info: dict) -> str:
        parts = [f"pid {info.get('pid', '?')}"]
        if info.get("host") and info.get("host") != socket.gethostname():
            parts.append(f"on {info['host']}")
        if info.get("started"):
            parts.append(f"started {info['started']}")
        if info.get("command"):
            parts.append(f"command: {info['command']}")
        if self.config is not None and info.get("config_hash") and info["config_hash"] != config_hash(self.config):
            parts.append("a different configuration")
        return ", ".join(parts)

    def _refuse(self, info: dict):
        raise RunDirLocked(
            f"{self.option}: {self.directory} is in use by another repmatch run ({self._describe(info)}); wait for "
            f"it to finish or choose another {self.option} (a lock left by a process that is no longer running "
            f"is taken over automatically; {self.path})")

    # -- acquire / release
    def acquire(self) -> "RunLock":
        key = (os.path.realpath(self.directory), threading.get_ident())
        with _held_guard:
            if key in _held:  # nested use in the same thread (e.g. reproduce() inside the CLI's lock)
                outer = _held[key]
                outer[1] += 1
                self.readonly, self._key = outer[0].readonly, key
                return self
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"{self.option}: {self.directory} is a file, expected a directory")
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{self.option}: cannot create {self.directory}: {exc.strerror or exc}") from None
        ok, _ = writable(self.directory)
        if not ok:
            self.readonly = True
        else:
            self._lock()
        self._key = key
        with _held_guard:
            _held[key] = [self, 1]
        return self

    def _lock(self) -> None:
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # 0o666 & ~umask, like every output
            if fcntl is None:  # pragma: no cover
                os.close(fd)
                self._lock_excl()
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = self._parse(self._read(fd))
                os.close(fd)
                self._refuse(info)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and flock: try again
                os.close(fd)
                continue
            old = self._parse(self._read(fd))
            if old.get("pid") is not None and old.get("pid") != os.getpid():
                self.took_over = old
                _warn(f"{self.option}: took over the lock {self.path} left by {self._describe(old)}, which is no "
                      "longer running")
            data = json.dumps(self._info()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            self._fd = fd
            return
        raise RunDirLocked(f"{self.option}: could not lock {self.path} (it keeps being replaced)")  # pragma: no cover

    def _lock_excl(self) -> None:  # pragma: no cover - platforms without flock
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                with open(self.path, encoding="utf-8", errors="replace") as fh:
                    old = self._parse(fh.read())
                pid = old.get("pid")
                if isinstance(pid, int) and _pid_alive(pid) and old.get("host") in (None, socket.gethostname()):
                    self._refuse(old)
                self.took_over = old
                _warn(f"{self.option}: took over the lock {self.path} left by {self._describe(old)}, which is no "
                      "longer running")
                os.unlink(self.path)
                continue
            os.write(fd, json.dumps(self._info()).encode())
            self._fd = fd
            return
        self._refuse({})

    @staticmethod
    def _read(fd) -> str:
        try:
            return os.pread(fd, 65536, 0).decode("utf-8", "replace")
        except OSError:  # pragma: no cover
            return ""

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _held_guard:
            entry = _held.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del _held[key]
        if self._fd is not None:
            try:
                os.unlink(self.path)  # while still holding it: a waiting process re-checks the inode
            except OSError:
                try:
                    os.ftruncate(self._fd, 0)
                except OSError:  # pragma: no cover
                    pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


# ------------------------------------------------------------------------------------------ cache files
def read_unit_json(path: str, key: str, h: str):
    """The ``value`` of a unit file if its hash is ``h``; ``None`` if absent, stale or damaged (warned).

    Parameters
    ----------
    path : str
        The unit's JSON file (``{"key": ..., "hash": ..., "value": {...}}``).
    key : str
        The unit's key, which the record must carry (when it has one) and messages name.
    h : str
        The hash of the unit's current parameters.

    Returns
    -------
    dict or None
        The record's ``value``; ``None`` when the file is missing or has another hash (a plain
        miss), or is damaged (a :class:`RunDirWarning` says so).
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:  # truncated, not UTF-8, not JSON
        _warn(f"cache file {path} is damaged ({_short(exc)}); recomputing unit {key}")
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("hash"), str):
        _warn(f"cache file {path} is damaged (a JSON {type(doc).__name__} without a hash, not a unit record); "
              f"recomputing unit {key}")
        return None
    if doc["hash"] != h:
        return None  # a parameter changed: an ordinary miss
    if doc.get("key", key) != key or not isinstance(doc.get("value"), dict):
        _warn(f"cache file {path} is damaged (not the record of unit {key}: key {doc.get('key')!r}, value of type "
              f"{type(doc.get('value')).__name__}); recomputing unit {key}")
        return None
    return doc["value"]


_NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zipfile.LargeZipFile)


def load_cached_reductions(path: str, layer_names, *, sizes: dict | None = None):
    """``{layer: Reduction}`` from a cached reductions file holding every layer of ``layer_names``;
    ``None`` (with a warning) if it is damaged, lacks a layer or has the wrong sizes.

    Parameters
    ----------
    path : str
        A file written by :func:`repmatch.io.save_reductions`.
    layer_names : iterable of str
        Layers the file must hold.
    sizes : dict, optional
        ``{layer: (n_x, n_y)}`` the reductions must have.

    Returns
    -------
    dict of str to Reduction, or None
        Every reduction of the file (it may hold more layers than asked for); ``None`` on a damaged
        or incomplete file (a :class:`RunDirWarning` says so).
    """
    from .io import load_reductions

    try:
        reds, _ = load_reductions(path, "cache")
    except _NPZ_ERRORS as exc:
        text = " ".join(str(exc).split())
        why = text.split(f"{path}: ", 1)[1] if f"{path}: " in text else _short(exc)  # without the path again
        _warn(f"cache file {path} is damaged ({why}); recomputing it")
        return None
    missing = [layer for layer in layer_names if layer not in reds]
    if missing:
        _warn(f"cache file {path} is damaged (no reduction for layer(s) {missing}); recomputing it")
        return None
    for layer, (n_x, n_y) in (sizes or {}).items():
        r = reds[layer]
        if (r.n_x, r.n_y) != (n_x, n_y):
            _warn(f"cache file {path} is damaged (layer {layer!r} has {r.n_x} x {r.n_y} units, expected {n_x} x "
                  f"{n_y}); recomputing it")
            return None
    return reds


def load_cached_sample(path: str, layer_names, *, groups: bool = False):
    """``{layer: (X, Y)}`` float64 from a cached row sample (entries ``<i>_x``, ``<i>_y``; with
    ``groups``, ``(X, Y, g)`` with the input index ``<i>_g`` of every row); ``None`` (with a warning)
    if it is damaged or incomplete.

    Parameters
    ----------
    path : str
        An ``.npz`` file; entry ``i`` belongs to ``layer_names[i]``.
    layer_names : sequence of str
        The layers, in the file's order.
    groups : bool, default False
        Also read the integer group (input index) of every row.

    Returns
    -------
    dict or None
        ``{layer: (X, Y)}`` with X of shape (n_rows, n_x) and Y of shape (n_rows, n_y), float64
        (``(X, Y, g)`` with ``g`` of shape (n_rows,) when ``groups``); ``None`` when an entry is
        missing, empty, not 2-D floating point or of mismatched rows (a :class:`RunDirWarning`
        says so).
    """
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            out = {}
            for i, layer in enumerate(layer_names):
                X, Y = f[f"{i}_x"], f[f"{i}_y"]
                if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[0] == 0 \
                        or not np.issubdtype(X.dtype, np.floating) or not np.issubdtype(Y.dtype, np.floating):
                    raise ValueError(f"entries {i}_x/{i}_y (layer {layer!r}) have shapes {X.shape}, {Y.shape} "
                                     f"and dtypes {X.dtype}, {Y.dtype}")
                out[layer] = (X.astype(np.float64), Y.astype(np.float64))
                if groups:
                    G = f[f"{i}_g"]
                    if G.shape != (X.shape[0],) or not np.issubdtype(G.dtype, np.integer):
                        raise ValueError(f"entry {i}_g (layer {layer!r}) has shape {G.shape} and dtype {G.dtype}")
                    out[layer] += (G,)
    except _NPZ_ERRORS as exc:
        _warn(f"cache file {path} is damaged ({_short(exc)}); recomputing it")
        return None
    return out


def quarantine(path: str, reason: str, action: str) -> str:
    """Rename a damaged file to ``<path>.damaged`` (kept for inspection) and warn ``"<path> <reason>:
    moved to ...; <action>"``; returns the new name.

    Parameters
    ----------
    path : str
        The damaged file (an existing ``<path>.damaged`` is replaced).
    reason : str
        What is wrong with it, for the warning.
    action : str
        What the caller does instead, for the warning.

    Returns
    -------
    str
        ``path + ".damaged"``.
    """
    dest = path + ".damaged"
    os.replace(path, dest)
    _warn(f"{path} {reason}: moved to {os.path.basename(dest)}; {action}")
    return dest


# ------------------------------------------------------------------------------------------ results
_REPORT_FILES = ("results.json", "report.html", "tables", "figures")


def _read_config(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None, "unreadable"
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        return None, "not a reproduce results file"
    return doc["config"], ""


def differing_fields(old: dict, new: dict) -> list:
    a, b = result_config(old), result_config(new)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def previous_results(out: str, config: dict):
    """``None`` if ``out`` has no results.json or one of the same configuration; else a description
    ``(old_config_or_None, [differences])`` of the results that a run of ``config`` would replace."""
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        return None
    old, why = _read_config(path)
    if old is None:
        return None, [f"the existing results.json is {why}"]
    diff = differing_fields(old, config)
    return None if not diff else (old, diff)


def archive_previous_results(out: str, config: dict):
    """Move the report files of a different configuration to ``out/previous/config-<hash>/``.

    Returns the archive directory, or ``None`` when there was nothing to move (no results.json, or
    one of the same configuration). Warns with the differences and where the files went.

    Parameters
    ----------
    out : str
        The run directory.
    config : dict
        The configuration of the run about to write there.

    Returns
    -------
    str or None
        ``out/previous/config-<hash of the old configuration>`` (``unreadable-<time>`` when the old
        results.json could not be read), replacing an older archive of that name; ``None`` when
        nothing was moved.
    """
    prev = previous_results(out, config)
    if prev is None:
        return None
    old, diff = prev
    tag = f"config-{config_hash(old)}" if old is not None else f"unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
    dest = os.path.join(out, PREVIOUS_DIR, tag)
    if os.path.exists(dest):  # older results of that same configuration: the newer ones replace them
        shutil.rmtree(dest)
    os.makedirs(dest)
    for name in _REPORT_FILES:
        src = os.path.join(out, name)
        if os.path.exists(src):
            os.replace(src, os.path.join(dest, name))
    _warn(f"{out} held the results of a different configuration ({'; '.join(diff)}): moved them to {dest} "
          f"(`repmatch report {dest}` rebuilds that page)")
    return dest
