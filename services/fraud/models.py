"""Models and model versions: training jobs, activation through the inference service, scoring."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from nats.js.object_store import ObjectStore

from contracts import subjects
from contracts.envelope import utc_now
from contracts.fraud import (
    CreateModel,
    CreateModelVersion,
    EventSent,
    ModelRef,
    UpdateModelVersionStatus,
)
from contracts.inference import (
    Batching,
    InferReply,
    InferRequest,
    ModelConfig,
    ModelState,
    ModelStatus,
    RegisterModelCommand,
    TensorSpec,
    UnloadModelCommand,
)
from runtime.errors import TrellisError, ValidationFailed
from runtime.heap import refreeze_heap
from runtime.paging import page
from services.fraud.adapters.artifacts import Artifacts
from services.fraud.domain.features import FeaturePipeline, VariableSpec
from services.fraud.domain.model_training import TrainingRejected, run_training
from services.fraud.domain.resources import (
    ModelRecord,
    ModelVersionRecord,
    next_model_version,
    refuse_delete,
)
from services.fraud.operations import FraudOperations, Output
from services.inference.adapters.onnx_session import OnnxRunner, cuda_available

if TYPE_CHECKING:
    from services.fraud.domain.training import ScoreCalibration

log = logging.getLogger("trellis.fraud.models")
LEASE = timedelta(minutes=2)


@dataclass
class ServingBundle:
    """What one ACTIVE model version needs on this replica to score an event."""

    pipeline: FeaturePipeline
    calibration: ScoreCalibration  # probability -> 0..1000
    booster: Any  # lightgbm.Booster, for explanations
    inference_model: str
    feature_variable: dict[str, str]
    event_type: str
    history: Any = None  # TFI: the entities' recent events, kept current from the event log
    runner: OnnxRunner | None = None  # the served ONNX model in this process ("local" scoring)


class Models:
    def __init__(
        self,
        ops: FraudOperations,
        artifacts: Artifacts,
        inference_artifacts: ObjectStore,
        *,
        instance_id: str,
        training_threads: int = 0,
        scoring: str = "local",
    ) -> None:
        self.ops = ops
        self.stores = ops.stores
        self.artifacts = artifacts
        self.inference_artifacts = inference_artifacts
        self.instance_id = instance_id
        self.training_threads = training_threads
        self.scoring = scoring
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._bundles: dict[str, ServingBundle] = {}
        self._building: dict[str, asyncio.Future[ServingBundle]] = {}
        # TFI histories being rebuilt from the store, per event type: the events that arrive
        # meanwhile, and whether a delete made the snapshot being replayed stale.
        self._arriving: dict[str, list[_Arrivals]] = {}

    # -- models -------------------------------------------------------------------------------

    async def create_model(self, request: CreateModel) -> Output:
        await self.ops.event_type(request.event_type_name)
        record = ModelRecord(
            model_id=request.model_id,
            model_type=request.model_type,
            event_type_name=request.event_type_name,
            **self.ops.stamp("model", request.model_id, request.description, request.tags),
        )
        await self.stores.models.create(request.model_id, record)
        return {}

    async def _model(self, model_id: str | None, model_type: str | None) -> ModelRecord:
        if not model_id:
            raise ValidationFailed("modelId is required")
        model = (await self.stores.models.get(model_id)).value
        if model_type and model.model_type != model_type:
            raise ValidationFailed(
                f"model {model_id!r} is a {model.model_type} model, not {model_type}"
            )
        return model

    async def get_models(self, request: ModelRef) -> Output:
        models = [
            m.value
            for m in await self.stores.models.list()
            if (request.model_id is None or m.value.model_id == request.model_id)
            and (request.model_type is None or m.value.model_type == request.model_type)
        ]
        chosen, token = page(
            models, lambda m: m.model_id, request.next_token, request.max_results or 10
        )
        return {"models": [m.to_afd() for m in chosen], **({"nextToken": token} if token else {})}

    async def delete_model(self, request: ModelRef) -> Output:
        model = await self._model(request.model_id, request.model_type)
        versions = [
            v.value.version
            for v in await self.stores.model_versions.list()
            if v.value.model_id == model.model_id
        ]
        refuse_delete("model", model.model_id, [f"model version {v}" for v in versions])
        await self.stores.models.delete(model.model_id)
        return {}

    # -- versions -----------------------------------------------------------------------------

    async def _versions(self, model_id: str) -> list[ModelVersionRecord]:
        return [
            v.value for v in await self.stores.model_versions.list() if v.value.model_id == model_id
        ]

    async def create_model_version(self, request: CreateModelVersion) -> Output:
        model = await self._model(request.model_id, request.model_type)
        event_type = await self.ops.event_type(model.event_type_name)
        unknown = sorted(
            set(request.training_data_schema.model_variables) - set(event_type.event_variables)
        )
        if unknown:
            raise ValidationFailed(
                f"modelVariables {unknown} are not variables of event type {event_type.name!r}"
            )
        if request.training_data_source == "EXTERNAL_EVENTS":
            if request.external_events_detail is None:
                raise ValidationFailed("externalEventsDetail is required for EXTERNAL_EVENTS")
            self.ops.check_location(request.external_events_detail.data_location)
        elif request.ingested_events_detail is None:
            raise ValidationFailed("ingestedEventsDetail is required for INGESTED_EVENTS")
        version = next_model_version([v.version for v in await self._versions(model.model_id)])
        schema = request.training_data_schema.model_dump(by_alias=True, exclude_none=True)
        record = ModelVersionRecord(
            model_id=model.model_id,
            model_type=model.model_type,
            version=version,
            status="TRAINING_IN_PROGRESS",
            training_data_source=request.training_data_source,
            training_data_schema=schema,
            external_events_detail=request.external_events_detail.model_dump(by_alias=True)
            if request.external_events_detail
            else None,
            ingested_events_detail=request.ingested_events_detail.model_dump(by_alias=True)
            if request.ingested_events_detail
            else None,
            lease_owner=self.instance_id,
            lease_until=utc_now() + LEASE,
            **self.ops.stamp("model-version", f"{model.model_id}/{version}", None, request.tags),
        )
        await self.stores.model_versions.create(record.key, record)
        self._start_training(record)
        return {
            "modelId": model.model_id,
            "modelType": model.model_type,
            "modelVersionNumber": version,
            "status": record.status,
        }

    def _start_training(self, record: ModelVersionRecord) -> None:
        task = asyncio.create_task(self._train(record.key), name=f"train:{record.key}")
        self._jobs[record.key] = task
        task.add_done_callback(lambda _: self._jobs.pop(record.key, None))

    async def _train(self, key: str) -> None:
        record = (await self.stores.model_versions.get(key)).value
        renew = asyncio.create_task(self._renew_lease(key))
        started = time.monotonic()
        try:
            events, variables, labels = await self._training_data(record)
            outcome = await asyncio.to_thread(
                run_training,
                events,
                variables,
                model_type=record.model_type,  # type: ignore[arg-type]
                label_mapper=labels[0],
                unlabeled=labels[1],
                threads=self.training_threads,
            )
            names = await self.artifacts.save(record.model_id, record.version, outcome.artifacts)
            update: dict[str, Any] = {
                "status": "TRAINING_COMPLETE",
                "training_result": outcome.training_result,
                "training_result_v2": outcome.training_result_v2,
                "findings": outcome.findings,
                "diagnostics": outcome.diagnostics,
                "artifacts": names,
                "training_seconds": round(time.monotonic() - started, 2),
            }
        except TrainingRejected as exc:
            update = {"status": "ERROR", "failure_reason": str(exc), "findings": exc.findings}
        except TrellisError as exc:
            update = {"status": "ERROR", "failure_reason": exc.message}
        except Exception as exc:
            log.exception("training %s failed", key)
            update = {"status": "ERROR", "failure_reason": f"training failed: {exc}"}
        finally:
            renew.cancel()

        def finish(current: ModelVersionRecord) -> ModelVersionRecord:
            if current.status == "TRAINING_CANCELLED":
                return current
            return current.model_copy(
                update={**update, "last_updated_time": utc_now(), "lease_until": None}
            )

        await self.stores.model_versions.mutate(key, finish)

    async def _renew_lease(self, key: str) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 4)
            await self.stores.model_versions.mutate(
                key, lambda v: v.model_copy(update={"lease_until": utc_now() + LEASE})
            )

    async def resume_abandoned(self) -> None:
        """Versions whose trainer died (lease expired) are trained again here; CAS picks one replica."""
        for versioned in await self.stores.model_versions.list():
            record = versioned.value
            expired = record.lease_until is None or record.lease_until < utc_now()
            if record.status != "TRAINING_IN_PROGRESS" or not expired or record.key in self._jobs:
                continue
            claimed = record.model_copy(
                update={"lease_owner": self.instance_id, "lease_until": utc_now() + LEASE}
            )
            try:
                await self.stores.model_versions.update(
                    record.key, claimed, expected_revision=versioned.revision
                )
            except TrellisError:
                continue  # another replica claimed it
            log.info("resuming the training of %s", record.key)
            self._start_training(claimed)

    async def _training_data(
        self, record: ModelVersionRecord
    ) -> tuple[pl.DataFrame, list[VariableSpec], tuple[dict[str, list[str]], str]]:
        model = (await self.stores.models.get(record.model_id)).value
        schema = record.training_data_schema
        names = schema["modelVariables"]
        variables = []
        for name in names:
            v = (await self.stores.variables.get(name)).value
            variables.append(
                VariableSpec(
                    name=v.name,
                    data_type=v.data_type,  # type: ignore[arg-type]
                    variable_type=v.variable_type or "CATEGORICAL",
                    default_value=v.default_value,
                )
            )
        label_schema = schema.get("labelSchema") or {}
        mapper: dict[str, list[str]] = label_schema.get("labelMapper") or {}
        if not mapper.get("FRAUD") or not mapper.get("LEGIT"):
            raise ValidationFailed("labelSchema.labelMapper needs FRAUD and LEGIT labels")
        unlabeled = label_schema.get("unlabeledEventsTreatment") or "IGNORE"
        if record.training_data_source == "INGESTED_EVENTS":
            window = (record.ingested_events_detail or {})["ingestedEventsTimeWindow"]
            start = _parse(window["startTime"], "startTime")
            end = _parse(window["endTime"], "endTime")
            events = await asyncio.to_thread(
                self.ops.events.events, model.event_type_name, start=start, end=end
            )
        else:
            location = (record.external_events_detail or {})["dataLocation"]
            events = await asyncio.to_thread(_read_external, await self.ops.readable_path(location))
        keep = [c for c in events.columns if c in names or c.isupper()]
        return (
            events.select(keep),
            variables,
            (mapper, "AUTO" if unlabeled == "AUTO" else unlabeled),
        )

    async def get_model_version(self, request: ModelRef) -> Output:
        if not request.model_version_number:
            raise ValidationFailed("modelVersionNumber is required")
        model = await self._model(request.model_id, request.model_type)
        return (
            await self.stores.model_versions.get(f"{model.model_id}.{request.model_version_number}")
        ).value.to_afd()

    async def describe_model_versions(self, request: ModelRef) -> Output:
        versions = [
            v.value
            for v in await self.stores.model_versions.list()
            if (request.model_id is None or v.value.model_id == request.model_id)
            and (
                request.model_version_number is None
                or v.value.version == request.model_version_number
            )
            and (request.model_type is None or v.value.model_type == request.model_type)
        ]
        chosen, token = page(
            versions, lambda v: v.key, request.next_token, request.max_results or 10
        )
        details = []
        for version in chosen:
            detail = version.to_afd()
            detail.pop("lastUpdatedTime", None)
            detail["createdTime"] = detail.pop("createdTime")
            details.append(detail)
        return {"modelVersionDetails": details, **({"nextToken": token} if token else {})}

    async def delete_model_version(self, request: ModelRef) -> Output:
        if not request.model_version_number:
            raise ValidationFailed("modelVersionNumber is required")
        model = await self._model(request.model_id, request.model_type)
        key = f"{model.model_id}.{request.model_version_number}"
        version = (await self.stores.model_versions.get(key)).value
        if version.status == "ACTIVE":
            refuse_delete(
                "model version", version.version, ["its ACTIVE status (set it INACTIVE first)"]
            )
        users = [
            f"detector {d.value.detector_id} version {d.value.version}"
            for d in await self.stores.detector_versions.list()
            if any(
                m.get("modelId") == model.model_id
                and m.get("modelVersionNumber") == version.version
                for m in d.value.model_versions
            )
            and d.value.status != "INACTIVE"
        ]
        refuse_delete("model version", version.version, users)
        await self.stores.model_versions.delete(key)
        await self.artifacts.delete(model.model_id, version.version, version.artifacts)
        return {}

    # -- status: activation through the inference service ------------------------------------

    async def update_model_version_status(self, request: UpdateModelVersionStatus) -> Output:
        model = await self._model(request.model_id, request.model_type)
        key = f"{model.model_id}.{request.model_version_number}"
        version = (await self.stores.model_versions.get(key)).value
        if request.status == "TRAINING_CANCELLED":
            if version.status != "TRAINING_IN_PROGRESS":
                raise ValidationFailed(
                    f"version {version.version} is {version.status}, not training"
                )
            job = self._jobs.get(key)
            if job is not None:
                job.cancel()
            await self.stores.model_versions.mutate(
                key,
                lambda v: v.model_copy(
                    update={"status": "TRAINING_CANCELLED", "last_updated_time": utc_now()}
                ),
            )
            return {}
        if request.status == "ACTIVE":
            if version.status not in ("TRAINING_COMPLETE", "INACTIVE", "ACTIVE"):
                raise ValidationFailed(
                    f"version {version.version} is {version.status}; only trained versions activate"
                )
            name = await self._deploy(version)
            await self.stores.model_versions.mutate(
                key,
                lambda v: v.model_copy(
                    update={
                        "status": "ACTIVE",
                        "inference_model": name,
                        "last_updated_time": utc_now(),
                    }
                ),
            )
            return {}
        if version.status != "ACTIVE":
            raise ValidationFailed(f"version {version.version} is {version.status}, not ACTIVE")
        users = [
            f"detector {d.value.detector_id} version {d.value.version}"
            for d in await self.stores.detector_versions.list()
            if d.value.status == "ACTIVE"
            and any(
                m.get("modelId") == model.model_id
                and m.get("modelVersionNumber") == version.version
                for m in d.value.model_versions
            )
        ]
        if users:
            raise ValidationFailed(f"version {version.version} is used by {', '.join(users)}")
        if version.inference_model:
            await self.ops.bus.request(
                subjects.INFERENCE_UNLOAD_MODEL,
                UnloadModelCommand(name=version.inference_model),
                ModelStatus,
                timeout_s=30,
                service="inference",
            )
        self._bundles.pop(key, None)
        await self.stores.model_versions.mutate(
            key,
            lambda v: v.model_copy(update={"status": "INACTIVE", "last_updated_time": utc_now()}),
        )
        return {}

    async def _deploy(self, version: ModelVersionRecord) -> str:
        """Register the version's ONNX model with the inference service and wait until it serves."""
        bundle = await self._bundle(version)
        name = _served_name(version)
        onnx_bytes = await self.artifacts.read(version.artifacts["model.onnx"])
        object_name = f"{name}/1/model.onnx"
        await self.inference_artifacts.put(object_name, onnx_bytes)
        config = _serving_config(name, version, bundle.pipeline.feature_names, object_name)
        status = await self.ops.bus.request(
            subjects.INFERENCE_REGISTER_MODEL,
            RegisterModelCommand(config=config),
            ModelStatus,
            timeout_s=60,
            service="inference",
        )
        if status.state is not ModelState.READY:
            raise ValidationFailed(
                f"the inference service could not load the model: {status.reason or status.state}"
            )
        return name

    async def _bundle(self, version: ModelVersionRecord) -> ServingBundle:
        cached = self._bundles.get(version.key)
        if cached is not None:
            return cached
        building = self._building.get(version.key)
        if building is None:
            building = asyncio.ensure_future(self._build(version))
            self._building[version.key] = building
            building.add_done_callback(lambda _: self._building.pop(version.key, None))
        return await asyncio.shield(building)

    async def _build(self, version: ModelVersionRecord) -> ServingBundle:
        import lightgbm

        from services.fraud.domain.training import ScoreCalibration

        pipeline = FeaturePipeline.from_dict(
            json.loads(await self.artifacts.read(version.artifacts["pipeline.json"]))
        )
        calibration = ScoreCalibration.from_dict(
            json.loads(await self.artifacts.read(version.artifacts["calibration.json"]))
        )
        booster = lightgbm.Booster(
            model_str=(await self.artifacts.read(version.artifacts["booster.txt"])).decode()
        )
        model = (await self.stores.models.get(version.model_id)).value
        runner = None
        if self.scoring == "local":
            onnx_bytes = await self.artifacts.read(version.artifacts["model.onnx"])
            runner = await asyncio.to_thread(_local_runner, version, pipeline, onnx_bytes)
        bundle = ServingBundle(
            pipeline,
            calibration,
            booster,
            version.inference_model or "",
            dict(pipeline.feature_variable),
            model.event_type_name,
            runner=runner,
        )
        if pipeline.is_tfi:
            bundle.history = await self._replayed_history(pipeline, model.event_type_name)
        self._bundles[version.key] = bundle
        refreeze_heap()  # a served model lasts: keep its objects out of full collections
        return bundle

    async def _replayed_history(self, pipeline: FeaturePipeline, event_type: str) -> Any:
        """Aggregates are served from memory: the stored events of the event type, replayed."""
        for _ in range(5):
            arrivals = _Arrivals()
            self._arriving.setdefault(event_type, []).append(arrivals)
            try:
                history = pipeline.new_history()
                stored = await asyncio.to_thread(self.ops.events.events, event_type)
                await asyncio.to_thread(pipeline.observe, history, stored)
            finally:
                self._arriving[event_type].remove(arrivals)
            if arrivals.stale:
                continue  # an event was deleted while the store was read: read it again
            # Events stored while the snapshot was read may or may not be in it; replaying them
            # again is harmless, since an event seen twice replaces itself.
            for event in arrivals.events:
                pipeline.observe(history, _sent_frame(event))
            return history
        raise ValidationFailed(f"events of {event_type!r} keep changing; try again shortly")

    def forget(self, event_type: str) -> None:
        """Stored events of the event type were deleted: its TFI histories are rebuilt on next use."""
        for key in [k for k, b in self._bundles.items() if b.history is not None]:
            if self._bundles[key].event_type == event_type:
                del self._bundles[key]
        for arrivals in self._arriving.get(event_type, []):
            arrivals.stale = True

    def observe(self, event: EventSent) -> None:
        """Keep TFI histories current as stored events arrive (called by the event view)."""
        for arrivals in self._arriving.get(event.event_type, []):
            arrivals.events.append(event)
        bundles = [
            b
            for b in self._bundles.values()
            if b.history is not None and b.event_type == event.event_type
        ]
        if not bundles:
            return
        one = {
            "EVENT_ID": event.event_id,
            "EVENT_TIMESTAMP": event.event_timestamp,
            "ENTITY_ID": event.entity_id,
            **event.variables,
        }
        for bundle in bundles:
            if not bundle.pipeline.observe_one(bundle.history, one):
                bundle.pipeline.observe(bundle.history, _sent_frame(event))

    async def score_frame(
        self, model_id: str, version_number: str, events: pl.DataFrame
    ) -> list[float]:
        """Scores of many stored events at once (backtests, batch predictions), in chunks."""
        version = (await self.stores.model_versions.get(f"{model_id}.{version_number}")).value
        if version.status != "ACTIVE" or not version.inference_model:
            raise ValidationFailed(f"model {model_id} version {version_number} is not ACTIVE")
        bundle = await self._bundle(version)
        features = await asyncio.to_thread(bundle.pipeline.transform, events)
        names = bundle.pipeline.feature_names
        matrix = features.to_numpy()
        scores: list[float] = []
        for start in range(0, len(matrix), 1000):
            rows = [
                {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, row, strict=True)}
                for row in matrix[start : start + 1000]
            ]
            reply = await self.ops.bus.request(
                subjects.model_infer(version.inference_model),
                InferRequest(rows=rows),
                InferReply,
                timeout_s=60,
                service="inference",
            )
            probabilities = np.array(reply.scores or [], dtype=np.float64)
            scores += [float(s) for s in np.round(bundle.calibration.score(probabilities), 1)]
        return scores

    async def _version(self, key: str) -> ModelVersionRecord:
        return (await self.stores.model_versions.get(key)).value

    async def score(
        self,
        model_id: str,
        model_type: str,
        version_number: str,
        event: dict[str, Any],
        *,
        explain: bool = True,
    ) -> tuple[float, list[dict[str, Any]]]:
        """One event's 0-1000 score and, with `explain`, its top variable impacts."""
        from services.fraud.adapters.onnx_export import explain as variable_impacts

        key = f"{model_id}.{version_number}"
        version = await self.ops.hot.get(("model_version", key), lambda: self._version(key))
        if version.status != "ACTIVE" or not version.inference_model:
            raise ValidationFailed(f"model {model_id} version {version_number} is not ACTIVE")
        bundle = await self._bundle(version)
        timestamp = _parse(str(event["EVENT_TIMESTAMP"]), "eventTimestamp")
        features = bundle.pipeline.transform_one(
            {**event, "EVENT_TIMESTAMP": timestamp}, history=bundle.history
        )
        if features is None:  # a value only the batch path reads exactly
            frame = _event_frame(event)
            features = (
                bundle.pipeline.transform(frame, history=bundle.history)
                .to_numpy()
                .astype(np.float32)
            )
        if bundle.runner is not None:
            outputs = bundle.runner.run({bundle.runner.input_names[0]: features})
            probability = float(np.asarray(outputs["probabilities"])[0, 1])
        else:
            row = {
                name: (None if np.isnan(value) else float(value))
                for name, value in zip(bundle.pipeline.feature_names, features[0], strict=True)
            }
            reply = await self.ops.bus.request(
                subjects.model_infer(version.inference_model),
                InferRequest(rows=[row]),
                InferReply,
                timeout_s=5,
                service="inference",
            )
            probability = float((reply.scores or [0.0])[0])
        score = bundle.calibration.score_one(probability)
        if not explain:
            return score, []
        # SHAP over the whole forest takes milliseconds; LightGBM releases the GIL meanwhile, so
        # in a thread it leaves the event loop to other requests and uses another core.
        impacts = await asyncio.to_thread(
            variable_impacts, bundle.booster, features, bundle.feature_variable, top=5
        )
        return score, [{"variableName": v, "logOddsImpact": round(float(c), 4)} for v, c in impacts]


