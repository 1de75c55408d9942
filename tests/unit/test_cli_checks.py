"""Mistakes in what `driftloop train` is given fail in seconds, as one `error:` line, before any service starts.

The real console script, in a data directory of its own: no Prefect or MLflow is running, and none may be started.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA, TELEMETRY_OFF
from tests.support.host import VENV_BIN


def driftloop(home: Path, *args: str, extra: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script in ``home``; ``extra`` sets variables, or with None removes them."""
    env = {
        **TELEMETRY_OFF,
        "PATH": str(VENV_BIN),
        "HOME": str(home.parent),
        "DRIFTLOOP_HOME": str(home),
        # Nothing listens there: a command that got as far as talking to Prefect would fail differently.
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "DRIFTLOOP_START_MLFLOW_UI": "false",
        "COLUMNS": "200",
    }
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [str(VENV_BIN / "driftloop"), *args], env=env, cwd=home.parent, capture_output=True, text=True, timeout=120
    )


def assert_refused_before_services(result: subprocess.CompletedProcess[str], home: Path, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert "Traceback" not in result.stderr
    assert "starting" not in result.stdout
    assert not (home / "run").exists()  # where the local services' pid files and logs go
    assert not (home / "mlflow.db").exists()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def users_csv(tmp_path: Path, churn_frame: pd.DataFrame) -> Path:
    path = tmp_path / "customers.csv"
    churn_frame.head(400).to_csv(path, index=False)
    return path


def test_a_file_without_its_schema_is_refused_with_how_to_make_one(home: Path, users_csv: Path) -> None:
    result = driftloop(home, "train", "--data", str(users_csv))
    assert_refused_before_services(result, home, f"--data {users_csv} needs its schema")
    assert f"driftloop schema infer --data {users_csv} --target COLUMN --out schema.yaml" in result.stderr


def test_a_snapshot_that_breaks_its_schema_lists_every_problem(home: Path, users_csv: Path) -> None:
    frame = pd.read_csv(users_csv)
    frame.loc[:2, "contract"] = "Lifetime"
    frame.to_csv(users_csv, index=False)
    result = driftloop(home, "train", "--data", str(users_csv), "--schema", str(BUNDLED_SCHEMA))
    assert_refused_before_services(result, home, f"dataset '{users_csv}' failed validation (2 problem(s))")
    assert "only 400 row(s); the schema requires at least 500" in result.stderr
    assert "column 'contract': 3 value(s): 'Lifetime' (3) outside the declared categories" in result.stderr


def test_an_unknown_estimator_or_parameter_is_refused(home: Path) -> None:
    unknown = driftloop(home, "train", "--estimator", "svm")
    assert_refused_before_services(unknown, home, "unknown estimator 'svm'")
    wrong_param = driftloop(home, "train", "--param", "n_trees=5")
    assert_refused_before_services(wrong_param, home, "")
    assert "n_trees" in wrong_param.stderr


@pytest.mark.parametrize(
    ("floor", "message"),
    [
        (
            "nope=0.5",
            "--floor: unknown floor metric 'nope' for a binary model; valid metric names: roc_auc, f1, accuracy",
        ),
        ("roc_auc=high", "--floor roc_auc: 'high' is not a number"),
        ("roc_auc", "--floor expects METRIC=VALUE, got 'roc_auc'"),
    ],
)
def test_a_bad_floor_is_refused(home: Path, floor: str, message: str) -> None:
    assert_refused_before_services(driftloop(home, "train", "--floor", floor), home, message)


@pytest.mark.parametrize("tolerance", ["-1", "2", "nan"])
def test_a_tolerance_beyond_the_metrics_range_is_refused(home: Path, tolerance: str) -> None:
    result = driftloop(home, "train", "--tolerance", tolerance)
    assert_refused_before_services(result, home, "--tolerance: tolerance must lie between -1 and 1 (a difference of")


def test_an_invalid_schema_file_is_refused(home: Path, tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text("name: x\ntarget: {name: churn, classes: [No, Yes], positive: Maybe}\nfeatures: []\n")
    result = driftloop(home, "train", "--data", str(BUNDLED_DATA), "--schema", str(schema))
    assert_refused_before_services(result, home, f"schema file {schema} is invalid")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/schema.yaml", "no directory {tmp}/missing to write it in (create it first)"),
        (".", "is a directory: give the file to write, e.g. {tmp}/schema.yaml"),
    ],
)
def test_schema_infer_refuses_an_out_it_cannot_write_before_reading_the_data(
    home: Path, users_csv: Path, tmp_path: Path, where: str, message: str
) -> None:
    out = tmp_path / where
    result = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "churn", "--out", str(out),
                       "--force")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: --out {out}"), result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    assert "DRIFTLOOP_HOME" not in result.stderr


