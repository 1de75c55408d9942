"""`--model package.module:factory`: the user's own estimator, behind driftloop's preprocessing, exported with parity.

The factories live in a module written to a temporary directory and imported from the current directory, as a
user's `mymodels.py` next to their data would be.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.parity import compare_outputs
from driftloop.core.pipeline import MODEL_STEP, build_pipeline, check_columns, needs_scaling, scaler_before_trees
from driftloop.core.schema import DatasetSchema
from driftloop.errors import ConfigError, ExportError
from driftloop.io.onnx_export import export_onnx, proven_grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.user_model import TRIAL_ROWS, canonical_reference, check_export_on_sample, resolve_estimator

FACTORIES = """
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def extra_trees():
    return ExtraTreesClassifier(n_estimators=40, min_samples_leaf=5)


def knn():
    return KNeighborsClassifier(n_neighbors=15)


def sgd():
    return SGDClassifier(loss="log_loss", alpha=1e-3)


def mlp():
    return MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=3)


def whole_pipeline():
    # The user's own preprocessing of the churn columns (by name, as to_model_frame gives them), then ExtraTrees.
    numbers = ["tenure", "monthly_charges", "total_charges"]
    texts = ["contract", "internet_service", "payment_method"]
    fill, encode = SimpleImputer(strategy="median"), OneHotEncoder(handle_unknown="ignore")
    prepare = ColumnTransformer([("numbers", fill, numbers), ("texts", encode, texts)])
    return Pipeline([("prepare", prepare), ("trees", ExtraTreesClassifier(n_estimators=30, min_samples_leaf=5))])


def texts_imputed_as_if_missing_were_nan():
    # Trial 52: skl2onnx has a converter for every step, so it passed the check before reading the data; the export
    # refused the imputer after the fit: text with missing_values=nan.
    texts = ["contract", "internet_service", "payment_method"]
    fill = make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder(handle_unknown="ignore"))
    return make_pipeline(ColumnTransformer([("texts", fill, texts)]), ExtraTreesClassifier(n_estimators=10))


def texts_imputed_as_served():
    texts = ["contract", "internet_service", "payment_method"]
    fill = make_pipeline(
        SimpleImputer(strategy="constant", missing_values="", fill_value="none"), OneHotEncoder(handle_unknown="ignore")
    )
    return make_pipeline(ColumnTransformer([("texts", fill, texts)]), ExtraTreesClassifier(n_estimators=10))


def more_components_than_a_sample_has_rows():
    from sklearn.decomposition import PCA

    numbers = ["tenure", "monthly_charges", "total_charges"]
    imputed = ColumnTransformer([("n", SimpleImputer(), numbers)])
    return make_pipeline(imputed, PCA(n_components=1500), SGDClassifier(loss="log_loss"))


def logged_charges():
    # Trial 12: fitted, then refused at export, with four tracebacks. ONNX cannot run np.log1p from Python.
    import numpy as np
    from sklearn.preprocessing import FunctionTransformer

    logged = ColumnTransformer([("log", FunctionTransformer(np.log1p), ["monthly_charges"])])
    return make_pipeline(logged, SGDClassifier(loss="log_loss"))


def identity_step():
    from sklearn.preprocessing import FunctionTransformer

    passed = ColumnTransformer([("same", FunctionTransformer(), ["monthly_charges"])])  # no function: exportable
    return make_pipeline(passed, SGDClassifier(loss="log_loss"))


def pipeline_with_a_step_onnx_lacks():
    return make_pipeline(StandardScaler(), Handmade())


