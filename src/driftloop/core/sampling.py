"""The one rule for bounding a step's rows: at most ``limit`` positions, seeded, without replacement, in order.

The drift profile's reference sample, the report's rows, permutation importance, export parity and a segment's
tests all draw this way, so a step that samples says how many rows it used and draws the same rows again.
"""

from __future__ import annotations

import numpy as np


def sample_positions(rows: int, limit: int, seed: int | np.random.Generator) -> np.ndarray:
    """Every position of ``rows`` when there are at most ``limit``; else ``limit`` of them, seeded, sorted."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))
