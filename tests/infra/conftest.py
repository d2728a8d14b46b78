"""Shared fixtures for the infrastructure checks: the SAM template as written, its offline
translation to CloudFormation, and the CLI tools (sam, cfn-lint) of this venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tools.cfn_yaml import load_template
from tools.sam_translate import translate_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ASL_PATH = REPO_ROOT / "statemachine" / "escalation.asl.json"
SAMCONFIG_PATH = REPO_ROOT / "samconfig.toml"
VENV_BIN = Path(sys.executable).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes a minute or more (sam build)")


def tool(name: str) -> str:
    """The executable `name` of this venv (next to the running python), else from PATH."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed (neither in {VENV_BIN} nor on PATH): run `make venv`")
    return found


def tool_env() -> dict[str, str]:
    """Environment for the CLI tools: this venv's bin first on PATH (sam build needs `python3.13`
    from it), no telemetry, a region for the few commands that want one."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["SAM_CLI_TELEMETRY"] = "0"
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env


def run(
    cmd: Sequence[str], *, timeout: float = 300, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env={**tool_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def describe(result: subprocess.CompletedProcess) -> str:
    return (
        f"`{' '.join(result.args)}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout.strip()}\n--- stderr ---\n{result.stderr.strip()}"
    )


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as written (SAM), short-form intrinsics in long form."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """template.yaml after the SAM transform (offline), as CloudFormation would deploy it."""
    return translate_template(TEMPLATE_PATH)


@pytest.fixture(scope="session")
def translated_path(translated: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("translated") / "template.json"
    path.write_text(json.dumps(translated, indent=1), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def asl_text() -> str:
    return ASL_PATH.read_text(encoding="utf-8")