class Handmade(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        return self

    def predict(self, X):
        return X

    def predict_proba(self, X):
        return X


def handmade():
    return Handmade()


def raises():
    raise ValueError("no data yet")


NOT_A_FUNCTION = 3
"""


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh module holding the factories above, importable from the current directory."""
    name = f"usermodels_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolve_estimator adds the current directory
    yield name
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def churn_split(churn_schema: DatasetSchema, _churn_frame_once: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    raw = _churn_frame_once
    y = encode_target(raw[churn_schema.target.name], churn_schema)
    train, holdout, y_train, _ = train_test_split(raw, y, train_size=2000, test_size=800, stratify=y, random_state=1)
    return to_model_frame(train, churn_schema), y_train, to_model_frame(holdout, churn_schema)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the small MLP: its fit is not the point
@pytest.mark.parametrize(("factory", "scaled"), [("extra_trees", False), ("sgd", True), ("mlp", True)])
def test_a_users_estimator_trains_behind_driftloops_preprocessing_and_exports_with_parity(
    factory: str,
    scaled: bool,
    factories: str,
    churn_schema: DatasetSchema,
    churn_split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
) -> None:
    train, y_train, holdout = churn_split
    model = resolve_estimator(f"{factories}:{factory}", seed=7)
    assert needs_scaling(model) is scaled  # trees are not scaled: a scaler in front of them breaks ONNX parity
    pipeline = build_pipeline(churn_schema, model).fit(train, y_train)
    assert pipeline.named_steps[MODEL_STEP] is model
    onnx_bytes = export_onnx(pipeline, churn_schema)
    labels, proba = OnnxModel.from_bytes(onnx_bytes, churn_schema).predict(holdout)
    report = compare_outputs(pipeline.predict_proba(holdout), proba, pipeline.predict(holdout), labels, tolerance=1e-5)
    assert report.passed, report.summary()
    proven_grouped_onnx(onnx_bytes, churn_schema, holdout)  # the server's faster graph holds too


def test_a_users_whole_pipeline_replaces_driftloops_preprocessing_and_exports_with_parity(
    factories: str, churn_schema: DatasetSchema, churn_split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]
) -> None:
    train, y_train, holdout = churn_split
    model = resolve_estimator(f"{factories}:whole_pipeline", {"trees__max_depth": 8}, seed=7)
    assert model.get_params()["trees__random_state"] == 7  # the run's seed reaches the final step
    pipeline = build_pipeline(churn_schema, model).fit(train, y_train)
    assert pipeline is model  # used as it is: no driftloop preprocessing in front of the user's
    onnx_bytes = export_onnx(pipeline, churn_schema)
    labels, proba = OnnxModel.from_bytes(onnx_bytes, churn_schema).predict(holdout)
    report = compare_outputs(pipeline.predict_proba(holdout), proba, pipeline.predict(holdout), labels, tolerance=1e-5)
    assert report.passed, report.summary()
    with pytest.raises(ExportError, match="does not gather its inputs"):  # the server runs model.onnx instead
        proven_grouped_onnx(onnx_bytes, churn_schema, holdout)


def test_a_failed_parity_names_a_scaler_before_trees_as_its_likely_cause(
    factories: str, churn_schema: DatasetSchema
) -> None:
    """Trial 12: StandardScaler → RandomForestRegressor failed parity, and nothing said why; without it, it passed."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    numbers = make_pipeline(SimpleImputer(), StandardScaler())
    nested = make_pipeline(ColumnTransformer([("numbers", numbers, ["tenure"])]), RandomForestRegressor())
    assert scaler_before_trees(nested) == "StandardScaler"
    assert scaler_before_trees(resolve_estimator(f"{factories}:whole_pipeline")) is None  # imputer, one-hot: fine
    assert scaler_before_trees(make_pipeline(MinMaxScaler(), GradientBoostingRegressor())) == "MinMaxScaler"
    assert scaler_before_trees(make_pipeline(MinMaxScaler(), LogisticRegression())) is None  # linear: scale it
    for estimator in ("random_forest", "hist_gradient_boosting", "logistic_regression"):
        assert scaler_before_trees(build_pipeline(churn_schema, estimator)) is None  # driftloop's own


def test_a_pipeline_selecting_a_column_the_schema_lacks_is_refused_before_fitting(
    factories: str, churn_schema: DatasetSchema
) -> None:
    model = resolve_estimator(f"{factories}:whole_pipeline")
    check_columns("mine", model, churn_schema)  # every column it names is a feature
    misspelt = churn_schema.model_copy(
        update={"features": tuple(f for f in churn_schema.features if f.name != "tenure")}
    )
    with pytest.raises(ConfigError, match=r"--model mine: 'numbers' selects column\(s\) 'tenure' that schema"):
        check_columns("mine", model, misspelt)


def test_params_and_the_seed_reach_the_users_estimator(factories: str) -> None:
    model = resolve_estimator(f"{factories}:extra_trees", {"max_depth": 4}, seed=11)
    assert model.get_params()["max_depth"] == 4
    assert model.get_params()["n_estimators"] == 40  # the factory's own choice stays
    assert model.get_params()["random_state"] == 11  # unset by the factory: the run's seed
    assert resolve_estimator(f"{factories}:mlp", seed=11).get_params()["random_state"] == 3  # set by the factory


@pytest.mark.parametrize(
    ("reference", "error", "message"),
    [
        (":pipeline_with_a_step_onnx_lacks", ExportError, r"Handmade cannot be exported to ONNX"),
        (":logged_charges", ExportError, r"FunctionTransformer\(log1p\) cannot be exported to ONNX: skl2onnx converts"),
        (":raises", ConfigError, r"calling it raised ValueError: no data yet"),
        (":NOT_A_FUNCTION", ConfigError, r"has a int called 'NOT_A_FUNCTION', not a function"),
        (":missing", ConfigError, r"has nothing called 'missing'"),
        (":handmade", ExportError, r"Handmade cannot be exported to ONNX: skl2onnx says .*converter is likely missing"),
        ("no_such_module:f", ConfigError, r"cannot import 'no_such_module' \(ModuleNotFoundError"),
        ("not a reference:", ConfigError, r"is not a reference like 'package.module:factory'"),
    ],
)
def test_a_factory_that_cannot_give_an_exportable_classifier_is_refused_before_fitting(
    reference: str, error: type[Exception], message: str, factories: str
) -> None:
    with pytest.raises(error, match=message):
        resolve_estimator(f"{factories}{reference}" if reference.startswith(":") else reference)


def test_a_function_transformer_without_a_function_is_accepted(factories: str) -> None:
    assert resolve_estimator(f"{factories}:identity_step").steps[-1][0] == "sgdclassifier"


def test_an_unknown_parameter_of_the_users_estimator_is_named(factories: str) -> None:
    with pytest.raises(ConfigError, match=rf"estimator '{factories}:knn' does not take parameter\(s\) 'depth'"):
        resolve_estimator(f"{factories}:knn", {"depth": 3})


def test_a_factory_in_a_file_is_loaded_by_its_path_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "project" / "models.py"
    models.parent.mkdir()
    models.write_text(textwrap.dedent(FACTORIES))
    monkeypatch.chdir(tmp_path)
    reference = canonical_reference("project/models.py:extra_trees")
    assert reference == f"{models}:extra_trees"  # absolute: what the version records, for the worker's retrain
    monkeypatch.chdir("/")
    assert resolve_estimator(reference, {"max_depth": 3}).get_params()["max_depth"] == 3
    assert canonical_reference("pkg.module:factory") == "pkg.module:factory"
    with pytest.raises(ConfigError, match=r"there is no file /nowhere/models.py"):
        resolve_estimator("/nowhere/models.py:extra_trees")
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency\n")
    with pytest.raises(ConfigError, match=r"loading .*broken.py raised ModuleNotFoundError"):
        resolve_estimator(f"{broken}:f")


def test_a_model_that_converters_exist_for_but_cannot_export_is_refused_after_a_fit_on_a_sample(
    factories: str, churn_schema: DatasetSchema, churn_frame: pd.DataFrame
) -> None:
    """Trial 52: the export failed after the full fit; a fit on a sample finds it first, and the hint says why."""
    broken = f"{factories}:texts_imputed_as_if_missing_were_nan"
    resolve_estimator(broken)  # every step has a converter: nothing to see before a fit
    with pytest.raises(ExportError) as refused:
        check_export_on_sample(churn_frame, churn_schema, broken, None, seed=3)
    message = str(refused.value)
    assert "NotImplementedError: The converter is implemented when the missing values are string" in message
    assert 'impute text columns with SimpleImputer(missing_values="", ...)' in message
    assert f"found before the full fit: {broken} fitted on {TRIAL_ROWS:,} of the training rows" in message
    # Imputing "" as the served graph gets it: exported. Two churners in 7,043 rows: a plain sample of 1,000 would
    # likely hold none, and a model that never saw a class is refused at export; the sample keeps one of them.
    rare = churn_frame.assign(churn="No")
    rare.loc[rare.index[[10, 5000]], "churn"] = "Yes"
    served = f"{factories}:texts_imputed_as_served"
    assert check_export_on_sample(rare, churn_schema, served, None, seed=3) == TRIAL_ROWS + 1  # seed 3's held none
    # A model that cannot be fitted on so few rows proves nothing: its full fit goes ahead.
    few = f"{factories}:more_components_than_a_sample_has_rows"
    assert check_export_on_sample(churn_frame, churn_schema, few, None, seed=3) is None
