"""Image-builder messages: SageMaker image, app image config, domain and user profile operations, builds."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from contracts.aws import AwsMessage, AwsOperation
from contracts.envelope import Message

IMAGE_NAME = r"^[a-zA-Z0-9]([-.]?[a-zA-Z0-9]){0,62}$"
CONFIG_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
DOMAIN_ID = r"^d-(-*[a-z0-9]){1,61}$"
PROFILE_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
BUILD_ID = r"^b[a-z0-9]{1,40}$"
ROLE_ARN = r"^arn:aws[a-z\-]*:iam::\d{1,12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
# A repository as `docker build -t` takes it: path components, optional tag.
REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
UPLOAD_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"

JobType = Literal["TRAINING", "INFERENCE", "NOTEBOOK_KERNEL"]
Processor = Literal["CPU", "GPU"]
VendorGuidance = Literal["NOT_PROVIDED", "STABLE", "TO_BE_ARCHIVED", "ARCHIVED"]


class Tag(AwsMessage):
    message_type: ClassVar[str] = "image.v1.tag"
    key: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=256)


class _ListFilters(AwsMessage):
    creation_time_after: datetime | None = None
    creation_time_before: datetime | None = None
    last_modified_time_after: datetime | None = None
    last_modified_time_before: datetime | None = None
    max_results: int = Field(default=100, ge=1, le=100)
    next_token: str | None = Field(default=None, max_length=8192)
    sort_by: Literal["CREATION_TIME", "LAST_MODIFIED_TIME", "IMAGE_NAME", "VERSION"] | None = None
    sort_order: Literal["ASCENDING", "DESCENDING"] | None = None


# -- Images ------------------------------------------------------------------------------------


class CreateImage(AwsMessage):
    message_type: ClassVar[str] = "image.v1.create_image"
    image_name: str = Field(pattern=IMAGE_NAME, max_length=63)
    role_arn: str = Field(pattern=ROLE_ARN, max_length=2048)
    display_name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, min_length=1, max_length=512)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class _ImageRef(AwsMessage):
    image_name: str = Field(pattern=IMAGE_NAME, max_length=63)


class DescribeImage(_ImageRef):
    message_type: ClassVar[str] = "image.v1.describe_image"


class DeleteImage(_ImageRef):
    message_type: ClassVar[str] = "image.v1.delete_image"


class UpdateImage(_ImageRef):
    message_type: ClassVar[str] = "image.v1.update_image"
    delete_properties: list[Literal["Description", "DisplayName"]] = Field(
        default_factory=list, max_length=2
    )
    description: str | None = Field(default=None, min_length=1, max_length=512)
    display_name: str | None = Field(default=None, min_length=1, max_length=128)
    role_arn: str | None = Field(default=None, pattern=ROLE_ARN, max_length=2048)


class ListImages(_ListFilters):
    message_type: ClassVar[str] = "image.v1.list_images"
    name_contains: str | None = Field(default=None, max_length=63)


# -- Image versions ----------------------------------------------------------------------------


class _VersionFields(AwsMessage):
    vendor_guidance: VendorGuidance | None = None
    job_type: JobType | None = None
    ml_framework: str | None = Field(default=None, alias="MLFramework", max_length=128)
    programming_lang: str | None = Field(default=None, max_length=128)
    processor: Processor | None = None
    horovod: bool | None = None
    release_notes: str | None = Field(default=None, max_length=255)


class CreateImageVersion(_VersionFields):
    message_type: ClassVar[str] = "image.v1.create_image_version"
    base_image: str = Field(min_length=1, max_length=255)
    client_token: str = Field(min_length=1, max_length=36)
    image_name: str = Field(pattern=IMAGE_NAME, max_length=63)
    aliases: list[str] = Field(default_factory=list, max_length=20)


class _VersionRef(_ImageRef):
    version: int | None = Field(default=None, ge=0)
    alias: str | None = Field(default=None, min_length=1, max_length=128)


class DescribeImageVersion(_VersionRef):
    message_type: ClassVar[str] = "image.v1.describe_image_version"


class DeleteImageVersion(_VersionRef):
    message_type: ClassVar[str] = "image.v1.delete_image_version"


class UpdateImageVersion(_VersionRef, _VersionFields):
    message_type: ClassVar[str] = "image.v1.update_image_version"
    aliases_to_add: list[str] = Field(default_factory=list, max_length=20)
    aliases_to_delete: list[str] = Field(default_factory=list, max_length=20)


class ListImageVersions(_ListFilters):
    message_type: ClassVar[str] = "image.v1.list_image_versions"
    image_name: str = Field(pattern=IMAGE_NAME, max_length=63)


# -- App image configs -------------------------------------------------------------------------


class _AppImageConfigBody(AwsMessage):
    # Kept as SageMaker's JSON: the service's domain checks kernel specs, UID/GID and containers.
    kernel_gateway_image_config: dict[str, Any] | None = None
    jupyter_lab_app_image_config: dict[str, Any] | None = None
    code_editor_app_image_config: dict[str, Any] | None = None


class CreateAppImageConfig(_AppImageConfigBody):
    message_type: ClassVar[str] = "image.v1.create_app_image_config"
    app_image_config_name: str = Field(pattern=CONFIG_NAME, max_length=63)
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class _ConfigRef(AwsMessage):
    app_image_config_name: str = Field(pattern=CONFIG_NAME, max_length=63)


class DescribeAppImageConfig(_ConfigRef):
    message_type: ClassVar[str] = "image.v1.describe_app_image_config"


class DeleteAppImageConfig(_ConfigRef):
    message_type: ClassVar[str] = "image.v1.delete_app_image_config"


class UpdateAppImageConfig(_ConfigRef, _AppImageConfigBody):
    message_type: ClassVar[str] = "image.v1.update_app_image_config"


class ListAppImageConfigs(AwsMessage):
    message_type: ClassVar[str] = "image.v1.list_app_image_configs"
    max_results: int = Field(default=100, ge=1, le=100)
    next_token: str | None = Field(default=None, max_length=8192)
    name_contains: str | None = Field(default=None, max_length=63)
    creation_time_before: datetime | None = None
    creation_time_after: datetime | None = None
    modified_time_before: datetime | None = None
    modified_time_after: datetime | None = None
    sort_by: Literal["CreationTime", "LastModifiedTime", "Name"] | None = None
    sort_order: Literal["Ascending", "Descending"] | None = None


# -- Domains and user profiles -----------------------------------------------------------------


class CreateDomain(AwsMessage):
    message_type: ClassVar[str] = "image.v1.create_domain"
    domain_name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", max_length=63)
    auth_mode: Literal["SSO", "IAM"]
    # SageMaker's UserSettings JSON: custom images are read from it, the rest kept as given.
    default_user_settings: dict[str, Any]
    domain_settings: dict[str, Any] | None = None
    subnet_ids: list[str] = Field(default_factory=list, max_length=16)
    vpc_id: str | None = Field(default=None, max_length=32)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    app_network_access_type: Literal["PublicInternetOnly", "VpcOnly"] | None = None
    home_efs_file_system_kms_key_id: str | None = Field(default=None, max_length=2048)
    kms_key_id: str | None = Field(default=None, max_length=2048)
    app_security_group_management: Literal["Service", "Customer"] | None = None
    home_efs_file_system_creation: Literal["Enabled", "Disabled"] | None = None
    tag_propagation: Literal["ENABLED", "DISABLED"] | None = None
    default_space_settings: dict[str, Any] | None = None


class _DomainRef(AwsMessage):
    domain_id: str = Field(pattern=DOMAIN_ID, max_length=63)


class DescribeDomain(_DomainRef):
    message_type: ClassVar[str] = "image.v1.describe_domain"


class DeleteDomain(_DomainRef):
    message_type: ClassVar[str] = "image.v1.delete_domain"
    retention_policy: dict[str, Any] | None = None


class UpdateDomain(_DomainRef):
    message_type: ClassVar[str] = "image.v1.update_domain"
    default_user_settings: dict[str, Any] | None = None
    domain_settings_for_update: dict[str, Any] | None = None
    app_security_group_management: Literal["Service", "Customer"] | None = None
    default_space_settings: dict[str, Any] | None = None
    subnet_ids: list[str] | None = Field(default=None, max_length=16)
    app_network_access_type: Literal["PublicInternetOnly", "VpcOnly"] | None = None
    tag_propagation: Literal["ENABLED", "DISABLED"] | None = None
    home_efs_file_system_creation: Literal["Enabled", "Disabled"] | None = None
    vpc_id: str | None = Field(default=None, max_length=32)


class ListDomains(AwsMessage):
    message_type: ClassVar[str] = "image.v1.list_domains"
    next_token: str | None = Field(default=None, max_length=8192)
    max_results: int = Field(default=100, ge=1, le=100)


class CreateUserProfile(_DomainRef):
    message_type: ClassVar[str] = "image.v1.create_user_profile"
    user_profile_name: str = Field(pattern=PROFILE_NAME, max_length=63)
    single_sign_on_user_identifier: str | None = Field(default=None, max_length=256)
    single_sign_on_user_value: str | None = Field(default=None, max_length=256)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    user_settings: dict[str, Any] | None = None


class _ProfileRef(_DomainRef):
    user_profile_name: str = Field(pattern=PROFILE_NAME, max_length=63)


class DescribeUserProfile(_ProfileRef):
    message_type: ClassVar[str] = "image.v1.describe_user_profile"


class DeleteUserProfile(_ProfileRef):
    message_type: ClassVar[str] = "image.v1.delete_user_profile"


class ListUserProfiles(AwsMessage):
    message_type: ClassVar[str] = "image.v1.list_user_profiles"
    next_token: str | None = Field(default=None, max_length=8192)
    max_results: int = Field(default=100, ge=1, le=100)
    sort_order: Literal["Ascending", "Descending"] | None = None
    sort_by: Literal["CreationTime", "LastModifiedTime"] | None = None
    domain_id_equals: str | None = Field(default=None, pattern=DOMAIN_ID, max_length=63)
    user_profile_name_contains: str | None = Field(default=None, max_length=63)


class ListLaunchableImages(_DomainRef):
    """Trellis extension: what a user of a domain can launch (REST only)."""

    message_type: ClassVar[str] = "image.v1.list_launchable_images"
    user_profile_name: str | None = Field(default=None, pattern=PROFILE_NAME, max_length=63)


class ImageResult(Message):
    """The reply of every SageMaker operation: SageMaker's output shape, with its JSON names."""

    message_type: ClassVar[str] = "image.v1.result"
    output: dict[str, Any] = Field(default_factory=dict)


