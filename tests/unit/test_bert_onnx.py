"""Checks the torch-free BERT ONNX builder and tokenizer against transformers/torch references."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from services.inference.adapters.bert_onnx import (
    BERT_BASE,
    BertConfig,
    build_bert_onnx,
    load_weights,
    minilm_dir,
    quantize_int8,
    random_weights,
    save,
)
from services.inference.adapters.tokenizer import Encoded, TextTokenizer, TextTooLong

pytestmark = pytest.mark.slow

SENTENCES = [
    "Hello world.",
    "Trellis serves sentence embeddings from an ONNX Runtime model server.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates "
    "by half a percentage point, surprising analysts who had expected a smaller move.",
    "What is the capital of France?",
    "Fraud detection flags unusual card transactions within milliseconds.",
]

TINY = BertConfig(
    vocab_size=50,
    hidden_size=16,
    num_layers=2,
    num_heads=4,
    intermediate_size=32,
    max_position_embeddings=24,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
)


def _tiny_feed() -> dict[str, np.ndarray]:
    ids = np.array([[1, 5, 9, 2], [1, 7, 2, 0]], dtype=np.int64)
    mask = (ids > 0).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _session(model: Path | onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, batch: Encoded) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, batch.feed()), strict=True))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dot = (a64 * b64).sum(axis=-1)
    return np.asarray(dot / (np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)))


def _mean_pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool) -> np.ndarray:
    """sentence-transformers Pooling(mean) followed, optionally, by Normalize."""
    weight = mask[..., None].astype(np.float64)
    pooled = (hidden * weight).sum(axis=1) / np.maximum(weight.sum(axis=1), 1e-9)
    if normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.asarray(pooled)


@pytest.fixture(scope="module")
def transformers() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        import transformers as module

        yield module


@pytest.fixture(scope="module")
def minilm() -> Path:
    return minilm_dir()


@pytest.fixture(scope="module")
def tokenizer(minilm: Path) -> TextTokenizer:
    return TextTokenizer(minilm / "tokenizer.json", max_length=128)


@pytest.fixture(scope="module")
def batch(tokenizer: TextTokenizer) -> Encoded:
    return tokenizer.encode(SENTENCES)


@pytest.fixture(scope="module")
def fp32_path(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = BertConfig.from_json(minilm / "config.json")
    model = build_bert_onnx(
        config, load_weights(minilm), outputs=("last_hidden_state", "sentence_embedding")
    )
    path = tmp_path_factory.mktemp("minilm") / "fp32.onnx"
    save(model, path)
    return path


@pytest.fixture(scope="module")
def fp32_out(fp32_path: Path, batch: Encoded) -> dict[str, np.ndarray]:
    return _run(_session(fp32_path), batch)


@pytest.fixture(scope="module")
def torch_hidden(transformers: ModuleType, minilm: Path, batch: Encoded) -> np.ndarray:
    import torch

    torch.set_num_threads(2)
    model: Any = transformers.AutoModel.from_pretrained(str(minilm))
    model.eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.feed().items()})
    return np.asarray(out.last_hidden_state.numpy())


def test_config_is_read_from_hf_json(minilm: Path) -> None:
    config = BertConfig.from_json(minilm / "config.json")
    assert config == BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_layers=6,
        num_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
    )


def test_minilm_graph_is_valid_with_dynamic_batch_and_sequence(fp32_path: Path) -> None:
    onnx.checker.check_model(str(fp32_path), full_check=True)
    graph = onnx.load(str(fp32_path), load_external_data=False).graph

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, i.type.tensor_type.elem_type, dims(i)) for i in graph.input] == [
        (name, onnx.TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert [(o.name, o.type.tensor_type.elem_type, dims(o)) for o in graph.output] == [
        ("last_hidden_state", onnx.TensorProto.FLOAT, ["batch", "sequence", 384]),
        ("sentence_embedding", onnx.TensorProto.FLOAT, ["batch", 384]),
    ]


def test_minilm_last_hidden_state_matches_transformers(
    fp32_out: dict[str, np.ndarray], torch_hidden: np.ndarray, batch: Encoded
) -> None:
    real = batch.attention_mask.astype(bool)
    assert not batch.attention_mask.all()  # the batch really has padding
    diff = np.abs(fp32_out["last_hidden_state"] - torch_hidden)[real]
    assert diff.max() < 1e-4


def test_minilm_sentence_embedding_matches_sentence_transformers_formula(
    fp32_out: dict[str, np.ndarray], torch_hidden: np.ndarray, batch: Encoded
) -> None:
    embedding = fp32_out["sentence_embedding"]
    reference = _mean_pool(torch_hidden, batch.attention_mask, normalize=True)
    assert embedding.dtype == np.float32
    assert _cosine(embedding, reference).min() > 0.99999
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_int8_model_is_small_and_close_to_fp32(
    fp32_path: Path, fp32_out: dict[str, np.ndarray], batch: Encoded
) -> None:
    int8_path = fp32_path.with_name("int8.onnx")
    quantize_int8(fp32_path, int8_path)
    out = _run(_session(int8_path), batch)
    cosine = _cosine(out["sentence_embedding"], fp32_out["sentence_embedding"])
    assert cosine.min() > 0.98, cosine
    assert int8_path.stat().st_size < 0.4 * fp32_path.stat().st_size


def test_fp16_model_is_valid_and_close_to_fp32(
    minilm: Path, fp32_out: dict[str, np.ndarray], batch: Encoded
) -> None:
    config = BertConfig.from_json(minilm / "config.json")
    model = build_bert_onnx(config, load_weights(minilm), dtype="fp16")
    onnx.checker.check_model(model, full_check=True)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    try:
        session = _session(model)
        out = _run(session, batch)
    except ort.capi.onnxruntime_pybind11_state.NotImplemented as exc:
        pytest.skip(f"onnxruntime CPU cannot run this fp16 graph (it targets CUDA): {exc}")
    embedding = out["sentence_embedding"]
    assert embedding.dtype == np.float32
    assert _cosine(embedding, fp32_out["sentence_embedding"]).min() > 0.999


def test_bert_base_sized_random_model_builds_and_runs() -> None:
    model = build_bert_onnx(BERT_BASE, random_weights(BERT_BASE, seed=1))
    onnx.checker.check_model(model)
    ids = np.array([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]], np.int64)
    mask = (np.arange(6) < np.array([[6], [3]])).astype(np.int64)
    (embedding,) = _session(model).run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )
    assert embedding.shape == (2, BERT_BASE.hidden_size)
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_unnormalized_embedding_is_the_masked_mean_of_hidden_states() -> None:
    model = build_bert_onnx(
        TINY,
        random_weights(TINY, seed=3),
        outputs=("sentence_embedding", "last_hidden_state"),
        normalize=False,
    )
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["sentence_embedding", "last_hidden_state"]
    rng = np.random.default_rng(0)
    ids = rng.integers(1, TINY.vocab_size, size=(3, 7)).astype(np.int64)
    mask = (np.arange(7) < np.array([[7], [4], [1]])).astype(np.int64)
    types = (np.arange(7) >= 3).astype(np.int64)[None, :].repeat(3, axis=0)
    embedding, hidden = _session(model).run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    )
    np.testing.assert_allclose(embedding, _mean_pool(hidden, mask, normalize=False), atol=1e-5)
    # Padding must not leak into real tokens: the lone token of row 2 is unaffected by the rest.
    alone, _ = _session(model).run(
        None,
        {"input_ids": ids[2:, :1], "attention_mask": mask[2:, :1], "token_type_ids": types[2:, :1]},
    )
    np.testing.assert_allclose(alone[0], embedding[2], atol=1e-5)


def test_save_spills_weights_to_a_data_file_past_the_proto_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.inference.adapters.bert_onnx as bert_onnx

    model = build_bert_onnx(TINY, random_weights(TINY, seed=4))
    expected = _session(model).run(None, _tiny_feed())[0]
    monkeypatch.setattr(bert_onnx, "_PROTO_LIMIT", 1024)
    path = tmp_path / "tiny.onnx"
    save(model, path)
    assert (tmp_path / "tiny.onnx.data").stat().st_size >= 50 * 16 * 4  # at least the word table
    np.testing.assert_allclose(_session(path).run(None, _tiny_feed())[0], expected, atol=1e-6)
    quantize_int8(path, tmp_path / "int8" / "tiny.onnx")
    assert _session(tmp_path / "int8" / "tiny.onnx").run(None, _tiny_feed())[0].shape == (2, 16)


def test_builder_rejects_bad_arguments() -> None:
    weights = random_weights(TINY)
    with pytest.raises(ValueError, match="outputs"):
        build_bert_onnx(TINY, weights, outputs=("pooler_output",))
    with pytest.raises(ValueError, match="opset"):
        build_bert_onnx(TINY, weights, opset=16)
    del weights["encoder.layer.1.output.dense.weight"]
    with pytest.raises(ValueError, match=r"missing encoder\.layer\.1\.output\.dense\.weight"):
        build_bert_onnx(TINY, weights)


def test_tokenizer_pads_to_the_smallest_bucket(tokenizer: TextTokenizer, batch: Encoded) -> None:
    assert [tokenizer.bucket(n) for n in (0, 1, 16, 17, 64, 65, 128)] == [
        16,
        16,
        16,
        32,
        64,
        128,
        128,
    ]
    with pytest.raises(ValueError):
        tokenizer.bucket(129)
    # tokenizer.json pads to a fixed 128; that setting must not leak through.
    assert tokenizer.encode(["short"]).input_ids.shape == (1, 16)
    assert batch.input_ids.shape == (len(SENTENCES), tokenizer.bucket(max(batch.lengths)))
    assert batch.attention_mask.sum(axis=1).tolist() == batch.lengths
    assert batch.truncated == [False] * len(SENTENCES)
    capped = TextTokenizer(minilm_dir() / "tokenizer.json", max_length=40, buckets=(32, 64))
    assert [capped.bucket(n) for n in (5, 33, 40)] == [32, 40, 40]


def test_tokenizer_truncates_keeping_sep_or_rejects(minilm: Path) -> None:
    long_text = " ".join(["word"] * 30)
    tok = TextTokenizer(minilm / "tokenizer.json", max_length=16)
    encoded = tok.encode(["fits", long_text])
    assert encoded.truncated == [False, True]
    assert encoded.lengths == [3, 16]
    assert encoded.input_ids.shape == (2, 16)
    assert encoded.input_ids[1, 0] == 101 and encoded.input_ids[1, -1] == 102

    strict = TextTokenizer(minilm / "tokenizer.json", max_length=16, truncation="reject")
    assert strict.encode(["fits", "also fits"]).truncated == [False, False]
    with pytest.raises(TextTooLong) as caught:
        strict.encode(["fits", "fits too", long_text])
    assert (caught.value.index, caught.value.tokens, caught.value.limit) == (2, 32, 16)


def test_tokenizer_ids_match_transformers(transformers: ModuleType, minilm: Path) -> None:
    texts = [
        *SENTENCES,
        "Café déjà vu — naïve résumé!",
        "",
        "x" * 5,
        " ".join(["token"] * 200),
    ]
    reference: Any = transformers.AutoTokenizer.from_pretrained(str(minilm))
    for max_length in (128, 20):
        ours = TextTokenizer(minilm / "tokenizer.json", max_length=max_length).encode(texts)
        theirs = reference(texts, truncation=True, max_length=max_length)
        for row, (ids, types) in enumerate(
            zip(theirs["input_ids"], theirs["token_type_ids"], strict=True)
        ):
            n = ours.lengths[row]
            assert ours.input_ids[row, :n].tolist() == ids
            assert ours.token_type_ids[row, :n].tolist() == types
            assert not ours.attention_mask[row, n:].any()


def test_tokenizer_from_bytes_matches_from_file(minilm: Path) -> None:
    path = minilm / "tokenizer.json"
    a = TextTokenizer(path, max_length=32).encode(SENTENCES)
    b = TextTokenizer.from_bytes(path.read_bytes(), max_length=32).encode(SENTENCES)
    for name, value in a.feed().items():
        np.testing.assert_array_equal(value, b.feed()[name])
    assert (a.lengths, a.truncated) == (b.lengths, b.truncated)
