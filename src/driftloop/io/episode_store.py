"""Drift-episode state kept as registry tags, so every process (drift checks, retrains, any machine) sees the same.

The open episode of a version is one JSON tag on that version (``core.episodes.Episode``); the start time of the
last retrain of the model, which the cooldown counts from, is a tag on the registered model.
"""

from __future__ import annotations

from datetime import datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from driftloop.core import lineage
from driftloop.core.episodes import Episode
from driftloop.errors import RegistryError


class EpisodeStore:
    def __init__(self, model_name: str, tracking_uri: str) -> None:
        self.model_name = model_name
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def open_episode(self, version: str) -> Episode | None:
        """The version's open episode; an unreadable tag is an error that names it."""
        tags = self._client.get_model_version(self.model_name, str(version)).tags
        raw = tags.get(lineage.DRIFT_EPISODE)
        if not raw:
            return None
        try:
            return Episode.from_json(raw, legacy_retrained_episode=tags.get(lineage.RETRAINED_EPISODE))
        except (ValueError, TypeError, KeyError) as error:
            raise RegistryError(
                f"tag {lineage.DRIFT_EPISODE} on v{version} of {self.model_name!r} is not a drift episode ({error}); "
                "delete it to start a new episode"
            ) from error

    def save(self, version: str, episode: Episode) -> None:
        self._client.set_model_version_tag(self.model_name, str(version), lineage.DRIFT_EPISODE, episode.to_json())

    def close(self, version: str) -> None:
        for key in (lineage.DRIFT_EPISODE, lineage.RETRAINED_EPISODE):
            try:
                self._client.delete_model_version_tag(self.model_name, str(version), key)
            except MlflowException:
                continue  # absent already

    def last_retrain_at(self) -> datetime | None:
        raw = self._client.get_registered_model(self.model_name).tags.get(lineage.LAST_RETRAIN_AT)
        return datetime.fromisoformat(raw) if raw else None

    def mark_retrain_started(self, at: datetime) -> None:
        self._client.set_registered_model_tag(self.model_name, lineage.LAST_RETRAIN_AT, at.isoformat())
