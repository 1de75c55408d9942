"""The ``driftloop`` command: train, inspect and move models, start and stop the local services."""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard, get_args

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftloop.core import lineage
from driftloop.errors import DriftloopError, Interrupted
from driftloop.settings import RolloutStrategy, Settings, get_settings, secret_text

if TYPE_CHECKING:
    from driftloop.core.drift_rule import DriftRule
    from driftloop.core.project import ProjectModel
    from driftloop.core.schema import DatasetSchema
    from driftloop.core.task import Task
    from driftloop.io.datasets import Source
    from flows.train import TrainingOutcome

app = typer.Typer(
    name="driftloop",
    help="A closed MLOps loop on one box: train → gate → register → serve → monitor → retrain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: URLs and messages stay on one line when the output is a file or a narrow terminal.
# Piped output gets a wide fixed width so tables are not squeezed to 80 columns.
# emoji=False: text such as "pkg:x" in a message must not become an emoji.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200, emoji=False)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200, emoji=False)


_show_tracebacks = False  # --debug: the one run-wide option, read by main() when an error ends the command


def _print_version(value: bool) -> None:
    if value:
        from driftloop import __version__

        out.print(f"driftloop {__version__}")
        raise typer.Exit


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="On an error, print its traceback too")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    global _show_tracebacks
    _show_tracebacks = debug
    home = get_settings().home
    if home.exists() and not home.is_dir():
        raise _fail(f"the data directory {home} is a file, not a directory (DRIFTLOOP_HOME)")


MODEL_NAME_HELP = (
    "The registered model [default: DRIFTLOOP_MODEL_NAME, else the project file's first model, else churn]"
)
ModelNameOption = Annotated[str | None, typer.Option("--model-name", help=MODEL_NAME_HELP)]


def _use_model(name: str | None, project_default: bool = True) -> Settings:
    """The settings, for model ``name`` when given.

    Else, with ``project_default``, a project file and no DRIFTLOOP_MODEL_NAME: for the project's first model. The
    name is set in this process's environment, so the flows and clients started from it use the same model.
    """
    settings = get_settings()
    if name is None and project_default:
        name = _project_default(settings)
    if name is not None:
        if not lineage.MODEL_NAME.fullmatch(name):
            raise _fail(f"--model-name {name!r}: a model name has only letters, digits, '_', '.' and '-'")
        os.environ["DRIFTLOOP_MODEL_NAME"] = name
        get_settings.cache_clear()
    return get_settings()


def _project_default(settings: Settings) -> str | None:
    """The project file's first model, when there is a project file and DRIFTLOOP_MODEL_NAME does not choose."""
    if "model_name" in settings.model_fields_set or not settings.project_file.is_file():
        return None
    from driftloop.io.project import load_project

    return load_project(settings.project_file).default.name


def _require_known_model(settings: Settings, given: str | None) -> None:
    """A name given with --model-name must be a model the installation knows: declared or registered.

    Only a name given is checked (the default may not be trained yet), and only against a registry this
    command can read before starting anything (the local store's file, or a remote tracking server).
    """
    if given is None:
        return
    from driftloop.io.project import load_project

    declared = load_project(settings.project_file).names if settings.project_file.is_file() else ()
    if given in declared:
        return
    if not _has_registry(settings):
        registered: list[str] = []
    else:
        _require_mlflow_answers(settings)
        _export_env(settings)
        from driftloop.io.registry import registered_model_names

        registered = registered_model_names(settings.tracking_uri)
    if given not in registered:
        known = ", ".join(dict.fromkeys([*declared, *registered])) or "none yet"
        raise _fail(f"no model {given!r} is declared or registered here (known: {known})")


def _local_store(settings: Settings) -> Path | None:
    """The embedded MLflow store's file (it may not exist yet); None when MLflow is a server."""
    return Path(settings.tracking_uri.removeprefix("sqlite:///")) if settings.uses_local_mlflow else None


def _has_registry(settings: Settings) -> bool:
    """False when the local store's file does not exist yet: a command that only looks then creates none."""
    store = _local_store(settings)
    return store is None or store.is_file()


def _require_version(settings: Settings, version: str | None) -> None:
    """VERSION (or, without one, a champion) must exist before any service or flow starts for it.

    Checked only where the registry can be read without starting anything (as ``_require_known_model``).
    """
    if not _has_registry(settings):
        raise _fail(f"model {settings.model_name!r} has no versions yet: train it first (driftloop train)")
    _require_mlflow_answers(settings)
    _export_env(settings)
    from driftloop.io.registry import ModelRegistry, registered_model_names

    registry = ModelRegistry(settings.model_name, settings.tracking_uri)
    if version is not None:
        registry.get_version(version)  # RegistryError naming the versions there are: one line
    elif registry.champion() is None:
        _require_registered(settings, registered_model_names(settings.tracking_uri))
        raise _fail(f"model {settings.model_name!r} has no champion: name the version (driftloop models lists them)")


def _require_registered(settings: Settings, registered: list[str]) -> None:
    """The model must be among the ``registered`` ones, or the error names what is.

    The default name, on an installation that never trained it, named the wrong thing missing (trial 16: "model
    'churn' has no champion" beside models 'equip' and 'equipcost').
    """
    if settings.model_name not in registered:
        known = ", ".join(registered) or "none yet"
        raise _fail(
            f"no model {settings.model_name!r} is registered here (known: {known}): name one with --model-name, "
            "or train it first (driftloop train)"
        )


def _require_docker_engine() -> None:
    """A Docker engine must answer before a flow that builds or rolls out images starts: its error is one line then."""
    from driftloop.deploy.engine import docker_client

    docker_client(timeout=30).close()


def _require_proxy_image(settings: Settings) -> None:
    """A rollout's nginx proxy must be able to start before a flow builds an image for it (trial 22)."""
    from contextlib import closing

    from driftloop.deploy.engine import docker_client
    from driftloop.deploy.proxy import require_proxy_image

    with closing(docker_client(timeout=30)) as client:
        require_proxy_image(client, settings)


def _require_mlflow_answers(settings: Settings) -> None:
    """A remote MLflow server must answer before anything reads it: its client retries for many minutes."""
    from driftloop.io.services import is_healthy

    remote = settings.tracking_uri.startswith(("http://", "https://"))
    if remote and not is_healthy(f"{settings.tracking_uri.rstrip('/')}/health"):
        raise _fail(f"the MLflow server at {settings.tracking_uri} does not answer (MLFLOW_TRACKING_URI)")


def _refuse_unauthenticated_prefect(settings: Settings) -> None:
    """Whoever can reach Prefect's API can start flow runs (and the worker's deploys): not without a credential."""
    from driftloop.core.addresses import is_loopback

    if settings.uses_local_prefect and not is_loopback(settings.prefect_host) and not settings.prefect_api_auth_string:
        raise _fail(
            f"the Prefect server would listen on {settings.prefect_host} with no authentication, so anyone who "
            "reaches it could start flow runs: set PREFECT_API_AUTH_STRING=user:password (the server, the worker "
            "and this command all use it), or DRIFTLOOP_PREFECT_HOST=127.0.0.1"
        )


