"""Model serving routes: the KServe v2 / Triton HTTP protocol under /v2, model management under /v1/models."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import nats.js.errors
import pydantic
from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from nats.js.object_store import ObjectStore
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import subjects
from contracts.envelope import Message
from contracts.errors import ErrorCode
from contracts.inference import (
    MODEL_NAME_PATTERN,
    InferReply,
    InferRequest,
    ListModelsRequest,
    LoadModelCommand,
    ModelConfig,
    ModelList,
    ModelRef,
    ModelState,
    ModelStatus,
    RegisterModelCommand,
    UnloadModelCommand,
)
from contracts.system import PingReply, PingRequest
from runtime.bus import Bus
from runtime.errors import Conflict, NotFound, TrellisError, ValidationFailed
from runtime.service import package_version
from services.gateway import kserve
from services.gateway.auth import AuthError, require
from services.gateway.domain.keys import Access, Principal
from services.gateway.middleware import BodyTooLarge
from services.gateway.problems import STATUS_BY_CODE
from services.inference.adapters.model_store import ModelStore, open_artifacts

INFERENCE = "inference"
ReadInference = Annotated[Principal, Depends(require(INFERENCE, Access.READ))]
WriteInference = Annotated[Principal, Depends(require(INFERENCE, Access.WRITE))]
R = TypeVar("R", bound=Message)
_NAME = pydantic.TypeAdapter(Annotated[str, Field(pattern=MODEL_NAME_PATTERN)])


class ModelUnavailable(TrellisError):
    code = ErrorCode.UNAVAILABLE


def kserve_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(kserve.error_body(message), status_code=status, headers=headers)


class KServeRoute(APIRoute):
    """Errors as `{"error": "..."}` with the HTTP status: what Triton clients read, not problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthError as exc:
                headers = (
                    {"WWW-Authenticate": 'Bearer realm="trellis"'} if exc.status == 401 else None
                )
                return kserve_error(exc.status, exc.detail, headers)
            except TrellisError as exc:
                return kserve_error(STATUS_BY_CODE.get(exc.code, 500), exc.message)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in exc.errors()
                )
                return kserve_error(400, f"the request is invalid: {problems}")
            except BodyTooLarge as exc:
                return kserve_error(413, str(exc))
            except StarletteHTTPException as exc:
                return kserve_error(exc.status_code, str(exc.detail))

        return guarded


v2 = APIRouter(prefix="/v2", tags=["kserve v2"], route_class=KServeRoute)
v1 = APIRouter(prefix="/v1/models", tags=["models"])
router = APIRouter()


# -- shared --------------------------------------------------------------------------------


