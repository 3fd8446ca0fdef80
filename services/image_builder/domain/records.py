"""What the image builder stores in KV: images, versions, app image configs, domains, user profiles."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.image_builder.domain.inspection import ImageFindings

ImageStatus = Literal[
    "CREATING", "CREATED", "CREATE_FAILED", "UPDATING", "UPDATE_FAILED", "DELETING", "DELETE_FAILED"
]
VersionStatus = Literal["CREATING", "CREATED", "CREATE_FAILED", "DELETING", "DELETE_FAILED"]
DomainStatus = Literal[
    "Deleting", "Failed", "InService", "Pending", "Updating", "Update_Failed", "Delete_Failed"
]
ProfileStatus = Literal[
    "Deleting", "Failed", "InService", "Pending", "Updating", "Update_Failed", "Delete_Failed"
]


class ImageRecord(BaseModel):
    name: str
    arn: str
    role_arn: str
    display_name: str | None = None
    description: str | None = None
    tags: list[dict[str, str]] = Field(default_factory=list)
    status: ImageStatus = "CREATING"
    failure_reason: str | None = None
    created_at: datetime
    modified_at: datetime


class VersionRecord(BaseModel):
    image_name: str
    version: int
    arn: str
    image_arn: str
    base_image: str
    container_image: str | None = None  # the base image pinned by digest, once resolved
    aliases: list[str] = Field(default_factory=list)
    vendor_guidance: str | None = None
    job_type: str | None = None
    ml_framework: str | None = None
    programming_lang: str | None = None
    processor: str | None = None
    horovod: bool | None = None
    release_notes: str | None = None
    status: VersionStatus = "CREATING"
    failure_reason: str | None = None
    client_token: str
    findings: ImageFindings | None = None
    created_at: datetime
    modified_at: datetime


class AppImageConfigRecord(BaseModel):
    name: str
    arn: str
    kernel_gateway_image_config: dict[str, Any] | None = None
    jupyter_lab_app_image_config: dict[str, Any] | None = None
    code_editor_app_image_config: dict[str, Any] | None = None
    tags: list[dict[str, str]] = Field(default_factory=list)
    created_at: datetime
    modified_at: datetime


class DomainRecord(BaseModel):
    id: str
    name: str
    arn: str
    auth_mode: str
    status: DomainStatus = "Pending"
    failure_reason: str | None = None
    default_user_settings: dict[str, Any]
    # The rest of CreateDomain's input as SageMaker named it (DomainSettings, SubnetIds, ...).
    settings: dict[str, Any] = Field(default_factory=dict)
    url: str
    client_token: str | None = None
    created_at: datetime
    modified_at: datetime


class UserProfileRecord(BaseModel):
    domain_id: str
    name: str
    arn: str
    status: ProfileStatus = "Pending"
    failure_reason: str | None = None
    user_settings: dict[str, Any] | None = None
    single_sign_on_user_identifier: str | None = None
    single_sign_on_user_value: str | None = None
    tags: list[dict[str, str]] = Field(default_factory=list)
    created_at: datetime
    modified_at: datetime
