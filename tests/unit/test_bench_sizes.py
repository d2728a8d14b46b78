"""`make bench`'s package sizes (local/bench_sizes.py): when the build is reused, what is counted."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from local import bench_sizes

pytestmark = pytest.mark.unit

TEMPLATE: dict[str, Any] = {
    "Globals": {"Function": {"Layers": [{"Ref": "Layer"}]}},
    "Resources": {
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "functions/fn/"}},
        "Layer": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layers/l/"}},
    },
}


def elf(machine: int) -> bytes:
    """The first 20 bytes of a little-endian ELF header for `machine`, then padding."""
    return b"\x7fELF" + bytes([2, 1, 1]) + bytes(11) + struct.pack("<H", machine) + bytes(100)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for folder in ("functions/fn", "layers/l", ".aws-sam/build/Fn", ".aws-sam/build/Layer"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "template.yaml").write_text("x")
    (tmp_path / "functions/fn/app.py").write_text("x")
    (tmp_path / "layers/l/requirements.txt").write_text("x")
    old = 1_700_000_000
    for path in tmp_path.rglob("*"):
        os.utime(path, (old, old))
    (tmp_path / ".aws-sam/build/template.yaml").write_text("built")  # written last by sam build
    monkeypatch.setattr(bench_sizes, "REPO", tmp_path)
    monkeypatch.setattr(bench_sizes, "BUILD", tmp_path / ".aws-sam" / "build")
    return tmp_path


def test_a_build_newer_than_every_source_is_reused(repo: Path) -> None:
    assert bench_sizes.staleness(TEMPLATE) is None


def test_a_source_changed_after_the_build_makes_it_stale(repo: Path) -> None:
    # GIVEN a build, then a function's code edited
    later = (repo / ".aws-sam/build/template.yaml").stat().st_mtime + 10
    os.utime(repo / "functions/fn/app.py", (later, later))

    # WHEN the bench decides whether to build
    reason = bench_sizes.staleness(TEMPLATE)

    # THEN it rebuilds, naming the file
    assert reason == "functions/fn/app.py changed after the build"


def test_a_function_missing_from_the_build_makes_it_stale(repo: Path) -> None:
    (repo / ".aws-sam/build/Fn").rmdir()
    assert bench_sizes.staleness(TEMPLATE) == "not in the build: Fn"


def test_no_build_at_all_is_stale(repo: Path) -> None:
    (repo / ".aws-sam/build/template.yaml").unlink()
    assert bench_sizes.staleness(TEMPLATE) == "no build yet"


def test_sizes_count_every_file_and_name_native_libraries_not_built_for_arm64(tmp_path: Path) -> None:
    # GIVEN a package with a pure-Python module, an AArch64 library and an x86-64 one
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/mod.py").write_bytes(b"x" * 1000)
    (tmp_path / "pkg/_fast.cpython-313-aarch64-linux-gnu.so").write_bytes(elf(183))
    (tmp_path / "pkg/_slow.cpython-313-x86_64-linux-gnu.so").write_bytes(elf(62))

    # WHEN it is measured
    size, foreign = bench_sizes.measure(tmp_path)

    # THEN every byte counts and the x86-64 library is named
    assert size == 1000 + 2 * len(elf(0))
    assert foreign == ["pkg/_slow.cpython-313-x86_64-linux-gnu.so"]
