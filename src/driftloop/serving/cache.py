"""Optional Redis cache of model outputs, keyed by (model version, endpoint, request body).

Off by default. The version is part of the key, so a new model never answers from an old one's entries. Only
the model call is skipped on a hit: validation, metrics and the prediction log still run for every request.
For the bundled model a Redis round trip costs more than onnxruntime itself (see bench/bench_serving.py).
"""

from __future__ import annotations

import hashlib
from typing import cast

import numpy as np

from driftloop.io.onnx_runtime import Outputs


class PredictionCache:
    def __init__(self, url: str, ttl_seconds: int) -> None:
        import redis.asyncio as redis

        self._client = redis.from_url(url)
        self._ttl = ttl_seconds

    @staticmethod
    def key(model: str, version: str, endpoint: str, body: bytes) -> str:
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return f"driftloop:prediction:{model}:{version}:{endpoint}:{digest}"

    async def get(self, key: str) -> Outputs | None:
        """The outputs stored under ``key``: a classifier's labels and probabilities, or a regressor's values."""
        # redis types values as bytes | str; this client never decodes responses (decode_responses is off): bytes.
        value = cast("bytes | None", await self._client.get(key))
        if value is None:
            return None
        rows = int.from_bytes(value[:4], "little")
        columns = int.from_bytes(value[4:8], "little")
        if columns == 0:
            return np.frombuffer(value[8:], dtype=np.float32), None
        labels = np.frombuffer(value[8 : 8 + 8 * rows], dtype=np.int64)
        proba = np.frombuffer(value[8 + 8 * rows :], dtype=np.float32).reshape(rows, columns)
        return labels, proba

    async def put(self, key: str, first: np.ndarray, proba: np.ndarray | None) -> None:
        header = len(first).to_bytes(4, "little") + (0 if proba is None else proba.shape[1]).to_bytes(4, "little")
        if proba is None:
            value = header + np.ascontiguousarray(first, dtype=np.float32).tobytes()
        else:
            value = (
                header
                + np.ascontiguousarray(first, dtype=np.int64).tobytes()
                + np.ascontiguousarray(proba, dtype=np.float32).tobytes()
            )
        await self._client.set(key, value, ex=self._ttl)

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()
