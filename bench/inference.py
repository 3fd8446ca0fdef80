"""Benchmark: MiniLM on PyTorch vs ONNX Runtime, LightGBM vs ONNX Runtime, and the inference service over NATS."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as `python bench/inference.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from bench.common import cpu_model, nats_server_version, package_version, process_cpu_s
from contracts import subjects, topology
from contracts.inference import (
    Batching,
    InferReply,
    InferRequest,
    ModelConfig,
    ModelState,
    ModelStatus,
    RegisterModelCommand,
)
from runtime.bus import Bus
from runtime.embedded_nats import EmbeddedNats
from runtime.errors import TrellisError
from runtime.heap import freeze_heap
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.inference.adapters import bert_onnx
from services.inference.adapters.default_models import (
    MINILM,
    build_minilm_artifacts,
    minilm_config,
)
from services.inference.adapters.model_store import ModelStore, open_artifacts

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "inference.json"

SEQ_LEN = 128  # part A: every text is padded or truncated to exactly this many tokens
EMBED_BATCHES = (1, 32)
ENGINES = ("pytorch", "ort-fp32", "ort-int8")
TREE_FEATURES = 30
TREE_ROUNDS = 200
TREE_LEAVES = 31
TREE_BATCHES = (1, 10_000)
TREE_TOLERANCE = 1e-5
CONCURRENCIES = (1, 16, 64)
PIPELINE_BATCHES = (1, 16, 64)
GOAL_RATIO = 3.0  # batched throughput / unbatched throughput at concurrency 64
GOAL_P99_MS = 100.0  # batched p99 at concurrency 64
GOAL_CONCURRENCY = 64
REQUEST_TIMEOUT_S = 60.0

# -- texts -------------------------------------------------------------------------------------

_SUBJECTS = (
    "The customer",
    "Our support team",
    "A new merchant in Lisbon",
    "The fraud team",
    "My bank",
    "The delivery driver",
    "The payment gateway",
    "Her landlord",
    "The city council",
    "A small bakery downtown",
    "The airline",
    "The hotel in Porto",
    "Our mobile app",
    "The hospital pharmacy",
    "An online bookstore",
    "The insurance company",
    "The school library",
    "My accountant",
)
_ACTIONS = (
    "flagged an unusual card payment",
    "refunded the duplicate charge",
    "asked for a copy of the invoice",
    "cancelled the yearly subscription",
    "updated the shipping address",
    "declined the transaction",
    "sent a password reset link",
    "reported a missing parcel",
    "raised the monthly spending limit",
    "approved the loan application",
    "changed its opening hours",
    "published a new privacy policy",
    "lost the booking confirmation",
    "charged a late fee",
    "opened a complaint about the service",
    "moved the meeting to Thursday",
)
_TAILS = (
    "after midnight on Friday.",
    "without any explanation.",
    "within two business days.",
    "because the billing address did not match.",
    "for the third time this month.",
    "while I was travelling abroad.",
    "before the end of the quarter.",
    "and nobody answered the phone.",
    "as soon as the payment cleared.",
    "despite several reminders by email.",
    "during the holiday rush.",
    "to comply with the new regulation.",
)
_STANDALONE = (
    "How do I reset the password for my online banking account?",
    "Why was my card declined at the petrol station this morning?",
    "Can I change the delivery date after the order has shipped?",
    "The package arrived damaged and the box was soaking wet.",
    "Please send the receipt to my work email instead of my personal one.",
    "Is there a fee for withdrawing cash from an ATM abroad?",
    "I was charged twice for the same concert tickets last week.",
    "Which documents do I need to open a business account?",
    "The app crashes every time I try to upload a photo of a cheque.",
    "Our quarterly revenue grew by twelve percent compared with last year.",
    "The new model detects fraudulent transactions with fewer false alarms.",
    "Customers in rural areas wait longer for their parcels to arrive.",
    "Search results should rank recent articles above older ones.",
    "The train to Brussels was cancelled because of a signal failure.",
    "A thunderstorm knocked out power across the northern suburbs overnight.",
    "The museum offers free entry on the first Sunday of every month.",
    "She booked a table for six at the Italian place near the station.",
    "How long does it take for an international transfer to clear?",
    "The warranty covers repairs but not accidental damage to the screen.",
    "I would like to dispute a charge from a merchant I do not recognise.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Remote workers reported better focus but weaker ties with colleagues.",
    "Interest rates are expected to stay unchanged until the spring.",
    "The support chat keeps disconnecting before an agent picks up.",
)


def short_sentences(tokenizer: Tokenizer, count: int = 200, seed: int = 7) -> list[str]:
    """`count` distinct, realistic sentences of 10 to 25 word pieces (special tokens excluded)."""
    combos = [f"{s} {a} {t}" for s in _SUBJECTS for a in _ACTIONS for t in _TAILS]
    random.Random(seed).shuffle(combos)
    out: list[str] = []
    for text in [*_STANDALONE, *combos]:
        if 10 <= len(tokenizer.encode(text, add_special_tokens=False).ids) <= 25:
            out.append(text)
        if len(out) == count:
            return out
    raise RuntimeError(f"only {len(out)} sentences of 10-25 tokens")


def load_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(bert_onnx.minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def fixed_length_batch(
    tokenizer: Tokenizer, sentences: Sequence[str], batch: int
) -> dict[str, Any]:
    """`batch` paragraphs of real sentences, each cut to exactly SEQ_LEN tokens (no padding)."""
    tokenizer.enable_truncation(max_length=SEQ_LEN)
    tokenizer.enable_padding(length=SEQ_LEN)
    try:
        paragraphs = [
            " ".join(sentences[(i * 11 + k) % len(sentences)] for k in range(12))
            for i in range(batch)
        ]
        encoded = tokenizer.encode_batch(paragraphs)
    finally:
        tokenizer.no_padding()
        tokenizer.no_truncation()
    feeds = {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
    }
    if not feeds["attention_mask"].all():
        raise RuntimeError("a paragraph is shorter than the sequence length")
    return feeds


# -- timing helpers ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def run_rounds(
    calls: dict[str, Callable[[], object]],
    rounds: int,
    iters: int,
    pause_s: float = 0.1,
    block_budget_s: float = math.inf,
) -> dict[str, list[list[float]]]:
    """Per-call latencies (s) by engine and round; the engine order rotates from round to round.

    An engine's block in a round stops early (after at least one call) once it has taken
    `block_budget_s`, so that an engine slowed down by a busy machine cannot stretch the run.
    """
    names = list(calls)
    out: dict[str, list[list[float]]] = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            latencies: list[float] = []
            for _ in range(iters):
                t0 = clock()
                call()
                latencies.append(clock() - t0)
                if sum(latencies) >= block_budget_s:
                    break
            out[name].append(latencies)
            time.sleep(pause_s)  # let the previous engine's spinning threads go to sleep
    return out


def summarise_engines(
    timings: dict[str, list[list[float]]], rows: int, reference: str
) -> dict[str, dict[str, Any]]:
    """Median throughput over rounds, pooled p50, and the ratio to `reference` (median and paired)."""
    rates = {
        name: [rows * len(lat) / sum(lat) for lat in by_round] for name, by_round in timings.items()
    }
    out: dict[str, dict[str, Any]] = {}
    for name, by_round in timings.items():
        paired = [a / b for a, b in zip(rates[name], rates[reference], strict=True)]
        median_rate = statistics.median(rates[name])
        out[name] = {
            "throughput": median_rate,
            "p50_ms": statistics.median(x for lat in by_round for x in lat) * 1e3,
            "ratio": median_rate / statistics.median(rates[reference]),
            "paired_ratio_min": min(paired),
            "paired_ratio_max": max(paired),
            "round_throughputs": rates[name],
        }
    return out


def ort_session(model: bytes | str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


# -- A: MiniLM embeddings ----------------------------------------------------------------------


def bench_embeddings(
    args: argparse.Namespace, artifacts: dict[str, bytes], sentences: Sequence[str]
) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download weights
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    source = bert_onnx.minilm_dir()
    config = bert_onnx.BertConfig.from_json(source / "config.json")
    fp32 = bert_onnx.build_bert_onnx(config, bert_onnx.load_weights(source)).SerializeToString()
    sessions = {
        "ort-fp32": ort_session(fp32, args.threads),
        "ort-int8": ort_session(artifacts["model.int8.onnx"], args.threads),
    }
    model = transformers.AutoModel.from_pretrained(str(source)).eval()
    attn = str(getattr(model.config, "_attn_implementation", "unknown"))
    tokenizer = load_tokenizer()

    results: dict[str, Any] = {"batches": {}}
    for batch in EMBED_BATCHES:
        feeds = fixed_length_batch(tokenizer, sentences, batch)
        tensors = {name: torch.from_numpy(array) for name, array in feeds.items()}
        mask = tensors["attention_mask"]

        def torch_embed(
            tensors: dict[str, Any] = tensors, mask: Any = mask, model: Any = model
        ) -> Any:
            with torch.inference_mode():
                hidden = model(**tensors).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()

        def ort_embed(session: ort.InferenceSession, feeds: dict[str, Any] = feeds) -> Any:
            return session.run(["sentence_embedding"], feeds)[0]

        calls: dict[str, Callable[[], Any]] = {
            "pytorch": torch_embed,
            "ort-fp32": functools.partial(ort_embed, sessions["ort-fp32"]),
            "ort-int8": functools.partial(ort_embed, sessions["ort-int8"]),
        }
        outputs = {name: np.asarray(call()) for name, call in calls.items()}  # also warms up
        iters = args.embed_iters_b1 if batch == 1 else args.embed_iters
        timings = run_rounds(calls, args.embed_rounds, iters, block_budget_s=args.block_budget_s)
        summary = summarise_engines(timings, batch, "pytorch")
        reference = outputs["pytorch"]
        accuracy = {
            "fp32_max_abs_diff": float(np.abs(outputs["ort-fp32"] - reference).max()),
            "int8_min_cosine": float((outputs["ort-int8"] * reference).sum(axis=1).min()),
        }
        results["batches"][str(batch)] = {"engines": summary, "accuracy": accuracy}
        print(
            f"  embeddings batch {batch}: "
            + ", ".join(f"{n} {summary[n]['throughput']:.1f} seq/s" for n in ENGINES),
            flush=True,
        )
    results["torch_attention"] = attn
    results["seq_len"] = SEQ_LEN
    del model, sessions
    gc.collect()
    return results


# -- B: LightGBM -------------------------------------------------------------------------------


def bench_trees(args: argparse.Namespace) -> dict[str, Any]:
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(0)
    rows = args.tree_train_rows
    x = rng.standard_normal((rows, TREE_FEATURES)).astype(np.float32)
    w = rng.standard_normal(TREE_FEATURES)
    logit = x[:, :10] @ w[:10] + np.sin(2 * x[:, 10]) + x[:, 11] * x[:, 12]
    y = (logit + 0.5 * rng.standard_normal(rows) > 0).astype(np.int32)
    params = {
        "objective": "binary",
        "num_leaves": TREE_LEAVES,
        "learning_rate": 0.1,
        "num_threads": args.threads,
        "verbose": -1,
        "seed": 0,
        "deterministic": True,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=TREE_ROUNDS)
    onnx_model = onnxmltools.convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, TREE_FEATURES]))], zipmap=False
    )
    session = ort_session(onnx_model.SerializeToString(), args.threads)
    test = rng.standard_normal((max(TREE_BATCHES), TREE_FEATURES)).astype(np.float32)

    ort_p = session.run(["probabilities"], {"input": test})[0][:, 1]
    lgb_p = booster.predict(test, num_threads=args.threads)
    max_diff = float(np.abs(ort_p - lgb_p).max())

    results: dict[str, Any] = {
        "trees": booster.num_trees(),
        "leaves": TREE_LEAVES,
        "features": TREE_FEATURES,
        "train_rows": rows,
        "max_abs_diff": max_diff,
        "agree": max_diff <= TREE_TOLERANCE,
        "batches": {},
    }
    for batch in TREE_BATCHES:
        data = test[:batch]
        calls: dict[str, Callable[[], Any]] = {
            "lightgbm": functools.partial(booster.predict, data, num_threads=args.threads),
            "ort": functools.partial(session.run, ["probabilities"], {"input": data}),
        }
        for call in calls.values():
            call()
        iters = args.tree_iters_b1 if batch == 1 else args.tree_iters
        timings = run_rounds(calls, args.tree_rounds, iters, pause_s=0.02)
        results["batches"][str(batch)] = summarise_engines(timings, batch, "lightgbm")
    return results


# -- C0: the service's MiniLM pipeline alone, batch 1 vs the batches the batcher forms ---------


def bench_pipeline(
    args: argparse.Namespace, artifacts: dict[str, bytes], sentences: Sequence[str], threads: int
) -> dict[str, Any]:
    """Wall and process CPU time per row of the service's own pipeline (no bus, no batcher),
    one-sentence requests run together as the batcher hands them over (one run per width)."""
    from services.inference.adapters.default_models import local_minilm_pipeline
    from services.inference.adapters.onnx_session import OnnxRunner
    from services.inference.domain.pipelines import Prepared

    pipeline = local_minilm_pipeline(intra_op_threads=threads, artifacts=artifacts)
    items = [pipeline.prepare(InferRequest(texts=[text])) for text in sentences]
    out: dict[str, Any] = {"threads": threads, "batches": {}}
    for batch in PIPELINE_BATCHES:
        groups = [items[k : k + batch] for k in range(0, len(items) - batch + 1, batch)]
        cursor = [0]

        def run_one(groups: list[list[Prepared]] = groups, cursor: list[int] = cursor) -> None:
            pipeline.run(groups[cursor[0] % len(groups)])
            cursor[0] += 1

        run_one()
        iters = max(3, round(args.pipeline_rows / batch))
        wall, cpu = [], []
        for _ in range(args.pipeline_rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                run_one()
            wall.append((time.perf_counter() - t0) / (iters * batch))
            cpu.append((time.process_time() - c0) / (iters * batch))
            time.sleep(0.05)
        widths = sorted({max(i.feeds["input_ids"].shape[1] for i in g) for g in groups})
        out["batches"][str(batch)] = {
            "rows_per_s": 1 / statistics.median(wall),
            "cpu_ms_per_row": statistics.median(cpu) * 1e3,
            "item_widths": widths,
        }
    cast(OnnxRunner, pipeline.runner).close()
    one = out["batches"][str(PIPELINE_BATCHES[0])]
    for data in out["batches"].values():
        data["rows_per_s_vs_batch_1"] = data["rows_per_s"] / one["rows_per_s"]
    return out


# -- C: the inference service over the bus -----------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way to serve MiniLM: a model name and its batching block."""

    key: str
    batching: Batching

    @property
    def model(self) -> str:
        return f"minilm-{self.key}"

    def describe(self) -> str:
        b = self.batching
        if not b.enabled:
            return f"off (max_batch_size {b.max_batch_size}, instances {b.instances})"
        return (
            f"max_batch_size {b.max_batch_size}, max_queue_delay_us {b.max_queue_delay_us},"
            f" instances {b.instances}"
        )