SAGEMAKER_OPERATIONS: tuple[AwsOperation, ...] = (
    AwsOperation("CreateImage", "create_image", CreateImage),
    AwsOperation("DescribeImage", "describe_image", DescribeImage),
    AwsOperation("ListImages", "list_images", ListImages),
    AwsOperation("UpdateImage", "update_image", UpdateImage),
    AwsOperation("DeleteImage", "delete_image", DeleteImage),
    AwsOperation("CreateImageVersion", "create_image_version", CreateImageVersion),
    AwsOperation("DescribeImageVersion", "describe_image_version", DescribeImageVersion),
    AwsOperation("ListImageVersions", "list_image_versions", ListImageVersions),
    AwsOperation("UpdateImageVersion", "update_image_version", UpdateImageVersion),
    AwsOperation("DeleteImageVersion", "delete_image_version", DeleteImageVersion),
    AwsOperation("CreateAppImageConfig", "create_app_image_config", CreateAppImageConfig),
    AwsOperation("DescribeAppImageConfig", "describe_app_image_config", DescribeAppImageConfig),
    AwsOperation("ListAppImageConfigs", "list_app_image_configs", ListAppImageConfigs),
    AwsOperation("UpdateAppImageConfig", "update_app_image_config", UpdateAppImageConfig),
    AwsOperation("DeleteAppImageConfig", "delete_app_image_config", DeleteAppImageConfig),
    AwsOperation("CreateDomain", "create_domain", CreateDomain),
    AwsOperation("DescribeDomain", "describe_domain", DescribeDomain),
    AwsOperation("ListDomains", "list_domains", ListDomains),
    AwsOperation("UpdateDomain", "update_domain", UpdateDomain),
    AwsOperation("DeleteDomain", "delete_domain", DeleteDomain),
    AwsOperation("CreateUserProfile", "create_user_profile", CreateUserProfile),
    AwsOperation("DescribeUserProfile", "describe_user_profile", DescribeUserProfile),
    AwsOperation("ListUserProfiles", "list_user_profiles", ListUserProfiles),
    AwsOperation("DeleteUserProfile", "delete_user_profile", DeleteUserProfile),
)
# Trellis extensions served on REST only.
REST_OPERATIONS: tuple[AwsOperation, ...] = (
    AwsOperation("ListLaunchableImages", "list_launchable_images", ListLaunchableImages),
)


