"""Settings of the crawler service (env prefix TRELLIS_CRAWLER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_CRAWLER_", extra="ignore")

    allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs the crawler may fetch from although they are private, "
        "loopback or link-local (TRELLIS_CRAWLER_ALLOWED_NETWORKS, e.g. 127.0.0.0/8).",
    )
    concurrency: int = Field(
        default=8, ge=1, le=256, description="URLs fetched at once per replica."
    )
