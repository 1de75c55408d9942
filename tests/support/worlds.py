"""Generated data of every task kind, where the truth is known: a "reference" world and a "shifted" one.

Four numeric features and a categorical one. In the shifted world ``x1`` moved (mean 0 → 6, so the two worlds
barely overlap and a tree can tell them apart) and the target follows another rule, which only a model that saw
shifted rows can learn:

    multiclass   low / mid / high by x1 + 0.5·x3 (shifted: x2 + 0.5·x3), plus noise
    regression   3·x1 + 2·x2 (shifted: 3·x1 − 4·x2 + 10), plus noise
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftloop.core.schema import DatasetSchema

CLASSES = ("low", "mid", "high")
TARGET = "y"
REGIONS = ("north", "south", "east")


def world(rows: int, seed: int, kind: str, shifted: bool = False) -> pd.DataFrame:
    """``rows`` rows of the reference (or shifted) world for ``kind`` (``multiclass`` or ``regression``)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(6.0 if shifted else 0.0, 1.0, rows)
    x2, x3, x4 = (rng.normal(0.0, 1.0, rows) for _ in range(3))
    region = rng.choice(REGIONS, rows)
    bonus = np.where(region == "north", 0.5, 0.0)
    if kind == "regression":
        signal = (3 * x1 - 4 * x2 - 8) if shifted else (3 * x1 + 2 * x2)
        target: np.ndarray = np.round(signal + bonus + rng.normal(0.0, 0.5, rows), 3)
    elif kind == "multiclass":
        signal = (x2 + 0.5 * x3) if shifted else (x1 + 0.5 * x3)
        noisy = signal + bonus + rng.normal(0.0, 0.3, rows)
        target = np.asarray(CLASSES, dtype=object)[np.digitize(noisy, [-0.5, 0.5])]
    else:
        raise ValueError(f"no world for {kind!r}")
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "x4": x4, "region": region, TARGET: target})


def world_schema(kind: str) -> DatasetSchema:
    """The schema of ``world(kind=kind)``."""
    target: dict[str, object] = {"name": TARGET, "kind": kind}
    if kind == "multiclass":
        target["classes"] = list(CLASSES)
    return DatasetSchema.model_validate(
        {
            "name": f"{kind}-world",
            "target": target,
            "features": [
                *({"name": name, "kind": "numeric"} for name in ("x1", "x2", "x3", "x4")),
                {"name": "region", "kind": "categorical", "categories": list(REGIONS)},
            ],
        }
    )


GOOD_SHOPS = ("s000", "s001", "s002")


def shops(rows: int, seed: int, distinct: int = 300) -> pd.DataFrame:
    """A high-cardinality column: ``shop`` follows a Zipf law over ``distinct`` values (``s000`` the most frequent);
    ``y`` is 1 for 80% of the rows in the three good shops, 20% elsewhere. ``x`` is noise."""
    rng = np.random.default_rng(seed)
    rank = (rng.zipf(1.3, rows) - 1) % distinct
    shop = np.array([f"s{r:03d}" for r in rank], dtype=object)
    good = np.isin(shop, GOOD_SHOPS)
    y = (rng.random(rows) < np.where(good, 0.8, 0.2)).astype(int)
    return pd.DataFrame({"x": rng.normal(size=rows), "shop": shop, "y": y})


def shop_schema(**shop: object) -> DatasetSchema:
    """The schema of ``shops()``, with ``shop``'s category rules given as keyword arguments."""
    return DatasetSchema.model_validate(
        {
            "name": "shops",
            "target": {"name": "y", "classes": ["0", "1"], "positive": "1"},
            "features": [{"name": "x", "kind": "numeric"}, {"name": "shop", "kind": "categorical", **shop}],
        }
    )
