"""Built-in pipelines: requests in (texts, rows, tensors), model feeds out, and back again (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from contracts.inference import Classification, InferReply, InferRequest, ModelConfig, Tensor
from runtime.errors import ValidationFailed

NUMPY_TYPES: dict[str, Any] = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}
DATATYPES = {np.dtype(v).name: k for k, v in NUMPY_TYPES.items() if k != "BYTES"}


class Runner(Protocol):
    """Runs the model: feeds by input name -> outputs by name (an ONNX Runtime session, say)."""

    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class EncodedText(Protocol):
    @property
    def input_ids(self) -> np.ndarray: ...
    @property
    def attention_mask(self) -> np.ndarray: ...
    @property
    def token_type_ids(self) -> np.ndarray: ...
    @property
    def truncated(self) -> list[bool]: ...


class Tokenizer(Protocol):
    def encode(self, texts: Sequence[str]) -> EncodedText: ...


@dataclass
class Prepared:
    """One request, turned into arrays whose first dimension is its rows."""

    feeds: dict[str, np.ndarray]
    rows: int
    truncated: list[bool] | None = None


def _pad_to(array: np.ndarray, length: int) -> np.ndarray:
    if array.shape[1] == length:
        return array
    out = np.zeros((array.shape[0], length), dtype=array.dtype)
    out[:, : array.shape[1]] = array
    return out


def concat_rows(items: Sequence[Prepared]) -> dict[str, np.ndarray]:
    """Stack the items' feeds; 2-D integer feeds of texts are right-padded to the longest."""
    if len(items) == 1:
        return items[0].feeds
    feeds: dict[str, np.ndarray] = {}
    for name in items[0].feeds:
        arrays = [item.feeds[name] for item in items]
        if arrays[0].ndim == 2 and arrays[0].dtype == np.int64:
            width = max(a.shape[1] for a in arrays)
            arrays = [_pad_to(a, width) for a in arrays]
        feeds[name] = np.concatenate(arrays, axis=0)
    return feeds


def split_rows(
    outputs: dict[str, np.ndarray], items: Sequence[Prepared]
) -> list[dict[str, np.ndarray]]:
    parts: list[dict[str, np.ndarray]] = []
    start = 0
    for item in items:
        parts.append({name: value[start : start + item.rows] for name, value in outputs.items()})
        start += item.rows
    return parts


def mean_pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool = True) -> np.ndarray:
    weights = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if normalize:
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    result: np.ndarray = pooled.astype(np.float32)
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    result: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return result


class Pipeline:
    """Base: `prepare` runs per request (validation, tokenising), `run` per batch, `reply` per request."""

    def __init__(self, config: ModelConfig, runner: Runner) -> None:
        self.config = config
        self.runner = runner

    def prepare(self, request: InferRequest) -> Prepared:
        raise NotImplementedError

    def run(self, items: list[Prepared]) -> list[dict[str, np.ndarray]]:
        outputs = self.runner.run(concat_rows(items))
        return split_rows(outputs, items)

    def reply(
        self, request: InferRequest, prepared: Prepared, outputs: dict[str, np.ndarray]
    ) -> InferReply:
        raise NotImplementedError

    def _base_reply(self, request: InferRequest) -> dict[str, Any]:
        return {"model": self.config.name, "version": self.config.version, "id": request.id}


class _TextPipeline(Pipeline):
    def __init__(self, config: ModelConfig, runner: Runner, tokenizer: Tokenizer) -> None:
        super().__init__(config, runner)
        self.tokenizer = tokenizer

    def run(self, items: list[Prepared]) -> list[dict[str, np.ndarray]]:
        """One model run per padded width: short texts are not padded to the longest one's bucket."""
        by_width: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            by_width.setdefault(item.feeds["input_ids"].shape[1], []).append(i)
        if len(by_width) == 1:
            return super().run(items)
        results: list[dict[str, np.ndarray]] = [{} for _ in items]
        for indexes in by_width.values():
            for i, output in zip(indexes, super().run([items[i] for i in indexes]), strict=True):
                results[i] = output
        return results

    def prepare(self, request: InferRequest) -> Prepared:
        if request.texts is None:
            raise ValidationFailed(f"model {self.config.name!r} takes texts")
        if not request.texts:
            raise ValidationFailed("texts is empty")
        encoded = self.tokenizer.encode(request.texts)
        feeds = {
            "input_ids": encoded.input_ids,
            "attention_mask": encoded.attention_mask,
            "token_type_ids": encoded.token_type_ids,
        }
        wanted = set(self.runner.input_names)
        return Prepared(
            {k: v for k, v in feeds.items() if k in wanted}, len(request.texts), encoded.truncated
        )


class TextEmbedding(_TextPipeline):
    def reply(
        self, request: InferRequest, prepared: Prepared, outputs: dict[str, np.ndarray]
    ) -> InferReply:
        if "sentence_embedding" in outputs:
            vectors = outputs["sentence_embedding"]
        else:
            hidden = outputs.get("last_hidden_state", next(iter(outputs.values())))
            mask = prepared.feeds["attention_mask"]
            vectors = mean_pool(hidden[:, : mask.shape[1]], mask)
        return InferReply(
            **self._base_reply(request),
            embeddings=np.asarray(vectors, dtype=np.float32).tolist(),
            truncated=prepared.truncated,
        )


class TextClassification(_TextPipeline):
    def reply(
        self, request: InferRequest, prepared: Prepared, outputs: dict[str, np.ndarray]
    ) -> InferReply:
        logits = outputs.get("logits", next(iter(outputs.values())))
        probabilities = softmax(np.asarray(logits, dtype=np.float32))
        labels = self.config.labels
        if probabilities.shape[1] != len(labels):
            raise ValidationFailed(
                f"model has {probabilities.shape[1]} classes, config names {len(labels)}"
            )
        results = [
            Classification(
                label=labels[int(row.argmax())],
                probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
            )
            for row in probabilities
        ]
        return InferReply(
            **self._base_reply(request), classifications=results, truncated=prepared.truncated
        )


