"""REST for the tuner: /v1/tuning-jobs (create, list, describe, trials and CSV, stop)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import PlainTextResponse, Response

from contracts import subjects
from contracts.envelope import Message
from contracts.tune import JobChart, JobRef, ListTuningJobs, TuneResult, TuningJobSpec
from services.gateway.auth import require
from services.gateway.aws.dispatcher import parse_model
from services.gateway.domain.keys import Access, Principal

router = APIRouter(prefix="/v1/tuning-jobs", tags=["tuning"])
ReadTuner = Annotated[Principal, Depends(require("tuner", Access.READ))]
WriteTuner = Annotated[Principal, Depends(require("tuner", Access.WRITE))]
Json = Annotated[dict[str, Any], Body()]


async def _ask(request: Request, operation: str, message: Message) -> dict[str, Any]:
    result: TuneResult = await request.app.state.bus.request(
        subjects.tune_operation(operation),
        message,
        TuneResult,
        timeout_s=request.app.state.settings.request_timeout_s,
        service="tuner",
    )
    return result.output


@router.post("", summary="Start a tuning job from a spec", status_code=201)
async def create(request: Request, _: WriteTuner, body: Json) -> dict[str, Any]:
    return await _ask(request, "create_tuning_job", parse_model(TuningJobSpec, body))


@router.get("", summary="List tuning jobs, newest first")
async def list_jobs(request: Request, _: ReadTuner, status: str | None = None) -> dict[str, Any]:
    return await _ask(request, "list_tuning_jobs", parse_model(ListTuningJobs, {"status": status}))


@router.get("/{name}", summary="A job: status, best trial, Pareto set and hypervolume")
async def describe(name: str, request: Request, _: ReadTuner) -> dict[str, Any]:
    return await _ask(request, "describe_tuning_job", parse_model(JobRef, {"name": name}))


@router.get(
    "/{name}/trials", summary="The trial table: config, reports per rung, status, pool, cost"
)
async def trials(name: str, request: Request, _: ReadTuner) -> dict[str, Any]:
    output = await _ask(request, "list_trials", parse_model(JobRef, {"name": name}))
    output.pop("csv", None)
    return output


@router.get(
    "/{name}/trials.csv", summary="The trial table as CSV", response_class=PlainTextResponse
)
async def trials_csv(name: str, request: Request, _: ReadTuner) -> PlainTextResponse:
    output = await _ask(request, "list_trials", parse_model(JobRef, {"name": name}))
    return PlainTextResponse(output["csv"], media_type="text/csv")


@router.get(
    "/{name}/charts/{chart}",
    summary="best.svg|png (best so far over time) or pareto.svg|png (the front, coloured by pool)",
    response_class=Response,
)
async def chart(name: str, chart: str, request: Request, _: ReadTuner) -> Response:
    kind, _sep, fmt = chart.partition(".")
    message = parse_model(JobChart, {"name": name, "kind": kind, "format": fmt or "svg"})
    output = await _ask(request, "job_chart", message)
    return Response(base64.b64decode(output["data"]), media_type=output["content_type"])


@router.post("/{name}/stop", summary="Stop a job: running trials are stopped, none start")
async def stop(name: str, request: Request, _: WriteTuner) -> dict[str, Any]:
    return await _ask(request, "stop_tuning_job", parse_model(JobRef, {"name": name}))