def _served_name(version: ModelVersionRecord) -> str:
    return f"fraud-{version.model_id.replace('_', '-')}-{version.version.replace('.', '-')}"


def _serving_config(
    name: str, version: ModelVersionRecord, features: list[str], object_name: str
) -> ModelConfig:
    """How a version is served: by the inference service, and in-process for "local" scoring."""
    return ModelConfig(
        name=name,
        version=1,
        task="tabular_scoring",
        description=f"Fraud model {version.model_id} {version.version}",
        artifacts={"cpu": object_name},
        feature_names=features,
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, len(features)])],
        batching=Batching(max_batch_size=1024, max_queue_delay_us=500, instances=2),
    )


def _local_runner(
    version: ModelVersionRecord, pipeline: FeaturePipeline, onnx_bytes: bytes
) -> OnnxRunner:
    # One intra-op thread: a one-row tree ensemble gains nothing from more, and the service's
    # event loop and LightGBM's explanations need the other cores.
    config = _serving_config(_served_name(version), version, pipeline.feature_names, "model.onnx")
    return OnnxRunner(onnx_bytes, config, has_cuda=cuda_available(), intra_op_threads=1)


@dataclass
class _Arrivals:
    events: list[EventSent] = field(default_factory=list)
    stale: bool = False


def _sent_frame(event: EventSent) -> pl.DataFrame:
    columns = {
        "EVENT_ID": event.event_id,
        "ENTITY_TYPE": event.entity_type,
        "ENTITY_ID": event.entity_id,
        **event.variables,
    }
    frame = pl.DataFrame({k: [v] for k, v in columns.items()}, schema={k: pl.Utf8 for k in columns})
    return frame.with_columns(
        pl.lit(event.event_timestamp).cast(pl.Datetime("us", "UTC")).alias("EVENT_TIMESTAMP")
    )


