"""Read dataset schema files (YAML) and data snapshots (CSV or Parquet) from disk."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from driftloop.core.schema import LEARN, DatasetSchema, repeated_names
from driftloop.core.text_encoding import NotUtf8, first_line_not_utf8
from driftloop.errors import ConfigError, DatasetError
from driftloop.io.sql_source import SqlQuery, is_database_url, read_sql

PARQUET_SUFFIXES = (".parquet", ".pq")
# Compression suffixes pandas infers from the file name (``compression="infer"``).
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")
_SUPPORTED = ".csv, .csv.gz (or another compression pandas infers), .parquet, .pq"


def load_schema(path: Path) -> DatasetSchema:
    """Read and validate a dataset schema file.

    Raises:
        ConfigError: the file is missing or unreadable, is not YAML, or breaks the schema's rules
            (every broken rule is listed, each with the field it concerns).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"schema file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"schema file {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read schema file {path}: {exc}") from None

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"schema file {path} is not valid YAML: {describe_yaml_error(exc)}") from None
    if not isinstance(raw, dict):
        found = "nothing" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(
            f"schema file {path} must hold a mapping with 'name', 'target' and 'features'; it holds {found}"
        )

    try:
        return DatasetSchema.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_describe_error(error, raw) for error in errors if not _is_echo(error, errors)]
        if len(problems) == 1:  # the usual case: one line, the problem in it
            raise ConfigError(f"schema file {path} is invalid: {problems[0]}") from None
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"schema file {path} is invalid ({len(problems)} problem(s)):\n{lines}") from None


def schema_yaml(schema: DatasetSchema, notes: Sequence[str] = ()) -> str:
    """``schema`` as a schema file's text (``load_schema`` reads it back equal), ``notes`` as comments on top."""
    header = [f"# Schema {schema.name}: one feature per line; kinds: numeric, binary (0/1), categorical.", "#"]
    header += [f"# NOTE {note}" for note in notes] or ["# Every column of the data is a feature."]
    dumped = schema.model_dump(mode="json", exclude_defaults=True)
    # A list still to be learned is spelled ``categories: learn`` in a schema file.
    dumped["features"] = [
        {("categories" if key == "learn" else key): (LEARN if key == "learn" else value) for key, value in f.items()}
        if f.get("learn") and "categories" not in f
        else f
        for f in dumped["features"]
    ]
    body = yaml.safe_dump(
        dumped,
        sort_keys=False,
        default_flow_style=None,
        allow_unicode=True,
        width=120,
    )
    return "\n".join(header) + "\n" + body


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """``line 3, column 1: expected ',' or ']' (while parsing a flow sequence from line 2, column 11)``."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return str(exc)
    mark = exc.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context:
        start = exc.context_mark
        where = f" from line {start.line + 1}, column {start.column + 1}" if start is not None else ""
        text += f" ({exc.context}{where})"
    return text


def _is_echo(error: Any, errors: list[Any]) -> bool:
    """A list's "too short" error caused only by its items failing, which the item errors already explain."""
    loc = tuple(error["loc"])
    return error["type"] == "too_short" and any(
        len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc for other in errors
    )


def _describe_error(error: Any, raw: dict[str, Any]) -> str:
    """One pydantic error as ``features[6] ('contract').categories: <message>``."""
    location = _location(tuple(error["loc"]), raw)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in {"missing", "value_error", "extra_forbidden"} and _is_scalar(error.get("input")):
        message += f" (got {error['input']!r})"
    message += _hint(tuple(error["loc"]), error["type"], error.get("input"))
    return f"{location}: {message}" if location else message


_DATE_KINDS = {"date", "datetime", "date_time", "time", "timestamp", "timedelta", "duration"}
_KINDS = "; set target.kind: binary (two classes), multiclass (three or more) or regression (a number)"


def _hint(loc: tuple[str | int, ...], kind: str, value: object) -> str:
    """What to do about the errors people make when their data is not yet what driftloop takes."""
    if loc[-1:] == ("kind",) and loc[:1] == ("features",) and str(value).lower() in _DATE_KINDS:
        return (
            "; a schema has no date or time kind: derive numeric features from the column in the snapshot "
            "(days since an event, day of week, hour) and declare those"
        )
    if loc[:1] == ("target",) and loc[-1:] in (("kind",), ("task",)) and kind in ("extra_forbidden", "enum"):
        return _KINDS
    return ""