class TabularScoring(Pipeline):
    def prepare(self, request: InferRequest) -> Prepared:
        if request.rows is None:
            raise ValidationFailed(f"model {self.config.name!r} takes rows of named features")
        if not request.rows:
            raise ValidationFailed("rows is empty")
        names = self.config.feature_names
        known = set(names)
        matrix = np.full((len(request.rows), len(names)), np.nan, dtype=np.float32)
        for r, row in enumerate(request.rows):
            unknown = set(row) - known
            if unknown:
                raise ValidationFailed(f"row {r}: unknown features {sorted(unknown)}", row=r)
            for c, name in enumerate(names):
                value = row.get(name)
                if value is None:
                    continue
                try:
                    matrix[r, c] = float(value)
                except (TypeError, ValueError):
                    raise ValidationFailed(
                        f"row {r}: feature {name!r} must be numeric, got {value!r}",
                        row=r,
                        feature=name,
                    ) from None
        input_name = (
            self.config.inputs[0].name if self.config.inputs else self.runner.input_names[0]
        )
        return Prepared({input_name: matrix}, len(request.rows))

    def reply(
        self, request: InferRequest, prepared: Prepared, outputs: dict[str, np.ndarray]
    ) -> InferReply:
        probabilities = outputs.get("probabilities")
        if probabilities is None:
            probabilities = list(outputs.values())[-1]
        p = np.asarray(probabilities, dtype=np.float32)
        scores = p[:, self.config.positive_class] if p.ndim == 2 else p.reshape(-1)
        return InferReply(**self._base_reply(request), scores=[float(s) for s in scores])


def tensor_to_array(tensor: Tensor) -> np.ndarray:
    dtype = NUMPY_TYPES[tensor.datatype]
    expected = int(np.prod(tensor.shape)) if tensor.shape else 1
    if len(tensor.data) != expected:
        raise ValidationFailed(
            f"input {tensor.name!r}: shape {tensor.shape} needs {expected} values, got {len(tensor.data)}"
        )
    try:
        return np.asarray(tensor.data, dtype=dtype).reshape(tensor.shape)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            f"input {tensor.name!r}: values are not {tensor.datatype}: {exc}"
        ) from None


def array_to_tensor(name: str, array: np.ndarray) -> Tensor:
    datatype = DATATYPES.get(array.dtype.name, "BYTES")
    return Tensor(
        name=name, datatype=datatype, shape=list(array.shape), data=array.reshape(-1).tolist()
    )


class TensorPipeline(Pipeline):
    """Raw tensors (the KServe v2 protocol), checked against the config's declared inputs."""

    def prepare(self, request: InferRequest) -> Prepared:
        if request.inputs is None:
            raise ValidationFailed(f"model {self.config.name!r} takes tensor inputs")
        declared = {spec.name: spec for spec in self.config.inputs}
        expected_names = set(declared) or set(self.runner.input_names)
        given = {t.name: t for t in request.inputs}
        if set(given) != expected_names:
            raise ValidationFailed(f"inputs must be {sorted(expected_names)}, got {sorted(given)}")
        feeds: dict[str, np.ndarray] = {}
        rows = None
        for name, tensor in given.items():
            spec = declared.get(name)
            if spec is not None:
                if tensor.datatype != spec.datatype:
                    raise ValidationFailed(
                        f"input {name!r} must be {spec.datatype}, got {tensor.datatype}"
                    )
                if len(tensor.shape) != len(spec.shape) or any(
                    want != -1 and want != got
                    for want, got in zip(spec.shape, tensor.shape, strict=True)
                ):
                    raise ValidationFailed(
                        f"input {name!r} must have shape {spec.shape}, got {tensor.shape}"
                    )
            array = tensor_to_array(tensor)
            if array.ndim == 0:
                raise ValidationFailed(f"input {name!r} needs a batch dimension")
            if rows is not None and array.shape[0] != rows:
                raise ValidationFailed("all inputs must have the same batch size")
            rows = array.shape[0]
            feeds[name] = array
        return Prepared(feeds, rows or 0)

    def run(self, items: list[Prepared]) -> list[dict[str, np.ndarray]]:
        shapes = {tuple((n, a.shape[1:]) for n, a in sorted(item.feeds.items())) for item in items}
        if len(shapes) == 1:
            return super().run(items)
        return [self.runner.run(item.feeds) for item in items]  # shapes differ: cannot stack

    def reply(
        self, request: InferRequest, prepared: Prepared, outputs: dict[str, np.ndarray]
    ) -> InferReply:
        wanted = request.outputs or list(outputs)
        missing = set(wanted) - set(outputs)
        if missing:
            raise ValidationFailed(
                f"unknown outputs {sorted(missing)}; the model has {sorted(outputs)}"
            )
        return InferReply(
            **self._base_reply(request), outputs=[array_to_tensor(n, outputs[n]) for n in wanted]
        )


def pipeline_for(config: ModelConfig, runner: Runner, tokenizer: Tokenizer | None) -> Pipeline:
    if config.task in ("text_embedding", "text_classification"):
        if tokenizer is None:
            raise ValidationFailed(f"{config.task} needs a tokenizer")
        kind = TextEmbedding if config.task == "text_embedding" else TextClassification
        return kind(config, runner, tokenizer)
    if config.task == "tabular_scoring":
        return TabularScoring(config, runner)
    return TensorPipeline(config, runner)
