"""repmatch: do two networks trained from different seeds learn the same representation?

Public API (re-exported here; see the README and docs/ for a tour):

Subspace match (Wang et al., NeurIPS 2018)
    maximum_match, max_epsilon, minimal_epsilon, similarity_curve, v_minimal_match, simple_matches
Convergent learning (Li et al., ICLR 2016)
    correlation, semi_match, bipartite_match, mutual_information, mi_bin_edges, MIHistogram,
    sparse_prediction, spectral_clusters, cluster_sweep, hierarchical_groups
Reference measures
    linear_cka, debiased_linear_cka, rbf_cka, cca, mean_squared_cca, svcca, pwcca, procrustes_distance
Soft matching (Khosla & Williams 2023)
    soft_match (optimal transport between the units of two layers)
Null baselines and calibration
    permutation_test, bootstrap_ci (groups=: resample images), rotation_baseline, heldout_match
Streaming
    Reduction, correlation_from_reduction
"""

from . import _aliases
from ._validate import RepmatchWarning
from .alignment import ASSIGN_TOL, BipartiteMatch, SemiMatch, bipartite_match, semi_match
from .clusters import ClusterResult, ClusterSweep, cluster_sweep, hierarchical_groups, spectral_clusters
from .mi import MIHistogram, mi_bin_edges, mutual_information
from .inference import BootstrapResult, CurveNull, PermutationResult, bootstrap_ci, permutation_test, similarity_curve_null
from .reduce import GRAM_TOL, QR_TOL, RANK_TOL, Reduction
from .reference import (
    REFERENCE_MEASURES,
    Score,
    cca,
    debiased_linear_cka,
    linear_cka,
    mean_squared_cca,
    procrustes_distance,
    pwcca,
    rbf_cka,
    svcca,
)
from .sparse import SparsePath, SparsePrediction, sparse_prediction
from .correlation import CONSTANT_TOL, CorrelationStats, correlation, correlation_from_reduction
from .softmatch import SoftMatch, soft_match
from .calibration import HeldoutMatch, RotationBaseline, heldout_match, rotation_baseline
from .simple import SimpleMatches, simple_matches, v_minimal_match
from .subspace import (
    MIN_SAMPLES_PER_NEURON,
    Match,
    NoMatchError,
    SimilarityCurve,
    max_epsilon,
    maximum_match,
    minimal_epsilon,
    similarity_curve,
)

_aliases.register()  # repmatch.stats, repmatch.nulls, repmatch.cli.scale: deprecated old names

__version__ = "0.1.0"

__all__ = [
    "Reduction",
    "GRAM_TOL",
    "ASSIGN_TOL",
    "QR_TOL",
    "RANK_TOL",
    "NoMatchError",
    "MIN_SAMPLES_PER_NEURON",
    "Match",
    "SimilarityCurve",
    "SimpleMatches",
    "RepmatchWarning",
    "maximum_match",
    "max_epsilon",
    "minimal_epsilon",
    "similarity_curve",
    "v_minimal_match",
    "simple_matches",
    # convergent learning
    "CONSTANT_TOL",
    "CorrelationStats",
    "correlation",
    "correlation_from_reduction",
    "SemiMatch",
    "BipartiteMatch",
    "semi_match",
    "bipartite_match",
    "MIHistogram",
    "mi_bin_edges",
    "mutual_information",
    "SparsePath",
    "SparsePrediction",
    "sparse_prediction",
    "ClusterResult",
    "ClusterSweep",
    "spectral_clusters",
    "cluster_sweep",
    "hierarchical_groups",
    # reference measures
    "REFERENCE_MEASURES",
    "Score",
    "linear_cka",
    "debiased_linear_cka",
    "rbf_cka",
    "cca",
    "mean_squared_cca",
    "svcca",
    "pwcca",
    "procrustes_distance",
    # null baselines
    "PermutationResult",
    "BootstrapResult",
    "permutation_test",
    "similarity_curve_null",
    "CurveNull",
    "bootstrap_ci",
    # soft matching and calibrated baselines
    "SoftMatch",
    "soft_match",
    "RotationBaseline",
    "rotation_baseline",
    "HeldoutMatch",
    "heldout_match",
]
