"""Builds: queue, run buildah (daemonless, chroot isolation), stream the log, push, record the digest."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import nats.js.errors
from nats.js.object_store import ObjectStore

from contracts import subjects
from contracts.envelope import EnvelopeMeta
from contracts.images import (
    FINISHED_BUILD_STATUSES,
    Build,
    BuildCancelRequested,
    BuildList,
    BuildLogLine,
    BuildQueued,
    BuildReply,
    BuildStatus,
    CancelBuild,
    DescribeBuild,
    ListBuilds,
    StartBuild,
)
from runtime.bus import Bus
from runtime.errors import NotFound, ValidationFailed
from runtime.kv import ResourceStore
from services.image_builder.adapters.contexts import unpack_context
from services.image_builder.adapters.tools import (
    ProcessCancelled,
    ProcessTimedOut,
    Registry,
    check_tools,
    run_streaming,
)
from services.image_builder.config import host_architecture

log = logging.getLogger("trellis.image_builder")


def _now() -> datetime:
    return datetime.now(UTC)


class BuildFailed(Exception):
    pass


class BuildLog:
    """One build's output: each line published for followers, the whole kept (up to a limit)."""

    def __init__(self, bus: Bus, build_id: str, max_bytes: int) -> None:
        self.bus = bus
        self.build_id = build_id
        self.subject = subjects.image_build_log(build_id)
        self.max_bytes = max_bytes
        self.lines: list[str] = []
        self.size = 0
        self.cut = False
        self.seq = 0

    async def write(self, line: str) -> None:
        if self.size + len(line) + 1 > self.max_bytes:
            if not self.cut:
                self.cut = True
                await self._publish(f"[log cut: over {self.max_bytes} bytes]")
            return
        self.size += len(line) + 1
        await self._publish(line)

    async def _publish(
        self, line: str, *, final: bool = False, status: BuildStatus | None = None
    ) -> None:
        if not final:
            self.lines.append(line)
        message = BuildLogLine(
            build_id=self.build_id, seq=self.seq, line=line, final=final, status=status
        )
        self.seq += 1
        try:
            await self.bus.emit(self.subject, message, message_id=f"{self.build_id}-{message.seq}")
        except Exception as exc:  # followers miss a line; the stored log still has it
            log.warning("build %s: log line not published: %s", self.build_id, exc)

    def close(self, summary: str) -> None:
        """The last line, kept with the log before the build's outcome is stored."""
        self.lines.append(summary)

    async def finish(self, status: BuildStatus, summary: str) -> None:
        """Tell followers the build ended: sent once its outcome is stored, so they can read it."""
        await self._publish(summary, final=True, status=status)

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


