"""The template passes SAM's and cfn-lint's checks, before and after the SAM transform."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.conftest import TEMPLATE_PATH, describe, run, tool

pytestmark = pytest.mark.infra


def test_sam_validate_lint() -> None:
    result = run([tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE_PATH)], timeout=180)
    assert result.returncode == 0, f"sam validate --lint rejects template.yaml:\n{describe(result)}"


def test_cfn_lint_sam_template() -> None:
    result = run([tool("cfn-lint"), str(TEMPLATE_PATH)], timeout=180)
    assert result.returncode == 0, f"cfn-lint reports problems in template.yaml:\n{describe(result)}"


def test_cfn_lint_translated_template(translated_path: Path) -> None:
    # cfn-lint on the SAM template misses, e.g., a !Ref to a missing resource inside function
    # environment variables or policy-template parameters; on the translated template it does not.
    # W3037 is a false positive on SAM's own SQS poller policy (docs: PLATFORM.md).
    result = run([tool("cfn-lint"), "--ignore-checks", "W3037", "--", str(translated_path)], timeout=180)
    assert result.returncode == 0, (
        "cfn-lint reports problems in the SAM-translated template (tools/sam_translate.py; "
        f"line numbers refer to {translated_path}):\n{describe(result)}"
    )
