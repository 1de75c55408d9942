"""The serving image's name, labels and staged build context (no Docker needed)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.core import lineage
from driftloop.core.schema import DatasetSchema
from driftloop.deploy.image_context import (
    PACKAGE_DIR,
    image_labels,
    serving_deployment_dir,
    serving_image_tag,
    stage_build_context,
)
from driftloop.errors import DeployError
from driftloop.io.bundle import ModelInfo, read_bundle

# Docker's reference grammar (distribution/reference), written out independently of the module under test.
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = rf"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*(?::[0-9]+)?"
REFERENCE = re.compile(rf"^(?:{DOMAIN}/)?{COMPONENT}(?:/{COMPONENT})*:[\w][\w.-]{{0,127}}$")

INFO = ModelInfo(
    name="Churn",
    version="7",
    run_id="0123abcd",
    onnx_sha256="ab" * 32,
    data_hash="cd" * 32,
    trained_at="2026-11-24T10:00:00+00:00",
    source="image",
)


@pytest.fixture
def model_dir(tmp_path: Path, churn_schema: DatasetSchema) -> Path:
    """A model directory in the registry's layout: model.onnx on top, the rest under extra_files/."""
    directory = tmp_path / "registered"
    (directory / "extra_files").mkdir(parents=True)
    (directory / lineage.ONNX_FILE).write_bytes(b"onnx graph bytes")
    (directory / "MLmodel").write_text("flavors: {}\n")
    (directory / "extra_files" / lineage.SCHEMA_FILE).write_text(churn_schema.model_dump_json())
    (directory / "extra_files" / lineage.SELFCHECK_FILE).write_text(json.dumps({"records": [], "outputs": []}))
    return directory


# ------------------------------------------------------------------------------------------------ image names


@pytest.mark.parametrize(
    ("prefix", "model", "version", "expected"),
    [
        ("driftloop", "churn", "3", "driftloop/churn-serving:v3"),
        ("driftloop", "Churn", "3", "driftloop/churn-serving:v3"),
        ("driftloop", "CHURN_Model.v2", "12", "driftloop/churn_model.v2-serving:v12"),
        ("registry.local/team", "churn", "1", "registry.local/team/churn-serving:v1"),
        ("registry.example.com:5000/team", "churn", "2", "registry.example.com:5000/team/churn-serving:v2"),
        ("localhost:5000", "churn", "2", "localhost:5000/churn-serving:v2"),
        ("driftloop", "a..b", "1", "driftloop/a-b-serving:v1"),
        ("driftloop", "a._-b", "1", "driftloop/a-b-serving:v1"),
        ("driftloop", "a__b", "1", "driftloop/a__b-serving:v1"),
        ("driftloop", "a---b", "1", "driftloop/a---b-serving:v1"),
        ("driftloop", "_churn.", "1", "driftloop/churn-serving:v1"),
    ],
)
def test_image_tags_follow_the_naming_rule(prefix: str, model: str, version: str, expected: str) -> None:
    tag = serving_image_tag(prefix, model, version)
    assert tag == expected
    assert REFERENCE.match(tag)


@pytest.mark.parametrize(
    "model",
    ["x", "X", "0", "a.b", "a_b", "a-b", "A.-_B", "__init__", "-.-a-.-", "v1.2.3-RC_1", "Model___Name", "a...b"],
)
def test_every_registry_model_name_makes_a_valid_reference(model: str) -> None:
    # The registry accepts [A-Za-z0-9_.-]+; each such name with a letter or digit must give a valid image name.
    assert REFERENCE.match(serving_image_tag("driftloop", model, "1"))


@pytest.mark.parametrize(
    ("prefix", "model", "version", "problem"),
    [
        ("Driftloop", "churn", "1", "image prefix"),
        ("driftloop/", "churn", "1", "image prefix"),
        ("drift..loop", "churn", "1", "image prefix"),
        ("team/registry:5000", "churn", "1", "image prefix"),
        ("registry:port/team", "churn", "1", "image prefix"),
        ("driftloop", "._-", "1", "no letter or digit"),
        ("driftloop", "churn", "1 2", "cannot be an image tag"),
        ("driftloop", "churn", "", "cannot be an image tag"),
        ("driftloop", "churn", "1" * 200, "cannot be an image tag"),
    ],
)
def test_impossible_image_names_are_refused(prefix: str, model: str, version: str, problem: str) -> None:
    with pytest.raises(DeployError, match=problem):
        serving_image_tag(prefix, model, version)


# ------------------------------------------------------------------------------------------------------ labels


def test_labels_carry_the_whole_lineage_with_the_exact_model_name() -> None:
    assert image_labels(INFO, "f00d" * 10) == {
        "org.opencontainers.image.title": "Churn-serving",
        "org.opencontainers.image.description": "driftloop model server for Churn version 7 (ONNX)",
        "org.opencontainers.image.version": "7",
        "org.opencontainers.image.revision": "f00d" * 10,
        "driftloop.model.name": "Churn",
        "driftloop.model.version": "7",
        "driftloop.model.run_id": "0123abcd",
        "driftloop.model.onnx_sha256": "ab" * 32,
        "driftloop.model.data_hash": "cd" * 32,
        "driftloop.model.git_commit": "f00d" * 10,
        "driftloop.model.trained_at": "2026-11-24T10:00:00+00:00",
    }


