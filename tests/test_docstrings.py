"""numpydoc on every public function (issue 15): each function in a module's ``__all__`` has a
docstring with "Parameters" and "Returns" sections, and every tolerance constant a module exports
is the default of a documented parameter somewhere in that module."""

import importlib
import inspect
import pkgutil
import re

import pytest

import repmatch

#: Modules not held to the rule (none: every module's public functions have both sections). A
#: module may be listed here only with a reason in the commit that adds it.
EXEMPT = ()

OPTIONAL = {"dask", "distributed", "zarr", "sklearn", "matplotlib", "torch", "transformers", "tqdm"}


def _modules():
    names = ["repmatch"]
    for info in pkgutil.walk_packages(repmatch.__path__, "repmatch."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def _exempt(name: str) -> bool:
    return any(name == e or name.startswith(e + ".") for e in EXEMPT)


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional dependency that is not installed
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}")
        raise


def _sections(doc: str) -> set:
    return set(re.findall(r"^(\w[\w ]*)\n-{3,}$", doc, re.M))


@pytest.mark.parametrize("name", [n for n in _modules() if not _exempt(n)])
def test_public_functions_have_parameters_and_returns(name):
    mod = _import(name)
    missing = []
    for attr in getattr(mod, "__all__", ()):
        obj = getattr(mod, attr, None)
        if inspect.isfunction(obj) and obj.__module__ == name:
            found = _sections(inspect.getdoc(obj) or "")
            lacking = {"Parameters", "Returns"} - found
            if lacking:
                missing.append(f"{attr}: no {', '.join(sorted(lacking))}")
    assert not missing, f"{name}: " + "; ".join(missing)


def test_the_exemptions_name_real_modules():
    names = _modules()
    stale = [e for e in EXEMPT if e != "repmatch.pipeline" and not any(n == e or n.startswith(e + ".") for n in names)]
    assert not stale, stale


def test_the_section_finder_sees_numpydoc():
    def f(x):
        """Doc.

        Parameters
        ----------
        x : int

        Returns
        -------
        int
        """

    assert _sections(inspect.getdoc(f)) == {"Parameters", "Returns"}
    assert _sections("Parameters are those of g") == set()


TOLERANCES = [
    ("repmatch._validate", "CONSTANT_TOL", ["constant_units"]),
    ("repmatch.correlation", "CONSTANT_TOL", ["correlation", "correlation_from_reduction"]),
    ("repmatch.alignment", "ASSIGN_TOL", ["bipartite_match"]),
    ("repmatch.alignment", "CONSTANT_TOL", ["semi_match", "bipartite_match", "similarity_matrix"]),
    ("repmatch.softmatch", "LINPROG_TOL", ["soft_match"]),
    ("repmatch.softmatch", "CONSTANT_TOL", ["soft_match", "transport_costs"]),
    ("repmatch.sparse", "CD_TOL", ["sparse_prediction", "lasso_path_from_moments"]),
    ("repmatch.sparse", "CONSTANT_TOL", ["sparse_prediction"]),
    ("repmatch.reference", "CONSTANT_TOL", ["linear_cka", "debiased_linear_cka", "rbf_cka", "cca", "mean_squared_cca",
                                             "svcca", "pwcca", "procrustes_distance"]),
]


@pytest.mark.parametrize("module, constant, functions", TOLERANCES)
def test_every_tolerance_is_a_documented_default(module, constant, functions):
    mod = importlib.import_module(module)
    value = getattr(mod, constant)
    for fname in functions:
        f = getattr(mod, fname)
        params = inspect.signature(f).parameters
        hits = [p for p in params.values() if p.default is value or (p.default == value and
                                                                     isinstance(p.default, float))]
        assert hits, f"{module}.{fname} has no parameter defaulting to {constant}"
        doc = inspect.getdoc(f) or ""
        for p in hits:
            assert re.search(rf"^{p.name}\b.*$", doc, re.M) or re.search(rf"\b{p.name}\b", doc), \
                f"{module}.{fname}: parameter {p.name} is not documented"
