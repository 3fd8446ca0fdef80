"""The model repository: configs and serving policies in KV, artifacts in the NATS object store."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from contracts import topology
from contracts.inference import ModelConfig
from runtime.errors import Conflict, NotFound
from runtime.kv import ResourceStore
from services.inference.domain.policy import ModelPolicy


async def open_artifacts(js: JetStreamContext, replicas: int = 1) -> ObjectStore:
    try:
        return await js.object_store(topology.INFERENCE_ARTIFACTS)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_object_store(
            topology.INFERENCE_ARTIFACTS,
            config=ObjectStoreConfig(
                description="ONNX models and tokenizers, by <name>/<version>/<file>",
                storage=StorageType.FILE,
                replicas=replicas,
            ),
        )


class ModelStore:
    def __init__(self, kv: KeyValue, artifacts: ObjectStore) -> None:
        self.kv = kv
        self.artifacts = artifacts
        self.configs = ResourceStore(kv, ModelConfig, "model version", prefix="config.")
        self.policies = ResourceStore(kv, ModelPolicy, "model policy", prefix="policy.")

    @staticmethod
    def artifact_name(name: str, version: int, file: str) -> str:
        return f"{name}/{version}/{file}"

    async def put_artifact(self, name: str, version: int, file: str, data: bytes) -> str:
        object_name = self.artifact_name(name, version, file)
        await self.artifacts.put(object_name, data)
        return object_name

    async def artifact(self, object_name: str) -> bytes:
        try:
            result = await self.artifacts.get(object_name)
        except nats.js.errors.ObjectNotFoundError:
            raise NotFound(f"artifact {object_name!r} is not in the model store") from None
        return bytes(result.data or b"")

    async def has_artifact(self, object_name: str) -> bool:
        try:
            await self.artifacts.get_info(object_name)
        except nats.js.errors.ObjectNotFoundError:
            return False
        return True

    async def register(self, config: ModelConfig) -> ModelConfig:
        """Store a version; re-registering the identical config is a no-op, a different one conflicts."""
        for object_name in [
            *config.artifacts.values(),
            *([config.tokenizer] if config.tokenizer else []),
        ]:
            if not await self.has_artifact(object_name):
                raise NotFound(
                    f"artifact {object_name!r} is not in the model store; upload it first"
                )
        key = f"{config.name}.{config.version}"
        try:
            await self.configs.create(key, config)
        except Conflict:
            existing = (await self.configs.get(key)).value
            if existing != config:
                raise Conflict(
                    f"model {config.name!r} version {config.version} exists with another config; "
                    "register a new version"
                ) from None
        return config

    async def all_configs(self) -> list[ModelConfig]:
        return [v.value for v in await self.configs.list()]

    async def config(self, name: str, version: int) -> ModelConfig:
        return (await self.configs.get(f"{name}.{version}")).value

    async def all_policies(self) -> dict[str, ModelPolicy]:
        return {v.key: v.value for v in await self.policies.list()}

    async def set_policy(self, name: str, policy: ModelPolicy) -> None:
        await self.policies.put(name, policy)
