"""GPU benchmark: bert_onnx's MiniLM and BERT-base encoders on ONNX Runtime's CUDA provider, or a tiny CPU check."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

if __package__ in (None, ""):  # run as `python bench/gpu_bench.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnxruntime as ort

from services.inference.adapters import bert_onnx

REPO_ROOT = Path(__file__).resolve().parent.parent
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
OUTPUT = "sentence_embedding"

# fp16 dense tensor-core peak in TFLOPS (NVIDIA datasheets, figures without sparsity), by a pattern
# on the name nvidia-smi reports; the first match wins. "NVIDIA H100 80GB HBM3" is the SXM card.
PEAK_FP16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H100", 989.0),
    (r"H200.*NVL", 835.0),
    (r"H200", 989.0),
    (r"A100", 312.0),
    (r"\bL4\b", 121.0),
)

FLOPS_FORMULA = (
    "FLOPs per sequence = 2 * P * S + 4 * L * S^2 * H, where P is the encoder's non-embedding "
    "parameter count (all Linear weights and biases plus LayerNorm parameters, i.e. "
    "L * (4H^2 + 2HI + 9H + I)), S the sequence length, L the layers, H the hidden size and I the "
    "intermediate size. 2*P*S counts the multiply-adds of every Linear; 4*L*S^2*H counts Q@K^T "
    "and P@V. Embedding gathers, LayerNorm, softmax, GELU and pooling are not counted."
)

# The service's CUDA options (services/inference/adapters/onnx_session.providers_for), repeated
# here because this script runs in a venv without the service's dependencies (pydantic, nats).
CUDA_OPTIONS = {
    "device_id": "0",
    "arena_extend_strategy": "kSameAsRequested",
    "cudnn_conv_algo_search": "DEFAULT",
}

TINY = bert_onnx.BertConfig(
    vocab_size=1000,
    hidden_size=128,
    num_layers=2,
    num_heads=2,
    intermediate_size=512,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
)


class BenchError(RuntimeError):
    """The benchmark cannot give meaningful figures (no CUDA, a session on the wrong provider)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: bert_onnx.BertConfig
    weights_kind: str  # "real" (packaged MiniLM) or "random"

    def weights(self) -> Mapping[str, np.ndarray]:
        if self.weights_kind == "real":
            return bert_onnx.load_weights(bert_onnx.minilm_dir())
        return bert_onnx.random_weights(self.config, seed=0)


def model_spec(name: str) -> ModelSpec:
    if name == "minilm":
        config = bert_onnx.BertConfig.from_json(bert_onnx.minilm_dir() / "config.json")
        return ModelSpec("minilm", config, "real")
    if name == "bert-base":
        return ModelSpec("bert-base", bert_onnx.BERT_BASE, "random")
    if name == "tiny":
        return ModelSpec("tiny", TINY, "random")
    raise ValueError(f"unknown model {name!r} (minilm, bert-base, tiny)")


def non_embedding_params(config: bert_onnx.BertConfig) -> int:
    return sum(
        math.prod(shape)
        for name, shape in bert_onnx.weight_shapes(config).items()
        if not name.startswith("embeddings.")
    )


def flops_per_sequence(config: bert_onnx.BertConfig, seq: int) -> float:
    """See FLOPS_FORMULA."""
    linear = 2 * non_embedding_params(config) * seq
    attention = 4 * config.num_layers * seq * seq * config.hidden_size
    return float(linear + attention)


# -- the GPU, through nvidia-smi ---------------------------------------------------------------


