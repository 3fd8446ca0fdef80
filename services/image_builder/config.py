"""Settings of the image_builder service (env prefix TRELLIS_IMAGE_BUILDER_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_IMAGE_BUILDER_", extra="ignore")