def test_schema_infer_writes_a_schema_train_accepts(home: Path, users_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "customers.schema.yaml"
    written = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "churn", "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert f"wrote {out}: 19 features (6 binary, 10 categorical, 3 numeric), target 'churn'" in written.stdout
    assert f"check it, then: driftloop train --data {users_csv} --schema {out}" in written.stderr
    assert "name: customers" in out.read_text()
    assert "(its model is registered as 'customers': pass --model-name customers to serve" in " ".join(
        written.stderr.split()
    )
    named = tmp_path / "named.schema.yaml"
    args = (
        "schema",
        "infer",
        "--data",
        str(users_csv),
        "--target",
        "churn",
        "--out",
        str(named),
        "--name",
        "customers",
    )
    elsewhere = driftloop(home, *args, extra={"DRIFTLOOP_MODEL_NAME": "tiers"})
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (
        "(DRIFTLOOP_MODEL_NAME is set: train registers it as 'tiers'; add --model-name customers to train, serve,"
    ) in " ".join(elsewhere.stderr.split())

    again = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "churn", "--out", str(out))
    assert (again.returncode, again.stderr.strip()) == (1, f"error: {out} exists; pass --force to overwrite it")

    printed = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "churn")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == out.read_text()

    numbers = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "tenure")
    assert numbers.returncode == 0, numbers.stderr
    assert "target: {name: tenure, kind: regression}" in numbers.stdout
    forced = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "tenure", "--task", "binary")
    assert forced.returncode == 1
    assert forced.stderr.startswith("error: target 'tenure' has ")
    assert "a binary target needs exactly two" in forced.stderr
    unknown = driftloop(home, "schema", "infer", "--data", str(users_csv), "--target", "churn", "--task", "ranking")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1,
        "error: --task 'ranking': choose binary, multiclass or regression",
    )


def test_debug_adds_the_traceback(home: Path) -> None:
    result = driftloop(home, "--debug", "train", "--estimator", "svm")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: unknown estimator 'svm'")


def _project(tmp_path: Path, users_csv: Path) -> Path:
    """A project file where the CLI runs: `customers` on the users' data, `broken` on a schema that does not fit."""
    schema = tmp_path / "broken.schema.yaml"
    schema.write_text(
        "name: broken\ntarget: {name: churn, classes: ['No', 'Yes'], positive: 'Yes'}\n"
        "features: [{name: absent, kind: numeric}]\n"
    )
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "models:\n"
        f"  - {{name: customers, data: {users_csv.name}, schema: {BUNDLED_SCHEMA}}}\n"
        f"  - {{name: broken, data: {users_csv.name}, schema: broken.schema.yaml}}\n"
    )
    return path


def test_train_of_a_model_the_project_does_not_declare_names_those_it_does(
    home: Path, tmp_path: Path, users_csv: Path
) -> None:
    project = _project(tmp_path, users_csv)
    result = driftloop(home, "train", "wine")
    assert_refused_before_services(result, home, f"no model 'wine' in {project}: it declares customers, broken")


def test_train_name_takes_the_projects_data_and_schema(home: Path, tmp_path: Path, users_csv: Path) -> None:
    _project(tmp_path, users_csv)
    result = driftloop(home, "train", "broken")
    assert_refused_before_services(result, home, f"dataset '{users_csv}' failed validation")
    assert "missing feature column(s): 'absent'" in result.stderr


