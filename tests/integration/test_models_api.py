"""The model API end to end: real NATS, inference service and gateway, driven by tritonclient and httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.inference.app import build as build_inference
from services.inference.config import Settings as InferenceSettings
from tests.conftest import forget_models, serving_gateway

T = TypeVar("T")
W = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0], [-2.0, 0.25]], dtype=np.float32)
B = np.array([0.5, -1.0], dtype=np.float32)


def _save(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what any onnxruntime of the last years loads
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def linear_model(w: np.ndarray = W, b: np.ndarray = B) -> bytes:
    """y = x @ W + b, x FP32 [-1, 4], y FP32 [-1, 2]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return _save(graph)


def tensor_config(name: str, version: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "task": "tensor",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "batching": {"max_queue_delay_us": 0},
    }


class Triton:
    """A real tritonclient, kept on one thread: its gevent connection pool belongs to that thread."""

    def __init__(self, url: str, api_key: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.url = url
        self.api_key = api_key
        self.client: httpclient.InferenceServerClient | None = None

    def auth(self) -> dict[str, str]:
        # tritonclient writes its own headers into the dict it gets: give it a fresh one each time.
        return {"Authorization": f"Bearer {self.api_key}"}

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            if self.client is None:
                self.client = httpclient.InferenceServerClient(url=self.url)
            kwargs.setdefault("headers", self.auth())
            return getattr(self.client, method)(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def error(self, method: str, *args: Any, **kwargs: Any) -> InferenceServerException:
        with pytest.raises(InferenceServerException) as caught:
            await self.call(method, *args, **kwargs)
        return caught.value

    async def close(self) -> None:
        if self.client is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, self.client.close)
        self.executor.shutdown(wait=True)


@dataclass
class Stack:
    http: httpx.AsyncClient
    triton: Triton
    host: str
    admin_key: str
    inference: Service

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    async def register(
        self, config: dict[str, Any], model: bytes, **files: tuple[str, bytes, str]
    ) -> httpx.Response:
        return await self.http.post(
            "/v1/models",
            headers=self.admin(),
            data={"config": json.dumps(config)},
            files={"model": ("model.onnx", model, "application/octet-stream"), **files},
        )

    async def key(self, *scopes: str) -> str:
        created = await self.http.post(
            "/v1/keys", headers=self.admin(), json={"name": "t", "scopes": list(scopes)}
        )
        assert created.status_code == 201, created.text
        token: str = created.json()["api_key"]
        return token


@pytest.fixture
async def stack(nats_url: str, data_dir: Path) -> AsyncIterator[Stack]:
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=name) for name in ("inference", "gateway")]
    inference: Service = await build_inference(
        buses[0],
        InferenceSettings(default_models=False, intra_op_threads=1, executor_threads=2),
        shared,
    )
    await inference.start()
    admin_key = load_or_create_credentials(data_dir, BootstrapSettings()).api_key
    async with serving_gateway(buses[1], shared, request_timeout_s=10) as url:
        host = url.removeprefix("http://")
        triton = Triton(host, admin_key)
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            yield Stack(http, triton, host, admin_key, inference)
        await triton.close()
    if inference.ready:
        await inference.stop()
    await forget_models(buses[0])
    for bus in buses:
        await bus.close()