# -- Builds (Trellis: buildah builds pushed to an OCI registry) ---------------------------------

BuildStatus = Literal["QUEUED", "RUNNING", "PUSHING", "SUCCEEDED", "FAILED", "CANCELLED"]
FINISHED_BUILD_STATUSES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class StartBuild(Message):
    message_type: ClassVar[str] = "image.v1.start_build"
    context: str = Field(pattern=UPLOAD_NAME, description="a build context uploaded as a tar")
    repository: str = Field(pattern=REPOSITORY, max_length=255, description="NAME[:TAG]")
    dockerfile: str = Field(default="Dockerfile", min_length=1, max_length=255)
    build_args: dict[str, str] = Field(default_factory=dict, max_length=100)
    target: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    labels: dict[str, str] = Field(default_factory=dict, max_length=100)
    layers: bool = True
    platform: str | None = Field(
        default=None,
        pattern=r"^linux/(amd64|arm64|arm|386|ppc64le|s390x|riscv64)(/v[5-8])?$",
        description="build for another platform (steps that RUN need an emulator for it)",
    )
    client_token: str | None = Field(default=None, min_length=1, max_length=64)


class Build(Message):
    """A build as stored and returned."""

    message_type: ClassVar[str] = "image.v1.build"
    id: str = Field(pattern=BUILD_ID)
    request: StartBuild
    status: BuildStatus = "QUEUED"
    failure_reason: str | None = None
    image_uri: str | None = None
    digest: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_lines: int = 0
    cancel_requested: bool = False


