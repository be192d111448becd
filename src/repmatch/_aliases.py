"""Old module names kept importable (issue 15 renamed them to say what they hold).

``repmatch.stats`` is now :mod:`repmatch.correlation`, ``repmatch.nulls`` is
:mod:`repmatch.inference` and ``repmatch.cli.scale`` is :mod:`repmatch.cli.dask_reduce`. The old
names are registered in ``sys.modules`` when ``repmatch`` is imported, as thin modules that forward
every attribute to the new one and raise a :class:`DeprecationWarning` on first use from code
outside repmatch (its own modules owned elsewhere may still use an old name until they are updated;
a warning there would only end up in results). They are not
files: a renamed file stays a pure rename in git, so changes made elsewhere to the old file merge
into the new one.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

__all__ = ["RENAMED", "register"]

#: old module name -> new module name
RENAMED = {
    "repmatch.stats": "repmatch.correlation",
    "repmatch.nulls": "repmatch.inference",
    "repmatch.cli.scale": "repmatch.cli.dask_reduce",
}


class _DeprecatedAlias(types.ModuleType):
    """A module that forwards attribute reads to ``target`` and warns once that its name is old."""

    def __init__(self, name: str, target: str):
        super().__init__(name, f"Deprecated alias of {target} (renamed in repmatch 0.1, issue 15).")
        self.__dict__["_target"] = target
        self.__dict__["_warned"] = False

    def _module(self):
        if not self.__dict__["_warned"]:
            user, level = _user_frame()
            if user:  # repmatch's own modules that still use an old name are not warned about
                self.__dict__["_warned"] = True
                warnings.warn(f"{self.__name__} is deprecated; import {self.__dict__['_target']} instead",
                              DeprecationWarning, stacklevel=level)
        return importlib.import_module(self.__dict__["_target"])

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr != "__all__":
            raise AttributeError(attr)
        return getattr(self._module(), attr)

    def __dir__(self):
        return dir(self._module())


def _user_frame() -> tuple:
    """(whether the code reading the alias is outside repmatch, its stacklevel for warnings.warn),
    skipping this module's frames and the import machinery's."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != __name__ and not name.startswith(("importlib", "_frozen_importlib")):
            return not (name == "repmatch" or name.startswith("repmatch.")), level
        frame = frame.f_back
        level += 1
    return True, level


def register() -> None:
    """Put the old names in ``sys.modules`` (idempotent; the new modules load on first use).

    Parameters
    ----------
    None

    Returns
    -------
    None
    """
    for old, new in RENAMED.items():
        if old not in sys.modules:
            sys.modules[old] = _DeprecatedAlias(old, new)
