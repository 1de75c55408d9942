"""driftloop's exceptions. Every one carries a message meant for the person who ran the command.

* DriftloopError
  + ConfigError             a settings or schema file is unusable
  + DatasetError            a snapshot cannot be read
    - DatasetValidationError  a snapshot breaks its schema (lists every problem)
  + ExportError             a model cannot be converted to ONNX
  + RegistryError           the model registry refuses or lacks what was asked
    - PromotionRefused        a version may not become champion (parity failed, unknown version, ...)
      . ChampionMoved           the champion is no longer the one the gate compared with
      . ChampionPinned          an automatic promotion while an operator has pinned the champion
  + BundleError             a model directory lacks a file or holds one that cannot be read
  + SelfCheckFailed         a model version did not reproduce the outputs recorded at registration
  + ModelNotReady           the server has no model that passed its self-check yet
  + InputError              a request the server refuses (400, 413, 422), with the reason for the client
  + ServiceError            a local service (Prefect server, MLflow UI) did not start or stop
  + DeployError             no Docker engine, an image build failed, the proxy cannot be configured
    - SlotFailed              a candidate slot crashed, never got ready, or failed its smoke test
    - CanaryAlarm             a canary window tripped an alarm
    - RolloutRolledBack       the rollout ran and was rolled back; the old version keeps serving
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from driftloop.deploy.rollout import RolloutResult

SlotFailureKind = Literal["crashed", "not_ready", "smoke_failed"]


class DriftloopError(Exception):
    """Base class: a failure driftloop can explain."""


class Interrupted(DriftloopError):
    """A command stopped by Ctrl-C; the message says what it left behind. The CLI exits 130, as for SIGINT."""


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


class ChampionMoved(PromotionRefused):
    """The champion moved since the gate compared with it: gate the candidate again against ``current``.

    ``expected`` and ``current`` are version strings, None meaning "no champion".
    """

    def __init__(self, model_name: str, version: str, expected: str | None, current: str | None) -> None:
        self.model_name = model_name
        self.version = version
        self.expected = expected
        self.current = current

        def shown(champion: str | None) -> str:
            return f"v{champion}" if champion is not None else "none"

        super().__init__(
            f"the champion of {model_name!r} moved from {shown(expected)} to {shown(current)} since the gate "
            f"compared v{version} with it: v{version} was not promoted; gate it again against {shown(current)}"
        )

    def __reduce__(self) -> tuple[type[ChampionMoved], tuple[str, str, str | None, str | None]]:
        # An exception unpickles as cls(*args), and args holds only the message (Prefect pickles task failures).
        return (type(self), (self.model_name, self.version, self.expected, self.current))


class ChampionPinned(PromotionRefused):
    """An operator pinned the champion: automatic promotions are refused until ``driftloop unpin``."""

    def __init__(self, version: str, actor: str, reason: str) -> None:
        self.version = version
        self.actor = actor
        self.reason = reason
        self.pinned_by = f"{actor} at v{version} ({reason})"
        super().__init__(
            f"champion pinned by {self.pinned_by}: automatic promotions are refused until `driftloop unpin`"
        )

    def __reduce__(self) -> tuple[type[ChampionPinned], tuple[str, str, str]]:
        return (type(self), (self.version, self.actor, self.reason))


class ServiceError(DriftloopError):
    """A local service failed to start, answer or stop."""


class DeployError(DriftloopError):
    """Containers: no Docker engine, a failed image build, a proxy or slot that cannot be driven."""


class BundleError(DriftloopError):
    """A model directory lacks a file or holds one that cannot be read."""


class SelfCheckFailed(DriftloopError):
    """A model version did not reproduce the outputs recorded at registration."""


class ModelNotReady(DriftloopError):
    """No model has passed its self-check yet."""


class InputError(DriftloopError):
    """A request the server refuses: ``status`` (400/413/422), a snake_case ``reason`` label, a client ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def body_too_large(cls, limit: int, size: int | None = None) -> InputError:
        """A 413 for a body over ``limit`` bytes (of ``size`` bytes, when declared), as the server and nginx word it."""
        of = "" if size is None else f"of {size} bytes "
        return cls(413, "body_too_large", f"request body {of}exceeds the limit of {limit} bytes")

    def detail(self) -> dict[str, str]:
        """The JSON body of the refusal: its message and its reason label."""
        return {"detail": self.message, "reason": self.reason}

    def __repr__(self) -> str:
        return f"InputError({self.status}, {self.reason!r}, {self.message!r})"


class SlotFailed(DeployError):
    """A candidate that cannot take traffic; ``kind`` says how it failed."""

    def __init__(self, kind: SlotFailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CanaryAlarm(DeployError):
    """A canary window tripped an alarm."""


class RolloutRolledBack(DeployError):
    """The rollout ran and was rolled back (its decision record says why); the old version keeps serving."""

    def __init__(self, result: RolloutResult) -> None:
        self.result = result
        # The reason's first line: the rest (the candidate's last log lines) is in the record, printed above it.
        super().__init__(f"rollout of v{result.version} rolled back: {result.summary} (record: {result.record_path})")
