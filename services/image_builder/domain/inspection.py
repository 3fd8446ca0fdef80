"""Inspect an image's merged layer filesystem for what a Studio domain needs to run it."""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

EntryKind = Literal["file", "dir", "symlink", "hardlink", "other"]

MAX_KEPT_FILE_SIZE = 256 * 1024
"""Regular files larger than this never have their content kept."""

MAX_SYMLINK_HOPS = 40
"""Same limit as Linux's MAXSYMLINKS: more hops than this counts as a loop."""

MAX_PROBLEMS = 100
"""Problems recorded beyond this many are only counted."""

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

R_HOME_PATTERNS = (
    "/usr/lib/R",
    "/usr/lib64/R",
    "/usr/local/lib/R",
    "/usr/local/lib64/R",
    "/opt/local/lib/R",
    "/opt/local/lib64/R",
    "/opt/R/*",
    "/opt/local/R/*",
)
"""Directories RStudio scans for R installations (each must hold ``bin/R``)."""

R_DESCRIPTION_SUBPATHS = (
    "library/base/DESCRIPTION",
    "lib/R/library/base/DESCRIPTION",
    "lib64/R/library/base/DESCRIPTION",
)
"""Where an R home's base package DESCRIPTION may be, relative to the home.

``/usr/lib/R`` is an R_HOME itself; ``/opt/R/<version>`` (the rstudio/r-builds layout) keeps
its R_HOME in ``lib/R`` below it.
"""

RSTUDIO_DIR = "/usr/lib/rstudio-server"
RSTUDIO_RSESSION = f"{RSTUDIO_DIR}/bin/rsession"
RSTUDIO_VERSION_FILE = f"{RSTUDIO_DIR}/VERSION"

KERNEL_PREFIXES = (
    "/usr/local",
    "/usr",
    "/opt/conda",
    "/opt/conda/envs/*",
    "/root/.local",
    "/home/*/.local",
)
"""Prefixes whose ``share/jupyter/kernels/<name>/kernel.json`` are kernel specs."""

PYTHON_PATTERNS = (
    "/usr/bin/python3",
    "/usr/local/bin/python3",
    "/opt/conda/bin/python",
    "/opt/conda/envs/*/bin/python",
)

_VERSION_DIR_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
_DESCRIPTION_VERSION_RE = re.compile(r"^Version:\s*(\S+)\s*$", re.MULTILINE)

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
}


class InspectionError(Exception):
    """The image cannot be inspected: a malformed layer or one past the size guards."""


def is_interesting(path: str) -> bool:
    """Whether the content of the file at ``path`` (normalised, "/a/b") is worth keeping."""
    if path in ("/etc/passwd", "/etc/group", RSTUDIO_VERSION_FILE):
        return True
    if path.endswith(("/library/base/DESCRIPTION", "/bin/R")):
        return True
    return path.endswith("/kernel.json") and "/share/jupyter/kernels/" in path


def normalise_path(name: str) -> str:
    """Normalise an archive member name or a lookup path to "/a/b" ("/" for the root)."""
    while name.startswith("./"):
        name = name[2:]
    name = name.lstrip("/")
    # normpath also folds "a/./b", "a//b", "a/../b", a trailing "/" and ".." above the root.
    return posixpath.normpath("/" + name)


def _join(parent: str, name: str) -> str:
    return parent + name if parent == "/" else f"{parent}/{name}"


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return (parent or "/"), name


@dataclass(slots=True)
class _Entry:
    kind: EntryKind
    mode: int
    target: str | None = None  # symlink target as written, or a hard link's normalised path
    content: bytes | None = None


@dataclass(slots=True)
class _Addition:
    path: str
    entry: _Entry


