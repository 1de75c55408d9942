"""driftloop's exceptions. Every one carries a message meant for the person who ran the command.

* DriftloopError
  + ConfigError             a settings or schema file is unusable
  + DatasetError            a snapshot cannot be read
    - DatasetValidationError  a snapshot breaks its schema (lists every problem)
  + ExportError             a model cannot be converted to ONNX
  + RegistryError           the model registry refuses or lacks what was asked
    - PromotionRefused        a version may not become champion (parity failed, unknown version, ...)
  + ServiceError            a local service (Prefect server, MLflow UI) did not start or stop
  + DeployError             no Docker engine, an image build failed, the proxy cannot be configured
"""

from __future__ import annotations


class DriftloopError(Exception):
    """Base class: a failure driftloop can explain."""


class ConfigError(DriftloopError):
    """A settings value or a schema file is invalid."""


class DatasetError(DriftloopError):
    """A data snapshot cannot be read."""


class DatasetValidationError(DatasetError):
    """A snapshot breaks its schema. ``problems`` lists each one; the message shows them all."""

    def __init__(self, dataset: str, problems: list[str]) -> None:
        self.dataset = dataset
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"dataset {dataset!r} failed validation ({len(problems)} problem(s)):\n{lines}")


class ExportError(DriftloopError):
    """A model could not be exported to ONNX."""


class RegistryError(DriftloopError):
    """The model registry does not have, or refuses, what was asked."""


class PromotionRefused(RegistryError):
    """A version may not take the champion alias."""


class ServiceError(DriftloopError):
    """A local service failed to start, answer or stop."""


class DeployError(DriftloopError):
    """Containers: no Docker engine, a failed image build, a proxy or slot that cannot be driven."""