class Builder:
    """Runs builds from the IMAGE_WORK queue on this replica, and answers build requests."""

    def __init__(
        self,
        bus: Bus,
        builds: ResourceStore[Build],
        contexts: ObjectStore,
        logs: ObjectStore,
        registry: Registry,
        *,
        work_dir: Path,
        env: dict[str, str],
        authfile: Path,
        storage_driver: str,
        timeout_s: float,
        max_context_bytes: int,
        max_log_bytes: int,
    ) -> None:
        self.bus = bus
        self.builds = builds
        self.contexts = contexts
        self.logs = logs
        self.registry = registry
        self.work_dir = work_dir
        self.env = env
        self.authfile = authfile
        self.storage_driver = storage_driver
        self.timeout_s = timeout_s
        self.max_context_bytes = max_context_bytes
        self.max_log_bytes = max_log_bytes
        self.running: dict[str, asyncio.Event] = {}

    def _buildah(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.work_dir / "storage"),
            "--runroot",
            str(self.work_dir / "runroot"),
            "--storage-driver",
            self.storage_driver,
            *args,
        ]

    def image_uri(self, repository: str) -> str:
        name = repository if ":" in repository.rsplit("/", 1)[-1] else f"{repository}:latest"
        return f"{self.registry.address}/{name}"

    # -- requests ----------------------------------------------------------------------------

    async def start(self, r: StartBuild) -> BuildReply:
        dockerfile = PurePosixPath(r.dockerfile)
        if dockerfile.is_absolute() or ".." in dockerfile.parts:
            raise ValidationFailed("dockerfile must be a path inside the context")
        try:
            info = await self.contexts.get_info(r.context)
        except nats.js.errors.ObjectNotFoundError:
            raise NotFound(f"build context {r.context!r} was not uploaded") from None
        if (info.size or 0) > self.max_context_bytes:
            raise ValidationFailed(f"build context is over {self.max_context_bytes // 2**20} MB")
        build_id = "b" + (
            hashlib.sha256(r.client_token.encode()).hexdigest()[:20]
            if r.client_token
            else uuid.uuid4().hex[:20]
        )
        stored = await self.builds.create(
            build_id,
            Build(id=build_id, request=r, created_at=_now()),
            client_token=r.client_token,
        )
        await self.bus.emit(
            subjects.IMAGE_BUILD_QUEUED, BuildQueued(build_id=build_id), message_id=build_id
        )
        return BuildReply(build=stored.value)

    async def describe(self, r: DescribeBuild) -> BuildReply:
        return BuildReply(build=await self._get(r.build_id))

    async def list(self, r: ListBuilds) -> BuildList:
        builds = [v.value for v in await self.builds.list()]
        if r.status:
            builds = [b for b in builds if b.status == r.status]
        builds.sort(key=lambda b: b.created_at, reverse=True)
        return BuildList(builds=builds[: r.max_results])

    async def cancel(self, r: CancelBuild) -> BuildReply:
        build = await self._get(r.build_id)
        if build.status in FINISHED_BUILD_STATUSES:
            return BuildReply(build=build)

        def mark(b: Build) -> Build:
            if b.status in FINISHED_BUILD_STATUSES:
                return b
            if b.status == "QUEUED":  # no builder has it: it ends here
                return b.model_copy(
                    update={"status": "CANCELLED", "cancel_requested": True, "finished_at": _now()}
                )
            return b.model_copy(update={"cancel_requested": True})

        stored = (await self.builds.mutate(r.build_id, mark)).value
        if stored.status == "CANCELLED" and build.status == "QUEUED":
            await BuildLog(self.bus, r.build_id, self.max_log_bytes).finish(
                "CANCELLED", "build cancelled before it started"
            )
        else:
            await self.bus.publish(
                subjects.IMAGE_BUILD_CANCEL_REQUESTED, BuildCancelRequested(build_id=r.build_id)
            )
        return BuildReply(build=stored)

    async def on_cancel_requested(self, event: BuildCancelRequested, _: EnvelopeMeta) -> None:
        flag = self.running.get(event.build_id)
        if flag is not None:
            flag.set()

    async def _get(self, build_id: str) -> Build:
        try:
            return (await self.builds.get(build_id)).value
        except NotFound:
            raise NotFound(f"build {build_id} does not exist") from None

    # -- running -----------------------------------------------------------------------------

    async def handle(self, event: BuildQueued, _: EnvelopeMeta) -> None:
        """Run one queued build to its end; a build that already ended is skipped."""
        build = await self._get(event.build_id)
        if build.status in FINISHED_BUILD_STATUSES:
            return
        cancelled = asyncio.Event()
        self.running[build.id] = cancelled
        journal = BuildLog(self.bus, build.id, self.max_log_bytes)
        directory = self.work_dir / "builds" / build.id
        started = time.monotonic()
        try:
            await self._update(build.id, status="RUNNING", started_at=_now())
            if build.cancel_requested:
                cancelled.set()
            digest = await self._run(build, directory, journal, cancelled)
            uri = self.image_uri(build.request.repository)
            summary = f"pushed {uri}@{digest} in {time.monotonic() - started:.1f}s"
            await self._finish(
                build.id, journal, "SUCCEEDED", summary, image_uri=uri, digest=digest
            )
        except ProcessCancelled:
            await self._finish(build.id, journal, "CANCELLED", "build cancelled")
        except (BuildFailed, ValidationFailed, NotFound) as exc:
            await self._finish(
                build.id, journal, "FAILED", f"build failed: {exc}", failure_reason=str(exc)
            )
        except ProcessTimedOut:
            reason = f"build ran over its {self.timeout_s:g}s limit"
            await self._finish(build.id, journal, "FAILED", reason, failure_reason=reason)
        finally:
            self.running.pop(build.id, None)
            shutil.rmtree(directory, ignore_errors=True)

    async def _run(
        self, build: Build, directory: Path, journal: BuildLog, cancelled: asyncio.Event
    ) -> str:
        check_tools()
        r = build.request
        context = directory / "context"
        archive = directory / "context.tar"
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        await journal.write(f"build {build.id}: {r.repository} from context {r.context!r}")
        try:
            with archive.open("wb") as handle:
                await self.contexts.get(r.context, writeinto=handle)
        except nats.js.errors.ObjectNotFoundError:
            raise BuildFailed(f"build context {r.context!r} is gone") from None
        await asyncio.to_thread(unpack_context, archive, context, self.max_context_bytes)
        archive.unlink()
        dockerfile = context / r.dockerfile
        if not dockerfile.is_file():
            raise BuildFailed(f"{r.dockerfile} not found in the build context")
        uri = self.image_uri(r.repository)
        layers = r.layers
        if r.platform and r.platform.split("/")[1] != host_architecture():
            # buildah's layer cache does not tell platforms apart: a cached host-arch layer would
            # be reused for the foreign one.
            layers = False
            await journal.write(f"building for {r.platform}: layer cache off for this build")
        argv = self._buildah(
            "bud",
            "--isolation",
            "chroot",
            f"--layers={'true' if layers else 'false'}",
            "--pull=missing",
            f"--tls-verify={'true' if self.registry.tls_verify else 'false'}",
            f"--authfile={self.authfile}",
            "-f",
            str(dockerfile),
            "-t",
            uri,
        )
        for key, value in sorted(r.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in sorted(r.labels.items()):
            argv += ["--label", f"{key}={value}"]
        if r.target:
            argv += ["--target", r.target]
        if r.platform:
            argv += ["--platform", r.platform]
        argv.append(str(context))
        deadline = time.monotonic() + self.timeout_s
        code = await run_streaming(
            argv,
            journal.write,
            env=self.env,
            cwd=directory,
            timeout_s=self.timeout_s,
            cancelled=cancelled,
        )
        if code != 0:
            raise BuildFailed(f"buildah bud exited with {code}: {_last_error(journal.lines)}")
        await self._update(build.id, status="PUSHING")
        digest_file = directory / "digest"
        code = await run_streaming(
            self._buildah(
                "push",
                f"--tls-verify={'true' if self.registry.tls_verify else 'false'}",
                f"--authfile={self.authfile}",
                "--digestfile",
                str(digest_file),
                uri,
                f"docker://{uri}",
            ),
            journal.write,
            env=self.env,
            cwd=directory,
            timeout_s=max(deadline - time.monotonic(), 1.0),
            cancelled=cancelled,
        )
        if code != 0:
            raise BuildFailed(
                f"push to {self.registry.address} failed: {_last_error(journal.lines)}"
            )
        return digest_file.read_text().strip()

    async def _update(self, build_id: str, **changes: object) -> Build:
        stored = await self.builds.mutate(build_id, lambda b: b.model_copy(update=changes))
        return stored.value

    async def _finish(
        self, build_id: str, journal: BuildLog, status: BuildStatus, summary: str, **changes: object
    ) -> None:
        journal.close(summary)
        try:
            await self.logs.put(f"{build_id}.log", journal.text())
        except Exception as exc:
            log.warning("build %s: log not stored: %s", build_id, exc)
        await self._update(
            build_id, status=status, finished_at=_now(), log_lines=len(journal.lines), **changes
        )
        await journal.finish(status, summary)

    async def stored_log(self, build_id: str) -> bytes | None:
        try:
            result = await self.logs.get(f"{build_id}.log")
        except nats.js.errors.ObjectNotFoundError:
            return None
        return result.data


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):
        lowered = line.lower()
        if "error" in lowered or "failed" in lowered:
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else "no output"
