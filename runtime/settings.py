"""Settings: the shared `TRELLIS_*` ones, and a base for each service's `TRELLIS_<NAME>_*` class."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class SharedSettings(BaseSettings):
    """Settings every process reads, named in DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="TRELLIS_", extra="ignore")

    nats_url: str | None = Field(
        default=None, description="Use this NATS instead of starting the embedded one."
    )
    data_dir: Path = Field(default=Path("var"), description="Where embedded state lives.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The processes' event loop: uvloop (libuv; less CPU per message and request) "
        "or the standard library's.",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="JetStream replicas for streams and buckets (3 on a cluster).",
    )

    def resolved_nats_url(self) -> str:
        return self.nats_url or DEFAULT_NATS_URL


class ServiceSettings(BaseSettings):
    """Knobs every service has; subclasses set `env_prefix` to `TRELLIS_<NAME>_`."""

    model_config = SettingsConfigDict(env_prefix="TRELLIS_SERVICE_", extra="ignore")

    instance_id: str | None = Field(
        default=None, description="Replica id; defaults to host-pid-random."
    )
    ops_host: str = Field(
        default="127.0.0.1", description="Address of the /metrics, /healthz, /readyz server."
    )
    ops_port: int = Field(default=0, ge=0, le=65535, description="0 disables the ops HTTP server.")
    heartbeat_s: float = Field(default=5.0, gt=0, le=60)
    drain_timeout_s: float = Field(default=20.0, gt=0, le=600)
    request_concurrency: int = Field(default=64, ge=1, le=10_000)
