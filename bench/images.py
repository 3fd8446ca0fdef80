"""Benchmark: image builds through the service against plain buildah, cached rebuilds, concurrent builds."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/images.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import cpu_model, fmt, loadavg
from bench.launch import REPO_ROOT, Platform, free_port
from runtime.bus import Bus
from services.image_builder.adapters.contexts import pack_context

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "images.json"
# Several RUN steps and 24 MB of layers: a small but real build with no base image to pull.
DOCKERFILE = """\
FROM scratch AS base
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /opt/R/4.1.3/bin /data && echo '#!/bin/sh' > /opt/R/4.1.3/bin/R
RUN head -c 16777216 /dev/urandom > /data/blob && sha256sum /data/blob > /data/blob.sha256
FROM base
ARG ROUND=0
RUN head -c 8388608 /dev/urandom > /data/extra && echo "round $ROUND"
LABEL org.trellis.bench=images
"""


def make_context(root: Path) -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("busybox is needed (Debian package busybox-static)")
    (root / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "rootfs" / "bin" / "busybox")
    (root / "rootfs" / "etc").mkdir()
    (root / "rootfs" / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "Dockerfile").write_text(DOCKERFILE)
    return root


def plain_buildah(context: Path, storage: Path, registry: str, tag: str, round_: int) -> float:
    """`buildah bud` then `buildah push`, as a person would type them; wall seconds."""
    base = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run")]
    base += ["--storage-driver", "vfs"]
    uri = f"{registry}/{tag}"
    began = time.perf_counter()
    subprocess.run(
        [
            *base,
            "bud",
            "--isolation",
            "chroot",
            "--layers=false",
            "--build-arg",
            f"ROUND={round_}",
            "-t",
            uri,
            str(context),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(
        [*base, "push", "--tls-verify=false", uri, f"docker://{uri}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


class Client:
    def __init__(self, http: httpx.AsyncClient, api_key: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def upload(self, archive: bytes, name: str) -> None:
        response = await self.http.put(
            f"/v1/build-contexts/{name}", content=archive, headers=self.headers
        )
        response.raise_for_status()

    async def build(
        self, context_name: str, repository: str, layers: bool, round_: int
    ) -> dict[str, Any]:
        started = await self.http.post(
            "/v1/builds",
            json={
                "context": context_name,
                "repository": repository,
                "layers": layers,
                "build_args": {"ROUND": str(round_)},
            },
            headers=self.headers,
        )
        started.raise_for_status()
        build_id = started.json()["id"]
        while True:
            build: dict[str, Any] = (
                await self.http.get(f"/v1/builds/{build_id}", headers=self.headers)
            ).json()
            if build["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                if build["status"] != "SUCCEEDED":
                    raise RuntimeError(
                        f"build {build_id} {build['status']}: {build.get('failure_reason')}"
                    )
                return build
            await asyncio.sleep(0.02)


async def run(rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="trellis-bench-images-"))
    registry = f"127.0.0.1:{free_port()}"
    os.environ["TRELLIS_IMAGE_BUILDER_REGISTRY"] = registry  # process_specs reads it
    platform = Platform(
        work / "platform",
        env={
            "TRELLIS_IMAGE_BUILDER_REGISTRY": registry,
            "TRELLIS_IMAGE_BUILDER_MAX_CONCURRENT_BUILDS": "4",
            "TRELLIS_IMAGE_BUILDER_WORK_DIR": str(work / "service"),
        },
    )
    context = make_context(work / "context")
    archive = pack_context(context, 2**30)
    results: dict[str, Any] = {"rounds": rounds, "cpu": cpu_model(), "cores": os.cpu_count()}
    try:
        url = platform.start_nats()
        for name in ("registry", "image_builder", "gateway"):
            platform.start(name)
        bus = await Bus.connect(url, source="bench")
        async with httpx.AsyncClient(
            base_url=platform.http_url,
            timeout=600,
            headers={"Authorization": f"Bearer {platform.api_key}"},
        ) as http:
            await platform.wait_ready(bus, http, ["image_builder", "gateway"])
            client = Client(http, platform.api_key)
            plain: list[float] = []
            service: list[float] = []
            service_no_upload: list[float] = []
            for round_ in range(rounds):
                # Interleaved, so drift in the machine's load hits both alike.
                plain.append(
                    await asyncio.to_thread(
                        plain_buildah, context, work / "plain", registry, f"plain:{round_}", round_
                    )
                )
                began = time.perf_counter()
                await client.upload(archive, f"ctx-{round_}")
                uploaded = time.perf_counter()
                await client.build(
                    f"ctx-{round_}", f"service:{round_}", layers=False, round_=round_
                )
                done = time.perf_counter()
                service.append(done - began)
                service_no_upload.append(done - uploaded)
            # Cached rebuilds: the same context and arguments again, layers on.
            await client.build("ctx-0", "cached:warm", layers=True, round_=0)
            cached = []
            for round_ in range(rounds):
                began = time.perf_counter()
                await client.build("ctx-0", f"cached:{round_}", layers=True, round_=0)
                cached.append(time.perf_counter() - began)
            # Four builds at once (four slots) against one at a time.
            concurrent = []
            for round_ in range(max(1, rounds // 2)):
                began = time.perf_counter()
                await asyncio.gather(
                    *(
                        client.build(
                            f"ctx-{i % rounds}",
                            f"concurrent:{round_}-{i}",
                            layers=False,
                            round_=100 + i,
                        )
                        for i in range(4)
                    )
                )
                concurrent.append(time.perf_counter() - began)
        await bus.close()
    finally:
        platform.close()
        os.environ.pop("TRELLIS_IMAGE_BUILDER_REGISTRY", None)
        shutil.rmtree(work, ignore_errors=True)
    single = statistics.median(service_no_upload)
    results.update(
        {
            "plain_buildah_s": plain,
            "service_s": service,
            "service_without_upload_s": service_no_upload,
            "cached_rebuild_s": cached,
            "four_concurrent_s": concurrent,
            "overhead": statistics.median(service) / statistics.median(plain) - 1,
            "overhead_without_upload": single / statistics.median(plain) - 1,
            "concurrency_speedup": 4 * single / statistics.median(concurrent),
            "context_mb": len(archive) / 2**20,
            "loadavg": loadavg(),
        }
    )
    return results


def report(r: dict[str, Any]) -> str:
    med = statistics.median
    rows = [
        ("plain buildah bud + push", med(r["plain_buildah_s"])),
        ("service: upload + build + push", med(r["service_s"])),
        ("service: build + push (context uploaded)", med(r["service_without_upload_s"])),
        ("service: cached rebuild", med(r["cached_rebuild_s"])),
        ("service: 4 builds at once (wall)", med(r["four_concurrent_s"])),
    ]
    lines = [
        f"Image builds ({r['rounds']} rounds, medians; {r['cpu']}, {r['cores']} cores; "
        f"context {r['context_mb']:.1f} MB)",
        "",
        "| what | seconds |",
        "|---|---|",
        *(f"| {name} | {fmt(value, 2)} |" for name, value in rows),
        "",
        f"overhead vs plain buildah: {r['overhead'] * 100:+.1f}% with the upload, "
        f"{r['overhead_without_upload'] * 100:+.1f}% without (goal < 10%)",
        f"4 concurrent builds: {r['concurrency_speedup']:.2f}x the throughput of one at a time",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