def _require_free_address(host: str, port: int) -> None:
    """The server can listen on host:port: checked before the model loads, not after."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host.strip("[]"), port))
    except OSError as error:
        raise _fail(f"cannot listen on {host}:{port}: {error.strerror} (--host/--port, DRIFTLOOP_SERVE_PORT)") from None


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


def _export_env(settings: Settings) -> None:
    """Make this process (and Prefect/MLflow imported after this) use the same stores as the services."""
    os.environ.update(settings.process_env())


def _start_services(settings: Settings, with_model_server: bool = False) -> None:
    from driftloop.io import services

    # Their own clients would retry for 20 s (Prefect) to many minutes (MLflow) before failing.
    if not settings.uses_local_prefect and not services.is_healthy(f"{settings.prefect_api}/health"):
        raise _fail(f"the Prefect server at {settings.prefect_api} does not answer (PREFECT_API_URL)")
    _require_mlflow_answers(settings)
    specs = services.local_specs(settings, with_model_server)
    if not specs:
        return
    services.prepare_local_mlflow(settings)
    for spec in specs:
        if not services.is_healthy(spec.health_url):
            out.print(f"starting {spec.name} on {spec.listen_url} (log: {spec.log_path}) ...")
    for status in services.start_all(specs, settings.service_start_timeout):
        verb = f"started in {status.seconds:.1f}s" if status.started_now else status.note or "already running"
        out.print(f"  {status.name:<15} {status.url}  [green]{verb}[/]")


@contextmanager
def _flow_session(settings: Settings) -> Iterator[None]:
    """Services up and this process pointed at them; then flows run here until the Prefect API stays gone.

    Prefect's clients would wait many minutes for a server that died. After ``prefect_patience`` seconds without
    an answer the run is given up: its MLflow run closed FAILED, one line said, exit 1. The flow run itself is
    marked Crashed by the server once it is back (the automation of ``io/unresponsive_runs``: no heartbeats).
    """
    from driftloop.io.console_logs import brief_named_errors
    from driftloop.io.prefect_watch import watch_prefect_api

    _start_services(settings)
    _export_env(settings)
    brief_named_errors()
    _ensure_crash_automation(settings)
    with watch_prefect_api(f"{settings.prefect_api}/health", settings.prefect_patience, _give_up(settings)):
        yield


def _ensure_crash_automation(settings: Settings) -> None:
    from driftloop.io.services import start_lock
    from driftloop.io.unresponsive_runs import ensure_crash_automation

    with start_lock(settings.run_dir, settings.service_start_timeout):  # two commands at once would make two
        ensure_crash_automation()


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
REFUSED_EXIT = 3  # `train --fail-if-refused`: the run worked, and its candidate was refused (1 is an error)
ROLLBACK_GRACE_SECONDS = 60.0  # how long a rollout interrupted by a give-up has to roll back
_GIVING_UP = threading.Event()  # set once the watcher gives up: it, not the main thread, ends the process


def _hold_while_giving_up() -> None:
    """Once the main thread was interrupted by a give-up, let the watcher end the process; never exit before it."""
    if _GIVING_UP.is_set():
        threading.Event().wait(ROLLBACK_GRACE_SECONDS + 30)  # the watcher's own bound, and then some


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"driftloop gave up on the flow run (signal {signum})")


def _give_up(settings: Settings) -> Callable[[float], None]:
    """The watch's action when Prefect is gone. Call it in the main thread: it sets the signal that interrupts it.

    SIGUSR1, with a handler of our own: SIGINT may be ignored (a command started by nohup, cron or a non-interactive
    shell's ``&`` inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it).
    """
    signal.signal(signal.SIGUSR1, _interrupt)

    def give_up(seconds: float) -> None:
        from tasks.tracking import close_runs_opened_here

        cause = f"the Prefect server at {settings.prefect_api} stopped answering"
        rollout = sys.modules.get("driftloop.deploy.rollout")  # not imported: no rollout can be under way
        rolled_back = ""
        _GIVING_UP.set()
        if rollout is not None and rollout.UNDERWAY.any():
            # Cut short, a canary would leave traffic split: interrupt it (a real signal to the main thread, which
            # also ends a sleep) so that its own handler rolls back, and give it time to.
            err.print(f"{escape(cause)}: interrupting the rollout under way so that it rolls back", highlight=False)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            done = rollout.UNDERWAY.wait_until_none(ROLLBACK_GRACE_SECONDS)
            rolled_back = (
                " The rollout under way was rolled back."
                if done
                else (
                    f" The rollout under way did not finish rolling back within {ROLLBACK_GRACE_SECONDS:g} s: see "
                    "driftloop status."
                )
            )
        # The MLflow store may be gone too (the same host): its client would retry for minutes, so this is bounded.
        closed_runs: list[str] = []
        closer = threading.Thread(target=close_runs_opened_here, args=(cause, closed_runs), daemon=True)
        closer.start()
        closer.join(timeout=10)
        closed = " Its MLflow run is closed FAILED." if closed_runs else ""
        if closer.is_alive():
            closed += " The MLflow store did not answer within 10 s: its run may still show RUNNING."
        # On its own line: Prefect's log handler may have left one unfinished ("--- Error logging to API ---...").
        err.file.write("\n")
        err.print(
            f"[bold red]error:[/] {escape(cause)} for {seconds:.0f} s (DRIFTLOOP_PREFECT_PATIENCE): the flow run "
            f"cannot record its states, so it is stopped.{rolled_back}{closed} The server marks the flow run "
            "Crashed once it is back (its heartbeats stopped).",
            highlight=False,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # no exit handlers: Prefect's would wait 7 s per queued event for the API that is gone

    return give_up


def _byte_size(value: str) -> str:
    """``auto`` or a size as Dask reads it (64MB, 2GiB, 1e6), checked as the command line is parsed."""
    if value != "auto":
        _bytes(value)
    return value


def _bytes(value: str) -> int | None:
    """``value`` in bytes as Dask reads it, None without Dask (`score` then names the extra that installs it).

    Raises:
        typer.BadParameter: not a size, or not more than 0 bytes.
    """
    try:
        from dask.utils import parse_bytes
    except ImportError:
        return None
    try:
        size = int(parse_bytes(value))
    except ValueError as error:
        raise typer.BadParameter(f"{value!r} is not a size: {error} (e.g. 64MB, 2GiB)") from None
    if size <= 0:
        raise typer.BadParameter(f"{value!r}: a size must be more than 0 bytes")
    return size


# Below this a scoring worker (Python, pandas, pyarrow, onnxruntime: 175 MB as it starts, about 260 MB once it has
# scored its first rows of a small model) has no room left for its blocks of rows. A large graph needs more
# (batch_scoring.require_worker_room, once the version is known).
MIN_WORKER_MEMORY = 512 * 2**20


def _memory_limit(value: str) -> str:
    """``auto``, 0 (no limit), a share of the RAM (0 < x ≤ 1) or a size, as Dask's worker memory limit reads it."""
    _memory_bytes(value)
    return value


def _memory_bytes(value: str) -> int | None:
    """A worker memory limit in bytes as Dask reads ``value``: 0 for none, None for auto (or without Dask).

    Raises:
        typer.BadParameter: not a limit, or one below what a scoring worker needs.
    """
    if value == "auto":
        return None
    try:
        from distributed.system import MEMORY_LIMIT  # the RAM (or cgroup limit) a share is of, as Dask reads it
    except ImportError:  # `score` then names the extra that installs Dask
        return None
    share = 0.0
    try:
        share = float(value)
    except ValueError:
        limit = _bytes(value) or 0
    else:
        if share < 0:
            raise typer.BadParameter(
                f"{value!r}: give auto, 0 (no limit), a share of the RAM (0 < x ≤ 1) or a size (2GB)"
            ) from None
        limit = int(share * MEMORY_LIMIT) if share <= 1 else int(share)
    if 0 < limit < MIN_WORKER_MEMORY:
        shown = f"{limit / 2**20:,.0f} MiB" if limit >= 2**20 else f"{limit:,} bytes"
        bytes_read = " (a number above 1 counts bytes: a share of the RAM is at most 1)" if share > 1 else ""
        raise typer.BadParameter(
            f"{value!r} is {shown}{bytes_read}: a scoring worker needs at least {MIN_WORKER_MEMORY // 2**20} MiB "
            "(its libraries and a small model take about 260 MB of it once it has scored its first rows; the rest "
            "holds its blocks of rows)"
        )
    return limit


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


@app.command()
def train(
    project_model: Annotated[
        str | None,
        typer.Argument(
            metavar="[NAME]",
            help="A model of the project file (driftloop.yaml): its data, schema, estimator and gate; options "
            "given here win",
        ),
    ] = None,
    data: Annotated[str | None, typer.Option(help=DATA_HELP)] = None,
    schema: Annotated[
        Path | None,
        typer.Option(resolve_path=True, help="The snapshot's schema file (YAML)"),
    ] = None,
    query: Annotated[str | None, typer.Option(help=QUERY_HELP)] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="Registered model name [default: DRIFTLOOP_MODEL_NAME; with --schema, the schema's name; else churn]"
        ),
    ] = None,
    estimator: Annotated[
        str | None,
        typer.Option(
            help="Classifiers: logistic_regression (default) | random_forest | gradient_boosting | "
            "hist_gradient_boosting | lightgbm | xgboost (the last two: pip install 'driftloop\\[boosting]'); "
            "regressors: ridge (default) and the same five tree models"
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Your own estimator instead of --estimator: package.module:factory or path/to/models.py:factory, "
            "a function returning an unfitted scikit-learn classifier (or regressor, for a regression target)",
        ),
    ] = None,
    param: Annotated[list[str], typer.Option(help="Estimator parameter KEY=VALUE (repeatable)")] = [],  # noqa: B006
    floor: Annotated[
        list[str],
        typer.Option(
            help="The gate's floor METRIC=VALUE (repeatable; a ceiling for log_loss, rmse, mae; VALUE 'none' drops "
            "the floor). Defaults: binary roc_auc=0.7, accuracy=0.7; multiclass roc_auc_ovr=0.7; regression r2=0.1"
        ),
    ] = [],  # noqa: B006
    min_roc_auc: Annotated[float | None, typer.Option(min=0.0, max=1.0, hidden=True)] = None,
    min_accuracy: Annotated[float | None, typer.Option(min=0.0, max=1.0, hidden=True)] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Allowed drop of the primary metric (ROC AUC, one-vs-rest ROC AUC, R²) vs champion [default: 0.005]"
        ),
    ] = None,
    fail_if_refused: Annotated[
        bool,
        typer.Option(
            help=f"Exit with code {REFUSED_EXIT} when the gate refuses the candidate (for scripts and CI); it is "
            "registered either way"
        ),
    ] = False,
) -> None:
    """Run the training flow: validate, train, gate, export ONNX, register, maybe promote.

    With NAME (or with neither NAME nor --data while a project file exists: its first model), the project file
    says what to train; without a project file, --data and --schema do (default: the bundled churn data).
    """
    if schema is not None and not schema.is_file():  # checked here: typer's own check is a boxed usage error
        raise _fail(f"--schema {schema}: " + ("a directory, not a schema file" if schema.is_dir() else "no such file"))
    settings = get_settings()
    unnamed_default = _project_default(settings) or settings.model_name  # what the next commands are about
    declared = _declared_model(settings, project_model, data, schema)
    floors_from = "--floor"
    if declared is not None:
        if model_name is not None and model_name != declared.name:
            raise _fail(f"model {declared.name!r} of the project file cannot be trained as --model-name {model_name}")
        model_name = declared.name
        where = f"{settings.project_file}: model {declared.name!r}:"
        if project_model is None:
            out.print(f"training model {declared.name!r}, the first of {settings.project_file}")
        if data is None:
            data, query = declared.data, declared.query
            if "://" not in data and not Path(data).exists():
                raise _fail(f"{where} data {data}: no such file or directory")
        if not floor and min_roc_auc is None and min_accuracy is None:
            floors_from = f"{where} floors"
        schema = schema or Path(declared.schema_path)
        if model is None and estimator is None and declared.estimator is not None:
            model, estimator = (declared.estimator, None) if ":" in declared.estimator else (None, declared.estimator)
        tolerance = declared.tolerance if tolerance is None else tolerance
    params = {**(declared.params if declared else {}), **_parse_params(param)}
    # --min-roc-auc and --min-accuracy are the older spelling of two floors; --floor wins where both name one.
    older = {"roc_auc": min_roc_auc, "accuracy": min_accuracy}
    overrides = _parse_floors([f"{name}={value}" for name, value in older.items() if value is not None] + floor)
    if model is not None and estimator is not None:
        raise _fail("--model and --estimator both name the estimator: give one")
    if model is not None and ":" not in model:  # read as a built-in's name, it was called unknown (trial 18)
        raise _fail(f"--model {model!r} names no function: give path/to/models.py:factory or package.module:factory")
    if data is None and query:
        raise _fail("--query needs --data to be a database URL (dialect://user@host/db)")
    source = None if data is None else _source(data, query)
    # After the data's checks: scikit-learn and skl2onnx take 1.5 s to import, which a missing file need not wait for.
    from driftloop.core.pipeline import default_estimator
    from driftloop.io.user_model import canonical_reference

    # Again: a password taken out of --data's URL is a setting now.
    settings = _use_model(model_name, project_default=False)
    dataset_schema, name = _check_training_inputs(settings, source, schema, model or estimator, params)
    task = dataset_schema.task
    estimator = canonical_reference(model) if model else estimator or default_estimator(task)
    floors = _task_floors(task, overrides, declared.floors if declared else None, floors_from)
    tolerance = 0.005 if tolerance is None else tolerance
    _check_tolerance(task, tolerance)
    with _flow_session(settings):
        from flows.train import train_model

        data_path, sql = _flow_data(source)
        outcome = train_model(
            data_path=data_path,
            query=sql,
            schema_path=str(schema) if schema else None,
            model_name=name,
            estimator=estimator,
            params=params or None,
            floors=floors,
            tolerance=tolerance,
        )
    _print_outcome(settings, outcome, named=outcome.model_name != unnamed_default)
    if fail_if_refused and outcome.verdict == "refuse":
        raise typer.Exit(code=REFUSED_EXIT)


