"""A Prefect global concurrency limit as a lock: one champion move per model at a time, across processes.

The limit lives on the Prefect server, so it serializes every process that talks to that server: flow runs
promoting after their gate, and the CLI's ``promote``/``rollback``/``pin``/``unpin``. Prefect is imported lazily,
as in ``io.prefect_events``: importing the library never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from driftloop.errors import RegistryError

# A holder killed while holding the slot frees it when its lease runs out (the server's minimum is 60 s);
# a live holder renews the lease in the background, however long it holds it.
LEASE_SECONDS = 120.0


def promotion_limit_name(model_name: str) -> str:
    return f"driftloop-promote-{model_name}"


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` with ``limit`` slots, or make an existing one so.

    ``concurrency()`` silently skips a limit that does not exist (and an inactive one), so the lock would
    not lock. Prefect's own upsert reads then creates, which races with another process doing the same.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
                return
            except ObjectAlreadyExists:
                existing = client.read_global_concurrency_limit_by_name(name)
        if existing.limit != limit or not existing.active:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=limit, active=True))


@contextmanager
def promotion_lock(model_name: str, timeout_seconds: float = 120) -> Iterator[None]:
    """Hold ``driftloop-promote-<model_name>`` (limit 1) for the block: compare the champion, then move it.

    Needs a reachable Prefect API (``PREFECT_API_URL``); the limit is created when missing.

    Raises:
        RegistryError: Another holder kept the lock longer than ``timeout_seconds``, or the Prefect server
            could not create or grant it.
    """
    from prefect.concurrency.sync import concurrency

    name = promotion_limit_name(model_name)
    with ExitStack() as stack:
        try:
            ensure_limit(name)
            lock = concurrency(
                name,
                occupy=1,
                timeout_seconds=timeout_seconds,
                lease_duration=LEASE_SECONDS,
                strict=True,
                # A renewal that fails once must not cancel a move half-written: the lease outlasts any move.
                raise_on_lease_renewal_failure=False,
            )
            stack.enter_context(lock)
        except TimeoutError as exc:
            raise RegistryError(
                f"another move of the champion of {model_name!r} held the Prefect concurrency limit {name!r} for "
                f"more than {timeout_seconds:.0f}s: try again, or see `prefect gcl inspect {name}`"
            ) from exc
        except Exception as exc:
            raise RegistryError(f"could not take the Prefect concurrency limit {name!r}: {exc}") from exc
        yield