def main_variants(args: argparse.Namespace) -> list[Variant]:
    return [
        Variant(
            "batched",
            Batching(
                enabled=True,
                max_batch_size=64,
                max_queue_delay_us=args.delay_us,
                instances=args.instances,
            ),
        ),
        Variant(
            "unbatched",
            Batching(enabled=False, max_batch_size=1, instances=args.unbatched_instances),
        ),
    ]


def sweep_variants() -> list[Variant]:
    grid = [
        Variant(
            f"b-d{delay}-i{inst}",
            Batching(max_batch_size=64, max_queue_delay_us=delay, instances=inst),
        )
        for delay in (2000, 3500, 5000)
        for inst in (1, 2)
    ]
    grid += [
        Variant(f"u-i{inst}", Batching(enabled=False, max_batch_size=1, instances=inst))
        for inst in (1, 2)
    ]
    # What one would naively write for "no batching": enabled=False, default max_batch_size.
    grid.append(Variant("off-mbs64", Batching(enabled=False, max_batch_size=64, instances=1)))
    return grid


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent outside idle and iowait since boot, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


class ClientProcess:
    """The load generator: this file run with --client in its own process, driven over stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, sentences: Sequence[str]) -> ClientProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--client",
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = cls(proc)
        await client.call({"op": "init", "sentences": list(sentences)})
        return client

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the client process exited ({await self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def client_run(
    bus: Bus, sentences: Sequence[str], model: str, concurrency: int, duration_s: float, offset: int
) -> dict[str, Any]:
    """Closed loop: `concurrency` workers each send one request at a time until the deadline."""
    subject = subjects.model_infer(model)
    latencies: list[float] = []
    errors: list[str] = []
    clock = time.perf_counter
    cpu0 = time.process_time()
    began = clock()
    deadline = began + duration_s

    async def worker(w: int) -> None:
        k = offset + w
        while clock() < deadline:
            text = sentences[k % len(sentences)]
            k += concurrency
            t0 = clock()
            try:
                reply = await bus.request(
                    subject, InferRequest(texts=[text]), InferReply, timeout_s=REQUEST_TIMEOUT_S
                )
            except TrellisError as exc:
                errors.append(str(exc))
                continue
            latencies.append(clock() - t0)
            if reply.embeddings is None or len(reply.embeddings) != 1:
                errors.append("reply without one embedding")

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = clock() - began
    out: dict[str, Any] = {
        "completed": len(latencies),
        "errors": len(errors),
        "error_sample": errors[:3],
        "elapsed_s": elapsed,
        "throughput": len(latencies) / elapsed,
        "client_cpu_s": time.process_time() - cpu0,
    }
    if latencies:
        out.update(
            {f"p{q}_ms": percentile(latencies, q) * 1e3 for q in (50, 90, 99)},
            mean_ms=statistics.fmean(latencies) * 1e3,
            max_ms=max(latencies) * 1e3,
        )
    return out


async def client_main(url: str) -> int:
    bus = await Bus.connect(url, source="bench-client")
    sentences: list[str] = []
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return 0
            command = json.loads(line)
            if command["op"] == "init":
                sentences = command["sentences"]
                result: dict[str, Any] = {"ok": True}
            else:
                result = await client_run(
                    bus,
                    sentences,
                    command["model"],
                    command["concurrency"],
                    command["duration_s"],
                    command["offset"],
                )
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        await bus.close()


def batch_counters(registry: Any, model: str) -> dict[str, float]:
    labels = {"model": model}

    def value(name: str) -> float:
        sample = registry.get_sample_value(name, labels)
        return float(sample) if sample is not None else 0.0

    return {
        "batches": value("trellis_inference_batch_size_count"),
        "rows": value("trellis_inference_batch_size_sum"),
        "queue_s": value("trellis_inference_queue_duration_seconds_sum"),
        "compute_s": value("trellis_inference_compute_duration_seconds_sum"),
    }


async def register(admin: Bus, base: ModelConfig, variant: Variant) -> ModelStatus:
    config = ModelConfig.model_validate(
        {**base.model_dump(), "name": variant.model, "batching": variant.batching.model_dump()}
    )
    status = await admin.request(
        subjects.INFERENCE_REGISTER_MODEL,
        RegisterModelCommand(config=config),
        ModelStatus,
        timeout_s=180,
    )
    if status.state is not ModelState.READY:
        raise RuntimeError(f"{variant.model} did not load: {status.state} {status.reason}")
    return status


async def bench_service(
    args: argparse.Namespace,
    artifacts: dict[str, bytes],
    sentences: Sequence[str],
    variants: Sequence[Variant],
    concurrencies: Sequence[int],
) -> dict[str, Any]:
    from services.inference.app import build
    from services.inference.config import Settings

    cells: dict[str, dict[str, list[dict[str, Any]]]] = {
        v.key: {str(c): [] for c in concurrencies} for v in variants
    }
    with tempfile.TemporaryDirectory(prefix="trellis-bench-inference-") as tmp:
        nats_server = EmbeddedNats(Path(tmp) / "nats", port=0)
        url = nats_server.start()
        nats_pid = nats_server.process.pid if nats_server.process is not None else -1
        service_bus = await Bus.connect(url, source="inference")
        admin = await Bus.connect(url, source="bench-admin")
        settings = Settings(
            default_models=False,
            executor_threads=args.executor_threads,
            intra_op_threads=args.service_intra_op or args.threads,
        )
        service = await build(service_bus, settings, SharedSettings(data_dir=Path(tmp) / "data"))
        client: ClientProcess | None = None
        try:
            await service.start()
            kv = await ensure_bucket(admin.js, topology.INFERENCE_MODELS)
            store = ModelStore(kv, await open_artifacts(admin.js))
            for file, data in artifacts.items():
                await store.put_artifact(MINILM, 1, file, data)
            base = minilm_config(store)
            providers: dict[str, list[str]] = {}
            for variant in variants:
                providers[variant.key] = (await register(admin, base, variant)).providers
            freeze_heap()  # as a service's entry point does once it has started
            client = await ClientProcess.start(url, sentences)
            print(f"  service ready ({len(variants)} model configs); warming up", flush=True)
            for variant in variants:
                await client.call(
                    {
                        "op": "run",
                        "model": variant.model,
                        "concurrency": max(concurrencies),
                        "duration_s": args.warmup_s,
                        "offset": 0,
                    }
                )
            registry = service.metrics.registry
            started = time.perf_counter()
            for r in range(args.service_rounds):
                for c in concurrencies:
                    order = list(variants) if r % 2 == 0 else list(variants)[::-1]
                    for variant in order:
                        before = batch_counters(registry, variant.model)
                        cpu0, srv0 = time.process_time(), process_cpu_s(nats_pid)
                        busy0 = machine_busy_s()
                        result = await client.call(
                            {
                                "op": "run",
                                "model": variant.model,
                                "concurrency": c,
                                "duration_s": args.duration_s,
                                "offset": r * 997 + c,
                            }
                        )
                        result["service_cpu_s"] = time.process_time() - cpu0
                        srv1, busy1 = process_cpu_s(nats_pid), machine_busy_s()
                        if srv0 is not None and srv1 is not None:
                            result["nats_cpu_s"] = srv1 - srv0
                            if busy0 is not None and busy1 is not None:
                                ours = result["service_cpu_s"] + result["client_cpu_s"]
                                others = busy1 - busy0 - ours - result["nats_cpu_s"]
                                result["other_cores"] = max(0.0, others) / result["elapsed_s"]
                        after = batch_counters(registry, variant.model)
                        result.update({k: after[k] - before[k] for k in after})
                        cells[variant.key][str(c)].append(result)
                print(
                    f"  service round {r + 1}/{args.service_rounds} done"
                    f" ({time.perf_counter() - started:.0f}s)",
                    flush=True,
                )
        finally:
            if client is not None:
                await client.close()
            await service.stop()
            await service_bus.close()
            await admin.close()
            nats_server.stop()

    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in variants:
        summary[variant.key] = {}
        for c in concurrencies:
            runs = cells[variant.key][str(c)]
            completed = sum(run["completed"] for run in runs)
            batches = sum(run["batches"] for run in runs)

            def per_request_ms(
                key: str, runs: list[dict[str, Any]] = runs, n: int = completed
            ) -> float | None:
                if n == 0 or any(key not in run for run in runs):
                    return None
                return float(sum(run[key] for run in runs)) / n * 1e3

            summary[variant.key][str(c)] = {
                "throughput": statistics.median(run["throughput"] for run in runs),
                "p50_ms": statistics.median(run.get("p50_ms", math.nan) for run in runs),
                "p99_ms": statistics.median(run.get("p99_ms", math.nan) for run in runs),
                "errors": sum(run["errors"] for run in runs),
                "mean_batch_rows": sum(run["rows"] for run in runs) / batches if batches else 0,
                "mean_queue_ms": sum(run["queue_s"] for run in runs) / batches * 1e3
                if batches
                else 0,
                "mean_compute_ms": sum(run["compute_s"] for run in runs) / batches * 1e3
                if batches
                else 0,
                "service_cpu_ms_per_req": per_request_ms("service_cpu_s"),
                "client_cpu_ms_per_req": per_request_ms("client_cpu_s"),
                "nats_cpu_ms_per_req": per_request_ms("nats_cpu_s"),
                "other_cores": statistics.median(run["other_cores"] for run in runs)
                if all("other_cores" in run for run in runs)
                else None,
            }
    paired: dict[str, list[float]] = {}
    if {"batched", "unbatched"} <= set(cells):
        paired = {
            str(c): [
                b["throughput"] / u["throughput"]
                for b, u in zip(cells["batched"][str(c)], cells["unbatched"][str(c)], strict=True)
            ]
            for c in concurrencies
        }
    return {
        "paired_ratios": paired,
        "variants": {
            v.key: {
                "model": v.model,
                "batching": v.batching.model_dump(),
                "describe": v.describe(),
                "providers": providers.get(v.key, []),
            }
            for v in variants
        },
        "concurrencies": list(concurrencies),
        "settings": {
            "executor_threads": args.executor_threads,
            "intra_op_threads": args.service_intra_op or args.threads,
            "duration_s": args.duration_s,
            "rounds": args.service_rounds,
            "client": "separate process (Bus.request), closed loop",
        },
        "cells": cells,
        "summary": summary,
    }


# -- reporting ---------------------------------------------------------------------------------


def embeddings_table(part: dict[str, Any]) -> str:
    lines = [
        "| Batch | Engine | seq/s | p50 latency (ms) | throughput vs PyTorch | paired range |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for batch, data in part["batches"].items():
        for name in ENGINES:
            e = data["engines"][name]
            lines.append(
                f"| {batch} | {name} | {e['throughput']:.1f} | {e['p50_ms']:.1f}"
                f" | {e['ratio']:.2f}x | {e['paired_ratio_min']:.2f} to {e['paired_ratio_max']:.2f} |"
            )
    return "\n".join(lines)


def trees_table(part: dict[str, Any]) -> str:
    lines = [
        "| Rows per call | Engine | rows/s | p50 latency (ms) | vs LightGBM | paired range |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for batch, engines in part["batches"].items():
        for name in ("lightgbm", "ort"):
            e = engines[name]
            label = "Booster.predict" if name == "lightgbm" else "ONNX Runtime"
            lines.append(
                f"| {int(batch):,} | {label} | {e['throughput']:,.0f} | {e['p50_ms']:.3f}"
                f" | {e['ratio']:.2f}x | {e['paired_ratio_min']:.2f} to {e['paired_ratio_max']:.2f} |"
            )
    return "\n".join(lines)


def pipeline_table(part: dict[str, Any]) -> str:
    lines = [
        "| Texts per run | rows/s | CPU ms per row | rows/s vs 1 text | padded widths |",
        "|---:|---:|---:|---:|---|",
    ]
    for batch, d in part["batches"].items():
        lines.append(
            f"| {batch} | {d['rows_per_s']:.0f} | {d['cpu_ms_per_row']:.2f}"
            f" | {d['rows_per_s_vs_batch_1']:.2f}x | {', '.join(map(str, d['item_widths']))} |"
        )
    return "\n".join(lines)


def service_table(part: dict[str, Any]) -> str:
    keys = list(part["summary"])
    base = "unbatched" if "unbatched" in keys else None
    lines = [
        "| Concurrency | Serving | req/s | p50 (ms) | p99 (ms) | rows/batch | queue ms/batch"
        " | compute ms/batch | vs unbatched (paired range) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in part["concurrencies"]:
        for key in keys:
            s = part["summary"][key][str(c)]
            ratio = ""
            if base is not None:
                ratio = f"{s['throughput'] / part['summary'][base][str(c)]['throughput']:.2f}x"
                paired = part["paired_ratios"].get(str(c)) if key != base else None
                if paired:
                    ratio += f" ({min(paired):.2f} to {max(paired):.2f})"
            lines.append(
                f"| {c} | {key} | {s['throughput']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f}"
                f" | {s['mean_batch_rows']:.1f} | {s['mean_queue_ms']:.1f}"
                f" | {s['mean_compute_ms']:.1f} | {ratio} |"
            )
    return "\n".join(lines)


def cpu_table(part: dict[str, Any]) -> str:
    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines = [
        "| Concurrency | Serving | service CPU ms/req | client CPU ms/req | nats-server CPU ms/req"
        " | other processes (cores busy) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in part["concurrencies"]:
        for key, by_c in part["summary"].items():
            s = by_c[str(c)]
            lines.append(
                f"| {c} | {key} | {cell(s['service_cpu_ms_per_req'])}"
                f" | {cell(s['client_cpu_ms_per_req'])} | {cell(s['nats_cpu_ms_per_req'])}"
                f" | {cell(s['other_cores'])} |"
            )
    return "\n".join(lines)


def batching_ceiling(
    result: dict[str, Any], batched: dict[str, Any], unbatched_rps: float
) -> dict[str, Any] | None:
    """The most any batching could give over the measured unbatched service on these cores:
    every core running the model at its cheapest CPU per row (part C0, any batch size or thread
    count) plus what the batched run's client and nats-server spent per request, with no
    tokenising, batching or reply cost in the service at all."""
    parts = [result[k] for k in ("pipeline", "pipeline_one_thread") if k in result]
    rows = [(d["cpu_ms_per_row"], p["threads"], b) for p in parts for b, d in p["batches"].items()]
    if not rows or unbatched_rps <= 0:
        return None
    cpu_ms, threads, batch = min(rows)
    outside = (batched.get("client_cpu_ms_per_req") or 0.0) + (
        batched.get("nats_cpu_ms_per_req") or 0.0
    )
    rps = (os.cpu_count() or 1) * 1e3 / (cpu_ms + outside)
    return {
        "model_cpu_ms_per_row": round(cpu_ms, 3),
        "client_and_nats_cpu_ms_per_req": round(outside, 3),
        "at": f"{batch} texts per run, {threads} thread{'s' if threads > 1 else ''}",
        "max_rps": round(rps),
        "max_ratio": round(rps / unbatched_rps, 2),
    }


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    service = result.get("service")
    if service is not None and {"batched", "unbatched"} <= set(service["summary"]):
        c = str(GOAL_CONCURRENCY)
        batched = service["summary"]["batched"][c]
        unbatched = service["summary"]["unbatched"][c]
        ratio = batched["throughput"] / unbatched["throughput"]
        p99 = batched["p99_ms"]
        ceiling = batching_ceiling(result, batched, unbatched["throughput"])
        out.append(
            {
                **({"ceiling": ceiling} if ceiling else {}),
                "goal": f"dynamic batching at concurrency {GOAL_CONCURRENCY} gives"
                f" >= {GOAL_RATIO:g}x the throughput of unbatched serving, with p99 <"
                f" {GOAL_P99_MS:g} ms (MiniLM, {os.cpu_count()} cores)",
                "value": {"ratio": round(ratio, 2), "p99_ms": round(p99, 1)},
                "paired_ratios": [round(r, 2) for r in service["paired_ratios"].get(c, [])],
                "pass": ratio >= GOAL_RATIO and p99 < GOAL_P99_MS,
                "ratio_pass": ratio >= GOAL_RATIO,
                "p99_pass": p99 < GOAL_P99_MS,
            }
        )
    trees = result.get("trees")
    if trees is not None:
        out.append(
            {
                "goal": f"ONNX Runtime and LightGBM probabilities agree within {TREE_TOLERANCE:g}",
                "value": trees["max_abs_diff"],
                "pass": trees["agree"],
            }
        )
    return out


def machine_info() -> dict[str, Any]:
    server_version = nats_server_version()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nats_server": server_version,
        **{
            name: package_version(name)
            for name in (
                "onnxruntime",
                "onnx",
                "numpy",
                "torch",
                "transformers",
                "lightgbm",
                "onnxmltools",
                "tokenizers",
                "nats-py",
            )
        },
    }


# -- driver ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Parts A and B run in the main thread, before part C starts its event loop."""
    started = time.perf_counter()
    tokenizer = load_tokenizer()
    sentences = short_sentences(tokenizer)
    print("building MiniLM artifacts (default_models.build_minilm_artifacts)", flush=True)
    artifacts = build_minilm_artifacts()
    lengths = [len(tokenizer.encode(s, add_special_tokens=False).ids) for s in sentences]
    result: dict[str, Any] = {
        "benchmark": "bench/inference.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            k: v for k, v in vars(args).items() if k not in ("output", "client") and v is not None
        },
        "sentences": {
            "count": len(sentences),
            "tokens_min": min(lengths),
            "tokens_max": max(lengths),
            "tokens_mean": statistics.fmean(lengths),
            "examples": sentences[:3],
        },
    }
    if args.sweep:
        print("service: sweep of batching settings at concurrency 64", flush=True)
        result["service"] = asyncio.run(
            bench_service(args, artifacts, sentences, sweep_variants(), (GOAL_CONCURRENCY,))
        )
    else:
        parts: dict[str, float] = {}
        t0 = time.perf_counter()
        print("A: MiniLM embeddings, PyTorch vs ONNX Runtime", flush=True)
        result["embeddings"] = bench_embeddings(args, artifacts, sentences)
        parts["embeddings"], t0 = time.perf_counter() - t0, time.perf_counter()
        print("B: LightGBM vs ONNX Runtime", flush=True)
        result["trees"] = bench_trees(args)
        parts["trees"], t0 = time.perf_counter() - t0, time.perf_counter()
        print("C: the service's MiniLM pipeline alone, then the service over NATS", flush=True)
        served = args.service_intra_op or args.threads
        result["pipeline"] = bench_pipeline(args, artifacts, sentences, served)
        if served != 1:  # one thread wastes least CPU on small runs: the model's best case
            result["pipeline_one_thread"] = bench_pipeline(args, artifacts, sentences, 1)
        parts["pipeline"], t0 = time.perf_counter() - t0, time.perf_counter()
        result["service"] = asyncio.run(
            bench_service(args, artifacts, sentences, main_variants(args), CONCURRENCIES)
        )
        parts["service"] = time.perf_counter() - t0
        result["part_seconds"] = parts
    result["goals"] = goals(result)
    result["elapsed_s"] = time.perf_counter() - started
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs")
    parser.add_argument("--sweep", action="store_true", help="only part C: batching settings grid")
    parser.add_argument("--threads", type=int, default=2, help="torch/ORT/LightGBM threads (2)")
    parser.add_argument("--delay-us", type=int, default=2000, help="max_queue_delay_us (2000)")
    parser.add_argument("--instances", type=int, default=1, help="batched instances (1)")
    parser.add_argument(
        "--unbatched-instances", type=int, default=2, help="unbatched instances (2)"
    )
    parser.add_argument("--executor-threads", type=int, default=4, help="service executor (4)")
    parser.add_argument(
        "--service-intra-op", type=int, help="service ONNX Runtime threads (default: --threads)"
    )
    parser.add_argument("--embed-rounds", type=int, help="part A rounds (5; quick 3)")
    parser.add_argument(
        "--embed-iters", type=int, help="part A calls per round, batch 32 (2; quick 1)"
    )
    parser.add_argument(
        "--embed-iters-b1", type=int, help="part A calls per round, batch 1 (10; quick 5)"
    )
    parser.add_argument(
        "--block-budget-s", type=float, help="part A: seconds per engine and round (6; quick 3)"
    )
    parser.add_argument("--tree-rounds", type=int, help="part B rounds (5; quick 3)")
    parser.add_argument(
        "--tree-iters", type=int, help="part B calls per round, 10k rows (5; quick 3)"
    )
    parser.add_argument(
        "--tree-iters-b1", type=int, help="part B calls per round, 1 row (300; quick 100)"
    )
    parser.add_argument("--tree-train-rows", type=int, default=20_000, help="training rows (20000)")
    parser.add_argument("--pipeline-rounds", type=int, help="pipeline-only rounds (5; quick 3)")
    parser.add_argument(
        "--pipeline-rows", type=int, help="pipeline-only rows per round (64; quick 32)"
    )
    parser.add_argument("--service-rounds", type=int, help="part C rounds (3; quick 1)")
    parser.add_argument("--duration-s", type=float, help="part C seconds per cell (4; quick 2)")
    parser.add_argument("--warmup-s", type=float, help="part C warm-up per config (1.5; quick 1)")
    parser.add_argument("--output", type=Path, help="JSON results path")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {
        "embed_rounds": (5, 3),
        "embed_iters": (2, 1),
        "embed_iters_b1": (10, 5),
        "block_budget_s": (6.0, 3.0),
        "tree_rounds": (5, 3),
        "tree_iters": (5, 3),
        "tree_iters_b1": (300, 100),
        "pipeline_rounds": (5, 3),
        "pipeline_rows": (64, 32),
        "service_rounds": (3, 1),
        "duration_s": (4.0, 2.0),
        "warmup_s": (1.5, 1.0),
    }
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.output is None:
        name = "inference-sweep.json" if args.sweep else "inference.json"
        args.output = DEFAULT_OUTPUT.with_name(name)
    numbers = [
        v for k, v in vars(args).items() if k in defaults or k.endswith(("threads", "instances"))
    ]
    if any(v <= 0 for v in numbers):
        parser.error("counts, durations and thread numbers must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        return asyncio.run(client_main(args.client))
    result = bench(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    m = result["machine"]
    print()
    print(
        f"## Inference: {m['cpu_count']} CPUs ({m['cpu_model']}), {args.threads} threads per engine,"
        f" onnxruntime {m['onnxruntime']}, torch {m['torch']}, lightgbm {m['lightgbm']}"
    )
    if "embeddings" in result:
        e = result["embeddings"]
        print(
            f"\nA. MiniLM (all-MiniLM-L6-v2) sentence embeddings, sequence {e['seq_len']}: median of"
            f" {args.embed_rounds} rounds (PyTorch attention: {e['torch_attention']})\n"
        )
        print(embeddings_table(e))
        for batch, data in e["batches"].items():
            acc = data["accuracy"]
            print(
                f"\nbatch {batch}: fp32 vs PyTorch max |diff| {acc['fp32_max_abs_diff']:.1e},"
                f" int8 vs PyTorch min cosine {acc['int8_min_cosine']:.4f}"
            )
    if "trees" in result:
        t = result["trees"]
        print(
            f"\nB. LightGBM binary model ({t['trees']} trees, {t['leaves']} leaves,"
            f" {t['features']} features): median of {args.tree_rounds} rounds;"
            f" max |p_ort - p_lgb| = {t['max_abs_diff']:.2e}\n"
        )
        print(trees_table(t))
    for key in ("pipeline", "pipeline_one_thread"):
        if key not in result:
            continue
        threads = result[key]["threads"]
        print(
            "\nC0. The service's MiniLM pipeline alone (int8, tokenised one-sentence requests,"
            f" concat + run per width + split), {threads} intra-op thread"
            f"{'s' if threads > 1 else ''}, median of {args.pipeline_rounds} rounds\n"
        )
        print(pipeline_table(result[key]))
    if "service" in result:
        s = result["service"]
        print(
            f"\nC. Inference service over NATS, one sentence per request: median of"
            f" {args.service_rounds} rounds x {args.duration_s:g} s per cell; client in a"
            f" separate process; executor_threads {args.executor_threads},"
            f" intra_op_threads {s['settings']['intra_op_threads']}\n"
        )
        for key, v in s["variants"].items():
            print(f"- {key}: {v['describe']}")
        print()
        print(service_table(s))
        print()
        print(cpu_table(s))
    print()
    for goal in result["goals"]:
        print(f"{'PASS' if goal['pass'] else 'MISS'}  {goal['goal']} (measured {goal['value']})")
        if "ceiling" in goal:
            c = goal["ceiling"]
            print(
                f"      ceiling here: the model alone costs {c['model_cpu_ms_per_row']} CPU ms per"
                f" row at best ({c['at']}), client and nats-server"
                f" {c['client_and_nats_cpu_ms_per_req']} ms per request, so {os.cpu_count()} cores"
                f" serve at most {c['max_rps']:,} req/s with batching, {c['max_ratio']}x the"
                " unbatched service"
            )
    parts = ", ".join(f"{k} {v:.0f}s" for k, v in result.get("part_seconds", {}).items())
    print(
        f"\nresults written to {args.output} ({result['elapsed_s']:.0f}s{': ' if parts else ''}{parts})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
