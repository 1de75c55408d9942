"""The one rule for bounding a step's rows: at most ``limit`` positions, seeded, without replacement, in order.

The drift profile's reference sample, the report's rows, permutation importance, export parity and a segment's
tests all draw this way, so a step that samples says how many rows it used and draws the same rows again.
Where a rare label must not vanish (the importance's metric), ``sample_positions_by_label`` tops the sample up.
"""

from __future__ import annotations

import numpy as np


def sample_positions(rows: int, limit: int, seed: int | np.random.Generator) -> np.ndarray:
    """Every position of ``rows`` when there are at most ``limit``; else ``limit`` of them, seeded, sorted."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def sample_positions_by_label(labels: np.ndarray, limit: int, seed: int, floor: int) -> np.ndarray:
    """``sample_positions``, topped up so that no label keeps fewer than ``floor`` of its rows (all, if fewer).

    A rare class can vanish from a plain sample (6 rows of 200,000 drawn down to 5,000), and a metric over
    classes is then undefined. The plain sample's rows all stay; a label short of its floor gets the missing rows
    from its other rows, seeded. So the sample holds at most ``limit`` + labels × ``floor`` rows.
    """
    labels = np.asarray(labels)
    picked = sample_positions(len(labels), limit, seed)
    if len(picked) == len(labels):
        return picked
    in_sample = np.zeros(len(labels), dtype=bool)
    in_sample[picked] = True
    rng = np.random.default_rng([seed, floor])  # a stream of its own: not the plain sample's draws again
    extra = []
    for label in np.unique(labels):
        of_label = labels == label
        short = min(floor, int(np.count_nonzero(of_label))) - int(np.count_nonzero(of_label & in_sample))
        if short > 0:
            extra.append(rng.choice(np.flatnonzero(of_label & ~in_sample), size=short, replace=False))
    return np.sort(np.concatenate([picked, *extra])) if extra else picked
