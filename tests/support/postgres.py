"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a free port on 127.0.0.1, trust auth.

    with running_postgres() as url:          # postgresql+psycopg2://postgres@127.0.0.1:<port>/driftloop_test
        ...

Binaries come from the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout), else from ``PATH``. As root the
server runs as the ``postgres`` system user (``runuser -u postgres --``), since initdb refuses root. Without
binaries the test is skipped, or fails when ``CI=true``: CI must not pass by silently skipping.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.host import free_port

POSTGRES_GLOB = "/usr/lib/postgresql/*/bin"
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
PORT_ATTEMPTS = 3


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    version = bin_dir.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first; None when there is none."""
    candidates = sorted(Path("/").glob(POSTGRES_GLOB.lstrip("/")), key=_version_key, reverse=True)
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when running in CI (``CI=true``), where PostgreSQL must be installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _as_server_user() -> list[str]:
    """The argv prefix that runs a server binary as a non-root user (nothing when we are not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        unavailable(f"running as root and there is no {SYSTEM_USER!r} system user to run the server")
    if shutil.which("runuser"):
        return ["runuser", "-u", SYSTEM_USER, "--"]
    unavailable("running as root and `runuser` is missing, so the server cannot run as a non-root user")
    return []  # unreachable: unavailable() raises


def _run(argv: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = result.stdout[-2000:] + result.stderr[-2000:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {shlex.join(argv)}\n{output}")
    return result


def _tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-3000:] if path.exists() else "(no server log)"


@contextmanager
def running_postgres(database: str = "driftloop_test", *, timeout: float = 60.0) -> Iterator[str]:
    """Start a private cluster, create ``database``, yield its SQLAlchemy URL; stop and delete it afterwards.

    Raises:
        RuntimeError: initdb, the server or createdb failed although the binaries exist (the message has the log).
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        unavailable(f"no initdb/pg_ctl under {POSTGRES_GLOB} or on PATH (Debian: apt-get install postgresql)")
        return
    as_user = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="driftloop-pg-"))
    data, log_file = root / "data", root / "server.log"
    if as_user:
        shutil.chown(root, user=SYSTEM_USER)
    started = False
    try:
        _run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
            + ["--no-locale", "--no-sync"],
            "initdb",
            timeout,
        )
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            # Durability is pointless for a throwaway cluster; the socket lives in our dir, not /var/run.
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={shlex.quote(str(root))}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            start = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-w"]
            start += ["-t", str(int(timeout)), "-o", options, "start"]
            result = subprocess.run(start, capture_output=True, text=True, timeout=timeout + 10, check=False)
            if result.returncode == 0:
                started = True
                break
            # Another process may have taken the port between free_port() and the bind: try a new one.
            if "could not bind" not in _tail(log_file) or attempt == PORT_ATTEMPTS:
                raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{_tail(log_file)}")
            time.sleep(0.2)
        createdb = bin_dir / "createdb"
        _run([str(createdb), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, database], "createdb", timeout)
        yield f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{database}"
    finally:
        if started:
            stop = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30", "-m", "fast", "stop"]
            if subprocess.run(stop, capture_output=True, timeout=60, check=False).returncode != 0:
                subprocess.run([*stop[:-3], "immediate", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
