"""Image builder end to end: buildah builds pushed to a real registry, validation, the SageMaker flow."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.image_builder.adapters.contexts import pack_context
from services.image_builder.adapters.registry_server import registry_argv
from services.image_builder.app import build as build_image_builder
from services.image_builder.config import Settings as ImageBuilderSettings
from tests.conftest import free_port, gateway_client, serving_gateway

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("buildah", "skopeo", "docker-registry", "busybox")),
    reason="the image builder needs buildah, skopeo, docker-registry and busybox (make installs them)",
)

# What the seed's `aws sagemaker update-domain --default-user-settings file://...` reads.
SEED_DEFAULT_USER_SETTINGS = """{
    "RSessionAppSettings": {
      "CustomImages": [
        {
          "ImageName": "IMAGE",
          "AppImageConfigName": "CONFIG"
        }
      ]
    }
}"""

ROLE = "arn:aws:iam::000000000000:role/sagemaker"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Distribution registry on a free loopback port."""
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        registry_argv(tmp_path_factory.mktemp("registry"), address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the registry did not start")
        time.sleep(0.1)
    yield address
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One buildah storage for the module: cached layers carry from build to build, as in a service.
    return tmp_path_factory.mktemp("image-builder")


@dataclass
class Stack:
    http: httpx.AsyncClient
    url: str
    api_key: str
    access_key_id: str
    secret_access_key: str
    registry: str

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def sagemaker(self) -> Any:
        return gateway_client("sagemaker", self.url, self.access_key_id, self.secret_access_key)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        client = self.sagemaker()
        result: dict[str, Any] = await asyncio.to_thread(getattr(client, method), **params)
        return result

    async def build(self, context: Path, repository: str, **options: Any) -> dict[str, Any]:
        """Upload the context, start a build, follow its log to the end; the build and its log."""
        name = f"ctx-{repository.replace('/', '-').replace(':', '-')}-{time.monotonic_ns()}"
        uploaded = await self.http.put(
            f"/v1/build-contexts/{name}",
            content=pack_context(context, 2**30),
            headers=self.auth(),
        )
        assert uploaded.status_code == 200, uploaded.text
        started = await self.http.post(
            "/v1/builds",
            json={"context": name, "repository": repository, **options},
            headers=self.auth(),
        )
        assert started.status_code == 201, started.text
        build_id = started.json()["id"]
        async with self.http.stream(
            "GET", f"/v1/builds/{build_id}/logs?follow=true", headers=self.auth(), timeout=180
        ) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines()]
        described = await self.http.get(f"/v1/builds/{build_id}", headers=self.auth())
        return {**described.json(), "log": lines}

    async def version_settled(self, image: str, version: int) -> dict[str, Any]:
        for _ in range(300):
            response = await self.http.get(
                f"/v1/images/{image}/versions/{version}", headers=self.auth()
            )
            assert response.status_code == 200, response.text
            described: dict[str, Any] = response.json()
            if described["ImageVersionStatus"] != "CREATING":
                return described
            await asyncio.sleep(0.1)
        raise AssertionError(f"version {version} of {image} never left CREATING")


@pytest.fixture
async def stack(
    nats_url: str, registry: str, work_dir: Path, tmp_path: Path
) -> AsyncIterator[Stack]:
    shared = SharedSettings(data_dir=tmp_path)
    buses = [await Bus.connect(nats_url, source=n) for n in ("image_builder", "gateway")]
    settings = ImageBuilderSettings(
        registry=registry, work_dir=work_dir, max_concurrent_builds=2, platform_architecture="amd64"
    )
    service: Service = await build_image_builder(buses[0], settings, shared)
    await service.start()
    credentials = load_or_create_credentials(tmp_path, BootstrapSettings())
    try:
        async with serving_gateway(buses[1], shared, request_timeout_s=20) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                yield Stack(
                    http,
                    url,
                    credentials.api_key,
                    credentials.access_key_id,
                    credentials.secret_access_key,
                    registry,
                )
    finally:
        await service.stop()
        for bus in buses:
            await bus.close()


