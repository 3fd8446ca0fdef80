"""Thin handlers of the inference service: decode, call the model server or store, reply."""

from __future__ import annotations

from contracts import subjects
from contracts.envelope import EnvelopeMeta
from contracts.inference import (
    InferReply,
    InferRequest,
    ListModelsRequest,
    LoadModelCommand,
    ModelList,
    ModelRef,
    ModelState,
    ModelStatus,
    RegisterModelCommand,
    UnloadModelCommand,
)
from runtime.bus import current_subject
from runtime.errors import NotFound
from services.inference.adapters.model_store import ModelStore
from services.inference.domain.policy import ModelPolicy
from services.inference.serving import ModelServer


class InferenceHandlers:
    def __init__(self, server: ModelServer, store: ModelStore) -> None:
        self.server = server
        self.store = store

    async def _status(self, name: str, version: int | None = None) -> ModelStatus:
        served = self.server.models.get(name)
        if served is not None and (version is None or served.config.version == version):
            return self.server.status(name)
        configs = [c for c in await self.store.all_configs() if c.name == name]
        if version is not None:
            configs = [c for c in configs if c.version == version]
        if not configs:
            raise NotFound(
                f"unknown model {name!r}" + (f" version {version}" if version else ""), model=name
            )
        config = max(configs, key=lambda c: c.version)
        return ModelStatus(
            name=name,
            version=config.version,
            task=config.task,
            state=ModelState.UNLOADED,
            instance_id=self.server.instance_id,
            config=config,
        )

    async def register(self, command: RegisterModelCommand, _: EnvelopeMeta) -> ModelStatus:
        config = await self.store.register(command.config)
        if command.load:
            await self.store.set_policy(config.name, ModelPolicy(loaded=True))
        await self.server.reconcile()
        return await self._status(config.name, config.version)

    async def load(self, command: LoadModelCommand, _: EnvelopeMeta) -> ModelStatus:
        status = await self._status(command.name, command.version)  # NotFound for unknown models
        await self.store.set_policy(
            command.name, ModelPolicy(loaded=True, pinned_version=command.version)
        )
        await self.server.reconcile()
        return await self._status(command.name, status.version if command.version else None)

    async def unload(self, command: UnloadModelCommand, _: EnvelopeMeta) -> ModelStatus:
        await self._status(command.name)
        await self.store.set_policy(command.name, ModelPolicy(loaded=False))
        await self.server.reconcile()
        return await self._status(command.name)

    async def list_models(self, _: ListModelsRequest, __: EnvelopeMeta) -> ModelList:
        names = sorted({c.name for c in await self.store.all_configs()})
        return ModelList(models=[await self._status(name) for name in names])

    async def get_model(self, ref: ModelRef, _: EnvelopeMeta) -> ModelStatus:
        return await self._status(ref.name, ref.version)

    async def infer(self, request: InferRequest, _: EnvelopeMeta) -> InferReply:
        return await self.server.infer(subjects.model_of_infer_subject(current_subject()), request)
