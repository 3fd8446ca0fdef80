"""Which version of each model a replica should serve (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from contracts.inference import ModelConfig


class ModelPolicy(BaseModel):
    """Per model: serve it or not, and which version (None: the latest registered)."""

    loaded: bool = True
    pinned_version: int | None = None


def desired_versions(
    configs: Iterable[ModelConfig], policies: Mapping[str, ModelPolicy]
) -> dict[str, ModelConfig]:
    by_name: dict[str, dict[int, ModelConfig]] = {}
    for config in configs:
        by_name.setdefault(config.name, {})[config.version] = config
    wanted: dict[str, ModelConfig] = {}
    for name, versions in by_name.items():
        policy = policies.get(name)
        if policy is None or not policy.loaded:
            continue
        if policy.pinned_version is not None:
            if policy.pinned_version in versions:
                wanted[name] = versions[policy.pinned_version]
        else:
            wanted[name] = versions[max(versions)]
    return wanted