def _declared_model(settings: Settings, name: str | None, data: str | None, schema: Path | None) -> ProjectModel | None:
    """The project file's model a `train` run is about: NAME's, or the first when neither NAME nor data is given."""
    if name is None and (data is not None or schema is not None or not settings.project_file.is_file()):
        return None
    from driftloop.io.project import project_for  # here: reading a project costs scikit-learn's import (0.8 s)

    project = project_for(settings)
    if name is None:
        return project.default
    declared = project.model(name)
    if declared is None:
        # The path looked at: DRIFTLOOP_PROJECT_FILE may name a file that is not there (trial 54).
        where = (
            settings.project_file
            if settings.project_file.is_file()
            else f"the default project (no project file at {settings.project_file})"
        )
        raise _fail(f"no model {name!r} in {where}: it declares {', '.join(project.names)}")
    return declared


DATA_HELP = (
    "Snapshot: CSV (.gz), Parquet, a directory of Parquet, or a database's SQLAlchemy URL with --query "
    "(dialect://user@host/db; a password in it is moved to DRIFTLOOP_SQL_PASSWORD and never recorded)"
)
QUERY_HELP = "The SQL selecting the snapshot's rows, when --data is a database URL"


def _source(data: str, query: str | None, argument: str = "--data") -> Source:
    """``--data``/``--query`` as a source, checked; a password in a database URL moves to the settings.

    The flow gets the URL without it, so no flow parameter, tag or log holds it. ``argument`` names the data in
    errors (a positional argument: ``DATA``).
    """
    from driftloop.io.datasets import source_from_text
    from driftloop.io.sql_source import SqlQuery

    source = source_from_text(data, query, argument)
    if isinstance(source, Path):
        source = source.expanduser().resolve()
        if not source.exists():
            raise _fail(f"{argument} {data}: no such file or directory")
        return source
    from sqlalchemy.engine import make_url

    password = make_url(source.url).password
    if password:
        os.environ["DRIFTLOOP_SQL_PASSWORD"] = str(password)
        get_settings.cache_clear()
    return SqlQuery(source.safe_url, source.query)


def _flow_data(source: Source | None) -> tuple[str | None, str | None]:
    """The training flow's ``data_path`` and ``query`` for ``source``."""
    from driftloop.io.sql_source import SqlQuery

    if isinstance(source, SqlQuery):
        return source.safe_url, source.query
    return (None if source is None else str(source)), None


def _parse_floors(pairs: list[str]) -> dict[str, float | None]:
    """Each ``METRIC=VALUE`` in order, the last one winning; ``METRIC=none`` (None) drops the floor."""
    overrides: dict[str, float | None] = {}
    for pair in pairs:
        metric, sep, raw = pair.partition("=")
        metric = metric.strip()
        if not sep or not metric:
            raise _fail(f"--floor expects METRIC=VALUE, got {pair!r}")
        if raw.strip().lower() == "none":
            overrides[metric] = None
            continue
        try:
            overrides[metric] = float(raw)
        except ValueError:
            raise _fail(f"--floor {metric}: {raw!r} is not a number") from None
    return overrides


def _check_tolerance(task: Task, tolerance: float) -> None:
    from driftloop.core.gates import GatePolicy

    try:
        GatePolicy(kind=task.kind, tolerance=tolerance)
    except ValueError as error:
        raise _fail(f"--tolerance: {error}") from None


def _task_floors(
    task: Task,
    overrides: dict[str, float | None],
    declared: dict[str, float] | None = None,
    label: str = "--floor",
) -> dict[str, float] | None:
    """The gate's floors: ``declared`` (a project's), else the task's defaults, with ``overrides`` applied.

    None (the flow's defaults) when there are neither declared floors nor overrides.
    """
    from driftloop.core.gates import GatePolicy

    if not overrides and declared is None:
        return None
    floors = dict(declared) if declared is not None else task.default_floors
    for metric, value in overrides.items():
        if value is None:
            floors.pop(metric, None)
        else:
            floors[metric] = value
    try:
        GatePolicy(floors=floors, kind=task.kind)
    except ValueError as error:
        raise _fail(f"{label}: {error}") from None
    return floors


def _model_name_for(settings: Settings, schema_path: Path, schema: DatasetSchema) -> str:
    """The model a training run registers.

    The name set (--model-name, DRIFTLOOP_MODEL_NAME) wins; otherwise a user's own schema names its model, and the
    settings' own schema (the bundled churn data, by default) keeps the settings' default name.
    """
    if "model_name" in settings.model_fields_set or schema_path == settings.schema_path:
        return settings.model_name
    return schema.model_name


def _registered_as_hint(settings: Settings, schema_name: str) -> str:
    """Under which name ``train`` will register a model of a new schema named ``schema_name`` (_model_name_for)."""
    if "model_name" in settings.model_fields_set and settings.model_name != schema_name:
        return (
            f"(DRIFTLOOP_MODEL_NAME is set: train registers it as {settings.model_name!r}; add --model-name "
            f"{schema_name} to train, serve, drift-check, models, ... to keep it apart)"
        )
    return (
        f"(its model is registered as {schema_name!r}: pass --model-name {schema_name} to serve, drift-check, "
        "models, ...)"
    )


def _check_training_inputs(
    settings: Settings,
    data: Source | None,
    schema: Path | None,
    estimator: str | None,
    params: dict[str, Any],
) -> tuple[DatasetSchema, str]:
    """The schema, the snapshot against it and the estimator, checked before any service starts.

    Returns the schema and the model's name (``_model_name_for``).

    The training flow checks them again (and records a rejected snapshot); this only makes a mistake cost
    seconds, not a Prefect and MLflow start.

    Raises:
        DriftloopError: the first thing wrong, named.
    """
    from driftloop.core.validation import find_problems
    from driftloop.errors import ConfigError, DatasetValidationError
    from driftloop.io.datasets import describe_source, load_schema, read_source
    from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA

    data_path = data or settings.data_path
    schema_path = schema or settings.schema_path
    if schema is None and schema_path == BUNDLED_SCHEMA and data_path != BUNDLED_DATA:
        shown = describe_source(data_path)
        raise ConfigError(
            f"--data {shown} needs its schema (the default one describes the bundled churn data only): make "
            f"one with `driftloop schema infer --data {shown} --target COLUMN --out schema.yaml`, check it, "
            "then pass --schema schema.yaml"
        )
    dataset_schema = load_schema(schema_path)
    model_name = _model_name_for(settings, schema_path, dataset_schema)
    from driftloop.core.pipeline import check_columns, default_estimator
    from driftloop.io.user_model import resolve_estimator

    chosen = estimator or default_estimator(dataset_schema.task)
    check_columns(chosen, resolve_estimator(chosen, params, settings.seed, dataset_schema.task), dataset_schema)
    problems = find_problems(read_source(data_path, secret_text(settings.sql_password)), dataset_schema)
    if problems:
        raise DatasetValidationError(describe_source(data_path), problems)
    if clash := _champion_clash(settings, model_name, dataset_schema):
        bundled = (
            f" (this run would train the bundled churn sample, the default data: give {model_name!r} its "
            "data with --data and --schema, or declare it in driftloop.yaml)"
            if data_path == BUNDLED_DATA
            else ""
        )
        raise ConfigError(f"{clash[1]}{bundled}")
    return dataset_schema, model_name


def _champion_clash(settings: Settings, model_name: str, schema: DatasetSchema) -> tuple[str, str] | None:
    """The champion's version and why a snapshot of ``schema`` cannot be gated against it; None when it can.

    Read only from a local store, without a server (None otherwise), so a mistake is named before anything starts;
    the training flow checks again (``ModelRegistry.comparison_schema``). None when there is no champion.
    """
    store = _local_store(settings)
    if store is None or not store.is_file():
        return None
    from driftloop.errors import RegistryError
    from driftloop.io.registry import ModelRegistry

    registry = ModelRegistry(model_name, settings.tracking_uri)
    champion = registry.champion()
    if champion is None:
        return None
    try:
        registry.comparison_schema(champion, schema)
    except RegistryError as error:
        return str(champion.version), str(error)
    return None


