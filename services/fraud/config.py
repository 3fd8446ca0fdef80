"""Settings of the fraud service (env prefix TRELLIS_FRAUD_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_FRAUD_", extra="ignore")
