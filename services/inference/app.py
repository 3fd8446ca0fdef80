"""Wiring of the inference service: model store, model server, handlers, reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from contracts import subjects, topology
from contracts.inference import (
    InferRequest,
    ListModelsRequest,
    LoadModelCommand,
    ModelRef,
    RegisterModelCommand,
    UnloadModelCommand,
)
from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.inference.adapters.default_models import ensure_minilm
from services.inference.adapters.model_store import ModelStore, open_artifacts
from services.inference.adapters.onnx_session import cuda_available
from services.inference.config import Settings
from services.inference.handlers import InferenceHandlers
from services.inference.serving import ModelServer

log = logging.getLogger("trellis.inference")


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("inference", bus, settings, shared)
    kv = await ensure_bucket(bus.js, topology.INFERENCE_MODELS, shared.stream_replicas)
    store = ModelStore(kv, await open_artifacts(bus.js, shared.stream_replicas))
    server = ModelServer(
        store,
        service.metrics,
        instance_id=service.instance_id,
        has_cuda=cuda_available(),
        intra_op_threads=settings.intra_op_threads,
        executor_threads=settings.executor_threads,
    )
    handlers = InferenceHandlers(server, store)
    service.handle(subjects.INFERENCE_REGISTER_MODEL, RegisterModelCommand, handlers.register)
    service.handle(subjects.INFERENCE_LOAD_MODEL, LoadModelCommand, handlers.load)
    service.handle(subjects.INFERENCE_UNLOAD_MODEL, UnloadModelCommand, handlers.unload)
    service.handle(subjects.INFERENCE_LIST_MODELS, ListModelsRequest, handlers.list_models)
    service.handle(subjects.INFERENCE_GET_MODEL, ModelRef, handlers.get_model)
    service.handle(subjects.INFERENCE_INFER_ANY, InferRequest, handlers.infer)

    async def keep_in_sync() -> None:
        """Every replica follows the store: on start, on each change, and every so often."""
        if settings.default_models:
            try:
                await ensure_minilm(store)
            except Exception:
                log.exception("could not register the default embedding model")
        changed = asyncio.Event()
        watcher = await kv.watchall()

        async def follow() -> None:
            async for _ in watcher:
                changed.set()

        following = asyncio.create_task(follow())
        try:
            while True:
                try:
                    await server.reconcile()
                except Exception:
                    log.exception("reconciling models failed; retrying")
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=settings.reconcile_interval_s)
        finally:
            following.cancel()
            await server.close()

    service.background(keep_in_sync)
    service.describe(
        lambda: {
            "models": {
                name: {
                    "version": m.config.version,
                    "state": m.state.value,
                    "providers": m.providers,
                }
                for name, m in server.models.items()
            },
            "cuda_available": server.has_cuda,
        }
    )
    return service