def _print_outcome(settings: Settings, outcome: TrainingOutcome, named: bool = False) -> None:
    """The outcome, and where to look; ``named``: the commands shown need --model-name, as their default is another."""
    from driftloop.core.evaluation import HIGHER_IS_BETTER

    # A refusal says so first: "there is no champion yet" alone read as the reason for a first version's refusal.
    refused = ": refused by the gate (see its line below);" if outcome.verdict == "refuse" else ":"
    headline = (
        f"[bold green]promoted to champion[/] (was {_v(outcome.champion_version)})"
        if outcome.promoted
        else f"[bold yellow]not promoted[/]{refused} champion stays {_v(outcome.champion_version)}"
        if outcome.champion_version
        else f"[bold yellow]not promoted[/]{refused} there is no champion yet"
    )
    out.rule(f"model {outcome.model_name} v{outcome.version}")
    out.print(f"{outcome.model_name} v{outcome.version}: {headline}")
    rows = outcome.metrics.get("rows")
    # The gate may compare other rows too (the champion's own, recent ones): its line below says which.
    out.print(f"on this run's holdout ({rows:,.0f} rows)" if rows else "on this run's holdout", highlight=False)
    table = Table(box=None, show_header=True, header_style="bold")
    for column in ("metric", "candidate", "champion", "change"):
        table.add_column(column)
    for metric in (name for name in outcome.metrics if name in HIGHER_IS_BETTER):
        value = outcome.metrics[metric]
        base = (outcome.champion_metrics or {}).get(metric)
        table.add_row(
            metric, f"{value:.4f}", "—" if base is None else f"{base:.4f}",
            "—" if base is None else _change(value - base, HIGHER_IS_BETTER[metric]),
        )  # fmt: skip
    out.print(table)
    out.print(f"gate     {outcome.verdict}: " + "; ".join(outcome.reasons), highlight=False)
    out.print(f"rule     to pass: {outcome.rule}", highlight=False)  # stated as a condition, met or not
    out.print(f"parity   {outcome.parity}", highlight=False)
    out.print(f"data     sha256 {outcome.data_hash}")
    if outcome.ignored_columns:
        ignored = ", ".join(outcome.ignored_columns)
        out.print(f"ignored  column(s) the schema does not name, not trained on: {ignored}", highlight=False)
    if outcome.shipped:
        out.print(f"shipped  {outcome.shipped}", highlight=False)
    out.print("\n[bold]Where to look[/]")
    out.print(f"  Prefect flow run   {outcome.flow_run_url}")
    out.print(f"  MLflow run         {outcome.mlflow_run_url}")
    out.print(f"  MLflow version     {outcome.mlflow_version_url}")
    from driftloop.io.services import local_specs

    owned = local_specs(settings)
    if owned:
        names = " and ".join(spec.name for spec in owned)
        stay, them = ("stays", "it") if len(owned) == 1 else ("stay", "them")
        out.print(f"  ({names} {stay} up for the next commands; `driftloop down` stops {them})", highlight=False)
    flag = f" --model-name {outcome.model_name}" if named else ""
    out.print(f"  driftloop models{flag} | driftloop history{flag}", highlight=False)


def _change(delta: float, higher_is_better: bool) -> str:
    """A metric's change, and whether that is better for it (lower is better for a loss or an error)."""
    if abs(delta) < 5e-5:  # the same to the 4 decimals shown
        return f"{delta:+.4f} same"
    return f"{delta:+.4f} " + ("better" if (delta > 0) == higher_is_better else "worse")


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _registry(settings: Settings) -> Any:
    from driftloop.io.registry import ModelRegistry

    _require_mlflow_answers(settings)
    _export_env(settings)
    return ModelRegistry(settings.model_name, settings.tracking_uri)


@app.command()
def models(model_name: ModelNameOption = None) -> None:
    """List model versions with their metrics, aliases and lineage."""
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    registry = _registry(settings) if _has_registry(settings) else None
    versions = registry.versions() if registry is not None else []
    if registry is None or not versions:
        from driftloop.io.registry import registered_model_names

        others = (
            [n for n in registered_model_names(settings.tracking_uri) if n != settings.model_name] if registry else []
        )
        hint = f"; registered here: {', '.join(others)} (pass --model-name NAME)" if others else ""
        out.print(f"no versions of model {settings.model_name!r} yet: run `driftloop train`{hint}", highlight=False)
        return
    pin = registry.pinned()
    if pin is not None:
        out.print(
            f"[bold yellow]champion pinned at v{pin.version}[/] by {escape(pin.actor)}: {escape(pin.reason)} "
            f"(since {pin.at:%Y-%m-%d %H:%M}Z; automatic promotions are refused until `driftloop unpin`)",
            highlight=False,
        )
    table = Table(title=f"model {settings.model_name}  ({settings.tracking_uri})", header_style="bold")
    columns = ("version", "aliases", "created", "estimator", "metrics", "gate", "why", "parity", "data", "onnx sha256")
    for column in columns:
        table.add_column(column, overflow="fold" if column == "why" else "ellipsis")
    for v in versions:
        tags = v.tags
        table.add_row(
            v.version,
            ",".join(v.aliases) or "",
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            tags.get(lineage.ESTIMATOR, "?"),
            _headline_metrics(tags),
            tags.get(lineage.GATE, "?"),
            escape(_first_reason(tags.get(lineage.GATE_REASON, ""))),
            tags.get(lineage.PARITY, "?"),
            tags.get(lineage.DATA_HASH, "?")[:12],
            tags.get(lineage.ONNX_SHA256, "?")[:12],
        )
    out.print(table)
    out.print("the gate's rule, every segment and interval: `driftloop.gate_*` tags and decision.md of each run")


def _headline_metrics(tags: dict[str, str]) -> str:
    """The version's primary metric and two more of its task (from its gate policy tag): ``roc_auc 0.84 f1 0.6 ...``.

    On its holdout, or for a retrain that learnt a changed truth, on that truth's holdout rows, which it says.
    """
    import json

    from driftloop.core.task import PRIMARY_METRIC, TASK_METRICS, TaskKind

    try:
        kind = TaskKind(json.loads(tags.get(lineage.GATE_POLICY, "{}")).get("kind", TaskKind.BINARY))
    except (ValueError, AttributeError):
        kind = TaskKind.BINARY
    names = [PRIMARY_METRIC[kind], *(name for name in TASK_METRICS[kind] if name != PRIMARY_METRIC[kind])][:3]
    prefix, where = lineage.METRIC, ""
    if f"{lineage.TRUTH_BASELINE}rows" in tags:  # a retrain held to its recent rows: its whole holdout mixes in
        # the older rows, where a changed truth makes it look broken and other traffic sets another bar
        prefix, where = lineage.TRUTH_BASELINE, f" (its {tags[f'{lineage.TRUTH_BASELINE}rows']} recent labelled rows)"
    shown = [f"{name} {tags[f'{prefix}{name}']}" for name in names if f"{prefix}{name}" in tags]
    return " ".join(shown) + where if shown else "?"


def _first_reason(reason: str, limit: int = 110) -> str:
    """The gate's deciding reason (the first), short enough for a table cell."""
    first = reason.split("; ")[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The model version to make champion")],
    reason: Annotated[str, typer.Option(help="Why: kept in the alias history")],
    model_name: ModelNameOption = None,
) -> None:
    """Move the champion alias to VERSION (refused if its ONNX parity failed; allowed while pinned)."""
    from driftloop.io.provenance import local_actor

    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    _refuse_alias_only_moves(settings, f"driftloop rollout {version}")
    with _promotion_lock(settings):
        move = _registry(settings).promote(version, reason=reason, actor=local_actor("driftloop promote"))
    out.print(f"champion: {_v(move.from_version)} → v{move.to_version} ({escape(move.reason)})", highlight=False)
    payload = {"model": settings.model_name, "from": move.from_version, "to": move.to_version, "reason": reason}
    _emit_if_prefect_is_up(settings, "driftloop.model.promoted", payload)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why: kept in the alias history")], model_name: ModelNameOption = None
) -> None:
    """Move the champion alias back to the previous champion, taken from the history."""
    from driftloop.io.provenance import local_actor

    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    _refuse_alias_only_moves(settings, "driftloop rollout <the previous version> (see driftloop history)")
    with _promotion_lock(settings):
        move = _registry(settings).rollback(reason=reason, actor=local_actor("driftloop rollback"))
    moved = f"{_v(move.from_version)} → v{move.to_version} ({escape(move.reason)})"
    out.print(f"rolled back champion: {moved}", highlight=False)
    payload = {"model": settings.model_name, "from": move.from_version, "to": move.to_version, "reason": reason}
    _emit_if_prefect_is_up(settings, "driftloop.model.rolled_back", payload)


@app.command()
def pin(
    version: Annotated[str, typer.Argument(help="The version to pin as champion (promoted first if it is not)")],
    reason: Annotated[str, typer.Option(help="Why: kept in the alias history")],
    model_name: ModelNameOption = None,
) -> None:
    """Pin the champion at VERSION: automatic promotions are refused (retrains still run) until `unpin`."""
    from driftloop.io.provenance import local_actor

    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    registry = _registry(settings)
    champion = registry.champion()
    if champion is None or str(champion.version) != version:
        _refuse_alias_only_moves(settings, f"driftloop rollout {version}, then driftloop pin {version}")
    with _promotion_lock(settings):
        written = registry.pin(version, reason=reason, actor=local_actor("driftloop pin"))
    for move in written[:-1]:
        out.print(f"champion: {_v(move.from_version)} → v{move.to_version} ({escape(move.reason)})", highlight=False)
        payload = {"model": settings.model_name, "from": move.from_version, "to": move.to_version, "reason": reason}
        _emit_if_prefect_is_up(settings, "driftloop.model.promoted", payload)
    out.print(
        f"champion pinned at v{version} ({escape(reason)}): automatic promotions are refused until `driftloop unpin`",
        highlight=False,
    )


@app.command()
def unpin(
    reason: Annotated[str, typer.Option(help="Why: kept in the alias history")], model_name: ModelNameOption = None
) -> None:
    """Lift the pin: automatic promotions may move the champion again."""
    from driftloop.io.provenance import local_actor

    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    with _promotion_lock(settings):
        move = _registry(settings).unpin(reason=reason, actor=local_actor("driftloop unpin"))
    out.print(
        f"champion unpinned (was pinned at v{move.to_version}; {escape(reason)}): automatic promotions may move "
        "it again",
        highlight=False,
    )


@contextmanager
def _promotion_lock(settings: Settings) -> Iterator[None]:
    """The lock flows take to promote, when a Prefect server answers; without one no flow can be promoting."""
    from driftloop.io.services import is_healthy

    if not is_healthy(f"{settings.prefect_api}/health"):
        yield
        return
    _export_env(settings)
    from driftloop.io.prefect_concurrency import promotion_lock

    # The lock's acquired/released events are still being sent as the command exits; Prefect's events worker
    # then prints "Still processing items: ..." under our one-line answer. They are sent all the same.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    with promotion_lock(settings.model_name):
        yield


def _refuse_alias_only_moves(settings: Settings, instead: str) -> None:
    """With containers the champion is what serves: the alias moves with a rollout, never on its own."""
    if settings.serves_from_containers:
        raise _fail(
            f"DRIFTLOOP_DEPLOY={settings.deploy}: the champion is the version that serves, so it moves only with a "
            f"rollout (which moves it back if the rollout fails): run `{instead}`"
        )