def nvidia_smi(*query: str) -> list[str] | None:
    """One line of `nvidia-smi --query-gpu` for GPU 0, split on commas; None without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.strip().splitlines()
    return [part.strip() for part in lines[0].split(",")] if lines else None


def gpu_memory_used_mib() -> int | None:
    """Device-wide memory in use (every process, this one's CUDA context included)."""
    values = nvidia_smi("memory.used")
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None


def gpu_info() -> dict[str, Any]:
    values = nvidia_smi("name", "memory.total", "driver_version")
    if values is None or len(values) < 3:
        return {"name": None}
    return {"name": values[0], "memory_total_mib": int(values[1]), "driver": values[2]}


def peak_tflops(name: str | None, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "--peak-tflops"
    if name:
        for pattern, tflops in PEAK_FP16_TFLOPS:
            if re.search(pattern, name, flags=re.IGNORECASE):
                return tflops, f"table entry {pattern!r}"
    return None, "unknown device: pass --peak-tflops"


# -- measurement -------------------------------------------------------------------------------


FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "Softmax",
    "MatMul",
    "FusedMatMul",
)


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of FUSED_OPS the optimised graph ORT wrote has (did the fusions fire?)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in FUSED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def session_for(
    path: Path, device: str, threads: int, optimized: Path | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    if device == "cpu":
        options.intra_op_num_threads = threads
        providers: list[str | tuple[str, dict[str, str]]] = [CPU]
    else:
        providers = [(CUDA, CUDA_OPTIONS), CPU]
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    actual = session.get_providers()
    if device == "cuda" and (not actual or actual[0] != CUDA):
        raise BenchError(
            f"the session runs on {actual}, not {CUDA}: check the CUDA and cuDNN libraries "
            "(onnxruntime-gpu[cuda,cudnn]) and the driver"
        )
    return session


def feeds_for(batch: int, seq: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, seq), dtype=np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def timed_runs(
    run: Any, *, warmup: int, min_iters: int, min_time_s: float, max_iters: int
) -> list[float]:
    for _ in range(warmup):
        run()
    latencies: list[float] = []
    clock = time.perf_counter
    began = clock()
    while len(latencies) < max_iters and (
        len(latencies) < min_iters or clock() - began < min_time_s
    ):
        t0 = clock()
        run()
        latencies.append(clock() - t0)
    return latencies


def bench_batch(
    session: ort.InferenceSession,
    device: str,
    batch: int,
    seq: int,
    config: bert_onnx.BertConfig,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Device-resident inputs and output (IOBinding), then the service's way (host copies)."""
    feeds = feeds_for(batch, seq, config.vocab_size, seed=batch)
    place = "cuda" if device == "cuda" else "cpu"

    resident = session.io_binding()
    values = {name: ort.OrtValue.ortvalue_from_numpy(a, place, 0) for name, a in feeds.items()}
    for name, value in values.items():
        resident.bind_ortvalue_input(name, value)
    output = ort.OrtValue.ortvalue_from_shape_and_type(
        [batch, config.hidden_size], np.float32, place, 0
    )
    resident.bind_ortvalue_output(OUTPUT, output)

    def run_resident() -> None:
        session.run_with_iobinding(resident)
        resident.synchronize_outputs()

    def run_host_io() -> None:  # as OnnxRunner._run_bound does it
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(OUTPUT, place)
        session.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()

    timing = {
        "warmup": args.warmup,
        "min_iters": args.min_iters,
        "min_time_s": args.min_time,
        "max_iters": args.max_iters,
    }
    latencies = timed_runs(run_resident, **timing)
    embeddings = output.numpy()
    norms = np.linalg.norm(embeddings, axis=1)
    if not np.all(np.isfinite(embeddings)) or not np.allclose(norms, 1.0, atol=1e-2):
        raise BenchError(f"batch {batch}: embeddings are not finite, unit vectors")
    host = timed_runs(run_host_io, **timing)
    return {
        "batch": batch,
        "iters": len(latencies),
        "seq_per_s": batch * len(latencies) / sum(latencies),
        "p50_ms": statistics.median(latencies) * 1e3,
        "host_io_seq_per_s": batch * len(host) / sum(host),
        "host_io_p50_ms": statistics.median(host) * 1e3,
    }


def bench_model(
    spec: ModelSpec, dtype: str, args: argparse.Namespace, peak: float | None, tmp: Path
) -> dict[str, Any]:
    t0 = time.perf_counter()
    precision = cast(Literal["fp32", "fp16"], dtype)
    model = bert_onnx.build_bert_onnx(spec.config, spec.weights(), dtype=precision)
    path = tmp / f"{spec.name}.{dtype}.onnx"
    bert_onnx.save(model, path)
    del model
    gc.collect()
    build_s = time.perf_counter() - t0

    memory: dict[str, int | None] = {"before_load": gpu_memory_used_mib()}
    t0 = time.perf_counter()
    optimized = tmp / f"{spec.name}.{dtype}.optimized.onnx"
    fused: dict[str, int] | None = None
    try:  # the session also writes its optimised graph, to count the fused nodes
        session = session_for(path, args.device, args.threads, optimized)
        fused = op_counts(optimized)
    except BenchError:
        raise
    except Exception as exc:
        print(f"  could not write or read the optimised graph ({exc}); going on", file=sys.stderr)
        session = session_for(path, args.device, args.threads)
    finally:
        for leftover in (optimized, Path(f"{optimized}.data")):
            leftover.unlink(missing_ok=True)
    load_s = time.perf_counter() - t0
    providers = session.get_providers()
    memory["loaded"] = gpu_memory_used_mib()
    flops = flops_per_sequence(spec.config, args.seq)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        for batch in args.batches:
            try:
                row = bench_batch(session, args.device, batch, args.seq, spec.config, args)
            except BenchError:
                raise
            except Exception as exc:  # out of memory at a large batch: keep the smaller ones
                errors.append(f"batch {batch}: {type(exc).__name__}: {exc}")
                print(f"  {spec.name} {dtype} batch {batch} failed: {exc}", file=sys.stderr)
                continue
            row["tflops"] = row["seq_per_s"] * flops / 1e12
            row["fraction_of_fp16_peak"] = row["tflops"] / peak if peak else None
            rows.append(row)
            print(
                f"  {spec.name} {dtype} batch {batch}: {row['seq_per_s']:,.1f} seq/s"
                f" (p50 {row['p50_ms']:.2f} ms, {row['tflops']:.3g} TFLOPS)",
                flush=True,
            )
        memory["after_runs"] = gpu_memory_used_mib()
    finally:
        del session
        gc.collect()
    memory["after_unload"] = gpu_memory_used_mib()
    path.unlink(missing_ok=True)
    Path(f"{path}.data").unlink(missing_ok=True)
    best = max(rows, key=lambda r: r["seq_per_s"]) if rows else None
    return {
        "model": spec.name,
        "dtype": dtype,
        "weights": spec.weights_kind,
        "config": {
            "layers": spec.config.num_layers,
            "hidden": spec.config.hidden_size,
            "heads": spec.config.num_heads,
            "intermediate": spec.config.intermediate_size,
            "vocab": spec.config.vocab_size,
        },
        "non_embedding_params": non_embedding_params(spec.config),
        "flops_per_sequence": flops,
        "providers": providers,
        "optimized_op_counts": fused,
        "build_s": build_s,
        "load_s": load_s,
        "results": rows,
        "best": None
        if best is None
        else {
            "batch": best["batch"],
            "seq_per_s": best["seq_per_s"],
            "tflops": best["tflops"],
            "fraction_of_fp16_peak": best["fraction_of_fp16_peak"],
        },
        "gpu_memory_mib": memory,
        "errors": errors,
    }


# -- reporting ---------------------------------------------------------------------------------


def fmt_fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def fmt_mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def markdown(result: dict[str, Any]) -> str:
    gpu = result["gpu"].get("name") or f"CPU ({os.cpu_count()} cores)"
    peak = result["peak_fp16_tflops"]
    lines = [
        f"## bert_onnx encoders on {result['provider']}: {gpu}",
        "",
        f"{result['date']}, onnxruntime {result['onnxruntime']}, sequence {result['seq']},"
        f" fp16 dense peak {peak if peak is not None else 'n/a'} TFLOPS ({result['peak_source']}).",
        "",
        "| Model | dtype | batch | seq/s | p50 (ms) | TFLOPS | of fp16 peak | seq/s with host copies |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in result["models"]:
        for r in m["results"]:
            lines.append(
                f"| {m['model']} | {m['dtype']} | {r['batch']} | {r['seq_per_s']:,.1f}"
                f" | {r['p50_ms']:.2f} | {r['tflops']:.3g} | {fmt_fraction(r['fraction_of_fp16_peak'])}"
                f" | {r['host_io_seq_per_s']:,.1f} |"
            )
    lines += [
        "",
        "| Model | dtype | best batch | seq/s | TFLOPS | of fp16 peak"
        " | memory MiB: before load | loaded | after runs | after unload |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in result["models"]:
        b, mem = m["best"], m["gpu_memory_mib"]
        if b is None:
            lines.append(f"| {m['model']} | {m['dtype']} | failed | | | | | | | |")
            continue
        lines.append(
            f"| {m['model']} | {m['dtype']} | {b['batch']} | {b['seq_per_s']:,.1f}"
            f" | {b['tflops']:.3g} | {fmt_fraction(b['fraction_of_fp16_peak'])}"
            f" | {fmt_mib(mem.get('before_load'))} | {fmt_mib(mem.get('loaded'))}"
            f" | {fmt_mib(mem.get('after_runs'))} | {fmt_mib(mem.get('after_unload'))} |"
        )
    lines += [
        "",
        "Nodes of the graph as ONNX Runtime optimised it (did the transformer fusions fire?):",
        "",
    ]
    for m in result["models"]:
        counts = m["optimized_op_counts"]
        shown = ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) if counts else "n/a"
        lines.append(f"- {m['model']} {m['dtype']}: {shown}")
    lines += ["", FLOPS_FORMULA]
    return "\n".join(lines)


# -- driver ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--models", help="comma-separated: minilm, bert-base, tiny")
    parser.add_argument("--dtypes", default="fp32,fp16", help="comma-separated (fp32,fp16)")
    parser.add_argument("--batches", help="comma-separated batch sizes")
    parser.add_argument("--seq", type=int, help="sequence length (cuda 128, cpu 32)")
    parser.add_argument("--threads", type=int, default=2, help="CPU provider threads (2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per batch size (3)")
    parser.add_argument("--min-iters", type=int, default=5, help="timed runs at least (5)")
    parser.add_argument("--max-iters", type=int, default=200, help="timed runs at most (200)")
    parser.add_argument("--min-time", type=float, help="timed seconds at least (cuda 0.3, cpu 0.1)")
    parser.add_argument("--peak-tflops", type=float, help="fp16 dense peak, when not in the table")
    parser.add_argument("--output-dir", type=Path, help="default: $OUT, else bench/results")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if CUDA in ort.get_available_providers() else "cpu"
    cuda = args.device == "cuda"
    if args.models is None:
        args.models = "minilm,bert-base" if cuda else "tiny,minilm"
    if args.batches is None:
        args.batches = ",".join(str(2**k) for k in range(9)) if cuda else "1,4"
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    if args.seq is None:
        args.seq = 128 if cuda else 32
    if args.min_time is None:
        args.min_time = 0.3 if cuda else 0.1
    if args.output_dir is None:
        out = os.environ.get("OUT")
        args.output_dir = Path(out) if out else REPO_ROOT / "bench" / "results"
    if not set(args.dtypes) <= {"fp32", "fp16"} or not args.dtypes:
        parser.error("--dtypes takes fp32 and/or fp16")
    if not args.batches or min(args.batches) < 1 or args.seq < 1:
        parser.error("batch sizes and --seq must be positive")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    if args.device == "cuda":
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:  # CUDA and cuDNN from the nvidia-* wheels of [cuda,cudnn]
            try:
                preload()
            except Exception as exc:
                print(f"warning: onnxruntime.preload_dlls() failed: {exc}", file=sys.stderr)
        if CUDA not in ort.get_available_providers():
            raise BenchError(
                f"onnxruntime {ort.__version__} offers {ort.get_available_providers()}, not {CUDA}"
                " (install onnxruntime-gpu, or run with --cpu)"
            )
    gpu = gpu_info() if args.device == "cuda" else {"name": None}
    peak, source = peak_tflops(gpu.get("name"), args.peak_tflops)
    if args.device == "cpu" and args.peak_tflops is None:
        source = "no GPU: the CPU run checks the code path, its figures are not comparable"
    result: dict[str, Any] = {
        "benchmark": "bench/gpu_bench.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "provider": CUDA if args.device == "cuda" else CPU,
        "gpu": gpu,
        "peak_fp16_tflops": peak,
        "peak_source": source,
        "seq": args.seq,
        "batches": args.batches,
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu_memory_mib_at_start": gpu_memory_used_mib() if args.device == "cuda" else None,
        "flops_formula": FLOPS_FORMULA,
        "models": [],
    }
    print(
        f"{result['provider']} on {gpu.get('name') or 'CPU'}; peak {peak} TFLOPS ({source});"
        f" sequence {args.seq}, batches {args.batches}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="trellis-gpu-bench-") as tmp:
        for name in args.models:
            spec = model_spec(name)
            for dtype in args.dtypes:
                result["models"].append(bench_model(spec, dtype, args, peak, Path(tmp)))
    result["elapsed_s"] = time.perf_counter() - started
    result["table_markdown"] = markdown(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 3
    stem = "gpu" if args.device == "cuda" else "gpu-cpu"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / f"{stem}.md").write_text(result["table_markdown"] + "\n")
    print()
    print(result["table_markdown"])
    print(
        f"\nresults written to {args.output_dir}/{stem}.json and .md ({result['elapsed_s']:.0f}s)"
    )
    failed = [e for m in result["models"] for e in m["errors"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
