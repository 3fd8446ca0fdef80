"""Custom images attached to domains and user profiles: parsing, resolution, launch checks, the launcher."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runtime.errors import ValidationFailed
from services.image_builder.domain import inspection
from services.image_builder.domain.records import (
    AppImageConfigRecord,
    ImageRecord,
    VersionRecord,
)

# UserSettings members that carry CustomImages, and the app each one launches.
APP_SETTINGS: dict[str, str] = {
    "RSessionAppSettings": "RSession",
    "KernelGatewayAppSettings": "KernelGateway",
    "JupyterLabAppSettings": "JupyterLab",
    "CodeEditorAppSettings": "CodeEditor",
}
MAX_CUSTOM_IMAGES = 200
_IMAGE_NAME = re.compile(r"^[a-zA-Z0-9]([-.]?[a-zA-Z0-9]){0,62}$")
_CONFIG_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# SageMaker's defaults when an app image config names no file system config.
DEFAULT_UID = 1000
DEFAULT_GID = 100
_CONFIG_KEYS = {
    "KernelGateway": "kernel_gateway_image_config",
    "JupyterLab": "jupyter_lab_app_image_config",
    "CodeEditor": "code_editor_app_image_config",
}


@dataclass(frozen=True)
class Attachment:
    app: str  # RSession, KernelGateway, JupyterLab, CodeEditor
    image_name: str
    app_image_config_name: str
    version: int | None = None  # None: the latest version


def custom_images(user_settings: dict[str, Any] | None, where: str) -> list[Attachment]:
    """Every CustomImages entry of a UserSettings document, checked; `where` names it in errors."""
    if not user_settings:
        return []
    if not isinstance(user_settings, dict):
        raise ValidationFailed(f"{where} must be an object")
    found: list[Attachment] = []
    for key, app in APP_SETTINGS.items():
        section = user_settings.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ValidationFailed(f"{where}.{key} must be an object")
        entries = section.get("CustomImages", [])
        if not isinstance(entries, list):
            raise ValidationFailed(f"{where}.{key}.CustomImages must be a list")
        if len(entries) > MAX_CUSTOM_IMAGES:
            raise ValidationFailed(
                f"{where}.{key}.CustomImages has {len(entries)} entries (at most {MAX_CUSTOM_IMAGES})"
            )
        for i, entry in enumerate(entries):
            found.append(_attachment(entry, app, f"{where}.{key}.CustomImages[{i}]"))
    seen: set[tuple[str, str]] = set()
    for attachment in found:
        key_ = (attachment.app, attachment.image_name)
        if key_ in seen:
            raise ValidationFailed(
                f"{where}: image {attachment.image_name!r} is attached twice to {attachment.app}"
            )
        seen.add(key_)
    return found


def _attachment(entry: Any, app: str, where: str) -> Attachment:
    if not isinstance(entry, dict):
        raise ValidationFailed(f"{where} must be an object")
    unknown = set(entry) - {"ImageName", "ImageVersionNumber", "AppImageConfigName"}
    if unknown:
        raise ValidationFailed(f"{where} has unknown fields {sorted(unknown)}")
    image = entry.get("ImageName")
    config = entry.get("AppImageConfigName")
    version = entry.get("ImageVersionNumber")
    if not isinstance(image, str) or not _IMAGE_NAME.match(image):
        raise ValidationFailed(f"{where}.ImageName is missing or not a valid image name")
    if not isinstance(config, str) or not _CONFIG_NAME.match(config):
        raise ValidationFailed(f"{where}.AppImageConfigName is missing or not a valid name")
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 0
    ):
        raise ValidationFailed(f"{where}.ImageVersionNumber must be a non-negative integer")
    return Attachment(app, image, config, version)


def effective(
    domain_settings: dict[str, Any], profile_settings: dict[str, Any] | None
) -> list[Attachment]:
    """What a user gets: the domain's images per app, unless the profile sets that app itself."""
    profile = profile_settings or {}
    result: list[Attachment] = []
    for key in APP_SETTINGS:
        source = profile if key in profile else domain_settings
        result.extend(custom_images({key: source[key]} if key in source else {}, "UserSettings"))
    return result


def resolve_version(attachment: Attachment, versions: list[VersionRecord]) -> VersionRecord | None:
    """The version an attachment launches: its number, or the latest one."""
    if attachment.version is not None:
        return next((v for v in versions if v.version == attachment.version), None)
    return max(versions, key=lambda v: v.version, default=None)


def launch_problems(
    attachment: Attachment,
    image: ImageRecord | None,
    version: VersionRecord | None,
    config: AppImageConfigRecord | None,
    rstudio_version: str | None,
) -> list[str]:
    """Why this attachment would fail at launch, in words a user can act on (empty: it launches)."""
    name = attachment.image_name
    if image is None:
        return [f"image {name!r} does not exist"]
    if config is None:
        return [f"app image config {attachment.app_image_config_name!r} does not exist"]
    if version is None:
        wanted = attachment.version if attachment.version is not None else "(latest)"
        return [f"image {name!r} has no version {wanted}"]
    label = f"image {name!r} version {version.version}"
    if version.status != "CREATED":
        reason = f": {version.failure_reason}" if version.failure_reason else ""
        return [f"{label} is {version.status}{reason}"]
    findings = version.findings
    if findings is None:
        return [f"{label} was never inspected"]
    problems: list[str] = []
    if attachment.app == "RSession":
        problems += inspection.check_r(findings)
        problems += inspection.check_rstudio(findings, rstudio_version)
    else:
        body = getattr(config, _CONFIG_KEYS[attachment.app]) or {}
        fs = body.get("FileSystemConfig") or {}
        problems += inspection.check_user(
            findings, int(fs.get("DefaultUid", DEFAULT_UID)), int(fs.get("DefaultGid", DEFAULT_GID))
        )
        kernels = [k.get("Name", "") for k in body.get("KernelSpecs", []) if isinstance(k, dict)]
        if kernels:
            problems += inspection.check_kernels(findings, kernels)
    return [f"{label}: {p}" for p in problems]


def launcher_entry(
    attachment: Attachment, image: ImageRecord, version: VersionRecord | None
) -> dict[str, Any]:
    """One thing a user can launch, as the launcher shows it."""
    findings = version.findings if version else None
    return {
        "App": attachment.app,
        "DisplayName": image.display_name or image.name,
        "ImageName": image.name,
        "ImageVersionNumber": version.version if version else None,
        "AppImageConfigName": attachment.app_image_config_name,
        "RVersions": [r.version for r in findings.r_installations if r.version] if findings else [],
        "Kernels": [k.name for k in findings.kernels] if findings else [],
        "Status": version.status if version else "MISSING",
    }