def test_a_broken_project_file_stops_every_command_that_reads_it(home: Path, tmp_path: Path) -> None:
    (tmp_path / "driftloop.yaml").write_text("models:\n  - {name: 'a b', data: x.csv, schema: s.yaml}\n")
    for command in (("train",), ("models",), ("drift-check",)):
        result = driftloop(home, *command)
        assert_refused_before_services(result, home, f"project file {tmp_path / 'driftloop.yaml'} is invalid")
        assert "model 'a b': name:" in result.stderr


def test_a_model_missing_from_the_default_project_names_the_project_file_looked_for(home: Path, tmp_path: Path) -> None:
    """Trial 54: DRIFTLOOP_PROJECT_FILE named a file that was not there; the error did not say so."""
    missing = tmp_path / "elsewhere" / "driftloop.yaml"
    result = driftloop(home, "train", "deliveries", extra={"DRIFTLOOP_PROJECT_FILE": str(missing)})
    assert_refused_before_services(
        result, home, f"no model 'deliveries' in the default project (no project file at {missing}): it declares churn"
    )


@pytest.mark.parametrize("command", ["models", "history", "drift-check", "serve", "status"])
def test_every_model_command_refuses_a_bad_model_name(home: Path, command: str) -> None:
    result = driftloop(home, command, "--model-name", "a/b")
    assert_refused_before_services(result, home, "--model-name 'a/b': a model name has only letters")


@pytest.mark.parametrize(
    "command",
    [
        ("models",),
        ("history",),
        ("drift-check",),
        ("status",),
        ("rollout", "1"),
        ("build-image", "1"),
        ("promote", "1", "--reason", "x"),
        ("rollback", "--reason", "x"),
        ("pin", "1", "--reason", "x"),
        ("unpin", "--reason", "x"),
        ("serve",),
        ("serve", "--model-name", "customers"),  # the second of two served models
    ],
)
def test_a_model_name_nobody_declared_or_registered_is_refused(
    home: Path, tmp_path: Path, users_csv: Path, command: tuple[str, ...]
) -> None:
    _project(tmp_path, users_csv)
    result = driftloop(home, *command, "--model-name", "custmers")
    assert_refused_before_services(
        result, home, "no model 'custmers' is declared or registered here (known: customers, broken)"
    )


@pytest.mark.parametrize("command", [("rollout",), ("rollout", "3"), ("build-image",), ("build-image", "3")])
def test_shipping_a_model_with_no_versions_is_refused(home: Path, command: tuple[str, ...]) -> None:
    result = driftloop(home, *command)
    assert_refused_before_services(result, home, "model 'churn' has no versions yet: train it first")


def test_a_projects_own_mistakes_are_named_as_the_projects(home: Path, tmp_path: Path, users_csv: Path) -> None:
    project = _project(tmp_path, users_csv)
    project.write_text(
        project.read_text()
        + "  - {name: lost, data: nowhere.csv, schema: broken.schema.yaml}\n"
        + f"  - {{name: strict, data: {BUNDLED_DATA}, schema: {BUNDLED_SCHEMA}, floors: {{r2: 0.5}}}}\n"
    )
    lost = driftloop(home, "train", "lost")
    assert_refused_before_services(lost, home, f"{project}: model 'lost': data {tmp_path / 'nowhere.csv'}: no such")
    strict = driftloop(home, "train", "strict")
    assert_refused_before_services(strict, home, f"{project}: model 'strict': floors: ")
    assert "r2" in strict.stderr


