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