def rootfs_context(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    """A build context whose rootfs/ holds a static busybox and `files`; no base image needed."""
    busybox = shutil.which("busybox")
    assert busybox is not None
    (root / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "rootfs" / "bin" / "busybox")
    for path, text in (files or {}).items():
        target = root / "rootfs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "Dockerfile").write_text(dockerfile)
    return root


RSTUDIO_DOCKERFILE = """\
FROM scratch AS base
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG RSTUDIO=unknown
RUN mkdir -p /opt/R/4.1.3/bin /usr/lib/rstudio-server/bin \\
 && printf '#!/bin/sh\\necho R\\n' > /opt/R/4.1.3/bin/R && chmod +x /opt/R/4.1.3/bin/R \\
 && touch /usr/lib/rstudio-server/bin/rsession \\
 && echo "$RSTUDIO" > /usr/lib/rstudio-server/VERSION

FROM base AS final
ARG GREETING=unset
RUN echo "greeting is $GREETING"
LABEL org.trellis.test=rstudio
"""
FILES = {
    "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nrstudio-user:x:1000:100::/home/rstudio-user:/bin/sh\n",
    "/etc/group": "root:x:0:\nusers:x:100:\n",
}


async def test_seed_flow_build_push_version_attach_launch_detach(
    stack: Stack, tmp_path: Path
) -> None:
    context = rootfs_context(tmp_path / "ctx", RSTUDIO_DOCKERFILE, FILES)
    suffix = str(time.monotonic_ns())[-8:]
    repository = f"rstudio-custom-{suffix}:1"
    built = await stack.build(
        context,
        repository,
        build_args={"GREETING": "hello-trellis", "RSTUDIO": "2022.02.2-485.pro2"},
        labels={"team": "analytics"},
    )
    assert built["status"] == "SUCCEEDED", built
    log = "\n".join(built["log"])
    assert "greeting is hello-trellis" in log  # build args reach RUN steps
    assert built["log"][-1].startswith("pushed ")
    # The digest recorded is the one the registry serves for the tag.
    name, tag = repository.split(":")
    async with httpx.AsyncClient(base_url=f"http://{stack.registry}") as registry:
        manifest = await registry.get(
            f"/v2/{name}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert manifest.headers["Docker-Content-Digest"] == built["digest"]
        blob = await registry.get(f"/v2/{name}/blobs/{manifest.json()['config']['digest']}")
    config = blob.json()
    assert config["config"]["Labels"]["team"] == "analytics"
    assert config["config"]["Labels"]["org.trellis.test"] == "rstudio"
    # The stored log is the same one the follower saw.
    stored = await stack.http.get(f"/v1/builds/{built['id']}/logs", headers=stack.auth())
    assert stored.text.splitlines() == built["log"]

    image = f"rstudio-custom-{suffix}"
    config_name = f"rstudio-custom-config-{suffix}"
    image_arn = (
        await stack.call(
            "create_image", ImageName=image, RoleArn=ROLE, DisplayName="RStudio custom"
        )
    )["ImageArn"]
    assert image_arn.endswith(f":image/{image}")
    described = await stack.call("describe_image", ImageName=image)
    assert described["ImageStatus"] == "CREATED" and described["DisplayName"] == "RStudio custom"
    version_arn = (
        await stack.call(
            "create_image_version",
            ImageName=image,
            BaseImage=built["image_uri"],
            ClientToken=f"token-{suffix}",
            ProgrammingLang="R",
        )
    )["ImageVersionArn"]
    assert version_arn.endswith(f"/{image}/1")
    again = await stack.call(
        "create_image_version",
        ImageName=image,
        BaseImage=built["image_uri"],
        ClientToken=f"token-{suffix}",
    )
    assert again["ImageVersionArn"] == version_arn  # same client token: same version
    version = await stack.version_settled(image, 1)
    assert version["ImageVersionStatus"] == "CREATED", version
    assert version["ContainerImage"].endswith(f"@{built['digest']}")
    findings = version["Findings"]
    assert findings["architecture"] == "amd64"
    assert [r["version"] for r in findings["r_installations"]] == ["4.1.3"]
    assert findings["rstudio"]["version"] == "2022.02.2-485.pro2"
    assert findings["users"]["1000"] == "rstudio-user"
    boto_version = await stack.call("describe_image_version", ImageName=image, Version=1)
    assert boto_version["ImageVersionStatus"] == "CREATED"

    await stack.call("create_app_image_config", AppImageConfigName=config_name)
    domain = await stack.call(
        "create_domain",
        DomainName=f"analytics-{suffix}",
        AuthMode="IAM",
        DefaultUserSettings={"ExecutionRole": ROLE},
        SubnetIds=["subnet-1"],
        VpcId="vpc-1",
    )
    domain_id = domain["DomainId"]
    assert (await stack.call("describe_domain", DomainId=domain_id))["Status"] == "InService"

    # Attach with the seed's default-user-settings.json, verbatim.
    seed = json.loads(
        SEED_DEFAULT_USER_SETTINGS.replace("IMAGE", image).replace("CONFIG", config_name)
    )
    await stack.call("update_domain", DomainId=domain_id, DefaultUserSettings=seed)
    settings = (await stack.call("describe_domain", DomainId=domain_id))["DefaultUserSettings"]
    assert settings["RSessionAppSettings"]["CustomImages"][0]["ImageName"] == image
    assert settings["ExecutionRole"] == ROLE  # members not given are kept

    await stack.call("create_user_profile", DomainId=domain_id, UserProfileName="ana")
    launcher = await stack.http.get(
        f"/v1/domains/{domain_id}/launcher", params={"user": "ana"}, headers=stack.auth()
    )
    assert launcher.status_code == 200, launcher.text
    [entry] = launcher.json()["Images"]
    assert entry["DisplayName"] == "RStudio custom"
    assert entry["RVersions"] == ["4.1.3"] and entry["App"] == "RSession"

    sagemaker = stack.sagemaker()
    with pytest.raises(sagemaker.exceptions.ResourceInUse, match="attached"):
        await asyncio.to_thread(sagemaker.delete_image_version, ImageName=image, Version=1)
    with pytest.raises(sagemaker.exceptions.ResourceInUse):
        await asyncio.to_thread(sagemaker.delete_image, ImageName=image)

    # Detach, then everything can go.
    await stack.call(
        "update_domain",
        DomainId=domain_id,
        DefaultUserSettings={"RSessionAppSettings": {"CustomImages": []}},
    )
    launcher = await stack.http.get(f"/v1/domains/{domain_id}/launcher", headers=stack.auth())
    assert launcher.json()["Images"] == []
    await stack.call("delete_image_version", ImageName=image, Version=1)
    await stack.call("delete_image", ImageName=image)
    with pytest.raises(sagemaker.exceptions.ResourceNotFound):
        await asyncio.to_thread(sagemaker.describe_image, ImageName=image)
    await stack.call("delete_app_image_config", AppImageConfigName=config_name)
    with pytest.raises(sagemaker.exceptions.ResourceInUse, match="user profiles"):
        await asyncio.to_thread(sagemaker.delete_domain, DomainId=domain_id)
    await stack.call("delete_user_profile", DomainId=domain_id, UserProfileName="ana")
    await stack.call("delete_domain", DomainId=domain_id)


async def test_validation_gives_actionable_reasons(stack: Stack, tmp_path: Path) -> None:
    suffix = str(time.monotonic_ns())[-8:]
    plain = rootfs_context(
        tmp_path / "plain",
        "FROM scratch\nCOPY rootfs/ /\n",
        {"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "/etc/group": "root:x:0:\n"},
    )
    built = await stack.build(plain, f"plain-{suffix}:1")
    assert built["status"] == "SUCCEEDED", built
    arm = await stack.build(plain, f"plain-arm-{suffix}:1", platform="linux/arm64")
    assert arm["status"] == "SUCCEEDED", arm

    image = f"checks-{suffix}"
    await stack.call("create_image", ImageName=image, RoleArn=ROLE)
    # 1: an R image with no R; 2: an image built for arm64; 3: fine (no language claimed).
    for token, uri, lang in (
        ("r", built["image_uri"], "R"),
        ("arm", arm["image_uri"], None),
        ("ok", built["image_uri"], None),
    ):
        params: dict[str, Any] = {"ImageName": image, "BaseImage": uri, "ClientToken": token}
        if lang:
            params["ProgrammingLang"] = lang
        await stack.call("create_image_version", **params)
    no_r = await stack.version_settled(image, 1)
    assert no_r["ImageVersionStatus"] == "CREATE_FAILED"
    assert "no R installation" in no_r["FailureReason"]
    assert "RStudio Workbench session components not found" in no_r["FailureReason"]
    wrong_arch = await stack.version_settled(image, 2)
    assert wrong_arch["ImageVersionStatus"] == "CREATE_FAILED"
    assert "image is arm64, domain runs amd64" in wrong_arch["FailureReason"]
    fine = await stack.version_settled(image, 3)
    assert fine["ImageVersionStatus"] == "CREATED", fine

    missing = await stack.http.post(
        f"/v1/images/{image}/versions",
        json={"BaseImage": f"{stack.registry}/does-not-exist-{suffix}:1"},
        headers=stack.auth(),
    )
    assert missing.status_code == 201, missing.text
    gone = await stack.version_settled(image, 4)
    assert gone["ImageVersionStatus"] == "CREATE_FAILED"
    assert "cannot read" in gone["FailureReason"]

    # Attaching for Studio with a UID the image lacks fails now, not at launch.
    config_name = f"studio-{suffix}"
    await stack.call(
        "create_app_image_config",
        AppImageConfigName=config_name,
        KernelGatewayImageConfig={
            "KernelSpecs": [{"Name": "python3"}],
            "FileSystemConfig": {"DefaultUid": 1000, "DefaultGid": 100},
        },
    )
    domain_id = (
        await stack.call(
            "create_domain",
            DomainName=f"studio-{suffix}",
            AuthMode="IAM",
            DefaultUserSettings={},
            SubnetIds=["subnet-1"],
            VpcId="vpc-1",
        )
    )["DomainId"]
    sagemaker = stack.sagemaker()
    attach = {
        "KernelGatewayAppSettings": {
            "CustomImages": [
                {"ImageName": image, "AppImageConfigName": config_name, "ImageVersionNumber": 3}
            ]
        }
    }
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await asyncio.to_thread(
            sagemaker.update_domain, DomainId=domain_id, DefaultUserSettings=attach
        )
    message = refused.value.response["Error"]["Message"]
    assert "UID 1000 not in /etc/passwd" in message
    assert "GID 100 not in /etc/group" in message
    assert "kernel 'python3' not found" in message
    attach["KernelGatewayAppSettings"]["CustomImages"][0]["ImageVersionNumber"] = 1
    with pytest.raises(botocore.exceptions.ClientError, match="CREATE_FAILED"):
        await asyncio.to_thread(
            sagemaker.update_domain, DomainId=domain_id, DefaultUserSettings=attach
        )
    await stack.call("delete_domain", DomainId=domain_id)
    await stack.call("delete_app_image_config", AppImageConfigName=config_name)
    await stack.call("delete_image", ImageName=image)


async def test_cached_rebuild_multi_stage_target_and_failures(stack: Stack, tmp_path: Path) -> None:
    suffix = str(time.monotonic_ns())[-8:]
    context = rootfs_context(tmp_path / "ctx", RSTUDIO_DOCKERFILE, FILES)
    first = await stack.build(context, f"cache-{suffix}:1", build_args={"RSTUDIO": "x"})
    assert first["status"] == "SUCCEEDED", first
    assert "greeting is unset" in first["log"]  # the RUN step's output (not its STEP line)
    second = await stack.build(context, f"cache-{suffix}:2", build_args={"RSTUDIO": "x"})
    assert second["status"] == "SUCCEEDED", second
    assert any("Using cache" in line for line in second["log"]), second["log"]
    assert "greeting is unset" not in second["log"]  # no RUN step ran again
    # --target stops at the named stage: the final stage's RUN never runs.
    target = await stack.build(context, f"cache-{suffix}:base", target="base", layers=False)
    assert target["status"] == "SUCCEEDED", target
    assert "greeting is unset" not in target["log"]

    failing = rootfs_context(
        tmp_path / "failing",
        'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "sh", "-c", "echo boom; exit 3"]\n',
    )
    failed = await stack.build(failing, f"failing-{suffix}:1")
    assert failed["status"] == "FAILED"
    assert "buildah bud exited with" in failed["failure_reason"]
    assert "boom" in "\n".join(failed["log"])

    no_dockerfile = await stack.build(context, f"nodf-{suffix}:1", dockerfile="Missing.dockerfile")
    assert no_dockerfile["status"] == "FAILED"
    assert "Missing.dockerfile not found" in no_dockerfile["failure_reason"]


async def test_hostile_contexts_are_refused_and_builds_cancel(stack: Stack, tmp_path: Path) -> None:
    escaping = io.BytesIO()
    with tarfile.open(fileobj=escaping, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\n"), ("../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    suffix = str(time.monotonic_ns())[-8:]
    uploaded = await stack.http.put(
        f"/v1/build-contexts/escape-{suffix}", content=escaping.getvalue(), headers=stack.auth()
    )
    assert uploaded.status_code == 200
    started = await stack.http.post(
        "/v1/builds",
        json={"context": f"escape-{suffix}", "repository": f"escape-{suffix}"},
        headers=stack.auth(),
    )
    build_id = started.json()["id"]
    for _ in range(200):
        build = (await stack.http.get(f"/v1/builds/{build_id}", headers=stack.auth())).json()
        if build["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        await asyncio.sleep(0.05)
    assert build["status"] == "FAILED"
    assert "'../escape' escapes the context" in build["failure_reason"]

    bad_name = await stack.http.put(
        "/v1/build-contexts/..%2Fetc", content=b"x", headers=stack.auth()
    )
    assert bad_name.status_code in (400, 404)
    unknown = await stack.http.post(
        "/v1/builds", json={"context": "never-uploaded", "repository": "x"}, headers=stack.auth()
    )
    assert unknown.status_code == 404 and "never-uploaded" in unknown.text
    anonymous = await stack.http.get("/v1/builds")
    assert anonymous.status_code == 401

    slow = rootfs_context(
        tmp_path / "slow",
        'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "sh", "-c", "echo sleeping; sleep 60"]\n',
    )
    name = f"slow-{suffix}"
    await stack.http.put(
        f"/v1/build-contexts/{name}", content=pack_context(slow, 2**30), headers=stack.auth()
    )
    started = await stack.http.post(
        "/v1/builds", json={"context": name, "repository": name}, headers=stack.auth()
    )
    build_id = started.json()["id"]
    for _ in range(300):
        log = await stack.http.get(f"/v1/builds/{build_id}/logs", headers=stack.auth())
        if "sleeping" in log.text:
            break
        await asyncio.sleep(0.1)
    began = time.monotonic()
    cancelled = await stack.http.post(f"/v1/builds/{build_id}/cancel", headers=stack.auth())
    assert cancelled.status_code == 200
    for _ in range(300):
        build = (await stack.http.get(f"/v1/builds/{build_id}", headers=stack.auth())).json()
        if build["status"] == "CANCELLED":
            break
        await asyncio.sleep(0.05)
    assert build["status"] == "CANCELLED"
    assert time.monotonic() - began < 15


async def test_cli_builds_a_directory_like_sm_docker(
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trellis import cli

    monkeypatch.setenv("TRELLIS_GATEWAY_URL", stack.url)
    monkeypatch.setenv("TRELLIS_API_KEY", stack.api_key)
    context = rootfs_context(tmp_path / "ctx", "FROM scratch\nCOPY rootfs/ /\nLABEL via=cli\n")
    (context / ".dockerignore").write_text("secrets.txt\n")
    (context / "secrets.txt").write_text("not for the image")
    repository = f"cli-{str(time.monotonic_ns())[-8:]}:1"
    code = await asyncio.to_thread(
        cli.main, ["image", "build", str(context), "--repository", repository, "--label", "k=v"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "STEP 2/4: COPY rootfs/ /" in captured.out  # the log, streamed
    pushed = captured.out.strip().splitlines()[-1]
    assert pushed.startswith(f"{stack.registry}/{repository}@sha256:")
    code = await asyncio.to_thread(cli.main, ["image", "builds"])
    assert code == 0 and repository in capsys.readouterr().out
    bad = await asyncio.to_thread(
        cli.main, ["image", "build", str(context), "--repository", "x", "--build-arg", "novalue"]
    )
    assert bad == 2 and "not KEY=VALUE" in capsys.readouterr().err
