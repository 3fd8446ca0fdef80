"""REST for the fraud service: every AFD operation at /v1/fraud/{Operation}, and model charts."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import nats.js.errors
from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from contracts import subjects, topology
from contracts.fraud import AFD_OPERATIONS, FraudResult
from runtime.errors import NotFound, ValidationFailed
from services.gateway.auth import ensure_scope, require
from services.gateway.aws.dispatcher import parse_model
from services.gateway.domain.keys import Access, Principal

router = APIRouter(prefix="/v1/fraud", tags=["fraud"])
OPERATIONS = {op.name: op for op in AFD_OPERATIONS}
CHARTS = ("roc", "score_distribution", "importance", "fraud_rate")
_read_fraud = require("fraud", Access.READ)
ReadFraud = Annotated[Principal, Depends(_read_fraud)]
WriteFraud = Annotated[Principal, Depends(require("fraud", Access.WRITE))]
_READS = ("Get", "List", "Describe")


@router.put(
    "/uploads/{name}", summary="Upload an event file; use the returned location as inputPath"
)
async def upload(name: str, request: Request, _: WriteFraud) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name):
        raise ValidationFailed("upload names are 1-200 characters: letters, digits, '.', '_', '-'")
    data = await request.body()
    if not data:
        raise ValidationFailed("the upload is empty")
    store = await _object_store(request, topology.FRAUD_UPLOADS, create=True)
    await store.put(name, data)
    return {"location": f"{topology.UPLOADS_LOCATION}{name}", "size": len(data)}


async def _object_store(request: Request, bucket: str, *, create: bool = False) -> Any:
    cache: dict[str, Any] = request.app.state.__dict__.setdefault("fraud_stores", {})
    if bucket not in cache:
        js = request.app.state.bus.js
        try:
            cache[bucket] = await js.object_store(bucket)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                raise NotFound("no fraud model has been trained yet") from None
            cache[bucket] = await js.create_object_store(bucket)
    return cache[bucket]


@router.post(
    "/{operation}", summary="Any Fraud Detector operation, with AFD's request and response shapes"
)
async def call(
    operation: str, request: Request, principal: ReadFraud, body: Annotated[dict[str, Any], Body()]
) -> Any:
    return await run_operation(request, principal, operation, body)


async def hot_call(request: Request) -> Response:
    """`call` without FastAPI's dependency machinery: the gateway's hot path for predictions."""
    principal = await _read_fraud(request)
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
        ) from None
    if not isinstance(body, dict):
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "Input should be a valid dictionary", "type": "dict_type"}]
        )
    operation = request.scope["path"].removeprefix(router.prefix + "/")
    return JSONResponse(await run_operation(request, principal, operation, body))


async def run_operation(
    request: Request, principal: Principal, operation: str, body: dict[str, Any]
) -> Any:
    spec = OPERATIONS.get(operation)
    if spec is None:
        raise NotFound(f"unknown operation {operation!r}; one of {sorted(OPERATIONS)}")
    if not operation.startswith(_READS) or operation == "GetEventPrediction":
        ensure_scope(principal, "fraud", Access.WRITE)
    fixed = dict(spec.fixed)
    if set(body) & set(fixed):
        raise ValidationFailed(f"unknown parameters {sorted(set(body) & set(fixed))}")
    message = parse_model(spec.request, {**body, **fixed})
    result: FraudResult = await request.app.state.bus.request(
        subjects.fraud_operation(spec.bus_operation),
        message,
        FraudResult,
        timeout_s=request.app.state.settings.request_timeout_s,
        service="fraud",
    )
    return result.output


@router.get(
    "/models/{model_id}/versions/{version}/charts/{chart}.{extension}",
    summary="A model version's chart: roc, score_distribution, importance or fraud_rate, as svg or png",
)
async def chart(
    model_id: str, version: str, chart: str, extension: str, request: Request, _: ReadFraud
) -> Response:
    if chart not in CHARTS or extension not in ("svg", "png"):
        raise NotFound(f"unknown chart {chart}.{extension}; charts: {sorted(CHARTS)} as svg or png")
    if not model_id.replace("_", "").isalnum() or not version.replace(".", "").isdigit():
        raise ValidationFailed("invalid model id or version")
    store = await _object_store(request, topology.FRAUD_ARTIFACTS)
    try:
        result = await store.get(f"{model_id}/{version}/{chart}.{extension}")
    except nats.js.errors.ObjectNotFoundError:
        raise NotFound(f"no {chart} chart for model {model_id!r} version {version}") from None
    media = "image/svg+xml" if extension == "svg" else "image/png"
    return Response(
        bytes(result.data or b""), media_type=media, headers={"Cache-Control": "max-age=300"}
    )
