"""Unit tests for the AWS JSON-protocol error shapes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contracts.errors import ErrorCode
from services.gateway.aws import errors
from services.gateway.aws.errors import AwsError, error_body, error_headers
from services.gateway.aws.sigv4 import SigV4Error


def test_aws_error_carries_code_message_status() -> None:
    err = AwsError("ValidationException", "bad input")
    assert (err.code, err.message, err.status) == ("ValidationException", "bad input", 400)
    assert str(err) == "ValidationException: bad input"
    assert "ValidationException" in repr(err)


def test_error_body_and_headers() -> None:
    assert error_body("ThrottlingException", "slow down") == {
        "__type": "ThrottlingException",
        "message": "slow down",
    }
    assert error_headers("ThrottlingException") == {
        "x-amzn-ErrorType": "ThrottlingException",
        "Content-Type": "application/x-amz-json-1.1",
    }


@pytest.mark.parametrize(
    ("factory", "code", "status"),
    [
        (errors.validation, "ValidationException", 400),
        (errors.not_found, "ResourceNotFoundException", 404),
        (errors.conflict, "ConflictException", 409),
        (errors.access_denied, "AccessDeniedException", 403),
        (errors.throttled, "ThrottlingException", 429),
        (errors.internal, "InternalServerException", 500),
        (errors.unavailable, "ServiceUnavailableException", 503),
        (errors.serialization, "SerializationException", 400),
    ],
)
def test_constructors(factory: Callable[[str], AwsError], code: str, status: int) -> None:
    err = factory("details")
    assert isinstance(err, AwsError)
    assert (err.code, err.message, err.status) == (code, "details", status)


def test_unknown_operation_names_target() -> None:
    err = errors.unknown_operation("AWSHawksNestServiceFacade.Nope")
    assert (err.code, err.status) == ("UnknownOperationException", 400)
    assert "AWSHawksNestServiceFacade.Nope" in err.message
    assert errors.unknown_operation("").message


def test_sigv4_error_is_an_aws_error() -> None:
    source = SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    assert isinstance(source, AwsError)
    assert (source.code, source.message, source.status) == (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
        403,
    )
    assert SigV4Error("IncompleteSignatureException", "x").status == 400


def test_trellis_error_codes_map_to_aws_errors() -> None:
    assert errors.from_error_code(ErrorCode.NOT_FOUND, "gone").code == "ResourceNotFoundException"
    assert errors.from_error_code(ErrorCode.VALIDATION, "bad").status == 400
    assert errors.from_error_code(ErrorCode.UNAVAILABLE, "down").status == 503
