"""The GitHub Actions workflows (.github/workflows), checked offline: actionlint finds nothing in them (shellcheck on
their scripts where it is installed), and the CD workflow calls only driftloop commands and options, rollout.sh
subcommands and registry snippets that exist, and pushes the very image that rollout.sh then sets."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.settings import get_settings
from tests.support.workflows import CD, WORKFLOWS, champion_env, clean_env, load, make_champion

ROOT = Path(__file__).resolve().parents[2]
ROLLOUT = ROOT / "deployments" / "k8s" / "rollout.sh"
IN_CI = os.environ.get("CI", "").lower() == "true"

DRIFTLOOP_CALL = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?driftloop\s+([a-z][a-z0-9-]*)")
ROLLOUT_CALL = re.compile(r"(?:\S*/)?rollout\.sh\s+[^\n;&|]*")
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def without_comments(script: str) -> str:
    """The script with continuation lines joined and its comments (whole lines, and `` # ...`` tails) removed."""
    lines = script.replace("\\\n", " ").splitlines()
    return "\n".join(line.split(" # ", 1)[0] for line in lines if not line.lstrip().startswith("#"))


def run_scripts(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    """(``job / step``, script without comments) of every ``run:`` step."""
    scripts = []
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            if "run" in step:
                scripts.append((f"{job_id} / {step.get('name', step['run'][:40])}", without_comments(step["run"])))
    return scripts


def tool(env_var: str, name: str) -> str | None:
    """``$ENV_VAR``, else ``name`` beside this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    return os.environ.get(env_var) or (str(beside) if beside.is_file() else None) or shutil.which(name)


@pytest.fixture(scope="module")
def actionlint() -> str:
    found = tool("ACTIONLINT", "actionlint")
    if found is None:
        message = "actionlint not found: the dev extra installs it (pip install -e '.[dev]'), or set $ACTIONLINT"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def run_actionlint(actionlint: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    shellcheck = tool("SHELLCHECK", "shellcheck") or ""  # empty: actionlint checks the scripts without it
    return subprocess.run(
        [actionlint, "-no-color", "-oneline", f"-shellcheck={shellcheck}", "-pyflakes=", *args],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_there_are_workflows() -> None:
    assert {path.name for path in workflow_files()} >= {"ci.yml", "cd.yml"}


def test_actionlint_finds_nothing(actionlint: str) -> None:
    result = run_actionlint(actionlint, *(str(path.relative_to(ROOT)) for path in workflow_files()))
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"
    assert not result.stdout.strip(), f"actionlint:\n{result.stdout}"


def test_actionlint_reports_a_broken_workflow(actionlint: str) -> None:
    """The check can fail: the output of a job that does not exist is reported."""
    broken = (
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        '      - run: echo "${{ needs.nothing.outputs.version }}"\n'
    )
    result = run_actionlint(actionlint, "-stdin-filename", "broken.yml", "-", stdin=broken)
    assert result.returncode == 1
    assert result.stdout.startswith("broken.yml:7:"), result.stdout
    assert 'property "nothing" is not defined' in result.stdout


def test_shellcheck_is_available_to_actionlint() -> None:
    """Reports (as a skip) when the workflows' scripts were linted without shellcheck; never fails."""
    if tool("SHELLCHECK", "shellcheck") is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install shellcheck): run: scripts not shellchecked")


def cli_commands() -> dict[str, Any]:
    """The subcommands `driftloop --help` lists (Typer's click commands, by name)."""
    group = get_command(app)
    help_text = CliRunner().invoke(app, ["--help"], terminal_width=200).output
    for name in group.commands:
        assert re.search(rf"\b{re.escape(name)}\b", help_text), f"`driftloop --help` does not list {name}"
    return dict(group.commands)


def options(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts) if name.startswith("--")}


