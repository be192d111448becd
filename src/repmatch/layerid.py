"""Layer identification: does a measure find the same layer in another network? (Kornblith et al. 2019)

Networks of one architecture are trained from K seeds. For every ordered pair (A, B) of different
networks and every layer i of A, a similarity measure compares layer i of A with every layer j of
B; the measure *identifies* the layer when the most similar layer of B is layer i. The accuracy
of a measure is the share of (A, B, i) it identifies. Kornblith et al. (ICML 2019), ten CNNs on
CIFAR-10: linear CKA 99.3%, PWCCA 11.1%, SVCCA 9.9-15.1%. Nobody has published the subspace match
or the correlation matchings on this test.

Ties (e.g. several layers with eps_50 = 0) get fractional credit: when the true layer is among t
layers tied for the best value, it counts 1/t (the expected accuracy under random tie-breaking).
Chance is 1 / n_layers.

Rows must correspond across layers, so conv layers are average-pooled over positions (one row per
image; ``conv_mode="avgpool"``), as in the reproduce heatmap. Every measure sees exactly the same
rows.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validate import RepmatchWarning

__all__ = ["MEASURES", "DEFAULT_MEASURES", "LayerIdResult", "layer_identification", "layer_matrix", "linear_cka_matrix",
           "PUBLISHED", "run_benchmark"]


def _red(X, Y):
    from .reduce import Reduction

    return Reduction.from_arrays(X, Y)


def _ctx_reduction(ctx):
    if "r" not in ctx:
        ctx["r"] = _red(ctx["X"], ctx["Y"])
    return ctx["r"]


def _ctx_bip(ctx):
    from .alignment import bipartite_match

    if "bip" not in ctx:
        ctx["bip"] = bipartite_match(_ctx_reduction(ctx))
    return ctx["bip"]


def _ctx_curve(ctx):
    from .mms import summarize_curve

    if "mms" not in ctx:
        ctx["mms"] = summarize_curve(_ctx_reduction(ctx))
    return ctx["mms"]


def _ref(name):
    def f(ctx):
        from . import reference

        fn = getattr(reference, name)
        arg = (ctx["X"], ctx["Y"]) if name in ("rbf_cka", "debiased_linear_cka") else (_ctx_reduction(ctx),)
        return fn(*arg).value

    return f


def _mms_at(eps):
    def f(ctx):
        s = _ctx_curve(ctx)
        return s["similarity"][int(np.argmin(np.abs(np.asarray(s["eps"]) - eps)))]

    return f


def _soft(ctx):
    from .softmatch import soft_match

    return soft_match(_ctx_reduction(ctx)).distance


def _mi(ctx):
    from .alignment import bipartite_match

    return bipartite_match(ctx["X"], ctx["Y"], measure="mi").mean


def _sparse(ctx):
    from .sparse import sparse_prediction

    p = sparse_prediction(ctx["X"], ctx["Y"], alphas=[1e-2], direction="x_to_y", rng=0)
    return float(p.x_to_y.mean_fvu[0])


def _eps50(ctx):
    e = _ctx_curve(ctx)["eps_50"]
    return 1.0 if e is None else e


#: name -> (function of a context {"X", "Y"}, larger_is_more_similar, symmetric, description).
#: Asymmetric measures compare "layer i of A" (X) with "layer j of B" (Y) in that direction.
MEASURES = {
    "linear_cka": (_ref("linear_cka"), True, True, "linear CKA"),
    "debiased_cka": (_ref("debiased_linear_cka"), True, True, "debiased linear CKA"),
    "rbf_cka": (_ref("rbf_cka"), True, True, "RBF CKA (bandwidth 0.5 x median distance)"),
    "cca": (_ref("mean_squared_cca"), True, True, "mean squared CCA"),
    "svcca": (_ref("svcca"), True, True, "SVCCA (99% variance)"),
    "pwcca": (_ref("pwcca"), True, False, "PWCCA (weights from layer i of A)"),
    "procrustes": (_ref("procrustes_distance"), False, True, "orthogonal Procrustes distance"),
    "semi_match": (lambda c: _ctx_bip(c).semi.mean, True, False, "semi-matching mean correlation (A -> B)"),
    "bipartite_match": (lambda c: _ctx_bip(c).mean, True, True, "bipartite matching mean correlation"),
    "soft_match": (_soft, False, True, "soft matching distance (optimal transport)"),
    "mi_bipartite": (_mi, True, True, "bipartite matching on mutual information"),
    "sparse_fvu": (_sparse, False, False, "sparse prediction of B from A, held-out FVU (lambda 1e-2)"),
    "mms_area": (lambda c: _ctx_curve(c)["area"], True, True, "area under the MMS curve on [0, 1)"),
    "mms_eps_50": (_eps50, False, True, "eps_50: smallest eps matching half the live neurons"),
    "mms_max_epsilon": (lambda c: _ctx_curve(c)["max_epsilon"], False, True, "max_epsilon"),
    "mms_0.25": (_mms_at(0.25), True, True, "MMS at the authors' eps = 0.25"),
    "mms_0.5": (_mms_at(0.5), True, True, "MMS at the authors' eps = 0.5"),
}
#: Everything but the slow LASSO path (add "sparse_fvu" with --measures).
DEFAULT_MEASURES = tuple(k for k in MEASURES if k != "sparse_fvu")
#: Kornblith et al. 2019, table 2 (ten 10-layer CNNs on CIFAR-10).
PUBLISHED = {"linear_cka": "99.3%", "svcca": "9.9-15.1%", "pwcca": "11.1%"}


def _check_measures(measures):
    names = list(DEFAULT_MEASURES if measures is None else measures)
    bad = [m for m in names if m not in MEASURES]
    if bad or not names:
        raise ValueError(f"measures must be a non-empty list of {', '.join(MEASURES)}; got {bad or names!r}")
    return names


def layer_matrix(acts_a: dict, acts_b: dict, measures=("linear_cka",), layers=None) -> dict:
    """``{measure: M}`` with ``M[i, j]`` = measure(layer i of A, layer j of B) on the same rows.

    ``acts_a`` / ``acts_b``: ``{layer: array (n_rows, n_units)}`` (the same rows for every layer).
    A measure that fails on a pair (e.g. CCA with too few rows) gives NaN there.

    Parameters
    ----------
    acts_a, acts_b : dict of str to array-like of shape (n_rows, n_units)
        The two networks' activations, the same rows for every layer.
    measures : sequence of str, default ("linear_cka",)
        Keys of :data:`MEASURES`.
    layers : sequence of str, optional
        Layers to compare, present in both (default: those of ``acts_a``, in order).

    Returns
    -------
    dict of str to ndarray of shape (n_layers, n_layers)
        One float64 matrix per measure, rows the layers of A, columns those of B.

    Raises
    ------
    ValueError
        When ``measures`` is empty or names an unknown measure.
    """
    names = _check_measures(measures)
    layers = list(acts_a) if layers is None else list(layers)
    out = {m: np.full((len(layers), len(layers)), np.nan) for m in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        for i, la in enumerate(layers):
            for j, lb in enumerate(layers):
                ctx = {"X": np.asarray(acts_a[la], dtype=np.float64), "Y": np.asarray(acts_b[lb], dtype=np.float64)}
                for m in names:
                    try:
                        out[m][i, j] = float(MEASURES[m][0](ctx))
                    except (ValueError, np.linalg.LinAlgError):
                        pass
    return out


def linear_cka_matrix(acts_a: dict, acts_b: dict, layers=None, *, perm=None) -> np.ndarray:
    """Linear CKA of every layer of A with every layer of B (rows of B optionally permuted by ``perm``).

    The feature-space form ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` of centred rows, as
    :func:`repmatch.linear_cka`, computed directly so that permutation nulls cost one product per
    layer pair. A layer without variance gives NaN.

    Parameters
    ----------
    acts_a, acts_b : dict of str to array-like of shape (n_rows, n_units)
        The two networks' activations, the same rows for every layer.
    layers : sequence of str, optional
        Layers to compare, present in both (default: those of ``acts_a``, in order).
    perm : array-like of int of shape (n_rows,), optional
        A permutation applied to the (centred) rows of every layer of B.

    Returns
    -------
    ndarray of float64, shape (n_layers, n_layers)
        ``M[i, j]`` = linear CKA of layer i of A with layer j of B, in [0, 1].
    """
    layers = list(acts_a) if layers is None else list(layers)
    A = [np.asarray(acts_a[la], dtype=np.float64) for la in layers]
    B = [np.asarray(acts_b[la], dtype=np.float64) for la in layers]
    A = [x - x.mean(axis=0) for x in A]
    B = [y - y.mean(axis=0) for y in B]
    na = [np.linalg.norm(x.T @ x) for x in A]
    nb = [np.linalg.norm(y.T @ y) for y in B]
    if perm is not None:
        B = [y[perm] for y in B]
    M = np.full((len(layers), len(layers)), np.nan)
    for i, x in enumerate(A):
        for j, y in enumerate(B):
            if na[i] > 0 and nb[j] > 0:
                M[i, j] = float(np.sum((x.T @ y) ** 2) / (na[i] * nb[j]))
    return M


def _credit(row: np.ndarray, i: int, larger: bool) -> float:
    """1/t when layer i is among the t best values of ``row`` (ties within 1e-12), else 0; NaN rows: 0."""
    if not np.isfinite(row[i]):
        return 0.0
    v = np.where(np.isfinite(row), row, -np.inf if larger else np.inf)
    best = v.max() if larger else v.min()
    tied = np.flatnonzero(np.abs(v - best) <= 1e-12 * max(1.0, abs(best)))
    return 1.0 / tied.size if i in tied else 0.0


@dataclass(frozen=True)
class LayerIdResult:
    """Accuracy of every measure at identifying layers across networks.

    Attributes
    ----------
    accuracy : dict
        measure -> share of (A, B, layer) identified (fractional credit for ties).
    per_layer : dict
        measure -> accuracy per layer of A (list in ``layers`` order).
    layers : list of str
    n_networks : int
    n_rows : int
        Rows (images) every measure saw.
    matrices : dict
        measure -> list over ordered pairs (A, B) of the layer x layer matrix (rows: layers of A).
    pairs : list of (int, int)
        The ordered pairs of network indices.
    """

    accuracy: dict
    per_layer: dict
    layers: list
    n_networks: int
    n_rows: int
    pairs: list
    matrices: dict = field(repr=False)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.layers)

    def to_dict(self) -> dict:
        return {"kind": "layer_identification", "accuracy": self.accuracy, "per_layer": self.per_layer,
                "layers": self.layers, "n_networks": self.n_networks, "n_rows": self.n_rows,
                "chance": self.chance, "pairs": [list(p) for p in self.pairs],
                "larger_is_more_similar": {m: MEASURES[m][1] for m in self.accuracy},
                "matrices": {m: [np.asarray(M).tolist() for M in Ms] for m, Ms in self.matrices.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerIdResult":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, floats, num

        d = check_kind(d, "layer_identification", "LayerIdResult")
        n = len(d["layers"])
        return cls(accuracy={m: num(a) for m, a in d["accuracy"].items()},
                   per_layer={m: [num(x) for x in v] for m, v in d["per_layer"].items()}, layers=list(d["layers"]),
                   n_networks=int(d["n_networks"]), n_rows=int(d["n_rows"]), pairs=[tuple(p) for p in d["pairs"]],
                   matrices={m: [floats(M, shape=(n, n)) for M in Ms] for m, Ms in d["matrices"].items()})

    def table(self) -> str:
        """A plain-text table: measure, accuracy, published figure, per-layer accuracies."""
        head = f"{'measure':<17} {'accuracy':>8}  {'Kornblith et al.':>16}  per layer ({', '.join(self.layers)})"
        lines = [head, "-" * len(head)]
        for m in sorted(self.accuracy, key=lambda k: -self.accuracy[k]):
            per = " ".join(f"{x:.2f}" for x in self.per_layer[m])
            lines.append(f"{m:<17} {100 * self.accuracy[m]:7.1f}%  {PUBLISHED.get(m, ''):>16}  {per}")
        lines.append(f"chance: {100 * self.chance:.1f}% ({len(self.layers)} layers); {self.n_networks} networks, "
                     f"{len(self.pairs)} ordered pairs, {self.n_rows} images")
        return "\n".join(lines)


def _fill(mats, activations, names, layers, n, progress):
    for a, b in itertools.combinations(range(n), 2):
        if progress:
            progress(f"networks {a} and {b}: {len(layers)}x{len(layers)} layer pairs")
        ab = layer_matrix(activations[a], activations[b], names, layers)
        asym = [m for m in names if not MEASURES[m][2]]
        ba = layer_matrix(activations[b], activations[a], asym, layers) if asym else {}
        for m in names:
            mats[m][(a, b)] = ab[m]
            mats[m][(b, a)] = ba[m] if m in ba else ab[m].T


def layer_identification(activations: list, measures=None, *, layers=None, progress=None) -> LayerIdResult:
    """Score every measure by layer identification accuracy over networks (module docstring).

    Parameters
    ----------
    activations : list of dict
        One ``{layer: array (n_rows, n_units)}`` per network, the same layers and rows for all.
    measures : sequence of str, optional
        Keys of :data:`MEASURES` (default :data:`DEFAULT_MEASURES`).
    layers : sequence of str, optional
        Default: the layers of the first network, in order.
    progress : callable, optional
        Called with a short message per pair of networks.

    Returns
    -------
    LayerIdResult
        Accuracy of every measure (overall and per layer), the layer matrices of every ordered
        pair of networks, and the layers, number of networks and rows used.

    Raises
    ------
    ValueError
        When fewer than 2 networks or 2 layers are given, a network lacks a layer, the layers'
        rows differ, or ``measures`` is empty or names an unknown measure.
    """
    names = _check_measures(measures)
    if not isinstance(activations, (list, tuple)) or len(activations) < 2:
        raise ValueError("activations must list at least 2 networks' {layer: array} dicts")
    layers = list(activations[0]) if layers is None else list(layers)
    if len(layers) < 2:
        raise ValueError(f"layer identification needs at least 2 layers, got {layers}")
    n_rows = None
    for k, acts in enumerate(activations):
        missing = [la for la in layers if la not in acts]
        if missing:
            raise ValueError(f"activations[{k}] lacks layer(s) {missing}")
        rows = {np.asarray(acts[la]).shape[0] for la in layers}
        if len(rows) != 1 or (n_rows is not None and rows != {n_rows}):
            raise ValueError(f"activations[{k}]: every layer of every network must have the same rows, got {rows}")
        n_rows = rows.pop()
    n = len(activations)
    mats = {m: {} for m in names}
    from ._threads import single_threaded_blas

    with single_threaded_blas():  # many small products: one BLAS thread is fastest, and far faster when busy
        _fill(mats, activations, names, layers, n, progress)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    acc, per = {}, {}
    for m in names:
        larger = MEASURES[m][1]
        credit = np.array([[_credit(mats[m][p][i], i, larger) for i in range(len(layers))] for p in pairs])
        acc[m] = float(credit.mean())
        per[m] = credit.mean(axis=0).tolist()
    return LayerIdResult(acc, per, layers, n, int(n_rows), pairs, {m: [mats[m][p] for p in pairs] for m in names})


def run_benchmark(dataset: str = "digits", seeds=5, *, arch: str = "smallcnn", epochs: int | None = None,
                  width: float = 1.0, n_train=None, n_images=None, data_dir=None, out=None, device="cpu",
                  measures=None, progress: bool = True, say=None, min_accuracy: float = 0.0, lr=None) -> dict:
    """Train ``seeds`` networks (or reuse them), extract every ReLU (average-pooled), score every measure.

    ``seeds``: an int K (seeds 0..K-1) or a list. ``n_images``: probe images (default: all 1,797
    digits, else the first 2,000 test images). Returns a JSON-ready dict (the result, the
    configuration and the networks' test accuracies). Networks whose best test accuracy is below
    ``min_accuracy`` (training failed) are left out and listed under ``excluded``. Needs PyTorch.

    Parameters
    ----------
    dataset : {"digits", "mnist", "fashion-mnist"}, default "digits"
    seeds : int or list of int, default 5
        An int K >= 2 (seeds 0..K-1) or a list of at least 2 distinct non-negative seeds.
    arch : str, default "smallcnn"
        Architecture to train (see :func:`repmatch.nets.build_model`).
    epochs : int, optional
        Training epochs (default 10 for digits, else 3).
    width : float, default 1.0
        Width multiplier of the architecture.
    n_train : int, optional
        Training images to use (default: all).
    n_images : int >= 10, optional
        Probe images (default as above).
    data_dir : str, optional
        Where datasets are looked for.
    out : str or os.PathLike, optional
        Run directory (default ``runs/layer-id-<arch>-<dataset>``); networks are trained into (or
        reused from) a subdirectory named after the training settings.
    device : str, default "cpu"
        Torch device for training and extraction.
    measures : sequence of str, optional
        Keys of :data:`MEASURES` (default :data:`DEFAULT_MEASURES`).
    progress : bool, default True
        Show training progress bars.
    say : callable, optional
        Called with a short message at each step.
    min_accuracy : float in [0, 1), default 0.0
        Best test accuracy a network needs to be scored.
    lr : float, optional
        Learning rate (default: the architecture's).

    Returns
    -------
    dict
        ``"result"`` (the :class:`LayerIdResult`; ``.to_dict()`` for JSON), ``"config"`` (the
        settings used), ``"test_acc"`` (``{seed: best test accuracy}`` of the networks scored) and
        ``"excluded"`` (the same for those left out).

    Raises
    ------
    ValueError
        On an unsupported dataset, invalid ``seeds``, ``epochs``, ``n_images``, ``measures`` or
        ``min_accuracy``, a learning rate that makes training diverge, or fewer than 2 networks
        reaching ``min_accuracy``.
    """
    import os

    from . import activations as act
    from .nets import BatchLoader, load_checkpoint, load_dataset, train_seeds
    from .nets.datasets import _canonical
    from .pipeline.config import _canonical_arch
    from .pipeline.train import finished as _finished

    say = say or (lambda msg: None)
    arch = _canonical_arch(arch)
    dataset = _canonical(dataset)
    if dataset not in ("digits", "mnist", "fashion-mnist"):
        raise ValueError(f"dataset must be one of digits, mnist, fashion-mnist; got {dataset!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool) else list(seeds)
    if len(seed_list) < 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seed_list):
        raise ValueError(f"seeds must be an integer >= 2 or a list of at least 2 non-negative seeds, got {seeds!r}")
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct, got {seed_list}")
    epochs = epochs if epochs is not None else (10 if dataset == "digits" else 3)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    names = _check_measures(measures)
    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer))
                                 or n_images < 10):
        raise ValueError(f"n_images must be an integer >= 10, got {n_images!r}")
    out = os.fspath(out or os.path.join("runs", f"layer-id-{arch}-{dataset}"))
    nets = os.path.join(out, f"nets-e{epochs}-w{width:g}-n{n_train or 'all'}" + (f"-lr{lr:g}" if lr else ""))
    todo = [s for s in seed_list if not _finished(os.path.join(nets, f"seed{s}"), epochs)]
    if todo:
        say(f"training {arch} on {dataset}, seeds {todo}, {epochs} epochs -> {nets}")
        try:
            train_seeds(arch, dataset, todo, out=nets, epochs=epochs, width=width, n_train=n_train, data_dir=data_dir,
                        device=device, progress=progress, lr=lr)
        except FloatingPointError as exc:
            raise ValueError(f"lr: {exc} (pass a smaller learning rate)") from None
    if not 0.0 <= float(min_accuracy) < 1.0:
        raise ValueError(f"min_accuracy must lie in [0, 1), got {min_accuracy!r}")
    models, accs, excluded = [], {}, {}
    for s in seed_list:
        m, info = load_checkpoint(os.path.join(nets, f"seed{s}", "best.pt"), device=device)
        acc = float(info.get("best_test_acc", float("nan")))
        if acc < min_accuracy:
            excluded[str(s)] = acc
            say(f"seed {s} left out: best test accuracy {acc:.3f} < {min_accuracy:g}")
            continue
        models.append(m)
        accs[str(s)] = acc
    if len(models) < 2:
        raise ValueError(f"min_accuracy {min_accuracy:g} leaves {len(models)} network(s) of {len(seed_list)}; "
                         "at least 2 are needed (train longer, or lower it)")
    d = info["data"]
    data = load_dataset(dataset, data_dir, image_size=d["image_size"], n_train=n_train)
    if dataset == "digits":  # 359 test digits are too few rows for 64-128-unit layers: use all 1,797
        x = np.concatenate([data.x_test, data.x_train])
    else:
        x = data.x_test
    n_img = min(len(x), n_images or (len(x) if dataset == "digits" else 2000))
    x = x[:n_img]
    loader = BatchLoader(x, np.zeros(len(x), dtype=np.int64), np.asarray(d["mean"], np.float32),
                         np.asarray(d["std"], np.float32), batch_size=256)
    say(f"extracting every ReLU (average-pooled) of {len(models)} networks on {n_img} images")
    acts = [{k: v.astype(np.float64) for k, v in act.extract(m, loader, conv_mode="avgpool", device=device).items()}
            for m in models]
    res = layer_identification(acts, names, progress=say)
    return {"result": res, "config": {"dataset": dataset, "arch": arch, "seeds": seed_list, "epochs": epochs,
                                      "width": width, "n_train": n_train, "n_images": n_img, "measures": names,
                                      "conv_mode": "avgpool", "out": out, "min_accuracy": float(min_accuracy),
                                      "lr": lr},
            "test_acc": accs, "excluded": excluded}
