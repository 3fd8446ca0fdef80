"""Settings of the image_builder service (env prefix TRELLIS_IMAGE_BUILDER_)."""

from __future__ import annotations

import platform
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


def host_architecture() -> str:
    """The OCI name of this machine's architecture (amd64, arm64, ...)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_IMAGE_BUILDER_", extra="ignore")

    registry: str = Field(
        default="127.0.0.1:5050",
        description="host[:port] of the OCI registry builds are pushed to (the embedded stack "
        "starts one on loopback).",
    )
    registry_tls_verify: bool = Field(
        default=False,
        description="Verify the registry's TLS certificate (a loopback one has none).",
    )
    registry_username: str | None = Field(default=None, description="Registry user, if it asks.")
    registry_password: SecretStr | None = Field(default=None, description="Registry password.")
    work_dir: Path | None = Field(
        default=None,
        description="buildah storage and per-build directories; default <data dir>/image_builder.",
    )
    storage_driver: str = Field(
        default="vfs",
        description="buildah storage driver (vfs works everywhere; overlay is faster).",
    )
    max_concurrent_builds: int = Field(
        default=2, ge=1, le=64, description="Builds run at once per replica; the rest queue."
    )
    build_timeout_s: float = Field(default=3600.0, gt=0, le=86400)
    max_context_mb: int = Field(
        default=512, ge=1, le=16384, description="Largest build context (tar) accepted."
    )
    max_log_bytes: int = Field(
        default=16 * 1024 * 1024, ge=4096, description="A build's log is cut beyond this."
    )
    platform_architecture: str = Field(
        default_factory=host_architecture,
        description="The architecture domains run; an image built for another one fails validation.",
    )
    rstudio_version: str = Field(
        default="2022.02.2-485.pro2",
        description="The RStudio Workbench version domains run; RSession images must match it.",
    )
    region: str = Field(default="us-east-1", description="Region named in ARNs.")
    account_id: str = Field(default="000000000000", description="Account named in ARNs.")