def _location(loc: tuple[str | int, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
            if loc[:i] == ("features",):
                name = _feature_name(raw, part)
                if name:
                    parts.append(f" ({name!r})")
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts)


def _feature_name(raw: dict[str, Any], index: int) -> str | None:
    features = raw.get("features")
    if isinstance(features, list) and 0 <= index < len(features) and isinstance(features[index], dict):
        name = features[index].get("name")
        return name if isinstance(name, str) else None
    return None


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


# Where a snapshot comes from: a file or directory, or a database query.
Source = Path | SqlQuery


def source_from_text(text: str, query: str | None = None, argument: str = "--data") -> Source:
    """``--data`` (and ``--query``) as a source; also reads back what ``record_source`` wrote.

    ``argument`` is how the command names the data in its errors (``--data``, or a positional ``DATA``).

    Raises:
        ConfigError: a database URL without a query, or a query without a database URL.
    """
    recorded = SqlQuery.from_record(text)
    if recorded is not None:
        return recorded
    if is_database_url(text):
        if not query:
            raise ConfigError(
                f"{argument} {SqlQuery(text, '').safe_url} is a database: give the rows' SQL with --query"
            )
        return SqlQuery(text, query)
    if query:
        raise ConfigError(f"--query needs {argument} to be a database URL (dialect://user@host/db), not {text!r}")
    return Path(text)


def record_source(source: Source) -> str:
    """What a version records as its data source: a file's path, or a query without the URL's password."""
    return source.record() if isinstance(source, SqlQuery) else str(source)


def describe_source(source: Source) -> str:
    return source.describe() if isinstance(source, SqlQuery) else str(source)


def read_source(source: Source, password: str | None = None, what: str = "snapshot") -> pd.DataFrame:
    """The snapshot's rows, from a file or directory (``read_snapshot``) or a database (``read_sql``).

    ``password`` is the database's, used when its URL has none; ``what`` names the file in errors.
    """
    return read_sql(source, password) if isinstance(source, SqlQuery) else read_snapshot(source, what)


def read_snapshot(path: Path, what: str = "snapshot") -> pd.DataFrame:
    """Read a data snapshot: a CSV (optionally compressed) or Parquet file, or a directory of Parquet files.

    A file's type comes from its name. A directory is a partitioned export: its parts are read in file-name order as
    one frame (``parquet_parts``: ``_SUCCESS`` and the like are skipped, any other file that is not Parquet refused).

    Raises:
        DatasetError: the path is missing, the suffix is unsupported, a directory holds no Parquet file, or a
            file is empty or cannot be parsed; the message calls the file ``what`` ("label table").
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{what} {path} does not exist")
    if path.is_dir():
        return _read_parquet_directory(path, what)
    kind = _snapshot_kind(path)
    if kind is None:
        raise DatasetError(f"{what} {path} has an unsupported file type; use {_SUPPORTED}")
    return _read_file(path, kind, what)


def _read_file(path: Path, kind: str, what: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DatasetError(f"{what} {path} is empty (0 bytes)")
    try:
        if kind == "parquet":
            refuse_repeated_columns(f"{what} {path}", list(pq.read_schema(path).names))
            frame = pd.read_parquet(path)
        else:
            frame = _read_csv(path, what)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{what} {path} is empty (no columns)") from None
    except UnicodeDecodeError as error:  # a ValueError: before the others
        raise DatasetError(f"cannot parse {what} {path} as {kind}: {not_utf8_message(path, error)}") from None
    # The parsers report a malformed file through any of these (ParserError and pyarrow's ArrowInvalid are
    # ValueErrors; a broken gzip is an OSError or EOFError).
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot parse {what} {path} as {kind}: {str(exc).strip()}") from None  # pandas ends in \n
    if frame.empty:
        raise DatasetError(f"{what} {path} has no rows ({len(frame.columns)} column(s), 0 rows)")
    return frame


PARQUET_MAGIC = b"PAR1"  # a Parquet file's first four bytes


def parquet_parts(directory: Path, what: str) -> list[Path]:
    """The Parquet files of a directory read as the parts of one export, in its sub-directories too, sorted.

    As Parquet readers do, a name starting with ``_`` or ``.`` is skipped, in the directory or on the way to it
    (``_SUCCESS``, ``.part-0.crc``). A part is a Parquet file by its suffix or by its first bytes (Spark may
    write ``part-00001-…`` with no suffix). Any other file is refused: scoring or training on the rest would drop
    its rows without a word (trial 16).

    Raises:
        DatasetError: No Parquet file, or a file that is not Parquet.
    """
    parts: list[str] = []
    others: list[str] = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or any(p.startswith(("_", ".")) for p in path.relative_to(directory).parts):
            continue
        (parts if _is_parquet(path) else others).append(str(path.relative_to(directory)))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise DatasetError(
            f"{what} directory {directory} holds {len(others):,} file(s) that are not Parquet ({shown}); a "
            "directory is read as the parts of one Parquet export: move them out, or start their names with _"
        )
    if not parts:
        raise DatasetError(
            f"{what} directory {directory} holds no Parquet file ({', '.join(PARQUET_SUFFIXES)}); a directory "
            "is read as the parts of one Parquet export"
        )
    return [directory / part for part in parts]


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    with path.open("rb") as file:
        return file.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC


def _read_parquet_directory(directory: Path, what: str) -> pd.DataFrame:
    parts = parquet_parts(directory, what)
    frames = [_read_file(part, "parquet", what) for part in parts]
    columns = list(frames[0].columns)
    for part, frame in zip(parts[1:], frames[1:], strict=True):
        if list(frame.columns) != columns:
            raise DatasetError(
                f"{what} directory {directory}: {part.name} has columns {list(frame.columns)}, "
                f"but {parts[0].name} has {columns}; every part must have the same columns"
            )
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _snapshot_kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if not suffixes:
        return None
    if suffixes[-1] in PARQUET_SUFFIXES:
        return "parquet"
    if suffixes[-1] == ".csv":
        return "csv"
    if suffixes[-1] in _COMPRESSION_SUFFIXES and len(suffixes) >= 2 and suffixes[-2] == ".csv":
        return "csv"
    return None


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    # pandas' default NA strings stay on: a blank cell (and "NA", "null", "NaN", "None", ...) is missing. That
    # would also swallow a category literally spelled "None" or "NA"; no schema we ship declares one, and
    # treating the common exports' null spellings as missing matters more. Only "True"/"False" spellings are
    # parsed as booleans by pandas, so "Yes"/"No" categories stay strings. low_memory=False types each column
    # from the whole file rather than per chunk, so one odd value cannot leave a column half int, half str.
    frame = pd.read_csv(path, keep_default_na=True, low_memory=False)
    # pandas renames a repeated header ("tenure", "tenure.1"): the second copy would be dropped as an unknown
    # column without a word. The header as written says so.
    refuse_repeated_columns(f"{what} {path}", [str(name) for name in csv_first_lines(path).iloc[0]])
    return frame


def csv_not_utf8(path: Path) -> NotUtf8 | None:
    """The first byte of a CSV (plain or gzip) that is not UTF-8, with its line.

    None if every byte is, or if the file is compressed otherwise: then the codec's own message has to do.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".gz"):
        return None
    with gzip.open(path, "rb") if suffix == ".gz" else path.open("rb") as lines:
        return first_line_not_utf8(lines)


def not_utf8_message(path: Path, error: UnicodeDecodeError) -> str:
    """Where a CSV stops being UTF-8, and what to do; the codec's position is in a buffer of pandas, not the file."""
    found = csv_not_utf8(path)
    return f"not UTF-8 text: {found.describe() if found else error}; save it as UTF-8"


def csv_first_lines(path: Path, lines: int = 1) -> pd.DataFrame:
    """The CSV's first ``lines`` lines as written, header included: text, blanks kept, no name renamed."""
    return pd.read_csv(path, header=None, nrows=lines, dtype=object, keep_default_na=False)


def refuse_repeated_columns(what: str, names: list[str]) -> None:
    """Raise if a column name occurs twice in ``what`` (``snapshot PATH``, ``input PATH``), naming the positions.

    Raises:
        DatasetError: a name is repeated.
    """
    repeated = [name for name in repeated_names(names) if name]  # unnamed columns (trailing commas) are no clash
    if repeated:
        where = "; ".join(
            f"{name!r} in columns {', '.join(str(i + 1) for i, n in enumerate(names) if n == name)}"
            for name in repeated
        )
        raise DatasetError(f"{what} repeats column name(s): {where}; every column needs its own name")
