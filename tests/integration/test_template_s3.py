"""Templates overridden one file at a time from S3 (moto), cached with a TTL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from herald.catalog import load_catalog
from herald.rendering import (
    S3TemplateLoader,
    SensitiveFieldError,
    TemplateRenderer,
    TemplateRenderError,
    TemplateSourceError,
    default_renderer,
)

pytestmark = pytest.mark.integration

BUCKET = "herald-templates-test"
PREFIX = "marketing/templates"
TTL = 300.0
CATALOG = load_catalog()
CONTEXT = {"notification_id": "ntf-1", "event_id": "evt-1", "unsubscribe_url": "https://u.example.com/x"}
PACKAGED = TemplateRenderer()


def sample(type_name: str) -> dict[str, Any]:
    return dict(CATALOG.entry(type_name).sample_data)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingClient:
    """The real (moto) client, counting GetObject calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.keys: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.keys.append(kwargs["Key"])
        return self.client.get_object(**kwargs)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counting(s3: Any) -> CountingClient:
    return CountingClient(s3)


@pytest.fixture
def renderer(counting: CountingClient, clock: Clock) -> TemplateRenderer:
    return TemplateRenderer.from_s3(counting, BUCKET, PREFIX, ttl_seconds=TTL, clock=clock)


def put(s3: Any, name: str, text: str, prefix: str = PREFIX) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}" if prefix else name, Body=text.encode("utf-8"))


def subject(renderer: TemplateRenderer, locale: str = "en") -> str:
    return renderer.render("order_shipped", "email", locale, sample("order_shipped"), CONTEXT).subject


def test_one_override_is_used_and_every_other_part_is_packaged(s3: Any, renderer: TemplateRenderer) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "Shipped! #{{ order_id }} via {{ carrier }}")
    rendered = renderer.render("order_shipped", "email", "en", sample("order_shipped"), CONTEXT)
    packaged = PACKAGED.render("order_shipped", "email", "en", sample("order_shipped"), CONTEXT)
    assert rendered.subject == "Shipped! #999 via DHL"
    assert rendered.subject != packaged.subject
    assert (rendered.html, rendered.text) == (packaged.html, packaged.text)
    push = renderer.render("order_shipped", "push", "en", sample("order_shipped"), CONTEXT)
    assert push == PACKAGED.render("order_shipped", "push", "en", sample("order_shipped"), CONTEXT)


def test_overrides_resolve_per_locale(s3: Any, renderer: TemplateRenderer) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "EN override")
    put(s3, "es-MX/order_shipped/push_title.j2", "¡Tu pedido {{ order_id }} ya va!")
    assert subject(renderer, "en") == "EN override"
    assert subject(renderer, "fr") == "EN override"  # fr -> en: the override
    assert subject(renderer, "es") == subject(PACKAGED, "es")  # packaged es is more specific
    mx = renderer.render("order_shipped", "push", "es-MX", sample("order_shipped"), CONTEXT)
    assert mx.title == "¡Tu pedido 999 ya va!"  # a locale that exists only in S3
    assert mx.templates["body"] == "es/order_shipped/push_body.j2"


def test_a_layout_override_reaches_every_email(s3: Any, renderer: TemplateRenderer) -> None:
    put(
        s3,
        "en/_layout.html.j2",
        '<html lang="en"><body><h1>{% block heading %}{% endblock %}</h1>'
        "{% block content %}{% endblock %}<footer>ACME Corp</footer></body></html>",
    )
    for type_name in ("order_shipped", "comment_reply"):
        rendered = renderer.render(type_name, "email", "en", sample(type_name), CONTEXT)
        assert rendered.html.endswith("<footer>ACME Corp</footer></body></html>")
    es = renderer.render("order_shipped", "email", "es", sample("order_shipped"), CONTEXT)
    assert "ACME" not in es.html


def test_templates_are_cached_for_the_ttl(
    s3: Any, renderer: TemplateRenderer, counting: CountingClient, clock: Clock
) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "v1 {{ order_id }}")
    assert subject(renderer) == "v1 999"
    calls = len(counting.keys)
    assert calls > 0

    put(s3, "en/order_shipped/email_subject.j2", "v2 {{ order_id }}")
    clock.advance(TTL - 1)
    assert subject(renderer) == "v1 999"
    assert len(counting.keys) == calls, "a render within the TTL must not call S3"

    clock.advance(1)
    assert subject(renderer) == "v2 999"
    assert len(counting.keys) > calls


