"""First start: build all-MiniLM-L6-v2 from its packaged weights (ONNX int8 for CPU, fp16 for CUDA)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import cast

from contracts.inference import Batching, ModelConfig, TensorSpec
from runtime.errors import NotFound
from services.inference.adapters import bert_onnx
from services.inference.adapters.model_store import ModelStore
from services.inference.adapters.onnx_session import OnnxRunner
from services.inference.adapters.tokenizer import TextTokenizer
from services.inference.domain.pipelines import Pipeline, pipeline_for
from services.inference.domain.policy import ModelPolicy

MINILM = "all-minilm-l6-v2"


def build_minilm_artifacts() -> dict[str, bytes]:
    """tokenizer.json, model.int8.onnx and model.fp16.onnx, built without torch."""
    source = bert_onnx.minilm_dir()
    config = bert_onnx.BertConfig.from_json(source / "config.json")
    weights = bert_onnx.load_weights(source / "model.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        int8 = Path(tmp) / "model.int8.onnx"
        bert_onnx.save(bert_onnx.build_bert_onnx(config, weights), fp32)
        bert_onnx.quantize_int8(fp32, int8)
        fp16 = bert_onnx.build_bert_onnx(config, weights, dtype="fp16").SerializeToString()
        return {
            "tokenizer.json": (source / "tokenizer.json").read_bytes(),
            "model.int8.onnx": int8.read_bytes(),
            "model.fp16.onnx": fp16,
        }


def minilm_config(store: ModelStore) -> ModelConfig:
    def name(file: str) -> str:
        return store.artifact_name(MINILM, 1, file)

    ids = [-1, -1]
    return ModelConfig(
        name=MINILM,
        version=1,
        task="text_embedding",
        description="sentence-transformers/all-MiniLM-L6-v2: 384-d sentence embeddings (mean-pooled, normalised)",
        artifacts={"cpu": name("model.int8.onnx"), "cuda": name("model.fp16.onnx")},
        tokenizer=name("tokenizer.json"),
        inputs=[
            TensorSpec(name="input_ids", datatype="INT64", shape=ids),
            TensorSpec(name="attention_mask", datatype="INT64", shape=ids),
            TensorSpec(name="token_type_ids", datatype="INT64", shape=ids),
        ],
        outputs=[TensorSpec(name="sentence_embedding", datatype="FP32", shape=[-1, 384])],
        batching=Batching(max_batch_size=64, max_queue_delay_us=2000, instances=2),
        max_sequence_length=256,
        sequence_buckets=[16, 32, 64, 128, 256],
    )


async def ensure_minilm(store: ModelStore) -> ModelConfig | None:
    """Register MiniLM v1 unless it is registered; returns the config when this call added it."""
    try:
        await store.config(MINILM, 1)
        return None
    except NotFound:
        pass
    config = minilm_config(store)
    artifacts = await asyncio.to_thread(build_minilm_artifacts)
    for file, data in artifacts.items():
        await store.put_artifact(MINILM, 1, file, data)
    await store.register(config)
    await store.set_policy(MINILM, ModelPolicy(loaded=True))
    return config


class _ArtifactNames:
    """Names the config would give artifacts in a store; the local pipeline needs only names."""

    @staticmethod
    def artifact_name(name: str, version: int, file: str) -> str:
        return f"{name}/{version}/{file}"


def local_minilm_pipeline(
    *, intra_op_threads: int = 0, artifacts: dict[str, bytes] | None = None
) -> Pipeline:
    """The served MiniLM text-embedding pipeline (int8 ONNX on CPU), built in this process."""
    artifacts = artifacts or build_minilm_artifacts()
    config = minilm_config(cast(ModelStore, _ArtifactNames()))
    runner = OnnxRunner(
        artifacts["model.int8.onnx"], config, has_cuda=False, intra_op_threads=intra_op_threads
    )
    tokenizer = TextTokenizer.from_bytes(
        artifacts["tokenizer.json"],
        max_length=config.max_sequence_length,
        buckets=config.sequence_buckets,
    )
    return pipeline_for(config, runner, tokenizer)