def linear_inputs(x: np.ndarray, binary: bool) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return [tensor]


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_tritonclient_serves_a_registered_onnx_model(stack: Stack, unique: str) -> None:
    name = f"linear-{unique}"
    registered = await stack.register(tensor_config(name), linear_model())
    assert registered.status_code == 201, registered.text
    assert registered.json()["state"] == "READY"
    assert registered.json()["config"]["artifacts"] == {"cpu": f"{name}/1/model.onnx"}

    triton = stack.triton
    assert await triton.call("is_server_live")
    assert await triton.call("is_server_ready")
    server = await triton.call("get_server_metadata")
    assert {"model_repository", "binary_tensor_data"} <= set(server["extensions"])
    metadata = await triton.call("get_model_metadata", name)
    assert metadata == {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    assert (await triton.call("get_model_metadata", name, "1"))["versions"] == ["1"]
    assert await triton.call("is_model_ready", name)
    assert await triton.call("is_model_ready", name, "1")
    assert not await triton.call("is_model_ready", name, "2")

    x = np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32)
    expected = x @ W + B
    binary = await triton.call("infer", name, linear_inputs(x, binary=True), request_id="b1")
    np.testing.assert_allclose(binary.as_numpy("y"), expected, rtol=1e-5, atol=1e-5)
    assert binary.get_response()["id"] == "b1"
    assert binary.get_output("y")["parameters"]["binary_data_size"] == 5 * 2 * 4

    as_json = await triton.call(
        "infer",
        name,
        linear_inputs(x, binary=False),
        model_version="1",
        outputs=[httpclient.InferRequestedOutput("y", binary_data=False)],
    )
    assert "data" in as_json.get_output("y")
    np.testing.assert_allclose(as_json.as_numpy("y"), expected, rtol=1e-5, atol=1e-5)
    assert as_json.get_response()["model_version"] == "1"
    gzipped = await triton.call(
        "infer", name, linear_inputs(x, binary=True), request_compression_algorithm="gzip"
    )
    np.testing.assert_allclose(gzipped.as_numpy("y"), expected, rtol=1e-5, atol=1e-5)

    index = await triton.call("get_model_repository_index")
    assert {"name": name, "version": "1", "state": "READY", "reason": ""} in index

    await triton.call("unload_model", name)
    assert not await triton.call("is_model_ready", name)
    unloaded = await triton.error("infer", name, linear_inputs(x, binary=True))
    assert unloaded.status() == "503"
    assert name in unloaded.message() and "UNLOADED" in unloaded.message()
    index = await triton.call("get_model_repository_index")
    assert any(m["name"] == name and m["state"] == "UNLOADED" for m in index)

    await triton.call("load_model", name)
    assert await triton.call("is_model_ready", name)
    again = await triton.call("infer", name, linear_inputs(x[:1], binary=True))
    np.testing.assert_allclose(again.as_numpy("y"), expected[:1], rtol=1e-5, atol=1e-5)


