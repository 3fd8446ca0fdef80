"""Model-version artifacts (booster, ONNX, feature pipeline, metrics, charts) in the NATS object store."""

from __future__ import annotations

import contextlib

import nats.js.errors
from nats.js.object_store import ObjectStore

from runtime.errors import NotFound


class Artifacts:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def save(self, model_id: str, version: str, files: dict[str, bytes]) -> dict[str, str]:
        names = {}
        for file, data in files.items():
            name = f"{model_id}/{version}/{file}"
            await self.store.put(name, data)
            names[file] = name
        return names

    async def read(self, name: str) -> bytes:
        try:
            result = await self.store.get(name)
        except nats.js.errors.ObjectNotFoundError:
            raise NotFound(f"artifact {name!r} not found") from None
        return bytes(result.data or b"")

    async def delete(self, model_id: str, version: str, names: dict[str, str]) -> None:
        for name in names.values():
            with contextlib.suppress(nats.js.errors.ObjectNotFoundError):
                await self.store.delete(name)
