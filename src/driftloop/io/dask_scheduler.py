"""A Dask scheduler given by its address: whether one answers there, and whether its cluster can run driftloop's tasks.

distributed's ``Client(address, timeout=...)`` bounds the TCP connect, not the handshake after it: pointed at a port
that accepts connections but does not speak Dask (the dashboard's 8787 beside the scheduler's 8786, any web server)
it waits for the handshake's answer forever, and bytes that are not a Dask frame can be read as a frame length of
exabytes (a MemoryError). This asks the scheduler its identity over one connection, the whole exchange bounded.

A cluster that answers may still not run a scoring task: without driftloop on its scheduler the task graph does not
unpickle ("Error during deserialization of the task graph"), and with no worker the tasks wait forever. Both are
asked of the connected client before any task is sent.

Dask is the ``scale`` extra: imported by ``require_scheduler``, not by this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from driftloop.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    from distributed import Client

SCHEDULER_ANSWER_SECONDS = 10.0
SCALE_EXTRA = "pip install 'driftloop[scale]'"
NO_DASK = f"driftloop score runs on Dask, which is not installed: {SCALE_EXTRA}"
_SCHEDULER = "Scheduler"
_PACKAGE = "driftloop"  # what a scoring task unpickles into (driftloop.io.partition_scoring), on every machine


def require_scheduler(address: str, timeout: float = SCHEDULER_ANSWER_SECONDS) -> None:
    """Return once a Dask scheduler at ``address`` has said what it is, within ``timeout`` seconds.

    Raises:
        ConfigError: ``address`` is not an address Dask can connect to, or Dask is not installed.
        ServiceError: Nothing answers at ``address``, something that is not a Dask scheduler does (it sends no
            Dask handshake, or a handshake that is not one), or a Dask server that is not a scheduler (a worker).
    """
    scheme = _require_address(address)
    from distributed.security import Security

    # TLS as Dask's configuration sets it up (distributed.comm.tls.*), as a Client made without `security` reads it.
    connection_args = Security().get_connection_args("client")
    if scheme == "tls" and connection_args.get("ssl_context") is None:
        raise ConfigError(
            f"{address} is a TLS address, and Dask's configuration has no TLS for a client: set "
            "distributed.comm.tls.ca-file, .client.cert and .client.key (DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ...)"
        )
    if scheme != "tls" and connection_args.get("require_encryption"):
        raise ConfigError(
            f"{address} is not a TLS address, and Dask's configuration requires encryption "
            "(distributed.comm.require-encryption): give the scheduler's tls:// address"
        )
    # In a thread of its own: the caller may be on a running event loop (a flow's task), where asyncio.run refuses.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dask-scheduler-probe") as pool:
        identity = pool.submit(asyncio.run, _identity(address, timeout, connection_args)).result()
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind != _SCHEDULER:
        what = f"a Dask {kind.lower()}" if isinstance(kind, str) and kind else "a Dask server of an unknown kind"
        raise ServiceError(f"{what} answers at {address}, not a scheduler: give the scheduler's address")


def _require_address(address: str) -> str:
    """``address``'s scheme; ConfigError unless Dask can connect to it as written (``host:port`` is TCP to Dask)."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:
        raise ConfigError(NO_DASK) from None
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as error:
        raise ConfigError(f"{address!r} is not a Dask scheduler address such as tcp://host:8786 ({error})") from None
    return str(scheme)


async def _identity(address: str, timeout: float, connection_args: dict[str, Any]) -> Any:
    """The server's reply to ``identity``; ServiceError when there is none within ``timeout`` seconds."""
    from distributed.comm import connect

    bound = timeout + 2  # past connect's own timeout, which ends the retries of a port that refuses (an OSError)
    try:
        return await asyncio.wait_for(_ask_identity(connect, address, timeout, connection_args), bound)
    except TimeoutError:  # before OSError, its base: connected, then no answer
        raise ServiceError(
            f"something accepts connections at {address} but sends no Dask handshake within {bound:g} s: not a "
            "Dask scheduler (its dashboard's port? a scheduler listens on 8786 unless told otherwise)"
        ) from None
    except OSError as error:
        raise ServiceError(f"no Dask scheduler answers at {address} ({error})") from None
    except Exception as error:  # noqa: BLE001  (bytes that are not Dask's protocol fail in many ways)
        raise ServiceError(
            f"something answers at {address} that does not speak Dask's protocol ({type(error).__name__}): not a "
            "Dask scheduler"
        ) from None


async def _ask_identity(connect: Any, address: str, timeout: float, connection_args: dict[str, Any]) -> Any:
    comm = await connect(address, timeout=timeout, **connection_args)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def require_scoring_cluster(client: Client, address: str, wait_seconds: float, waiting: Callable[[str], None]) -> None:
    """The cluster of ``client`` can run driftloop's scoring tasks: this driftloop on its scheduler and workers.

    It needs one worker at least: a scheduler with none (an adaptive cluster scaled to zero) is given
    ``wait_seconds`` for one to join, which ``waiting`` is told first. Workers that join after this are not asked.

    Raises:
        ConfigError: The scheduler or a worker has no driftloop, or another version of it.
        ServiceError: No worker joined within ``wait_seconds``.
    """
    versions = client.get_versions(packages=[_PACKAGE])
    _require_driftloop(versions, address, "scheduler")
    if not versions["workers"]:
        waiting(
            f"the Dask scheduler at {address} has no worker yet: waiting up to {wait_seconds:g} s for one to join "
            "(DRIFTLOOP_DASK_WORKER_WAIT)"
        )
        try:
            client.wait_for_workers(1, timeout=wait_seconds)
        except TimeoutError:
            raise ServiceError(
                f"no worker joined the Dask scheduler at {address} within {wait_seconds:g} s: start one (dask worker "
                f"{address}), or wait longer (DRIFTLOOP_DASK_WORKER_WAIT)"
            ) from None
        versions = client.get_versions(packages=[_PACKAGE])
    _require_driftloop(versions, address, "workers")


def _require_driftloop(versions: dict[str, Any], address: str, part: str) -> None:
    """ConfigError unless the scheduler (``part``: "scheduler") or each worker ("workers") has this driftloop."""
    ours = versions["client"]["packages"].get(_PACKAGE)
    found = (
        {"its scheduler": versions["scheduler"]["packages"].get(_PACKAGE)}
        if part == "scheduler"
        else {f"worker {worker}": info["packages"].get(_PACKAGE) for worker, info in versions["workers"].items()}
    )
    wrong = [f"{where} has {f'driftloop {theirs}' if theirs else 'no driftloop'}" for where, theirs in found.items()
             if theirs != ours]  # fmt: skip
    if wrong:
        more = f" (and {len(wrong) - 3} more workers)" if len(wrong) > 3 else ""
        raise ConfigError(
            f"the Dask cluster at {address} cannot run driftloop {ours}'s scoring tasks: {'; '.join(wrong[:3])}{more}. "
            f"Install driftloop {ours} with its scale extra on its scheduler and every worker"
        )