def test_cd_uses_only_driftloop_commands_and_options_that_exist() -> None:
    commands = cli_commands()
    used: set[str] = set()
    for where, script in run_scripts(load(CD)):
        subcommands = set(DRIFTLOOP_CALL.findall(script))
        for subcommand in subcommands:
            assert subcommand in commands, f"{where}: `driftloop {subcommand}` is not a driftloop command"
        used |= subcommands
        if len(subcommands) == 1:  # a script calling one command: its --options are that command's
            (command,) = subcommands
            unknown = set(LONG_OPTION.findall(script)) - options(commands[command]) - {"--help"}
            assert not unknown, f"{where}: `driftloop {command}` has no option {sorted(unknown)}"
    assert used >= {"train", "build-image"}, f"the CD workflow should train and build; found {sorted(used)}"


def rollout_subcommands() -> set[str]:
    body = ROLLOUT.read_text().split("case $action in", 1)[1].split("esac", 1)[0]
    return set(re.findall(r"^\s*([a-z][a-z-]*)\)", body, flags=re.MULTILINE))


def test_cd_calls_rollout_sh_with_a_subcommand_it_supports() -> None:
    supported = rollout_subcommands()
    assert supported == {"render", "apply", "set-image", "render-argo", "apply-argo", "canary"}
    calls = [
        (where, shlex.split(call)) for where, script in run_scripts(load(CD)) for call in ROLLOUT_CALL.findall(script)
    ]
    assert calls, "the CD workflow does not call deployments/k8s/rollout.sh"
    for where, argv in calls:
        assert argv[0] == "deployments/k8s/rollout.sh", f"{where}: run it from the checkout's root: {argv}"
        assert len(argv) == 3, f"{where}: rollout.sh takes a subcommand and a VERSION, got {argv[1:]}"
        assert argv[1] in supported, f"{where}: rollout.sh has no subcommand {argv[1]!r} ({sorted(supported)})"
    assert [argv[1] for _, argv in calls] == ["set-image"]


def champion_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """What CHAMPION_PY prints, run by this interpreter in the CD job's environment.

    tests/integration/test_cd_snippets.py runs it as the job does, ``python -c`` in a fresh interpreter: seconds
    of imports a run, on top of MLflow creating its store.
    """
    for name in list(os.environ):
        if name.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_")):
            monkeypatch.delenv(name)
    for name, value in champion_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    get_settings.cache_clear()  # the snippet reads the settings through it: from this environment, then forgotten
    try:
        exec(compile(load(CD)["env"]["CHAMPION_PY"], "CHAMPION_PY", "exec"), {})  # noqa: S102 (the workflow's code)
    finally:
        get_settings.cache_clear()
    return capsys.readouterr().out


def test_the_champion_query_prints_the_champions_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CHAMPION_PY prints an empty line without a champion (the jobs then ship nothing), else its version."""
    assert champion_query(tmp_path, monkeypatch, capsys) == "\n"
    make_champion(tmp_path)
    assert champion_query(tmp_path, monkeypatch, capsys) == "2\n"


STUB_KUBECTL = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
"""


def test_the_pushed_image_is_the_one_rollout_sh_sets(tmp_path: Path) -> None:
    workflow = load(CD)
    deploy_env = workflow["jobs"]["deploy"]["env"]
    assert deploy_env["DRIFTLOOP_IMAGE_PREFIX"] == workflow["jobs"]["build"]["env"]["DRIFTLOOP_IMAGE_PREFIX"]
    env = clean_env(tmp_path, DRIFTLOOP_IMAGE_PREFIX="registry.example.com/team/ml", DRIFTLOOP_MODEL_NAME="Churn")
    pushed = subprocess.run(
        [sys.executable, "-c", workflow["env"]["IMAGE_PY"], "12"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    stub, log = tmp_path / "kubectl", tmp_path / "calls"
    stub.write_text(STUB_KUBECTL)
    stub.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROLLOUT), "set-image", "12"],
        env={**env, "KUBECTL": str(stub), "STUB_LOG": str(log)}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (set_image,) = [call for call in log.read_text().splitlines() if " set image " in call]
    assert pushed == "registry.example.com/team/ml/churn-serving:v12"
    assert set_image.endswith(f"serving={pushed}")
