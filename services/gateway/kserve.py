"""KServe v2 / Triton HTTP inference protocol: request parsing, response building, task mapping (pure)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
import pydantic

from contracts.inference import (
    DataType,
    InferReply,
    InferRequest,
    ModelConfig,
    ModelStatus,
    Tensor,
    TensorSpec,
)
from runtime.errors import ValidationFailed

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES: frozenset[str] = frozenset(get_args(DataType))
MAX_DIMS = 8

# Binary tensor data is little-endian whatever the host is.
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "INT8": np.dtype("i1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_INT_TYPES = ("UINT8", "INT8", "INT32", "INT64")
_FLOAT_TYPES = ("FP16", "FP32", "FP64")

TEXT_TASKS = ("text_embedding", "text_classification")
TEXT_INPUT = "text"
TABULAR_INPUT = "features"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class ParsedRequest:
    """An infer request as the protocol gives it: tensors with plain Python data."""

    inputs: list[Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)  # empty: every output
    binary_output: bool = False  # for outputs not listed (top-level `binary_data_output`)
    id: str | None = None

    def output_names(self) -> list[str] | None:
        return [o.name for o in self.outputs] or None

    def wants_binary(self, name: str) -> bool:
        for output in self.outputs:
            if output.name == name:
                return output.binary
        return self.binary_output


# -- requests ------------------------------------------------------------------------------


def header_length(value: str | None, body_size: int) -> int | None:
    """The JSON length of a binary request from its header; None: the body is all JSON."""
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        raise ValidationFailed(
            f"{HEADER_LENGTH} must be an integer, got {value.strip()[:40]!r}"
        ) from None
    if length < 0 or length > body_size:
        raise ValidationFailed(f"{HEADER_LENGTH} is {length} but the body has {body_size} bytes")
    return length


def parse_infer_request(body: bytes, json_length: int | None = None) -> ParsedRequest:
    """Parse a request body: all JSON, or `json_length` bytes of JSON and then binary tensor data."""
    header = body if json_length is None else body[:json_length]
    binary = b"" if json_length is None else body[json_length:]
    try:
        document = json.loads(header)
    except (UnicodeDecodeError, ValueError) as exc:
        hint = "" if json_length is not None else f" (binary data needs the {HEADER_LENGTH} header)"
        raise ValidationFailed(f"the request is not valid JSON: {exc}{hint}") from None
    if not isinstance(document, dict):
        raise ValidationFailed("the request must be a JSON object")
    parameters = _parameters(document.get("parameters"), "the request")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ValidationFailed("'id' must be a string")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ValidationFailed("'inputs' must be a non-empty list of tensors")

    offset = 0
    inputs: list[Tensor] = []
    for index, raw in enumerate(raw_inputs):
        tensor, used = _parse_input(raw, index, binary, offset, json_length is not None)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise ValidationFailed(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims "
            f"(binary_data_size of the inputs adds up to {offset}, {len(binary)} were sent)"
        )
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise ValidationFailed(f"input names must be unique, got {names}")

    outputs: list[RequestedOutput] = []
    raw_outputs = document.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ValidationFailed("'outputs' must be a list")
        for index, raw in enumerate(raw_outputs):
            outputs.append(_parse_output(raw, index))
    return ParsedRequest(
        inputs=inputs,
        outputs=outputs,
        binary_output=_flag(parameters, "binary_data_output", "the request"),
        id=request_id,
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed(f"'parameters' of {where} must be an object")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise ValidationFailed(f"parameter {key!r} of {where} must be true or false")
    return value


def _parse_input(
    raw: Any, index: int, binary: bytes, offset: int, has_binary_header: bool
) -> tuple[Tensor, int]:
    """One input tensor and how many bytes of binary data it took."""
    if not isinstance(raw, dict):
        raise ValidationFailed(f"input {index} must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ValidationFailed(f"input {index} needs a 'name' of 1 to 128 characters")
    where = f"input {name!r}"
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise ValidationFailed(
            f"{where}: unknown datatype {datatype!r}; use one of {sorted(DATATYPES)}"
        )
    shape = _shape(raw.get("shape"), where)
    count = math.prod(shape)
    parameters = _parameters(raw.get("parameters"), where)
    if "shared_memory_region" in parameters:
        raise ValidationFailed(f"{where}: shared memory is not supported; send the data")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValidationFailed(f"{where}: binary_data_size must be a non-negative integer")
        if not has_binary_header:
            raise ValidationFailed(
                f"{where} has binary_data_size but the request has no {HEADER_LENGTH} header"
            )
        if "data" in raw:
            raise ValidationFailed(f"{where}: send either 'data' or binary data, not both")
        if offset + size > len(binary):
            raise ValidationFailed(
                f"{where}: binary_data_size is {size} but only {len(binary) - offset} bytes "
                "of binary data are left"
            )
        data = decode_binary(datatype, binary[offset : offset + size], count, where)
        used = size
    else:
        if "data" not in raw:
            raise ValidationFailed(f"{where} has neither 'data' nor binary_data_size")
        data = _json_data(datatype, raw["data"], count, where)
        used = 0
    return Tensor(name=name, datatype=datatype, shape=shape, data=data), used


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise ValidationFailed(f"{where}: 'shape' must be a list of non-negative integers")
    if len(value) > MAX_DIMS:
        raise ValidationFailed(f"{where}: at most {MAX_DIMS} dimensions, got {len(value)}")
    return list(value)


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    flat: list[Any] = []
    stack = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_data(datatype: str, value: Any, count: int, where: str) -> list[Any]:
    flat = _flatten(value)
    if len(flat) != count:
        raise ValidationFailed(f"{where}: shape needs {count} values, 'data' has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ValidationFailed(f"{where}: BYTES data must be strings")
        return flat
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise ValidationFailed(f"{where}: BOOL data must be true or false")
        return flat
    if datatype in _INT_TYPES:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
            raise ValidationFailed(f"{where}: {datatype} data must be integers")
        info = np.iinfo(WIRE_DTYPES[datatype])
        if flat and (min(flat) < info.min or max(flat) > info.max):
            raise ValidationFailed(f"{where}: a value is out of the {datatype} range")
        return flat
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise ValidationFailed(f"{where}: {datatype} data must be numbers")
    return [float(v) for v in flat]


def decode_binary(datatype: str, raw: bytes, count: int, where: str) -> list[Any]:
    """Binary tensor data to a flat list: raw little-endian values, or length-prefixed strings."""
    if datatype == "BYTES":
        return _decode_bytes(raw, count, where)
    dtype = WIRE_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise ValidationFailed(
            f"{where}: {count} {datatype} values need {count * dtype.itemsize} bytes, "
            f"binary_data_size is {len(raw)}"
        )
    values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
    return values


def _decode_bytes(raw: bytes, count: int, where: str) -> list[Any]:
    items: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ValidationFailed(f"{where}: BYTES data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ValidationFailed(
                f"{where}: BYTES element {len(items)} claims {length} bytes, "
                f"{len(raw) - offset} are left"
            )
        try:
            items.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ValidationFailed(f"{where}: BYTES element {len(items)} is not UTF-8") from None
        offset += length
    if len(items) != count:
        raise ValidationFailed(f"{where}: shape needs {count} values, binary data has {len(items)}")
    return items


def _parse_output(raw: Any, index: int) -> RequestedOutput:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"output {index} must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationFailed(f"output {index} needs a 'name'")
    where = f"output {name!r}"
    parameters = _parameters(raw.get("parameters"), where)
    if "shared_memory_region" in parameters:
        raise ValidationFailed(f"{where}: shared memory is not supported")
    if parameters.get("classification"):
        raise ValidationFailed(f"{where}: the classification extension is not supported")
    return RequestedOutput(name=name, binary=_flag(parameters, "binary_data", where))


# -- responses -----------------------------------------------------------------------------


def encode_binary(tensor: Tensor) -> bytes:
    """A tensor's flat data as binary tensor data."""
    if tensor.datatype == "BYTES":
        parts: list[bytes] = []
        for item in tensor.data:
            value = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(value)))
            parts.append(value)
        return b"".join(parts)
    return np.asarray(tensor.data, dtype=WIRE_DTYPES[tensor.datatype]).tobytes()