def test_a_missing_key_falls_back_and_is_rechecked_after_the_ttl(
    s3: Any, renderer: TemplateRenderer, counting: CountingClient, clock: Clock
) -> None:
    assert subject(renderer) == subject(PACKAGED)
    assert f"{PREFIX}/en/order_shipped/email_subject.j2" in counting.keys
    calls = len(counting.keys)
    subject(renderer)
    assert len(counting.keys) == calls, "misses are cached too"
    subject(renderer, "es-MX")  # es-MX: in neither S3 nor the package
    calls = len(counting.keys)
    subject(renderer, "es-MX")
    assert len(counting.keys) == calls, "a locale that exists nowhere is not looked up per render"

    put(s3, "en/order_shipped/email_subject.j2", "Late override")
    clock.advance(TTL / 2)
    assert subject(renderer) == subject(PACKAGED)
    clock.advance(TTL / 2)
    assert subject(renderer) == "Late override"


def test_a_deleted_override_falls_back_after_the_ttl(
    s3: Any, renderer: TemplateRenderer, clock: Clock
) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "Override")
    assert subject(renderer) == "Override"
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/en/order_shipped/email_subject.j2")
    clock.advance(TTL)
    assert subject(renderer) == subject(PACKAGED)


def test_keys_outside_the_prefix_are_ignored(s3: Any, renderer: TemplateRenderer) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "Wrong prefix", prefix="")
    put(s3, "en/order_shipped/email_subject.j2", "Other prefix", prefix="other")
    assert subject(renderer) == subject(PACKAGED)


def test_an_unreadable_bucket_is_a_source_error_not_a_render_error(
    counting: CountingClient, clock: Clock
) -> None:
    renderer = TemplateRenderer.from_s3(counting, "no-such-bucket-here", PREFIX, clock=clock)
    with pytest.raises(TemplateSourceError) as caught:
        subject(renderer)
    assert not isinstance(caught.value, TemplateRenderError)


def test_a_failing_bucket_serves_what_it_last_read(s3: Any, renderer: TemplateRenderer, clock: Clock) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "Cached override")
    assert subject(renderer) == "Cached override"
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)
    clock.advance(TTL * 3)
    assert subject(renderer) == "Cached override"


def test_a_broken_override_fails_loudly(s3: Any, renderer: TemplateRenderer) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "{{ order_id ")
    with pytest.raises(TemplateRenderError):
        subject(renderer)


def test_an_override_cannot_put_a_sensitive_field_on_a_lock_screen(
    s3: Any, renderer: TemplateRenderer
) -> None:
    put(s3, "en/security_alert/sms.j2", "New sign-in near {{ location }}")
    with pytest.raises(SensitiveFieldError):
        renderer.render("security_alert", "sms", "en", sample("security_alert"), CONTEXT)
    put(s3, "en/security_alert/push_body.j2", "{{ review_url }} {{ device|tojson }} {{ ''.__class__ }}")
    with pytest.raises(TemplateRenderError):  # the sandbox: an override is content, not code
        renderer.render("security_alert", "push", "en", sample("security_alert"), CONTEXT)


def test_default_renderer_reads_the_environment(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(s3, "en/order_shipped/email_subject.j2", "From the environment")
    monkeypatch.setenv("TEMPLATE_BUCKET", BUCKET)
    monkeypatch.setenv("TEMPLATE_PREFIX", PREFIX + "/")
    monkeypatch.setenv("TEMPLATE_CACHE_TTL_SECONDS", "60")
    default_renderer.cache_clear()
    try:
        renderer = default_renderer()
        assert isinstance(renderer.loader, S3TemplateLoader)
        assert (renderer.loader.bucket, renderer.loader.prefix, renderer.loader.ttl_seconds) == (
            BUCKET,
            PREFIX,
            60.0,
        )
        assert subject(renderer) == "From the environment"
        assert default_renderer() is renderer
    finally:
        default_renderer.cache_clear()
