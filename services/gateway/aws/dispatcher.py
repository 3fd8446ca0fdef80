"""The seam where AWS operations plug in: `X-Amz-Target` -> (service area, access, handler)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.envelope import Message
from runtime.bus import Bus
from runtime.errors import TrellisError, ValidationFailed
from services.gateway.aws import errors
from services.gateway.domain.keys import Access, Principal, allows, required_scope

R = TypeVar("R", bound=Message)

# The target prefixes the AWS SDKs send for the services Trellis speaks.
FRAUD_DETECTOR = "AWSHawksNestServiceFacade"
KENDRA = "AWSKendraFrontendService"
SAGEMAKER = "SageMaker"
SECRETS_MANAGER = "secretsmanager"

_READ_PREFIXES = ("Get", "List", "Describe", "BatchGet", "Query", "Retrieve")


@dataclass(frozen=True)
class AwsCall:
    """What an operation handler gets: the bus, the caller and the request limits."""

    bus: Bus
    principal: Principal
    timeout_s: float

    async def request(self, subject: str, message: Message, reply_type: type[R]) -> R:
        try:
            return await self.bus.request(subject, message, reply_type, timeout_s=self.timeout_s)
        except TrellisError as exc:
            raise errors.from_error_code(exc.code, exc.message) from exc


Handler = Callable[[AwsCall, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class AwsOperation:
    target: str
    area: str  # whose scope guards it: fraud, indexer, crawler, image_builder
    access: Access
    handler: Handler


class AwsOperations:
    def __init__(self) -> None:
        self._by_target: dict[str, AwsOperation] = {}

    def add(
        self, prefix: str, name: str, area: str, handler: Handler, access: Access | None = None
    ) -> None:
        target = f"{prefix}.{name}"
        if target in self._by_target:
            raise ValueError(f"{target} registered twice")
        if access is None:
            access = Access.READ if name.startswith(_READ_PREFIXES) else Access.WRITE
        self._by_target[target] = AwsOperation(target, area, access, handler)

    def __contains__(self, target: str) -> bool:
        return target in self._by_target

    def targets(self) -> list[str]:
        return sorted(self._by_target)

    async def dispatch(self, call: AwsCall, target: str, body: bytes) -> dict[str, Any]:
        operation = self._by_target.get(target)
        if operation is None:
            raise errors.unknown_operation(target)
        scope = required_scope(operation.area, operation.access)
        if not allows(set(call.principal.scopes), scope):
            raise errors.access_denied(
                f"User {call.principal.name!r} is not authorized to perform {target} (needs {scope!r})"
            )
        try:
            payload = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.serialization(f"request body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise errors.serialization("request body must be a JSON object")
        return await operation.handler(call, payload)


M = TypeVar("M", bound=BaseModel)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Build a contract message from AWS input, turning pydantic errors into ValidationException."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.validation(
            f"{len(exc.errors())} validation error(s) detected: {_problems(exc)}"
        ) from None


def parse_model(model: type[M], data: dict[str, Any]) -> M:
    """The same for REST: a 400 problem naming each wrong field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"{len(exc.errors())} validation error(s): {_problems(exc)}"
        ) from None
