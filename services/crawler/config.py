"""Settings of the crawler service (env prefix TRELLIS_CRAWLER_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
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
    frontier_ack_wait_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long a fetched-but-unacknowledged URL waits before another replica "
        "gets it (a replica that died mid-fetch).",
    )
    schedule_check_s: float = Field(
        default=30.0, gt=0, le=3600, description="How often scheduled syncs are looked for."
    )
    stall_after_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="A sync with an empty frontier and no progress for this long is finished.",
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Fernet key sealing data source credentials (TRELLIS_CRAWLER_SECRETS_KEY); "
        "generated once under <data dir>/crawler/secrets.key if unset. Replicas on several "
        "machines need the same key.",
    )
    region: str = Field(default="us-east-1", description="Region written into secret ARNs.")
    account_id: str = Field(
        default="000000000000", pattern=r"^\d{12}$", description="Account in secret ARNs."
    )