def _emit_if_prefect_is_up(settings: Settings, event: str, payload: dict[str, Any]) -> None:
    """Tell Prefect (automations, alerts) about an alias move made from the command line, when it listens."""
    from driftloop.io.services import is_healthy

    if not is_healthy(f"{settings.prefect_api}/health"):
        out.print(f"(Prefect is not running at {settings.prefect_api}: no {event} event was emitted)")
        return
    from driftloop.io.prefect_events import emit

    emit(event, settings.model_name, payload)


@app.command()
def history(model_name: ModelNameOption = None) -> None:
    """Print the append-only history of the champion alias (moves, pins), then anything wrong with it."""
    from driftloop.core.history import format_history

    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    if not _has_registry(settings):
        out.print(f"no alias moves for model {settings.model_name!r} yet")
        return
    report = _registry(settings).history_report()
    rows = format_history(report.moves)
    if not rows:
        out.print(f"no alias moves for model {settings.model_name!r} yet")
    else:
        table = Table(
            title=f"champion history of {settings.model_name}",
            caption=f"full log: MLflow experiment {lineage.HISTORY_EXPERIMENT}",
            header_style="bold",
        )
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(value) for value in row.values()))
        out.print(table)
    for problem in report.problems:
        out.print(f"[yellow]warning: {escape(problem)}[/]", highlight=False)


@app.command("build-image")
def build_image(
    version: Annotated[str | None, typer.Argument(help="Model version [default: the champion]")] = None,
    model_name: ModelNameOption = None,
) -> None:
    """Build the serving image of VERSION (ONNX model baked in, no training stack) and record it on the version."""
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    _require_version(settings, version)
    _require_docker_engine()
    with _flow_session(settings):
        from flows.ship import build_model_image

        image = build_model_image(version=version)
    built = image.image
    out.print(f"[bold green]built[/] {built.tag}  {built.id[:19]}  {built.size_bytes / 1e6:.0f} MB  "
              f"in {built.seconds:.1f}s (recorded on v{image.version} as driftloop.image_id)")  # fmt: skip


@app.command()
def rollout(
    version: Annotated[str | None, typer.Argument(help="Model version [default: the champion]")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="blue-green | canary [default: DRIFTLOOP_ROLLOUT_STRATEGY]")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Build the image again even if the version has one")] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            help="Why: kept in the decision record and the alias history; required for a version its promotion "
            "gate refused"
        ),
    ] = None,
    model_name: ModelNameOption = None,
) -> None:
    """Put VERSION's serving image into service behind nginx; a failing candidate is rolled back by itself."""
    if not _is_strategy(strategy):
        raise typer.BadParameter(f"{strategy!r}: use blue-green or canary", param_hint="--strategy")
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    _require_version(settings, version)
    if version is not None:  # the flow would refuse it after starting (trial 18); a champion passed both checks
        from driftloop.deploy.rollout import check_admissible

        check_admissible(settings, version, reason)  # its ONNX parity, and its gate's verdict unless a reason
    _require_proxy_image(settings)  # and a Docker engine that answers
    from driftloop.errors import RolloutRolledBack
    from driftloop.io.provenance import local_actor

    try:
        with _flow_session(settings):
            from flows.ship import ship_model

            shipped = ship_model(version=version, strategy=strategy, rebuild=rebuild, reason=reason,
                                 requested_by=local_actor("driftloop rollout"))  # fmt: skip
    except RolloutRolledBack as rolled_back:
        out.print(rolled_back.result.markdown(), highlight=False)
        raise _fail(str(rolled_back)) from None
    out.print(shipped.rollout.markdown(), highlight=False)
    from driftloop.deploy.proxy import read_models

    url = f"http://127.0.0.1:{settings.proxy_port}/models/{settings.model_name}/predict"
    if read_models(settings).default == settings.model_name:
        url += f" (and on the unnamed routes: http://127.0.0.1:{settings.proxy_port}/predict)"
    out.print(f"[bold green]v{shipped.rollout.version} of {settings.model_name} serves[/] at {url}", highlight=False)


def _is_drift_rule(value: str | None) -> TypeGuard[DriftRule | None]:
    from driftloop.core.drift_rule import DRIFT_RULES

    return value is None or value in DRIFT_RULES


def _is_strategy(value: str | None) -> TypeGuard[RolloutStrategy | None]:
    return value is None or value in get_args(RolloutStrategy)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    model_name: ModelNameOption = None,
) -> None:
    """What serves traffic behind nginx: per slot its version, image, weight, container state and health.

    Without --model-name (nor DRIFTLOOP_MODEL_NAME, nor a project file): the proxy's default model.
    """
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    if (
        model_name is None
        and "model_name" not in get_settings().model_fields_set
        and not settings.project_file.is_file()
    ):
        from driftloop.deploy.proxy import read_models

        default = read_models(settings).default
        settings = _use_model(default) if default is not None else settings
    from driftloop.deploy.engine import docker_client
    from driftloop.deploy.slots import Slots
    from driftloop.deploy.status import deployment_status

    client = docker_client()
    try:
        report = deployment_status(settings, Slots(settings, client))
    finally:
        client.close()
    if as_json:
        out.print_json(data=report.as_dict())
        return
    out.print(report.table(), highlight=False)


@app.command()
def up() -> None:
    """Start everything the loop needs: Prefect server, MLflow UI, model server, deployments and a worker.

    Every model of the project file (driftloop.yaml; without one, the settings' model) gets its own train,
    drift-check and retrain deployments, and the one model server serves them all.
    """
    settings = _up(_use_model(None))
    out.print(f"data directory: {settings.home}")
    names = settings.served_model_names
    if settings.deploy == "local":
        follows = ", ".join(repr(name) for name in names)
        out.print(f"model server: {settings.serve_url}/docs (follows the champion alias of {follows})")
        base = settings.serve_url
    else:
        base = f"http://127.0.0.1:{settings.proxy_port}"
        out.print(f"model server: {base} (nginx → each model's slots, as `driftloop status` shows)")
    if len(names) > 1:
        out.print(f"  each model: {base}/models/NAME/predict; {names[0]!r} also on /predict")
    from driftloop.io.project import project_for

    own = [f"{m.name}: {m.drift.cron!r}" for m in project_for(settings).models if m.drift.cron is not None]
    crons = f"cron {settings.drift_cron!r}" + (f"; {', '.join(own)}" if own else "")
    out.print(f"Prefect UI: {settings.prefect_ui}/deployments (drift checks run on {crons})")
    out.print(f"MLflow UI: {settings.mlflow_ui}")


def _up(settings: Settings) -> Settings:
    """Start the services, deploy the project's deployments and start the worker; the settings the server got."""
    from driftloop.io import services
    from driftloop.io.deployments import deploy_project
    from driftloop.io.project import missing_schema_files, project_for
    from driftloop.io.provenance import PROJECT_DIR

    _refuse_unauthenticated_prefect(settings)
    project = project_for(settings)
    if lacking := missing_schema_files(project):  # its train deployment could never run (trial 18)
        where = f"project file {settings.project_file}" if settings.project_file.is_file() else "DRIFTLOOP_SCHEMA_PATH"
        raise _fail(f"{where}: {'; '.join(lacking)}")
    # DRIFTLOOP_SERVE_MODELS' names are served too, though only the project's models get deployments.
    served = project.served_beside(settings.model_name, settings.serve_models)
    settings = settings.model_copy(update={"serve_models": served})

    if not settings.uses_local_prefect:
        out.print(f"using the Prefect server at {settings.prefect_api}")
    if not settings.uses_local_mlflow:
        out.print(f"using the MLflow server at {settings.tracking_uri}")
    if settings.deploy == "local":
        serving = services.served_models(settings.serve_url)
        if serving is not None and serving != settings.served_model_names:
            # The project changed since the server started: it must serve the models declared now.
            stopped = services.stop(services.model_server_spec(settings))
            out.print(
                f"  model-server    served {', '.join(serving)}; "
                + ("restarting it for the project's models" if stopped else "it was not started by this data directory")
            )
    clashing = _champion_beyond_default_data(settings)
    _start_services(settings, with_model_server=settings.deploy == "local")
    _export_env(settings)  # Prefect calls below (alerts) must reach this server, never an ephemeral one
    untrained = frozenset({settings.model_name} if clashing else ())
    deployed, removed = deploy_project(settings, PROJECT_DIR, project, untrained)
    out.print(f"  deployments     {', '.join(deployed)} (pool {settings.work_pool})")
    if clashing:  # its train deployment would train another model's data, and fail after the fit (trial 43)
        out.print(
            f"  [yellow]note[/]            no train deployment for {settings.model_name!r}: with no project file it "
            f"would train the default data, DRIFTLOOP_DATA_PATH ({settings.data_path}), {clashing}. Declare "
            "the model's data and schema in driftloop.yaml to train it from Prefect; its drift checks and retrains "
            "use the data its versions recorded",
            highlight=False,
            soft_wrap=True,
        )
    if removed:  # a model the project no longer declares: its loop stops (trial 18 saw them go without a word)
        out.print(f"  removed         {', '.join(removed)} (not in the project now)", highlight=False)
    _ensure_crash_automation(settings)  # the worker's flow runs send heartbeats too (Settings.process_env)
    if settings.alert_webhook_url:
        from driftloop.io.alerts import install_alerts

        install_alerts(settings.alert_webhook_url)
        out.print(f"  alerts          drift and rollback events → {settings.alert_webhook_url}")
    worker = services.worker_spec(settings, PROJECT_DIR)
    (status,) = services.start_all([worker], settings.service_start_timeout)
    verb = f"started in {status.seconds:.1f}s" if status.started_now else status.note or "already running"
    out.print(f"  {status.name:<15} {status.url}  [green]{verb}[/]")
    return settings


def _champion_beyond_default_data(settings: Settings) -> str | None:
    """Why the model's champion cannot be gated against a version trained on the default data, None when it can.

    Only without a project file, whose models declare their own data; as ``_champion_clash``, from a local store.
    """
    if settings.project_file.is_file():
        return None
    from driftloop.io.datasets import load_schema

    default = load_schema(settings.schema_path)
    if clash := _champion_clash(settings, settings.model_name, default):
        return f"whose schema {default.name!r} its champion v{clash[0]} cannot be compared with"
    return None


@app.command()
def down() -> None:
    """Stop the local services this data directory started (worker, model server, MLflow UI, Prefect)."""
    _down(get_settings())


