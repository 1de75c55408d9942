"""Categorical features' lists taken from a snapshot.

``categories: learn`` keeps a feature's most frequent values, up to its cap; the others, and with ``unseen: other``
any value outside the list, go to the feature's other bucket (``OTHER_CATEGORY``). The bucket is a category of its
own when the training snapshot put rows in it, so the model learns what such rows do. Which value the model sees
for a value outside the list is ``Feature.bucketed``'s rule, in training and in serving.
"""

from __future__ import annotations

import pandas as pd

from driftloop.core.schema import MISSING_CATEGORY, OTHER_CATEGORY, DatasetSchema, Feature, Unseen


def learn_categories(schema: DatasetSchema, frame: pd.DataFrame) -> DatasetSchema:
    """``schema`` with every categorical list as training on ``frame`` uses it.

    A ``learn`` feature gets the frame's most frequent values (ties broken by the value), sorted, plus the other
    bucket when some were left out. A listed feature with ``unseen: other`` gets the bucket added when the frame
    has values outside its list. Every other feature is unchanged. ``frame`` is a validated snapshot.
    """
    features = tuple(_learned(feature, frame[feature.name]) for feature in schema.features)
    if features == schema.features:
        return schema
    return DatasetSchema.model_validate({**schema.model_dump(), "features": [f.model_dump() for f in features]})


def _learned(feature: Feature, values: pd.Series) -> Feature:
    if not feature.is_categorical or not (feature.learn or feature.unseen is Unseen.OTHER):
        return feature
    present = values.dropna().astype(str)
    present = present[present != MISSING_CATEGORY]
    # A row sent as the bucket itself (the server accepts its name) counts in it.
    bucketed = present == OTHER_CATEGORY
    if feature.learn:
        counts = present[~bucketed].value_counts()
        ranked = sorted(zip(counts.index.astype(str), counts.to_numpy(), strict=True), key=lambda vc: (-vc[1], vc[0]))
        kept = sorted(value for value, _ in ranked[: feature.category_cap])
        cut = len(ranked) > len(kept) or bool(bucketed.any())
        categories = (*kept, OTHER_CATEGORY) if cut else tuple(kept)
    else:
        declared = feature.categories or ()
        outside = not set(present.unique()) <= set(declared)
        categories = (*declared, OTHER_CATEGORY) if outside and OTHER_CATEGORY not in declared else declared
    if categories == feature.categories:
        return feature
    return feature.model_copy(update={"categories": categories})
