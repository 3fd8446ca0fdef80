"""Settings of the inference service (env prefix TRELLIS_INFERENCE_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_INFERENCE_", extra="ignore")

    default_models: bool = Field(
        default=True, description="Register the MiniLM embedding model on first start."
    )
    intra_op_threads: int = Field(
        default=0, ge=0, le=256, description="ONNX Runtime threads (0: all cores)."
    )
    executor_threads: int = Field(
        default=4, ge=1, le=256, description="Batches that may run at once."
    )
    reconcile_interval_s: float = Field(default=30.0, gt=0, le=3600)
