"""Admin routes: create, list and revoke REST API keys and AWS access keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from services.gateway.adapters.key_store import KeyStore
from services.gateway.auth import authenticate, require_admin
from services.gateway.domain.keys import AccessKey, ApiKey, KeyRequest, Principal

router = APIRouter(prefix="/v1", tags=["keys"])
Admin = Annotated[Principal, Depends(require_admin())]


class KeyView(BaseModel):
    """A key as listed: never its secret."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, key: ApiKey | AccessKey) -> KeyView:
        return cls(
            id=key.id,
            name=key.name,
            scopes=key.scopes,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class CreatedApiKey(KeyView):
    api_key: str  # shown once


class CreatedAccessKey(KeyView):
    access_key_id: str
    secret_access_key: str  # shown once


def _store(request: Request) -> KeyStore:
    store: KeyStore = request.app.state.key_store
    return store


@router.get("/whoami", summary="The caller's key id, name and scopes")
async def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    return principal


@router.post("/keys", status_code=201, summary="Create a REST API key (its secret is shown once)")
async def create_key(body: KeyRequest, request: Request, _: Admin) -> CreatedApiKey:
    key, token = await _store(request).create_api_key(body)
    return CreatedApiKey(**KeyView.of(key).model_dump(), api_key=token)


@router.get("/keys", summary="List REST API keys")
async def list_keys(request: Request, _: Admin) -> dict[str, list[KeyView]]:
    return {"keys": [KeyView.of(k) for k in await _store(request).list_api_keys()]}


@router.delete("/keys/{key_id}", summary="Revoke a REST API key")
async def revoke_key(key_id: str, request: Request, _: Admin) -> KeyView:
    return KeyView.of(await _store(request).revoke_api_key(key_id))


@router.post(
    "/access-keys", status_code=201, summary="Create an AWS access-key pair (secret shown once)"
)
async def create_access_key(body: KeyRequest, request: Request, _: Admin) -> CreatedAccessKey:
    key, secret = await _store(request).create_access_key(body)
    return CreatedAccessKey(
        **KeyView.of(key).model_dump(), access_key_id=key.id, secret_access_key=secret
    )


@router.get("/access-keys", summary="List AWS access keys")
async def list_access_keys(request: Request, _: Admin) -> dict[str, list[KeyView]]:
    return {"access_keys": [KeyView.of(k) for k in await _store(request).list_access_keys()]}


@router.delete("/access-keys/{key_id}", summary="Revoke an AWS access key")
async def revoke_access_key(key_id: str, request: Request, _: Admin) -> KeyView:
    return KeyView.of(await _store(request).revoke_access_key(key_id))
