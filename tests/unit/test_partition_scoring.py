"""One block of rows scored on a worker: answers beside the keys, bad rows set aside as they were read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.core.schema import DatasetSchema
from driftloop.io.partition_scoring import REJECTED_DIR, LogSampling, answer_file, score_csv_block, score_partition
from tests.support.churn import scoring_model


def test_a_csv_block_s_bad_rows_are_set_aside_as_written_and_the_rest_scored(
    tmp_path: Path, churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Trial 12: a CSV's bad rows came back typed: tenure 6 written as "6.0", "abc" beside it."""
    model = scoring_model(churn_frame, churn_schema)
    rows = churn_frame.iloc[600:610].drop(columns=["churn"]).reset_index(drop=True)
    rows.insert(0, "id", np.arange(7000, 7010))
    as_text = rows.astype(str).astype(object)  # what Dask's read_csv(dtype=object) gives
    as_text.loc[2, "tenure"] = "-6"
    as_text.loc[5, "monthly_charges"] = "abc"
    as_text.loc[7, "total_charges"] = np.nan  # an empty field: nullable, so the row is scored

    done = score_csv_block(as_text, 3, model, ["id"], str(tmp_path), LogSampling(None, 0.0), churn_schema)

    assert (done.rows, done.scored, done.rejected) == (10, 8, 2)
    aside = pd.read_parquet(tmp_path / REJECTED_DIR / answer_file((3, 0)))
    assert aside["id"].tolist() == ["7002", "7005"]
    assert aside["tenure"].tolist() == ["-6", as_text.loc[5, "tenure"]]
    assert aside["monthly_charges"].tolist() == [as_text.loc[2, "monthly_charges"], "abc"]
    assert aside["driftloop_reason"].tolist() == ["tenure: below min 0", "monthly_charges: not a number"]
    answers = pd.read_parquet(tmp_path / answer_file((3, 0)))
    assert answers["id"].tolist() == ["7000", "7001", "7003", "7004", "7006", "7007", "7008", "7009"]
    assert set(answers["prediction"]) <= {"No", "Yes"}


def test_booleans_are_a_binary_features_1_and_0_and_not_a_numeric_features_number(
    tmp_path: Path, churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Trial 20: a Parquet column of booleans where tenure goes was scored as 1/0; the server answers 422 for it."""
    model = scoring_model(churn_frame, churn_schema)
    rows = churn_frame.iloc[:6].drop(columns=["churn"]).reset_index(drop=True)
    rows.insert(0, "id", np.arange(6))
    typed = rows.assign(tenure=rows["tenure"].astype(object))
    typed.loc[[1, 4], "tenure"] = [True, False]  # a Parquet column of booleans with nulls reads as objects
    typed["senior_citizen"] = [True, False, True, False, True, False]  # binary: 1 and 0
    done = score_partition(typed, (0, 0), model, ["id"], str(tmp_path), LogSampling(None, 0.0))
    assert (done.rows, done.scored, done.rejected) == (6, 4, 2)
    aside = pd.read_parquet(tmp_path / REJECTED_DIR / answer_file((0, 0)))
    assert aside["id"].tolist() == [1, 4]
    assert aside["driftloop_reason"].tolist() == ["tenure: not a number"] * 2

    whole = rows.assign(tenure=rows["tenure"] > 10)  # a bool dtype: every row
    every = score_partition(whole, (1, 0), model, ["id"], str(tmp_path), LogSampling(None, 0.0))
    assert (every.scored, every.rejected) == (0, 6)

    as_text = rows.astype(str).astype(object)  # a CSV: pandas' words for booleans
    as_text.loc[0, "tenure"] = "True"
    as_text.loc[1, "senior_citizen"] = "TRUE"
    block = score_csv_block(as_text, 2, model, ["id"], str(tmp_path), LogSampling(None, 0.0), churn_schema)
    assert (block.scored, block.rejected) == (5, 1)
    aside = pd.read_parquet(tmp_path / REJECTED_DIR / answer_file((2, 0)))
    assert aside["tenure"].tolist() == ["True"]
    assert aside["driftloop_reason"].tolist() == ["tenure: not a number"]
