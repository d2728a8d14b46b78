"""Package sizes (issue 13, item 4): every function and the layer, unzipped, as the arm64 `sam build`
(`make build`: `sam build --parallel --cached` into .aws-sam/build) leaves them. No function over
`FUNCTION_LIMIT_MB`; a function with its layers must also stay under Lambda's own 250 MB quota.

The build is reused unless it is missing or stale: stale when a file the build reads (template.yaml,
samconfig.toml, each function's CodeUri folder, each layer's ContentUri folder, requirements
included) is newer than the build's own template.yaml, which `sam build` writes last, or when a
function or layer of the template has no folder in it. Then the same command as `make build` runs
(about a minute cold, seconds incremental). Each native library of the build is checked to be
AArch64, so a figure never comes from an x86_64 build.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / ".aws-sam" / "build"
FUNCTION_LIMIT_MB = 40.0
LAMBDA_UNZIPPED_QUOTA_MB = 250.0  # a function and all its layers, unzipped (Lambda quotas)
EM_AARCH64 = 183
MB = 1_000_000
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def _template() -> dict[str, Any]:
    from tools.cfn_yaml import load_template

    return load_template(REPO / "template.yaml")


def artefacts(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> {"kind": "function" | "layer", "source": folder, "layers": [layer ids]}."""
    function_globals = template.get("Globals", {}).get("Function", {})
    found: dict[str, dict[str, Any]] = {}
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            layers = properties.get("Layers", function_globals.get("Layers")) or []
            found[logical_id] = {
                "kind": "function",
                "source": REPO / str(properties.get("CodeUri", function_globals.get("CodeUri"))).strip("/"),
                "layers": [layer["Ref"] for layer in layers if isinstance(layer, dict) and "Ref" in layer],
            }
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            found[logical_id] = {"kind": "layer", "source": REPO / str(properties["ContentUri"]).strip("/")}
    return found


def _newest_source(sources: list[Path]) -> tuple[float, Path]:
    newest = (0.0, REPO)
    for source in sources:
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        for file in files:
            if SKIPPED_PARTS & set(file.parts):
                continue
            newest = max(newest, (file.stat().st_mtime, file))
    return newest


def staleness(template: dict[str, Any]) -> str | None:
    """Why .aws-sam/build cannot be used as it is, or None when it can."""
    marker = BUILD / "template.yaml"
    if not marker.is_file():
        return "no build yet"
    found = artefacts(template)
    missing = [logical_id for logical_id in found if not (BUILD / logical_id).is_dir()]
    if missing:
        return f"not in the build: {', '.join(sorted(missing))}"
    sources = [REPO / "template.yaml", REPO / "samconfig.toml", *(a["source"] for a in found.values())]
    newest, path = _newest_source(sources)
    if newest > marker.stat().st_mtime:
        return f"{path.relative_to(REPO)} changed after the build"
    return None


def build_if_needed(template: dict[str, Any]) -> str:
    """Runs `make build`'s command when the build is missing or stale; says what it did."""
    BUILD.parent.mkdir(exist_ok=True)
    with (BUILD.parent / ".bench-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benches at once do not build into one folder
        reason = staleness(template)
        if reason is None:
            return "the existing .aws-sam/build (up to date)"
        venv_bin = Path(sys.executable).parent
        environment = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        started = time.perf_counter()
        done = subprocess.run(
            [str(venv_bin / "sam"), "build", "--parallel", "--cached"],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"sam build failed ({reason}):\n{tail}")
        return f"`sam build --parallel --cached` ({reason}; {time.perf_counter() - started:.0f} s)"


def _elf_machine(path: Path) -> int | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int(struct.unpack("<H" if header[5] == 1 else ">H", header[18:20])[0])


def measure(folder: Path) -> tuple[int, list[str]]:
    """Bytes of every file under `folder` (links not followed) and the native libraries that are
    not AArch64."""
    size, foreign = 0, []
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        size += path.stat().st_size
        if ".so" in path.name and _elf_machine(path) not in (None, EM_AARCH64):
            foreign.append(str(path.relative_to(folder)))
    return size, foreign


def package_figures(build: bool = True) -> dict[str, dict[str, Any]]:
    """`{"package.<logical id>.<figure>": {"value", "unit", "how"}}` for every function and layer."""
    template = _template()
    how_built = build_if_needed(template) if build else "the existing .aws-sam/build"
    reason = staleness(template)
    if reason is not None:
        raise RuntimeError(f".aws-sam/build is not usable: {reason} (run `make build`)")
    found = artefacts(template)
    measured = {logical_id: measure(BUILD / logical_id) for logical_id in found}
    how = f"unzipped bytes of .aws-sam/build/<id> (arm64 sam build), from {how_built}"
    figures: dict[str, dict[str, Any]] = {}
    for logical_id, artefact in sorted(found.items()):
        size, foreign = measured[logical_id]
        prefix = f"package.{logical_id}"
        figures[f"{prefix}.unzipped"] = {"value": round(size / MB, 2), "unit": "MB", "how": how}
        figures[f"{prefix}.non_arm64_libraries"] = {
            "value": foreign,
            "unit": "files",
            "how": "ELF shared objects whose e_machine is not AArch64 (must be none)",
        }
        if artefact["kind"] == "function":
            with_layers = size + sum(measured[layer][0] for layer in artefact["layers"] if layer in measured)
            figures[f"{prefix}.target_met"] = {
                "value": size / MB <= FUNCTION_LIMIT_MB,
                "unit": "bool",
                "how": f"unzipped function package <= {FUNCTION_LIMIT_MB:g} MB (issue 13)",
            }
            figures[f"{prefix}.with_layers"] = {
                "value": round(with_layers / MB, 2),
                "unit": "MB",
                "how": f"function + its layers, unzipped; Lambda's quota is {LAMBDA_UNZIPPED_QUOTA_MB:g} MB",
            }
    return figures


def print_package_sizes(figures: dict[str, dict[str, Any]]) -> None:
    ids = sorted({name.split(".")[1] for name in figures if name.startswith("package.")})
    if not ids:
        return
    how = figures[f"package.{ids[0]}.unzipped"]["how"]
    print(f"Package sizes ({how})")
    target = f"target <= {FUNCTION_LIMIT_MB:g} MB"
    print(f"  {'artefact':<26} {'unzipped':>9}  {target:<16} with layers")
    for logical_id in sorted(ids, key=lambda i: (f"package.{i}.target_met" not in figures, i)):
        size = figures[f"package.{logical_id}.unzipped"]["value"]
        met = figures.get(f"package.{logical_id}.target_met")
        verdict = "(layer)" if met is None else ("met" if met["value"] else "NOT met")
        layers = figures.get(f"package.{logical_id}.with_layers")
        total = f"{layers['value']:7.1f} MB" if layers else ""
        print(f"  {logical_id:<26} {size:6.2f} MB  {verdict:<16} {total}")
        foreign = figures[f"package.{logical_id}.non_arm64_libraries"]["value"]
        if foreign:
            print(f"  {'':<26} NOT arm64: {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}")


def main(argv: list[str]) -> int:
    sys.path[:0] = [str(REPO)]
    print_package_sizes(package_figures(build="--no-build" not in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
