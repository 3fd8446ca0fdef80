"""Settings of the tuner service (env prefix TRELLIS_TUNER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_TUNER_", extra="ignore")

    tick_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often running jobs are looked at (wall-clock limits, free slots).",
    )
    local_pool_slots: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Slots of the `local` worker pool `make run` starts (default: CPU count).",
    )
