"""The pipeline's stages: every cache key lists what its unit depends on; the façade; the import graph."""

import ast
import dataclasses
import os
import subprocess
import sys

import pytest

import repmatch
from repmatch.pipeline.cache import Cache, Keys
from repmatch.pipeline.config import ReproduceConfig
from repmatch.pipeline.units import pair_units

SRC = os.path.join(os.path.dirname(repmatch.__file__))

#: What each unit's computation reads (from pipeline/units.py:pair_units), besides the networks and the data.
DEPENDS = {
    "subspace": {"eps_grid", "conv_mode"},
    "simple": {"simple_eps", "simple_max_units", "conv_mode"},
    "alignment": {"conv_mode"},
    "reference": {"conv_mode"},
    "soft": {"conv_mode"},
    "untrained": {"eps_grid", "conv_mode"},
    "shuffled": {"eps_grid", "permutations", "sample_rows"},
    "simple_nulls": {"simple_eps", "simple_max_units", "conv_mode", "sample_rows"},
    "calibration": {"n_rotations", "n_boot", "conv_mode", "sample_rows"},
    "sparse": {"alphas", "conv_mode", "sample_rows"},
    "sparse_nulls": {"alphas", "conv_mode", "sample_rows"},
    "clusters": {"n_clusters", "conv_mode"},
    "mi": {"mi_max_units", "sample_rows"},
}
#: Units whose random draws are seeded by the pair's index, or that keep figure extras for the first pair.
BY_PAIR_INDEX = {"shuffled", "simple_nulls", "calibration", "sparse_nulls", "clusters", "alignment", "untrained"}
CHANGES = {"eps_grid": (0.05, 0.3), "simple_eps": 0.3, "simple_max_units": 100, "permutations": 5, "n_rotations": 4,
           "n_boot": 10, "alphas": (0.1,), "n_clusters": 3, "mi_max_units": 10, "conv_mode": "avgpool",
           "sample_rows": 123, "heatmap": False, "alpha": 0.01, "batch_size": 64, "progress": False}


def _keys(tmp_path, **changes):
    cfg = ReproduceConfig(out=str(tmp_path), **changes)
    data = {"dataset": "digits", "n_test": 1797, "layers": ["a", "b"]}
    return Keys(cfg, {0: "h0", 1: "h1"}, data, {"arch": "smallcnn"}, k_rows=10)


def _unit_hash(keys, name, pi=0):
    return Cache.hash(keys.unit(name, 0, 1, pi))


class _NoResources:
    def __getattr__(self, name):  # the table is built without computing anything
        raise AssertionError("pair_units must not touch the resources before a unit is computed")


@pytest.mark.parametrize("param", sorted(CHANGES))
def test_changing_a_parameter_changes_exactly_the_keys_that_depend_on_it(param, tmp_path):
    base, changed = _keys(tmp_path), _keys(tmp_path, **{param: CHANGES[param]})
    for name, deps in DEPENDS.items():
        differs = _unit_hash(base, name) != _unit_hash(changed, name)
        assert differs == (param in deps), (name, param)
    # the in-memory sample: its key includes sample_rows (it used not to), and nothing measure-specific
    assert (Cache.hash(base.sample(0, 1)) != Cache.hash(changed.sample(0, 1))) == (param == "sample_rows")
    assert (Cache.hash(base.reductions(0, 1, False)) != Cache.hash(changed.reductions(0, 1, False))) == \
        (param == "conv_mode")


def test_keys_follow_networks_data_rows_and_pair_index(tmp_path):
    k = _keys(tmp_path)
    for name in DEPENDS:
        h = _unit_hash(k, name)
        assert h != Cache.hash(Keys(k.cfg, {0: "other", 1: "h1"}, k.data_key, k.model_kwargs, 10).unit(name, 0, 1, 0))
        other_b = Cache.hash(Keys(k.cfg, {0: "h0", 1: "other"}, k.data_key, k.model_kwargs, 10).unit(name, 0, 1, 0))
        assert (h != other_b) == (name != "untrained"), name  # seed a against the untrained stand-in for b
        assert h != Cache.hash(Keys(k.cfg, k.ckpt_hash, {**k.data_key, "n_test": 10}, k.model_kwargs, 10)
                               .unit(name, 0, 1, 0))
        assert (h != _unit_hash(k, name, pi=1)) == (name in BY_PAIR_INDEX), name
        untrained = Keys(k.cfg, k.ckpt_hash, k.data_key, {"arch": "smallcnn", "width": 2.0}, 10).unit(name, 0, 1, 0)
        assert (h != Cache.hash(untrained)) == (name in {"untrained", "simple_nulls", "sparse_nulls"}), name
        rows = Keys(k.cfg, k.ckpt_hash, k.data_key, k.model_kwargs, 11).unit(name, 0, 1, 0)
        assert (h != Cache.hash(rows)) == ("sample_rows" in DEPENDS[name]), name
    assert Cache.hash(k.sample(0, 1)) != Cache.hash(Keys(k.cfg, k.ckpt_hash, k.data_key, k.model_kwargs, 11).sample(0, 1))


