"""Load a CloudFormation / SAM template (YAML or JSON) into plain Python data.

Short-form intrinsics (``!Ref X``, ``!GetAtt A.B``, ``!Sub ...``, ``!If [...]``...) become their
long form (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["A", "B"]}``, ...), as CloudFormation reads them.
The parsing is cfn-lint's (``cfnlint.decode.cfn_yaml``), so it matches what the linter sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_json, cfn_yaml


def load_template(path: str | Path) -> dict[str, Any]:
    """Return the template at ``path`` as plain dicts, lists and scalars (no cfn-lint node types)."""
    path = Path(path)
    data = cfn_json.load(str(path)) if path.suffix == ".json" else cfn_yaml.load(str(path))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a template must be a mapping, got {type(data).__name__}")
    # cfn-lint's node classes subclass dict/list/str; a JSON round trip turns them into plain ones.
    return json.loads(json.dumps(data))
