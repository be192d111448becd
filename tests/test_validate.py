"""Bad input gets a ValueError that names the argument; legal degenerate input gets a warning."""

import numpy as np
import pytest

import repmatch
from repmatch import RepmatchWarning

G = np.random.default_rng(0)
X = G.standard_normal((200, 4))
Y = G.standard_normal((200, 3))

API = [
    lambda a, b: repmatch.maximum_match(a, b, eps=0.2),
    lambda a, b: repmatch.max_epsilon(a, b),
    lambda a, b: repmatch.similarity_curve(a, b, eps=[0.1, 0.2]),
    lambda a, b: repmatch.minimal_epsilon(a, b, min_size=1),
    lambda a, b: repmatch.v_minimal_match(a, b, 0.2, side="x", index=0),
    lambda a, b: repmatch.simple_matches(a, b, 0.2),
]


def _with(arr, idx, value):
    out = arr.copy()
    out[idx] = value
    return out


@pytest.mark.parametrize("call", API)
@pytest.mark.parametrize(
    "a, b, message",
    [
        (X, Y[:150], r"X and Y must have the same number of rows.*\(200, 4\).*\(150, 3\)"),
        (_with(X, (3, 1), np.nan), Y, r"X contains 1 non-finite value\(s\) \(NaN first at index \(3, 1\)\)"),
        (X, _with(Y, (0, 2), -np.inf), r"Y contains 1 non-finite value\(s\) \(Inf"),
        (X[:, 0], Y, r"X must be 2-D .* got 1-D"),
        (X, Y[None], r"Y must be 2-D .* got 3-D"),
        (X[:, :0], Y, r"X has no columns"),
        (X[:0], Y[:0], r"X has no rows"),
        (np.array([["a", "b"]]), Y[:1], r"X must be a numeric array"),
    ],
)
def test_bad_arrays_are_named(call, a, b, message):
    with pytest.raises(ValueError, match=message):
        call(a, b)


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.2", None, True])
def test_eps_outside_unit_interval(eps):
    with pytest.raises(ValueError, match="eps"):
        repmatch.maximum_match(X, Y, eps=eps)


def test_eps_grid_names_the_bad_entry():
    with pytest.raises(ValueError, match=r"eps\[2\] must lie in \[0, 1\)"):
        repmatch.similarity_curve(X, Y, eps=[0.1, 0.2, 1.0])
    with pytest.raises(ValueError, match="non-empty"):
        repmatch.similarity_curve(X, Y, eps=[])


def test_tol_and_method_are_checked():
    with pytest.raises(ValueError, match="tol must lie in"):
        repmatch.maximum_match(X, Y, eps=0.2, tol=0)
    with pytest.raises(ValueError, match="method must be one of"):
        repmatch.maximum_match(X, Y, eps=0.2, method="lstsq")


def test_few_samples_warn_and_enough_do_not():
    with pytest.warns(RepmatchWarning, match=r"only 20 samples for 4 \+ 3 neurons"):
        repmatch.maximum_match(X[:20], Y[:20], eps=0.2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RepmatchWarning)
        repmatch.maximum_match(X, Y, eps=0.2)  # 200 samples for 7 neurons: no warning


def test_torch_tensors_and_lists_are_accepted():
    m1 = repmatch.maximum_match(X.tolist(), Y.tolist(), eps=0.9)
    m2 = repmatch.maximum_match(X, Y, eps=0.9)
    assert m1.key() == m2.key()
    torch = pytest.importorskip("torch")
    m3 = repmatch.maximum_match(torch.from_numpy(X).float(), torch.from_numpy(Y), eps=0.9)
    assert m3.key() == m2.key()
