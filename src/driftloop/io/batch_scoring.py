"""Batch scoring on Dask, the client's side: a version's graph, the input cut into tasks, the cluster.

Each task (``partition_scoring``, run by a worker) validates, scores and writes its rows, so no partition travels
back to the client and inputs larger than memory stream through. A query's rows are read by the client through a
server-side cursor and sent to the workers chunk by chunk, a few in flight. Rows the model cannot score go to
``_rejected/`` with their reason; a seeded sample of the scored rows goes to the prediction log, so the drift check
sees batch traffic too.

Dask is the ``scale`` extra: imported by the functions that need it, not by this module.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy.exc import SQLAlchemyError

from driftloop.core import lineage
from driftloop.core.csv_blocks import (
    GRAPH_MEMORY_FACTOR,
    MB,
    WORKER_LEAST,
    at_most,
    csv_block_bytes,
    least_worker_memory,
)
from driftloop.core.schema import DatasetSchema
from driftloop.core.scoring import REASON_COLUMN, require_input_columns
from driftloop.errors import ConfigError, DatasetError, DriftloopError, RegistryError, ServiceError
from driftloop.io.bundle import find_model_file
from driftloop.io.dask_scheduler import NO_DASK, SCHEDULER_ANSWER_SECONDS, require_scheduler, require_scoring_cluster
from driftloop.io.datasets import (
    PARQUET_SUFFIXES,
    csv_first_lines,
    not_utf8_message,
    parquet_parts,
    refuse_repeated_columns,
)
from driftloop.io.partition_scoring import (
    ANSWER_FILES,
    REJECTED_DIR,
    LogSampling,
    ParquetPiece,
    PartitionScored,
    ScoringModel,
    UnreadablePart,
    score_csv_block,
    score_partition,
    score_piece,
    unseen_paths,
)
from driftloop.io.prediction_store import open_prediction_log, sqlite_file
from driftloop.io.registry import ModelRegistry
from driftloop.io.sql_source import SqlQuery, read_sql_chunks
from driftloop.io.worker_template import SCORING_WORKER_MODULE, start_worker_template

if TYPE_CHECKING:
    from distributed import Client, Future


AUTO = "auto"  # a CSV's block size chosen for the workers (core.csv_blocks), a worker's memory as Dask's
# A failed run deletes the rows it logged from its start on, less this: a remote worker's clock may be behind.
CLOCK_SKEW = timedelta(hours=1)
IN_FLIGHT_PATIENCE_SECONDS = 300  # how long a failed run waits for its tasks in flight to end

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def load_scoring_model(registry: ModelRegistry, version: str | None) -> ScoringModel:
    """A version's (default: the champion's) serving ONNX graph, schema and gate refusal, read once for all workers.

    Raises:
        RegistryError: There is no champion and no version was named, the version does not exist, or its ONNX
            export failed the parity check.
    """
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise RegistryError(f"model {registry.model_name!r} has no champion yet: train one, or name a version")
        version = str(champion.version)
    tags = registry.get_version(version).tags
    refusal = lineage.parity_refusal(tags, registry.model_name, version, "score")
    if refusal is not None:
        raise RegistryError(refusal)
    with tempfile.TemporaryDirectory(prefix="driftloop-score-") as tmp:
        directory = registry.download_model_dir(version, Path(tmp))
        try:
            graph = find_model_file(directory, lineage.SERVING_ONNX_FILE)
        except DriftloopError:
            graph = find_model_file(directory, lineage.ONNX_FILE)
        schema = find_model_file(directory, lineage.SCHEMA_FILE).read_text()
        return ScoringModel(registry.model_name, version, graph.read_bytes(), schema, lineage.refused_by_gate(tags))


@dataclass(frozen=True)
class BatchScored:
    partitions: int
    rows: int
    scored: int
    rejected: int
    logged: int
    seconds: float
    first_reasons: tuple[str, ...]

    def require_scored(self, out: Path) -> None:
        """Raise when rows were read and none could be scored: a run that set every row aside failed.

        Raises:
            DatasetError: naming the first reasons and where the rows went.
        """
        if self.rows and not self.scored:
            raise DatasetError(
                f"none of the {self.rows:,} rows could be scored (e.g. {'; '.join(self.first_reasons)}); each is in "
                f"{out / REJECTED_DIR}/ with its reason (column {REASON_COLUMN})"
            )


@dataclass
class ScoringInput:
    """The input, cut into tasks: Parquet row groups, a CSV's blocks, or a query's chunks.

    A Parquet task reads its row group in batches; a query's rows are streamed by the client, one task per chunk,
    so their number is known only at the end.
    """

    columns: list[str]  # the columns every part of the input has
    pieces: list[ParquetPiece]
    csv: Any = None  # a Dask DataFrame of the CSV's blocks, when the input is a CSV
    chunks: Iterator[pd.DataFrame] | None = None  # a query's rows, when the input is SQL
    lacking: dict[str, list[str]] = field(default_factory=dict)  # a Parquet file → columns other files have
    compressed: bool = False  # a compressed CSV: one block, read whole
    csv_path: Path | None = None  # the CSV's file, when the input is a CSV

    def named(self, data: str, wanted: Sequence[str]) -> str:
        """``data`` as an error about its columns names it: with the files that lack ``wanted`` columns others have."""
        files = [(name, [c for c in columns if c in wanted]) for name, columns in self.lacking.items()]
        files = [(name, columns) for name, columns in files if columns]
        if not files:
            return data
        shown = "; ".join(f"{name} lacks {', '.join(columns)}" for name, columns in files[:3])
        more = f"; {len(files) - 3} more file(s)" if len(files) > 3 else ""
        return f"{data} ({shown}{more})"

    @property
    def tasks(self) -> int | None:
        if self.chunks is not None:
            return None
        return len(self.pieces) if self.csv is None else int(self.csv.npartitions)


def query_input(source: SqlQuery, password: str | None, chunk_rows: int = 50_000) -> ScoringInput:
    """A query's rows as scoring input, read ``chunk_rows`` at a time (the first chunk now, for its columns).

    Raises:
        DatasetError: The database cannot be reached, the query fails or returns no rows.
    """
    chunks = read_sql_chunks(source, password, chunk_rows)
    first = next(chunks)  # read_sql_chunks raises rather than end empty
    return ScoringInput([str(c) for c in first.columns], [], chunks=itertools.chain([first], chunks))


def open_scoring_input(
    source: Path | SqlQuery,
    password: str | None,
    blocksize: str = AUTO,
    batch_rows: int = 50_000,
    workers: int = 2,
    worker_memory: int | None = None,
    graph_bytes: int = 0,
) -> ScoringInput:
    """A file or directory (``scoring_input``) or a database query (``query_input``) as scoring input."""
    if isinstance(source, SqlQuery):
        return query_input(source, password, batch_rows)
    return scoring_input(source, blocksize, workers, worker_memory, graph_bytes)


def worker_memory_bytes(limit: int | None, workers: int) -> int:
    """A local worker's memory: ``limit`` bytes, or without one (None: auto, 0: none) the RAM shared by all.

    Raises:
        ConfigError: Dask is not installed.
    """
    try:
        from distributed.system import MEMORY_LIMIT  # the RAM, or the cgroup's limit
    except ImportError:
        raise ConfigError(NO_DASK) from None
    return limit or int(MEMORY_LIMIT) // max(workers, 1)


def require_worker_room(limit: int | None, workers: int, model: ScoringModel) -> None:
    """Refuse, before any worker starts, local workers too small for the model and one block of rows.

    ``limit``: each worker's, as for ``worker_memory_bytes``; 0 (none): Dask stops no worker, nothing to refuse.

    Raises:
        ConfigError: A worker's memory is below ``core.csv_blocks.least_worker_memory`` for the version's graph.
    """
    if limit == 0:
        return
    memory = worker_memory_bytes(limit, workers)
    graph = len(model.onnx_bytes)
    least = least_worker_memory(graph)
    if memory >= least:
        return
    fewer = "" if limit else f", or run fewer than {workers} workers (without a limit they share the RAM)"
    raise ConfigError(
        f"a scoring worker's {memory / MB:,.0f} MiB cannot hold {model.name} v{model.version}: its {graph / MB:,.1f} "
        f"MB ONNX graph takes about {GRAPH_MEMORY_FACTOR * graph / MB:,.0f} MiB in a worker, beside about "
        f"{WORKER_LEAST // MB} MiB of libraries and a block of rows: give each worker at least "
        f"{-(-least // MB):,} MiB (--memory-limit){fewer}"
    )


def scoring_input(
    source: Path, blocksize: str, workers: int = 2, worker_memory: int | None = None, graph_bytes: int = 0
) -> ScoringInput:
    """The input's columns and tasks.

    A CSV is read by Dask in blocks of ``blocksize`` (``auto``: ``core.csv_blocks.csv_block_bytes`` for ``workers``
    of ``worker_memory`` bytes, None if unknown, beside a model of a ``graph_bytes`` ONNX graph; a compressed CSV,
    which cannot be cut, is one block); a Parquet
    file or a directory of them (files under a name starting with ``_`` or ``.`` skipped, as Parquet readers do)
    is cut into row groups (``io.datasets.parquet_parts`` says which files of a directory are its parts).

    Raises:
        ConfigError: The input is a CSV and Dask is not installed.
        DatasetError: The input does not exist, is not CSV or Parquet, or a directory holds no Parquet file.
    """
    if not source.exists():
        raise DatasetError(f"input {source} does not exist")
    if source.is_dir() or source.suffix.lower() in PARQUET_SUFFIXES:
        files = parquet_parts(source, "input") if source.is_dir() else [source]
        metadata = {f: _parquet_metadata(f) for f in files}
        if not any(meta.num_rows for meta in metadata.values()):
            raise DatasetError(f"input {source} has no row to score")
        pieces = [ParquetPiece(str(f), g) for f in files for g in range(metadata[f].num_row_groups)]
        names = {f: [str(name) for name in meta.schema.to_arrow_schema().names] for f, meta in metadata.items()}
        for file, columns in names.items():
            refuse_repeated_columns(f"input {file}", columns)
        everywhere = set.intersection(*(set(n) for n in names.values()))
        anywhere = list(dict.fromkeys(c for n in names.values() for c in n))
        lacking = {
            _relative(f, source): [c for c in anywhere if c not in names[f]]
            for f in files
            if set(names[f]) != set(anywhere)
        }
        return ScoringInput([c for c in names[files[0]] if c in everywhere], pieces, lacking=lacking)
    if ".csv" not in [s.lower() for s in source.suffixes]:
        raise DatasetError(f"input {source}: score reads CSV, Parquet or a directory of Parquet files")
    if source.stat().st_size == 0:
        raise DatasetError(f"input {source} is empty: not even a header line")
    _require_csv_rows(source)
    block: int | None = None  # compressed: Dask reads it whole, and warns if given a size
    if source.suffixes[-1].lower() == ".csv":
        size = source.stat().st_size
        wanted = (
            csv_block_bytes(size, workers, worker_memory, graph_bytes) if blocksize == AUTO else _dask_bytes(blocksize)
        )
        block = at_most(size, wanted)
    try:
        frame = _dask_dataframe().read_csv(str(source), blocksize=block, dtype=object, keep_default_na=True)
    except pd.errors.ParserError as error:  # in the first rows, which Dask reads to learn the columns
        raise _unreadable_csv_line(error, 0, None) from None
    except UnicodeDecodeError as error:  # the same
        raise _not_utf8_csv(source, error, None) from None
    return ScoringInput([str(c) for c in frame.columns], [], frame, compressed=block is None, csv_path=source)


def _require_csv_rows(source: Path) -> None:
    """The CSV's header names each column once, and a row follows it; its first lines are read as text.

    Dask, as pandas, renames a repeated header (``rooms``, ``rooms.1``), and the second copy would go unread.
    """
    try:
        head = csv_first_lines(source, 2)
    except UnicodeDecodeError as error:
        raise _not_utf8_csv(source, error, None) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"input {source} cannot be read as CSV: {error}") from error
    refuse_repeated_columns(f"input {source}", [str(name) for name in head.iloc[0]])
    if len(head) < 2:
        raise DatasetError(f"input {source} has a header but no row to score")


def require_columns(source: ScoringInput, data: str, keys: Sequence[str], schema: DatasetSchema) -> list[str]:
    """The key columns to keep, once the input has every key and feature (``core.scoring.require_input_columns``).

    An error names the files of a directory that lack one of them.
    """
    return require_input_columns(source.columns, keys, schema, source.named(data, [*keys, *schema.feature_names]))


def clear_earlier_answers(out: Path) -> int:
    """Delete the answer files an earlier run wrote in ``out`` (``part-*.parquet``, ``_rejected/part-*.parquet``).

    ``--force``: the directory then holds this run's answers only. Other files are left alone. Returns how many
    files went.
    """
    earlier = [*out.glob(ANSWER_FILES), *(out / REJECTED_DIR).glob(ANSWER_FILES)]
    for path in earlier:
        path.unlink()
    if (out / REJECTED_DIR).is_dir() and not any((out / REJECTED_DIR).iterdir()):
        (out / REJECTED_DIR).rmdir()
    return len(earlier)


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if root.is_dir() else path.name


def _dask_bytes(size: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(size))


def _parquet_metadata(path: Path) -> pq.FileMetaData:
    try:
        return pq.ParquetFile(path).metadata
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"input {path} cannot be read as Parquet: {error}") from None


def score_with_dask(
    client: Client,
    source: ScoringInput,
    model: ScoringModel,
    keys: Sequence[str],
    out: Path,
    sampling: LogSampling,
    progress: Callable[[PartitionScored, int | None], None] | None = None,
    schema: DatasetSchema | None = None,
    batch_rows: int = 50_000,
) -> BatchScored:
    """Score every task's rows on the cluster; each result, as it comes, goes to ``progress(result, total)``.

    ``total`` is None while a query's number of chunks is unknown.

    A Parquet task reads its row group ``batch_rows`` rows at a time and scores, writes and forgets each batch, so
    a worker holds one batch whatever the input's size; a CSV task its block; a query's chunks are read by the
    client. At most two tasks per worker thread are in flight. Only counts come back.

    A run that fails logs nothing for the drift check: once the tasks in flight have ended, the rows its tasks had
    logged are deleted again (their request ids start with the run's own ``LogSampling.request_prefix``), so that
    scoring again does not log them twice. Its answers stay in ``out``, for ``--force`` to replace.
    """
    from distributed import KilledWorker

    started = time.perf_counter()
    began = datetime.now(UTC)
    out.mkdir(parents=True, exist_ok=True)
    logs = sampling.url is not None and sampling.fraction > 0
    if logs:
        # Its tables are created here, once: workers creating them at the same time in a new SQLite file race.
        open_prediction_log(str(sampling.url)).close()
    require_workers_see(client, source, out, sampling)
    sampling = sampling if sampling.run else replace(sampling, run=uuid.uuid4().hex[:12])
    results: list[PartitionScored] = []

    def collect(result: PartitionScored, total: int | None) -> None:
        results.append(result)
        if progress is not None:
            progress(result, total)

    try:
        try:
            with warnings.catch_warnings():
                # Each task carries the model (a forest's ONNX graph: 11 MB), so a restarted worker can run it again:
                # a scattered copy is lost with the workers holding it. Dask warns of the "large graph" (trial 16).
                warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
                _run_tasks(client, source, model, keys, out, sampling, collect, schema, batch_rows)
        except UnreadablePart as error:
            raise DatasetError(
                f"{error}; answers of the tasks scored before it may be in {out}: score again with --force once the "
                "file is fixed or moved out"
            ) from None
        except KilledWorker:
            raise ServiceError(_died_on_every_try(source, model, len(results), out)) from None
    except BaseException:
        if logs:
            _take_back_logged(sampling, model.name, began - CLOCK_SKEW)
        raise
    total = PartitionScored.combined(results, reasons=5)
    return BatchScored(
        len(results), total.rows, total.scored, total.rejected, total.logged, time.perf_counter() - started,
        total.first_reasons,
    )  # fmt: skip


def require_workers_see(client: Client, source: ScoringInput, out: Path, sampling: LogSampling) -> None:
    """Every worker of ``client`` sees the input's files, ``out`` and a SQLite prediction log as this machine does.

    A Dask scheduler's workers may be other machines: without the files there they failed on "cannot be read as
    Parquet: No such file", or wrote their answers and logged rows where no one looks.

    Raises:
        ConfigError: A worker cannot: the first one, with what it cannot and what to do.
    """
    reads = sorted({piece.path for piece in source.pieces})
    if source.csv_path is not None:
        reads.append(str(source.csv_path))
    writes = [str(out)]
    log_file = sqlite_file(sampling.url) if sampling.url is not None and sampling.fraction > 0 else None
    if log_file is not None:
        reads.append(str(log_file))
        writes.append(str(log_file.parent))
    seen: dict[str, list[str]] = client.run(unseen_paths, reads, writes)
    wrong = sorted((worker, problems) for worker, problems in seen.items() if problems)
    if not wrong:
        return
    worker, problems = wrong[0]
    more = f" (and {len(problems) - 1} more path(s))" if len(problems) > 1 else ""
    others = f"; so do {len(wrong) - 1} other worker(s)" if len(wrong) > 1 else ""
    log = log_file is not None and any(str(log_file) in problem for problem in problems)
    hint = "; for the prediction log, a database server: DRIFTLOOP_PREDICTIONS_URL, or --log-fraction 0" if log else ""
    raise ConfigError(
        f"Dask worker {worker} {problems[0]}{more}, which this machine can{others}: a cluster's workers read the "
        "input, write --out and log the sample themselves, so each must be at the same path on every worker (a "
        f"shared filesystem{hint})"
    )


def _take_back_logged(sampling: LogSampling, model_name: str, since: datetime) -> None:
    """Delete what a failed run logged; if that fails too, say which rows are left rather than hide the first error."""
    try:
        store = open_prediction_log(str(sampling.url))
        try:
            store.forget_requests(model_name, sampling.request_prefix, since)
        finally:
            store.close()
    except (DriftloopError, SQLAlchemyError) as error:
        logger.warning(
            "the rows this failed run logged for the drift check could not be deleted (%s): their request_id "
            "starts with %s",
            error,
            sampling.request_prefix,
        )


def _died_on_every_try(source: ScoringInput, model: ScoringModel, finished: int, out: Path) -> str:
    """What to change when a worker died on every try of one task: most often, over its memory limit."""
    graph_mb = len(model.onnx_bytes) / 2**20
    heavy = (
        f" (this version's ONNX graph alone is {graph_mb:,.0f} MB, held several times over)" if graph_mb >= 5 else ""
    )
    if source.compressed:
        less = "decompress the CSV, which is then read in blocks (a compressed one is read whole, by one task)"
    else:
        less = "read less at a time (--blocksize for a CSV, --batch-rows for Parquet or a query)"
    done = f"{finished:,} task(s) had finished, their answers are in {out}" if finished else "none had finished"
    return (
        f"a Dask worker died on every try of one task, most likely over its memory limit: give each worker more "
        f"(--memory-limit){heavy} or {less}; {done}"
    )


def _run_tasks(
    client: Client, source: ScoringInput, model: ScoringModel, keys: Sequence[str], out: Path, sampling: LogSampling,
    collect: Callable[[PartitionScored, int | None], None], schema: DatasetSchema | None, batch_rows: int,
) -> None:  # fmt: skip
    from dask import delayed

    keys, where = list(keys), str(out)
    numbers: dict[str, int] = {}  # a task's key → its number, which names a CSV block in errors

    def submissions() -> Iterator[Future]:
        if source.chunks is not None:
            for number, chunk in enumerate(source.chunks):
                yield client.submit(score_partition, client.scatter(chunk), (number, 0), model, keys, where, sampling,
                                    pure=False)  # fmt: skip
        elif source.csv is None:
            for number, piece in enumerate(source.pieces):
                yield client.submit(score_piece, piece, number, model, keys, where, sampling, batch_rows, pure=False)
        else:
            score = delayed(score_csv_block, pure=False)
            for number, block in enumerate(source.csv.to_delayed()):
                future = client.compute(score(block, number, model, keys, where, sampling, schema))
                numbers[future.key] = number
                yield future

    def done(future: Future) -> None:
        try:
            result = future.result()
        except pd.errors.ParserError as error:
            raise _unreadable_csv_line(error, numbers[future.key], out) from None
        except UnicodeDecodeError as error:  # past the first rows, which open_scoring_input read
            if source.csv_path is None:
                raise
            raise _not_utf8_csv(source.csv_path, error, out) from None
        collect(result, source.tasks)

    _in_flight(client, submissions(), done)


def _in_flight(client: Client, submissions: Iterator[Future], done: Callable[[Future], None]) -> None:
    """Each future of ``submissions`` as it comes, two per worker thread waiting at most; each finished one to ``done``.

    The client holds a few tasks (a query's chunks among them) whatever the input's size. On an error, a task's or
    ``done``'s, the tasks in flight are waited for before it is raised: none is left running, to log rows after the
    run has deleted what it logged.
    """
    from distributed import wait

    workers = client.scheduler_info().get("workers", {}).values()
    limit = 2 * max(1, sum(int(worker.get("nthreads", 1)) for worker in workers))
    pending: set[Future] = set()

    def settle() -> None:
        nonlocal pending
        finished = wait(pending, return_when="FIRST_COMPLETED")
        pending = set(finished.not_done)
        for future in finished.done:
            done(future)

    try:
        for future in submissions:
            pending.add(future)
            if len(pending) >= limit:
                settle()
        while pending:
            settle()
    except BaseException:
        # What they raise is not looked at: the first error is the run's. A task that has not ended in the time a
        # task takes many times over (a cluster gone) is not waited for longer.
        with suppress(Exception):
            wait(pending, timeout=IN_FLIGHT_PATIENCE_SECONDS)
        raise


def _not_utf8_csv(source: Path, error: UnicodeDecodeError, out: Path | None) -> DatasetError:
    """A CSV to score that is not UTF-8, named by its first bad byte's line; ``out`` as in ``_unreadable_csv_line``."""
    then = (
        "" if out is None else f", then score again with --force (answers of blocks scored before it may be in {out})"
    )
    return DatasetError(f"input {source} cannot be read as CSV: {not_utf8_message(source, error)}{then}")


def _unreadable_csv_line(error: pd.errors.ParserError, block: int, out: Path | None) -> DatasetError:
    """A CSV line pandas cannot split into the header's fields (more fields than the header: an unquoted comma).

    Such a line cannot be set aside as a row: where its fields belong is unknown. pandas counts lines from the start
    of the block it reads (``--blocksize``), to which Dask adds the header as line 1. ``out``: where answers of
    earlier blocks may be, None when nothing was scored yet.
    """
    where = "" if block == 0 else f" (in block {block + 1} of --blocksize, whose line 1 is the header Dask puts first)"
    # Dask wraps pandas' message: "An error occurred while calling the read_csv method … Original Message: …".
    message = str(error).split("Original Message:")[-1].strip()
    then = (
        "" if out is None else f", then score again with --force (answers of blocks scored before it may be in {out})"
    )
    return DatasetError(
        f"a line of the CSV cannot be read: {message}{where}. Quote the field that holds a comma or fix the line{then}"
    )


@contextmanager
def dask_client(
    address: str | None,
    workers: int,
    memory_limit: str = "auto",
    *,
    worker_wait: float,
    waiting: Callable[[str], None] = logger.info,
) -> Iterator[Client]:
    """A client of the Dask scheduler at ``address``, or of a local cluster of ``workers`` processes (closed after).

    A local cluster's workers are forked from ``worker_template``'s process, which has imported ``partition_scoring``
    (their preload), where the platform allows; else spawned. A scheduler's cluster must be able to run the tasks,
    with ``worker_wait`` seconds (DRIFTLOOP_DASK_WORKER_WAIT) for a first worker to join, which ``waiting`` is told.

    Raises:
        ConfigError: Dask is not installed; the cluster at ``address`` lacks driftloop (``dask_scheduler``).
        ServiceError: No scheduler answers at ``address``, or no worker joins it in time (``dask_scheduler``).
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(NO_DASK) from None
    if address:
        require_scheduler(address)  # Client's own timeout does not bound the handshake
        try:
            client = Client(address, timeout=f"{SCHEDULER_ANSWER_SECONDS}s")
        except OSError as error:  # gone since it answered
            raise ServiceError(f"no Dask scheduler answers at {address} ({error})") from None
        with client:
            require_scoring_cluster(client, address, worker_wait, waiting)
            yield client
        return
    # No dashboard; the scheduler's own HTTP server (health, metrics) on a free loopback port: its default, 8787,
    # is often taken by another cluster, and Dask then warns in the middle of the command's output (trial 14).
    # Dask's logs (a worker pausing near its memory limit, restarted, a task given up) stay out of the command's
    # output: a task that fails, or a worker that dies for good, fails the run with one line (score_with_dask).
    # The method holds while the cluster runs: a worker restarted (over its memory limit) is forked the same way.
    with dask.config.set({"distributed.worker.multiprocessing-method": start_worker_template()}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                               dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                               preload=[SCORING_WORKER_MODULE], silence_logs=logging.CRITICAL)  # fmt: skip
        with cluster, Client(cluster) as client:
            yield client


def _dask_dataframe() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError:
        raise ConfigError(NO_DASK) from None
    return dd
