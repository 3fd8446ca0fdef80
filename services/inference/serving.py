"""The models this replica serves: loading, warm-up, dynamic batching, metrics, unloading."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from prometheus_client import Counter, Histogram
from prometheus_client.samples import Sample

from contracts.envelope import utc_now
from contracts.inference import (
    HistogramSnapshot,
    InferReply,
    InferRequest,
    ModelConfig,
    ModelState,
    ModelStats,
    ModelStatus,
)
from runtime.errors import NotFound, ServiceUnavailable, TrellisError, ValidationFailed
from runtime.heap import refreeze_heap
from runtime.metrics import LATENCY_BUCKETS, ServiceMetrics
from services.inference.adapters.model_store import ModelStore
from services.inference.adapters.onnx_session import OnnxRunner, artifact_for
from services.inference.adapters.tokenizer import TextTokenizer, TextTooLong
from services.inference.domain.batcher import BatchTooLarge, DynamicBatcher, QueueTimeout
from services.inference.domain.pipelines import Pipeline, Prepared, pipeline_for
from services.inference.domain.policy import desired_versions

log = logging.getLogger("trellis.inference")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ModelMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.requests = Counter(
            "trellis_inference_requests",
            "Inference requests by model and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.rows = Counter(
            "trellis_inference_rows",
            "Rows (texts, records, tensors) inferred.",
            ["model"],
            registry=r,
        )
        self.latency = Histogram(
            "trellis_inference_request_duration_seconds",
            "Request latency, queue and compute included.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "trellis_inference_queue_duration_seconds",
            "Time the oldest request of a batch waited.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "trellis_inference_compute_duration_seconds",
            "Time to run one batch.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "trellis_inference_batch_size",
            "Rows per executed batch.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )

    def stats(self, model: str) -> ModelStats:
        requests = failures = rows = 0
        for sample in _samples(self.requests):
            if sample.name.endswith("_total") and sample.labels.get("model") == model:
                requests += int(sample.value)
                failures += int(sample.value) if sample.labels.get("outcome") != "ok" else 0
        for sample in _samples(self.rows):
            if sample.name.endswith("_total") and sample.labels.get("model") == model:
                rows += int(sample.value)
        return ModelStats(
            requests=requests,
            failures=failures,
            rows=rows,
            latency_s=_snapshot(self.latency, model),
            queue_s=_snapshot(self.queue, model),
            compute_s=_snapshot(self.compute, model),
            batch_size=_snapshot(self.batch_size, model),
        )


def _samples(metric: Counter | Histogram) -> list[Sample]:
    return [sample for family in metric.collect() for sample in family.samples]


def _snapshot(histogram: Histogram, model: str) -> HistogramSnapshot:
    snapshot = HistogramSnapshot()
    for sample in _samples(histogram):
        if sample.labels.get("model") != model:
            continue
        if sample.name.endswith("_bucket") and sample.labels["le"] != "+Inf":
            snapshot.upper_bounds.append(float(sample.labels["le"]))
            snapshot.cumulative_counts.append(int(sample.value))
        elif sample.name.endswith("_count"):
            snapshot.count = int(sample.value)
        elif sample.name.endswith("_sum"):
            snapshot.sum = float(sample.value)
    return snapshot


@dataclass
class Served:
    config: ModelConfig
    state: ModelState
    reason: str | None = None
    runner: OnnxRunner | None = None
    pipeline: Pipeline | None = None
    batcher: DynamicBatcher[Prepared, dict[str, np.ndarray]] | None = None
    loaded_at: datetime | None = None
    providers: list[str] = field(default_factory=list)


class ModelServer:
    def __init__(
        self,
        store: ModelStore,
        metrics: ServiceMetrics,
        *,
        instance_id: str,
        has_cuda: bool,
        intra_op_threads: int = 0,
        executor_threads: int = 4,
    ) -> None:
        self.store = store
        self.metrics = ModelMetrics(metrics)
        self.instance_id = instance_id
        self.has_cuda = has_cuda
        self.intra_op_threads = intra_op_threads
        self.executor = ThreadPoolExecutor(max_workers=executor_threads, thread_name_prefix="onnx")
        self.models: dict[str, Served] = {}
        self._reconciling = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Load what the policies ask for, unload the rest; one pass at a time."""
        async with self._reconciling:
            wanted = desired_versions(
                await self.store.all_configs(), await self.store.all_policies()
            )
            for name, config in wanted.items():
                current = self.models.get(name)
                if (
                    current is None
                    or current.config != config
                    or current.state is ModelState.UNLOADED
                ):
                    await self._load(config)
            for name in list(self.models):
                if name not in wanted and self.models[name].state is not ModelState.UNLOADED:
                    await self._unload(name)

    async def _load(self, config: ModelConfig) -> None:
        previous = self.models.get(config.name)
        if previous is None or previous.state is not ModelState.READY:
            self.models[config.name] = Served(config, ModelState.LOADING)
        started = time.monotonic()
        try:
            served = await self._build(config)
        except Exception as exc:
            reason = (
                str(exc) if isinstance(exc, TrellisError | RuntimeError | ValueError) else repr(exc)
            )
            log.warning("could not load %s v%d: %s", config.name, config.version, reason)
            if previous is None or previous.state is not ModelState.READY:
                self.models[config.name] = Served(config, ModelState.FAILED, reason=reason)
            return
        self.models[config.name] = served  # swap: new requests go to the new version
        log.info(
            "loaded %s v%d on %s in %.1fs",
            config.name,
            config.version,
            served.providers,
            time.monotonic() - started,
        )
        if previous is not None and previous.state is ModelState.READY:
            await self._release(previous)
        refreeze_heap()  # a served model lasts: keep its objects out of full collections

    async def _build(self, config: ModelConfig) -> Served:
        model_bytes = await self.store.artifact(artifact_for(config, has_cuda=self.has_cuda))
        tokenizer = None
        if config.tokenizer:
            tokenizer = TextTokenizer.from_bytes(
                await self.store.artifact(config.tokenizer),
                max_length=config.max_sequence_length,
                truncation=config.truncation,
                buckets=config.sequence_buckets,
            )
        runner = await asyncio.get_running_loop().run_in_executor(
            self.executor,
            lambda: OnnxRunner(
                model_bytes, config, has_cuda=self.has_cuda, intra_op_threads=self.intra_op_threads
            ),
        )
        pipeline = pipeline_for(config, runner, tokenizer)
        if config.warmup:
            await asyncio.get_running_loop().run_in_executor(self.executor, self._warm_up, pipeline)
        model = config.name
        batching = config.batching

        def observe(rows: int, queued_s: float, run_s: float) -> None:
            self.metrics.batch_size.labels(model).observe(rows)
            self.metrics.queue.labels(model).observe(queued_s)
            self.metrics.compute.labels(model).observe(run_s)

        batcher: DynamicBatcher[Prepared, dict[str, np.ndarray]] = DynamicBatcher(
            pipeline.run,
            max_batch_size=batching.max_batch_size,
            max_queue_delay_s=batching.max_queue_delay_us / 1e6,
            preferred_batch_sizes=batching.preferred_batch_sizes,
            instances=batching.instances,
            timeout_s=batching.timeout_ms / 1000,
            executor=self.executor,
            observe=observe,
            combine=batching.enabled,
        )
        return Served(
            config,
            ModelState.READY,
            runner=runner,
            pipeline=pipeline,
            batcher=batcher,
            loaded_at=utc_now(),
            providers=runner.providers,
        )

    @staticmethod
    def _warm_up(pipeline: Pipeline) -> None:
        """Run each text bucket once so the first real request does not pay for allocation."""
        config = pipeline.config
        if config.task in ("text_embedding", "text_classification"):
            for bucket in sorted(
                b for b in config.sequence_buckets if b <= config.max_sequence_length
            )[:4]:
                pipeline.run([pipeline.prepare(InferRequest(texts=["warm up " * (bucket // 3)]))])
        elif config.task == "tabular_scoring":
            pipeline.run([pipeline.prepare(InferRequest(rows=[{}]))])

    async def _unload(self, name: str) -> None:
        served = self.models[name]
        self.models[name] = Served(served.config, ModelState.UNLOADED)
        await self._release(served)
        log.info("unloaded %s v%d", name, served.config.version)

    async def _release(self, served: Served) -> None:
        if served.batcher is not None:
            await served.batcher.close()
        if served.runner is not None:
            served.runner.close()

    async def close(self) -> None:
        for name, served in list(self.models.items()):
            if served.state is ModelState.READY:
                await self._unload(name)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- serving ---------------------------------------------------------------------------

    def status(self, name: str) -> ModelStatus:
        served = self.models.get(name)
        if served is None:
            raise NotFound(f"model {name!r} is not served by this replica", model=name)
        return ModelStatus(
            name=name,
            version=served.config.version,
            task=served.config.task,
            state=served.state,
            reason=served.reason,
            providers=served.providers,
            loaded_at=served.loaded_at,
            instance_id=self.instance_id,
            config=served.config,
            stats=self.metrics.stats(name),
        )

    async def infer(self, name: str, request: InferRequest) -> InferReply:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._infer(name, request)
        except TrellisError as exc:
            outcome = exc.code.value
            raise
        finally:
            if name in self.models:
                self.metrics.requests.labels(name, outcome).inc()
                self.metrics.latency.labels(name).observe(time.perf_counter() - started)

    async def _infer(self, name: str, request: InferRequest) -> InferReply:
        served = self.models.get(name)
        if served is None:
            raise NotFound(f"unknown model {name!r}", model=name)
        if (
            served.state is not ModelState.READY
            or served.pipeline is None
            or served.batcher is None
        ):
            detail = f": {served.reason}" if served.reason else ""
            raise ServiceUnavailable(f"inference model {name} ({served.state.value}{detail})", name)
        if request.version is not None and request.version != served.config.version:
            raise NotFound(
                f"model {name!r} version {request.version} is not loaded (serving {served.config.version})",
                model=name,
            )
        pipeline = served.pipeline
        try:
            prepared = pipeline.prepare(request)
            outputs = await served.batcher.submit(prepared, rows=prepared.rows)
        except TextTooLong as exc:
            raise ValidationFailed(str(exc)) from None
        except BatchTooLarge as exc:
            raise ValidationFailed(str(exc)) from None
        except QueueTimeout as exc:
            raise ServiceUnavailable(f"inference model {name} ({exc})", name) from None
        except TrellisError:
            raise
        except Exception as exc:  # the runtime refused this request's data (shapes, types)
            raise ValidationFailed(f"model {name!r} could not run this input: {exc}") from None
        self.metrics.rows.labels(name).inc(prepared.rows)
        reply = pipeline.reply(request, prepared, outputs)
        reply.providers = served.providers
        return reply
