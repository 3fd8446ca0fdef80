"""Settings of the indexer service (env prefix TRELLIS_INDEXER_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_INDEXER_", extra="ignore")

    region: str = Field(default="us-east-1", description="Region written into ARNs.")
    account_id: str = Field(
        default="000000000000", pattern=r"^\d{12}$", description="Account in ARNs."
    )
    embedder: Literal["inference", "local"] = Field(
        default="inference",
        description="Where embeddings come from: the inference service over the bus, or "
        "the same ONNX Runtime pipeline in this process.",
    )
    hnsw_threshold: int = Field(
        default=20_000,
        ge=1,
        description="Passages per index from which dense search uses HNSW instead of exact search.",
    )
    commit_interval_s: float = Field(
        default=0.2, gt=0, le=60, description="How often applied documents become searchable."
    )
    snapshot_interval_s: float = Field(
        default=600.0,
        gt=0,
        description="How often a replica considers writing a snapshot of its indexes.",
    )
    snapshot_min_messages: int = Field(
        default=1000,
        ge=1,
        description="DOCUMENTS messages applied since the latest snapshot before a new one is due.",
    )
