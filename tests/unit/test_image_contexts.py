"""Build contexts: .dockerignore when packing, refusal of entries that would escape when unpacking."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from runtime.errors import ValidationFailed
from services.image_builder.adapters.contexts import pack_context, unpack_context


def _names(archive: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        return set(tar.getnames())


def test_pack_honours_dockerignore_and_keeps_the_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text(
        "# comment\n*.log\nbuild\n!build/keep.txt\nDockerfile\n"
    )
    (tmp_path / "app.py").write_text("print(1)")
    (tmp_path / "debug.log").write_text("noise")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.bin").write_text("x")
    (tmp_path / "build" / "keep.txt").write_text("kept")
    names = _names(pack_context(tmp_path, 2**20))
    assert {"Dockerfile", "app.py", "build/keep.txt"} <= names
    assert "debug.log" not in names and "build/out.bin" not in names


def test_pack_refuses_a_context_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "big").write_bytes(b"x" * 4096)
    with pytest.raises(ValidationFailed, match="larger than"):
        pack_context(tmp_path, 1024)


def test_round_trip_keeps_files_and_relative_links(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "Dockerfile").write_text("FROM scratch\n")
    (source / "sub" / "data.txt").write_text("hello")
    (source / "link").symlink_to("sub/data.txt")
    archive = tmp_path / "ctx.tar.gz"
    archive.write_bytes(pack_context(source, 2**20))
    unpack_context(archive, tmp_path / "out", 2**20)
    assert (tmp_path / "out" / "sub" / "data.txt").read_text() == "hello"
    assert (tmp_path / "out" / "link").read_text() == "hello"


def _tar(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, mode="w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_file("../escape"), "escapes the context"),
        (_file("a/../../escape"), "escapes the context"),
        (_file("/etc/passwd"), "absolute path"),
        (_link("evil", "/etc/shadow"), "links outside the context"),
        (_link("sub/evil", "../../outside"), "links outside the context"),
        (_link("hard", "Dockerfile", tarfile.LNKTYPE), "hard link"),
        (_link("dev", "", tarfile.CHRTYPE), "device or special file"),
    ],
)
def test_unpack_refuses_entries_that_escape(
    tmp_path: Path, member: tarfile.TarInfo, reason: str
) -> None:
    archive = _tar(tmp_path, _file("Dockerfile"), member)
    destination = tmp_path / "out"
    with pytest.raises(ValidationFailed, match=reason):
        unpack_context(archive, destination, 2**20)
    assert not destination.exists()  # refused before anything was written


def test_unpack_refuses_oversized_and_non_tar(tmp_path: Path) -> None:
    big = _file("big")
    big.size = 4096
    with pytest.raises(ValidationFailed, match="unpacks to over"):
        unpack_context(_tar(tmp_path, big), tmp_path / "out", 1024)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ValidationFailed, match="not a tar archive"):
        unpack_context(garbage, tmp_path / "out2", 2**20)
