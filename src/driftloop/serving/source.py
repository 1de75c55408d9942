"""Where the server's model comes from: a directory (an image) or the registry's champion alias.

The registry implementation is the only seam to MLflow, imported lazily so file mode never loads it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from driftloop.io.bundle import ModelBundle, read_bundle

_NO_CHAMPION = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class ModelSource(Protocol):
    @property
    def name(self) -> str:
        """The model's name: the server's routes and metrics call it so."""
        ...

    def current_version(self) -> str | None:
        """The version that should be served now (None: nothing to serve yet)."""
        ...

    def fetch(self, version: str) -> ModelBundle:
        """The bundle of ``version``."""
        ...


class FileModelSource:
    """One bundle directory, typically baked into the serving image; its version never changes."""

    def __init__(self, directory: Path) -> None:
        self._bundle = read_bundle(directory)

    @property
    def name(self) -> str:
        return self._bundle.info.name

    def current_version(self) -> str | None:
        return self._bundle.info.version

    def fetch(self, version: str) -> ModelBundle:
        return self._bundle


class RegistryModelSource:
    """Follows the ``champion`` alias of a registered model; bundles are cached under ``cache_dir/<version>``.

    Give each model its own ``cache_dir``: versions are numbered per model.
    """

    def __init__(self, model_name: str, tracking_uri: str, cache_dir: Path) -> None:
        from mlflow import MlflowClient

        from driftloop.io.registry import ModelRegistry

        self._registry = ModelRegistry(model_name, tracking_uri)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._model_name = model_name
        self._cache_dir = cache_dir

    @property
    def name(self) -> str:
        return self._model_name

    def current_version(self) -> str | None:
        """The champion's version, in one registry call.

        The watcher asks every few seconds from a thread that shares the server's core: the alias lookup
        costs a third of ``ModelRegistry.champion`` (the registered model, then the version).
        """
        from mlflow.exceptions import MlflowException

        from driftloop.events import CHAMPION

        try:
            version = self._client.get_model_version_by_alias(self._model_name, CHAMPION)
        except MlflowException as error:
            # No such model (RESOURCE_DOES_NOT_EXIST) or no such alias (INVALID_PARAMETER_VALUE): no champion yet.
            if error.error_code in _NO_CHAMPION:
                return None
            raise
        return str(version.version)

    def fetch(self, version: str) -> ModelBundle:
        from driftloop.events import CHAMPION
        from driftloop.io.bundle import ModelInfo

        target = self._cache_dir / version
        if target.exists():
            shutil.rmtree(target)
        model_dir = self._registry.download_model_dir(version, target)
        registered = self._registry.get_version(version)
        info = ModelInfo.from_tags(self._model_name, version, CHAMPION, registered.run_id, dict(registered.tags))
        return read_bundle(model_dir, info)
