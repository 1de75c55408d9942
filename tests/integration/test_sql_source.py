"""A snapshot read from PostgreSQL through a SQLAlchemy URL and a query: schema inference, training, what is
recorded (never the password), and the retrain's check of whether the source changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftloop.core import lineage
from driftloop.core.recipe import SplitSpec, TrainingRecipe
from driftloop.core.snapshot import content_hash
from driftloop.io.datasets import load_schema, schema_yaml
from driftloop.io.registry import ModelRegistry
from driftloop.io.sql_source import SqlQuery, read_sql
from tasks.retrain import check_source
from tests.support.postgres import running_postgres
from tests.support.stack import own_stack
from tests.support.worlds import world, world_schema

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pw"
QUERY = "SELECT * FROM houses WHERE x4 > -2.5 ORDER BY id"


def test_a_snapshot_from_a_query_trains_and_records_no_password(tmp_path: Path) -> None:
    with running_postgres() as url:
        engine = sa.create_engine(url)
        world(900, 4, "regression").rename_axis("id").reset_index().to_sql("houses", engine, index=False)
        # The private cluster trusts local connections, so any password gets in: enough to see where it goes.
        secret_url = url.replace("postgres@", f"postgres:{PASSWORD}@")
        dl = own_stack(tmp_path)
        try:
            schema = tmp_path / "houses.yaml"
            inferred = dl.run(
                "schema", "infer", "--data", secret_url, "--query", QUERY, "--target", "y", "--out", str(schema)
            )
            assert "target 'y' (regression)" in inferred.stdout
            assert PASSWORD not in inferred.stdout + inferred.stderr
            # the id column is left to the schema as a feature: drop it, as a user would
            text = "\n".join(line for line in schema.read_text().splitlines() if "name: id," not in line)
            schema.write_text(text + "\n")

            trained = dl.run(
                "train", "--data", secret_url, "--query", QUERY, "--schema", str(schema),
                "--model-name", "houses", "--estimator", "gradient_boosting",
            )  # fmt: skip
            assert "houses v1: promoted to champion" in trained.stdout
            assert PASSWORD not in trained.stdout + trained.stderr

            tags = ModelRegistry("houses", dl.tracking_uri).get_version("1").tags
            assert not [key for key, value in tags.items() if PASSWORD in value]
            recorded = json.loads(tags[lineage.SOURCE])
            assert recorded == {"sql_url": url, "query": QUERY}
            rows = read_sql(SqlQuery(url, QUERY))
            dataset = load_schema(schema)
            assert tags[lineage.DATA_ROWS] == str(len(rows))
            assert tags[lineage.DATA_HASH] == content_hash(rows, dataset)
            port = dl.env["DRIFTLOOP_PREFECT_PORT"]
            runs = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/filter", json={}, timeout=30).json()
            assert runs
            assert PASSWORD not in json.dumps([run["parameters"] for run in runs])

            # The retrain's source check queries the database again: unchanged, then changed by new rows.
            recipe = TrainingRecipe.from_tags(tags, SplitSpec(0.25, 42))
            same = check_source.fn(recipe, dataset, SecretStr(PASSWORD))
            assert (same.check.changed, same.current_hash) == (False, tags[lineage.DATA_HASH])
            world(50, 5, "regression").rename_axis("id").reset_index().assign(id=lambda f: f["id"] + 10_000).to_sql(
                "houses", engine, index=False, if_exists="append"
            )
            moved = check_source.fn(recipe, dataset, None)
            assert moved.check.changed is True
            assert moved.check.note.startswith(f"{url} (SELECT * FROM houses")  # noqa: S608 (a message, not SQL)
        finally:
            dl.run("down", check=False)
            engine.dispose()


def test_a_bad_query_or_url_is_one_line_before_any_service(tmp_path: Path) -> None:
    schema = tmp_path / "houses.yaml"
    schema.write_text(schema_yaml(world_schema("regression")))
    with running_postgres() as url:
        dl = own_stack(tmp_path)
        missing = dl.run(
            "train", "--data", url, "--query", "SELECT * FROM nowhere", "--schema", str(schema), check=False
        )
        assert missing.returncode == 1
        assert missing.stderr.startswith(f"error: cannot read {url} (SELECT * FROM nowhere): ")  # noqa: S608
        assert 'relation "nowhere" does not exist' in missing.stderr
        no_query = dl.run("train", "--data", url, check=False)
        assert no_query.stderr.strip() == (f"error: --data {url} is a database: give the rows' SQL with --query")
        assert not list((dl.home / "run").glob("*.pid"))  # nothing was started
