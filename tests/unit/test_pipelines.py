"""Pipelines on their own: request -> feeds -> replies, with a stand-in runner (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from contracts.inference import InferRequest, ModelConfig, Tensor, TensorSpec
from runtime.errors import ValidationFailed
from services.inference.domain.pipelines import (
    Prepared,
    TabularScoring,
    TensorPipeline,
    concat_rows,
    mean_pool,
    softmax,
    split_rows,
)


@dataclass
class LinearRunner:
    """y = x @ w: enough to check batching arithmetic."""

    w: np.ndarray
    input_names: list[str] = field(default_factory=lambda: ["x"])
    output_names: list[str] = field(default_factory=lambda: ["y"])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feeds["x"] @ self.w}


def tensor_config(**overrides: object) -> ModelConfig:
    base: dict[str, object] = {
        "name": "linear",
        "version": 1,
        "task": "tensor",
        "artifacts": {"cpu": "linear/1/model.onnx"},
        "inputs": [TensorSpec(name="x", datatype="FP32", shape=[-1, 3])],
        "outputs": [TensorSpec(name="y", datatype="FP32", shape=[-1, 2])],
    }
    return ModelConfig.model_validate({**base, **overrides})


def test_batched_tensor_requests_get_their_own_rows_back() -> None:
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    pipeline = TensorPipeline(tensor_config(), LinearRunner(w))
    requests = [
        InferRequest(
            inputs=[Tensor(name="x", datatype="FP32", shape=[n, 3], data=[float(n)] * (3 * n))]
        )
        for n in (1, 2, 3)
    ]
    prepared = [pipeline.prepare(r) for r in requests]
    outputs = pipeline.run(prepared)
    for n, request, item, out in zip((1, 2, 3), requests, prepared, outputs, strict=True):
        reply = pipeline.reply(request, item, out)
        assert reply.outputs is not None and reply.outputs[0].shape == [n, 2]
        expected = (np.full((n, 3), float(n), dtype=np.float32) @ w).reshape(-1).tolist()
        assert reply.outputs[0].data == expected


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (Tensor(name="x", datatype="INT64", shape=[1, 3], data=[1, 2, 3]), "must be FP32"),
        (Tensor(name="x", datatype="FP32", shape=[1, 4], data=[1.0] * 4), "must have shape"),
        (Tensor(name="x", datatype="FP32", shape=[1, 3], data=[1.0] * 2), "needs 3 values"),
        (Tensor(name="z", datatype="FP32", shape=[1, 3], data=[1.0] * 3), "inputs must be"),
        (Tensor(name="x", datatype="FP32", shape=[1, 3], data=["a", "b", "c"]), "not FP32"),
    ],
)
def test_bad_tensors_are_named(tensor: Tensor, message: str) -> None:
    pipeline = TensorPipeline(tensor_config(), LinearRunner(np.ones((3, 2), dtype=np.float32)))
    with pytest.raises(ValidationFailed, match=message):
        pipeline.prepare(InferRequest(inputs=[tensor]))


def test_tabular_rows_follow_feature_order_and_missing_is_nan() -> None:
    config = ModelConfig(
        name="fraud",
        version=1,
        task="tabular_scoring",
        artifacts={"cpu": "f/1/m.onnx"},
        feature_names=["amount", "age"],
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 2])],
    )

    class Probabilities:
        input_names = ["input"]
        output_names = ["label", "probabilities"]

        def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            x = feeds["input"]
            p = np.nan_to_num(x[:, 0:1]) / 100.0
            return {
                "label": (p > 0.5).astype(np.int64).ravel(),
                "probabilities": np.hstack([1 - p, p]),
            }

    pipeline = TabularScoring(config, Probabilities())
    request = InferRequest(rows=[{"amount": 80, "age": 3}, {"age": 1}])
    item = pipeline.prepare(request)
    assert np.isnan(item.feeds["input"][1, 0]) and item.feeds["input"][0, 1] == 3
    reply = pipeline.reply(request, item, pipeline.run([item])[0])
    assert reply.scores == pytest.approx([0.8, 0.0])
    with pytest.raises(ValidationFailed, match="unknown features"):
        pipeline.prepare(InferRequest(rows=[{"colour": 1}]))
    with pytest.raises(ValidationFailed, match="must be numeric"):
        pipeline.prepare(InferRequest(rows=[{"amount": "lots"}]))


def test_text_feeds_are_padded_to_the_longest_item() -> None:
    a = Prepared({"input_ids": np.ones((1, 16), dtype=np.int64)}, 1)
    b = Prepared({"input_ids": np.ones((2, 32), dtype=np.int64)}, 2)
    feeds = concat_rows([a, b])
    assert feeds["input_ids"].shape == (3, 32) and feeds["input_ids"][0, 16:].sum() == 0
    parts = split_rows({"out": np.arange(3)}, [a, b])
    assert [p["out"].tolist() for p in parts] == [[0], [1, 2]]


def test_mean_pool_ignores_padding_and_normalises() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    pooled = mean_pool(hidden, mask)
    assert pooled.tolist() == [[1.0, 0.0]]
    assert softmax(np.array([[0.0, 0.0]])).tolist() == [[0.5, 0.5]]


def test_request_must_carry_exactly_one_kind_of_input() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        InferRequest(texts=["a"], rows=[{}])
    with pytest.raises(ValueError, match="exactly one"):
        InferRequest()


def test_texts_are_run_per_padded_width() -> None:
    from services.inference.domain.pipelines import TextEmbedding

    widths: list[int] = []

    class Pooled:
        input_names = ["input_ids", "attention_mask"]
        output_names = ["sentence_embedding"]

        def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            widths.append(feeds["input_ids"].shape[1])
            return {
                "sentence_embedding": np.ones((feeds["input_ids"].shape[0], 2), dtype=np.float32)
            }

    config = ModelConfig(
        name="emb",
        version=1,
        task="text_embedding",
        artifacts={"cpu": "emb/1/m.onnx"},
        tokenizer="t",
    )
    pipeline = TextEmbedding(config, Pooled(), tokenizer=None)  # type: ignore[arg-type]
    short = Prepared(
        {"input_ids": np.ones((2, 16), np.int64), "attention_mask": np.ones((2, 16), np.int64)}, 2
    )
    long = Prepared(
        {"input_ids": np.ones((1, 32), np.int64), "attention_mask": np.ones((1, 32), np.int64)}, 1
    )
    outputs = pipeline.run([short, long, short])
    assert sorted(widths) == [16, 32] and [o["sentence_embedding"].shape[0] for o in outputs] == [
        2,
        1,
        2,
    ]
