"""An empty Prefect database already at the schema's head, made once per test run and copied into new servers' homes.

A Prefect server given an empty home migrates a new SQLite database from nothing first: on a 2-core machine about
7 of the 15 CPU seconds it takes to start, and the integration tests start about twenty. A copy of a migrated,
empty database skips only that; the server finds nothing to migrate and starts as it otherwise would. The tests
of a first start itself (`make run`'s demo, the concurrent start) keep an empty home.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from driftloop.io.file_lock import exclusive_lock
from driftloop.settings import TELEMETRY_OFF
from tests.support.host import VENV_BIN

DATABASE_FILE = "prefect.db"  # Prefect's default database under PREFECT_HOME
_shared_root: Path | None = None


def share_under(root: Path) -> None:
    """Keep the template under ``root``: a directory every pytest-xdist worker of this run sees."""
    global _shared_root
    _shared_root = root


def seed(prefect_home: Path) -> None:
    """Put a migrated, empty database in ``prefect_home`` (a home of its own, not yet used by any server)."""
    if _shared_root is None:  # outside the integration tests' session: the server migrates as usual
        return
    if (prefect_home / DATABASE_FILE).exists():
        raise FileExistsError(f"{prefect_home / DATABASE_FILE} exists: seed only a new Prefect home")
    prefect_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(_shared_root), prefect_home / DATABASE_FILE)


def _template(root: Path) -> Path:
    directory = root / "prefect-database-template"
    template = directory / DATABASE_FILE
    with exclusive_lock(root / "prefect-database-template.lock", 300, lambda: TimeoutError("template lock")):
        if not template.exists():
            building = root / "prefect-database-building"
            shutil.rmtree(building, ignore_errors=True)
            subprocess.run(
                [str(VENV_BIN / "prefect"), "server", "database", "upgrade", "--yes"],
                env={**TELEMETRY_OFF, "PATH": str(VENV_BIN), "PREFECT_HOME": str(building)},
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            # The upgrade's process has ended, so SQLite folded its write-ahead log into the file: the file is all.
            leftovers = [p.name for p in building.iterdir() if p.name != DATABASE_FILE]
            if any(name.startswith(DATABASE_FILE) for name in leftovers):
                raise RuntimeError(f"the migrated Prefect database left {leftovers} beside it in {building}")
            building.rename(directory)
    return template
