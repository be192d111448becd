"""The authors' protocol constants, in one home (every module and the CLI import them from here).

References: shared/spec/subspace-match.md section 5 (Wang et al.'s ε values) and
shared/spec/convergent-learning.md section 3 (Li et al.'s L1 penalties).
"""

from __future__ import annotations

__all__ = ["AUTHORS_EPS", "AUTHORS_ALPHAS", "PIPELINE_ALPHAS", "DEFAULT_EPS_GRID"]

#: The ε values at which Wang et al. report maximum-match similarity.
AUTHORS_EPS = (0.15, 0.2, 0.25, 0.3, 0.5)

#: Li et al.'s L1 penalties for sparse prediction: 0, 1e-5, 1e-4, 1e-3, 10^-2.6, 1e-2, 1e-1.
AUTHORS_ALPHAS = (0.0, 1e-5, 1e-4, 1e-3, 10**-2.6, 1e-2, 1e-1)

#: The reproduce pipeline's shorter grid: the authors' penalties without 1e-5 (which on the small
#: default layers differs from 0 by less than the test-set noise), 10^-2.6 rounded to 6 digits so
#: that it reads back identically from results.json.
PIPELINE_ALPHAS = (0.0, 1e-4, 1e-3, round(10**-2.6, 6), 1e-2, 1e-1)

#: The headline ε grid: 0, 0.025, ..., 0.975 (the whole curve on [0, 1)) with the authors' values on it.
DEFAULT_EPS_GRID = tuple(sorted(set(round(0.025 * k, 4) for k in range(40)) | set(AUTHORS_EPS)))
