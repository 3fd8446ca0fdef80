"""Build contexts as tar archives: packed from a directory (.dockerignore honoured), unpacked safely."""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from runtime.errors import ValidationFailed

MAX_ENTRIES = 200_000


def _ignore_patterns(root: Path) -> list[tuple[bool, str]]:
    """(negated, pattern) pairs from .dockerignore; later patterns win, as Docker reads them."""
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = str(PurePosixPath("/", pattern)).lstrip("/")
        patterns.append((negated, pattern))
    return patterns


def _ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    ignored = False
    for negated, pattern in patterns:
        parts = relative.split("/")
        # A pattern matching a parent directory excludes everything below it.
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates) or (
            pattern.startswith("**/") and fnmatch.fnmatchcase(relative, pattern[3:])
        ):
            ignored = not negated
    return ignored


def pack_context(root: Path, max_bytes: int) -> bytes:
    """A gzip tar of `root` without what .dockerignore excludes; symlinks are kept as links."""
    root = root.resolve()
    if not root.is_dir():
        raise ValidationFailed(f"build context {root} is not a directory")
    patterns = _ignore_patterns(root)
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for directory, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = Path(directory)
            for name in [*sorted(filenames), *dirnames]:
                path = base / name
                relative = path.relative_to(root).as_posix()
                if relative != "Dockerfile" and _ignored(relative, patterns):
                    continue
                info = tar.gettarinfo(str(path), arcname=relative)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isfile():
                    total += info.size
                    if total > max_bytes:
                        raise ValidationFailed(
                            f"build context is larger than {max_bytes // 2**20} MB"
                        )
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                elif info.isdir() or info.issym():
                    tar.addfile(info)
    return buffer.getvalue()


def unpack_context(archive: Path, destination: Path, max_bytes: int) -> None:
    """Extract a context tar into `destination`, refusing anything that would land outside it.

    Absolute names, `..`, links pointing out of the context, hard links and device files are
    refused with the entry's name, before anything is written.
    """
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ValidationFailed(f"the build context is not a tar archive: {exc}") from None
    with tar:
        members = []
        total = 0
        try:
            for member in tar:
                members.append(member)
                if len(members) > MAX_ENTRIES:
                    raise ValidationFailed(f"the build context has over {MAX_ENTRIES} entries")
                total += member.size
                if total > max_bytes:
                    raise ValidationFailed(
                        f"the build context unpacks to over {max_bytes // 2**20} MB"
                    )
                _check_member(member)
        except tarfile.TarError as exc:
            raise ValidationFailed(f"the build context is a damaged tar archive: {exc}") from None
        destination.mkdir(parents=True, exist_ok=True)
        try:
            tar.extractall(destination, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise ValidationFailed(f"build context entry refused: {exc}") from None


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")):
        raise ValidationFailed(f"build context entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise ValidationFailed(f"build context entry {name!r} escapes the context ('..')")
    if member.islnk():
        raise ValidationFailed(f"build context entry {name!r} is a hard link (not allowed)")
    if member.issym():
        target = PurePosixPath(member.linkname)
        resolved = PurePosixPath(os.path.normpath(str(path.parent / target)))
        if target.is_absolute() or resolved.parts[:1] == ("..",):
            raise ValidationFailed(
                f"build context entry {name!r} links outside the context ({member.linkname!r})"
            )
    if not (member.isfile() or member.isdir() or member.issym()):
        raise ValidationFailed(f"build context entry {name!r} is a device or special file")
