"""The published JSON Schema of the producer contract (`python -m herald.schema` regenerates it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from herald.catalog import load_catalog
from herald.models import DETAIL_TYPE, NotificationRequest

SCHEMA_ID = "https://github.com/herald-notifications/herald/schemas/notification-request.schema.json"


def notification_request_schema() -> dict[str, Any]:
    schema = NotificationRequest.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = f"{DETAIL_TYPE} event detail"
    schema["properties"]["type"]["enum"] = sorted(load_catalog().types)
    return schema


def render() -> str:
    return json.dumps(notification_request_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else Path("schemas/notification-request.schema.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
