"""`--dask-scheduler` pointed at what is not a scheduler, or at a cluster that cannot run driftloop's tasks.

distributed's Client bounds the TCP connect, not the handshake: at a port that accepts and then says nothing (a
dashboard, any web server) `driftloop score` waited forever; it is one error line now, before the registry is read.
A scheduler without driftloop failed on "Error during deserialization of the task graph", and one without workers
waited forever. Every peer here is real: a `dask scheduler` with its dashboard's HTTP server, `dask worker`s, a
Python environment without driftloop, a TCP server that answers with bytes of another protocol, a closed port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driftloop.errors import ConfigError, ServiceError
from driftloop.io.batch_scoring import ScoringInput, require_workers_see
from driftloop.io.dask_scheduler import require_scheduler, require_scoring_cluster
from driftloop.io.partition_scoring import LogSampling, ParquetPiece
from driftloop.io.prediction_store import open_prediction_log
from tests.support.cli import PrefectServer, make_driftloop
from tests.support.host import VENV_BIN, free_port

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.integration


class DaskCluster:
    """A real scheduler (TCP and dashboard ports) and one worker listening on a port of its own."""

    def __init__(self) -> None:
        self.scheduler_port, self.dashboard_port, self.worker_port = free_port(), free_port(), free_port()

    @property
    def scheduler(self) -> str:
        return f"tcp://127.0.0.1:{self.scheduler_port}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskCluster]:
    ports = DaskCluster()
    scheduler = subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                  str(ports.scheduler_port), "--dashboard-address",
                                  f"127.0.0.1:{ports.dashboard_port}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    worker = subprocess.Popen([str(VENV_BIN / "dask"), "worker", ports.scheduler, "--no-nanny", "--nthreads", "1",
                               "--listen-address", f"tcp://127.0.0.1:{ports.worker_port}", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _client_of(ports.scheduler, 1).close()  # once the worker has joined
        yield ports
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=60)


@pytest.fixture
def other_protocol() -> Iterator[int]:
    """A TCP server on a free port that greets each connection as an SSH server does, then hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)  # accept() returns now and then to see the test is over
    port = int(server.getsockname()[1])
    over = threading.Event()

    def serve() -> None:
        while not over.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        over.set()
        thread.join(timeout=10)
        server.close()


def test_a_scheduler_is_told_from_what_is_not_one(cluster: DaskCluster, other_protocol: int) -> None:
    require_scheduler(cluster.scheduler)
    require_scheduler(f"127.0.0.1:{cluster.scheduler_port}")  # no scheme: TCP, as Dask reads it

    with pytest.raises(ServiceError, match=r"^a Dask worker answers at tcp://127\.0\.0\.1:\d+, not a scheduler"):
        require_scheduler(f"tcp://127.0.0.1:{cluster.worker_port}")

    dashboard = f"tcp://127.0.0.1:{cluster.dashboard_port}"
    with pytest.raises(ServiceError, match=f"^something accepts connections at {dashboard} but sends no Dask"):
        require_scheduler(dashboard, timeout=2)  # before, Client waited here forever

    with pytest.raises(ServiceError, match="does not speak Dask's protocol"):
        require_scheduler(f"tcp://127.0.0.1:{other_protocol}", timeout=2)

    closed = free_port()
    with pytest.raises(ServiceError, match=f"^no Dask scheduler answers at tcp://127.0.0.1:{closed}"):
        require_scheduler(f"tcp://127.0.0.1:{closed}", timeout=1)

    for address, problem in [
        ("nonsense", "missing port number"),
        ("ftp://host:8786", "unknown address scheme 'ftp'"),
        ("tcp://host:port", "invalid literal"),
    ]:
        with pytest.raises(ConfigError, match=f"^{address!r} is not a Dask scheduler address.*{problem}"):
            require_scheduler(address)