def _down(settings: Settings) -> None:
    from driftloop.io import services
    from driftloop.io.provenance import PROJECT_DIR

    specs = [services.worker_spec(settings, PROJECT_DIR), *services.local_specs(settings, with_model_server=True)]
    for spec in specs:
        stopped = services.stop(spec)
        out.print(f"  {spec.name:<15} {'stopped' if stopped else 'was not running'}")
    if containers := _routed_containers(settings):
        out.print(f"  {'docker':<15} left running, as they carry the traffic: {' '.join(containers)} "
                  "(docker rm -f NAME… removes them)", highlight=False)  # fmt: skip


def _routed_containers(settings: Settings) -> list[str]:
    """The Docker mode's proxy and the slots it routes to, from this home's routing files.

    Empty when no rollout was made from here, or the files cannot be read. Trial 22: `down` left them running
    without a word.
    """
    from driftloop.deploy.proxy import read_routings
    from driftloop.deploy.slots import slot_container_name
    from driftloop.errors import DeployError

    try:
        routings = read_routings(settings)
    except (DeployError, OSError):
        return []
    slots = [slot_container_name(model, route.slot) for model, routing in routings.items() for route in routing.live()]
    return [settings.proxy_container, *slots] if slots else []


@app.command()
def demo(
    keep_running: Annotated[
        bool, typer.Option(help="Leave the demo's services running afterwards, to explore the UIs")
    ] = False,
) -> None:
    """The whole loop in a few minutes: train, serve, normal then drifted traffic, automatic retrain, swap.

    Runs in its own data directory (<DRIFTLOOP_HOME>/demo) and ports (Prefect 4210, MLflow 5010, server 8010),
    starting from scratch each time. Ctrl-C stops everything it started.
    """
    from driftloop.demo import demo_settings, prepare_home, run_demo

    settings = demo_settings(get_settings())
    out.rule("driftloop demo")
    out.print(f"data directory {settings.home} (recreated); every step below is a real service or flow run")
    prepare_home(settings, _down)
    get_settings.cache_clear()  # flows in this process now read the demo's settings from the environment
    from flows.train import train_model

    started = time.monotonic()
    try:
        report = run_demo(settings, out.print, _up, train_model)
    except BaseException:
        out.print("[bold red]demo interrupted or failed[/]: stopping what it started")
        _down(settings)
        raise
    out.rule("summary")
    table = Table(box=None, header_style="bold")
    for column in ("#", "step", "seconds", "what happened"):
        table.add_column(column)
    for number, step in enumerate(report.steps, 1):
        table.add_row(str(number), step.name, f"{step.seconds:.1f}", step.detail)
    out.print(table)
    if report.loop_latency is not None:
        out.print(f"closed loop: drift detected → v{report.final_version} serving in {report.loop_latency:.1f}s")
        out.print(f"promoted by the gate's rule: {report.retrain_rule}", highlight=False)
    out.print(f"total {time.monotonic() - started:.0f}s")
    for name, link in report.links.items():
        out.print(f"  {name:<22} {link}")
    if keep_running:
        command = Path(sys.argv[0]).resolve() if sys.argv and Path(sys.argv[0]).exists() else "driftloop"
        out.print(f"services keep running; stop them with: DRIFTLOOP_HOME={settings.home} {command} down")
    else:
        _down(settings)


@app.command("drift-check")
def drift_check(
    window_rows: Annotated[
        int | None, typer.Option(min=1, help="Recent predictions to test [default: settings]")
    ] = None,
    min_rows: Annotated[
        int | None, typer.Option(min=1, help="Fewer rows: insufficient data [default: settings]")
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option(
            help="Which share decides: share (Evidently's), weighted (by the features' importance to the model) "
            "or either [default: the project's drift policy, else DRIFTLOOP_DRIFT_RULE]"
        ),
    ] = None,
    model_name: ModelNameOption = None,
) -> None:
    """Run the drift check once: the champion's recent predictions vs its reference profile (and labels)."""
    if not _is_drift_rule(rule):
        raise _fail(f"--rule {rule!r}: choose share, weighted or either")
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    if model_name is None and _has_registry(settings):
        # Only where others are registered: a declared model not trained yet is checked, and says nothing to check.
        _require_mlflow_answers(settings)
        _export_env(settings)
        from driftloop.io.project import load_project
        from driftloop.io.registry import registered_model_names

        others = registered_model_names(settings.tracking_uri)
        declared_here = load_project(settings.project_file).names if settings.project_file.is_file() else ()
        if others and settings.model_name not in declared_here:
            _require_registered(settings, others)
    from driftloop.io.project import project_for

    declared = project_for(settings).model(settings.model_name)
    policy = {} if declared is None else declared.drift_parameters()
    window = window_rows or policy.get("window_rows") or settings.drift_window_rows
    least = min_rows or policy.get("min_rows") or settings.drift_min_rows
    if window < least and window < settings.label_min_rows:
        raise _fail(
            f"a window of {window:,} rows (--window-rows) is below the {least:,} the features' check needs "
            f"(--min-rows) and the {settings.label_min_rows:,} labelled rows the label check needs "
            "(DRIFTLOOP_LABEL_MIN_ROWS): it could never judge; raise the window or lower the minimums"
        )
    standing = policy.get("drift_rule") or settings.drift_rule
    if rule is not None and rule != standing:  # trial 43: the next scheduled check closed this one's episode
        err.print(
            f"[yellow]note:[/] --rule {rule} judges this check only; the scheduled checks judge by {standing} (the "
            "project's drift policy, else DRIFTLOOP_DRIFT_RULE), and the first of them to find no drift closes an "
            "episode this one opens",
            highlight=False,
        )
    with _flow_session(settings):
        from flows.drift import check_drift
        from tasks.drift import REPORT_LEFT_OUT

        outcome = check_drift(
            window_rows=window_rows or policy.get("window_rows"),
            min_rows=min_rows or policy.get("min_rows"),
            drift_share=policy.get("drift_share"),
            drift_rule=rule or policy.get("drift_rule"),
            opens_episode=policy.get("opens_episode"),
        )
    if outcome.version is None:  # no champion: the note says so, under no header of a version "v-" (trial 18)
        out.print(outcome.note, highlight=False)
        return
    from driftloop.core.drift_rule import JUDGED

    out.rule(f"drift check of {outcome.model_name} v{outcome.version}")
    colour = {"drift": "bold red", "no drift": "green"}.get(outcome.verdict, "yellow")
    # The verdict is Evidently's rule on the features alone; the labels and the outputs are judged apart, and any
    # of them can open an episode (the action line says what was done).
    share = f": drifted share {outcome.share:.2f} of the features" if outcome.verdict in JUDGED else ""
    if outcome.weighted_share is not None and share:
        share += f", importance-weighted {outcome.weighted_share:.2f}"
    counted = share
    if outcome.verdict == "insufficient data":
        counted = f" of v{outcome.version}'s predictions (the features' check needs {outcome.min_rows:,})"
    out.print(f"verdict  [{colour}]{outcome.verdict}[/] on {outcome.rows} rows{counted}")
    if outcome.decided_by and share:
        out.print(f"decision {outcome.decided_by}", highlight=False)
    if outcome.drifted_columns:
        out.print(f"drifted  {', '.join(outcome.drifted_columns)}")
    detail = outcome.label_check.removeprefix("label check: ")
    out.print(f"labels   {outcome.concept}" + (f"  ({detail})" if detail else ""), highlight=False)
    if outcome.estimate_detail:
        out.print(
            f"estimate {outcome.estimate}  (label-free, from the model's confidence: {outcome.estimate_detail})",
            highlight=False,
        )
    if outcome.prediction_drift is not None:
        verdict = "drifted" if outcome.prediction_drift else "no drift"
        detail = outcome.prediction_detail
        out.print(f"outputs  {verdict} (the model's predictions vs its predictions at training: {detail})")
    if outcome.target_drift is not None:
        verdict = "drifted" if outcome.target_drift else "no drift"
        out.print(f"targets  {verdict} (the labels that came back vs training: {outcome.target_detail})")
    for index, segment in enumerate(outcome.segments):
        out.print(f"{'segments' if index == 0 else '':8} {segment}", highlight=False)
    if outcome.triggers:
        fired = f"fired: {', '.join(outcome.fired)}" if outcome.fired else "none fired"
        out.print(f"episode  may be opened by {', '.join(outcome.triggers)} ({fired})", highlight=False)
    out.print(f"action   {outcome.note}")
    if outcome.report_file:
        out.print(f"report   {Path(outcome.report_file).as_uri()}", highlight=False, soft_wrap=True)
    elif outcome.report_left_out:
        out.print(f"report   {REPORT_LEFT_OUT}")
    if outcome.report_url:
        out.print(f"MLflow   {outcome.report_url}")


@app.command()
def monitor(
    last: Annotated[int, typer.Option(min=1, help="How many of the newest drift checks to list")] = 20,
    every: Annotated[str, typer.Option(help="Performance windows' length: 30min, 1h, 1D, 7D")] = "1D",
    days: Annotated[float, typer.Option(min=0, help="Performance windows over the predictions of the last N days")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    model_name: ModelNameOption = None,
) -> None:
    """The model's health over time: each drift check's figures, and performance per window as labels arrive."""
    import pandas as pd

    from driftloop.core.check_record import format_checks
    from driftloop.core.performance_windows import format_windows, performance_by_window

    try:
        length = pd.Timedelta(every)
    except (ValueError, TypeError):
        length = None
    if length is None or pd.isna(length) or length <= pd.Timedelta(0):
        raise _fail(
            f"--every {every!r}: write a positive length such as 30min, 1h, 6h, 1D or 7D "
            "(a month or a year is no fixed length: use days)"
        )
    frequency = f"{length.value}ns"  # what pandas' frequencies read as that length, whatever unit it was written in
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    from driftloop.io.check_store import open_check_store
    from driftloop.io.prediction_store import open_prediction_log

    checks = open_check_store(settings.predictions_url)
    try:
        records = checks.read(settings.model_name, last=last)
    finally:
        checks.close()
    log = open_prediction_log(settings.predictions_url)
    try:
        since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days)
        served = log.read_window(settings.model_name, since=since.to_pydatetime(), features=False)
    finally:
        log.close()
    task, calibrations = _task_and_calibrations(settings, sorted(set(served["model_version"])))
    windows = (
        []
        if task is None
        else performance_by_window(
            served, task, calibrations, frequency, settings.label_min_rows, settings.drift_min_rows
        )
    )
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "model": settings.model_name,
                    "checks": [{**vars(r), "label_coverage": r.label_coverage} for r in records],
                    "windows": [{**vars(w), "coverage": w.coverage} for w in windows],
                },
                default=str,
                indent=2,
            )
            + "\n"
        )
        return
    _print_table(f"drift checks of {settings.model_name} (newest last)", format_checks(records),
                 f"no drift check of {settings.model_name!r} recorded yet: run driftloop drift-check")  # fmt: skip
    caption = (
        f"windows of {every} by serving time, last {days:g} days; a window's realized value fills in as labels come"
    )
    _print_table(f"performance of {settings.model_name} by window", format_windows(windows),
                 f"no predictions of {settings.model_name!r} served in the last {days:g} days", caption)  # fmt: skip


