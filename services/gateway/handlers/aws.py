"""The AWS-compatible endpoint: `POST /` with `X-Amz-Target`, SigV4-verified, AWS JSON 1.1."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response

from services.gateway.aws import errors
from services.gateway.aws.dispatcher import AwsCall, AwsOperations
from services.gateway.aws.sigv4 import SignedRequest, verify
from services.gateway.domain.keys import Principal

router = APIRouter(tags=["aws"])
log = logging.getLogger("trellis.gateway.aws")
_CREDENTIAL_KEY_ID = re.compile(r"Credential=([^/,\s]{1,128})/")


def _aws_response(
    status: int, body: Mapping[str, object], request_id: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {"x-amzn-RequestId": request_id, **(extra or {})}
    return Response(
        json.dumps(body, default=str),
        status_code=status,
        media_type=errors.JSON_CONTENT_TYPE,
        headers=headers,
    )


def _error_response(err: errors.AwsError, request_id: str) -> Response:
    headers = errors.error_headers(err.code)
    headers.pop("Content-Type", None)
    return _aws_response(err.status, errors.error_body(err.code, err.message), request_id, headers)


@router.post(
    "/",
    summary="AWS JSON 1.1 API (Fraud Detector, Kendra, SageMaker, Secrets Manager): "
    "dispatch on X-Amz-Target",
)
async def aws_endpoint(request: Request) -> Response:
    request_id = str(uuid.uuid4())
    state = request.app.state
    body = await request.body()
    target = request.headers.get("x-amz-target", "")
    try:
        principal = await _verify(request, body)
        call = AwsCall(
            bus=state.bus, principal=principal, timeout_s=state.settings.request_timeout_s
        )
        operations: AwsOperations = state.aws_operations
        result = await operations.dispatch(call, target, body)
    except errors.AwsError as err:
        if err.status >= 500:
            log.warning("AWS %s failed: %s", target, err.message)
        return _error_response(err, request_id)
    except Exception:
        log.exception("AWS %s failed", target)
        return _error_response(errors.internal("internal error"), request_id)
    return _aws_response(200, result, request_id)


async def _verify(request: Request, body: bytes) -> Principal:
    store = request.app.state.key_store
    match = _CREDENTIAL_KEY_ID.search(request.headers.get("authorization", ""))
    found = await store.access_key(match.group(1)) if match else None

    def lookup_secret(key_id: str) -> str | None:
        if found is None or match is None or key_id != match.group(1):
            return None
        secret: str = found[0]
        return secret

    verify(
        SignedRequest(
            method=request.method,
            path=request.scope.get("raw_path", b"/").decode("latin-1") or "/",
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=[
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]
            ],
            body=body,
        ),
        lookup_secret,
        now=datetime.now(UTC),
        max_skew=timedelta(seconds=request.app.state.settings.max_clock_skew_s),
    )
    assert found is not None  # verify() raised if the key was unknown
    principal: Principal = found[1]
    request.state.principal = principal
    return principal
