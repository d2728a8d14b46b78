"""The `herald` operator CLI as the tests run it: the installed console script against a running
local stack, and `herald trace`'s output read section by section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def herald(state_file: Path | str, *args: str) -> str:
    """`herald <args> --local --state-file <state_file>` in its own process; its stdout (it must
    succeed)."""
    script = Path(sys.executable).with_name("herald")
    assert script.exists(), "the `herald` console script is not installed: run `make venv`"
    result = subprocess.run(
        [str(script), *args, "--local", "--state-file", str(state_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout
    return result.stdout


def section(out: str, title: str) -> list[str]:
    """The lines of one section of `herald trace`'s output (up to the next blank line)."""
    return out.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0].strip("\n").splitlines()