def _champion_task(settings: Settings) -> Any:
    """The champion's task; None with no champion yet."""
    task, _ = _task_and_calibrations(settings, [])
    return task


def _task_and_calibrations(settings: Settings, versions: list[str]) -> tuple[Any, dict[str, Any]]:
    """The champion's task, and each version's calibration (its rows' estimate); (None, {}) with no champion yet."""
    if not _has_registry(settings):
        return None, {}
    from driftloop.io.reference import download_profile

    registry = _registry(settings)
    champion = registry.champion()
    if champion is None:
        return None, {}
    task = registry.task_of(str(champion.version), dict(champion.tags))
    calibrations = {}
    for version in versions:
        reference = dict(registry.get_version(version).tags).get(f"{lineage.PREFIX}reference_uri")
        calibrations[version] = download_profile(settings.tracking_uri, reference).calibration if reference else None
    return task, calibrations


def _print_table(title: str, rows: list[dict[str, str]], empty: str, caption: str | None = None) -> None:
    if not rows:
        out.print(empty, highlight=False)
        return
    table = Table(title=title, caption=caption, header_style="bold")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(value) for value in row.values()))
    out.print(table)


@app.command()
def score(
    data: Annotated[
        str,
        typer.Argument(
            help="The rows to score: a CSV or Parquet file, a directory of Parquet, or a database URL with --query"
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the scored Parquet files (rows set aside: _rejected/)")
    ],
    version: Annotated[str | None, typer.Option(help="Model version [default: the champion]")] = None,
    key: Annotated[
        list[str], typer.Option("--key", help="An input column to keep beside each prediction (repeatable)")
    ] = [],  # noqa: B006
    query: Annotated[str | None, typer.Option(help="The SQL selecting the rows, when DATA is a database URL")] = None,
    dask_scheduler: Annotated[
        str | None,
        typer.Option(
            help="A Dask scheduler to run on (tcp://host:8786) [default: DRIFTLOOP_DASK_SCHEDULER, else a "
            "local cluster]"
        ),
    ] = None,  # fmt: skip
    workers: Annotated[int, typer.Option(min=1, help="Worker processes of the local cluster")] = 2,
    memory_limit: Annotated[
        str,
        typer.Option(
            help="Each local worker's memory limit (Dask's: 2GB, a share of the RAM such as 0.4, 0 for none, auto)",
            callback=_memory_limit,
        ),
    ] = "auto",
    blocksize: Annotated[
        str,
        typer.Option(
            help="A CSV is read in blocks of at most this size (Parquet: by row group); auto: at most 64MB, small "
            "enough for a worker's memory limit and for two blocks per worker",
            callback=_byte_size,
        ),
    ] = "auto",
    batch_rows: Annotated[
        int, typer.Option(min=100, help="Rows read and scored at a time: of a Parquet row group, of a query")
    ] = 50_000,
    log_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of scored rows logged for the drift check [default: DRIFTLOOP_SCORE_LOG_FRACTION]",
        ),
    ] = None,  # fmt: skip
    force: Annotated[
        bool,
        typer.Option(help="Write into --out even if it holds files; an earlier run's answers there are replaced"),
    ] = False,
    model_name: ModelNameOption = None,
) -> None:
    """Score a table with a model version's ONNX graph on Dask, writing Parquet; bad rows are set aside."""
    settings = _use_model(model_name)
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file: give a directory for the scored Parquet files")
    if out.exists() and any(out.iterdir()) and not force:
        raise _fail(f"--out {out} holds files already; choose an empty directory or pass --force")
    _require_known_model(settings, model_name)
    where = _source(data, query, "DATA")  # a file is checked here; a database is opened only after the version
    remote = dask_scheduler or settings.dask_scheduler  # its workers' memory is not known here
    if remote:
        from driftloop.io.dask_scheduler import require_scheduler

        require_scheduler(remote)  # before the registry's 3 s: a wrong address is the likelier mistake
    else:
        from driftloop.io.worker_template import start_worker_template

        start_worker_template()  # imports what the workers run, beside this process reading the registry
    _require_version(settings, version)
    from driftloop.core.schema import DatasetSchema
    from driftloop.io.batch_scoring import (
        load_scoring_model,
        open_scoring_input,
        require_columns,
        require_worker_room,
        worker_memory_bytes,
    )
    from driftloop.io.partition_scoring import LogSampling
    from driftloop.io.sql_source import SqlQuery

    data = where.describe() if isinstance(where, SqlQuery) else str(where)
    model = load_scoring_model(_registry(settings), version)
    if note := model.gate_note():
        _note(note)
    limit = _memory_bytes(memory_limit)
    if not remote:
        require_worker_room(limit, workers, model)
    memory = None if remote else worker_memory_bytes(limit, workers)
    source = open_scoring_input(where, secret_text(get_settings().sql_password), blocksize, batch_rows, workers, memory,
                                len(model.onnx_bytes))  # fmt: skip
    schema = DatasetSchema.model_validate_json(model.schema_json)
    key = require_columns(source, data, key, schema)  # every check before any worker starts
    fraction = settings.score_log_fraction if log_fraction is None else log_fraction
    sampling = LogSampling(settings.predictions_url if settings.prediction_log else None, fraction)
    if force and out.is_dir():  # every check passed: the earlier answers go only now
        from driftloop.io.batch_scoring import clear_earlier_answers

        if replaced := clear_earlier_answers(out):
            err.print(f"replaced {replaced:,} answer file(s) of an earlier run in {out}", highlight=False)
    _run_scoring(settings, source, model, key, out, sampling, data, dask_scheduler, workers, memory_limit, schema,
                 batch_rows)  # fmt: skip


def _run_scoring(
    settings: Settings, source: Any, model: Any, keys: list[str], destination: Path, sampling: Any, data: str,
    scheduler: str | None, workers: int, memory_limit: str, schema: Any, batch_rows: int,
) -> None:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from driftloop.io.batch_scoring import dask_client, score_with_dask
    from driftloop.io.partition_scoring import ANSWER_FILES

    address = scheduler or settings.dask_scheduler
    where = f"the Dask scheduler at {address}" if address else f"a local Dask cluster of {workers} worker process(es)"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("tasks, {task.fields[rows]:,} rows"), TimeElapsedColumn())  # fmt: skip
    try:
        with (
            dask_client(address, workers, memory_limit, worker_wait=settings.dask_worker_wait, waiting=_note) as client,
            Progress(*columns, console=err) as bar,
        ):
            task = bar.add_task(f"scoring with v{model.version}", total=source.tasks, rows=0)

            def advance(result: Any, total: int | None) -> None:
                bar.update(task, advance=1, rows=bar.tasks[task].fields["rows"] + result.rows)

            done = score_with_dask(client, source, model, keys, destination, sampling, advance, schema=schema,
                                   batch_rows=batch_rows)  # fmt: skip
    except KeyboardInterrupt:
        raise Interrupted(
            f"answers of the tasks that had finished may be in {destination} (score again with --force); nothing "
            "this run scored stays in the prediction log"
        ) from None
    rate = done.rows / done.seconds if done.seconds > 0 else 0.0
    answers = f"{done.scored:,} → {destination}/{ANSWER_FILES}" if done.scored else "none scored, no file written"
    out.print(
        f"{'scored' if done.scored else 'read':<8} {done.rows:,} rows of {data} with {model.name} v{model.version} in "
        f"{done.seconds:.1f} s ({rate:,.0f} rows/s) on {where}: {answers}",
        highlight=False,
        soft_wrap=True,
    )
    if done.rejected:
        out.print(
            f"rejected {_rows(done.rejected)} the model cannot score → {destination}/_rejected/ (column "
            f"driftloop_reason; e.g. {'; '.join(done.first_reasons)})",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"logged   {_rows(done.logged)} for the drift check", highlight=False)
    done.require_scored(destination)


def _note(text: str) -> None:
    err.print(f"[yellow]note:[/] {text}", highlight=False)


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


labels_app = typer.Typer(
    help="Labels that arrive late: join them to the predictions they belong to.", no_args_is_help=True
)
app.add_typer(labels_app, name="labels")