async def test_keys_scopes_and_errors_speak_the_kserve_error_shape(
    stack: Stack, unique: str
) -> None:
    name = f"linear-{unique}"
    assert (await stack.register(tensor_config(name), linear_model())).status_code == 201
    http, triton = stack.http, stack.triton

    missing = await http.get("/v2/health/live")
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    fraud = {"Authorization": f"Bearer {await stack.key('fraud:read')}"}
    forbidden = await http.get(f"/v2/models/{name}", headers=fraud)
    assert forbidden.status_code == 403 and "inference:read" in forbidden.json()["error"]
    denied = await triton.error("get_model_metadata", name, headers=fraud)
    assert denied.status() == "403" and "inference:read" in denied.message()
    v1_forbidden = await http.get("/v1/models", headers=fraud)
    assert v1_forbidden.status_code == 403
    assert v1_forbidden.headers["content-type"] == "application/problem+json"

    reader = {"Authorization": f"Bearer {await stack.key('inference:read')}"}
    assert (await http.get(f"/v2/models/{name}/ready", headers=reader)).status_code == 200
    cannot_unload = await http.post(f"/v2/repository/models/{name}/unload", headers=reader)
    assert cannot_unload.status_code == 403 and "inference:write" in cannot_unload.json()["error"]
    assert (await http.post(f"/v1/models/{name}/unload", headers=reader)).status_code == 403

    unknown = await triton.error("get_model_metadata", f"nope-{unique}")
    assert unknown.status() == "404" and f"nope-{unique}" in unknown.message()
    unknown_infer = await triton.error(
        "infer", f"nope-{unique}", linear_inputs(np.zeros((1, 4), np.float32), True)
    )
    assert unknown_infer.status() == "404"
    v1_unknown = await http.get(f"/v1/models/nope-{unique}", headers=stack.admin())
    assert v1_unknown.status_code == 404
    assert v1_unknown.headers["content-type"] == "application/problem+json"
    assert (await triton.error("get_model_metadata", "Bad Name!")).status() == "404"

    wrong_type = httpclient.InferInput("x", [1, 4], "INT64")
    wrong_type.set_data_from_numpy(np.zeros((1, 4), np.int64), binary_data=True)
    dtype_error = await triton.error("infer", name, [wrong_type])
    assert dtype_error.status() == "400" and "must be FP32, got INT64" in dtype_error.message()
    shape_error = await triton.error(
        "infer", name, linear_inputs(np.zeros((2, 3), np.float32), True)
    )
    assert shape_error.status() == "400" and "[-1, 4]" in shape_error.message()

    lying = await http.post(
        f"/v2/models/{name}/infer",
        headers={**stack.admin(), "Inference-Header-Content-Length": "5000"},
        content=b'{"inputs": []}',
    )
    assert lying.status_code == 400 and "Inference-Header-Content-Length" in lying.json()["error"]
    assert (
        (await http.post(f"/v2/models/{name}/infer", headers=stack.admin(), content=b"{"))
        .json()["error"]
        .startswith("the request is not valid JSON")
    )
    bad_version = await http.get(f"/v2/models/{name}/versions/zero", headers=stack.admin())
    assert bad_version.status_code == 400 and "positive integer" in bad_version.json()["error"]

    await stack.inference.stop()
    assert await triton.call("is_server_live")
    assert not await triton.call("is_server_ready")
    down = await triton.error("get_model_metadata", name)
    assert down.status() == "503" and "inference" in down.message()


async def test_registration_is_checked_and_idempotent(stack: Stack, unique: str) -> None:
    name = f"linear-{unique}"
    http = stack.http
    first = await stack.register(tensor_config(name), linear_model())
    assert first.status_code == 201, first.text
    same = await stack.register(tensor_config(name), linear_model())
    assert same.status_code == 201 and same.json()["version"] == 1

    other_weights = await stack.register(tensor_config(name), linear_model(w=W * 2))
    assert other_weights.status_code == 409 and "new version" in other_weights.json()["detail"]

    with_artifacts = {**tensor_config(name, 2), "artifacts": {"cpu": "x"}}
    refused = await stack.register(with_artifacts, linear_model())
    assert refused.status_code == 400 and "artifacts" in refused.json()["detail"]
    bad_name = await stack.register({**tensor_config(name), "name": "Bad!"}, linear_model())
    assert bad_name.status_code == 400 and "name" in bad_name.json()["detail"]
    no_tokenizer = await stack.register(
        {**tensor_config(name, 2), "task": "text_embedding"}, linear_model()
    )
    assert no_tokenizer.status_code == 400 and "tokenizer" in no_tokenizer.json()["detail"]
    no_file = await http.post(
        "/v1/models", headers=stack.admin(), data={"config": json.dumps(tensor_config(name, 2))}
    )
    assert no_file.status_code == 400
    assert no_file.headers["content-type"] == "application/problem+json"

    # The policy follows the latest version unless a version is pinned.
    second = await stack.register(tensor_config(name, 2), linear_model(w=W * 2))
    assert second.status_code == 201, second.text
    assert second.json()["version"] == 2 and second.json()["state"] == "READY"
    served = await http.get(f"/v1/models/{name}", headers=stack.admin())
    assert served.json()["version"] == 2 and served.json()["state"] == "READY"
    x = np.ones((1, 4), np.float32)
    latest = await stack.triton.call("infer", name, linear_inputs(x, True))
    np.testing.assert_allclose(latest.as_numpy("y"), x @ (W * 2) + B, rtol=1e-5)

    pinned = await http.post(f"/v1/models/{name}/load", headers=stack.admin(), json={"version": 1})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["version"] == 1 and pinned.json()["state"] == "READY"
    result = await stack.triton.call("infer", name, linear_inputs(x, True), model_version="1")
    np.testing.assert_allclose(result.as_numpy("y"), x @ W + B, rtol=1e-5)
    stale = await stack.triton.error("infer", name, linear_inputs(x, True), model_version="2")
    assert stale.status() == "503" and "version 2" in stale.message()
    assert not await stack.triton.call("is_model_ready", name, "2")

    unloaded = await http.post(f"/v1/models/{name}/unload", headers=stack.admin())
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "UNLOADED"


