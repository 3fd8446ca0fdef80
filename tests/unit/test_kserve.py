"""The KServe v2 codec on its own: requests and responses as tritonclient writes and reads them."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from contracts.inference import (
    Classification,
    InferReply,
    ModelConfig,
    ModelState,
    ModelStatus,
    Task,
)
from contracts.inference import Tensor as WireTensor
from runtime.errors import ValidationFailed
from services.gateway import kserve


def triton_body(
    inputs: list[httpclient.InferInput],
    outputs: list[httpclient.InferRequestedOutput] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, **kwargs
    )
    return bytes(body), json_size


def tensor_input(
    name: str, array: np.ndarray, datatype: str, binary: bool
) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def parse(body: bytes, json_size: int | None) -> kserve.ParsedRequest:
    header = None if json_size is None else str(json_size)
    return kserve.parse_infer_request(body, kserve.header_length(header, len(body)))


def as_array(tensor: WireTensor) -> np.ndarray:
    if tensor.datatype == "BYTES":
        return np.array(tensor.data, dtype=np.object_).reshape(tensor.shape)
    return np.asarray(tensor.data, dtype=kserve.WIRE_DTYPES[tensor.datatype]).reshape(tensor.shape)


X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
IDS = np.array([[1, -2], [2**40, 0]], dtype=np.int64)
WORDS = np.array([b"hello", "wörld".encode(), b""], dtype=np.object_)


@pytest.mark.parametrize("binary", [False, True])
def test_requests_round_trip_fp32_int64_and_bytes(binary: bool) -> None:
    body, json_size = triton_body(
        [
            tensor_input("x", X, "FP32", binary),
            tensor_input("ids", IDS, "INT64", binary),
            tensor_input("words", WORDS, "BYTES", binary),
        ],
        [httpclient.InferRequestedOutput("y", binary_data=False)],
        request_id="r-1",
    )
    assert (json_size is not None) is binary
    parsed = parse(body, json_size)
    x, ids, words = parsed.inputs
    assert (x.name, x.datatype, x.shape) == ("x", "FP32", [3, 4])
    np.testing.assert_array_equal(as_array(x), X)
    assert ids.datatype == "INT64" and ids.data == IDS.reshape(-1).tolist()
    assert words.datatype == "BYTES" and words.shape == [3]
    assert words.data == ["hello", "wörld", ""]
    assert parsed.id == "r-1"
    assert parsed.outputs == [kserve.RequestedOutput("y", binary=False)]


def test_binary_and_json_inputs_mix_in_one_request() -> None:
    body, json_size = triton_body(
        [tensor_input("a", X, "FP32", True), tensor_input("b", IDS, "INT64", False)]
    )
    assert json_size is not None
    a, b = parse(body, json_size).inputs
    np.testing.assert_array_equal(as_array(a), X)
    np.testing.assert_array_equal(as_array(b), IDS)


def test_no_requested_outputs_means_every_output_in_binary() -> None:
    body, json_size = triton_body([tensor_input("x", X, "FP32", False)])
    parsed = parse(body, json_size)
    assert parsed.outputs == [] and parsed.output_names() is None
    assert parsed.binary_output and parsed.wants_binary("anything")


def test_json_data_may_be_nested_and_is_checked_against_the_shape() -> None:
    document = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4.5]]}]
    }
    (x,) = kserve.parse_infer_request(json.dumps(document).encode()).inputs
    assert x.data == [1.0, 2.0, 3.0, 4.5]


@pytest.mark.parametrize(
    ("requested", "binary_names"),
    [
        (None, {"y", "ids", "label"}),
        ([("y", True), ("label", False)], {"y"}),
        ([("y", False), ("ids", False), ("label", True)], {"label"}),
    ],
)
def test_responses_are_read_back_by_tritonclient(
    requested: list[tuple[str, bool]] | None, binary_names: set[str]
) -> None:
    outputs = [
        WireTensor(name="y", datatype="FP32", shape=[3, 4], data=X.reshape(-1).tolist()),
        WireTensor(name="ids", datatype="INT64", shape=[2, 2], data=IDS.reshape(-1).tolist()),
        WireTensor(name="label", datatype="BYTES", shape=[2], data=["spam", "hé"]),
    ]
    request_outputs = (
        [httpclient.InferRequestedOutput(n, binary_data=b) for n, b in requested]
        if requested
        else None
    )
    body, json_size = triton_body([tensor_input("x", X, "FP32", False)], request_outputs)
    parsed = parse(body, json_size)
    wanted = parsed.output_names()
    chosen = [t for t in outputs if wanted is None or t.name in wanted]
    content, header = kserve.build_infer_response("m", 3, chosen, parsed)

    document = json.loads(content if header is None else content[:header])
    assert document["model_name"] == "m" and document["model_version"] == "3"
    sent_binary = {o["name"] for o in document["outputs"] if "parameters" in o}
    assert sent_binary == binary_names & {t.name for t in chosen}
    assert (header is None) is (not sent_binary)

    result = httpclient.InferResult.from_response_body(content, header_length=header)
    for tensor in chosen:
        got = result.as_numpy(tensor.name)
        assert got is not None and list(got.shape) == tensor.shape
        if tensor.datatype == "BYTES":
            decoded = [v.decode() if isinstance(v, bytes) else v for v in got.reshape(-1)]
            assert decoded == tensor.data
        else:
            np.testing.assert_array_equal(got, as_array(tensor))


def test_binary_bytes_output_is_length_prefixed() -> None:
    tensor = WireTensor(name="s", datatype="BYTES", shape=[2], data=["ab", ""])
    assert kserve.encode_binary(tensor) == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_the_response_echoes_the_request_id() -> None:
    parsed = kserve.ParsedRequest(inputs=[], id="abc")
    content, header = kserve.build_infer_response("m", 1, [], parsed)
    assert header is None and json.loads(content)["id"] == "abc"


# -- errors --------------------------------------------------------------------------------


def fails(body: bytes | dict[str, Any], header: str | None = None) -> str:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    with pytest.raises(ValidationFailed) as caught:
        kserve.parse_infer_request(raw, kserve.header_length(header, len(raw)))
    return caught.value.message


def one_input(**fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2], **fields}]}


def test_the_header_length_must_be_an_integer_within_the_body() -> None:
    for bad in ("abc", "-1", "99"):
        with pytest.raises(ValidationFailed, match="Inference-Header-Content-Length"):
            kserve.header_length(bad, 10)
    assert kserve.header_length(" 4 ", 10) == 4
    assert kserve.header_length(None, 10) is None


def test_bad_json_is_named() -> None:
    assert "not valid JSON" in fails(b"{nope")
    assert "Inference-Header-Content-Length" in fails(b'{"inputs": []}\x00\x01')
    assert "JSON object" in fails(b"[1]")
    assert "'inputs'" in fails({"inputs": []})


def test_binary_data_without_the_header_length_is_refused() -> None:
    message = fails(one_input(parameters={"binary_data_size": 8}, data=None))
    assert "Inference-Header-Content-Length" in message


def test_binary_sizes_must_match_the_data_sent() -> None:
    body, json_size = triton_body([tensor_input("x", X, "FP32", True)])
    assert json_size is not None
    short = body[:-4]
    assert "48" in fails(short, str(json_size)) and "binary_data_size" in fails(
        short, str(json_size)
    )
    assert "no input claims" in fails(body + b"\x00" * 4, str(json_size))


def test_binary_size_must_fit_the_shape() -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [3],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    message = fails(header + b"\x00" * 8, str(len(header)))
    assert "3 FP32 values need 12 bytes" in message


def test_truncated_bytes_elements_are_refused() -> None:
    payload = struct.pack("<I", 10) + b"abc"
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(payload)},
                }
            ]
        }
    ).encode()
    assert "claims 10 bytes" in fails(header + payload, str(len(header)))


def test_datatype_shape_and_values_are_checked() -> None:
    assert "unknown datatype 'BF16'" in fails(one_input(datatype="BF16"))
    assert "shape needs 3 values, 'data' has 2" in fails(one_input(shape=[3]))
    assert "non-negative integers" in fails(one_input(shape=[-1]))
    assert "INT64 data must be integers" in fails(one_input(datatype="INT64", data=[1.5, 2]))
    assert "out of the INT8 range" in fails(one_input(datatype="INT8", data=[1, 300]))
    assert "BYTES data must be strings" in fails(one_input(datatype="BYTES"))
    assert "FP32 data must be numbers" in fails(one_input(data=["1", "2"]))
    assert "neither 'data' nor binary_data_size" in fails(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}
    )
    assert "unique" in fails({"inputs": one_input()["inputs"] * 2})
    assert "shared memory" in fails(one_input(parameters={"shared_memory_region": "r"}))


# -- tasks ---------------------------------------------------------------------------------


def config(task: Task, **fields: Any) -> ModelConfig:
    return ModelConfig(
        name="m", version=2, task=task, artifacts={"cpu": "m/2/model.onnx"}, **fields
    )


TEXT = {"tokenizer": "m/2/tokenizer.json"}


def texts_request(*texts: str) -> kserve.ParsedRequest:
    body, size = triton_body(
        [
            tensor_input(
                "text", np.array([t.encode() for t in texts], dtype=np.object_), "BYTES", True
            )
        ]
    )
    return parse(body, size)


def test_text_embedding_maps_bytes_to_texts_and_embeddings_to_fp32() -> None:
    cfg = config("text_embedding", **TEXT)
    request = texts_request("a", "b c")
    bus = kserve.to_infer_request(cfg, request, version=2)
    assert bus.texts == ["a", "b c"] and bus.version == 2 and bus.inputs is None
    reply = InferReply(model="m", version=2, embeddings=[[1.0, 0.0, 0.5], [0.0, 1.0, 0.25]])
    (embedding,) = kserve.reply_outputs(cfg, reply, request)
    assert (embedding.name, embedding.datatype, embedding.shape) == ("embedding", "FP32", [2, 3])
    assert embedding.data == [1.0, 0.0, 0.5, 0.0, 1.0, 0.25]


def test_text_classification_gives_probabilities_in_label_order_and_labels() -> None:
    cfg = config("text_classification", labels=["ham", "spam"], **TEXT)
    request = texts_request("win money")
    reply = InferReply(
        model="m",
        version=2,
        classifications=[Classification(label="spam", probabilities={"spam": 0.9, "ham": 0.1})],
    )
    probabilities, label = kserve.reply_outputs(cfg, reply, request)
    assert probabilities.shape == [1, 2] and probabilities.data == [0.1, 0.9]
    assert (label.datatype, label.data) == ("BYTES", ["spam"])
    assert [s.name for s in kserve.protocol_outputs(cfg)] == ["probabilities", "label"]


def test_text_models_take_one_bytes_input() -> None:
    cfg = config("text_embedding", **TEXT)
    body, size = triton_body([tensor_input("text", X, "FP32", False)])
    with pytest.raises(ValidationFailed, match="must be BYTES, got FP32"):
        kserve.to_infer_request(cfg, parse(body, size))


def test_tabular_scoring_maps_columns_to_named_features_and_nan_to_missing() -> None:
    cfg = config("tabular_scoring", feature_names=["amount", "age"])
    features = np.array([[10.0, math.nan], [2.5, 30.0]], dtype=np.float64)
    body, size = triton_body([tensor_input("features", features, "FP64", True)])
    request = parse(body, size)
    bus = kserve.to_infer_request(cfg, request)
    assert bus.rows == [{"amount": 10.0, "age": None}, {"amount": 2.5, "age": 30.0}]
    (score,) = kserve.reply_outputs(
        cfg, InferReply(model="m", version=2, scores=[0.1, 0.8]), request
    )
    assert (score.name, score.datatype, score.shape, score.data) == (
        "score",
        "FP32",
        [2],
        [0.1, 0.8],
    )

    wrong, size = triton_body([tensor_input("features", features[:, :1], "FP64", True)])
    with pytest.raises(ValidationFailed, match=r"shape \[-1, 2\]"):
        kserve.to_infer_request(cfg, parse(wrong, size))


def test_tensor_models_pass_tensors_and_requested_outputs_through() -> None:
    cfg = config("tensor")
    body, size = triton_body(
        [tensor_input("x", X, "FP32", True)], [httpclient.InferRequestedOutput("y")]
    )
    request = parse(body, size)
    bus = kserve.to_infer_request(cfg, request)
    assert bus.inputs == request.inputs and bus.outputs == ["y"]
    y = WireTensor(name="y", datatype="FP32", shape=[1], data=[1.0])
    assert kserve.reply_outputs(cfg, InferReply(model="m", version=2, outputs=[y]), request) == [y]
    unknown = kserve.ParsedRequest(inputs=[], outputs=[kserve.RequestedOutput("z", True)])
    with pytest.raises(ValidationFailed, match=r"unknown outputs \['z'\]"):
        kserve.reply_outputs(cfg, InferReply(model="m", version=2, outputs=[y]), unknown)


def test_metadata_describes_protocol_tensors() -> None:
    cfg = config("tabular_scoring", feature_names=["a", "b", "c"])
    status = ModelStatus(name="m", version=2, task=cfg.task, state=ModelState.READY, config=cfg)
    metadata = kserve.model_metadata(status)
    assert metadata["versions"] == ["2"] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}]
    assert metadata["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [-1]}]