@pytest.mark.parametrize("commit", [None, "", "unknown"])
def test_missing_lineage_is_left_out_not_written_empty(commit: str | None) -> None:
    labels = image_labels(ModelInfo(name="churn", version="1"), commit)
    assert set(labels) == {
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.version",
        "driftloop.model.name",
        "driftloop.model.version",
    }
    assert all(value for value in labels.values())


# -------------------------------------------------------------------------------------------- the build context


def test_the_context_holds_the_dockerfile_the_code_and_the_model(model_dir: Path, tmp_path: Path) -> None:
    context = stage_build_context(model_dir, INFO, tmp_path / "context")

    top = sorted(path.name for path in context.iterdir())
    assert top == ["Dockerfile", "driftloop", "model", "requirements.txt", "slim_venv.py"]
    assert (context / "Dockerfile").read_text() == (serving_deployment_dir() / "Dockerfile").read_text()
    model_files = sorted(path.name for path in (context / "model").iterdir())
    assert model_files == ["model.onnx", "model_info.json", "schema.json", "selfcheck.json"]
    assert (context / "model" / "model.onnx").read_bytes() == b"onnx graph bytes"
    assert read_bundle(context / "model").info == INFO
    assert read_bundle(context / "model").serving_onnx_bytes is None  # an older version: model.onnx serves


def test_the_grouped_serving_graph_is_staged_when_the_version_has_one(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "extra_files" / lineage.SERVING_ONNX_FILE).write_bytes(b"grouped graph bytes")

    context = stage_build_context(model_dir, INFO, tmp_path / "context")

    assert (context / "model" / lineage.SERVING_ONNX_FILE).read_bytes() == b"grouped graph bytes"
    assert read_bundle(context / "model").serving_onnx_bytes == b"grouped graph bytes"


def test_the_context_has_the_package_source_without_data_or_byte_code(model_dir: Path, tmp_path: Path) -> None:
    context = stage_build_context(model_dir, INFO, tmp_path / "context")
    code = context / "driftloop"

    assert (code / "serving" / "__main__.py").read_text() == (PACKAGE_DIR / "serving" / "__main__.py").read_text()
    assert (code / "settings.py").is_file()
    assert not (code / "data").exists()
    assert (PACKAGE_DIR / "data").is_dir()  # ... although the package has it
    assert not list(code.rglob("__pycache__"))
    assert not list(code.rglob("*.pyc"))


def test_every_staged_file_is_readable_by_the_images_unprivileged_user(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / lineage.ONNX_FILE).chmod(0o600)
    context = stage_build_context(model_dir, INFO, tmp_path / "context")

    for path in [context, *context.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), path


@pytest.mark.parametrize("missing", [lineage.ONNX_FILE, f"extra_files/{lineage.SELFCHECK_FILE}"])
def test_a_model_directory_missing_a_file_is_refused_by_name(model_dir: Path, tmp_path: Path, missing: str) -> None:
    (model_dir / missing).unlink()
    with pytest.raises(DeployError, match=rf"model 'Churn' version 7: .* has no {Path(missing).name}"):
        stage_build_context(model_dir, INFO, tmp_path / "context")
    assert not (tmp_path / "context").exists()


def test_an_unreadable_schema_is_refused(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "extra_files" / lineage.SCHEMA_FILE).write_text("{not json")
    with pytest.raises(DeployError, match="cannot read .*schema.json"):
        stage_build_context(model_dir, INFO, tmp_path / "context")


def test_a_non_empty_destination_is_refused(model_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "context"
    dest.mkdir()
    (dest / "leftover").write_text("x")
    with pytest.raises(DeployError, match="is not empty"):
        stage_build_context(model_dir, INFO, dest)


def test_a_deployment_directory_without_the_dockerfile_is_refused(model_dir: Path, tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    serving.mkdir()
    (serving / "requirements.txt").write_text("fastapi\n")
    with pytest.raises(DeployError, match="lacks Dockerfile, slim_venv.py"):
        stage_build_context(model_dir, INFO, tmp_path / "context", serving_dir=serving)


# ------------------------------------------------------------------------------------------ the image's runtime


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = pinned.strip()
    return pins


def test_the_serving_pins_are_the_projects_constraints() -> None:
    # make installs the venv with -c constraints.txt; the image must serve with the same versions the tests ran.
    constraints = _pins(Path(__file__).parents[2] / "constraints.txt")
    serving = _pins(serving_deployment_dir() / "requirements.txt")
    assert {name: constraints.get(name) for name in serving} == serving


def test_requirements_pin_the_venvs_versions_and_no_training_stack() -> None:
    from importlib.metadata import version

    pins = _pins(serving_deployment_dir() / "requirements.txt")
    assert {"fastapi", "uvicorn", "onnxruntime", "numpy", "orjson", "prometheus-client"} <= set(pins)
    assert not {"scikit-learn", "mlflow", "mlflow-skinny", "prefect", "pandas", "skl2onnx"} & set(pins)
    assert {name: version(name) for name in pins} == pins


def test_the_images_entry_point_imports_no_cli_orchestration_or_training_stack() -> None:
    heavy = ("driftloop.cli", "typer", "rich", "prefect", "mlflow", "sklearn", "pandas", "docker", "yaml")
    code = f"import sys, driftloop.serving.__main__; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"