async def test_v1_json_inference_and_listing(stack: Stack, unique: str) -> None:
    name = f"linear-{unique}"
    assert (await stack.register(tensor_config(name), linear_model())).status_code == 201
    http = stack.http
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    reply = await http.post(
        f"/v1/models/{name}/infer",
        headers=stack.admin(),
        json={
            "id": "j1",
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.reshape(-1).tolist()}
            ],
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == name and body["version"] == 1 and body["id"] == "j1"
    (y,) = body["outputs"]
    assert y["name"] == "y" and y["shape"] == [2, 2]
    np.testing.assert_allclose(np.array(y["data"]).reshape(2, 2), x @ W + B, rtol=1e-5)

    texts = await http.post(
        f"/v1/models/{name}/infer", headers=stack.admin(), json={"texts": ["hi"]}
    )
    assert texts.status_code == 400 and "tensor inputs" in texts.json()["detail"]
    both = await http.post(
        f"/v1/models/{name}/infer",
        headers=stack.admin(),
        json={"texts": ["hi"], "rows": [{"a": 1}]},
    )
    assert both.status_code == 400

    listed = await http.get("/v1/models", headers=stack.admin())
    assert any(m["name"] == name and m["state"] == "READY" for m in listed.json()["models"])
    one = await http.get(f"/v1/models/{name}", params={"version": 1}, headers=stack.admin())
    assert one.json()["config"]["inputs"][0]["name"] == "x"


def embedding_model(table: np.ndarray) -> bytes:
    """last_hidden_state = table[input_ids] * attention_mask: a toy encoder for the text path."""
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis"], ["mask3"]),
            helper.make_node("Mul", ["vectors", "mask3"], ["last_hidden_state"]),
        ],
        "toy_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "seq", table.shape[1]]
            )
        ],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], np.int64), "axis"),
        ],
    )
    return _save(graph)


def word_tokenizer(vocab: dict[str, int]) -> bytes:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    return tokenizer.to_str().encode()


async def test_a_text_model_takes_bytes_and_returns_embeddings(stack: Stack, unique: str) -> None:
    pytest.importorskip("tokenizers")
    name = f"words-{unique}"
    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "again": 3}
    table = np.random.default_rng(3).normal(size=(len(vocab), 6)).astype(np.float32)
    config = {
        "name": name,
        "version": 1,
        "task": "text_embedding",
        "max_sequence_length": 16,
        "sequence_buckets": [8, 16],
    }
    registered = await stack.register(
        config,
        embedding_model(table),
        tokenizer=("tokenizer.json", word_tokenizer(vocab), "application/json"),
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["state"] == "READY", registered.json()["reason"]

    metadata = await stack.triton.call("get_model_metadata", name)
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    texts = np.array([b"hello world", b"again"], dtype=np.object_)
    text = httpclient.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(texts, binary_data=True)
    result = await stack.triton.call("infer", name, [text])
    embedding = result.as_numpy("embedding")

    expected = np.stack([table[[1, 2]].mean(axis=0), table[3]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert embedding.shape == (2, 6) and embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-6)