def test_score_refuses_a_dashboard_address_before_the_registry(
    tmp_path: Path, prefect_server: PrefectServer, cluster: DaskCluster
) -> None:
    """An installation with nothing trained: the scheduler's error comes first, so it was checked first."""
    dl = make_driftloop(tmp_path, prefect_server)
    data = tmp_path / "rows.csv"
    data.write_text("id,x\n1,2.0\n")
    dashboard = f"tcp://127.0.0.1:{cluster.dashboard_port}"
    refused = dl.run("score", str(data), "--out", str(tmp_path / "out"), "--dask-scheduler", dashboard, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr.splitlines() == [
        f"error: something accepts connections at {dashboard} but sends no Dask handshake within 12 s: not a Dask "
        "scheduler (its dashboard's port? a scheduler listens on 8786 unless told otherwise)"
    ], refused.stderr
    assert not (tmp_path / "out").exists()

    # The same installation at the scheduler itself: past that check, to the registry's.
    untrained = dl.run("score", str(data), "--out", str(tmp_path / "out"), "--dask-scheduler", cluster.scheduler,
                       check=False)  # fmt: skip
    assert untrained.returncode == 1
    assert untrained.stderr.startswith("error: model 'churn' has no versions yet"), untrained.stderr


def test_a_tls_scheduler_is_asked_with_dasks_tls_configuration(tmp_path: Path) -> None:
    """As a Client made without ``security``: distributed.comm.tls.* from Dask's configuration, else a clear error."""
    import dask.config
    from distributed.security import Security

    secrets = Security.temporary()  # PEM text: written to files, as a user's certificates are
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    files["ca"].write_text(str(secrets.tls_ca_file))
    files["cert"].write_text(str(secrets.tls_scheduler_cert))
    files["key"].write_text(str(secrets.tls_scheduler_key))
    port = free_port()
    scheduler = subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--protocol", "tls", "--host", "127.0.0.1",
                                  "--port", str(port), "--tls-ca-file", str(files["ca"]), "--tls-cert",
                                  str(files["cert"]), "--tls-key", str(files["key"]), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    address = f"tls://127.0.0.1:{port}"
    tls = {
        "distributed.comm.tls.ca-file": str(files["ca"]),
        "distributed.comm.tls.client.cert": str(files["cert"]),
        "distributed.comm.tls.client.key": str(files["key"]),
    }
    try:
        with pytest.raises(ConfigError, match=f"^{address} is a TLS address, and Dask's configuration has no TLS"):
            require_scheduler(address)
        _wait_for_listener(port)
        with dask.config.set(tls):
            require_scheduler(address)
        with (
            dask.config.set({**tls, "distributed.comm.require-encryption": True}),
            pytest.raises(ConfigError, match="is not a TLS address, and Dask's configuration requires encryption"),
        ):
            require_scheduler(f"tcp://127.0.0.1:{port}")
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=60)


