"""Trial checkpoints in a JetStream object store, so a paused or requeued trial resumes on any worker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from contracts import topology

__all__ = [
    "DEFAULT_MAX_CHECKPOINT_BYTES",
    "DEFAULT_STORE_BYTES",
    "CheckpointError",
    "CheckpointStore",
    "StoredCheckpoint",
    "SyncMarker",
    "checkpoint_key",
    "delete_job_checkpoints",
    "extract",
    "fingerprint",
    "marker_path",
    "pack",
    "read_marker",
]

log = logging.getLogger("trellis.tuner.checkpoints")

DEFAULT_MAX_CHECKPOINT_BYTES = 512 * 2**20
DEFAULT_STORE_BYTES = 2 * 2**30
MAX_ENTRIES = 100_000
_HEADER = "Trellis-"
# Chunks are published one at a time, each waiting for its ack: larger ones mean fewer round
# trips, and 512 KiB stays under the server's default 1 MiB max_payload.
_CHUNK_BYTES = 512 * 1024
# Slowest transfer rate tolerated before a download counts as stuck (its chunks purged away).
_MIN_BYTES_PER_S = 1 * 2**20


class CheckpointError(Exception):
    """A checkpoint that cannot be packed, stored, fetched or unpacked."""


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def checkpoint_key(job: str, trial_id: int) -> str:
    return f"{job}/{trial_id}"


@dataclass(frozen=True)
class StoredCheckpoint:
    key: str
    sha256: str  # hex digest of the archive: the version's identity
    size: int  # archive bytes
    attempt: int | None = None
    worker: str | None = None


@dataclass(frozen=True)
class SyncMarker:
    """Which stored version a local directory last matched, and the listing it had then."""

    sha256: str
    fingerprint: str


def marker_path(directory: Path) -> Path:
    # Beside the directory, not in it: the trial's script sees only its own files.
    return directory.with_name(directory.name + ".sync.json")


def read_marker(directory: Path) -> SyncMarker | None:
    try:
        raw = json.loads(marker_path(directory).read_text())
        return SyncMarker(sha256=str(raw["sha256"]), fingerprint=str(raw["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_marker(directory: Path, marker: SyncMarker) -> None:
    path = marker_path(directory)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    partial.write_text(json.dumps({"sha256": marker.sha256, "fingerprint": marker.fingerprint}))
    partial.replace(path)


def _entries(directory: Path) -> list[tuple[str, Path, os.stat_result]]:
    """(relative posix name, path, lstat) of everything below `directory`, in sorted order."""
    found: list[tuple[str, Path, os.stat_result]] = []
    for parent, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        base = Path(parent)
        for name in sorted([*dirnames, *filenames]):
            path = base / name
            found.append((path.relative_to(directory).as_posix(), path, path.lstat()))
        if len(found) > MAX_ENTRIES:
            raise CheckpointError(f"checkpoint has over {MAX_ENTRIES} entries")
    found.sort(key=lambda entry: entry[0])
    return found


def has_content(directory: Path) -> bool:
    try:
        return any(directory.iterdir())
    except OSError:
        return False


def fingerprint(directory: Path) -> str:
    """A digest of names, kinds, sizes, modes and mtimes: cheap, and changes when content does."""
    digest = hashlib.sha256()
    for name, path, st in _entries(directory):
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
        digest.update(f"{name}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())
    return digest.hexdigest()


def _inside(name: str, target: str) -> bool:
    """Whether a link at `name` pointing to `target` stays within the archive's root."""
    if PurePosixPath(target).is_absolute():
        return False
    resolved = os.path.normpath(str(PurePosixPath(name).parent / target))
    return resolved != ".." and not resolved.startswith("../")


class _Digesting(io.RawIOBase):
    """Passes writes through to `out`, hashing and counting them; refuses to grow past a cap."""

    def __init__(self, out: IO[bytes], max_bytes: int) -> None:
        self.out = out
        self.max_bytes = max_bytes
        self.size = 0
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(b)
        self.size += len(data)
        if self.size > self.max_bytes:
            raise CheckpointError(f"checkpoint is larger than {_size(self.max_bytes)}")
        self.hash.update(data)
        self.out.write(data)
        return len(data)


def pack(directory: Path, out: IO[bytes], max_bytes: int) -> tuple[int, str, int]:
    """Writes a plain tar of `directory` to `out`: sorted names, no owners, so the same content
    packs to the same bytes. Returns (archive bytes, sha256 hex, file bytes).

    Links pointing out of the directory and special files (sockets, FIFOs, devices) are left
    out, since no worker would unpack them. CheckpointError when the archive exceeds max_bytes.
    """
    writer = _Digesting(out, max_bytes)
    content = 0
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, path, st in _entries(directory):
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                if not _inside(name, target):
                    log.warning("checkpoint link %s points outside it; left out", name)
                    continue
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                content += st.st_size
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                log.warning("checkpoint entry %s is not a file, directory or link; left out", name)
    return writer.size, writer.hash.hexdigest(), content


