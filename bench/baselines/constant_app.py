"""The framework's ceiling: a FastAPI route that reads nothing and returns a constant prediction.

Run: ``uvicorn bench.baselines.constant_app:app`` under the same uvicorn options as the server measured.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI(title="constant")

ANSWER: dict[str, Any] = {"prediction": 0, "probability": [0.75, 0.25]}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.post("/predict")
async def predict() -> dict[str, Any]:
    return ANSWER
