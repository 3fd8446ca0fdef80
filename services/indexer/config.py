"""Settings of the indexer service (env prefix TRELLIS_INDEXER_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_INDEXER_", extra="ignore")
