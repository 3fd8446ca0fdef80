"""Sentence embeddings for passages and queries: from the inference service, or in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from contracts import subjects
from contracts.inference import InferReply, InferRequest
from runtime.bus import Bus

MODEL = "all-minilm-l6-v2"
DIM = 384
BATCH = 64


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        ...


class BusEmbedder:
    """Asks the inference service (`inference.v1.all-minilm-l6-v2.infer`), 64 texts a request."""

    def __init__(self, bus: Bus, *, timeout_s: float = 30.0, model: str = MODEL) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        self.subject = subjects.model_infer(model)

    async def _one(self, texts: Sequence[str]) -> np.ndarray:
        reply = await self.bus.request(
            self.subject, InferRequest(texts=list(texts)), InferReply, timeout_s=self.timeout_s
        )
        if reply.embeddings is None or len(reply.embeddings) != len(texts):
            raise RuntimeError(f"{self.subject} returned no embeddings")
        return np.asarray(reply.embeddings, np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), np.float32)
        parts = await asyncio.gather(
            *(self._one(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH))
        )
        return np.concatenate(parts)


class LocalEmbedder:
    """The inference service's own MiniLM pipeline, run in this process (benchmarks, one-box use)."""

    def __init__(self, *, intra_op_threads: int = 0) -> None:
        # Imported here: only this embedder needs the inference runtime in the indexer process.
        from services.inference.adapters.default_models import local_minilm_pipeline

        self._pipeline = local_minilm_pipeline(intra_op_threads=intra_op_threads)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), np.float32)
        parts = []
        for i in range(0, len(texts), BATCH):
            request = InferRequest(texts=list(texts[i : i + BATCH]))
            prepared = self._pipeline.prepare(request)
            (outputs,) = self._pipeline.run([prepared])
            reply = self._pipeline.reply(request, prepared, outputs)
            parts.append(np.asarray(reply.embeddings, np.float32))
        return np.concatenate(parts)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, texts)
