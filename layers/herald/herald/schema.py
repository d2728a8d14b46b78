"""The published JSON Schemas of the producer contracts (`python -m herald.schema` regenerates them):
`NotificationRequested` and the directory's `UserUpserted` / `UserDeleted` event details."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from herald.catalog import load_catalog
from herald.directory import USER_DELETED, USER_UPSERTED, UserDeleted, UserUpserted
from herald.models import DETAIL_TYPE, NotificationRequest

SCHEMA_BASE = "https://github.com/herald-notifications/herald/schemas/"
SCHEMA_ID = SCHEMA_BASE + "notification-request.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _event_detail_schema(model: type[BaseModel], file_name: str, detail_type: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = DRAFT
    schema["$id"] = SCHEMA_BASE + file_name
    schema["title"] = f"{detail_type} event detail"
    return schema


def notification_request_schema() -> dict[str, Any]:
    schema = _event_detail_schema(NotificationRequest, "notification-request.schema.json", DETAIL_TYPE)
    schema["properties"]["type"]["enum"] = sorted(load_catalog().types)
    return schema


def user_upserted_schema() -> dict[str, Any]:
    return _event_detail_schema(UserUpserted, "user-upserted.schema.json", USER_UPSERTED)


def user_deleted_schema() -> dict[str, Any]:
    return _event_detail_schema(UserDeleted, "user-deleted.schema.json", USER_DELETED)


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "notification-request.schema.json": notification_request_schema,
    "user-upserted.schema.json": user_upserted_schema,
    "user-deleted.schema.json": user_deleted_schema,
}


def render(file_name: str = "notification-request.schema.json") -> str:
    return json.dumps(SCHEMAS[file_name](), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path("schemas")
    folder.mkdir(parents=True, exist_ok=True)
    for file_name in SCHEMAS:
        target = folder / file_name
        target.write_text(render(file_name), encoding="utf-8")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