def test_version() -> None:
    from driftloop import __version__

    result = subprocess.run([str(VENV_BIN / "driftloop"), "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, f"driftloop {__version__}")


def test_a_data_directory_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "a-file"  # DRIFTLOOP_HOME names a file: nothing can be written under it
    home.write_text("not a directory")
    result = driftloop(home, "models")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == f"error: the data directory {home} is a file, not a directory (DRIFTLOOP_HOME)\n"
    named = driftloop(home, "drift-check", "--model-name", "tumours")  # not "no model 'tumours' is registered"
    assert named.stderr.startswith(f"error: the data directory {home} is a file"), named.stderr


def test_an_unexpected_file_system_error_is_one_line_and_debug_shows_where(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run").parent.mkdir(parents=True)
    (home / "run").write_text("a file where the services' directory goes")
    own_prefect = {"PREFECT_API_URL": None}  # driftloop's own server: it fails making its directory first
    result = driftloop(home, "train", extra=own_prefect)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: cannot use {home / 'run'}"), result.stderr
    assert "Traceback" not in result.stderr
    debug = driftloop(home, "--debug", "train", extra=own_prefect)
    assert "Traceback" in debug.stderr  # --debug shows where


def test_a_prefect_server_that_does_not_answer_is_one_line(home: Path) -> None:
    # The helper points PREFECT_API_URL at a port where nothing listens.
    result = driftloop(home, "drift-check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: the Prefect server at http://127.0.0.1:9/api does not answer"), (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("drift-check", "--model-name", "tumours"), ("train",), ("models",)])
def test_an_mlflow_server_that_does_not_answer_is_one_line(home: Path, command: tuple[str, ...]) -> None:
    env_free = driftloop(home, *command, extra={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "PREFECT_API_URL": None})
    assert env_free.returncode == 1, env_free.stdout + env_free.stderr
    assert env_free.stderr.startswith("error: the MLflow server at http://127.0.0.1:9 does not answer"), env_free.stderr


def test_serve_on_an_address_in_use_is_one_line(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = driftloop(home, "serve", "--port", str(port))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use"), result.stderr
    assert "serving model" not in result.stdout  # refused before the model loads


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "prefect.example"])  # noqa: S104 (the point of the test)
def test_up_refuses_to_expose_prefect_without_authentication(home: Path, host: str) -> None:
    result = driftloop(home, "up", extra={"PREFECT_API_URL": None, "DRIFTLOOP_PREFECT_HOST": host})
    assert_refused_before_services(
        result, home, f"the Prefect server would listen on {host} with no authentication, so anyone who reaches it"
    )
    assert "PREFECT_API_AUTH_STRING" in result.stderr


def test_up_on_a_loopback_prefect_or_with_a_credential_goes_on(home: Path, tmp_path: Path) -> None:
    # Past the check, up reads the project file: a broken one stops it there, in one line, before any service.
    (tmp_path / "driftloop.yaml").write_text("models:\n  - {name: 'a b', data: x.csv, schema: s.yaml}\n")
    for extra in (
        {"PREFECT_API_URL": None, "DRIFTLOOP_PREFECT_HOST": "127.0.0.1"},
        {"PREFECT_API_URL": None, "DRIFTLOOP_PREFECT_HOST": "0.0.0.0", "PREFECT_API_AUTH_STRING": "ops:s3cret-pass"},  # noqa: S104
    ):
        result = driftloop(home, "up", extra=extra)
        assert_refused_before_services(result, home, f"project file {tmp_path / 'driftloop.yaml'} is invalid")
    # A valid file whose schema file is not there: its train deployment could never run (trial 18: deployed).
    (tmp_path / "driftloop.yaml").write_text("models:\n  - {name: a, data: x.csv, schema: s.yaml}\n")
    lacking = driftloop(home, "up", extra={"PREFECT_API_URL": None})
    assert_refused_before_services(
        lacking,
        home,
        f"project file {tmp_path / 'driftloop.yaml'}: model 'a': schema file {tmp_path / 's.yaml'} does not exist",
    )
    (tmp_path / "driftloop.yaml").unlink()  # no project: the settings' one model, and its schema
    unset = driftloop(home, "up", extra={"PREFECT_API_URL": None, "DRIFTLOOP_SCHEMA_PATH": str(tmp_path / "no.yaml")})
    assert_refused_before_services(
        unset, home, f"DRIFTLOOP_SCHEMA_PATH: model 'churn': schema file {tmp_path / 'no.yaml'} does not exist"
    )


@pytest.mark.parametrize("every", ["0h", "-1h", "1x", "hourly", "", "NaT", "1M"])
def test_monitor_refuses_a_window_that_is_not_a_positive_length(home: Path, every: str) -> None:
    result = driftloop(home, "monitor", "--every", every)
    assert_refused_before_services(result, home, f"--every {every!r}: write a positive length such as 30min, 1h")
    assert "Warning" not in result.stderr


@pytest.mark.parametrize("every", ["5m", "30min", "90s", "1W"])
def test_monitor_takes_a_length_in_minutes_seconds_or_weeks(home: Path, every: str) -> None:
    """`5m` is five minutes (pandas' frequencies read it as month ends, and warn); nothing served yet here."""
    result = driftloop(home, "monitor", "--every", every)
    assert result.returncode == 0, result.stderr
    assert "no predictions of 'churn' served in the last 7 days" in result.stdout
    assert result.stderr == ""


def test_a_missing_schema_file_is_one_line_like_a_missing_data_file(home: Path, tmp_path: Path) -> None:
    missing = driftloop(home, "train", "--data", str(BUNDLED_DATA), "--schema", str(tmp_path / "nothere.yaml"))
    assert_refused_before_services(missing, home, f"--schema {tmp_path / 'nothere.yaml'}: no such file")
    directory = driftloop(home, "train", "--data", str(BUNDLED_DATA), "--schema", str(tmp_path))
    assert_refused_before_services(directory, home, f"--schema {tmp_path}: a directory, not a schema file")
    data = driftloop(home, "train", "--data", str(tmp_path / "nothere.csv"), "--schema", str(BUNDLED_SCHEMA))
    assert_refused_before_services(data, home, "--data")


def test_labels_import_names_a_missing_file_and_score_a_missing_input(home: Path, tmp_path: Path) -> None:
    missing = driftloop(home, "labels", "import", "nowhere.csv", "--label-column", "y")
    assert_refused_before_services(missing, home, "labels file nowhere.csv: no such file or directory")
    # A database without its query (trial 18: "labels file sqlite:///labels.db: no such file or directory").
    database = driftloop(home, "labels", "import", f"sqlite:///{tmp_path / 'labels.db'}", "--label-column", "y")
    assert_refused_before_services(
        database, home, f"DATA sqlite:///{tmp_path / 'labels.db'} is a database: give the rows' SQL with --query"
    )
    (tmp_path / "labels.yaml").write_text("y: 1\n")  # trial 12: called a snapshot, which is what training reads
    yaml = driftloop(home, "labels", "import", str(tmp_path / "labels.yaml"), "--label-column", "y")
    assert_refused_before_services(yaml, home, f"label table {tmp_path / 'labels.yaml'} has an unsupported file type")
    scored = driftloop(home, "score", "nowhere.parquet", "--out", str(tmp_path / "out"))
    assert_refused_before_services(scored, home, "DATA nowhere.parquet: no such file or directory")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--blocksize", "64XB", "Invalid value for '--blocksize': '64XB' is not a size: Could not interpret 'XB'"),
        ("--blocksize", "0", "Invalid value for '--blocksize': '0': a size must be more than 0 bytes"),
        ("--memory-limit", "lots", "Invalid value for '--memory-limit': 'lots' is not a size"),
        ("--memory-limit", "-0.5", "Invalid value for '--memory-limit': '-0.5': give auto, 0 (no limit)"),
        # Dask would restart a worker this small for ever: it is over its limit before its first row.
        ("--memory-limit", "200MB", "'200MB' is 191 MiB: a scoring worker needs at least 512 MiB"),
        ("--memory-limit", "10", "'10' is 10 bytes (a number above 1 counts bytes: a share of the RAM is at most"),
        ("--memory-limit", "1.5", "'1.5' is 1 bytes (a number above 1 counts bytes"),
        ("--memory-limit", "0.0000001", "bytes: a scoring worker needs at least 512 MiB"),
    ],
)
def test_score_refuses_a_size_dask_cannot_read_as_a_usage_error(
    home: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = driftloop(home, "score", "nowhere.parquet", "--out", str(tmp_path / "out"), option, value)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.replace("│", " ").split()), result.stderr
    assert not (home / "run").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--blocksize", "16MiB"), ("--memory-limit", "0.4"), ("--memory-limit", "0"), ("--memory-limit", "600MB")],
)
def test_score_takes_the_sizes_dask_reads(home: Path, tmp_path: Path, option: str, value: str) -> None:
    scored = driftloop(home, "score", "nowhere.parquet", "--out", str(tmp_path / "out"), option, value)
    assert_refused_before_services(scored, home, "DATA nowhere.parquet: no such file or directory")  # got past parsing


