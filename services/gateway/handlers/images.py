"""REST for the image builder: /v1/images, /v1/app-image-configs, /v1/domains, /v1/builds, contexts."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import nats.js.errors
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from nats.js.api import DeliverPolicy

from contracts import subjects, topology
from contracts.envelope import Message
from contracts.images import (
    FINISHED_BUILD_STATUSES,
    REST_OPERATIONS,
    SAGEMAKER_OPERATIONS,
    BuildList,
    BuildLogLine,
    BuildReply,
    CancelBuild,
    DescribeBuild,
    ImageResult,
    ListBuilds,
    StartBuild,
)
from runtime import codec
from runtime.errors import ValidationFailed
from runtime.object_store import open_object_store
from services.gateway.auth import require
from services.gateway.aws.dispatcher import parse_model
from services.gateway.domain.keys import Access, Principal
from services.gateway.handlers.indexes import call_operation

OPERATIONS = {op.name: op for op in (*SAGEMAKER_OPERATIONS, *REST_OPERATIONS)}
ReadImages = Annotated[Principal, Depends(require("image_builder", Access.READ))]
WriteImages = Annotated[Principal, Depends(require("image_builder", Access.WRITE))]
Json = Annotated[dict[str, Any], Body()]
_UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
FOLLOW_IDLE_S = 15.0  # how long a follower waits for a line before looking at the build again

images = APIRouter(prefix="/v1/images", tags=["images"])
configs = APIRouter(prefix="/v1/app-image-configs", tags=["images"])
domains = APIRouter(prefix="/v1/domains", tags=["images"])
builds = APIRouter(prefix="/v1/builds", tags=["images"])
contexts = APIRouter(prefix="/v1/build-contexts", tags=["images"])
ROUTERS = (images, configs, domains, builds, contexts)


async def _call(request: Request, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    spec = OPERATIONS[operation]
    subject = subjects.image_operation(spec.bus_operation)
    return await call_operation(request, spec, subject, body, ImageResult, "image_builder")


async def _ask(request: Request, operation: str, message: Message, reply: type[Any]) -> Any:
    return await request.app.state.bus.request(
        subjects.image_operation(operation),
        message,
        reply,
        timeout_s=request.app.state.settings.request_timeout_s,
        service="image_builder",
    )


# -- images and versions -----------------------------------------------------------------------


@images.post("", summary="Create an image (SageMaker CreateImage)", status_code=201)
async def create_image(request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    return await _call(request, "CreateImage", body)


@images.get("", summary="List images")
async def list_images(
    request: Request, _: ReadImages, name_contains: str | None = None, next_token: str | None = None
) -> dict[str, Any]:
    body = {"NameContains": name_contains, "NextToken": next_token}
    return await _call(request, "ListImages", {k: v for k, v in body.items() if v})


@images.get("/{name}", summary="Describe an image")
async def describe_image(name: str, request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "DescribeImage", {"ImageName": name})


@images.patch("/{name}", summary="Update an image")
async def update_image(name: str, request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    return await _call(request, "UpdateImage", {**body, "ImageName": name})


@images.delete("/{name}", summary="Delete an image and its versions")
async def delete_image(name: str, request: Request, _: WriteImages) -> dict[str, Any]:
    return await _call(request, "DeleteImage", {"ImageName": name})


@images.post(
    "/{name}/versions",
    summary="Create a version from a pushed image; it is validated before CREATED",
    status_code=201,
)
async def create_version(name: str, request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    body = {"ClientToken": str(uuid.uuid4()), **body, "ImageName": name}
    return await _call(request, "CreateImageVersion", body)


@images.get("/{name}/versions", summary="List an image's versions")
async def list_versions(name: str, request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "ListImageVersions", {"ImageName": name})


@images.get("/{name}/versions/{version}", summary="Describe a version, with what validation found")
async def describe_version(
    name: str, version: int, request: Request, _: ReadImages
) -> dict[str, Any]:
    return await _call(request, "DescribeImageVersion", {"ImageName": name, "Version": version})


@images.patch("/{name}/versions/{version}", summary="Update a version (aliases, notes...)")
async def update_version(
    name: str, version: int, request: Request, _: WriteImages, body: Json
) -> dict[str, Any]:
    return await _call(
        request, "UpdateImageVersion", {**body, "ImageName": name, "Version": version}
    )


@images.delete("/{name}/versions/{version}", summary="Delete a version (refused while attached)")
async def delete_version(
    name: str, version: int, request: Request, _: WriteImages
) -> dict[str, Any]:
    return await _call(request, "DeleteImageVersion", {"ImageName": name, "Version": version})


# -- app image configs -------------------------------------------------------------------------


@configs.post("", summary="Create an app image config", status_code=201)
async def create_config(request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    return await _call(request, "CreateAppImageConfig", body)


@configs.get("", summary="List app image configs")
async def list_configs(request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "ListAppImageConfigs", {})


@configs.get("/{name}", summary="Describe an app image config")
async def describe_config(name: str, request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "DescribeAppImageConfig", {"AppImageConfigName": name})


@configs.put("/{name}", summary="Replace an app image config's settings")
async def update_config(name: str, request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    return await _call(request, "UpdateAppImageConfig", {**body, "AppImageConfigName": name})


@configs.delete("/{name}", summary="Delete an app image config (refused while used)")
async def delete_config(name: str, request: Request, _: WriteImages) -> dict[str, Any]:
    return await _call(request, "DeleteAppImageConfig", {"AppImageConfigName": name})


# -- domains and user profiles -----------------------------------------------------------------


@domains.post("", summary="Create a domain", status_code=201)
async def create_domain(request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    return await _call(request, "CreateDomain", body)


@domains.get("", summary="List domains")
async def list_domains(request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "ListDomains", {})


@domains.get("/{domain_id}", summary="Describe a domain")
async def describe_domain(domain_id: str, request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "DescribeDomain", {"DomainId": domain_id})


@domains.patch(
    "/{domain_id}", summary="Update a domain: attach or detach images in DefaultUserSettings"
)
async def update_domain(
    domain_id: str, request: Request, _: WriteImages, body: Json
) -> dict[str, Any]:
    return await _call(request, "UpdateDomain", {**body, "DomainId": domain_id})


@domains.delete("/{domain_id}", summary="Delete a domain (its user profiles first)")
async def delete_domain(domain_id: str, request: Request, _: WriteImages) -> dict[str, Any]:
    return await _call(request, "DeleteDomain", {"DomainId": domain_id})


@domains.get("/{domain_id}/launcher", summary="What a user of the domain can launch")
async def launcher(
    domain_id: str, request: Request, _: ReadImages, user: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"DomainId": domain_id}
    if user:
        body["UserProfileName"] = user
    return await _call(request, "ListLaunchableImages", body)


@domains.post("/{domain_id}/user-profiles", summary="Create a user profile", status_code=201)
async def create_profile(
    domain_id: str, request: Request, _: WriteImages, body: Json
) -> dict[str, Any]:
    return await _call(request, "CreateUserProfile", {**body, "DomainId": domain_id})


@domains.get("/{domain_id}/user-profiles", summary="List a domain's user profiles")
async def list_profiles(domain_id: str, request: Request, _: ReadImages) -> dict[str, Any]:
    return await _call(request, "ListUserProfiles", {"DomainIdEquals": domain_id})


@domains.get("/{domain_id}/user-profiles/{name}", summary="Describe a user profile")
async def describe_profile(
    domain_id: str, name: str, request: Request, _: ReadImages
) -> dict[str, Any]:
    return await _call(
        request, "DescribeUserProfile", {"DomainId": domain_id, "UserProfileName": name}
    )


@domains.delete("/{domain_id}/user-profiles/{name}", summary="Delete a user profile")
async def delete_profile(
    domain_id: str, name: str, request: Request, _: WriteImages
) -> dict[str, Any]:
    return await _call(
        request, "DeleteUserProfile", {"DomainId": domain_id, "UserProfileName": name}
    )


# -- build contexts and builds -----------------------------------------------------------------


@contexts.put("/{name}", summary="Upload a build context (a tar, optionally gzipped)")
async def upload_context(name: str, request: Request, _: WriteImages) -> dict[str, Any]:
    if not _UPLOAD_NAME.match(name):
        raise ValidationFailed("context names are 1-200 characters: letters, digits, '.', '_', '-'")
    store = await open_object_store(
        request.app.state.bus.js,
        topology.IMAGE_CONTEXTS,
        "Build contexts uploaded through the gateway",
    )
    size = 0
    # Spooled to disk, not memory: a context can be hundreds of megabytes.
    with tempfile.TemporaryFile() as spool:
        async for chunk in request.stream():
            size += len(chunk)
            await asyncio.to_thread(spool.write, chunk)
        if size == 0:
            raise ValidationFailed("the build context is empty")
        await asyncio.to_thread(spool.seek, 0)
        await store.put(name, spool)
    return {"Context": name, "Size": size}


@builds.post("", summary="Start a build of an uploaded context", status_code=201)
async def start_build(request: Request, _: WriteImages, body: Json) -> dict[str, Any]:
    reply: BuildReply = await _ask(
        request, "start_build", parse_model(StartBuild, body), BuildReply
    )
    return reply.build.model_dump(mode="json")


@builds.get("", summary="List builds, newest first")
async def list_builds(
    request: Request, _: ReadImages, status: str | None = None, max_results: int = 100
) -> dict[str, Any]:
    query = parse_model(ListBuilds, {"status": status, "max_results": max_results})
    reply: BuildList = await _ask(request, "list_builds", query, BuildList)
    return {"builds": [b.model_dump(mode="json") for b in reply.builds]}


@builds.get("/{build_id}", summary="Describe a build")
async def describe_build(build_id: str, request: Request, _: ReadImages) -> dict[str, Any]:
    message = parse_model(DescribeBuild, {"build_id": build_id})
    reply: BuildReply = await _ask(request, "describe_build", message, BuildReply)
    return reply.build.model_dump(mode="json")


@builds.post("/{build_id}/cancel", summary="Cancel a queued or running build")
async def cancel_build(build_id: str, request: Request, _: WriteImages) -> dict[str, Any]:
    message = parse_model(CancelBuild, {"build_id": build_id})
    reply: BuildReply = await _ask(request, "cancel_build", message, BuildReply)
    return reply.build.model_dump(mode="json")


@builds.get(
    "/{build_id}/logs",
    summary="A build's log; with follow=true, streamed live until the build ends",
    response_class=PlainTextResponse,
    response_model=None,
)
async def build_logs(
    build_id: str, request: Request, _: ReadImages, follow: bool = False
) -> StreamingResponse | PlainTextResponse:
    message = parse_model(DescribeBuild, {"build_id": build_id})
    reply: BuildReply = await _ask(request, "describe_build", message, BuildReply)
    if reply.build.status in FINISHED_BUILD_STATUSES:
        store = await open_object_store(
            request.app.state.bus.js, topology.IMAGE_LOGS, "Each build's whole log"
        )
        with contextlib.suppress(nats.js.errors.ObjectNotFoundError):
            stored = await store.get(f"{build_id}.log")
            return PlainTextResponse(stored.data or b"")
        # The log was not stored: replay what the stream still holds.
    return StreamingResponse(
        _follow(request, build_id, follow), media_type="text/plain; charset=utf-8"
    )


async def _follow(request: Request, build_id: str, follow: bool) -> AsyncIterator[bytes]:
    """Lines from the build's log subject, from the first; stops at the final line (or, without
    `follow`, once the lines so far are sent)."""
    js = request.app.state.bus.js
    subscription = await js.subscribe(
        subjects.image_build_log(build_id),
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        stream=topology.IMAGE_BUILD_LOGS.name,
    )
    try:
        while True:
            try:
                msg = await subscription.next_msg(timeout=FOLLOW_IDLE_S if follow else 1.0)
            except TimeoutError:
                if not follow:
                    return
                message = parse_model(DescribeBuild, {"build_id": build_id})
                reply: BuildReply = await _ask(request, "describe_build", message, BuildReply)
                if reply.build.status in FINISHED_BUILD_STATUSES:
                    return
                continue
            _, line = codec.decode(msg.data, BuildLogLine)
            yield (line.line + "\n").encode()
            if line.final:
                return
            if not follow and (msg.metadata.num_pending or 0) == 0:
                return
    finally:
        await subscription.unsubscribe()
