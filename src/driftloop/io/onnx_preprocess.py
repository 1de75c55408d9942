"""The ONNX nodes for the preprocessing ``core.pipeline.build_pipeline`` fits (training side only).

skl2onnx converts that ColumnTransformer into about 75 nodes: per categorical column an ArrayFeatureExtractor,
two LabelEncoders, a Cast, a Where, a Gather and a OneHotEncoder. onnxruntime pays a fixed cost per node: a
one-row prediction of churn's logistic regression took 34.5 µs through that graph, 15 µs through this one
(``bench/bench_onnx.py``). The same transformation in 9 nodes (10 with a scaler) for churn's 19 features:

    numeric inputs      → Concat → Imputer (the medians) → Scaler (linear models only)        ─┐
    categorical inputs  → Concat → Equal "" → Where (most frequent per column) → OneHotEncoder  ├→ Concat → features
                          (over every column's categories) → Reshape → Gather (each column's own categories)

The one-hot encoder sees the union of all columns' categories, so a value that is some other column's category
is one-hot encoded in a slot the Gather never picks: it scores as unknown, as scikit-learn's
``handle_unknown="ignore"`` does. That tensor is ``[n, columns, union]``: for many columns with many distinct
categories (10 × 200: 44 ms for 1,000 rows instead of 2.7 ms) a OneHotEncoder per column replaces it. The
export's parity check compares the result with scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from driftloop.core.schema import MISSING_CATEGORY
from driftloop.errors import ExportError

ML_DOMAIN = "ai.onnx.ml"
PREFIX = "driftloop_pre_"  # every name this graph makes; feature names are checked against it
# One-hot over the union of all columns' categories makes an [n, columns, union] tensor: beyond this many
# values a row (or twice the real one-hot width), one encoder per column is cheaper.
UNION_WIDTH_LIMIT = 1024
# The two Concat outputs that gather the per-feature inputs: the grouped serving graph's inputs.
NUMERIC_VALUES = f"{PREFIX}numeric"
CATEGORICAL_VALUES = f"{PREFIX}categorical_values"


@dataclass
class PreprocessGraph:
    """Nodes from the per-feature inputs to one float ``[n, width]`` tensor named ``output``."""

    output: str
    width: int
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)


def preprocess_graph(preprocess: ColumnTransformer) -> PreprocessGraph:
    """The fitted ColumnTransformer of ``build_pipeline`` as ONNX nodes.

    Raises:
        ExportError: the transformer is not the one ``build_pipeline`` makes, or its fit dropped a column.
    """
    graph = PreprocessGraph(output=f"{PREFIX}features", width=0)
    parts: list[str] = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            if transformer != "drop":
                raise ExportError(f"the preprocessing keeps the remainder columns ({transformer!r}); expected 'drop'")
            continue
        steps = _steps(name, transformer)
        if name == "numeric":
            parts.append(_numeric(graph, list(columns), steps))
        elif name == "categorical":
            parts.append(_categorical(graph, list(columns), steps))
        else:
            raise ExportError(f"unexpected preprocessing step {name!r}; expected 'numeric' and 'categorical'")
    if not parts:
        raise ExportError("the preprocessing has no columns")
    graph.nodes.append(helper.make_node("Concat", parts, [graph.output], axis=1))
    return graph


def _steps(name: str, transformer: object) -> dict[str, object]:
    if not isinstance(transformer, Pipeline):
        raise ExportError(f"preprocessing step {name!r} is a {type(transformer).__name__}, not a Pipeline")
    return dict(transformer.steps)


def _numeric(graph: PreprocessGraph, columns: list[str], steps: dict[str, object]) -> str:
    impute, scale = steps.get("impute"), steps.get("scale")
    if not isinstance(impute, SimpleImputer) or set(steps) - {"impute", "scale"}:
        raise ExportError(f"numeric preprocessing {list(steps)}; expected a SimpleImputer and an optional scaler")
    if not _is_nan(impute.missing_values) or impute.add_indicator:
        raise ExportError("the numeric imputer must replace NaN and add no indicator columns")
    medians = np.asarray(impute.statistics_, dtype=np.float32)
    concat, imputed = NUMERIC_VALUES, f"{PREFIX}numeric_imputed"
    graph.nodes += [
        helper.make_node("Concat", columns, [concat], axis=1),
        helper.make_node(
            "Imputer",
            [concat],
            [imputed],
            domain=ML_DOMAIN,
            imputed_value_floats=medians.tolist(),
            replaced_value_float=float("nan"),
        ),
    ]
    # SimpleImputer drops a column that had no value in any training row (its median is NaN); so does the graph.
    kept = [index for index, median in enumerate(medians) if not np.isnan(median)]
    if len(kept) < len(columns):
        graph.initializers.append(numpy_helper.from_array(np.array(kept, dtype=np.int64), f"{PREFIX}numeric_kept"))
        graph.nodes.append(helper.make_node("Gather", [imputed, f"{PREFIX}numeric_kept"], [f"{imputed}_kept"], axis=1))
        imputed = f"{imputed}_kept"
    graph.width += len(kept)
    if scale is None:
        return imputed
    if not isinstance(scale, StandardScaler):
        raise ExportError(f"numeric scaler is a {type(scale).__name__}; expected StandardScaler")
    # scikit-learn computes mean_ even with with_mean=False, and does not subtract it.
    mean = scale.mean_ if scale.with_mean else np.zeros(len(kept))
    factor = 1.0 / scale.scale_ if scale.with_std else np.ones(len(kept))
    scaled = f"{PREFIX}numeric_scaled"
    graph.nodes.append(
        helper.make_node(
            "Scaler",
            [imputed],
            [scaled],
            domain=ML_DOMAIN,
            offset=np.asarray(mean, dtype=np.float32).tolist(),
            scale=np.asarray(factor, dtype=np.float32).tolist(),
        )
    )
    return scaled


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


def _categorical(graph: PreprocessGraph, columns: list[str], steps: dict[str, object]) -> str:
    impute, one_hot = steps.get("impute"), steps.get("one_hot")
    if not isinstance(impute, SimpleImputer) or not isinstance(one_hot, OneHotEncoder) or len(steps) != 2:
        raise ExportError(f"categorical preprocessing {list(steps)}; expected a SimpleImputer and a OneHotEncoder")
    if impute.missing_values != MISSING_CATEGORY or impute.add_indicator:
        raise ExportError(f"the categorical imputer must replace {MISSING_CATEGORY!r} and add no indicator columns")
    grouped = one_hot.min_frequency is not None or one_hot.max_categories is not None
    if one_hot.handle_unknown != "ignore" or one_hot.drop is not None or grouped:
        raise ExportError("the one-hot encoder must ignore unknown categories, drop none and group none")
    fills = [str(value) for value in impute.statistics_]
    categories = [[str(value) for value in column] for column in one_hot.categories_]
    if len(categories) != len(columns):
        # SimpleImputer dropped a column that had no value in any training row.
        raise ExportError(f"the one-hot encoder takes {len(categories)} of {len(columns)} categorical columns")

    def name(suffix: str) -> str:
        return f"{PREFIX}categorical_{suffix}"

    graph.initializers += [
        numpy_helper.from_array(np.array([MISSING_CATEGORY], dtype=object), name("missing")),
        numpy_helper.from_array(np.array([fills], dtype=object), name("fill")),
    ]
    graph.nodes += [
        helper.make_node("Concat", columns, [CATEGORICAL_VALUES], axis=1),
        helper.make_node("Equal", [CATEGORICAL_VALUES, name("missing")], [name("is_missing")]),
        helper.make_node("Where", [name("is_missing"), name("fill"), CATEGORICAL_VALUES], [name("imputed")]),
    ]
    vocabulary = list(dict.fromkeys(value for column in categories for value in column))
    width = sum(len(column) for column in categories)
    graph.width += width
    if len(columns) * len(vocabulary) <= max(UNION_WIDTH_LIMIT, 2 * width):
        return _one_hot_over_the_union(graph, name, categories, vocabulary)
    return _one_hot_per_column(graph, name, categories)


def _one_hot_over_the_union(
    graph: PreprocessGraph, name: Callable[[str], str], categories: list[list[str]], vocabulary: list[str]
) -> str:
    """3 nodes: every column one-hot over every column's categories, then each column's own slots gathered."""
    slot = {value: index for index, value in enumerate(vocabulary)}
    picked = [row * len(vocabulary) + slot[value] for row, column in enumerate(categories) for value in column]
    graph.initializers += [
        numpy_helper.from_array(np.array([-1, len(categories) * len(vocabulary)], dtype=np.int64), name("flat")),
        numpy_helper.from_array(np.array(picked, dtype=np.int64), name("columns")),
    ]
    graph.nodes += [
        helper.make_node(
            "OneHotEncoder", [name("imputed")], [name("one_hot")], domain=ML_DOMAIN, cats_strings=vocabulary, zeros=1
        ),
        helper.make_node("Reshape", [name("one_hot"), name("flat")], [name("one_hot_flat")]),
        helper.make_node("Gather", [name("one_hot_flat"), name("columns")], [name("encoded")], axis=1),
    ]
    return name("encoded")


def _one_hot_per_column(graph: PreprocessGraph, name: Callable[[str], str], categories: list[list[str]]) -> str:
    """A OneHotEncoder per column: more nodes, but no ``[n, columns, all categories]`` tensor."""
    parts = [name(f"column_{index}") for index in range(len(categories))]
    graph.initializers.append(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), name("flat")))
    graph.nodes.append(helper.make_node("Split", [name("imputed")], parts, axis=1, num_outputs=len(parts)))
    for part, column in zip(parts, categories, strict=True):
        graph.nodes.append(
            helper.make_node(
                "OneHotEncoder", [part], [f"{part}_one_hot"], domain=ML_DOMAIN, cats_strings=column, zeros=1
            )
        )
    graph.nodes += [
        helper.make_node("Concat", [f"{part}_one_hot" for part in parts], [name("one_hot")], axis=-1),
        helper.make_node("Reshape", [name("one_hot"), name("flat")], [name("encoded")]),
    ]
    return name("encoded")