def test_train_help_names_every_built_in_estimator(home: Path) -> None:
    from driftloop.core.pipeline import ESTIMATORS, REGRESSORS

    shown = " ".join(driftloop(home, "train", "--help").stdout.replace("│", " ").split())
    for name in [*ESTIMATORS, *REGRESSORS]:
        assert name in shown, name
    assert len(set(REGRESSORS) - {"ridge"}) == 5
    assert "the same five tree models" in shown
    assert "pip install 'driftloop[boosting]'" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score"], "Missing argument 'data'. (see driftloop score --help)"),
        (["score", "x.csv", "--out", "o", "--workers", "0"], "Invalid value for '--workers': "),
        (["train", "--tolerance", "abc"], "Invalid value for '--tolerance': "),
        (["trian"], "No such command 'trian'. Did you mean 'train'? (see driftloop --help)"),
    ],
)
def test_a_usage_mistake_is_one_error_line_with_exit_code_2(home: Path, args: list[str], message: str) -> None:
    result = driftloop(home, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "╭" not in result.stderr
    assert "Usage:" not in result.stderr
    assert not home.exists()  # nothing was started or written


def test_no_command_prints_the_help(home: Path) -> None:
    result = driftloop(home)
    assert result.returncode == 2
    assert "Usage: driftloop" in result.stdout + result.stderr
    assert "score" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("command", "said"),
    [("models", "no versions of model 'churn' yet: run `driftloop train`"), ("history", "no alias moves for model")],
)
def test_looking_at_an_empty_installation_creates_nothing(home: Path, command: str, said: str) -> None:
    result = driftloop(home, command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(said)
    assert "Creating initial MLflow database tables" not in result.stderr
    assert not (home / "mlflow.db").exists()


@pytest.mark.parametrize("command", [("build-image", "1"), ("rollout", "1"), ("rollout", "1", "--strategy", "canary")])
def test_building_or_rolling_out_without_a_docker_engine_is_one_line_before_any_flow(
    home: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """The flow used to start and fail inside, printing Prefect's tracebacks above the error."""
    from mlflow import MlflowClient

    from driftloop.core import lineage

    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("churn")
    # A version whose export passed its parity check is all the command checks first.
    client.create_model_version("churn", source=str(tmp_path), tags={lineage.PARITY: lineage.PASSED})
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    result = driftloop(home, *command, extra={"DOCKER_HOST": nowhere})
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: no Docker engine answers at {nowhere} "), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.rstrip().endswith("build-image, rollout and status always do)")  # in any deploy mode
    assert not (home / "run").exists()  # no Prefect server was started for it


def test_models_lists_each_versions_onnx_sha256_beside_its_data_hash(home: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from driftloop.core import lineage

    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("churn")
    tags = {lineage.DATA_HASH: "d" * 12 + "0" * 52, lineage.ONNX_SHA256: "0123456789ab" + "f" * 52}
    client.create_model_version("churn", source=str(tmp_path), tags=tags)
    result = driftloop(home, "models")
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "version" in line and "parity" in line)
    assert header.index("data") < header.index("onnx sha256")
    assert "dddddddddddd" in result.stdout
    assert "0123456789ab" in result.stdout


def test_a_drift_window_smaller_than_the_rows_a_check_needs_is_refused(home: Path) -> None:
    """It ran a whole check that could only ever say 'insufficient data'."""
    result = driftloop(home, "drift-check", "--window-rows", "10", "--min-rows", "50")
    assert_refused_before_services(
        result, home, "a window of 10 rows (--window-rows) is below the 50 the features' check needs (--min-rows) and "
        "the 100 labelled rows the label check needs (DRIFTLOOP_LABEL_MIN_ROWS)"
    )  # fmt: skip
    defaults = driftloop(home, "drift-check", "--window-rows", "80")  # the defaults: 200 rows, 100 labelled
    assert_refused_before_services(defaults, home, "a window of 80 rows (--window-rows) is below the 200")
    # 150 rows are too few for the features' check but enough for the label check: not refused here (it goes on
    # to its flow, which finds no Prefect server at the test's address).
    labels_only = driftloop(home, "drift-check", "--window-rows", "150")
    assert "a window of" not in labels_only.stderr


def test_score_without_a_model_name_on_an_installation_of_other_models_names_them(home: Path, tmp_path: Path) -> None:
    """Trial 16: it said "model 'churn' has no champion" on an installation that never had a model 'churn'."""
    from mlflow import MlflowClient

    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("equip", "equipcost"):
        client.create_registered_model(name)
        client.create_model_version(name, source=str(tmp_path))
    (tmp_path / "rows.csv").write_text("id,x\n1,2\n")
    result = driftloop(home, "score", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(
        "error: no model 'churn' is registered here (known: equip, equipcost): name one with --model-name"
    ), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (home / "run").exists()  # no service was started for it
    client.create_registered_model("churn")  # registered, with no champion: the version is what is missing
    again = driftloop(home, "score", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "out"))
    assert again.stderr.startswith("error: model 'churn' has no champion: name the version"), again.stderr
    # drift-check too (trial 17: it said "model 'churn' has no champion yet: nothing to check" and exited 0)
    client.delete_registered_model("churn")
    check = driftloop(home, "drift-check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stderr.startswith("error: no model 'churn' is registered here (known: equip, equipcost)"), check.stderr
    assert not (home / "run").exists()


def test_score_refuses_workers_too_small_for_the_version_s_graph_before_starting_them(
    home: Path, tmp_path: Path
) -> None:
    """Trial 17: a 29 MB forest died on every try under 700 MB per worker, after the workers had started."""
    import numpy as np
    from mlflow import MlflowClient
    from onnx import TensorProto, helper, numpy_helper

    from driftloop.core import lineage
    from driftloop.io.datasets import load_schema

    wide = 5_000_000  # a 19 MB weight: about 250 MiB in a worker, beside the libraries
    weights = numpy_helper.from_array(np.ones((1, wide), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, wide])], [weights],
    )  # fmt: skip
    version = tmp_path / "version"
    version.mkdir()
    (version / lineage.SERVING_ONNX_FILE).write_bytes(helper.make_model(graph).SerializeToString())
    (version / lineage.SCHEMA_FILE).write_text(load_schema(BUNDLED_SCHEMA).model_dump_json())
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("churn")
    client.create_model_version("churn", source=str(version), tags={lineage.PARITY: lineage.PASSED})
    (tmp_path / "rows.csv").write_text("id,x\n1,2\n")
    score = ("score", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "out"), "--version", "1")
    small = driftloop(home, *score, "--memory-limit", "512MiB")
    assert small.returncode == 1, small.stdout + small.stderr
    assert small.stderr.startswith(
        "error: a scoring worker's 512 MiB cannot hold churn v1: its 19.1 MB ONNX graph takes about 248 MiB in a worker"
    ), small.stderr
    assert "give each worker at least 556 MiB (--memory-limit)" in small.stderr
    assert len(small.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert not (home / "run").exists()
    # With room for it the command goes on to its next check, the input's columns: still before any worker.
    roomy = driftloop(home, *score, "--memory-limit", "1GB")
    assert roomy.returncode == 1, roomy.stdout + roomy.stderr
    assert "lacks the model's feature(s)" in roomy.stderr, roomy.stderr


def test_a_model_reference_without_its_function_says_so(home: Path, users_csv: Path) -> None:
    """Trial 18: `--model my_models.py` said "unknown estimator 'my_models.py' … choose one of: …"."""
    result = driftloop(
        home, "train", "--data", str(users_csv), "--schema", str(BUNDLED_SCHEMA), "--model", "my_models.py"
    )
    assert_refused_before_services(
        result, home, "--model 'my_models.py' names no function: give path/to/models.py:factory or package.module:"
    )


def test_rolling_out_a_version_that_failed_parity_is_refused_before_any_flow(home: Path, tmp_path: Path) -> None:
    """Trial 18: the refusal came from the ship flow, after a Prefect ERROR line and a flow run (6.1 s)."""
    from mlflow import MlflowClient

    from driftloop.core import lineage

    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("churn")
    client.create_model_version("churn", source=str(tmp_path), tags={lineage.PARITY: lineage.FAILED})
    result = driftloop(home, "rollout", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "error: version 1 of 'churn' has driftloop.parity=failed: only a version whose ONNX export passed the "
        "parity check may be rolled out\n"
    )
    assert not (home / "run").exists()  # no service, no flow


def test_rolling_out_a_version_its_gate_refused_without_a_reason_is_refused_before_any_flow(
    home: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from driftloop.core import lineage

    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("churn")
    tags = {lineage.PARITY: lineage.PASSED, lineage.GATE: "refuse", lineage.GATE_REASON: "roc_auc 0.61 < floor 0.70"}
    client.create_model_version("churn", source=str(tmp_path), tags=tags)
    result = driftloop(home, "rollout", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "error: version 1 of 'churn' was refused by its promotion gate (roc_auc 0.61 < floor 0.70): to put it into "
        'service anyway, give the reason (driftloop rollout 1 --reason "WHY"; the ship-model flow\'s reason '
        "parameter), which the alias history keeps\n"
    )
    assert not (home / "run").exists()  # no service, no flow
    # With a reason it is admitted, and goes on to the next check: the engine (none here).
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    given = driftloop(home, "rollout", "1", "--reason", "floors of another dataset", extra={"DOCKER_HOST": nowhere})
    assert given.stderr.startswith(f"error: no Docker engine answers at {nowhere} "), given.stderr


def test_an_unexpected_errors_line_asks_for_debug_only_when_the_traceback_is_not_shown() -> None:
    from driftloop.cli import _describe_unexpected

    error = RuntimeError("the   worker\nfailed")
    assert _describe_unexpected(error) == "RuntimeError: the worker failed (run with --debug for the traceback)"
    # --debug printed the traceback just above: the line asked for it again (trial 20).
    assert _describe_unexpected(error, traceback_shown=True) == "RuntimeError: the worker failed"


def test_down_names_the_docker_containers_it_leaves_serving_and_says_nothing_without_them(home: Path) -> None:
    """Trial 22: after a rollout, `driftloop down` said "stopped" four times while nginx and a slot served on."""
    from driftloop.deploy.proxy import routing_path
    from driftloop.deploy.routing import Routing, SlotRoute
    from driftloop.settings import Settings

    home.mkdir()
    quiet = driftloop(home, "down")
    assert quiet.returncode == 0, quiet.stderr
    assert "docker" not in quiet.stdout
    settings = Settings(home=home)
    routings = {
        "churn": Routing("churn", (SlotRoute("blue", "x:1"), SlotRoute("green", "x:2", 100, "2"))),
        "loans": Routing("loans", (SlotRoute("blue", "x:3", 90, "1"), SlotRoute("green", "x:4", 10, "2"))),
    }
    for model, routing in routings.items():
        routing_path(settings, model).parent.mkdir(parents=True, exist_ok=True)
        routing_path(settings, model).write_text(routing.to_json())
    told = driftloop(home, "down")
    assert told.returncode == 0, told.stderr
    assert told.stdout.splitlines()[-1] == (
        "  docker          left running, as they carry the traffic: driftloop-proxy driftloop-churn-green "
        "driftloop-loans-blue driftloop-loans-green (docker rm -f NAME… removes them)"
    )


def test_a_missing_data_file_is_refused_before_the_modelling_libraries_are_imported(home: Path) -> None:
    """`train --data` with no such file waited 3 s for scikit-learn and skl2onnx to import before saying so."""
    # The console script's own main(), watched from an exit handler (driftloop's exit runs them, then os._exit).
    watch = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('imported:', sorted({'sklearn', 'skl2onnx'} & set(sys.modules)), flush=True))\n"
        "from driftloop.cli import main\n"
        "sys.argv = ['driftloop', 'train', '--data', 'nowhere.csv']\n"
        "main()\n"
    )
    env = {**TELEMETRY_OFF, "PATH": str(VENV_BIN), "HOME": str(home.parent), "DRIFTLOOP_HOME": str(home)}
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", watch], env=env, cwd=home.parent, capture_output=True, text=True, timeout=120
    )
    assert_refused_before_services(result, home, "--data nowhere.csv: no such file or directory")
    assert "imported: []" in result.stdout, result.stdout
