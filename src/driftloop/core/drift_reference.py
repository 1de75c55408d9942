"""Which training rows a version's drift reference is built from: those like the traffic it will serve.

A first training's are all of them. A retrain's snapshot is its base file plus the recent labelled rows served
since; the base's rows are the traffic from before the change it retrains for. A reference of both flagged drift
on traffic of either kind: the shifted traffic a retrain had been fitted for, at a drifted share of 0.50, opened a
new episode and asked for another retrain with every batch of labels (trial 18). So a retrain with enough recent
training rows is watched against those alone, and traffic like its base's then reads as the change back it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftloop.core.snapshot import after_base

MIN_REFERENCE_ROWS = 200  # fewer recent rows: all the training rows, as the drift check judges no smaller window


def reference_rows(train_index: pd.Index, base_rows: int, minimum: int = MIN_REFERENCE_ROWS) -> np.ndarray:
    """Which training rows (by their snapshot ``train_index``) the drift reference is built from.

    ``base_rows``: how many of the snapshot's rows came from its base file (all of them, for a first training).
    """
    recent = after_base(train_index, base_rows)
    if int(recent.sum()) >= minimum:
        return recent
    return np.ones(len(train_index), dtype=bool)
