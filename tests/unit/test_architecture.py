"""docs/architecture.md stays true to the code: its table names every module, its layers match the contracts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.contracts_table import BEGIN, DOC, END, contracts_markdown

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "driftloop"
LAYERED = ("core", "io", "serving", "deploy")  # bottom to top, as in the layers contract


def _table_row(folder: str) -> str:
    row = next(
        (line for line in DOC.read_text().splitlines() if line.startswith(f"| `src/driftloop/{folder}/` |")), None
    )
    assert row is not None, f"docs/architecture.md has no row for src/driftloop/{folder}/"
    return row


def test_the_generated_contracts_block_is_current() -> None:
    document = DOC.read_text()
    block = document.partition(BEGIN)[2].partition(END)[0]
    assert block.strip() == contracts_markdown().strip(), "run: python scripts/contracts_table.py --write"


@pytest.mark.parametrize("folder", LAYERED)
def test_every_module_is_described_in_its_row(folder: str) -> None:
    row = _table_row(folder)
    modules = sorted(p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem not in ("__init__", "__main__"))
    missing = [name for name in modules if f"`{name}`" not in row]
    assert not missing, f"docs/architecture.md's row for {folder}/ does not name: {missing}"


@pytest.mark.parametrize("folder", LAYERED)
def test_a_rows_may_import_column_names_only_lower_layers(folder: str) -> None:
    may_import = _table_row(folder).rstrip(" |").rsplit(" | ", 1)[1]
    named = {layer for layer in LAYERED if re.search(rf"(?<![\w.]){layer}(?![\w])", may_import)}
    above = set(LAYERED[LAYERED.index(folder) :])
    assert not named & above, f"{folder}/ may import {sorted(named & above)}, which the layers contract forbids"


def test_the_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists() and shutil.which("lint-imports") is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    result = subprocess.run(
        [str(lint_imports), "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
