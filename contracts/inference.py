"""Inference messages: model configs and states, load/unload, and inference requests and replies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import Command, Message

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DataType = Literal["FP32", "FP16", "FP64", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES"]
Task = Literal["text_embedding", "text_classification", "tabular_scoring", "tensor"]
Provider = Literal["cpu", "cuda"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    name: str = Field(min_length=1, max_length=128)
    datatype: DataType
    shape: list[int] = Field(description="-1 for a dynamic dimension; the first is the batch.")


class Batching(_Strict):
    """Dynamic batching, as Triton's `dynamic_batching` block."""

    enabled: bool = True
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_queue_delay_us: int = Field(default=2000, ge=0, le=10_000_000)
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    instances: int = Field(default=1, ge=1, le=64, description="Batches run at the same time.")
    timeout_ms: int = Field(default=30_000, ge=1, le=600_000, description="Queue + run budget.")


class ModelConfig(_Strict):
    """Everything the server needs to load and serve one model version."""

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)
    task: Task
    description: str = Field(default="", max_length=2000)
    artifacts: dict[str, str] = Field(
        description="Object names in the model store by provider ('cpu', 'cuda'); 'cpu' serves both "
        "when there is no 'cuda' entry.",
    )
    tokenizer: str | None = Field(default=None, description="Object name of a tokenizer.json.")
    provider: Literal["auto", "cpu", "cuda"] = "auto"
    require_gpu: bool = Field(
        default=False, description="Fail to load rather than run on CPU when CUDA is unavailable."
    )
    gpu_mem_limit_mb: int | None = Field(default=None, ge=64, description="CUDA arena limit.")
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    batching: Batching = Field(default_factory=Batching)
    max_sequence_length: int = Field(default=256, ge=8, le=8192)
    truncation: Literal["truncate", "reject"] = "truncate"
    sequence_buckets: list[int] = Field(default_factory=lambda: [16, 32, 64, 128, 256, 512])
    labels: list[str] = Field(default_factory=list, description="Class names (classification).")
    feature_names: list[str] = Field(default_factory=list, description="Inputs of tabular models.")
    positive_class: int = Field(default=1, ge=0, description="Scored class of tabular models.")
    warmup: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if "cpu" not in self.artifacts and "cuda" not in self.artifacts:
            raise ValueError("artifacts needs a 'cpu' or 'cuda' entry")
        if self.task in ("text_embedding", "text_classification") and not self.tokenizer:
            raise ValueError(f"a {self.task} model needs a tokenizer")
        if self.task == "tabular_scoring" and not self.feature_names:
            raise ValueError("a tabular_scoring model needs feature_names")
        if self.task == "text_classification" and not self.labels:
            raise ValueError("a text_classification model needs labels")
        return self


class ModelState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADED = "UNLOADED"
    FAILED = "FAILED"


class HistogramSnapshot(BaseModel):
    """A Prometheus histogram read at one moment: cumulative counts per upper bound."""

    upper_bounds: list[float] = Field(default_factory=list, description="`le` of each bucket.")
    cumulative_counts: list[int] = Field(default_factory=list)
    count: int = 0
    sum: float = 0.0


class ModelStats(BaseModel):
    """What one replica has served of a model since it started."""

    requests: int = 0
    failures: int = 0
    rows: int = 0
    latency_s: HistogramSnapshot = Field(default_factory=HistogramSnapshot)
    queue_s: HistogramSnapshot = Field(default_factory=HistogramSnapshot)
    compute_s: HistogramSnapshot = Field(default_factory=HistogramSnapshot)
    batch_size: HistogramSnapshot = Field(default_factory=HistogramSnapshot)


class ModelStatus(Message):
    message_type: ClassVar[str] = "inference.v1.model_status"

    name: str
    version: int
    task: Task
    state: ModelState
    reason: str | None = None
    providers: list[str] = Field(
        default_factory=list, description="What the session really runs on."
    )
    loaded_at: datetime | None = None
    instance_id: str = ""
    config: ModelConfig
    stats: ModelStats | None = Field(
        default=None, description="Requests, latency and batch sizes served by this replica."
    )


class RegisterModelCommand(Command):
    """Register a version whose artifacts are already in the model store."""

    message_type: ClassVar[str] = "inference.v1.register_model_command"

    config: ModelConfig
    load: bool = True


class ModelRef(Message):
    """Names a model; `version` None means the version policy's choice (latest unless pinned)."""

    message_type: ClassVar[str] = "inference.v1.model_ref"

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int | None = Field(default=None, ge=1)


class LoadModelCommand(Command):
    message_type: ClassVar[str] = "inference.v1.load_model_command"

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int | None = Field(default=None, ge=1, description="Pin this version; None: latest.")


class UnloadModelCommand(Command):
    message_type: ClassVar[str] = "inference.v1.unload_model_command"

    name: str = Field(pattern=MODEL_NAME_PATTERN)


class ListModelsRequest(Message):
    message_type: ClassVar[str] = "inference.v1.list_models_request"


class ModelList(Message):
    message_type: ClassVar[str] = "inference.v1.model_list"

    models: list[ModelStatus] = Field(default_factory=list)


class Tensor(_Strict):
    """A tensor as the KServe v2 JSON protocol writes it: row-major flat data."""

    name: str = Field(min_length=1, max_length=128)
    datatype: DataType
    shape: list[int] = Field(max_length=8)
    data: list[Any] = Field(default_factory=list)


class InferRequest(Message):
    """One request: tensors, or texts, or rows, by the model's task."""

    message_type: ClassVar[str] = "inference.v1.infer_request"

    version: int | None = Field(default=None, ge=1)
    id: str | None = Field(default=None, max_length=128)
    inputs: list[Tensor] | None = None
    texts: list[str] | None = Field(default=None, max_length=4096)
    rows: list[dict[str, float | int | str | bool | None]] | None = Field(
        default=None, max_length=100_000
    )
    outputs: list[str] | None = Field(
        default=None, description="Tensor outputs to return (tensor task)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> InferRequest:
        given = [k for k in ("inputs", "texts", "rows") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of inputs, texts or rows")
        return self


class Classification(_Strict):
    label: str
    probabilities: dict[str, float]


class InferReply(Message):
    message_type: ClassVar[str] = "inference.v1.infer_reply"

    model: str
    version: int
    id: str | None = None
    outputs: list[Tensor] | None = None
    embeddings: list[list[float]] | None = None
    classifications: list[Classification] | None = None
    scores: list[float] | None = None
    truncated: list[bool] | None = None
    providers: list[str] = Field(default_factory=list)
