"""Settings of the fraud service (env prefix TRELLIS_FRAUD_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_FRAUD_", extra="ignore")

    region: str = Field(default="us-east-1", description="Region written into ARNs.")
    account_id: str = Field(
        default="000000000000", pattern=r"^\d{12}$", description="Account in ARNs."
    )
    flush_interval_s: float = Field(
        default=2.0, gt=0, le=600, description="Event store flush period."
    )
    import_roots: list[Path] = Field(
        default_factory=list,
        description="Directories file:// import and training paths may read from (empty: the data dir's "
        "fraud/imports only).",
    )
    training_threads: int = Field(
        default=0, ge=0, le=256, description="LightGBM threads (0: all cores)."
    )
    scoring: Literal["local", "inference"] = Field(
        default="local",
        description="How GetEventPrediction runs an ACTIVE model: 'local' in this process's ONNX "
        "Runtime (the same model and providers the inference service loads; no network hop), "
        "'inference' as a request to the inference service. Batch scoring always uses the "
        "inference service.",
    )