class LayeredFilesystem:
    """The merged view of an image's layers, applied in order with OCI whiteouts.

    Paths are keyed literally, as an overlay filesystem does: an entry below a path that a
    lower layer holds as a symlink or file replaces it with a directory, rather than being
    written through it. Only the content of small regular files that ``wanted`` selects is
    kept. After an :class:`InspectionError` the object is half-applied and must be discarded.
    """

    def __init__(
        self,
        wanted: Callable[[str], bool] = is_interesting,
        *,
        max_entries: int = 2_000_000,
        max_content_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._wanted = wanted
        self._max_entries = max_entries
        self._max_content_bytes = max_content_bytes
        self._content_bytes = 0
        self._entries: dict[str, _Entry] = {"/": _Entry("dir", 0o755)}
        self._children: dict[str, set[str]] = {"/": set()}
        self._problems: list[str] = []
        self._problems_dropped = 0
        self._layers = 0

    # -- building ---------------------------------------------------------------------------

    @property
    def problems(self) -> list[str]:
        """Non-fatal oddities seen while applying layers."""
        if self._problems_dropped:
            return [*self._problems, f"... and {self._problems_dropped} more problems"]
        return list(self._problems)

    def __len__(self) -> int:
        return len(self._entries)

    def apply_layer(self, fileobj: BinaryIO) -> None:
        """Apply one layer (a gzip-compressed or plain tar stream) on top of the ones before."""
        self._layers += 1
        layer = self._layers
        opaque: list[str] = []
        deletions: list[str] = []
        additions: list[_Addition] = []
        try:
            with tarfile.open(fileobj=fileobj, mode="r|*") as archive:
                for member in archive:
                    self._collect(archive, member, layer, opaque, deletions, additions)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise InspectionError(
                f"layer {layer} is not a readable tar archive (gzip or plain): {exc}"
            ) from exc
        for directory in opaque:
            self._ensure_dir(directory)
            for name in list(self._children.get(directory, ())):
                self._remove(_join(directory, name))
        for path in deletions:
            self._remove(path)
        for addition in additions:
            self._add(addition.path, addition.entry, layer)

    def _collect(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        layer: int,
        opaque: list[str],
        deletions: list[str],
        additions: list[_Addition],
    ) -> None:
        if len(additions) + len(deletions) + len(opaque) >= self._max_entries:
            raise InspectionError(
                f"layer {layer} has more than {self._max_entries} entries; refusing to inspect it"
            )
        path = normalise_path(member.name)
        if path == "/":
            if member.isdir():
                self._entries["/"].mode = member.mode
            return
        parent, name = _split(path)
        if name == OPAQUE_WHITEOUT:
            opaque.append(parent)
            return
        if "/" + WHITEOUT_PREFIX + WHITEOUT_PREFIX in path:
            # Other ".wh..wh." names are aufs metadata trees (e.g. ".wh..wh.plnk/"), not files.
            return
        if name.startswith(WHITEOUT_PREFIX):
            target = name[len(WHITEOUT_PREFIX) :]
            if target:
                deletions.append(_join(parent, target))
            return
        additions.append(_Addition(path, self._entry_for(archive, member, path, layer)))

    def _entry_for(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo, path: str, layer: int
    ) -> _Entry:
        mode = member.mode
        if member.isreg():
            if not self._wanted(path):
                return _Entry("file", mode)
            if member.size > MAX_KEPT_FILE_SIZE:
                self._note(
                    f"{path} is {member.size} bytes, over {MAX_KEPT_FILE_SIZE}; content not read"
                )
                return _Entry("file", mode)
            return _Entry("file", mode, content=self._read_member(archive, member, layer))
        if member.isdir():
            return _Entry("dir", mode)
        if member.issym():
            return _Entry("symlink", mode, target=member.linkname)
        if member.islnk():
            return _Entry("hardlink", mode, target=normalise_path(member.linkname))
        return _Entry("other", mode)

    def _read_member(self, archive: tarfile.TarFile, member: tarfile.TarInfo, layer: int) -> bytes:
        stream = archive.extractfile(member)
        if stream is None:  # pragma: no cover - isreg() members always have a stream
            return b""
        data = stream.read()
        self._content_bytes += len(data)
        if self._content_bytes > self._max_content_bytes:
            raise InspectionError(
                f"layer {layer}: more than {self._max_content_bytes} bytes of files to read; "
                "refusing to inspect the image"
            )
        return data

    def _note(self, problem: str) -> None:
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(problem)
        else:
            self._problems_dropped += 1

    def _set(self, path: str, entry: _Entry) -> None:
        if path not in self._entries and len(self._entries) >= self._max_entries:
            raise InspectionError(
                f"the image has more than {self._max_entries} filesystem entries; "
                "refusing to inspect it"
            )
        self._entries[path] = entry
        parent, name = _split(path)
        self._children.setdefault(parent, set()).add(name)
        if entry.kind == "dir":
            self._children.setdefault(path, set())

    def _ensure_dir(self, path: str) -> None:
        """Make ``path`` and its ancestors directories, replacing non-directories."""
        current = "/"
        for part in path.split("/"):
            if not part:
                continue
            current = _join(current, part)
            existing = self._entries.get(current)
            if existing is not None and existing.kind == "dir":
                continue
            if existing is not None:
                self._remove(current)
            self._set(current, _Entry("dir", 0o755))

    def _remove(self, path: str) -> None:
        """Remove ``path`` and everything under it; the root itself is never removed."""
        if path == "/" or path not in self._entries:
            return
        stack = [path]
        while stack:
            current = stack.pop()
            self._entries.pop(current, None)
            for name in self._children.pop(current, ()):
                stack.append(_join(current, name))
        parent, name = _split(path)
        siblings = self._children.get(parent)
        if siblings is not None:
            siblings.discard(name)

    def _add(self, path: str, entry: _Entry, layer: int) -> None:
        self._ensure_dir(_split(path)[0])
        existing = self._entries.get(path)
        if existing is not None:
            if existing.kind == "dir" and entry.kind == "dir":
                existing.mode = entry.mode
                return
            self._remove(path)
        if entry.kind == "hardlink" and entry.target is not None:
            linked = self._entries.get(entry.target)
            if linked is None:
                self._note(f"layer {layer}: hard link {path} -> {entry.target} has no target")
            else:
                # A hard link shares the file, so it keeps the content the file had now.
                entry.content = linked.content
        self._set(path, entry)

    # -- reading ----------------------------------------------------------------------------

    def _resolve(self, path: str, *, follow_last: bool = True) -> str | None:
        """The literal path ``path`` names after following symlinks, or None if missing."""
        pending = [part for part in reversed(path.split("/")) if part]
        current = "/"
        hops = 0
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                current = _split(current)[0]
                continue
            candidate = _join(current, part)
            entry = self._entries.get(candidate)
            if entry is None:
                return None
            if entry.kind == "symlink" and (pending or follow_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS or not entry.target:
                    return None
                if entry.target.startswith("/"):
                    current = "/"
                pending.extend(part for part in reversed(entry.target.split("/")) if part)
                continue
            if pending and entry.kind != "dir":
                return None
            current = candidate
        return current

    def _lookup(self, path: str) -> _Entry | None:
        resolved = self._resolve(path)
        return None if resolved is None else self._entries[resolved]

    def realpath(self, path: str) -> str | None:
        """The path ``path`` names once every symlink is followed; None if it does not exist."""
        return self._resolve(path)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists, following symlinks (a dangling symlink does not)."""
        return self._resolve(path) is not None

    def lexists(self, path: str) -> bool:
        """Whether ``path`` exists, not following a symlink in its last component."""
        return self._resolve(path, follow_last=False) is not None

    def is_dir(self, path: str) -> bool:
        entry = self._lookup(path)
        return entry is not None and entry.kind == "dir"

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is a regular file (hard links included), following symlinks."""
        entry = self._lookup(path)
        return entry is not None and entry.kind in ("file", "hardlink")

    def kind(self, path: str) -> EntryKind | None:
        """The kind of the entry at ``path`` itself (symlinks not followed), None if missing."""
        resolved = self._resolve(path, follow_last=False)
        return None if resolved is None else self._entries[resolved].kind

    def mode(self, path: str) -> int | None:
        """The permission bits of ``path`` (symlinks followed), None if missing."""
        entry = self._lookup(path)
        return None if entry is None else entry.mode

    def read_link(self, path: str) -> str | None:
        """A symlink's target as written, or None when ``path`` is not a symlink."""
        resolved = self._resolve(path, follow_last=False)
        if resolved is None:
            return None
        entry = self._entries[resolved]
        return entry.target if entry.kind == "symlink" else None

    def read_bytes(self, path: str) -> bytes | None:
        """The kept content of ``path`` (symlinks followed); None if missing or not kept."""
        entry = self._lookup(path)
        return None if entry is None else entry.content

    def read_text(self, path: str) -> str | None:
        """Like :meth:`read_bytes`, decoded as UTF-8 (undecodable bytes replaced)."""
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def listdir(self, path: str) -> list[str]:
        """Sorted names of the direct children of directory ``path``; [] if not a directory."""
        resolved = self._resolve(path)
        if resolved is None or self._entries[resolved].kind != "dir":
            return []
        return sorted(self._children.get(resolved, ()))

    def glob(self, pattern: str) -> list[str]:
        """Sorted existing paths matching ``pattern``, where ``*`` matches within a component.

        Like :func:`glob.glob`, a match may be a dangling symlink, and ``*`` does not match
        names starting with ".".
        """
        matches = ["/"]
        for part in (p for p in normalise_path(pattern).split("/") if p):
            if "*" not in part:
                matches = [_join(m, part) for m in matches if self.lexists(_join(m, part))]
                continue
            regex = re.compile(".*".join(re.escape(piece) for piece in part.split("*")))
            matches = [
                _join(m, name)
                for m in matches
                for name in self.listdir(m)
                if regex.fullmatch(name) and not (name.startswith(".") and part[0] != ".")
            ]
        return sorted(matches)


# -- parsers ----------------------------------------------------------------------------------


def _parse_colon_file(text: str, name_field: int, id_field: int, min_fields: int) -> dict[int, str]:
    result: dict[int, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < min_fields or not fields[name_field]:
            continue
        try:
            ident = int(fields[id_field])
        except ValueError:
            continue
        if ident < 0:
            continue
        result.setdefault(ident, fields[name_field])
    return result


def parse_passwd(text: str) -> dict[int, str]:
    """UID -> user name from /etc/passwd text; the first name wins for a shared UID."""
    return _parse_colon_file(text, name_field=0, id_field=2, min_fields=7)


def parse_group(text: str) -> dict[int, str]:
    """GID -> group name from /etc/group text; the first name wins for a shared GID."""
    return _parse_colon_file(text, name_field=0, id_field=2, min_fields=4)


# -- findings ---------------------------------------------------------------------------------


class RInstallation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: str
    version: str | None
    executable: str


class RStudioSession(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str | None
    rsession: str


class KernelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    display_name: str | None
    language: str | None
    argv0: str | None
    path: str


class ImageFindings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str
    os: str
    users: dict[int, str]
    groups: dict[int, str]
    r_installations: list[RInstallation]
    rstudio: RStudioSession | None
    kernels: list[KernelSpec]
    pythons: list[str]
    problems: list[str] = Field(default_factory=list)
    passwd_found: bool = True
    """False when the image has no /etc/passwd at all (``users`` is then empty)."""
    group_found: bool = True
    """False when the image has no /etc/group at all (``groups`` is then empty)."""


def _r_version(fs: LayeredFilesystem, home: str) -> str | None:
    for subpath in R_DESCRIPTION_SUBPATHS:
        text = fs.read_text(f"{home}/{subpath}")
        if text is not None:
            match = _DESCRIPTION_VERSION_RE.search(text)
            if match:
                return match.group(1)
    # "/opt/R/4.1.3" names its version; so does a home that is a symlink to such a directory.
    for candidate in (home, fs.realpath(home)):
        name = _split(normalise_path(candidate))[1] if candidate else ""
        if _VERSION_DIR_RE.match(name):
            return name
    return None


def find_r_installations(fs: LayeredFilesystem) -> list[RInstallation]:
    """R installations in the directories RStudio scans: homes holding ``bin/R``."""
    found: dict[str, RInstallation] = {}
    for pattern in R_HOME_PATTERNS:
        for home in fs.glob(pattern):
            executable = f"{home}/bin/R"
            if home in found or not fs.is_file(executable):
                continue
            found[home] = RInstallation(
                home=home, version=_r_version(fs, home), executable=executable
            )
    return [found[home] for home in sorted(found)]


def find_rstudio(fs: LayeredFilesystem) -> RStudioSession | None:
    """RStudio Workbench session components, when ``rsession`` is in the image."""
    if not fs.is_file(RSTUDIO_RSESSION):
        return None
    text = fs.read_text(RSTUDIO_VERSION_FILE)
    version = text.strip() if text is not None else None
    return RStudioSession(version=version or None, rsession=RSTUDIO_RSESSION)


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _find_kernels(fs: LayeredFilesystem) -> tuple[list[KernelSpec], list[str]]:
    kernels: list[KernelSpec] = []
    problems: list[str] = []
    seen: set[str] = set()
    for pattern in KERNEL_PREFIXES:
        for prefix in fs.glob(pattern):
            kernels_dir = f"{prefix}/share/jupyter/kernels"
            for name in fs.listdir(kernels_dir):
                path = f"{kernels_dir}/{name}/kernel.json"
                if path in seen or not fs.is_file(path):
                    continue
                seen.add(path)
                text = fs.read_text(path)
                if text is None:
                    problems.append(f"{path}: not read (too large)")
                    continue
                try:
                    spec = json.loads(text)
                except ValueError as exc:
                    problems.append(f"{path}: not valid JSON ({exc})")
                    continue
                if not isinstance(spec, dict):
                    problems.append(f"{path}: not a JSON object")
                    continue
                argv = spec.get("argv")
                argv0 = _optional_str(argv[0]) if isinstance(argv, list) and argv else None
                if argv0 is None:
                    problems.append(f"{path}: no argv to start the kernel with")
                kernels.append(
                    KernelSpec(
                        name=name,
                        display_name=_optional_str(spec.get("display_name")),
                        language=_optional_str(spec.get("language")),
                        argv0=argv0,
                        path=path,
                    )
                )
    return kernels, problems


def find_kernels(fs: LayeredFilesystem) -> list[KernelSpec]:
    """Jupyter kernel specs, in the order of :data:`KERNEL_PREFIXES` then by name."""
    return _find_kernels(fs)[0]


def find_pythons(fs: LayeredFilesystem) -> list[str]:
    """Python interpreters at the usual places (symlinks followed to a regular file)."""
    found: list[str] = []
    for pattern in PYTHON_PATTERNS:
        found.extend(path for path in fs.glob(pattern) if fs.is_file(path))
    return found


def inspect_filesystem(fs: LayeredFilesystem, architecture: str, os: str) -> ImageFindings:
    """Everything the checks need, read from an image's merged filesystem."""
    problems = fs.problems
    users: dict[int, str] = {}
    groups: dict[int, str] = {}
    passwd_text = fs.read_text("/etc/passwd")
    if passwd_text is not None:
        users = parse_passwd(passwd_text)
    elif fs.exists("/etc/passwd"):
        problems.append("/etc/passwd exists but could not be read")
    group_text = fs.read_text("/etc/group")
    if group_text is not None:
        groups = parse_group(group_text)
    elif fs.exists("/etc/group"):
        problems.append("/etc/group exists but could not be read")
    kernels, kernel_problems = _find_kernels(fs)
    problems.extend(kernel_problems)
    return ImageFindings(
        architecture=architecture,
        os=os,
        users=users,
        groups=groups,
        r_installations=find_r_installations(fs),
        rstudio=find_rstudio(fs),
        kernels=kernels,
        pythons=find_pythons(fs),
        problems=problems,
        passwd_found=fs.exists("/etc/passwd"),
        group_found=fs.exists("/etc/group"),
    )


# -- checks -----------------------------------------------------------------------------------


def normalise_architecture(architecture: str) -> str:
    """The OCI name of an architecture: x86_64 -> amd64, aarch64 -> arm64."""
    lowered = architecture.strip().lower()
    return _ARCH_ALIASES.get(lowered, lowered)


def check_architecture(findings: ImageFindings, expected: str) -> list[str]:
    actual = normalise_architecture(findings.architecture)
    wanted = normalise_architecture(expected)
    if not actual:
        return [f"image architecture is unknown, domain runs {wanted}"]
    if actual != wanted:
        return [f"image is {actual}, domain runs {wanted}"]
    return []


def check_user(findings: ImageFindings, uid: int, gid: int) -> list[str]:
    reasons: list[str] = []
    if uid not in findings.users:
        suffix = "" if findings.passwd_found else " (the image has no /etc/passwd)"
        reasons.append(f"UID {uid} not in /etc/passwd{suffix}")
    if gid not in findings.groups:
        suffix = "" if findings.group_found else " (the image has no /etc/group)"
        reasons.append(f"GID {gid} not in /etc/group{suffix}")
    return reasons


def check_r(findings: ImageFindings) -> list[str]:
    if findings.r_installations:
        return []
    return [f"no R installation in any directory RStudio scans ({', '.join(R_HOME_PATTERNS)})"]


def _same_rstudio_version(left: str, right: str) -> bool:
    # Release builds are written both "2022.02.2+485.pro2" and (as packages) "2022.02.2-485.pro2".
    return left.strip().replace("+", "-") == right.strip().replace("+", "-")


def check_rstudio(findings: ImageFindings, expected_version: str | None) -> list[str]:
    if findings.rstudio is None:
        return [f"RStudio Workbench session components not found ({RSTUDIO_RSESSION})"]
    actual = findings.rstudio.version
    if (
        expected_version is not None
        and actual is not None
        and not _same_rstudio_version(actual, expected_version)
    ):
        return [f"RStudio session components are {actual}, the domain runs {expected_version}"]
    return []


def check_kernels(findings: ImageFindings, kernel_names: list[str]) -> list[str]:
    available = sorted({kernel.name for kernel in findings.kernels})
    if available:
        have = f"the image has kernels {available}"
    else:
        have = "the image has no Jupyter kernel specs"
    return [f"kernel {name!r} not found: {have}" for name in kernel_names if name not in available]
