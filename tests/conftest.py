import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def tiny_layers(seed, n_x=4, n_y=4, d=12, shared=2, noise=0.3):
    """Tiny layers with a shared latent part and noise: non-trivial matches at moderate ε."""
    g = np.random.default_rng(seed)
    z = g.standard_normal((d, shared))
    X = z @ g.standard_normal((shared, n_x)) + noise * g.standard_normal((d, n_x))
    Y = z @ g.standard_normal((shared, n_y)) + noise * g.standard_normal((d, n_y))
    return X, Y


# A tiny `repmatch reproduce` run shared by test_reproduce, test_report_build, test_cli_reproduce and
# test_report_browser (training is the slow part; one run per session).
TINY_REPRODUCE = dict(arch="small-cnn", dataset="digits", seeds=(0, 1), epochs=1, width=0.5, n_train=200,
                      n_test=60, permutations=3, sample_rows=1500, alphas=(0.0, 1e-3, 1e-2), n_clusters=4,
                      n_rotations=3, n_boot=20, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(run_dir, results)`` of a tiny reproduce run (results.json only; no report)."""
    pytest.importorskip("torch")
    from repmatch.reproduce import reproduce

    out = tmp_path_factory.mktemp("reproduce") / "tiny"
    results = reproduce(out=str(out), report=False, **TINY_REPRODUCE)
    return out, results
