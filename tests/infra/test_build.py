"""`sam build` for arm64 and an audit of what it produced (slow: about a minute cold, seconds when
only the code changed).

The build runs in its own workspace, .aws-sam/infra-test/ (git-ignored): `sam build --cached` reuses
Python dependencies through `<cwd>/.aws-sam/deps` and `<build dir>/../build.toml`, and deletes every
cached entry its own build.toml does not list. Sharing the project's .aws-sam/ (or using a fresh
temporary build dir each run) would make every run, and the next `make build`, resolve all
dependencies again. A lock keeps concurrent test runs from building into the same directory.
"""

from __future__ import annotations

import fcntl
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.conftest import REPO_ROOT, TEMPLATE_PATH, describe, run, tool

pytestmark = [pytest.mark.infra, pytest.mark.slow]

EM_AARCH64 = 183
MACHINES = {3: "x86 (i386)", 40: "ARM (32-bit)", 62: "x86-64", 183: "AArch64"}
PROVIDER_PACKAGES = {  # import package -> the only build (function logical id) that may contain it
    "sendgrid": "EmailSenderFunction",
    "firebase_admin": "PushSenderFunction",
    "twilio": "SmsSenderFunction",
    "pusher": "RealtimeSenderFunction",
}
FUNCTIONS = [
    "RouterFunction",
    "EmailSenderFunction",
    "PushSenderFunction",
    "SmsSenderFunction",
    "RealtimeSenderFunction",
    "WebhookSenderFunction",
]


def elf_machine(path: Path) -> int | None:
    """e_machine of an ELF file, None when the file is not ELF."""
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    byte_order = "<" if header[5] == 1 else ">"  # EI_DATA: 1 little endian, 2 big endian
    return struct.unpack(f"{byte_order}H", header[18:20])[0]


WORKSPACE = REPO_ROOT / ".aws-sam" / "infra-test"


@pytest.fixture(scope="module")
def build_dir() -> Iterator[Path]:
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    target = WORKSPACE / "build"
    with (WORKSPACE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = run(
            [
                tool("sam"),
                "build",
                "--template-file",
                str(TEMPLATE_PATH),
                "--build-dir",
                str(target),
                "--parallel",
                "--cached",
                "--cache-dir",
                str(WORKSPACE / "cache"),
            ],
            timeout=900,
            cwd=WORKSPACE,
        )
        assert result.returncode == 0, f"sam build failed:\n{describe(result)}"
        yield target  # audited under the lock


def test_build_has_every_function_and_the_layer(build_dir: Path) -> None:
    missing = [name for name in [*FUNCTIONS, "HeraldLayer"] if not (build_dir / name).is_dir()]
    assert not missing, f"sam build produced no artefact for {missing} (in {build_dir})"
    assert (build_dir / "HeraldLayer" / "python" / "herald" / "__init__.py").is_file(), (
        "the layer must contain python/herald/ (importable as /opt/python/herald); "
        f"found {sorted(p.name for p in (build_dir / 'HeraldLayer').iterdir())}"
    )


def test_every_native_library_is_aarch64(build_dir: Path) -> None:
    shared_objects, wrong = 0, []
    for path in build_dir.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        machine = elf_machine(path)
        if machine is None:
            continue
        if ".so" in path.name:
            shared_objects += 1
        if machine != EM_AARCH64:
            wrong.append(f"{path.relative_to(build_dir)}: {MACHINES.get(machine, f'e_machine {machine}')}")
    assert shared_objects, "no shared objects found in the build: the audit is not looking at the right place"
    assert not wrong, (
        f"{len(wrong)} native files are not ARM aarch64 (a layer without BuildArchitecture arm64, or an "
        "sdist compiled for the build host?):\n" + "\n".join(sorted(wrong)[:50])
    )


def test_provider_sdks_only_in_their_function(build_dir: Path) -> None:
    problems = []
    for package, owner in PROVIDER_PACKAGES.items():
        for artefact in [*FUNCTIONS, "HeraldLayer"]:
            root = build_dir / artefact
            present = (root / package).is_dir() or (root / "python" / package).is_dir()
            if artefact == owner and not present:
                problems.append(f"{artefact} was built without {package}")
            elif artefact != owner and present:
                problems.append(
                    f"{artefact} contains {package}, which belongs to {owner} only (cold start, size)"
                )
    assert not problems, "\n".join(problems)