def _wait_for_listener(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port} after 60 s"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def python_without_driftloop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with this one's packages (Dask, pandas, ...) but not driftloop: as a cluster's machines
    where it was never installed."""
    root = tmp_path_factory.mktemp("no-driftloop")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    ours = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()))
    shared = root / "site-packages"
    shared.mkdir()
    for entry in ours.iterdir():  # every package but driftloop's own (its .pth and metadata); no .pth is read here
        if not entry.name.lower().startswith(("driftloop", "_driftloop", "__editable__")) and entry.suffix != ".pth":
            (shared / entry.name).symlink_to(entry)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(site, "shared.pth").write_text(f"{shared}\n")
    probe = "import importlib.util, distributed; print(importlib.util.find_spec('driftloop') is None)"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True,
                          cwd=root).stdout.strip() == "True"  # fmt: skip
    return python


def _start(python: Path, command: str, *args: str) -> subprocess.Popen[bytes]:
    """``dask scheduler`` or ``dask worker`` under ``python``, from a directory without driftloop's sources."""
    module = {"scheduler": "distributed.cli.dask_scheduler", "worker": "distributed.cli.dask_worker"}[command]
    return subprocess.Popen([str(python), "-m", module, *args], cwd=python.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _client_of(address: str, workers: int) -> Client:
    from distributed import Client

    deadline = time.monotonic() + 60
    while True:
        try:
            client = Client(address, timeout="5s")
            break
        except OSError:
            assert time.monotonic() < deadline, f"no Dask scheduler at {address} after 60 s"
            time.sleep(0.5)
    if workers:
        client.wait_for_workers(workers, timeout=60)
    return client


def test_a_cluster_without_driftloop_or_workers_is_refused_before_any_task(
    cluster: DaskCluster, python_without_driftloop: Path
) -> None:
    notes: list[str] = []
    with _client_of(cluster.scheduler, 1) as client:
        require_scoring_cluster(client, cluster.scheduler, 60, notes.append)  # this driftloop everywhere: no word
    assert notes == []

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start(Path(sys.executable), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    processes = [scheduler]
    try:
        with _client_of(address, 0) as client:
            # No worker yet: said, waited for, then refused.
            with pytest.raises(ServiceError, match=f"^no worker joined the Dask scheduler at {address} within 1 s"):
                require_scoring_cluster(client, address, 1, notes.append)
            assert notes == [
                f"the Dask scheduler at {address} has no worker yet: waiting up to 1 s for one to join "
                "(DRIFTLOOP_DASK_WORKER_WAIT)"
            ]
            # A worker where driftloop was never installed.
            processes.append(_start(python_without_driftloop, "worker", address, "--nthreads", "1", "--no-nanny",
                                    "--no-dashboard"))  # fmt: skip
            client.wait_for_workers(1, timeout=60)
            with pytest.raises(ConfigError, match=r"scoring tasks: worker tcp://127\.0\.0\.1:\d+ has no driftloop\. "):
                require_scoring_cluster(client, address, 60, notes.append)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start(python_without_driftloop, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--no-dashboard")  # fmt: skip
    try:
        with _client_of(address, 0) as client, pytest.raises(ConfigError) as refused:
            require_scoring_cluster(client, address, 60, notes.append)  # before waiting for a worker
        ours = version("driftloop")
        assert str(refused.value) == (
            f"the Dask cluster at {address} cannot run driftloop {ours}'s scoring tasks: its scheduler has no "
            f"driftloop. Install driftloop {ours} with its scale extra on its scheduler and every worker"
        )
        assert len(notes) == 1  # the first scheduler's wait only
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=60)


@pytest.fixture
def private_mounts() -> str:
    """`unshare`, which runs a process in a mount namespace of its own (root): a worker that sees other files."""
    unshare = shutil.which("unshare")
    works = unshare is not None and subprocess.run([unshare, "--mount", "true"], capture_output=True).returncode == 0
    if not works:
        if os.environ.get("CI") == "true":
            pytest.fail("`unshare --mount` does not work here: CI runs as root on Linux, where it must")
        pytest.skip("`unshare --mount` does not work here (it needs root on Linux)")
    return str(unshare)


def test_workers_that_do_not_see_the_input_out_or_log_are_refused_before_any_task(
    tmp_path: Path, cluster: DaskCluster, private_mounts: str
) -> None:
    """A worker whose machine lacks this one's files, as another machine's: a tmpfs over a directory, in its mounts."""
    theirs, ours = tmp_path / "not-on-the-worker", tmp_path / "shared"
    for directory in (theirs, ours):
        directory.mkdir()
    for where in (theirs, ours):
        Path(where, "rows.parquet").write_bytes(b"PAR1")  # opened by the workers only to see that they can
    log_url = f"sqlite:///{theirs / 'predictions.db'}"
    open_prediction_log(log_url).close()
    (theirs / "out").mkdir()
    everything_theirs = ScoringInput(["x"], [ParquetPiece(str(theirs / "rows.parquet"), 0)])
    logged = LogSampling(log_url, 0.1)

    with _client_of(cluster.scheduler, 1) as client:  # workers on this machine's files: nothing to say
        require_workers_see(client, everything_theirs, theirs / "out", logged)

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start(Path(sys.executable), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    worker = subprocess.Popen([private_mounts, "--mount", "sh", "-c", f"mount -t tmpfs none {theirs} && exec "
                               f"{VENV_BIN / 'dask'} worker {address} --nthreads 1 --no-nanny --no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with _client_of(address, 1) as client:
            with pytest.raises(ConfigError) as refused:
                require_workers_see(client, everything_theirs, theirs / "out", logged)
            assert re.fullmatch(
                rf"Dask worker tcp://127\.0\.0\.1:\d+ cannot read {re.escape(str(theirs / 'rows.parquet'))} \(and 2 "
                r"more path\(s\)\), which this machine can: a cluster's workers read the input, write --out and log "
                r"the sample themselves, so each must be at the same path on every worker \(a shared filesystem; for "
                r"the prediction log, a database server: DRIFTLOOP_PREDICTIONS_URL, or --log-fraction 0\)",
                str(refused.value),
            ), refused.value
            # Input it sees, no sample logged: --out alone, and no word of the log.
            with pytest.raises(ConfigError, match=f"cannot write in {re.escape(str(theirs / 'out'))}, which") as out:
                require_workers_see(client, ScoringInput(["x"], [ParquetPiece(str(ours / "rows.parquet"), 0)]),
                                    theirs / "out", LogSampling(log_url, 0.0))  # fmt: skip
            assert "DRIFTLOOP_PREDICTIONS_URL" not in str(out.value)
            require_workers_see(client, ScoringInput(["x"], [ParquetPiece(str(ours / "rows.parquet"), 0)]), ours,
                                LogSampling(None, 0.1))  # fmt: skip
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=60)
