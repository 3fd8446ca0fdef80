"""Scope rules and key formats."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.gateway.domain.keys import (
    KeyRequest,
    allows,
    hash_secret,
    is_access_key_id,
    new_access_key,
    new_api_token,
    parse_api_token,
    secret_matches,
)


def test_admin_allows_everything() -> None:
    assert allows({"admin"}, "fraud:write")
    assert allows({"admin"}, "admin")


def test_write_implies_read_but_not_the_reverse() -> None:
    assert allows({"fraud:write"}, "fraud:read")
    assert not allows({"fraud:read"}, "fraud:write")


def test_scopes_do_not_cross_areas_or_grant_admin() -> None:
    assert not allows({"fraud:write"}, "indexer:read")
    assert not allows({"platform:read", "fraud:write"}, "admin")


def test_key_request_validates_scopes() -> None:
    assert KeyRequest(name="ci", scopes=["fraud:read", "fraud:read"]).scopes == ["fraud:read"]
    for bad in (["fraud:admin"], ["nope:read"], []):
        with pytest.raises(ValidationError):
            KeyRequest(name="ci", scopes=bad)
    with pytest.raises(ValidationError):
        KeyRequest.model_validate({"name": "ci", "scopes": ["admin"], "extra": 1})


def test_api_token_round_trip() -> None:
    key_id, secret, token = new_api_token()
    assert parse_api_token(token) == (key_id, secret)
    assert parse_api_token("trk_short_x") is None
    assert secret_matches(secret, hash_secret(secret))
    assert not secret_matches(secret + "x", hash_secret(secret))


def test_access_keys_look_like_aws_ones() -> None:
    key_id, secret = new_access_key()
    assert len(key_id) == 20 and is_access_key_id(key_id)
    assert len(secret) == 40
    assert not is_access_key_id("AKIA" + "A" * 16)
