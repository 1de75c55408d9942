"""One block of rows scored on a worker: answers beside the keys, bad rows set aside as they were read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.core.schema import DatasetSchema
from driftloop.io.partition_scoring import REJECTED_DIR, LogSampling, answer_file, score_csv_block
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