def build_infer_response(
    model_name: str,
    model_version: int,
    outputs: Sequence[Tensor],
    request: ParsedRequest,
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the JSON length for the header."""
    document: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request.id is not None:
        document["id"] = request.id
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if request.wants_binary(tensor.name):
            chunk = encode_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = [
                item.decode("utf-8", "replace") if isinstance(item, bytes) else item
                for item in tensor.data
            ]
        described.append(entry)
    document["outputs"] = described
    header = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


# -- tasks ---------------------------------------------------------------------------------


def protocol_inputs(config: ModelConfig) -> list[TensorSpec]:
    """The tensors a client sends for this model over the tensor protocol."""
    if config.task in TEXT_TASKS:
        return [TensorSpec(name=TEXT_INPUT, datatype="BYTES", shape=[-1])]
    if config.task == "tabular_scoring":
        name = config.inputs[0].name if config.inputs else TABULAR_INPUT
        return [TensorSpec(name=name, datatype="FP32", shape=[-1, len(config.feature_names)])]
    return list(config.inputs)


def protocol_outputs(config: ModelConfig) -> list[TensorSpec]:
    if config.task == "text_embedding":
        return [TensorSpec(name="embedding", datatype="FP32", shape=[-1, -1])]
    if config.task == "text_classification":
        return [
            TensorSpec(name="probabilities", datatype="FP32", shape=[-1, len(config.labels)]),
            TensorSpec(name="label", datatype="BYTES", shape=[-1]),
        ]
    if config.task == "tabular_scoring":
        return [TensorSpec(name="score", datatype="FP32", shape=[-1])]
    return list(config.outputs)


def model_metadata(status: ModelStatus) -> dict[str, Any]:
    config = status.config

    def describe(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in specs]

    return {
        "name": status.name,
        "versions": [str(status.version)],
        "platform": "onnxruntime_onnx",
        "inputs": describe(protocol_inputs(config)),
        "outputs": describe(protocol_outputs(config)),
    }


def to_infer_request(
    config: ModelConfig, request: ParsedRequest, version: int | None = None
) -> InferRequest:
    """The bus request for this model's task."""
    fields: dict[str, Any] = {"version": version, "id": request.id}
    if config.task in TEXT_TASKS:
        fields["texts"] = _texts(config, request)
    elif config.task == "tabular_scoring":
        fields["rows"] = _rows(config, request)
    else:
        fields["inputs"] = request.inputs
        fields["outputs"] = request.output_names()
    try:
        return InferRequest(**fields)
    except pydantic.ValidationError as exc:  # limits of the message: too many texts, long id
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationFailed(f"the request does not fit the model: {problems}") from None


def _single_input(config: ModelConfig, request: ParsedRequest) -> Tensor:
    if len(request.inputs) != 1:
        names = [t.name for t in request.inputs]
        raise ValidationFailed(
            f"model {config.name!r} ({config.task}) takes one input, got {names}"
        )
    return request.inputs[0]


def _texts(config: ModelConfig, request: ParsedRequest) -> list[str]:
    tensor = _single_input(config, request)
    if tensor.datatype != "BYTES":
        raise ValidationFailed(
            f"input {tensor.name!r} of model {config.name!r} ({config.task}) must be BYTES, "
            f"got {tensor.datatype}"
        )
    if not tensor.data:
        raise ValidationFailed(f"input {tensor.name!r} has no texts")
    return [str(text) for text in tensor.data]


def _rows(config: ModelConfig, request: ParsedRequest) -> list[dict[str, Any]]:
    tensor = _single_input(config, request)
    names = config.feature_names
    if tensor.datatype not in ("FP32", "FP64"):
        raise ValidationFailed(
            f"input {tensor.name!r} of model {config.name!r} must be FP32 or FP64, "
            f"got {tensor.datatype}"
        )
    if len(tensor.shape) != 2 or tensor.shape[1] != len(names):
        raise ValidationFailed(
            f"input {tensor.name!r} must have shape [-1, {len(names)}] (features {names}), "
            f"got {tensor.shape}"
        )
    width = len(names)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(tensor.data), width):
        values = tensor.data[start : start + width]
        rows.append(
            {
                name: None if value is None or math.isnan(value) else float(value)
                for name, value in zip(names, values, strict=True)
            }
        )
    if not rows:
        raise ValidationFailed(f"input {tensor.name!r} has no rows")
    return rows


