"""The producer contract: the model, the published JSON Schema, the catalog as validated data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from herald.catalog import Catalog, UnknownNotificationType, load_catalog, parse_catalog
from herald.models import Category, Channel, NotificationRequest, Urgency
from herald.schema import render
from tests.support.aws import REPO_ROOT

pytestmark = pytest.mark.unit

SCHEMA_FILE = REPO_ROOT / "schemas" / "notification-request.schema.json"


def test_the_published_json_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), (
        "schemas/notification-request.schema.json is stale: run `make schema` and commit it"
    )


@pytest.mark.parametrize("file_name", ["user-upserted.schema.json", "user-deleted.schema.json"])
def test_the_published_directory_schemas_are_current(file_name: str) -> None:
    published = REPO_ROOT / "schemas" / file_name

    assert published.read_text(encoding="utf-8") == render(file_name), (
        f"schemas/{file_name} is stale: run `make schema` and commit it"
    )
    schema = json.loads(published.read_text())
    assert schema["additionalProperties"] is False
    assert {"user_id", "version"} <= set(schema["required"])


def test_the_schema_lists_every_catalog_type() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())

    assert schema["properties"]["type"]["enum"] == sorted(load_catalog().types)
    assert schema["additionalProperties"] is False


def test_the_design_example_is_valid() -> None:
    request = NotificationRequest.model_validate(
        {
            "event_id": "ord-999-shipped",
            "type": "order_shipped",
            "user_id": "42",
            "data": {"order_id": "999", "tracking_url": "https://example.com/t/999"},
            "urgency": "high",
            "locale": "es",
            "send_at": "2026-12-01T09:00:00Z",
        }
    )

    assert request.urgency is Urgency.HIGH
    assert request.send_at is not None and request.send_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("detail", "complaint"),
    [
        ({"type": "order_shipped", "user_id": "42"}, "event_id"),
        ({"event_id": "e", "type": "order_shipped"}, "exactly one of 'user_id' and 'audience'"),
        (
            {"event_id": "e", "type": "order_shipped", "user_id": "1", "audience": {"role": "a"}},
            "exactly one",
        ),
        ({"event_id": "e", "type": "order_shipped", "user_id": "1", "urgency": "urgent"}, "urgency"),
        (
            {"event_id": "e", "type": "order_shipped", "user_id": "1", "send_at": "2026-12-01T09:00:00"},
            "timezone",
        ),
        ({"event_id": "e", "type": "order_shipped", "user_id": "1", "colour": "red"}, "colour"),
        ({"event_id": "e e", "type": "order_shipped", "user_id": "1"}, "event_id"),
        ({"event_id": "e", "type": "order_shipped", "audience": {}}, "exactly one of 'role', 'topic'"),
        (
            {"event_id": "e", "type": "order_shipped", "audience": {"role": "a", "topic": "b"}},
            "exactly one of 'role', 'topic'",
        ),
        ({"event_id": "e", "type": "order_shipped", "audience": {"all": False}}, "all"),
        ({"event_id": "e", "type": "order_shipped", "audience": {"topic": "a b"}}, "topic"),
    ],
)
def test_invalid_requests_are_refused_with_a_clear_reason(detail: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError) as error:
        NotificationRequest.model_validate(detail)

    assert complaint in str(error.value)


def test_the_catalog_covers_every_urgency_and_the_required_types() -> None:
    catalog = load_catalog()
    expected = {
        "security_alert": (Urgency.CRITICAL, Category.SECURITY),
        "payment_receipt": (Urgency.HIGH, Category.TRANSACTIONAL),
        "order_shipped": (Urgency.MEDIUM, Category.TRANSACTIONAL),
        "comment_reply": (Urgency.MEDIUM, Category.TRANSACTIONAL),
        "marketing_promo": (Urgency.LOW, Category.MARKETING),
        "order_webhook": (Urgency.SYSTEM, Category.SYSTEM),
    }

    assert {
        name: (catalog.entry(name).urgency, catalog.entry(name).category) for name in expected
    } == expected
    assert catalog.entry("security_alert").sensitive_fields == {"ip_address", "location"}


def test_an_unknown_type_is_a_lookup_error() -> None:
    with pytest.raises(UnknownNotificationType, match="'nope'"):
        load_catalog().entry("nope")


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"category": "system", "urgency": "system", "channels": ["email"]}, "webhook only"),
        (
            {"category": "marketing", "urgency": "critical", "channels": ["email"]},
            "marketing cannot be critical",
        ),
        ({"category": "security", "urgency": "critical", "channels": ["fax"]}, "channels"),
        (
            {"category": "security", "urgency": "critical", "channels": ["sms"], "sensitive_fields": ["pin"]},
            "pin",
        ),
        ({"category": "security", "urgency": "critical", "channels": []}, "channels"),
    ],
)
def test_a_malformed_catalog_fails_when_loaded(entry: dict[str, Any], complaint: str) -> None:
    document = {"types": {"t": {"description": "d", "android_channel": "c", **entry}}}

    with pytest.raises(ValidationError, match=complaint):
        Catalog.model_validate(document)


HIGH = {"category": "transactional", "urgency": "high", "channels": ["push", "sms", "email", "webhook"]}


@pytest.mark.parametrize(
    ("chain", "complaint"),
    [
        ([{"channel": "push"}, {"channel": "sms"}], None),
        ([{"channel": "push"}, {"channel": "sms", "after_seconds": 5}], None),
        ([{"channel": "sms"}, {"channel": "push", "only_if_undeliverable": True}], None),
        ([{"channel": "push"}], "2 to 2 steps"),
        ([{"channel": "push"}, {"channel": "sms"}, {"channel": "email"}], "2 to 2 steps"),
        ([{"channel": "push"}, {"channel": "push", "after_seconds": 5}], "appears twice"),
        ([{"channel": "push"}, {"channel": "realtime"}], "not among its channels"),
        ([{"channel": "push"}, {"channel": "webhook"}], "cannot be an escalation step"),
        ([{"channel": "email"}, {"channel": "push"}], "can only be the last escalation step"),
        ([{"channel": "push", "after_seconds": 5}, {"channel": "sms"}], "first escalation step goes at once"),
        (
            [{"channel": "push"}, {"channel": "sms", "after_seconds": 5, "only_if_undeliverable": True}],
            "no after_seconds",
        ),
        ([{"channel": "push"}, {"channel": "sms", "after_seconds": 0}], "greater than or equal to 1"),
    ],
)
def test_an_escalation_chain_is_validated_when_the_catalog_loads(
    chain: list[dict], complaint: str | None
) -> None:
    document = {"types": {"t": {"description": "d", "android_channel": "c", **HIGH, "escalation": chain}}}

    if complaint is None:
        assert len(Catalog.model_validate(document).entry("t").escalation) == len(chain)
    else:
        with pytest.raises(ValidationError, match=complaint):
            Catalog.model_validate(document)


def test_only_high_urgency_may_declare_a_chain() -> None:
    entry = {**HIGH, "urgency": "medium", "escalation": [{"channel": "push"}, {"channel": "sms"}]}

    with pytest.raises(ValidationError, match="for high urgency, not medium"):
        Catalog.model_validate({"types": {"t": {"description": "d", "android_channel": "c", **entry}}})


def test_catalog_yaml_round_trip() -> None:
    catalog = parse_catalog(
        "types:\n  ping:\n    description: p\n    category: system\n    urgency: system\n"
        "    channels: [webhook]\n    android_channel: system\n"
    )

    assert catalog.entry("ping").channels == {Channel.WEBHOOK}


def test_templates_only_use_required_data_so_a_valid_event_always_renders() -> None:
    from jinja2 import Environment, meta

    from herald.rendering import CONTEXT_VARIABLES, TEMPLATES_DIR

    environment = Environment()
    catalog = load_catalog()
    for template in Path(TEMPLATES_DIR).rglob("*.j2"):
        parts = template.relative_to(TEMPLATES_DIR).parts
        if len(parts) < 3:
            continue  # shared layouts
        used = meta.find_undeclared_variables(environment.parse(template.read_text(encoding="utf-8")))
        undeclared = used - catalog.entry(parts[1]).required_data - CONTEXT_VARIABLES
        undeclared -= {"button_url", "button_label"}  # set by the templates themselves for the layout
        assert not undeclared, f"{template}: uses {sorted(undeclared)} which the catalog does not require"


def test_missing_required_data_is_named() -> None:
    entry = load_catalog().entry("order_shipped")

    assert entry.missing_data({"order_id": "1", "carrier": "", "tracking_url": "u"}) == ["address", "carrier"]
    assert entry.missing_data(entry.sample_data) == []


def test_event_ids_cannot_contain_the_fan_out_separator() -> None:
    with pytest.raises(ValidationError, match="event_id"):
        NotificationRequest(event_id="x#42", type="order_shipped", user_id="42")
