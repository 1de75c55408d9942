"""The tutorial's FastAPI service, changed only as far as needed to serve the churn Pipeline.

The tutorial (FastAPI + joblib) loads ``model.joblib`` at import, takes ``{"features": [...]}``, and calls
``predict`` and ``predict_proba`` per request in a sync route. Changes, all forced by the churn model: the
path comes from ``MODEL_PATH`` (the tutorial's compose file sets it), ``features`` mixes numbers and category
strings (null = missing), and the row becomes a one-row DataFrame with the Pipeline's column names
(``feature_names_in_``), since a ColumnTransformer selects columns by name. Loading a pickle is fine here:
this is the baseline, never driftloop's serving path.

Run: ``MODEL_PATH=pipeline.joblib uvicorn bench.baselines.tutorial_app:app``.
"""

from __future__ import annotations

import os

import joblib
import pandas as pd
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="ML Model API", description="The tutorial's prediction service", version="1.0.0")

model = joblib.load(os.environ.get("MODEL_PATH", "model.joblib"))
COLUMNS = list(model.feature_names_in_)

Value = float | str | None


class PredictionRequest(BaseModel):
    features: list[Value]


class PredictionResponse(BaseModel):
    prediction: int
    probability: list[float]


class BatchPredictionRequest(BaseModel):
    instances: list[list[Value]]


@app.get("/health")
def health_check() -> dict[str, str]:
    return {"status": "healthy"}


@app.post("/predict", response_model=PredictionResponse)
def predict(request: PredictionRequest) -> PredictionResponse:
    try:
        features = pd.DataFrame([request.features], columns=COLUMNS)
        prediction = model.predict(features)[0]
        probability = model.predict_proba(features)[0].tolist()
        return PredictionResponse(prediction=int(prediction), probability=probability)
    except Exception as e:
        raise HTTPException(status_code=400, detail=str(e)) from e


@app.post("/predict/batch")
def predict_batch(request: BatchPredictionRequest) -> dict[str, list]:
    features = pd.DataFrame(request.instances, columns=COLUMNS)
    predictions = model.predict(features).tolist()
    probabilities = model.predict_proba(features).tolist()
    return {"predictions": predictions, "probabilities": probabilities}
