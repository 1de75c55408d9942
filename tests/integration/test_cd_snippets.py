"""The CD workflow's registry query as the job runs it: ``python -c "$CHAMPION_PY"`` in a fresh interpreter.

tests/unit/test_workflows.py runs the same code in-process; this runs it in the job's form, against a real MLflow
store, before and after a champion exists (each run imports MLflow anew and the first creates the store: seconds).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workflows import CD, champion_env, load, make_champion

pytestmark = pytest.mark.integration


def champion_query(tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", load(CD)["env"]["CHAMPION_PY"]],
        env=champion_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_champion_query_prints_the_champions_version_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """CHAMPION_PY prints an empty line without a champion (the jobs then ship nothing), else its version."""
    assert champion_query(tmp_path) == "\n"
    make_champion(tmp_path)
    assert champion_query(tmp_path) == "2\n"
