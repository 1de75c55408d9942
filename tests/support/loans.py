"""A second dataset for tests: synthetic loan defaults, different in names, kinds and classes from churn.

The label follows a logistic model of the features (debt-to-income ratio, term, co-signer, employment,
purpose), so a plain classifier learns it well (ROC AUC about 0.8); region carries no signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LOANS_SCHEMA_FILE = "loans.schema.yaml"
LOANS_DATA_STEM = "loans"
POSITIVE_SHARE = 0.25

EMPLOYMENT = ("salaried", "self-employed", "contract", "unemployed")
PURPOSE = ("car", "home improvement", "debt consolidation", "education", "medical")
REGION = ("north", "south", "east", "west")
TERMS = (12, 24, 36, 48, 60)

LOANS_SCHEMA_YAML = """\
# Synthetic loan-default snapshot for tests (tests/support/loans.py).
name: loans-default
description: One row per loan; target = whether the borrower defaulted.
min_rows: 200
target:
  name: default
  classes: ["repaid", "defaulted"]
  positive: defaulted
features:
  - {name: income, kind: numeric, min: 0, max: 1000000, description: yearly income in EUR}
  - {name: loan_amount, kind: numeric, min: 500, max: 500000, nullable: true, description: EUR borrowed}
  - {name: term_months, kind: numeric, min: 6, max: 84}
  - {name: has_cosigner, kind: binary}
  - name: employment
    kind: categorical
    categories: ["salaried", "self-employed", "contract", "unemployed"]
  - name: purpose
    kind: categorical
    categories: ["car", "home improvement", "debt consolidation", "education", "medical"]
  - {name: region, kind: categorical, categories: ["north", "south", "east", "west"]}
"""

_EMPLOYMENT_EFFECT = {"salaried": -0.4, "self-employed": 0.3, "contract": 0.5, "unemployed": 1.6}
_PURPOSE_EFFECT = {
    "car": -0.3,
    "home improvement": -0.2,
    "debt consolidation": 0.6,
    "education": 0.1,
    "medical": 0.4,
}


def make_loans(rows: int = 1500, seed: int = 7) -> pd.DataFrame:
    """A loan table with ``rows`` rows; the same arguments always give the same frame."""
    rng = np.random.default_rng(seed)
    income = np.clip(np.round(rng.lognormal(mean=10.9, sigma=0.45, size=rows), -2), 6_000, 900_000)
    employment = rng.choice(EMPLOYMENT, size=rows, p=[0.55, 0.2, 0.17, 0.08])
    purpose = rng.choice(PURPOSE, size=rows, p=[0.3, 0.2, 0.25, 0.1, 0.15])
    region = rng.choice(REGION, size=rows)
    term = rng.choice(TERMS, size=rows)
    has_cosigner = (rng.random(rows) < 0.2).astype(np.int64)
    ratio = rng.gamma(shape=4.0, scale=0.08, size=rows)
    loan_amount = np.clip(np.round(income * ratio, -1), 500, 500_000)

    logit = (
        3.0 * (np.log(loan_amount / income) - np.log(0.32))
        + 0.6 * (term - 36) / 12
        - 1.5 * has_cosigner
        + pd.Series(employment).map(_EMPLOYMENT_EFFECT).to_numpy()
        + pd.Series(purpose).map(_PURPOSE_EFFECT).to_numpy()
    )
    logit += _intercept_for_share(logit, POSITIVE_SHARE)
    defaulted = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))

    # Some applications lack the amount (nullable feature); drawn after the label so it is noise.
    loan_amount = np.where(rng.random(rows) < 0.05, np.nan, loan_amount)
    return pd.DataFrame(
        {
            "income": income,
            "loan_amount": loan_amount,
            "term_months": term.astype(np.int64),
            "has_cosigner": has_cosigner,
            "employment": employment.astype(object),
            "purpose": purpose.astype(object),
            "region": region.astype(object),
            "default": np.where(defaulted, "defaulted", "repaid").astype(object),
        }
    )


def _intercept_for_share(logit: np.ndarray, share: float) -> float:
    """The shift that makes the mean predicted probability equal ``share`` (bisection; it is monotone)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))) < share:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def write_loans(directory: Path, fmt: str = "parquet") -> tuple[Path, Path]:
    """Write ``make_loans()`` as ``loans.parquet`` or ``loans.csv`` plus ``loans.schema.yaml``.

    Returns:
        ``(data_path, schema_path)``.
    """
    if fmt not in {"parquet", "csv"}:
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    directory.mkdir(parents=True, exist_ok=True)
    frame = make_loans()
    data_path = directory / f"{LOANS_DATA_STEM}.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(data_path, index=False)
    else:
        frame.to_csv(data_path, index=False)
    schema_path = directory / LOANS_SCHEMA_FILE
    schema_path.write_text(LOANS_SCHEMA_YAML, encoding="utf-8")
    return data_path, schema_path