def test_every_unit_of_the_table_has_its_key(tmp_path):
    cfg = ReproduceConfig(out=str(tmp_path))
    keys = _keys(tmp_path)
    first = [name for name, _, _ in pair_units(cfg, _NoResources(), keys, 0, 1, 0, "a")]
    later = [name for name, _, _ in pair_units(cfg, _NoResources(), keys, 0, 1, 1, "a")]
    assert set(first) == set(DEPENDS) and set(later) == set(DEPENDS) - {"sparse_nulls"}
    with pytest.raises(ValueError, match="unknown unit"):
        keys.unit("nope", 0, 1, 0)


def test_every_config_field_is_in_a_key_or_known_not_to_change_numbers():
    """A new field of ReproduceConfig must be added to a key (or here, with the reason)."""
    in_keys = set().union(*DEPENDS.values())
    # arch, dataset, epochs, width, n_train, n_test, data_dir, images, batch_size, layers select the networks or
    # the data (checkpoint hashes and the data key); the rest do not change any unit's numbers.
    upstream = {"arch", "dataset", "seeds", "epochs", "width", "n_train", "n_test", "data_dir", "images", "batch_size",
                "layers"}
    no_numbers = {"out", "device", "heatmap", "progress", "alpha"}
    fields = {f.name for f in dataclasses.fields(ReproduceConfig)}
    assert fields == in_keys | upstream | no_numbers


def test_facade_reexports_the_pipeline():
    from repmatch import io, pipeline, reproduce

    assert reproduce.ReproduceConfig is pipeline.ReproduceConfig and reproduce.run is pipeline.run
    assert reproduce.load_results is io.load_results
    for name in ("RESULTS_FORMAT", "UNIT_VERSION", "AUTHORS_EPS", "DEFAULT_EPS_GRID", "DEFAULT_PERMUTATIONS",
                 "DEFAULT_ALPHA", "IMAGES", "HEATMAP_PERMUTATIONS", "UNTRAINED_SEED_OFFSET"):
        assert getattr(reproduce, name) == getattr(pipeline, name), name
    assert set(reproduce.__all__) >= {"ReproduceConfig", "run", "reproduce", "load_results"}
    assert callable(reproduce.reproduce)


def _imports(path):
    """Every module a file imports, at top level or inside functions, as absolute names."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    pkg = "repmatch." + os.path.relpath(os.path.dirname(path), SRC).replace(os.sep, ".")
    pkg = pkg.rstrip(".").replace("repmatch..", "repmatch")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def test_report_does_not_import_the_pipeline():
    """report/ reads results.json through repmatch.io and the measures' result classes: no circle with
    reproduce.py (which builds the report) and no dependency on the pipeline's internals."""
    report = os.path.join(SRC, "report")
    for name in sorted(os.listdir(report)):
        if name.endswith(".py"):
            bad = {m for m in _imports(os.path.join(report, name))
                   if m.startswith(("repmatch.reproduce", "repmatch.pipeline"))}
            assert not bad, (name, bad)
    code = ("import sys, repmatch.report.build, repmatch.report.summary, repmatch.cli.report; "
            "bad = [m for m in sys.modules if m.startswith(('repmatch.reproduce', 'repmatch.pipeline.units', "
            "'repmatch.pipeline.reductions', 'torch'))]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_import_graph_helper_sees_relative_and_lazy_imports():
    """The checker above would see an import of reproduce (the test can fail)."""
    found = _imports(os.path.join(SRC, "reproduce.py"))
    assert "repmatch.pipeline" in found and "repmatch.report.build" in found and "repmatch.io.load_results" in found
