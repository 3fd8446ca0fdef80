"""HTTP client of the CLI: finds the gateway and the key from settings or the data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.gateway.adapters.bootstrap import CREDENTIALS_FILE, gateway_dir


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRELLIS_", extra="ignore")

    gateway_url: str = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None
    data_dir: Path = Path("var")


class ClientError(Exception):
    """The gateway answered with an error (or could not be reached); the message says which."""


def resolve_api_key(settings: ClientSettings) -> str:
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return settings.api_key.get_secret_value()
    path = gateway_dir(settings.data_dir) / CREDENTIALS_FILE
    try:
        key: str = json.loads(path.read_text())["api_key"]
    except (OSError, ValueError, KeyError):
        raise ClientError(
            f"no API key: set TRELLIS_API_KEY, or run where {path} exists (created by `trellis up`)"
        ) from None
    return key


class GatewayClient:
    def __init__(self, settings: ClientSettings | None = None, timeout_s: float = 30.0) -> None:
        self.settings = settings or ClientSettings()
        self._http = httpx.Client(
            base_url=self.settings.gateway_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {resolve_api_key(self.settings)}"},
        )

    def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the gateway at {self.settings.gateway_url}: {exc}"
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:500]
            raise ClientError(f"{response.status_code}: {detail}")
        return response

    def call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._request(method, path, json)
        return response.json() if response.content else None

    def upload(self, path: str, content: bytes) -> Any:
        try:
            response = self._http.put(path, content=content, timeout=600)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the gateway at {self.settings.gateway_url}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise ClientError(f"{response.status_code}: {response.text[:500]}")
        return response.json()

    def post_form(self, path: str, data: dict[str, str], files: dict[str, Path]) -> Any:
        """A multipart/form-data POST (a model registration with its files)."""
        handles = {field: path_.open("rb") for field, path_ in files.items()}
        try:
            response = self._http.post(
                path,
                data=data,
                files={field: (p.name, handles[field]) for field, p in files.items()},
                timeout=600,
            )
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the gateway at {self.settings.gateway_url}: {exc}"
            ) from None
        finally:
            for handle in handles.values():
                handle.close()
        if response.status_code >= 400:
            raise ClientError(f"{response.status_code}: {response.text[:500]}")
        return response.json()

    def lines(self, path: str) -> Iterator[str]:
        """A streamed text response, line by line (a build log being followed)."""
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(30, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(f"{response.status_code}: {response.text[:500]}")
                yield from response.iter_lines()
        except httpx.HTTPError as exc:
            raise ClientError(f"lost the gateway at {self.settings.gateway_url}: {exc}") from None

    def raw(self, method: str, path: str) -> bytes:
        return self._request(method, path).content

    def close(self) -> None:
        self._http.close()
