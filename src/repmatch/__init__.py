"""repmatch: do two networks trained from different seeds learn the same representation?

Public API (re-exported here; see the README and docs/ for a tour):

Subspace match (Wang et al., NeurIPS 2018)
    maximum_match, max_epsilon, minimal_epsilon, similarity_curve, v_minimal_match, simple_matches
Streaming
    Reduction
"""

from ._validate import RepmatchWarning
from .reduce import GRAM_TOL, QR_TOL, Reduction
from .simple import SimpleMatches, simple_matches, v_minimal_match
from .subspace import (
    EDGE_SLACK,
    MIN_SAMPLES_PER_NEURON,
    Match,
    SimilarityCurve,
    max_epsilon,
    maximum_match,
    minimal_epsilon,
    similarity_curve,
)

__version__ = "0.1.0"

__all__ = [
    "Reduction",
    "GRAM_TOL",
    "QR_TOL",
    "EDGE_SLACK",
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
]
