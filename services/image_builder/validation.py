"""Image versions from CREATING to CREATED or CREATE_FAILED: read the pushed image, check what launch needs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from contracts.envelope import EnvelopeMeta
from contracts.images import VersionSubmitted
from runtime.errors import NotFound
from runtime.kv import ResourceStore
from services.image_builder.adapters.registry import ImageReader, ImageUnreadable
from services.image_builder.adapters.tools import ProcessTimedOut, check_tools
from services.image_builder.domain import inspection
from services.image_builder.domain.inspection import ImageFindings, InspectionError
from services.image_builder.domain.records import VersionRecord
from services.image_builder.operations import version_key

log = logging.getLogger("trellis.image_builder")


def version_problems(
    version: VersionRecord, findings: ImageFindings, architecture: str, rstudio_version: str
) -> list[str]:
    """What makes a version unusable whatever it is attached to."""
    problems = inspection.check_architecture(findings, architecture)
    if (version.programming_lang or "").strip().lower() == "r":
        problems += inspection.check_r(findings)
        problems += inspection.check_rstudio(findings, rstudio_version)
    return problems


class VersionValidator:
    def __init__(
        self,
        versions: ResourceStore[VersionRecord],
        reader: ImageReader,
        *,
        architecture: str,
        rstudio_version: str,
    ) -> None:
        self.versions = versions
        self.reader = reader
        self.architecture = architecture
        self.rstudio_version = rstudio_version

    async def handle(self, event: VersionSubmitted, _: EnvelopeMeta) -> None:
        key = version_key(event.image_name, event.version)
        try:
            version = (await self.versions.get(key)).value
        except NotFound:
            return  # deleted while it waited
        if version.status != "CREATING":
            return
        pinned: str | None = None
        findings: ImageFindings | None = None
        try:
            check_tools()
            pinned = await self.reader.pin(version.base_image, self.architecture)
            findings = await self.reader.inspect(pinned)
            problems = version_problems(version, findings, self.architecture, self.rstudio_version)
        except ImageUnreadable as exc:
            problems = [f"cannot read {version.base_image}: {exc}"]
        except InspectionError as exc:
            problems = [f"cannot inspect {version.base_image}: {exc}"]
        except ProcessTimedOut:
            problems = [f"reading {version.base_image} from the registry took too long"]
        except RuntimeError as exc:  # a missing tool
            problems = [str(exc)]
        status = "CREATE_FAILED" if problems else "CREATED"
        reason = "; ".join(problems) if problems else None
        log.info(
            "image %s version %s: %s %s", event.image_name, event.version, status, reason or ""
        )

        def settle(v: VersionRecord) -> VersionRecord:
            return v.model_copy(
                update={
                    "status": status,
                    "failure_reason": reason,
                    "container_image": pinned,
                    "findings": findings,
                    "modified_at": datetime.now(UTC),
                }
            )

        try:
            await self.versions.mutate(key, settle)
        except NotFound:
            pass
