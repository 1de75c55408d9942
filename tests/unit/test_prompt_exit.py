"""The console script ends without tearing the interpreter down, yet as Python's exit would: handlers, output, code.

Each case runs ``_exit_promptly`` in a Python process of its own (it ends the process it runs in), except the one
where a non-daemon thread is alive: there it must leave the exit to Python, which waits for the thread.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from driftloop.cli import _exit_promptly
from tests.support.host import VENV_BIN

PROLOGUE = """
import atexit, tempfile, pathlib, sys
from driftloop.cli import _exit_promptly
kept = tempfile.TemporaryDirectory(prefix="driftloop-exit-")
pathlib.Path(sys.argv[1]).write_text(kept.name)
atexit.register(lambda: print("exit handler ran", flush=True))
print("buffered answer", end="")  # no newline, no flush: still in the pipe's buffer
"""


def _run(code: str, marker: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROLOGUE + code, marker], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("given", "returned"), [(0, 0), (None, 0), (3, 3)])
def test_the_exit_code_the_output_and_the_exit_handlers_survive(
    tmp_path: Path, given: int | None, returned: int
) -> None:
    marker = tmp_path / "tempdir.txt"
    result = _run(f"_exit_promptly({given!r})", str(marker))
    assert result.returncode == returned, result.stderr
    assert result.stdout.startswith("buffered answer"), result.stdout
    assert "exit handler ran" in result.stdout
    # tempfile's clean-up is an exit handler too: the directory is gone
    left = marker.read_text()
    assert left
    assert not Path(left).exists()


def test_a_text_code_is_printed_and_exits_1_as_sys_exit_does(tmp_path: Path) -> None:
    result = _run("_exit_promptly('error: gone')", str(tmp_path / "m.txt"))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: gone"


def test_a_live_non_daemon_thread_leaves_the_exit_to_python() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            _exit_promptly(4)  # would end pytest itself if it took the prompt way
        assert stopped.value.code == 4
    finally:
        release.set()
        worker.join()


def test_the_console_script_still_fails_with_its_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "driftloop"), "score", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, env={"PATH": str(VENV_BIN), "DRIFTLOOP_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
