"""Settings of the gateway (env prefix TRELLIS_GATEWAY_) and the bootstrap credentials (TRELLIS_ADMIN_*)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_upload_bytes: int = Field(
        default=1024**3, ge=1024, description="Limit for model uploads (POST /v1/models)."
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Larger bodies get 413."
    )
    request_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Bus request timeout.")
    health_poll_s: float = Field(
        default=0.5, gt=0, le=10, description="How long /readyz waits for replicas."
    )
    max_clock_skew_s: int = Field(default=900, ge=1, description="SigV4 X-Amz-Date tolerance.")
    sealing_key: SecretStr | None = Field(
        default=None,
        description="Fernet key sealing AWS secret keys at rest; generated under the data dir if unset.",
    )


class BootstrapSettings(BaseSettings):
    """The bootstrap admin credentials named in DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="TRELLIS_", extra="ignore")

    admin_api_key: SecretStr | None = None
    admin_access_key_id: str | None = None
    admin_secret_access_key: SecretStr | None = None