@labels_app.command("import")
def labels_import(
    data: Annotated[
        str,
        typer.Argument(
            help="The labels: a CSV or Parquet file, a directory of Parquet, or a database URL with --query"
        ),
    ],
    label_column: Annotated[str, typer.Option(help="The column holding the true label")],
    id_column: Annotated[
        str, typer.Option(help="The column of request ids: the server's request_id or the X-Request-ID the client sent")
    ] = "request_id",
    row_column: Annotated[
        str | None, typer.Option(help="The column of row indexes within a request [default: every id is row 0]")
    ] = None,
    query: Annotated[str | None, typer.Option(help="The SQL selecting the labels, when DATA is a database URL")] = None,
    model_name: ModelNameOption = None,
) -> None:
    """Join late labels to the logged predictions (by request id and row); checks and retrains then use them."""
    settings = _use_model(model_name)
    _require_known_model(settings, model_name)
    from driftloop.io.datasets import read_source
    from driftloop.io.label_import import import_labels, label_texts, read_label_table
    from driftloop.io.prediction_store import open_prediction_log
    from driftloop.io.sql_source import is_database_url

    if query is None and not is_database_url(data) and not Path(data).expanduser().exists():
        raise _fail(f"labels file {data}: no such file or directory")
    frame = read_source(_source(data, query, "DATA"), secret_text(settings.sql_password), "label table")
    table = read_label_table(frame, id_column, label_column, row_column)
    task = _champion_task(settings)
    if task is None:
        raise _fail(f"model {settings.model_name!r} has no champion yet: there are no predictions to label")
    labels = label_texts(table["label"], task, label_column)
    log = open_prediction_log(settings.predictions_url)
    try:
        done = import_labels(log, settings.model_name, table["id"].tolist(), table["row"].tolist(), labels)
    finally:
        log.close()
    out.print(
        f"{done.rows:,} row(s): {done.accepted:,} label(s) joined, {done.already_labelled:,} already labelled "
        f"(kept), {done.missing:,} without a label, {done.unmatched:,} matching no prediction of "
        f"{settings.model_name!r}"
        + (f" (e.g. {', '.join(done.unmatched_examples)})" if done.unmatched else "")
        + (
            f", {done.repeated:,} repeating an earlier row of the table (its first label kept)" if done.repeated else ""
        ),
        highlight=False,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: settings]")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port [default: settings]")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request (costs throughput)")] = False,
    model_name: Annotated[
        list[str],
        typer.Option(
            "--model-name",
            help="A registered model to serve (repeatable: one server serves them all, the first on the unnamed "
            "routes, each on /models/NAME/...) [default: DRIFTLOOP_MODEL_NAME and DRIFTLOOP_SERVE_MODELS]",
        ),
    ] = [],  # noqa: B006
) -> None:
    """Serve the champion model(s) (or DRIFTLOOP_MODEL_DIR) over HTTP; each follows its alias as it moves."""
    settings = _use_model(model_name[0] if model_name else None)
    updates: dict[str, Any] = {k: v for k, v in {"serve_host": host, "serve_port": port}.items() if v is not None}
    if model_name:
        bad = [name for name in model_name if not lineage.MODEL_NAME.fullmatch(name)]
        if bad:
            raise _fail(f"--model-name {bad[0]!r}: a model name has only letters, digits, '_', '.' and '-'")
        updates["serve_models"] = tuple(model_name[1:])
        if settings.model_source == "registry":  # a name given must be one this installation knows
            for name in model_name:
                _require_known_model(settings, name)
    settings = settings.model_copy(update=updates)
    _require_free_address(settings.serve_host, settings.serve_port)
    _export_env(settings)
    from driftloop.serving.__main__ import serve as run_server

    served = ", ".join(repr(name) for name in settings.served_model_names)
    several = len(settings.served_model_names) > 1
    routes = f"; each on {settings.serve_url}/models/NAME/predict" if several else ""
    docs = f"(docs: {settings.serve_url}/docs)"
    out.print(f"serving model{'s' if several else ''} {served} on {settings.serve_url}{routes} {docs}")
    run_server(settings, access_log=access_log)


schema_app = typer.Typer(help="Write a schema for your own data.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@schema_app.command("infer")
def schema_infer(
    data: Annotated[str, typer.Option(help=DATA_HELP)],
    target: Annotated[str, typer.Option(help="The column to predict")],
    output: Annotated[Path | None, typer.Option("--out", help="Write the schema here [default: print it]")] = None,
    name: Annotated[str | None, typer.Option(help="The schema's name [default: the file's name]")] = None,
    max_categories: Annotated[
        int,
        typer.Option(
            min=1,
            help="A text column with more distinct values learns its categories from the training snapshot "
            "(categories: learn, this many kept, the rest in an other bucket); one with a value per row is left out",
        ),
    ] = 100,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists")] = False,
    query: Annotated[str | None, typer.Option(help=QUERY_HELP)] = None,
    task: Annotated[
        str | None, typer.Option(help="binary | multiclass | regression [default: guessed from the target]")
    ] = None,
) -> None:
    """Infer a schema from a snapshot's values: a draft to read and edit, then train with --schema."""
    from driftloop.core.schema_inference import infer_schema
    from driftloop.core.task import TaskKind

    if task is not None and task not in TaskKind.__members__.values():
        raise _fail(f"--task {task!r}: choose binary, multiclass or regression")
    from driftloop.io.datasets import read_source, schema_yaml

    if output is not None:
        _require_writable_file(output, force)
    source = _source(data, query)
    frame = read_source(source, secret_text(get_settings().sql_password))
    stem = (source.name.split(".")[0] if isinstance(source, Path) else "") or "dataset"
    inferred = infer_schema(
        frame, target, name or stem, max_categories=max_categories, task=TaskKind(task) if task else None
    )
    text = schema_yaml(inferred.schema, inferred.notes)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        kinds = [f.kind.value for f in inferred.schema.features]
        counted = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
        out.print(
            f"wrote {output}: {len(kinds)} features ({counted}), target {target!r} ({inferred.schema.target.kind})"
        )
    for note in inferred.notes:
        _note(note)
    if output is not None:
        shown = str(source) if isinstance(source, Path) else f"'{_flow_data(source)[0]}' --query '...'"
        name = inferred.schema.model_name
        err.print(escape(f"check it, then: driftloop train --data {shown} --schema {output}"), highlight=False)
        err.print(escape(_registered_as_hint(get_settings(), name)), highlight=False)


def _require_writable_file(path: Path, force: bool) -> None:
    """--out names a file this command may write: its directory exists, and it is no directory, nor kept."""
    if path.is_dir():
        raise _fail(f"--out {path} is a directory: give the file to write, e.g. {path / 'schema.yaml'}")
    if not path.parent.is_dir():
        raise _fail(f"--out {path}: no directory {path.parent} to write it in (create it first)")
    if path.exists() and not force:
        raise _fail(f"{path} exists; pass --force to overwrite it")


def _mlflow_refusal(error: Exception) -> str | None:
    """An MLflow server's 401 or 403 (its basic-auth app), said as what to do about it; None for anything else."""
    status_of = getattr(error, "get_http_status_code", None)  # MlflowException's; not imported on this path
    status = status_of() if callable(status_of) else None
    if status not in (401, 403):
        return None
    uri = get_settings().tracking_uri
    if status == 401:
        return (
            f"{uri} wants an account: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(a wrong password gets this too; the stack's accounts: deployments/README.md, Security)"
        )
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "?")
    return (
        f"{uri} refused: the account {user!r} has no permission for this (it changes the registry: the loop's "
        "account can; deployments/README.md, Security)"
    )


def main() -> None:
    """Console-script entry point: run the command, then end the process without tearing the interpreter down."""
    try:
        _main()
    except SystemExit as stop:
        _exit_promptly(stop.code)
    _exit_promptly(0)


def _exit_promptly(code: int | str | None) -> None:
    """End the process as Python's own exit does, less the teardown of every imported module.

    That teardown is long once MLflow is imported: about 0.4 s for MLflow alone, 0.9 s after a `driftloop score`
    (2 cores), every run, after the command's last line. The exit handlers still run (logging's flush, temporary
    directories, multiprocessing's clean-up, Prefect's and MLflow's own); a thread of the command that is not a
    daemon is waited for as usual, by a normal exit.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if any(t.is_alive() for t in others):
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("text") prints it and exits 1
        sys.stderr.write(f"{code}\n")
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe or stream: nothing left to write to
            stream.flush()
    os._exit(code or 0)


def _main() -> None:
    """The command, with driftloop's errors as one clear line and exit code 1."""
    # MLflow's download progress bars would land in the terminal above the CLI's own lines (the pre-checks read
    # a champion's schema); the services and flow runs get the same setting from Settings.process_env.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        try:
            _run_app()
        finally:
            _hold_while_giving_up()
    except Interrupted as stopped:
        err.print(f"interrupted: {escape(str(stopped))}", highlight=False)
        sys.exit(INTERRUPTED_EXIT)
    except DriftloopError as error:
        if _show_tracebacks:
            err.print_exception()
        err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        sys.exit(1)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        err.print(
            f"[bold red]error:[/] invalid driftloop setting (DRIFTLOOP_* environment): {problems}", highlight=False
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(INTERRUPTED_EXIT)
    except Exception as error:  # noqa: BLE001 (anything else still ends as one line; --debug shows where)
        if _show_tracebacks:
            err.print_exception()
        err.print(f"[bold red]error:[/] {escape(_describe_unexpected(error, _show_tracebacks))}", highlight=False)
        sys.exit(1)


def _run_app() -> None:
    """The typer app, a usage mistake (a missing argument, a bad option value) as one ``error:`` line, exit code 2.

    typer's own display is a usage line, a hint and a framed box.
    """
    try:
        from typer._click import exceptions as click  # Click, as typer vendors it
    except ImportError:  # a typer that still depends on Click
        from click import exceptions as click  # type: ignore[no-redef]
    ClickException, UsageError = click.ClickException, click.UsageError  # noqa: N806
    # Click < 8.2 has no such error: it prints the help and exits 0 itself.
    no_args: type[Exception] | tuple[()] = getattr(click, "NoArgsIsHelpError", ())
    try:
        code = app(standalone_mode=False)
    except no_args:  # the help is printed already, as without standalone mode
        sys.exit(2)
    except UsageError as error:
        hint = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
        err.print(f"[bold red]error:[/] {escape(error.format_message())}{hint}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except ClickException as error:
        err.print(f"[bold red]error:[/] {escape(error.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    if code == INTERRUPTED_EXIT:  # typer's answer to Ctrl-C in a command, which it otherwise ends in silence
        err.print("interrupted")
    if isinstance(code, int) and code != 0:  # typer.Exit(code), as typer returns it without standalone mode
        sys.exit(code)


def _describe_unexpected(error: Exception, traceback_shown: bool = False) -> str:
    """One line for an error driftloop did not phrase itself: what failed, on which file, and where to look.

    ``traceback_shown``: --debug printed the traceback above it, so the line does not ask for it again.
    """
    refusal = _mlflow_refusal(error)
    if refusal is not None:
        return refusal
    if isinstance(error, OSError):
        target = f" {error.filename}" if error.filename else ""
        return f"cannot use{target}: {error.strerror or error} (check the data directory, DRIFTLOOP_HOME, and the disk)"
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 300:
        text = text[:299] + "…"
    return f"{type(error).__name__}: {text}" + ("" if traceback_shown else " (run with --debug for the traceback)")
