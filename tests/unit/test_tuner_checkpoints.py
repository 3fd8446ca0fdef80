"""Tuner checkpoints: packing is deterministic and complete, unpacking refuses what would escape."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from services.tuner.adapters.checkpoints import (
    CheckpointError,
    extract,
    fingerprint,
    marker_path,
    pack,
    replace_directory,
)

MIB = 2**20


def _checkpoint(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "epoch").write_text("4")
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "deeper" / "state.json").write_text('{"step": 12}')
    (root / "latest").symlink_to("sub/weights.bin")
    (root / "dataset").symlink_to("/etc")  # points outside: left out
    return root


def _packed(directory: Path, max_bytes: int = MIB) -> tuple[io.BytesIO, int, str, int]:
    out = io.BytesIO()
    size, sha256, content = pack(directory, out, max_bytes)
    out.seek(0)
    return out, size, sha256, content


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out.seek(0)
    return out


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_pack_round_trips_and_is_deterministic(tmp_path: Path) -> None:
    source = _checkpoint(tmp_path / "a")
    archive, size, sha256, content = _packed(source)
    assert size == len(archive.getvalue()) and content == 256 * 40 + 1 + 12
    assert _packed(source)[2] == sha256  # same content, same bytes

    target = tmp_path / "b"
    extract(archive, target, MIB)
    assert (target / "epoch").read_text() == "4"
    assert (target / "sub" / "deeper" / "state.json").read_text() == '{"step": 12}'
    assert (target / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 40
    assert os.readlink(target / "latest") == "sub/weights.bin"
    assert not (target / "dataset").exists() and not (target / "dataset").is_symlink()


def test_fingerprint_follows_changes_and_the_marker_lies_outside(tmp_path: Path) -> None:
    source = _checkpoint(tmp_path / "ckpt")
    before = fingerprint(source)
    assert fingerprint(source) == before
    (source / "epoch").write_text("5")
    assert fingerprint(source) != before
    assert marker_path(source).parent == source.parent


def test_pack_stops_at_the_size_cap(tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.mkdir()
    (source / "blob").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(CheckpointError, match="larger than"):
        pack(source, io.BytesIO(), 32 * 1024)


@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        ([(_member("/etc/evil"), b"x")], "absolute"),
        ([(_member("../evil"), b"x")], r"\.\."),
        ([(_member("ok/../../evil"), b"x")], r"\.\."),
        ([(_member("out", tarfile.SYMTYPE, "/etc/passwd"), None)], "links outside"),
        ([(_member("sub/out", tarfile.SYMTYPE, "../../x"), None)], "links outside"),
        # A link that stays inside, then a file written through it to one level up.
        (
            [
                (_member("here", tarfile.SYMTYPE, "."), None),
                (_member("here/up", tarfile.SYMTYPE, "../x"), None),
            ],
            "below a link",
        ),
        ([(_member("hard", tarfile.LNKTYPE, "/etc/passwd"), None)], "hard link"),
        ([(_member("hard", tarfile.LNKTYPE, "not-in-archive"), None)], "hard link"),
        ([(_member("dev", tarfile.CHRTYPE), None)], "device"),
        ([(_member("fifo", tarfile.FIFOTYPE), None)], "device"),
        ([(_member("twice"), b"a"), (_member("twice"), b"b")], "twice"),
        ([(_member("huge"), b"x" * 4096)], "over"),
    ],
)
def test_extract_refuses_entries_that_escape_or_are_too_big(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], refusal: str
) -> None:
    target = tmp_path / "target"
    with pytest.raises(CheckpointError, match=refusal):
        extract(_tar(*members), target, 1024)
    assert not target.exists()  # checked before anything was written
    assert not (tmp_path / "evil").exists() and not (tmp_path / "x").exists()


def test_a_hard_link_to_a_member_file_is_kept(tmp_path: Path) -> None:
    archive = _tar((_member("a"), b"data"), (_member("b", tarfile.LNKTYPE, "a"), None))
    extract(archive, tmp_path / "t", 1024)
    assert (tmp_path / "t" / "b").read_bytes() == b"data"


def test_extract_refuses_what_is_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a tar"):
        extract(io.BytesIO(b"certainly not a tar archive" * 40), tmp_path / "t", MIB)


def test_a_refused_archive_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    current = tmp_path / "trial"
    current.mkdir()
    (current / "epoch").write_text("2")
    with pytest.raises(CheckpointError):
        replace_directory(_tar((_member("../evil"), b"x")), current, MIB)
    assert (current / "epoch").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trial"]  # no staging left behind

    archive, *_ = _packed(_checkpoint(tmp_path / "other"))
    replace_directory(archive, current, MIB)
    assert (current / "epoch").read_text() == "4" and (current / "sub" / "weights.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "trial"]
