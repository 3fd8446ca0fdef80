"""Custom images attached to domains: parsing, overrides, version resolution and launch checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from runtime.errors import ValidationFailed
from services.image_builder.domain.attachments import (
    Attachment,
    custom_images,
    effective,
    launch_problems,
    launcher_entry,
    resolve_version,
)
from services.image_builder.domain.inspection import ImageFindings, RInstallation, RStudioSession
from services.image_builder.domain.records import AppImageConfigRecord, ImageRecord, VersionRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _image(name: str = "rstudio", display: str | None = "RStudio 4") -> ImageRecord:
    return ImageRecord(
        name=name,
        arn=f"arn:{name}",
        role_arn="r",
        display_name=display,
        created_at=NOW,
        modified_at=NOW,
    )


def _findings(**changes: Any) -> ImageFindings:
    base: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "users": {0: "root", 1000: "sagemaker-user"},
        "groups": {0: "root", 100: "users"},
        "r_installations": [
            RInstallation(home="/opt/R/4.1.3", version="4.1.3", executable="/opt/R/4.1.3/bin/R")
        ],
        "rstudio": RStudioSession(
            version="2022.02.2-485.pro2", rsession="/usr/lib/rstudio-server/bin/rsession"
        ),
        "kernels": [],
        "pythons": [],
        "problems": [],
    }
    return ImageFindings(**{**base, **changes})


def _version(
    number: int, status: str = "CREATED", findings: ImageFindings | None = None
) -> VersionRecord:
    return VersionRecord(
        image_name="rstudio",
        version=number,
        arn=f"arn:v{number}",
        image_arn="arn:rstudio",
        base_image="reg/rstudio:1",
        status=status,
        failure_reason="UID 1000 not in /etc/passwd" if status == "CREATE_FAILED" else None,
        client_token=str(number),
        findings=findings if findings is not None else _findings(),
        created_at=NOW,
        modified_at=NOW,
    )


def _config(**body: Any) -> AppImageConfigRecord:
    return AppImageConfigRecord(name="cfg", arn="arn:cfg", created_at=NOW, modified_at=NOW, **body)


def test_the_seed_settings_parse_and_bad_entries_name_their_place() -> None:
    seed = {
        "RSessionAppSettings": {
            "CustomImages": [{"ImageName": "rstudio-custom", "AppImageConfigName": "cfg"}]
        }
    }
    assert custom_images(seed, "DefaultUserSettings") == [
        Attachment("RSession", "rstudio-custom", "cfg")
    ]
    for settings, message in (
        (
            {
                "RSessionAppSettings": {
                    "CustomImages": [{"ImageName": "bad_name", "AppImageConfigName": "c"}]
                }
            },
            r"CustomImages\[0\].ImageName",
        ),
        (
            {
                "RSessionAppSettings": {
                    "CustomImages": [{"ImageName": "a", "AppImageConfigName": "c", "Extra": 1}]
                }
            },
            "unknown fields",
        ),
        (
            {
                "KernelGatewayAppSettings": {
                    "CustomImages": [
                        {"ImageName": "a", "AppImageConfigName": "c", "ImageVersionNumber": -1}
                    ]
                }
            },
            "non-negative",
        ),
        (
            {
                "RSessionAppSettings": {
                    "CustomImages": [{"ImageName": "a", "AppImageConfigName": "c"}] * 2
                }
            },
            "attached twice",
        ),
        (
            {
                "RSessionAppSettings": {
                    "CustomImages": [
                        {"ImageName": f"i{i}", "AppImageConfigName": "c"} for i in range(201)
                    ]
                }
            },
            "at most 200",
        ),
    ):
        with pytest.raises(ValidationFailed, match=message):
            custom_images(settings, "DefaultUserSettings")


def test_a_profile_replaces_the_domain_images_of_the_apps_it_sets() -> None:
    domain = {
        "RSessionAppSettings": {
            "CustomImages": [{"ImageName": "r-domain", "AppImageConfigName": "c"}]
        },
        "KernelGatewayAppSettings": {
            "CustomImages": [{"ImageName": "py-domain", "AppImageConfigName": "c"}]
        },
    }
    profile = {
        "RSessionAppSettings": {
            "CustomImages": [{"ImageName": "r-mine", "AppImageConfigName": "c"}]
        }
    }
    names = {a.image_name for a in effective(domain, profile)}
    assert names == {"r-mine", "py-domain"}
    assert {a.image_name for a in effective(domain, None)} == {"r-domain", "py-domain"}


def test_versions_resolve_by_number_or_to_the_latest() -> None:
    versions = [_version(1), _version(3), _version(2)]
    assert resolve_version(Attachment("RSession", "rstudio", "c"), versions).version == 3  # type: ignore[union-attr]
    assert resolve_version(Attachment("RSession", "rstudio", "c", 2), versions).version == 2  # type: ignore[union-attr]
    assert resolve_version(Attachment("RSession", "rstudio", "c", 9), versions) is None


def test_launch_problems_are_actionable() -> None:
    rsession = Attachment("RSession", "rstudio", "cfg", 1)
    ok = launch_problems(rsession, _image(), _version(1), _config(), "2022.02.2-485.pro2")
    assert ok == []
    other_rstudio = launch_problems(
        rsession, _image(), _version(1), _config(), "2023.03.0-386.pro1"
    )
    assert "the domain runs 2023.03.0-386.pro1" in other_rstudio[0]
    no_r = launch_problems(
        rsession, _image(), _version(1, findings=_findings(r_installations=[])), _config(), None
    )
    assert "no R installation" in no_r[0]
    failed = launch_problems(rsession, _image(), _version(1, "CREATE_FAILED"), _config(), None)
    assert failed == ["image 'rstudio' version 1 is CREATE_FAILED: UID 1000 not in /etc/passwd"]
    assert launch_problems(rsession, None, None, None, None) == ["image 'rstudio' does not exist"]
    assert "has no version 1" in launch_problems(rsession, _image(), None, _config(), None)[0]

    studio = Attachment("KernelGateway", "rstudio", "cfg", 1)
    config = _config(
        kernel_gateway_image_config={
            "KernelSpecs": [{"Name": "python3"}],
            "FileSystemConfig": {"DefaultUid": 1001, "DefaultGid": 100},
        }
    )
    problems = launch_problems(studio, _image(), _version(1), config, None)
    assert any("UID 1001 not in /etc/passwd" in p for p in problems)
    assert any("kernel 'python3' not found" in p for p in problems)
    # SageMaker's defaults (1000/100) apply when the config names no file system config.
    defaults = _config(kernel_gateway_image_config={"KernelSpecs": [{"Name": "ir"}]})
    assert not any(
        "UID" in p for p in launch_problems(studio, _image(), _version(1), defaults, None)
    )


def test_the_launcher_shows_display_names_and_r_versions() -> None:
    entry = launcher_entry(Attachment("RSession", "rstudio", "cfg"), _image(), _version(2))
    assert entry["DisplayName"] == "RStudio 4" and entry["RVersions"] == ["4.1.3"]
    assert entry["ImageVersionNumber"] == 2 and entry["Status"] == "CREATED"
    fallback = launcher_entry(Attachment("RSession", "plain", "cfg"), _image("plain", None), None)
    assert fallback["DisplayName"] == "plain" and fallback["Status"] == "MISSING"
