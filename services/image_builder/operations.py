"""SageMaker image, app image config, domain and user profile operations: request in, SageMaker's output out."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from contracts import subjects
from contracts.images import (
    CreateAppImageConfig,
    CreateDomain,
    CreateImage,
    CreateImageVersion,
    CreateUserProfile,
    DeleteAppImageConfig,
    DeleteDomain,
    DeleteImage,
    DeleteImageVersion,
    DeleteUserProfile,
    DescribeAppImageConfig,
    DescribeDomain,
    DescribeImage,
    DescribeImageVersion,
    DescribeUserProfile,
    ListAppImageConfigs,
    ListDomains,
    ListImages,
    ListImageVersions,
    ListLaunchableImages,
    ListUserProfiles,
    Tag,
    UpdateAppImageConfig,
    UpdateDomain,
    UpdateImage,
    UpdateImageVersion,
    VersionSubmitted,
)
from runtime.bus import Bus
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore
from runtime.paging import page
from services.image_builder.domain.attachments import (
    Attachment,
    custom_images,
    effective,
    launch_problems,
    launcher_entry,
    resolve_version,
)
from services.image_builder.domain.records import (
    AppImageConfigRecord,
    DomainRecord,
    ImageRecord,
    UserProfileRecord,
    VersionRecord,
)

Output = dict[str, Any]
R = TypeVar("R", bound=BaseModel)
_ALIAS = re.compile(r"^(?!^[.-])^([a-zA-Z0-9-_.]+)$")
_KERNEL_NAME = re.compile(r"^[a-zA-Z0-9\-_.]{1,1024}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _tags(tags: list[Tag]) -> list[dict[str, str]]:
    return [{"Key": t.key, "Value": t.value} for t in tags]


def image_key(name: str) -> str:
    # '.' separates KV tokens and '_' is not allowed in image names: the mapping is one to one.
    return name.replace(".", "_")


def version_key(name: str, version: int) -> str:
    return f"{image_key(name)}.{version}"


def _in_window(moment: datetime, after: datetime | None, before: datetime | None) -> bool:
    return (after is None or moment > after) and (before is None or moment < before)


class Stores:
    """Typed views of the `image_resources` bucket, one prefix per resource kind."""

    def __init__(self, kv: Any) -> None:
        self.images = ResourceStore(kv, ImageRecord, "image", prefix="image.")
        self.versions = ResourceStore(kv, VersionRecord, "image version", prefix="version.")
        self.configs = ResourceStore(kv, AppImageConfigRecord, "app image config", prefix="config.")
        self.domains = ResourceStore(kv, DomainRecord, "domain", prefix="domain.")
        self.profiles = ResourceStore(kv, UserProfileRecord, "user profile", prefix="profile.")


class ImageOperations:
    def __init__(
        self, bus: Bus, stores: Stores, *, region: str, account_id: str, rstudio_version: str
    ) -> None:
        self.bus = bus
        self.stores = stores
        self.region = region
        self.account_id = account_id
        self.rstudio_version = rstudio_version

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{name.lower()}"

    # -- lookups -----------------------------------------------------------------------------

    async def _image(self, name: str) -> ImageRecord:
        try:
            return (await self.stores.images.get(image_key(name))).value
        except NotFound:
            raise NotFound(f"Image {name} does not exist") from None

    async def _versions(self, name: str) -> list[VersionRecord]:
        return sorted(
            (v.value for v in await self.stores.versions.list() if v.value.image_name == name),
            key=lambda v: v.version,
        )

    async def _version(self, name: str, version: int | None, alias: str | None) -> VersionRecord:
        await self._image(name)
        versions = await self._versions(name)
        if version is not None and alias is not None:
            raise ValidationFailed("give Version or Alias, not both")
        if alias is not None:
            found = next((v for v in versions if alias in v.aliases), None)
            what = f"alias {alias}"
        elif version is not None:
            found = next((v for v in versions if v.version == version), None)
            what = f"version {version}"
        else:
            found = versions[-1] if versions else None
            what = "any version"
        if found is None:
            raise NotFound(f"Image {name} has no {what}")
        return found

    async def _config(self, name: str) -> AppImageConfigRecord:
        try:
            return (await self.stores.configs.get(name)).value
        except NotFound:
            raise NotFound(f"App image config {name} does not exist") from None

    async def _domain(self, domain_id: str) -> DomainRecord:
        try:
            return (await self.stores.domains.get(domain_id)).value
        except NotFound:
            raise NotFound(f"Domain {domain_id} does not exist") from None

    async def _attachments(self) -> list[tuple[str, Attachment]]:
        """Every custom image attached anywhere, with who attached it."""
        found: list[tuple[str, Attachment]] = []
        for d in await self.stores.domains.list():
            for a in custom_images(d.value.default_user_settings, "DefaultUserSettings"):
                found.append((f"domain {d.value.id}", a))
        for p in await self.stores.profiles.list():
            for a in custom_images(p.value.user_settings, "UserSettings"):
                found.append((f"user profile {p.value.name} of {p.value.domain_id}", a))
        return found

    async def _check_attachments(self, attachments: list[Attachment]) -> None:
        """Refuse settings that would fail at launch, naming each reason."""
        problems: list[str] = []
        for attachment in attachments:
            image = config = None
            versions: list[VersionRecord] = []
            try:
                image = await self._image(attachment.image_name)
                versions = await self._versions(attachment.image_name)
            except NotFound:
                pass
            try:
                config = await self._config(attachment.app_image_config_name)
            except NotFound:
                pass
            version = resolve_version(attachment, versions)
            problems += launch_problems(attachment, image, version, config, self.rstudio_version)
        if problems:
            raise ValidationFailed("; ".join(problems))

    # -- images ------------------------------------------------------------------------------

    def _image_output(self, r: ImageRecord) -> Output:
        out: Output = {
            "CreationTime": _ts(r.created_at),
            "ImageArn": r.arn,
            "ImageName": r.name,
            "ImageStatus": r.status,
            "LastModifiedTime": _ts(r.modified_at),
            "RoleArn": r.role_arn,
        }
        for key, value in (
            ("Description", r.description),
            ("DisplayName", r.display_name),
            ("FailureReason", r.failure_reason),
        ):
            if value is not None:
                out[key] = value
        return out

    async def create_image(self, r: CreateImage) -> Output:
        now = _now()
        record = ImageRecord(
            name=r.image_name,
            arn=self._arn("image", r.image_name),
            role_arn=r.role_arn,
            display_name=r.display_name,
            description=r.description,
            tags=_tags(r.tags),
            status="CREATED",  # nothing to provision: an image is a name for its versions
            created_at=now,
            modified_at=now,
        )
        try:
            await self.stores.images.create(image_key(r.image_name), record)
        except Conflict:
            raise Conflict(f"Image {r.image_name} already exists") from None
        return {"ImageArn": record.arn}

    async def describe_image(self, r: DescribeImage) -> Output:
        return self._image_output(await self._image(r.image_name))

    async def list_images(self, r: ListImages) -> Output:
        images = [
            v.value
            for v in await self.stores.images.list()
            if (not r.name_contains or r.name_contains.lower() in v.value.name.lower())
            and _in_window(v.value.created_at, r.creation_time_after, r.creation_time_before)
            and _in_window(
                v.value.modified_at, r.last_modified_time_after, r.last_modified_time_before
            )
        ]
        images = _sorted(
            images,
            r.sort_by or "CREATION_TIME",
            r.sort_order or "DESCENDING",
            {
                "CREATION_TIME": lambda i: i.created_at.isoformat(),
                "LAST_MODIFIED_TIME": lambda i: i.modified_at.isoformat(),
                "IMAGE_NAME": lambda i: i.name,
            },
        )
        chosen, token = _offset_page(images, r.next_token, r.max_results)
        out: Output = {
            "Images": [
                {k: v for k, v in self._image_output(i).items() if k != "RoleArn"} for i in chosen
            ]
        }
        if token:
            out["NextToken"] = token
        return out

    async def update_image(self, r: UpdateImage) -> Output:
        for prop in r.delete_properties:
            if (prop == "Description" and r.description) or (
                prop == "DisplayName" and r.display_name
            ):
                raise ValidationFailed(f"{prop} cannot be both set and deleted")

        def change(image: ImageRecord) -> ImageRecord:
            update: dict[str, Any] = {"modified_at": _now()}
            for prop, field in (("Description", "description"), ("DisplayName", "display_name")):
                if prop in r.delete_properties:
                    update[field] = None
            for field in ("description", "display_name", "role_arn"):
                if getattr(r, field) is not None:
                    update[field] = getattr(r, field)
            return image.model_copy(update=update)

        await self._image(r.image_name)
        stored = await self.stores.images.mutate(image_key(r.image_name), change)
        return {"ImageArn": stored.value.arn}

    async def delete_image(self, r: DeleteImage) -> Output:
        await self._image(r.image_name)
        users = [who for who, a in await self._attachments() if a.image_name == r.image_name]
        if users:
            raise Conflict(
                f"Image {r.image_name} is attached to {', '.join(sorted(set(users)))}: "
                "detach it first"
            )
        for version in await self._versions(r.image_name):
            await _delete_quietly(self.stores.versions, version_key(r.image_name, version.version))
        await _delete_quietly(self.stores.images, image_key(r.image_name))
        return {}

    # -- image versions ----------------------------------------------------------------------

    def _version_output(self, v: VersionRecord) -> Output:
        out: Output = {
            "BaseImage": v.base_image,
            "CreationTime": _ts(v.created_at),
            "ImageArn": v.image_arn,
            "ImageVersionArn": v.arn,
            "ImageVersionStatus": v.status,
            "LastModifiedTime": _ts(v.modified_at),
            "Version": v.version,
        }
        for key, value in (
            ("ContainerImage", v.container_image),
            ("FailureReason", v.failure_reason),
            ("VendorGuidance", v.vendor_guidance),
            ("JobType", v.job_type),
            ("MLFramework", v.ml_framework),
            ("ProgrammingLang", v.programming_lang),
            ("Processor", v.processor),
            ("Horovod", v.horovod),
            ("ReleaseNotes", v.release_notes),
        ):
            if value is not None:
                out[key] = value
        return out

    async def create_image_version(self, r: CreateImageVersion) -> Output:
        image = await self._image(r.image_name)
        _check_aliases(r.aliases)
        versions = await self._versions(r.image_name)
        same = next((v for v in versions if v.client_token == r.client_token), None)
        if same is not None:
            return {"ImageVersionArn": same.arn}  # a retry of the same request
        taken = {a for v in versions for a in v.aliases} & set(r.aliases)
        if taken:
            raise Conflict(f"aliases {sorted(taken)} are already used by another version")
        number = (versions[-1].version if versions else 0) + 1
        now = _now()
        while True:
            record = VersionRecord(
                image_name=r.image_name,
                version=number,
                arn=f"{self._arn('image-version', r.image_name)}/{number}",
                image_arn=image.arn,
                base_image=r.base_image,
                aliases=r.aliases,
                vendor_guidance=r.vendor_guidance,
                job_type=r.job_type,
                ml_framework=r.ml_framework,
                programming_lang=r.programming_lang,
                processor=r.processor,
                horovod=r.horovod,
                release_notes=r.release_notes,
                client_token=r.client_token,
                created_at=now,
                modified_at=now,
            )
            try:
                await self.stores.versions.create(
                    version_key(r.image_name, number), record, client_token=r.client_token
                )
                break
            except Conflict:
                number += 1  # another version was created at the same moment
        await self.bus.emit(
            subjects.IMAGE_VERSION_SUBMITTED,
            VersionSubmitted(image_name=r.image_name, version=number),
            message_id=f"version-{image_key(r.image_name)}-{number}-{r.client_token}",
        )
        return {"ImageVersionArn": record.arn}

    async def describe_image_version(self, r: DescribeImageVersion) -> Output:
        version = await self._version(r.image_name, r.version, r.alias)
        out = self._version_output(version)
        # Trellis: what validation found in the image (boto3 drops it; REST shows it).
        if version.findings is not None:
            out["Findings"] = version.findings.model_dump(mode="json")
        if version.aliases:
            out["Aliases"] = version.aliases
        return out

    async def list_image_versions(self, r: ListImageVersions) -> Output:
        await self._image(r.image_name)
        versions = [
            v
            for v in await self._versions(r.image_name)
            if _in_window(v.created_at, r.creation_time_after, r.creation_time_before)
            and _in_window(v.modified_at, r.last_modified_time_after, r.last_modified_time_before)
        ]
        versions = _sorted(
            versions,
            r.sort_by or "CREATION_TIME",
            r.sort_order or "DESCENDING",
            {
                "CREATION_TIME": lambda v: f"{v.created_at.isoformat()}{v.version:012d}",
                "LAST_MODIFIED_TIME": lambda v: v.modified_at.isoformat(),
                "VERSION": lambda v: f"{v.version:012d}",
            },
        )
        chosen, token = _offset_page(versions, r.next_token, r.max_results)
        out: Output = {
            "ImageVersions": [
                {
                    k: v
                    for k, v in self._version_output(version).items()
                    if k
                    in {
                        "CreationTime",
                        "FailureReason",
                        "ImageArn",
                        "ImageVersionArn",
                        "ImageVersionStatus",
                        "LastModifiedTime",
                        "Version",
                    }
                }
                for version in chosen
            ]
        }
        if token:
            out["NextToken"] = token
        return out

    async def update_image_version(self, r: UpdateImageVersion) -> Output:
        target = await self._version(r.image_name, r.version, r.alias)
        _check_aliases(r.aliases_to_add)
        others = {
            a
            for v in await self._versions(r.image_name)
            if v.version != target.version
            for a in v.aliases
        }
        taken = others & set(r.aliases_to_add)
        if taken:
            raise Conflict(f"aliases {sorted(taken)} are already used by another version")

        def change(v: VersionRecord) -> VersionRecord:
            aliases = [a for a in v.aliases if a not in r.aliases_to_delete]
            aliases += [a for a in r.aliases_to_add if a not in aliases]
            update: dict[str, Any] = {"aliases": aliases, "modified_at": _now()}
            for field in (
                "vendor_guidance",
                "job_type",
                "ml_framework",
                "programming_lang",
                "processor",
                "horovod",
                "release_notes",
            ):
                if getattr(r, field) is not None:
                    update[field] = getattr(r, field)
            return v.model_copy(update=update)

        stored = await self.stores.versions.mutate(
            version_key(r.image_name, target.version), change
        )
        return {"ImageVersionArn": stored.value.arn}

    async def delete_image_version(self, r: DeleteImageVersion) -> Output:
        target = await self._version(r.image_name, r.version, r.alias)
        if r.version is None and r.alias is None:
            raise ValidationFailed("give the Version or an Alias of the version to delete")
        versions = await self._versions(r.image_name)
        users = [
            who
            for who, a in await self._attachments()
            if a.image_name == r.image_name
            and (resolved := resolve_version(a, versions)) is not None
            and resolved.version == target.version
        ]
        if users:
            raise Conflict(
                f"Image {r.image_name} version {target.version} is attached to "
                f"{', '.join(sorted(set(users)))}: detach it first"
            )
        await self.stores.versions.delete(version_key(r.image_name, target.version))
        return {}

    # -- app image configs -------------------------------------------------------------------

    def _config_output(self, c: AppImageConfigRecord) -> Output:
        out: Output = {
            "AppImageConfigArn": c.arn,
            "AppImageConfigName": c.name,
            "CreationTime": _ts(c.created_at),
            "LastModifiedTime": _ts(c.modified_at),
        }
        for key, value in (
            ("KernelGatewayImageConfig", c.kernel_gateway_image_config),
            ("JupyterLabAppImageConfig", c.jupyter_lab_app_image_config),
            ("CodeEditorAppImageConfig", c.code_editor_app_image_config),
        ):
            if value is not None:
                out[key] = value
        return out

    async def create_app_image_config(self, r: CreateAppImageConfig) -> Output:
        _check_app_image_config(r)
        now = _now()
        record = AppImageConfigRecord(
            name=r.app_image_config_name,
            arn=self._arn("app-image-config", r.app_image_config_name),
            kernel_gateway_image_config=r.kernel_gateway_image_config,
            jupyter_lab_app_image_config=r.jupyter_lab_app_image_config,
            code_editor_app_image_config=r.code_editor_app_image_config,
            tags=_tags(r.tags),
            created_at=now,
            modified_at=now,
        )
        try:
            await self.stores.configs.create(r.app_image_config_name, record)
        except Conflict:
            raise Conflict(f"App image config {r.app_image_config_name} already exists") from None
        return {"AppImageConfigArn": record.arn}

    async def describe_app_image_config(self, r: DescribeAppImageConfig) -> Output:
        return self._config_output(await self._config(r.app_image_config_name))

    async def list_app_image_configs(self, r: ListAppImageConfigs) -> Output:
        configs = [
            v.value
            for v in await self.stores.configs.list()
            if (not r.name_contains or r.name_contains.lower() in v.value.name.lower())
            and _in_window(v.value.created_at, r.creation_time_after, r.creation_time_before)
            and _in_window(v.value.modified_at, r.modified_time_after, r.modified_time_before)
        ]
        order = "ASCENDING" if r.sort_order == "Ascending" else "DESCENDING"
        configs = _sorted(
            configs,
            r.sort_by or "CreationTime",
            order,
            {
                "CreationTime": lambda c: c.created_at.isoformat(),
                "LastModifiedTime": lambda c: c.modified_at.isoformat(),
                "Name": lambda c: c.name,
            },
        )
        chosen, token = _offset_page(configs, r.next_token, r.max_results)
        out: Output = {"AppImageConfigs": [self._config_output(c) for c in chosen]}
        if token:
            out["NextToken"] = token
        return out

    async def update_app_image_config(self, r: UpdateAppImageConfig) -> Output:
        await self._config(r.app_image_config_name)
        _check_app_image_config(r)

        def change(c: AppImageConfigRecord) -> AppImageConfigRecord:
            return c.model_copy(
                update={
                    "kernel_gateway_image_config": r.kernel_gateway_image_config,
                    "jupyter_lab_app_image_config": r.jupyter_lab_app_image_config,
                    "code_editor_app_image_config": r.code_editor_app_image_config,
                    "modified_at": _now(),
                }
            )

        stored = await self.stores.configs.mutate(r.app_image_config_name, change)
        return {"AppImageConfigArn": stored.value.arn}

    async def delete_app_image_config(self, r: DeleteAppImageConfig) -> Output:
        await self._config(r.app_image_config_name)
        users = [
            who
            for who, a in await self._attachments()
            if a.app_image_config_name == r.app_image_config_name
        ]
        if users:
            raise Conflict(
                f"App image config {r.app_image_config_name} is used by "
                f"{', '.join(sorted(set(users)))}"
            )
        await self.stores.configs.delete(r.app_image_config_name)
        return {}

    # -- domains -----------------------------------------------------------------------------

    def _domain_output(self, d: DomainRecord) -> Output:
        out: Output = {
            "DomainArn": d.arn,
            "DomainId": d.id,
            "DomainName": d.name,
            "Status": d.status,
            "CreationTime": _ts(d.created_at),
            "LastModifiedTime": _ts(d.modified_at),
            "AuthMode": d.auth_mode,
            "DefaultUserSettings": d.default_user_settings,
            "Url": d.url,
            "HomeEfsFileSystemId": f"fs-{d.id[2:14]}",
            **d.settings,
        }
        if d.failure_reason:
            out["FailureReason"] = d.failure_reason
        return out

    async def create_domain(self, r: CreateDomain) -> Output:
        attachments = custom_images(r.default_user_settings, "DefaultUserSettings")
        await self._check_attachments(attachments)
        if any(d.value.name == r.domain_name for d in await self.stores.domains.list()):
            raise Conflict(f"Domain {r.domain_name} already exists")
        domain_id = (
            "d-" + hashlib.sha256(f"{r.domain_name}/{uuid.uuid4()}".encode()).hexdigest()[:12]
        )
        now = _now()
        settings = r.model_dump(
            by_alias=True,
            exclude_none=True,
            exclude={"domain_name", "auth_mode", "default_user_settings", "tags"},
        )
        settings = {k: v for k, v in settings.items() if v not in ([], {})}
        record = DomainRecord(
            id=domain_id,
            name=r.domain_name,
            arn=self._arn("domain", domain_id),
            auth_mode=r.auth_mode,
            # Nothing to provision beyond the record: its attachments were checked above.
            status="InService",
            default_user_settings=r.default_user_settings,
            settings=settings,
            url=f"/console/domains/{domain_id}",
            created_at=now,
            modified_at=now,
        )
        await self.stores.domains.create(domain_id, record)
        return {"DomainArn": record.arn, "DomainId": domain_id, "Url": record.url}

    async def describe_domain(self, r: DescribeDomain) -> Output:
        return self._domain_output(await self._domain(r.domain_id))

    async def list_domains(self, r: ListDomains) -> Output:
        domains = [v.value for v in await self.stores.domains.list()]
        chosen, token = page(domains, lambda d: d.id, r.next_token, r.max_results)
        out: Output = {
            "Domains": [
                {
                    "DomainArn": d.arn,
                    "DomainId": d.id,
                    "DomainName": d.name,
                    "Status": d.status,
                    "CreationTime": _ts(d.created_at),
                    "LastModifiedTime": _ts(d.modified_at),
                    "Url": d.url,
                }
                for d in chosen
            ]
        }
        if token:
            out["NextToken"] = token
        return out

    async def update_domain(self, r: UpdateDomain) -> Output:
        domain = await self._domain(r.domain_id)
        if domain.status not in ("InService", "Update_Failed"):
            raise Conflict(f"Domain {r.domain_id} is {domain.status}; wait until it is InService")
        settings = dict(domain.default_user_settings)
        if r.default_user_settings is not None:
            # SageMaker merges at the top level: a member given replaces that member.
            settings.update(r.default_user_settings)
        attachments = custom_images(settings, "DefaultUserSettings")
        before = set(custom_images(domain.default_user_settings, "DefaultUserSettings"))
        # Only what is newly attached is checked: detaching never fails on a broken image.
        await self._check_attachments([a for a in attachments if a not in before])
        extra = r.model_dump(
            by_alias=True,
            exclude_none=True,
            exclude={"domain_id", "default_user_settings", "domain_settings_for_update"},
        )

        def change(d: DomainRecord) -> DomainRecord:
            merged = {**d.settings, **extra}
            if r.domain_settings_for_update:
                merged["DomainSettings"] = {
                    **d.settings.get("DomainSettings", {}),
                    **r.domain_settings_for_update,
                }
            return d.model_copy(
                update={
                    "default_user_settings": settings,
                    "settings": merged,
                    "status": "InService",
                    "failure_reason": None,
                    "modified_at": _now(),
                }
            )

        stored = await self.stores.domains.mutate(r.domain_id, change)
        return {"DomainArn": stored.value.arn}

    async def delete_domain(self, r: DeleteDomain) -> Output:
        await self._domain(r.domain_id)
        profiles = [
            p.value.name
            for p in await self.stores.profiles.list()
            if p.value.domain_id == r.domain_id
        ]
        if profiles:
            raise Conflict(
                f"Domain {r.domain_id} still has user profiles {sorted(profiles)}: delete them first"
            )
        await self.stores.domains.delete(r.domain_id)
        return {}

    # -- user profiles -----------------------------------------------------------------------

    def _profile_output(self, p: UserProfileRecord) -> Output:
        out: Output = {
            "DomainId": p.domain_id,
            "UserProfileArn": p.arn,
            "UserProfileName": p.name,
            "Status": p.status,
            "CreationTime": _ts(p.created_at),
            "LastModifiedTime": _ts(p.modified_at),
        }
        for key, value in (
            ("UserSettings", p.user_settings),
            ("FailureReason", p.failure_reason),
            ("SingleSignOnUserIdentifier", p.single_sign_on_user_identifier),
            ("SingleSignOnUserValue", p.single_sign_on_user_value),
        ):
            if value is not None:
                out[key] = value
        return out

    async def _profile(self, domain_id: str, name: str) -> UserProfileRecord:
        await self._domain(domain_id)
        try:
            return (await self.stores.profiles.get(f"{domain_id}.{name}")).value
        except NotFound:
            raise NotFound(f"User profile {name} does not exist in domain {domain_id}") from None

    async def create_user_profile(self, r: CreateUserProfile) -> Output:
        domain = await self._domain(r.domain_id)
        await self._check_attachments(custom_images(r.user_settings, "UserSettings"))
        now = _now()
        record = UserProfileRecord(
            domain_id=r.domain_id,
            name=r.user_profile_name,
            arn=self._arn("user-profile", f"{r.domain_id}/{r.user_profile_name}"),
            status="InService",
            user_settings=r.user_settings,
            single_sign_on_user_identifier=r.single_sign_on_user_identifier,
            single_sign_on_user_value=r.single_sign_on_user_value,
            tags=_tags(r.tags),
            created_at=now,
            modified_at=now,
        )
        if domain.auth_mode == "SSO" and not r.single_sign_on_user_value:
            raise ValidationFailed("an SSO domain needs SingleSignOnUserValue for each profile")
        try:
            await self.stores.profiles.create(f"{r.domain_id}.{r.user_profile_name}", record)
        except Conflict:
            raise Conflict(
                f"User profile {r.user_profile_name} already exists in {r.domain_id}"
            ) from None
        return {"UserProfileArn": record.arn}

    async def describe_user_profile(self, r: DescribeUserProfile) -> Output:
        return self._profile_output(await self._profile(r.domain_id, r.user_profile_name))

    async def list_user_profiles(self, r: ListUserProfiles) -> Output:
        profiles = [
            p.value
            for p in await self.stores.profiles.list()
            if (r.domain_id_equals is None or p.value.domain_id == r.domain_id_equals)
            and (
                not r.user_profile_name_contains
                or r.user_profile_name_contains.lower() in p.value.name.lower()
            )
        ]
        order = "ASCENDING" if r.sort_order == "Ascending" else "DESCENDING"
        profiles = _sorted(
            profiles,
            r.sort_by or "CreationTime",
            order,
            {
                "CreationTime": lambda p: p.created_at.isoformat(),
                "LastModifiedTime": lambda p: p.modified_at.isoformat(),
            },
        )
        chosen, token = _offset_page(profiles, r.next_token, r.max_results)
        out: Output = {
            "UserProfiles": [
                {
                    "DomainId": p.domain_id,
                    "UserProfileName": p.name,
                    "Status": p.status,
                    "CreationTime": _ts(p.created_at),
                    "LastModifiedTime": _ts(p.modified_at),
                }
                for p in chosen
            ]
        }
        if token:
            out["NextToken"] = token
        return out

    async def delete_user_profile(self, r: DeleteUserProfile) -> Output:
        await self._profile(r.domain_id, r.user_profile_name)
        await self.stores.profiles.delete(f"{r.domain_id}.{r.user_profile_name}")
        return {}

    # -- launcher ----------------------------------------------------------------------------

    async def list_launchable_images(self, r: ListLaunchableImages) -> Output:
        domain = await self._domain(r.domain_id)
        profile_settings = None
        if r.user_profile_name:
            profile_settings = (await self._profile(r.domain_id, r.user_profile_name)).user_settings
        entries = []
        for attachment in effective(domain.default_user_settings, profile_settings):
            try:
                image = await self._image(attachment.image_name)
            except NotFound:
                continue
            version = resolve_version(attachment, await self._versions(attachment.image_name))
            entries.append(launcher_entry(attachment, image, version))
        return {"DomainId": r.domain_id, "UserProfileName": r.user_profile_name, "Images": entries}


def _sorted(
    items: list[R], sort_by: str, order: str, keys: dict[str, Callable[[R], str]]
) -> list[R]:
    key = keys.get(sort_by)
    if key is None:
        raise ValidationFailed(f"cannot sort by {sort_by}")
    return sorted(items, key=key, reverse=order.upper() == "DESCENDING")


def _offset_page(
    items: list[R], next_token: str | None, max_results: int
) -> tuple[list[R], str | None]:
    """Paging for lists sorted by time: the token is an offset (stable enough for a listing)."""
    start = 0
    if next_token:
        if not next_token.isdigit():
            raise ValidationFailed("NextToken is not one this service gave")
        start = int(next_token)
    chosen = items[start : start + max_results]
    return chosen, (str(start + max_results) if start + max_results < len(items) else None)


def _check_aliases(aliases: list[str]) -> None:
    for alias in aliases:
        if not _ALIAS.match(alias) or len(alias) > 128:
            raise ValidationFailed(f"alias {alias!r} is not valid: letters, digits, '-', '_', '.'")


def _check_app_image_config(r: CreateAppImageConfig | UpdateAppImageConfig) -> None:
    for key, body in (
        ("KernelGatewayImageConfig", r.kernel_gateway_image_config),
        ("JupyterLabAppImageConfig", r.jupyter_lab_app_image_config),
        ("CodeEditorAppImageConfig", r.code_editor_app_image_config),
    ):
        if body is None:
            continue
        specs = body.get("KernelSpecs", [])
        if key == "KernelGatewayImageConfig" and not (
            isinstance(specs, list) and 1 <= len(specs) <= 5
        ):
            raise ValidationFailed(f"{key}.KernelSpecs needs 1 to 5 kernel specs")
        for i, spec in enumerate(specs if isinstance(specs, list) else []):
            if not isinstance(spec, dict) or not _KERNEL_NAME.match(str(spec.get("Name", ""))):
                raise ValidationFailed(f"{key}.KernelSpecs[{i}].Name is missing or not valid")
        fs = body.get("FileSystemConfig")
        if fs is not None:
            if not isinstance(fs, dict):
                raise ValidationFailed(f"{key}.FileSystemConfig must be an object")
            for field, limit in (("DefaultUid", 65535), ("DefaultGid", 65535)):
                value = fs.get(field)
                if value is not None and (
                    not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit
                ):
                    raise ValidationFailed(f"{key}.FileSystemConfig.{field} must be 0-{limit}")
            mount = fs.get("MountPath")
            if mount is not None and (
                not isinstance(mount, str) or not mount.startswith("/") or len(mount) > 1024
            ):
                raise ValidationFailed(f"{key}.FileSystemConfig.MountPath must be an absolute path")
        container = body.get("ContainerConfig")
        if container is not None:
            if not isinstance(container, dict):
                raise ValidationFailed(f"{key}.ContainerConfig must be an object")
            env = container.get("ContainerEnvironmentVariables", {})
            if not isinstance(env, dict) or len(env) > 25:
                raise ValidationFailed(
                    f"{key}.ContainerConfig.ContainerEnvironmentVariables: at most 25"
                )
            for field in ("ContainerArguments", "ContainerEntrypoint"):
                values = container.get(field, [])
                if (
                    not isinstance(values, list)
                    or len(values) > 50
                    or not all(isinstance(v, str) for v in values)
                ):
                    raise ValidationFailed(f"{key}.ContainerConfig.{field}: at most 50 strings")


async def _delete_quietly(store: ResourceStore[Any], key: str) -> None:
    try:
        await store.delete(key)
    except NotFound:
        pass
