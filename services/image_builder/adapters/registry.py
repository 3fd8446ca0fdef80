"""Reading pushed images back from the registry with skopeo: pin by digest, copy, inspect the layers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from services.image_builder.adapters.tools import Registry, run_captured
from services.image_builder.domain.inspection import (
    ImageFindings,
    LayeredFilesystem,
    inspect_filesystem,
)

_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


class ImageUnreadable(Exception):
    """The image cannot be used as given; the message says why, for the version's FailureReason."""


def repository_of(reference: str) -> str:
    """`host:5000/name:tag` or `host/name@sha256:...` -> `host:5000/name`."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


class ImageReader:
    def __init__(
        self, registry: Registry, authfile: Path, env: dict[str, str], work_dir: Path
    ) -> None:
        self.registry = registry
        self.authfile = authfile
        self.env = env
        self.work_dir = work_dir

    def _tls(self, reference: str, flag: str) -> str:
        return f"{flag}={'true' if self.registry.verify_for(reference) else 'false'}"

    async def _skopeo(self, *args: str, timeout_s: float = 300.0) -> bytes:
        argv = ["skopeo", *args]
        try:
            return await run_captured(argv, env=self.env, timeout_s=timeout_s)
        except RuntimeError as exc:
            raise ImageUnreadable(str(exc)) from None

    async def pin(self, reference: str, architecture: str) -> str:
        """The reference by digest, for this architecture's manifest when it is a multi-arch index."""
        raw = await self._skopeo(
            "inspect",
            "--raw",
            self._tls(reference, "--tls-verify"),
            f"--authfile={self.authfile}",
            f"docker://{reference}",
        )
        manifest = json.loads(raw)
        media_type = manifest.get("mediaType", "")
        if media_type in _INDEX_TYPES or "manifests" in manifest:
            entries = manifest.get("manifests", [])
            platforms = [(e.get("platform") or {}).get("architecture", "?") for e in entries]
            chosen = next(
                (
                    e
                    for e in entries
                    if (e.get("platform") or {}).get("architecture") == architecture
                    and (e.get("platform") or {}).get("os", "linux") == "linux"
                ),
                None,
            )
            if chosen is None:
                raise ImageUnreadable(
                    f"image is {'/'.join(sorted(set(platforms))) or 'for no platform'}, "
                    f"domain runs {architecture}"
                )
            digest = str(chosen["digest"])
        else:
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        return f"{repository_of(reference)}@{digest}"

    async def inspect(self, pinned: str) -> ImageFindings:
        """Copy the image into a scratch OCI layout and read its config and filesystem."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="inspect-", dir=self.work_dir))
        try:
            await self._skopeo(
                "copy",
                "--quiet",
                self._tls(pinned, "--src-tls-verify"),
                f"--src-authfile={self.authfile}",
                f"docker://{pinned}",
                f"oci:{scratch / 'layout'}:image",
                timeout_s=1800.0,
            )
            return await asyncio.to_thread(_read_layout, scratch / "layout")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or not value.isalnum():
        raise ImageUnreadable(f"unexpected blob digest {digest!r}")
    return layout / "blobs" / algorithm / value


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ImageUnreadable(f"{path.name} is not a JSON object")
    return data


def _read_layout(layout: Path) -> ImageFindings:
    index = _json(layout / "index.json")
    manifest = _json(_blob(layout, index["manifests"][0]["digest"]))
    config = _json(_blob(layout, manifest["config"]["digest"]))
    fs = LayeredFilesystem()
    for layer in manifest.get("layers", []):
        with _blob(layout, layer["digest"]).open("rb") as handle:
            fs.apply_layer(handle)
    return inspect_filesystem(
        fs,
        architecture=str(config.get("architecture", "unknown")),
        os=str(config.get("os", "unknown")),
    )
