"""The real inference service in-process: model store, ONNX Runtime, batching, failures, unloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contracts import subjects, topology
from contracts.errors import ErrorCode
from contracts.inference import (
    InferReply,
    InferRequest,
    ListModelsRequest,
    LoadModelCommand,
    ModelConfig,
    ModelList,
    ModelRef,
    ModelState,
    ModelStatus,
    RegisterModelCommand,
    Tensor,
    TensorSpec,
    UnloadModelCommand,
)
from runtime.bus import Bus
from runtime.errors import RemoteError
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.inference.adapters.model_store import ModelStore, open_artifacts
from services.inference.app import build
from services.inference.config import Settings
from tests.conftest import forget_models

W = np.arange(8, dtype=np.float32).reshape(4, 2) / 10
B = np.array([0.5, -0.5], dtype=np.float32)


def linear_model() -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized


def linear_config(name: str, **overrides: object) -> ModelConfig:
    base: dict[str, object] = {
        "name": name,
        "version": 1,
        "task": "tensor",
        "artifacts": {"cpu": f"{name}/1/model.onnx"},
        "outputs": [TensorSpec(name="y", datatype="FP32", shape=[-1, 2])],
        "batching": {"max_batch_size": 16, "max_queue_delay_us": 20_000},
    }
    return ModelConfig.model_validate({**base, **overrides})


@pytest.fixture
async def inference(
    nats_url: str, data_dir: Path
) -> AsyncIterator[tuple[Bus, Service, ModelStore]]:
    service_bus = await Bus.connect(nats_url, source="inference")
    client = await Bus.connect(nats_url, source="client")
    service = await build(
        service_bus, Settings(default_models=False), SharedSettings(data_dir=data_dir)
    )
    await service.start()
    kv = await ensure_bucket(client.js, topology.INFERENCE_MODELS)
    store = ModelStore(kv, await open_artifacts(client.js))
    yield client, service, store
    await service.stop()
    await forget_models(client)
    await service_bus.close()
    await client.close()


async def register(
    client: Bus, store: ModelStore, config: ModelConfig, model: bytes
) -> ModelStatus:
    await store.put_artifact(config.name, config.version, "model.onnx", model)
    return await client.request(
        subjects.INFERENCE_REGISTER_MODEL,
        RegisterModelCommand(config=config),
        ModelStatus,
        timeout_s=30,
    )


def x_tensor(rows: int, value: float = 1.0, name: str = "x", width: int = 4) -> Tensor:
    return Tensor(name=name, datatype="FP32", shape=[rows, width], data=[value] * (rows * width))


async def test_concurrent_requests_are_batched_and_answered_correctly(
    inference: tuple[Bus, Service, ModelStore], unique: str
) -> None:
    client, service, store = inference
    name = f"lin-{unique}"
    status = await register(client, store, linear_config(name), linear_model())
    assert status.state is ModelState.READY and status.providers == ["CPUExecutionProvider"]
    health = await service.health()
    assert health.details["models"][name] == {
        "version": 1,
        "state": "READY",
        "providers": ["CPUExecutionProvider"],
    }

    async def call(i: int) -> InferReply:
        request = InferRequest(inputs=[x_tensor(1 + i % 3, float(i))], id=str(i))
        return await client.request(subjects.model_infer(name), request, InferReply, timeout_s=10)

    replies = await asyncio.gather(*(call(i) for i in range(24)))
    for i, reply in enumerate(replies):
        rows = 1 + i % 3
        expected = (np.full((rows, 4), float(i), dtype=np.float32) @ W + B).reshape(-1)
        assert reply.id == str(i) and reply.outputs is not None
        assert np.allclose(reply.outputs[0].data, expected, atol=1e-5)
    metrics = service.metrics.render().decode()
    sizes = [
        line
        for line in metrics.splitlines()
        if line.startswith("trellis_inference_batch_size_count")
    ]
    batches = float(sizes[0].rsplit(" ", 1)[1])
    assert batches < 24  # several requests shared a run
    assert f'trellis_inference_rows_total{{model="{name}"}} 48.0' in metrics


async def test_a_bad_request_fails_alone_inside_a_batch(
    inference: tuple[Bus, Service, ModelStore], unique: str
) -> None:
    client, _, store = inference
    name = f"lin-{unique}"
    await register(client, store, linear_config(name), linear_model())
    good = [InferRequest(inputs=[x_tensor(2)]) for _ in range(5)]
    bad = InferRequest(inputs=[x_tensor(2, width=3)])  # no declared inputs: only ONNX Runtime knows
    results = await asyncio.gather(
        *(
            client.request(subjects.model_infer(name), r, InferReply, timeout_s=10)
            for r in [*good, bad]
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, InferReply) for r in results[:5])
    error = results[5]
    assert isinstance(error, RemoteError) and error.code is ErrorCode.VALIDATION
    assert "could not run this input" in error.message


async def test_unload_load_unknown_and_versions(
    inference: tuple[Bus, Service, ModelStore], unique: str
) -> None:
    client, _, store = inference
    name = f"lin-{unique}"
    await register(client, store, linear_config(name), linear_model())
    infer = InferRequest(inputs=[x_tensor(1)])
    with pytest.raises(RemoteError) as unknown:
        await client.request(subjects.model_infer(f"nope-{unique}"), infer, InferReply, timeout_s=5)
    assert unknown.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(RemoteError) as wrong_version:
        await client.request(
            subjects.model_infer(name),
            infer.model_copy(update={"version": 7}),
            InferReply,
            timeout_s=5,
        )
    assert wrong_version.value.code is ErrorCode.NOT_FOUND

    unloaded = await client.request(
        subjects.INFERENCE_UNLOAD_MODEL, UnloadModelCommand(name=name), ModelStatus, timeout_s=10
    )
    assert unloaded.state is ModelState.UNLOADED
    with pytest.raises(RemoteError) as gone:
        await client.request(subjects.model_infer(name), infer, InferReply, timeout_s=5)
    assert gone.value.code is ErrorCode.UNAVAILABLE

    loaded = await client.request(
        subjects.INFERENCE_LOAD_MODEL, LoadModelCommand(name=name), ModelStatus, timeout_s=30
    )
    assert loaded.state is ModelState.READY
    assert (
        await client.request(subjects.model_infer(name), infer, InferReply, timeout_s=5)
    ).outputs

    listed = await client.request(subjects.INFERENCE_LIST_MODELS, ListModelsRequest(), ModelList)
    assert name in {m.name for m in listed.models}


async def test_a_gpu_only_model_fails_loudly_on_a_cpu_replica(
    inference: tuple[Bus, Service, ModelStore], unique: str
) -> None:
    client, _, store = inference
    name = f"gpu-{unique}"
    status = await register(client, store, linear_config(name, require_gpu=True), linear_model())
    assert status.state is ModelState.FAILED and "requires the GPU" in (status.reason or "")
    with pytest.raises(RemoteError) as caught:
        await client.request(
            subjects.model_infer(name), InferRequest(inputs=[x_tensor(1)]), InferReply
        )
    assert caught.value.code is ErrorCode.UNAVAILABLE and "FAILED" in caught.value.message


async def test_registering_needs_the_artifact_and_is_idempotent(
    inference: tuple[Bus, Service, ModelStore], unique: str
) -> None:
    client, _, store = inference
    name = f"lin-{unique}"
    with pytest.raises(RemoteError) as missing:
        await client.request(
            subjects.INFERENCE_REGISTER_MODEL,
            RegisterModelCommand(config=linear_config(name)),
            ModelStatus,
        )
    assert missing.value.code is ErrorCode.NOT_FOUND and "upload it first" in missing.value.message
    first = await register(client, store, linear_config(name), linear_model())
    again = await register(client, store, linear_config(name), linear_model())
    assert first.version == again.version == 1
    with pytest.raises(RemoteError) as changed:
        await register(client, store, linear_config(name, description="other"), linear_model())
    assert changed.value.code is ErrorCode.CONFLICT


async def test_lightgbm_scores_match_the_booster(
    inference: tuple[Bus, Service, ModelStore], unique: str
) -> None:
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    client, _, store = inference
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=2000) > 0.8).astype(int)
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 15},
        lightgbm.Dataset(x, y),
        num_boost_round=40,
    )
    onnx_model = convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, 5]))], zipmap=False
    )
    features = [f"f{i}" for i in range(5)]
    config = ModelConfig(
        name=f"gbm-{unique}",
        version=1,
        task="tabular_scoring",
        artifacts={"cpu": f"gbm-{unique}/1/model.onnx"},
        feature_names=features,
        batching={"max_batch_size": 1024},
    )
    status = await register(client, store, config, onnx_model.SerializeToString())
    assert status.state is ModelState.READY, status.reason
    sample = x[:50]
    rows = [dict(zip(features, map(float, row), strict=True)) for row in sample]
    reply = await client.request(
        subjects.model_infer(config.name), InferRequest(rows=rows), InferReply
    )
    assert reply.scores is not None
    assert np.allclose(reply.scores, booster.predict(sample), atol=1e-5)
    too_many = InferRequest(rows=rows * 30)
    with pytest.raises(RemoteError) as oversized:
        await client.request(subjects.model_infer(config.name), too_many, InferReply)
    assert (
        oversized.value.code is ErrorCode.VALIDATION
        and "max batch size 1024" in oversized.value.message
    )


@pytest.mark.slow
async def test_the_default_minilm_model_embeds_text(nats_url: str, data_dir: Path) -> None:
    service_bus = await Bus.connect(nats_url, source="inference")
    client = await Bus.connect(nats_url, source="client")
    service = await build(service_bus, Settings(), SharedSettings(data_dir=data_dir))
    await service.start()
    try:
        for _ in range(240):
            try:
                status = await client.request(
                    subjects.INFERENCE_GET_MODEL, ModelRef(name="all-minilm-l6-v2"), ModelStatus
                )
                if status.state is ModelState.READY:
                    break
            except RemoteError:
                pass
            await asyncio.sleep(0.25)
        assert status.state is ModelState.READY, status.reason
        texts = [
            "How do I reset my password?",
            "I forgot my password and need to change it.",
            "The weather in Lisbon is sunny today.",
            "word " * 400,
        ]
        reply = await client.request(
            subjects.model_infer("all-minilm-l6-v2"),
            InferRequest(texts=texts),
            InferReply,
            timeout_s=30,
        )
        vectors = np.array(reply.embeddings)
        assert vectors.shape == (4, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
        similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
        assert similar > 0.6 > unrelated
        assert reply.truncated == [False, False, False, True]
    finally:
        await service.stop()
        await forget_models(client)
        await service_bus.close()
        await client.close()