def _bus(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


async def _ask(request: Request, subject: str, message: Message, reply: type[R]) -> R:
    answer: R = await _bus(request).request(
        subject,
        message,
        reply,
        timeout_s=request.app.state.settings.request_timeout_s,
        service=INFERENCE,
    )
    return answer


def _model_name(name: str) -> str:
    try:
        return _NAME.validate_python(name)
    except pydantic.ValidationError:
        raise NotFound(f"unknown model {name!r}", model=name) from None


def _version(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValidationFailed(f"model version must be a positive integer, got {raw!r}")
    return int(raw)


async def _status(request: Request, name: str, version: int | None = None) -> ModelStatus:
    ref = ModelRef(name=_model_name(name), version=version)
    return await _ask(request, subjects.INFERENCE_GET_MODEL, ref, ModelStatus)


async def _status_or_none(request: Request, name: str, version: int) -> ModelStatus | None:
    try:
        return await _status(request, name, version)
    except TrellisError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            return None
        raise


def _require_ready(status: ModelStatus) -> None:
    if status.state is ModelState.READY:
        return
    reason = f": {status.reason}" if status.reason else ""
    hint = " (load it first)" if status.state is ModelState.UNLOADED else ""
    raise ModelUnavailable(
        f"model {status.name!r} version {status.version} is not ready: "
        f"{status.state.value}{reason}{hint}",
        model=status.name,
    )


async def _artifacts(request: Request) -> ObjectStore:
    store: ObjectStore | None = getattr(request.app.state, "model_artifacts", None)
    if store is None:
        store = await open_artifacts(_bus(request).js)
        request.app.state.model_artifacts = store
    return store


# -- KServe v2 -----------------------------------------------------------------------------


@v2.get("", summary="Server metadata")
async def server_metadata(_: ReadInference) -> dict[str, Any]:
    return {
        "name": "trellis",
        "version": package_version(),
        "extensions": ["model_repository", "binary_tensor_data"],
    }


@v2.get("/health/live", summary="Liveness of the gateway")
async def server_live(_: ReadInference) -> Response:
    return Response(status_code=200)


@v2.get("/health/ready", summary="Ready when the inference service answers")
async def server_ready(request: Request, _: ReadInference) -> Response:
    try:
        await _bus(request).request(
            subjects.ping(INFERENCE),
            PingRequest(),
            PingReply,
            timeout_s=request.app.state.settings.request_timeout_s,
            service=INFERENCE,
        )
    except TrellisError as exc:
        return kserve_error(503, exc.message)
    return Response(status_code=200)


@v2.get("/models/{name}", summary="Model metadata (the served or latest version)")
async def model_metadata(name: str, request: Request, _: ReadInference) -> dict[str, Any]:
    return kserve.model_metadata(await _status(request, name))


@v2.get("/models/{name}/versions/{version}", summary="Metadata of one model version")
async def model_version_metadata(
    name: str, version: str, request: Request, _: ReadInference
) -> dict[str, Any]:
    return kserve.model_metadata(await _status(request, name, _version(version)))


async def _ready(request: Request, name: str, version: int | None) -> Response:
    status = await _status(request, name, version)
    if status.state is ModelState.READY:
        return Response(status_code=200)
    return kserve_error(400, f"model {name!r} version {status.version} is {status.state.value}")


@v2.get("/models/{name}/ready", summary="200 when the model is READY, else 400")
async def model_ready(name: str, request: Request, _: ReadInference) -> Response:
    return await _ready(request, name, None)


@v2.get("/models/{name}/versions/{version}/ready", summary="200 when that version is READY")
async def model_version_ready(
    name: str, version: str, request: Request, _: ReadInference
) -> Response:
    return await _ready(request, name, _version(version))


async def _request_body(request: Request) -> bytes:
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ValidationFailed(
            f"Content-Encoding {encoding!r} is not supported; use gzip or deflate"
        )
    limit: int = request.app.state.settings.max_body_bytes
    # Triton's "deflate" is the zlib format; wbits 31 reads gzip.
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValidationFailed(f"the body is not valid {encoding} data: {exc}") from None
    if len(data) > limit:
        raise BodyTooLarge(limit)
    return data


async def _infer(request: Request, name: str, version: int | None) -> Response:
    status = await _status(request, name, version)
    body = await _request_body(request)
    parsed = kserve.parse_infer_request(
        body, kserve.header_length(request.headers.get(kserve.HEADER_LENGTH), len(body))
    )
    _require_ready(status)
    bus_request = kserve.to_infer_request(status.config, parsed, version)
    reply = await _ask(request, subjects.model_infer(status.name), bus_request, InferReply)
    outputs = kserve.reply_outputs(status.config, reply, parsed)
    content, json_length = kserve.build_infer_response(reply.model, reply.version, outputs, parsed)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={kserve.HEADER_LENGTH: str(json_length)},
    )


@v2.post("/models/{name}/infer", summary="Inference (JSON or binary tensor data)")
async def infer(name: str, request: Request, _: ReadInference) -> Response:
    return await _infer(request, name, None)


@v2.post("/models/{name}/versions/{version}/infer", summary="Inference on one model version")
async def infer_version(name: str, version: str, request: Request, _: ReadInference) -> Response:
    return await _infer(request, name, _version(version))


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationFailed(f"the request is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValidationFailed("the request must be a JSON object")
    return document


@v2.post("/repository/index", summary="Every model: name, version, state, reason")
async def repository_index(request: Request, _: ReadInference) -> list[dict[str, str]]:
    ready = (await _json_object(request)).get("ready", False) is True
    listed = await _ask(request, subjects.INFERENCE_LIST_MODELS, ListModelsRequest(), ModelList)
    return [
        {
            "name": m.name,
            "version": str(m.version),
            "state": m.state.value,
            "reason": m.reason or "",
        }
        for m in listed.models
        if not ready or m.state is ModelState.READY
    ]


@v2.post("/repository/models/{name}/load", summary="Load (or reload) the latest version")
async def repository_load(name: str, request: Request, _: WriteInference) -> Response:
    parameters = (await _json_object(request)).get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValidationFailed("'parameters' must be an object")
    if "config" in parameters or any(str(k).startswith("file:") for k in parameters):
        raise ValidationFailed(
            "loading with an override config or files is not supported; "
            "register a new version with POST /v1/models"
        )
    command = LoadModelCommand(name=_model_name(name))
    status = await _ask(request, subjects.INFERENCE_LOAD_MODEL, command, ModelStatus)
    if status.state is ModelState.FAILED:
        raise ValidationFailed(
            f"failed to load model {name!r} version {status.version}: {status.reason or 'unknown'}"
        )
    return Response(status_code=200)


@v2.post("/repository/models/{name}/unload", summary="Unload the model")
async def repository_unload(name: str, request: Request, _: WriteInference) -> Response:
    command = UnloadModelCommand(name=_model_name(name))
    await _ask(request, subjects.INFERENCE_UNLOAD_MODEL, command, ModelStatus)
    return Response(status_code=200)


# -- Trellis management --------------------------------------------------------------------


class LoadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="Pin this version; None: latest.")


def _config_fields(raw: str) -> dict[str, Any]:
    try:
        fields = json.loads(raw)
    except ValueError as exc:
        raise ValidationFailed(f"'config' is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ValidationFailed("'config' must be a JSON object")
    given = sorted({"artifacts", "tokenizer"} & set(fields))
    if given:
        raise ValidationFailed(f"'config' must not set {given}: the uploaded files set them")
    return fields


async def _file(upload: UploadFile | None, field: str) -> bytes | None:
    if upload is None:
        return None
    data = await upload.read()
    if not data:
        raise ValidationFailed(f"the file {field!r} is empty")
    return data


def _same_digest(info_digest: str | None, data: bytes) -> bool:
    if not info_digest or "=" not in info_digest:
        return False
    try:
        stored = base64.urlsafe_b64decode(info_digest.split("=", 1)[1] + "==")
    except ValueError:
        return False
    return stored == hashlib.sha256(data).digest()


async def _stored_matches(store: ObjectStore, object_name: str, data: bytes) -> bool | None:
    """True: stored with these bytes; False: stored with others; None: not stored."""
    try:
        info = await store.get_info(object_name)
    except nats.js.errors.ObjectNotFoundError:
        return None
    return _same_digest(info.digest, data)


@v1.get("", summary="Every model with its state")
async def list_models(request: Request, _: ReadInference) -> ModelList:
    return await _ask(request, subjects.INFERENCE_LIST_MODELS, ListModelsRequest(), ModelList)


@v1.get("/{name}", summary="One model (a version, or the served or latest one)")
async def get_model(
    name: str,
    request: Request,
    _: ReadInference,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> ModelStatus:
    return await _status(request, name, version)


@v1.post(
    "",
    status_code=201,
    summary="Register a model version: its config and files (multipart/form-data)",
)
async def register_model(
    request: Request,
    _: WriteInference,
    config: Annotated[str, Form(description="ModelConfig JSON without artifacts or tokenizer.")],
    model: Annotated[UploadFile, File(description="The ONNX model (CPU, or both).")],
    model_cuda: Annotated[UploadFile | None, File(description="An ONNX model for CUDA.")] = None,
    tokenizer: Annotated[UploadFile | None, File(description="A tokenizer.json.")] = None,
    load: Annotated[bool, Form(description="Serve this version once registered.")] = True,
) -> ModelStatus:
    fields = _config_fields(config)
    name, version = fields.get("name"), fields.get("version")
    files: dict[str, bytes] = {}
    artifacts: dict[str, str] = {}
    for provider, upload, file_name in (
        ("cpu", model, "model.onnx"),
        ("cuda", model_cuda, "model_cuda.onnx"),
    ):
        data = await _file(upload, "model" if provider == "cpu" else "model_cuda")
        if data is not None:
            artifacts[provider] = ModelStore.artifact_name(str(name), _int(version), file_name)
            files[artifacts[provider]] = data
    tokenizer_name = None
    tokenizer_data = await _file(tokenizer, "tokenizer")
    if tokenizer_data is not None:
        tokenizer_name = ModelStore.artifact_name(str(name), _int(version), "tokenizer.json")
        files[tokenizer_name] = tokenizer_data
    try:
        model_config = ModelConfig(**fields, artifacts=artifacts, tokenizer=tokenizer_name)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationFailed(f"invalid model config: {problems}") from None

    existing = await _status_or_none(request, model_config.name, model_config.version)
    if existing is not None and existing.config != model_config:
        raise Conflict(
            f"model {model_config.name!r} version {model_config.version} exists with another "
            "config; register a new version"
        )
    store = await _artifacts(request)
    for object_name, data in files.items():
        matches = await _stored_matches(store, object_name, data)
        if matches:
            continue
        if existing is not None:  # never swap the files under a registered version
            raise Conflict(
                f"model {model_config.name!r} version {model_config.version} exists with other "
                f"files ({object_name!r} differs); register a new version"
            )
        await store.put(object_name, data)
    command = RegisterModelCommand(config=model_config, load=load)
    return await _ask(request, subjects.INFERENCE_REGISTER_MODEL, command, ModelStatus)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@v1.post("/{name}/load", summary="Serve the model: a pinned version, or the latest")
async def load_model(
    name: str, request: Request, _: WriteInference, body: LoadBody | None = None
) -> ModelStatus:
    command = LoadModelCommand(name=_model_name(name), version=body.version if body else None)
    return await _ask(request, subjects.INFERENCE_LOAD_MODEL, command, ModelStatus)


@v1.post("/{name}/unload", summary="Stop serving the model")
async def unload_model(name: str, request: Request, _: WriteInference) -> ModelStatus:
    command = UnloadModelCommand(name=_model_name(name))
    return await _ask(request, subjects.INFERENCE_UNLOAD_MODEL, command, ModelStatus)


@v1.post("/{name}/infer", summary="Inference: texts, rows or tensors, by the model's task")
async def infer_model(
    name: str, body: InferRequest, request: Request, _: ReadInference
) -> InferReply:
    return await _ask(request, subjects.model_infer(_model_name(name)), body, InferReply)


router.include_router(v2)
router.include_router(v1)
