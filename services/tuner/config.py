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
    max_simulations: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Simulator jobs this replica runs at once (a thread each); more wait.",
    )
    simulation_save_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a running simulation saves its progress (and renews its lease).",
    )
    simulation_lease_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description=(
            "How long a simulation's replica may stay silent before another replica (or a"
            " restarted tuner) takes the job over and replays it."
        ),
    )