def reply_outputs(config: ModelConfig, reply: InferReply, request: ParsedRequest) -> list[Tensor]:
    """The reply as protocol tensors, only those asked for (all when none were named)."""
    produced = _reply_tensors(config, reply)
    wanted = request.output_names()
    if wanted is None:
        return produced
    by_name = {t.name: t for t in produced}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise ValidationFailed(
            f"unknown outputs {missing}; model {config.name!r} has {sorted(by_name)}"
        )
    return [by_name[name] for name in wanted]


def _reply_tensors(config: ModelConfig, reply: InferReply) -> list[Tensor]:
    if config.task == "text_embedding":
        vectors = reply.embeddings or []
        dim = len(vectors[0]) if vectors else 0
        return [
            Tensor(
                name="embedding",
                datatype="FP32",
                shape=[len(vectors), dim],
                data=[v for vector in vectors for v in vector],
            )
        ]
    if config.task == "text_classification":
        results = reply.classifications or []
        labels = config.labels
        return [
            Tensor(
                name="probabilities",
                datatype="FP32",
                shape=[len(results), len(labels)],
                data=[c.probabilities.get(label, 0.0) for c in results for label in labels],
            ),
            Tensor(
                name="label",
                datatype="BYTES",
                shape=[len(results)],
                data=[c.label for c in results],
            ),
        ]
    if config.task == "tabular_scoring":
        scores = reply.scores or []
        return [Tensor(name="score", datatype="FP32", shape=[len(scores)], data=list(scores))]
    return list(reply.outputs or [])