def _event_frame(event: dict[str, Any]) -> pl.DataFrame:
    values = {k: [v] for k, v in event.items() if k != "EVENT_TIMESTAMP"}
    frame = pl.DataFrame(values, schema={k: pl.Utf8 for k in values})
    timestamp = _parse(str(event["EVENT_TIMESTAMP"]), "eventTimestamp")
    return frame.with_columns(
        pl.lit(timestamp).cast(pl.Datetime("us", "UTC")).alias("EVENT_TIMESTAMP")
    )


def _parse(value: str, field: str) -> Any:
    from contracts.fraud import parse_afd_timestamp

    try:
        return parse_afd_timestamp(value, field)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None


def _read_external(path: Any) -> pl.DataFrame:
    from services.fraud.domain.imports import normalise_columns

    frame = (
        pl.read_parquet(path)
        if str(path).endswith(".parquet")
        else pl.read_csv(path, infer_schema=False)
    )
    frame = normalise_columns(frame).with_columns(pl.all().cast(pl.Utf8))
    if "EVENT_TIMESTAMP" not in frame.columns:
        raise ValidationFailed("the training file has no EVENT_TIMESTAMP column")
    parsed = frame.with_columns(
        pl.col("EVENT_TIMESTAMP")
        .str.replace("Z$", "+00:00")
        .str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    )
    bad = parsed.filter(pl.col("EVENT_TIMESTAMP").is_null()).height
    if bad:
        raise ValidationFailed(f"{bad} rows have a missing or unparseable EVENT_TIMESTAMP")
    return parsed