@dataclass
class _Seen:
    names: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)


def _check(member: tarfile.TarInfo, seen: _Seen) -> None:
    name = member.name
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith(("/", "\\")):
        raise CheckpointError(f"checkpoint entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise CheckpointError(f"checkpoint entry {name!r} escapes the directory ('..')")
    normal = path.as_posix()
    if normal in seen.names:
        raise CheckpointError(f"checkpoint entry {name!r} appears twice")
    seen.names.add(normal)
    # Writing through a link the archive itself made is how a lexically clean name escapes.
    if any(parent.as_posix() in seen.links for parent in path.parents):
        raise CheckpointError(f"checkpoint entry {name!r} lies below a link")
    if member.issym():
        if not _inside(name, member.linkname):
            raise CheckpointError(
                f"checkpoint entry {name!r} links outside the directory ({member.linkname!r})"
            )
        seen.links.add(normal)
    elif member.islnk():
        # A hard link names an archive member: only a regular file unpacked before it is safe.
        if PurePosixPath(member.linkname).as_posix() not in seen.files:
            raise CheckpointError(
                f"checkpoint entry {name!r} is a hard link to {member.linkname!r}, "
                "not to a file in the checkpoint"
            )
    elif member.issparse():
        raise CheckpointError(f"checkpoint entry {name!r} is a sparse file")
    elif member.isfile():
        seen.files.add(normal)
    elif not member.isdir():
        raise CheckpointError(f"checkpoint entry {name!r} is a device or special file")


def extract(archive: Path | IO[bytes], destination: Path, max_bytes: int) -> None:
    """Unpacks a checkpoint tar into the new directory `destination`, checking every entry
    before writing any: absolute names, `..`, links leaving the directory, hard links to
    anything outside, device files and a total over max_bytes are refused (CheckpointError)."""
    try:
        tar = (
            tarfile.open(archive, mode="r:*")
            if isinstance(archive, Path)
            else tarfile.open(fileobj=archive, mode="r:*")
        )
    except (tarfile.TarError, OSError) as exc:
        raise CheckpointError(f"checkpoint is not a tar archive: {exc}") from None
    with tar:
        members: list[tarfile.TarInfo] = []
        seen = _Seen()
        total = 0
        try:
            for member in tar:
                members.append(member)
                if len(members) > MAX_ENTRIES:
                    raise CheckpointError(f"checkpoint has over {MAX_ENTRIES} entries")
                total += max(member.size, 0)
                if total > max_bytes:
                    raise CheckpointError(f"checkpoint unpacks to over {_size(max_bytes)}")
                _check(member, seen)
        except tarfile.TarError as exc:
            raise CheckpointError(f"checkpoint is a damaged tar archive: {exc}") from None
        destination.mkdir(parents=True)
        try:
            # The data filter checks again against what is on disk as it extracts.
            tar.extractall(destination, members=members, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise CheckpointError(f"checkpoint entry refused: {exc}") from None


def replace_directory(archive: IO[bytes], directory: Path, max_bytes: int) -> None:
    """Unpacks beside `directory`, then swaps it in: a refused archive leaves it untouched."""
    tag = uuid.uuid4().hex[:8]
    staging = directory.with_name(f".{directory.name}.restore-{tag}")
    old = directory.with_name(f".{directory.name}.old-{tag}")
    try:
        extract(archive, staging, max_bytes)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _header(info_headers: object, name: str) -> str | None:
    if not isinstance(info_headers, dict):
        return None
    value = info_headers.get(_HEADER + name)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def _stored(info: object) -> StoredCheckpoint | None:
    digest = getattr(info, "digest", None) or ""
    prefix, _, encoded = digest.partition("=")
    if prefix.upper() != "SHA-256" or not encoded:
        return None
    headers = getattr(info, "headers", None)
    attempt = _header(headers, "Attempt")
    return StoredCheckpoint(
        key=str(getattr(info, "name", "")),
        sha256=base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).hex(),
        size=int(getattr(info, "size", 0) or 0),
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        worker=_header(headers, "Worker"),
    )


class CheckpointStore:
    """Checkpoint directories kept in the object store, one version per trial (its key)."""

    def __init__(self, store: ObjectStore, *, max_bytes: int, scratch: Path) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.scratch = scratch

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        max_bytes: int = DEFAULT_MAX_CHECKPOINT_BYTES,
        store_bytes: int = DEFAULT_STORE_BYTES,
        scratch: Path,
        replicas: int = 1,
    ) -> CheckpointStore:
        """Opens the bucket, creating it (of store_bytes at most) when it is not there yet."""
        try:
            store = await js.object_store(topology.TUNE_CHECKPOINTS)
        except nats.js.errors.BucketNotFoundError:
            store = await js.create_object_store(
                topology.TUNE_CHECKPOINTS,
                config=ObjectStoreConfig(
                    description="Trial checkpoint directories (tar), <job>/<trial id>: a paused "
                    "or requeued trial resumes from them on any worker.",
                    storage=StorageType.FILE,
                    replicas=replicas,
                    max_bytes=store_bytes,
                ),
            )
        return cls(store, max_bytes=max_bytes, scratch=scratch)

    async def stored(self, key: str) -> StoredCheckpoint | None:
        try:
            info = await self.store.get_info(key)
        except nats.js.errors.ObjectNotFoundError:
            return None
        return _stored(info)

    def _tempfile(self) -> IO[bytes]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=self.scratch, prefix=".checkpoint-")

    async def save(
        self, key: str, directory: Path, *, attempt: int, worker: str, live: bool = False
    ) -> StoredCheckpoint | None:
        """Uploads `directory` when it has content that changed since it was last in sync with
        the store; None when there was nothing to upload.

        `live`: a running trial may be writing the directory; a copy during which anything in it
        changed, or that could not be read whole, is not uploaded (None)."""
        if not has_content(directory):
            return None
        marker = read_marker(directory)
        listing = await asyncio.to_thread(fingerprint, directory)
        if marker is not None and marker.fingerprint == listing:
            return None
        with self._tempfile() as archive:
            try:
                size, sha256, content = await asyncio.to_thread(
                    pack, directory, archive, self.max_bytes
                )
            except (OSError, tarfile.TarError) as exc:
                if live:
                    log.debug("checkpoint %s changed while packed (%s): not stored", key, exc)
                    return None
                raise
            if live and await asyncio.to_thread(fingerprint, directory) != listing:
                log.debug("checkpoint %s changed while packed: not stored", key)
                return None
            if marker is not None and marker.sha256 == sha256:
                await asyncio.to_thread(write_marker, directory, SyncMarker(sha256, listing))
                return None
            archive.seek(0)
            headers = {
                f"{_HEADER}Attempt": [str(attempt)],
                f"{_HEADER}Worker": [worker],
                f"{_HEADER}Size": [str(content)],
                f"{_HEADER}Sha256": [sha256],
            }
            meta = ObjectMeta(
                name=key,
                description=f"checkpoint of trial {key}",
                headers=headers,
                options=ObjectMetaOptions(max_chunk_size=_CHUNK_BYTES),
            )
            await self.store.put(key, archive, meta=meta)  # type: ignore[arg-type]
        await asyncio.to_thread(write_marker, directory, SyncMarker(sha256, listing))
        return StoredCheckpoint(key, sha256, size, attempt, worker)

    async def restore(self, key: str, directory: Path) -> StoredCheckpoint | None:
        """Replaces `directory` with the stored version unless it already matches it (or was
        changed here after matching it); None when nothing was fetched."""
        stored = await self.stored(key)
        if stored is None:
            return None
        marker = read_marker(directory)
        if marker is not None and marker.sha256 == stored.sha256:
            return None
        if stored.size > self.max_bytes:
            raise CheckpointError(
                f"stored checkpoint is {_size(stored.size)}, over the "
                f"{_size(self.max_bytes)} this worker accepts"
            )
        with self._tempfile() as archive:
            # A version replaced or deleted mid-download loses its chunks: never wait forever.
            timeout_s = 30 + stored.size / _MIN_BYTES_PER_S
            result = await asyncio.wait_for(
                self.store.get(key, writeinto=archive),  # type: ignore[arg-type]
                timeout_s,
            )
            fetched = _stored(result.info)
            archive.seek(0)
            await asyncio.to_thread(replace_directory, archive, directory, self.max_bytes)
        stored = fetched or stored
        listing = await asyncio.to_thread(fingerprint, directory)
        await asyncio.to_thread(write_marker, directory, SyncMarker(stored.sha256, listing))
        return stored

    async def delete_job(self, job: str) -> int:
        """Removes every checkpoint of `job`; returns how many there were."""
        try:
            infos = await self.store.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return 0
        removed = 0
        for info in infos:
            if info.name.startswith(f"{job}/"):
                with contextlib.suppress(nats.js.errors.ObjectNotFoundError):
                    await self.store.delete(info.name)
                    removed += 1
        return removed


async def delete_job_checkpoints(js: JetStreamContext, job: str) -> int:
    """Removes a job's checkpoints, if the bucket exists (it is not created for this)."""
    try:
        store = await js.object_store(topology.TUNE_CHECKPOINTS)
    except nats.js.errors.BucketNotFoundError:
        return 0
    return await CheckpointStore(store, max_bytes=0, scratch=Path()).delete_job(job)