class DescribeBuild(Message):
    message_type: ClassVar[str] = "image.v1.describe_build"
    build_id: str = Field(pattern=BUILD_ID)


class CancelBuild(Message):
    message_type: ClassVar[str] = "image.v1.cancel_build"
    build_id: str = Field(pattern=BUILD_ID)


class ListBuilds(Message):
    message_type: ClassVar[str] = "image.v1.list_builds"
    status: BuildStatus | None = None
    max_results: int = Field(default=100, ge=1, le=1000)


class BuildReply(Message):
    message_type: ClassVar[str] = "image.v1.build_reply"
    build: Build


class BuildList(Message):
    message_type: ClassVar[str] = "image.v1.build_list"
    builds: list[Build] = Field(default_factory=list)


class BuildQueued(Message):
    """A build waiting for a builder (the IMAGE_WORK queue)."""

    message_type: ClassVar[str] = "image.v1.build.queued"
    build_id: str = Field(pattern=BUILD_ID)


class BuildCancelRequested(Message):
    """Broadcast to every builder replica: whoever runs this build stops it."""

    message_type: ClassVar[str] = "image.v1.build.cancel_requested"
    build_id: str = Field(pattern=BUILD_ID)


class BuildLogLine(Message):
    """One line of a build's output, in order (`seq`); the last one has `final` and the outcome."""

    message_type: ClassVar[str] = "image.v1.build_log.line"
    build_id: str = Field(pattern=BUILD_ID)
    seq: int = Field(ge=0)
    line: str
    final: bool = False
    status: BuildStatus | None = None


class VersionSubmitted(Message):
    """An image version waiting for validation (the IMAGE_WORK queue)."""

    message_type: ClassVar[str] = "image.v1.version.submitted"
    image_name: str = Field(pattern=IMAGE_NAME)
    version: int = Field(ge=1)
