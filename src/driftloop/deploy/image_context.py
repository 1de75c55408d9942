"""The serving image's name, labels and build context: no Docker here, only names and files.

A staged context looks like this (the Dockerfile's layers follow the same order)::

    Dockerfile, requirements.txt, slim_venv.py    from deployments/serving/
    driftloop/                                    the package source, without data/ and byte code
    model/                                        model.onnx, serving.onnx (versions that have it), schema.json,
                                                  selfcheck.json, model_info.json
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import driftloop
from driftloop.core import lineage
from driftloop.errors import BundleError, DeployError
from driftloop.io.bundle import ModelInfo, find_model_file, read_bundle, write_model_info

PACKAGE_DIR = Path(driftloop.__file__).resolve().parent
# A source checkout: <root>/src/driftloop and <root>/deployments/serving.
SERVING_DEPLOYMENT = PACKAGE_DIR.parents[1] / "deployments" / "serving"
SERVING_FILES = ("Dockerfile", "requirements.txt", "slim_venv.py")
MODEL_FILES = (lineage.ONNX_FILE, lineage.SCHEMA_FILE, lineage.SELFCHECK_FILE)
OPTIONAL_MODEL_FILES = (lineage.SERVING_ONNX_FILE,)  # versions registered before it existed lack it
PACKAGE_SKIP = ("__pycache__", "*.pyc", "*.pyo")
PACKAGE_SKIP_TOP = ("data",)  # the bundled training data: the server never reads it
CODE_DIR = "driftloop"
MODEL_DIR = "model"

OCI = "org.opencontainers.image."
MODEL_LABEL = "driftloop.model."
MODEL_NAME_LABEL = MODEL_LABEL + "name"
MODEL_VERSION_LABEL = MODEL_LABEL + "version"

# Docker's grammar for one path component of a repository name, and for a tag.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# A registry host with a port may come first (``registry.example.com:5000/team``): a host alone looks like a component.
_REGISTRY_WITH_PORT = r"[a-z0-9]+(?:[.-][a-z0-9]+)*:[0-9]{1,5}"
_REPOSITORY = re.compile(rf"^(?:{_REGISTRY_WITH_PORT}|{_COMPONENT})(?:/{_COMPONENT})*$")
_VERSION = re.compile(r"^[A-Za-z0-9_.-]{1,127}$")  # with the "v" in front: a tag, [\w][\w.-]{0,127}
_SEPARATORS = re.compile(r"[._-]+")
_MAX_REPOSITORY = 255


def _repository_component(name: str) -> str:
    """``name`` as one path component: lowercase, and a separator run Docker refuses (``..``, ``._``) as ``-``."""

    def allowed(match: re.Match[str]) -> str:
        run = match.group(0)
        return run if run in (".", "_", "__") or set(run) == {"-"} else "-"

    return _SEPARATORS.sub(allowed, name.lower()).strip("._-")


def serving_image_tag(prefix: str, model: str, version: str) -> str:
    """``<prefix>/<model>-serving:v<version>``, lowercased (Docker refuses uppercase repository names).

    Two model names differing only in case (``Churn``, ``churn``) share a repository; their versions tell
    them apart only if they differ. The labels keep the exact name.

    Raises:
        DeployError: The prefix, model name or version cannot make a valid image reference.
    """
    if not _REPOSITORY.match(prefix):
        raise DeployError(
            f"image prefix {prefix!r} is not a valid repository path: lowercase letters and digits, "
            "separated by '.', '_', '__', '-' or '/'"
        )
    component = _repository_component(model)
    if not component:
        raise DeployError(f"model name {model!r} has no letter or digit to name an image after")
    repository = f"{prefix}/{component}-serving"
    if not _VERSION.match(version):
        raise DeployError(f"model version {version!r} cannot be an image tag: letters, digits, '_', '.', '-' only")
    if len(repository) > _MAX_REPOSITORY:
        raise DeployError(f"image name {repository!r} is longer than Docker's {_MAX_REPOSITORY} characters")
    return f"{repository}:v{version}"


def image_labels(info: ModelInfo, git_commit: str | None) -> dict[str, str]:
    """The image's OCI and lineage labels; ``git_commit`` is the commit the model was trained from.

    Lineage values the version lacks are left out rather than written as empty strings.
    """
    labels = {
        OCI + "title": f"{info.name}-serving",
        OCI + "description": f"driftloop model server for {info.name} version {info.version} (ONNX)",
        OCI + "version": info.version,
        MODEL_NAME_LABEL: info.name,
        MODEL_VERSION_LABEL: info.version,
    }
    commit = git_commit if git_commit and git_commit != "unknown" else None
    if commit:
        labels[OCI + "revision"] = commit
    lineage_values = {
        "run_id": info.run_id,
        "onnx_sha256": info.onnx_sha256,
        "data_hash": info.data_hash,
        "git_commit": commit,
        "trained_at": info.trained_at,
    }
    labels.update({MODEL_LABEL + key: value for key, value in lineage_values.items() if value})
    return labels


def serving_deployment_dir() -> Path:
    """``deployments/serving`` of the source checkout driftloop runs from.

    Raises:
        DeployError: driftloop is not running from a source checkout (e.g. installed from a wheel).
    """
    if not (SERVING_DEPLOYMENT / "Dockerfile").is_file():
        raise DeployError(
            f"no serving Dockerfile at {SERVING_DEPLOYMENT / 'Dockerfile'}: images are built from a source "
            f"checkout of driftloop (this one is imported from {PACKAGE_DIR})"
        )
    return SERVING_DEPLOYMENT


def _skip_in_package(directory: str, names: list[str]) -> set[str]:
    skipped = set(shutil.ignore_patterns(*PACKAGE_SKIP)(directory, names))
    if Path(directory).resolve() == PACKAGE_DIR:
        skipped.update(name for name in names if name in PACKAGE_SKIP_TOP)
    return skipped


def _make_readable(root: Path) -> None:
    """World-readable, owner-writable: COPY keeps modes, and the image's user is not the files' owner."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def stage_build_context(model_dir: Path, info: ModelInfo, dest: Path, *, serving_dir: Path | None = None) -> Path:
    """Write the build context for ``info``'s image into ``dest`` (created; must be empty) and return it.

    Args:
        model_dir: The version's model directory (the registry's layout: ``extra_files/`` is searched too).
        info: Identity and lineage written to ``model/model_info.json``, which the server reports.
        dest: The context directory.
        serving_dir: Where the Dockerfile and requirements come from; default ``serving_deployment_dir()``.

    Raises:
        DeployError: A model file or a deployment file is missing or unreadable, or ``dest`` is not empty.
    """
    source = serving_dir or serving_deployment_dir()
    missing = [name for name in SERVING_FILES if not (source / name).is_file()]
    if missing:
        raise DeployError(f"{source} lacks {', '.join(missing)}: it is not a serving image directory")
    if dest.exists() and any(dest.iterdir()):
        raise DeployError(f"build context directory {dest} is not empty")
    what = f"model {info.name!r} version {info.version}"
    try:
        model_files = [find_model_file(model_dir, name) for name in MODEL_FILES]
    except BundleError as error:
        raise DeployError(f"cannot build the image of {what}: {error}") from None
    for name in OPTIONAL_MODEL_FILES:
        with contextlib.suppress(BundleError):
            model_files.append(find_model_file(model_dir, name))

    dest.mkdir(parents=True, exist_ok=True)
    for name in SERVING_FILES:
        shutil.copyfile(source / name, dest / name)
    shutil.copytree(PACKAGE_DIR, dest / CODE_DIR, ignore=_skip_in_package)
    staged_model = dest / MODEL_DIR
    staged_model.mkdir()
    for path in model_files:
        shutil.copyfile(path, staged_model / path.name)
    write_model_info(staged_model, info)
    try:
        read_bundle(staged_model)
    except (BundleError, TypeError) as error:
        raise DeployError(f"cannot build the image of {what}: {error}") from None
    _make_readable(dest)
    return dest
