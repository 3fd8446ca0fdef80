"""Unit tests for the image builder's layered-filesystem inspection and its checks."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable

import pytest

from services.image_builder.domain.inspection import (
    R_HOME_PATTERNS,
    ImageFindings,
    InspectionError,
    KernelSpec,
    LayeredFilesystem,
    RInstallation,
    RStudioSession,
    check_architecture,
    check_kernels,
    check_r,
    check_rstudio,
    check_user,
    find_kernels,
    find_pythons,
    find_r_installations,
    find_rstudio,
    inspect_filesystem,
    is_interesting,
    normalise_path,
    parse_group,
    parse_passwd,
)

Member = tuple[tarfile.TarInfo, bytes | None]


def file(name: str, data: bytes | str = b"", mode: int = 0o644) -> Member:
    raw = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    info.mode = mode
    return info, raw


def directory(name: str, mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def fifo(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return info, None


def layer(*members: Member, gz: bool = False) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def build(*layers: io.BytesIO, wanted: Callable[[str], bool] = is_interesting) -> LayeredFilesystem:
    fs = LayeredFilesystem(wanted)
    for stream in layers:
        fs.apply_layer(stream)
    return fs


PASSWD = """\
root:x:0:0:root:/root:/bin/bash
# a comment
sagemaker-user:x:1000:100::/home/sagemaker-user:/bin/bash
"""
GROUP = "root:x:0:\nusers:x:100:sagemaker-user\n"


# -- the layered filesystem -----------------------------------------------------------------


def test_normalise_path() -> None:
    assert normalise_path("./etc/passwd") == "/etc/passwd"
    assert normalise_path("/etc/passwd") == "/etc/passwd"
    assert normalise_path("usr/lib/") == "/usr/lib"
    assert normalise_path("./") == "/"
    assert normalise_path("../../etc//x") == "/etc/x"


@pytest.mark.parametrize("gz", [False, True])
def test_simple_files_and_implicit_parents(gz: bool) -> None:
    fs = build(
        layer(
            directory("./etc/"),
            file("./etc/passwd", PASSWD),
            file("etc/hostname", "box\n"),
            file("/usr/bin/tool", b"\x7fELF", mode=0o755),
            fifo("run/pipe"),
            gz=gz,
        )
    )
    assert fs.read_text("/etc/passwd") == PASSWD
    assert fs.read_text("etc/passwd") == PASSWD  # lookups normalise too
    assert fs.is_file("/etc/hostname")
    assert fs.read_text("/etc/hostname") is None  # not interesting: content not kept
    assert fs.is_dir("/usr/bin")  # created implicitly for /usr/bin/tool
    assert fs.is_dir("/usr") and fs.is_dir("/")
    assert fs.mode("/usr/bin/tool") == 0o755
    assert fs.listdir("/") == ["etc", "run", "usr"]
    assert fs.listdir("/etc") == ["hostname", "passwd"]
    assert fs.listdir("/etc/passwd") == []
    assert fs.listdir("/missing") == []
    assert fs.kind("/run/pipe") == "other"
    assert fs.exists("/run/pipe") and not fs.is_file("/run/pipe") and not fs.is_dir("/run/pipe")
    assert not fs.exists("/etc/shadow")
    assert fs.read_text("/etc/shadow") is None


def test_later_layers_override_earlier_ones() -> None:
    fs = build(
        layer(
            file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            file("opt/thing", "a file"),
            file("srv/tree/a"),
            file("srv/tree/sub/b"),
            directory("var/cache", mode=0o700),
            file("var/cache/keep"),
        ),
        layer(
            file("etc/passwd", PASSWD),
            file("opt/thing/inside"),  # a file becomes a directory
            file("srv/tree", "now a file"),  # a directory becomes a file, its tree gone
            directory("var/cache", mode=0o750),  # a directory over a directory merges
            gz=True,
        ),
    )
    assert fs.read_text("/etc/passwd") == PASSWD
    assert fs.is_dir("/opt/thing") and fs.is_file("/opt/thing/inside")
    assert fs.is_file("/srv/tree")
    assert not fs.exists("/srv/tree/a") and not fs.exists("/srv/tree/sub/b")
    assert fs.listdir("/srv") == ["tree"]
    assert fs.mode("/var/cache") == 0o750
    assert fs.listdir("/var/cache") == ["keep"]
    # The replaced tree is gone for good: a directory there later starts empty.
    fs.apply_layer(layer(directory("srv/tree"), file("srv/tree/new")))
    assert fs.listdir("/srv/tree") == ["new"]
    assert not fs.exists("/srv/tree/a")


def test_whiteout_deletes_a_file_and_a_directory_tree() -> None:
    fs = build(
        layer(
            file("etc/passwd", PASSWD),
            file("etc/group", GROUP),
            file("opt/conda/bin/python"),
            file("opt/conda/lib/x.py"),
            file("opt/keep"),
        ),
        layer(file("etc/.wh.group"), file("opt/.wh.conda"), file("opt/.wh.never-existed")),
    )
    assert not fs.exists("/etc/group")
    assert fs.read_text("/etc/group") is None
    assert fs.read_text("/etc/passwd") == PASSWD
    assert not fs.exists("/opt/conda")
    assert not fs.exists("/opt/conda/bin/python")
    assert fs.listdir("/opt") == ["keep"]
    assert fs.listdir("/etc") == ["passwd"]


def test_whiteout_only_hides_lower_layers() -> None:
    fs = build(
        layer(file("etc/group", "old:x:1:\n")),
        # The whiteout comes after the new file in the archive but must not delete it.
        layer(file("etc/group", GROUP), file("etc/.wh.group")),
    )
    assert fs.read_text("/etc/group") == GROUP


def test_opaque_directory_hides_lower_entries_but_not_its_own_layer() -> None:
    fs = build(
        layer(
            file("opt/a/x"),
            file("opt/a/sub/y"),
            file("opt/b/untouched"),
        ),
        layer(
            directory("opt/a"),
            file("opt/a/z"),
            file("opt/a/.wh..wh..opq"),  # marker after z: z still survives
            directory("opt/a/.wh..wh.plnk"),  # aufs metadata: neither files nor whiteouts
            file("opt/a/.wh..wh.plnk/1234.5678"),
            file("opt/b/.wh..wh.orph"),
        ),
    )
    assert fs.listdir("/opt/a") == ["z"]
    assert not fs.exists("/opt/a/x") and not fs.exists("/opt/a/sub/y")
    assert fs.listdir("/opt/b") == ["untouched"]


def test_opaque_marker_without_a_directory_entry_creates_it() -> None:
    fs = build(layer(file("a/old")), layer(file("a/.wh..wh..opq"), file("b/new")))
    assert fs.is_dir("/a") and fs.listdir("/a") == []
    assert fs.listdir("/") == ["a", "b"]


def test_symlinks_relative_absolute_chains_and_loops() -> None:
    fs = build(
        layer(
            file("opt/R/4.1.3/bin/R", "#!/bin/sh\n", mode=0o755),
            symlink("usr/lib/R", "/opt/R/4.1.3"),  # absolute
            symlink("usr/local/lib/R", "../../../opt/R/4.1.3"),  # relative
            symlink("usr/bin/R", "../lib/R/bin/R"),  # through another symlink
            symlink("etc/alternatives/r", "/usr/bin/R"),
            symlink("loop/a", "b"),
            symlink("loop/b", "a"),
            symlink("dangling", "/nowhere"),
            symlink("usr/share/dot", "./../lib/./R"),
            file("etc/passwd", PASSWD),
            symlink("etc/passwd-link", "passwd"),
        ),
    )
    for path in ("/usr/lib/R/bin/R", "/usr/local/lib/R/bin/R", "/usr/bin/R", "/etc/alternatives/r"):
        assert fs.is_file(path), path
        assert fs.read_text(path) == "#!/bin/sh\n"
    assert fs.realpath("/etc/alternatives/r") == "/opt/R/4.1.3/bin/R"
    assert fs.is_dir("/usr/lib/R") and fs.kind("/usr/lib/R") == "symlink"
    assert fs.read_link("/usr/lib/R") == "/opt/R/4.1.3"
    assert fs.read_link("/opt/R") is None
    assert fs.listdir("/usr/lib/R") == ["bin"]
    assert fs.is_dir("/usr/share/dot/bin")
    assert fs.read_text("/etc/passwd-link") == PASSWD
    assert not fs.exists("/loop/a") and fs.lexists("/loop/a")
    assert not fs.exists("/dangling") and fs.lexists("/dangling")
    assert not fs.exists("/etc/passwd/below-a-file")
    assert not fs.exists("/etc/passwd/../passwd")  # a file is not a directory, even for ".."
    assert fs.read_text("/usr/lib/R/../../../etc/passwd") == PASSWD  # ".." after the link


def test_symlink_hop_limit() -> None:
    chain = [symlink(f"l/{i}", f"{i + 1}") for i in range(45)]
    fs = build(layer(*chain, file("l/45", "end")))
    assert fs.exists("/l/5")  # 40 hops to /l/45
    assert not fs.exists("/l/4")  # 41 hops


def test_hardlinks_share_content_even_after_the_target_goes() -> None:
    fs = build(
        layer(
            file("etc/passwd", PASSWD),
            hardlink("etc/passwd-hard", "etc/passwd"),
            hardlink("home/u/.local/share/jupyter/kernels/k/kernel.json", "./etc/passwd"),
            file("usr/bin/big"),
            hardlink("opt/R/4.0.0/bin/R", "usr/bin/big"),  # content of the target not kept
            hardlink("broken", "no/such/file"),
        ),
        layer(file("etc/.wh.passwd")),
    )
    assert not fs.exists("/etc/passwd")
    assert fs.kind("/etc/passwd-hard") == "hardlink"
    assert fs.is_file("/etc/passwd-hard")
    assert fs.read_text("/etc/passwd-hard") == PASSWD
    assert fs.read_text("/home/u/.local/share/jupyter/kernels/k/kernel.json") == PASSWD
    assert fs.is_file("/opt/R/4.0.0/bin/R") and fs.read_text("/opt/R/4.0.0/bin/R") is None
    assert fs.problems == ["layer 1: hard link /broken -> /no/such/file has no target"]


def test_only_small_interesting_files_are_kept() -> None:
    big = "x" * (256 * 1024 + 1)
    exact = "y" * (256 * 1024)
    fs = build(
        layer(
            file("etc/passwd", big),
            file("etc/group", exact),
            file("etc/motd", "hello"),
        )
    )
    assert fs.is_file("/etc/passwd") and fs.read_text("/etc/passwd") is None
    assert fs.read_text("/etc/group") == exact
    assert fs.read_text("/etc/motd") is None
    assert fs.problems == [f"/etc/passwd is {len(big)} bytes, over 262144; content not read"]


def test_custom_interest_predicate() -> None:
    fs = build(
        layer(file("etc/motd", "hello"), file("etc/passwd", PASSWD)),
        wanted=lambda path: path == "/etc/motd",
    )
    assert fs.read_text("/etc/motd") == "hello"
    assert fs.read_text("/etc/passwd") is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/passwd", True),
        ("/etc/group", True),
        ("/etc/shadow", False),
        ("/usr/lib/R/library/base/DESCRIPTION", True),
        ("/opt/R/4.2.0/lib/R/library/base/DESCRIPTION", True),
        ("/usr/lib/R/library/stats/DESCRIPTION", False),
        ("/usr/lib/rstudio-server/VERSION", True),
        ("/usr/lib/rstudio-server/bin/rsession", False),
        ("/usr/local/share/jupyter/kernels/python3/kernel.json", True),
        ("/srv/kernel.json", False),
        ("/opt/R/4.1.3/bin/R", True),
        ("/opt/R/4.1.3/bin/Rscript", False),
    ],
)
def test_is_interesting(path: str, expected: bool) -> None:
    assert is_interesting(path) is expected


def test_glob_matches_within_one_component() -> None:
    fs = build(
        layer(
            file("opt/R/4.1.3/bin/R"),
            file("opt/R/4.2.0/bin/R"),
            file("opt/R/.hidden/bin/R"),
            file("opt/R/notes.txt"),
            symlink("opt/R/current", "4.2.0"),
            file("opt/conda/envs/a/bin/python"),
            file("opt/conda/envs/b/bin/ruby"),
        )
    )
    assert fs.glob("/opt/R/*") == [
        "/opt/R/4.1.3",
        "/opt/R/4.2.0",
        "/opt/R/current",
        "/opt/R/notes.txt",
    ]
    assert fs.glob("/opt/R/4.*") == ["/opt/R/4.1.3", "/opt/R/4.2.0"]
    assert fs.glob("/opt/R/*/bin/R") == [
        "/opt/R/4.1.3/bin/R",
        "/opt/R/4.2.0/bin/R",
        "/opt/R/current/bin/R",
    ]
    assert fs.glob("/opt/*") == ["/opt/R", "/opt/conda"]
    assert fs.glob("/opt/conda/envs/*/bin/python") == ["/opt/conda/envs/a/bin/python"]
    assert fs.glob("/opt/R") == ["/opt/R"]
    assert fs.glob("/nope/*") == []


# -- guards and malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"definitely not a tar archive" * 40,
        b"",
        layer(file("a", "x" * 5000), file("b", "y" * 5000)).getvalue()[:3000],
        layer(file("a", "x" * 5000), gz=True).getvalue()[:40],
    ],
    ids=["garbage", "empty", "truncated-tar", "truncated-gzip"],
)
def test_malformed_layer_raises_inspection_error(data: bytes) -> None:
    fs = LayeredFilesystem()
    with pytest.raises(InspectionError, match=r"layer 1 is not a readable tar archive"):
        fs.apply_layer(io.BytesIO(data))


def test_max_entries_guard_within_a_layer() -> None:
    fs = LayeredFilesystem(max_entries=10)
    with pytest.raises(InspectionError, match="more than 10 entries"):
        fs.apply_layer(layer(*(file(f"f{i}") for i in range(11))))


def test_max_entries_guard_across_layers() -> None:
    fs = LayeredFilesystem(max_entries=10)
    fs.apply_layer(layer(*(file(f"a/f{i}") for i in range(5))))
    assert len(fs) == 7  # the root, /a and five files
    fs.apply_layer(layer(*(file(f"a/f{i}") for i in range(5))))  # overwrites add nothing
    assert len(fs) == 7
    with pytest.raises(InspectionError, match="more than 10 filesystem entries"):
        fs.apply_layer(layer(*(file(f"b/f{i}") for i in range(5))))


def test_kept_content_guard() -> None:
    fs = LayeredFilesystem(max_content_bytes=100)
    with pytest.raises(InspectionError, match="more than 100 bytes"):
        fs.apply_layer(layer(file("etc/passwd", "p" * 60), file("etc/group", "g" * 60)))


# -- parsers ---------------------------------------------------------------------------------


def test_parse_passwd_skips_comments_blank_and_malformed_lines() -> None:
    text = (
        PASSWD
        + "\n   \n"
        + "broken-line\n"
        + "toofew:x:5:5\n"
        + "baduid:x:abc:1::/:/bin/sh\n"
        + "negative:x:-1:1::/:/bin/sh\n"
        + ":x:7:7::/:/bin/sh\n"
        + "dup:x:1000:100::/:/bin/sh\n"
        + "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\r\n"
    )
    assert parse_passwd(text) == {0: "root", 1000: "sagemaker-user", 65534: "nobody"}


def test_parse_group() -> None:
    text = GROUP + "# comment\nbad:x:nope:\nshort:x\nstaff:x:50:a,b\n"
    assert parse_group(text) == {0: "root", 100: "users", 50: "staff"}


# -- finders ---------------------------------------------------------------------------------


def r_layers() -> list[io.BytesIO]:
    return [
        layer(
            file("opt/R/4.1.3/bin/R", "#!/bin/sh\n", mode=0o755),
            file("opt/R/4.2.0/bin/R", "#!/bin/sh\n", mode=0o755),
            file("opt/R/4.2.0/lib/R/library/base/DESCRIPTION", "Package: base\nVersion: 4.2.0\n"),
            file("opt/R/devel/bin/R"),
            file("opt/R/4.0.0/README"),  # no bin/R: not an installation
            directory("opt/R/3.6.3/bin/R"),  # bin/R is a directory: not an installation
            gz=True,
        ),
        layer(
            file("usr/lib/R/bin/R"),
            file(
                "usr/lib/R/library/base/DESCRIPTION",
                "Package: base\r\nTitle: The R Base Package\r\nVersion: 4.3.1\r\n",
            ),
            symlink("usr/local/lib/R", "/opt/R/4.1.3"),
            symlink("opt/local/lib/R", "../../R/devel"),
            symlink("usr/lib64/R", "/nowhere"),
        ),
    ]


def test_find_r_installations() -> None:
    fs = build(*r_layers())
    assert find_r_installations(fs) == [
        RInstallation(home="/opt/R/4.1.3", version="4.1.3", executable="/opt/R/4.1.3/bin/R"),
        RInstallation(home="/opt/R/4.2.0", version="4.2.0", executable="/opt/R/4.2.0/bin/R"),
        RInstallation(home="/opt/R/devel", version=None, executable="/opt/R/devel/bin/R"),
        RInstallation(home="/opt/local/lib/R", version=None, executable="/opt/local/lib/R/bin/R"),
        RInstallation(home="/usr/lib/R", version="4.3.1", executable="/usr/lib/R/bin/R"),
        RInstallation(
            home="/usr/local/lib/R", version="4.1.3", executable="/usr/local/lib/R/bin/R"
        ),
    ]


def test_description_version_wins_over_the_directory_name() -> None:
    fs = build(
        layer(
            file("opt/R/4.1.3/bin/R"),
            file("opt/R/4.1.3/lib/R/library/base/DESCRIPTION", "Version: 4.1.2\n"),
        )
    )
    assert [r.version for r in find_r_installations(fs)] == ["4.1.2"]


def test_find_r_installations_none() -> None:
    fs = build(layer(file("usr/bin/R"), file("opt/R/4.1.3/lib/R/library/base/DESCRIPTION")))
    assert find_r_installations(fs) == []


def rstudio_layer(version: str | None = "2022.02.2-485.pro2\n") -> io.BytesIO:
    members = [file("usr/lib/rstudio-server/bin/rsession", b"\x7fELF", mode=0o755)]
    if version is not None:
        members.append(file("usr/lib/rstudio-server/VERSION", version))
    return layer(*members)


def test_find_rstudio() -> None:
    found = find_rstudio(build(rstudio_layer()))
    assert found == RStudioSession(
        version="2022.02.2-485.pro2", rsession="/usr/lib/rstudio-server/bin/rsession"
    )
    assert find_rstudio(build(rstudio_layer(None))) == RStudioSession(
        version=None, rsession="/usr/lib/rstudio-server/bin/rsession"
    )
    assert find_rstudio(build(rstudio_layer("  \n"))) == RStudioSession(
        version=None, rsession="/usr/lib/rstudio-server/bin/rsession"
    )
    only_version = build(layer(file("usr/lib/rstudio-server/VERSION", "2022.02.2-485.pro2")))
    assert find_rstudio(only_version) is None


def kernel_json(display: str, language: str, argv0: str) -> str:
    argv = [argv0, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    return json.dumps({"argv": argv, "display_name": display, "language": language})


def kernel_layers() -> list[io.BytesIO]:
    return [
        layer(
            file(
                "usr/local/share/jupyter/kernels/python3/kernel.json",
                kernel_json("Python 3", "python", "/usr/local/bin/python3"),
            ),
            file(
                "opt/conda/envs/r/share/jupyter/kernels/ir/kernel.json",
                kernel_json("R", "R", "/opt/conda/envs/r/bin/R"),
            ),
            file("home/sagemaker-user/.local/share/jupyter/kernels/bad/kernel.json", "{nope"),
            file("root/.local/share/jupyter/kernels/list/kernel.json", "[1, 2]"),
            file(
                "opt/conda/share/jupyter/kernels/odd/kernel.json",
                json.dumps({"argv": [], "display_name": 3}),
            ),
            directory("usr/share/jupyter/kernels/empty"),  # no kernel.json: ignored
            file("srv/share/jupyter/kernels/elsewhere/kernel.json", "{}"),  # not a prefix
            file("usr/bin/python3"),
            symlink("usr/local/bin/python3", "/usr/bin/python3"),
            file("opt/conda/envs/r/bin/python"),
            symlink("opt/conda/envs/gone/bin/python", "/nowhere"),
            file("opt/conda/envs/r/bin/R"),
        )
    ]


def test_find_kernels() -> None:
    fs = build(*kernel_layers())
    assert find_kernels(fs) == [
        KernelSpec(
            name="python3",
            display_name="Python 3",
            language="python",
            argv0="/usr/local/bin/python3",
            path="/usr/local/share/jupyter/kernels/python3/kernel.json",
        ),
        KernelSpec(
            name="odd",
            display_name=None,
            language=None,
            argv0=None,
            path="/opt/conda/share/jupyter/kernels/odd/kernel.json",
        ),
        KernelSpec(
            name="ir",
            display_name="R",
            language="R",
            argv0="/opt/conda/envs/r/bin/R",
            path="/opt/conda/envs/r/share/jupyter/kernels/ir/kernel.json",
        ),
    ]


def test_find_pythons() -> None:
    fs = build(*kernel_layers())
    assert find_pythons(fs) == [
        "/usr/bin/python3",
        "/usr/local/bin/python3",
        "/opt/conda/envs/r/bin/python",
    ]


def test_inspect_filesystem_collects_everything() -> None:
    fs = build(
        layer(file("etc/passwd", PASSWD), file("etc/group", GROUP), hardlink("x", "missing")),
        *r_layers(),
        rstudio_layer(),
        *kernel_layers(),
    )
    findings = inspect_filesystem(fs, architecture="amd64", os="linux")
    assert findings.architecture == "amd64" and findings.os == "linux"
    assert findings.users == {0: "root", 1000: "sagemaker-user"}
    assert findings.groups == {0: "root", 100: "users"}
    assert findings.passwd_found and findings.group_found
    assert [r.home for r in findings.r_installations][:2] == ["/opt/R/4.1.3", "/opt/R/4.2.0"]
    assert findings.rstudio is not None and findings.rstudio.version == "2022.02.2-485.pro2"
    assert [k.name for k in findings.kernels] == ["python3", "odd", "ir"]
    assert findings.pythons[0] == "/usr/bin/python3"
    problems = findings.problems
    assert problems[0] == "layer 1: hard link /x -> /missing has no target"
    assert any(
        p.startswith("/opt/conda/share/jupyter/kernels/odd/kernel.json: no argv") for p in problems
    )
    assert any(
        p.startswith(
            "/home/sagemaker-user/.local/share/jupyter/kernels/bad/kernel.json: not valid JSON"
        )
        for p in problems
    )
    assert "/root/.local/share/jupyter/kernels/list/kernel.json: not a JSON object" in problems
    assert len(problems) == 4
    # The findings are a contract payload: they survive a JSON round trip.
    assert ImageFindings.model_validate_json(findings.model_dump_json()) == findings


def test_inspect_filesystem_without_passwd_or_group() -> None:
    findings = inspect_filesystem(build(layer(file("bin/sh"))), architecture="arm64", os="linux")
    assert findings.users == {} and findings.groups == {}
    assert not findings.passwd_found and not findings.group_found
    assert findings.r_installations == [] and findings.rstudio is None
    assert findings.kernels == [] and findings.pythons == [] and findings.problems == []


def test_inspect_filesystem_notes_an_unreadable_passwd() -> None:
    fs = build(layer(file("etc/passwd", "x" * (300 * 1024)), file("etc/group", GROUP)))
    findings = inspect_filesystem(fs, architecture="amd64", os="linux")
    assert findings.passwd_found and findings.users == {}
    assert "/etc/passwd exists but could not be read" in findings.problems


# -- checks ----------------------------------------------------------------------------------


def findings(**overrides: object) -> ImageFindings:
    base: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "users": {0: "root", 1000: "sagemaker-user"},
        "groups": {0: "root", 100: "users"},
        "r_installations": [
            RInstallation(home="/opt/R/4.1.3", version=None, executable="/opt/R/4.1.3/bin/R")
        ],
        "rstudio": RStudioSession(
            version="2022.02.2-485.pro2", rsession="/usr/lib/rstudio-server/bin/rsession"
        ),
        "kernels": [
            KernelSpec(name="ir", display_name="R", language="R", argv0="R", path="/k.json")
        ],
        "pythons": [],
    }
    base.update(overrides)
    return ImageFindings.model_validate(base)


@pytest.mark.parametrize(
    ("image", "domain", "reasons"),
    [
        ("amd64", "amd64", []),
        ("x86_64", "amd64", []),
        ("amd64", "X86_64", []),
        ("aarch64", "arm64", []),
        ("arm64", "amd64", ["image is arm64, domain runs amd64"]),
        ("aarch64", "x86_64", ["image is arm64, domain runs amd64"]),
        ("", "amd64", ["image architecture is unknown, domain runs amd64"]),
    ],
)
def test_check_architecture(image: str, domain: str, reasons: list[str]) -> None:
    assert check_architecture(findings(architecture=image), domain) == reasons


def test_check_user() -> None:
    assert check_user(findings(), 1000, 100) == []
    assert check_user(findings(), 1001, 101) == [
        "UID 1001 not in /etc/passwd",
        "GID 101 not in /etc/group",
    ]
    assert check_user(findings(), 0, 101) == ["GID 101 not in /etc/group"]
    missing = findings(users={}, groups={}, passwd_found=False, group_found=False)
    assert check_user(missing, 1000, 100) == [
        "UID 1000 not in /etc/passwd (the image has no /etc/passwd)",
        "GID 100 not in /etc/group (the image has no /etc/group)",
    ]


def test_check_r() -> None:
    assert check_r(findings()) == []  # a version that could not be read is fine
    reasons = check_r(findings(r_installations=[]))
    assert reasons == [
        "no R installation in any directory RStudio scans (/usr/lib/R, /usr/lib64/R, "
        "/usr/local/lib/R, /usr/local/lib64/R, /opt/local/lib/R, /opt/local/lib64/R, "
        "/opt/R/*, /opt/local/R/*)"
    ]
    assert all(pattern in reasons[0] for pattern in R_HOME_PATTERNS)


@pytest.mark.parametrize(
    ("image_version", "expected", "reasons"),
    [
        ("2022.02.2-485.pro2", None, []),
        ("2022.02.2-485.pro2", "2022.02.2-485.pro2", []),
        ("2022.02.2-485.pro2", "2022.02.2+485.pro2", []),
        (None, "2023.03.0-386.pro1", []),
        (
            "2022.02.2-485.pro2",
            "2023.03.0-386.pro1",
            [
                "RStudio session components are 2022.02.2-485.pro2, the domain runs 2023.03.0-386.pro1"
            ],
        ),
    ],
)
def test_check_rstudio_versions(
    image_version: str | None, expected: str | None, reasons: list[str]
) -> None:
    session = RStudioSession(version=image_version, rsession="/usr/lib/rstudio-server/bin/rsession")
    assert check_rstudio(findings(rstudio=session), expected) == reasons


@pytest.mark.parametrize("expected", [None, "2023.03.0-386.pro1"])
def test_check_rstudio_missing(expected: str | None) -> None:
    assert check_rstudio(findings(rstudio=None), expected) == [
        "RStudio Workbench session components not found (/usr/lib/rstudio-server/bin/rsession)"
    ]


def test_check_kernels() -> None:
    assert check_kernels(findings(), ["ir"]) == []
    assert check_kernels(findings(), []) == []
    assert check_kernels(findings(), ["python3", "ir", "julia"]) == [
        "kernel 'python3' not found: the image has kernels ['ir']",
        "kernel 'julia' not found: the image has kernels ['ir']",
    ]
    assert check_kernels(findings(kernels=[]), ["python3"]) == [
        "kernel 'python3' not found: the image has no Jupyter kernel specs"
    ]


def test_checks_on_a_real_inspection() -> None:
    fs = build(
        layer(file("etc/passwd", PASSWD), file("etc/group", GROUP)),
        *r_layers(),
        rstudio_layer(),
        *kernel_layers(),
    )
    result = inspect_filesystem(fs, architecture="x86_64", os="linux")
    checks: list[Callable[[], list[str]]] = [
        lambda: check_architecture(result, "amd64"),
        lambda: check_user(result, 1000, 100),
        lambda: check_r(result),
        lambda: check_rstudio(result, "2022.02.2+485.pro2"),
        lambda: check_kernels(result, ["python3", "ir"]),
    ]
    assert [check() for check in checks] == [[], [], [], [], []]
    assert check_rstudio(result, "2023.03.0-386.pro1") == [
        "RStudio session components are 2022.02.2-485.pro2, the domain runs 2023.03.0-386.pro1"
    ]
