"""The renderer: locale fallback, autoescape, strict variables, the sensitive-field guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateNotFound

from herald.catalog import UnknownNotificationType, load_catalog
from herald.models import Channel
from herald.rendering import (
    SMS_MAX_CHARS,
    ChannelNotAllowedError,
    Rendered,
    S3TemplateLoader,
    SensitiveFieldError,
    TemplateNotFoundError,
    TemplateRenderer,
    TemplateRenderError,
    default_renderer,
    locale_chain,
    normalize_locale,
)

pytestmark = pytest.mark.unit

CATALOG = load_catalog()
CONTEXT = {"notification_id": "ntf-1", "event_id": "evt-1", "unsubscribe_url": "https://u.example.com/x"}
SECURITY = dict(CATALOG.entry("security_alert").sample_data)  # ip_address, location are sensitive
REPO = Path(__file__).resolve().parents[2]


def sample(type_name: str, **overrides: Any) -> dict[str, Any]:
    return {**CATALOG.entry(type_name).sample_data, **overrides}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


# --- locales ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("es-MX", ("es-MX", "es", "en")),
        ("pt-BR", ("pt-BR", "pt", "en")),
        ("fr", ("fr", "en")),
        ("en", ("en",)),
        ("en-GB", ("en-GB", "en")),
        (None, ("en",)),
        ("", ("en",)),
        ("es_mx", ("es-MX", "es", "en")),
        ("ZH-hant-tw", ("zh-Hant-TW", "zh-Hant", "zh", "en")),
        ("es-419", ("es-419", "es", "en")),
        ("../../etc/passwd", ("en",)),
        ("en/../../x", ("en",)),
    ],
)
def test_locale_chain(locale: str | None, chain: tuple[str, ...]) -> None:
    assert locale_chain(locale) == chain


def test_normalize_locale_rejects_what_is_not_a_tag() -> None:
    assert normalize_locale("pt_br") == "pt-BR"
    assert normalize_locale("e") is None
    assert normalize_locale("en US") is None


def parts_from(rendered: Rendered) -> set[str]:
    return {name.split("/", 1)[0] for name in rendered.templates.values()}


@pytest.mark.parametrize(
    ("type_name", "locale", "used"),
    [
        ("order_shipped", "es-MX", "es"),
        ("order_shipped", "fr", "en"),
        ("order_shipped", "fr-CA", "en"),
        ("order_shipped", None, "en"),
        ("order_shipped", "pt-BR", "pt-BR"),  # shipped for pt-BR itself
        ("comment_reply", "pt-BR", "pt"),  # only in pt: region falls back to the language
        ("payment_receipt", "pt-BR", "en"),  # in neither: the default
        ("order_shipped", "pt-PT", "pt"),
        ("order_shipped", "pt", "pt"),
    ],
)
def test_packaged_locale_fallback(renderer: TemplateRenderer, type_name: str, locale: str, used: str) -> None:
    for channel in (Channel.PUSH, Channel.EMAIL, Channel.REALTIME):
        rendered = renderer.render(type_name, channel, locale, sample(type_name), CONTEXT)
        assert parts_from(rendered) == {used}, (channel, rendered.templates)


def test_fallback_resolves_per_part(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "es-MX/order_shipped/push_title.j2": "MX title {{ order_id }}",
            "es/order_shipped/push_title.j2": "ES title",
            "es/order_shipped/push_body.j2": "ES body {{ carrier }}",
            "en/order_shipped/push_title.j2": "EN title",
            "en/order_shipped/push_body.j2": "EN body",
        },
    )
    rendered = TemplateRenderer(root).render("order_shipped", "push", "es-MX", sample("order_shipped"))
    assert (rendered.title, rendered.body) == ("MX title 999", "ES body DHL")
    assert rendered.templates == {
        "title": "es-MX/order_shipped/push_title.j2",
        "body": "es/order_shipped/push_body.j2",
    }


def test_spanish_renders_spanish(renderer: TemplateRenderer) -> None:
    rendered = renderer.render("order_shipped", "email", "es-MX", sample("order_shipped"), CONTEXT)
    assert rendered.subject == "Tu pedido n.º 999 ha sido enviado"
    assert '<html lang="es">' in rendered.html


# --- escaping and whitespace ---------------------------------------------------------------------


def test_html_is_autoescaped_and_text_is_not(renderer: TemplateRenderer) -> None:
    data = sample("comment_reply", excerpt="<script>alert('x')</script> & more")
    email = renderer.render("comment_reply", "email", "en", data, CONTEXT)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in email.html
    assert "<script>alert('x')</script> & more" in email.text
    push = renderer.render("comment_reply", "push", "en", data, CONTEXT)
    assert push.body == "“<script>alert('x')</script> & more”"
    assert "&lt;" not in email.subject + push.title


def test_one_line_parts_are_trimmed_and_collapsed(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "en/order_shipped/push_title.j2": "\n  Order\n\n  #{{ order_id }}   shipped \n",
            "en/order_shipped/push_body.j2": "{% if carrier %}\n  With\t{{ carrier }}\n{% endif %}\n",
        },
    )
    rendered = TemplateRenderer(root).render("order_shipped", "push", "en", sample("order_shipped"))
    assert (rendered.title, rendered.body) == ("Order #999 shipped", "With DHL")


def test_sms_is_never_truncated(renderer: TemplateRenderer) -> None:
    data = sample("security_alert", device="x" * 400)
    rendered = renderer.render("security_alert", "sms", "en", data, CONTEXT)
    assert len(rendered.sms) > SMS_MAX_CHARS
    assert "x" * 400 in rendered.sms


def test_a_part_that_renders_empty_is_an_error(tmp_path: Path) -> None:
    root = write(
        tmp_path, {"en/order_shipped/push_title.j2": "{{ order_id }}", "en/order_shipped/push_body.j2": " \n"}
    )
    with pytest.raises(TemplateRenderError, match="rendered empty"):
        TemplateRenderer(root).render("order_shipped", "push", "en", sample("order_shipped"))


# --- strict variables -------------------------------------------------------------------------------


def test_a_missing_variable_names_type_part_locale_and_variable(renderer: TemplateRenderer) -> None:
    data = sample("order_shipped")
    del data["carrier"]
    with pytest.raises(TemplateRenderError) as caught:
        renderer.render("order_shipped", "push", "es-MX", data, CONTEXT)
    error = caught.value
    assert type(error) is TemplateRenderError
    assert (error.type_name, error.part, error.locale, error.variable) == (
        "order_shipped",
        "push_body.j2",
        "es-MX",
        "carrier",
    )
    assert error.template == "es/order_shipped/push_body.j2"
    for word in ("order_shipped", "push_body.j2", "es-MX", "carrier"):
        assert word in str(error)


def test_missing_unsubscribe_url_fails_marketing_email(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        renderer.render("marketing_promo", "email", "en", sample("marketing_promo"), {"notification_id": "n"})
    assert caught.value.variable == "unsubscribe_url"


def test_extra_context_wins_over_data(renderer: TemplateRenderer) -> None:
    data = sample("marketing_promo", unsubscribe_url="https://evil.example.com/")
    rendered = renderer.render("marketing_promo", "email", "en", data, CONTEXT)
    assert CONTEXT["unsubscribe_url"] in rendered.text
    assert "evil" not in rendered.text + rendered.html


# --- sensitive fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(("channel", "part"), [("push", "push_title.j2"), ("sms", "sms.j2")])
def test_a_template_that_uses_a_sensitive_field_on_a_lock_screen_fails(
    tmp_path: Path, channel: str, part: str
) -> None:
    root = write(
        tmp_path,
        {
            "en/security_alert/push_title.j2": "Sign-in from {{ location }}",
            "en/security_alert/push_body.j2": "Check it",
            "en/security_alert/sms.j2": "Sign-in from {{ location }}",
        },
    )
    with pytest.raises(SensitiveFieldError, match="uses sensitive field") as caught:
        TemplateRenderer(root).render("security_alert", channel, "en", SECURITY)
    assert (caught.value.field, caught.value.part) == ("location", part)
    assert SECURITY["location"] not in str(caught.value)


def test_email_and_in_app_may_render_sensitive_fields(renderer: TemplateRenderer) -> None:
    email = renderer.render("security_alert", "email", "en", SECURITY, CONTEXT)
    inbox = renderer.render("security_alert", "realtime", "en", SECURITY, CONTEXT)
    for rendered in (email.text, email.html, inbox.body):
        assert SECURITY["ip_address"] in rendered
        assert SECURITY["location"] in rendered


def test_sensitive_fields_are_removed_even_from_extra_context(tmp_path: Path) -> None:
    root = write(tmp_path, {"en/security_alert/sms.j2": "{{ ip_address }}"})
    with pytest.raises(SensitiveFieldError):
        TemplateRenderer(root).render("security_alert", "sms", "en", {}, {"ip_address": "198.51.100.1"})


def test_defaulting_a_sensitive_field_cannot_reveal_it(tmp_path: Path) -> None:
    root = write(tmp_path, {"en/security_alert/sms.j2": "From {{ location|default('somewhere') }}"})
    rendered = TemplateRenderer(root).render("security_alert", "sms", "en", SECURITY)
    assert rendered.sms == "From somewhere"


@pytest.mark.parametrize(
    ("template", "data"),
    [
        ("{{ details|tojson }}", {"details": {"seen_from": "203.0.113.7"}}),
        ("{{ details|tojson }}", {"details": {"city": "São Paulo"}, "location": "São Paulo"}),
        ("{{ summary|upper }}", {"summary": "new sign-in near Lisbon, PT"}),
        ("{{ summary|urlencode }}", {"summary": "near Lisbon, PT"}),
        ("{{ summary|e }}", {"summary": "at <Lisbon, PT>", "location": "<Lisbon, PT>"}),
        ("{{ summary }}", {"summary": "near Lisbon,\n   PT"}),
    ],
)
def test_an_indirect_leak_of_a_sensitive_value_fails(tmp_path: Path, template: str, data: dict) -> None:
    root = write(tmp_path, {"en/security_alert/sms.j2": "Alert: " + template})
    with pytest.raises(SensitiveFieldError) as caught:
        TemplateRenderer(root).render("security_alert", "sms", "en", {**SECURITY, **data})
    assert caught.value.field in ("ip_address", "location")
    for value in (SECURITY["ip_address"], SECURITY["location"], data.get("location", "")):
        assert not value or value not in str(caught.value)


def test_the_leak_scan_ignores_short_values(tmp_path: Path) -> None:
    root = write(
        tmp_path, {"en/order_shipped/push_title.j2": "#{{ order_id }}", "en/order_shipped/push_body.j2": "ok"}
    )
    rendered = TemplateRenderer(root).render(
        "order_shipped", "push", "en", sample("order_shipped", address="99")
    )
    assert rendered.title == "#999"  # "99" (the address) is in it, but too short to mean anything


def test_the_leak_scan_covers_every_lock_screen_part(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "en/payment_receipt/push_title.j2": "Paid",
            "en/payment_receipt/push_body.j2": "Ref {{ receipt_url }}",
        },
    )
    data = sample("payment_receipt", receipt_url="https://app.example.com/receipts/4242")
    with pytest.raises(SensitiveFieldError) as caught:
        TemplateRenderer(root).render("payment_receipt", "push", "en", data)
    assert (caught.value.field, caught.value.part) == ("card_last4", "push_body.j2")


# --- channels, types, sources --------------------------------------------------------------------


def test_in_app_is_allowed_for_every_user_facing_type(renderer: TemplateRenderer) -> None:
    rendered = renderer.render("marketing_promo", "realtime", "en", sample("marketing_promo"), CONTEXT)
    assert rendered.title == "Winter sale"


@pytest.mark.parametrize(
    ("type_name", "channel"), [("marketing_promo", "push"), ("order_webhook", "realtime")]
)
def test_a_channel_the_catalog_does_not_allow_is_refused(
    renderer: TemplateRenderer, type_name: str, channel: str
) -> None:
    with pytest.raises(ChannelNotAllowedError):
        renderer.render(type_name, channel, "en", sample(type_name), CONTEXT)


def test_unknown_type_and_channel(renderer: TemplateRenderer) -> None:
    with pytest.raises(UnknownNotificationType):
        renderer.render("nope", "email", "en", {}, CONTEXT)
    with pytest.raises(ValueError):
        renderer.render("order_shipped", "fax", "en", {}, CONTEXT)


def test_no_template_in_any_locale(tmp_path: Path) -> None:
    root = write(tmp_path, {"en/order_shipped/push_title.j2": "t"})
    with pytest.raises(TemplateNotFoundError) as caught:
        TemplateRenderer(root).render("order_shipped", "push", "es-MX", sample("order_shipped"))
    assert caught.value.part == "push_body.j2"
    assert "es-MX/order_shipped/push_body.j2" in str(caught.value)


def test_webhook_renders_a_json_object(renderer: TemplateRenderer, tmp_path: Path) -> None:
    rendered = renderer.render(
        "order_webhook", "webhook", "es", sample("order_webhook", status='a"b'), CONTEXT
    )
    assert rendered.payload == {
        "type": "order_webhook",
        "event_id": "evt-1",
        "notification_id": "ntf-1",
        "data": {"order_id": "999", "status": 'a"b'},
    }
    assert json.loads(json.dumps(rendered.payload)) == rendered.payload

    bad = write(tmp_path / "bad", {"en/order_webhook/webhook.json.j2": '{"status": {{ status }}}'})
    with pytest.raises(TemplateRenderError, match="valid JSON"):
        TemplateRenderer(bad).render("order_webhook", "webhook", "en", sample("order_webhook"))
    array = write(tmp_path / "array", {"en/order_webhook/webhook.json.j2": "[{{ status|tojson }}]"})
    with pytest.raises(TemplateRenderError, match="JSON object"):
        TemplateRenderer(array).render("order_webhook", "webhook", "en", sample("order_webhook"))


@pytest.mark.parametrize(
    "template",
    [
        "{{ order_id",  # syntax
        "{{ ''.__class__.__mro__ }}",  # the sandbox
        "{{ cycler.__init__.__globals__ }}",
        "{% include 'missing.j2' %}",
        "{{ order_id|int(base=2)|nonexistent_filter }}",
        "{{ 1 / (order_id|int - 999) }}",
    ],
)
def test_a_broken_or_hostile_template_is_a_render_error(tmp_path: Path, template: str) -> None:
    root = write(tmp_path, {"en/order_shipped/push_title.j2": template, "en/order_shipped/push_body.j2": "b"})
    with pytest.raises(TemplateRenderError) as caught:
        TemplateRenderer(root).render("order_shipped", "push", "en", sample("order_shipped"))
    assert caught.value.type_name == "order_shipped"
    assert caught.value.part == "push_title.j2"


def test_templates_cannot_mutate_the_data(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {"en/order_shipped/push_title.j2": "{{ items.append(1) }}", "en/order_shipped/push_body.j2": "b"},
    )
    items: list[int] = []
    with pytest.raises(TemplateRenderError):
        TemplateRenderer(root).render("order_shipped", "push", "en", sample("order_shipped", items=items))
    assert items == []


def test_s3_keys_cannot_escape_the_prefix() -> None:
    loader = S3TemplateLoader(client=None, bucket="b", prefix="/tpl/")
    assert loader.key("en/order_shipped/sms.j2") == "tpl/en/order_shipped/sms.j2"
    with pytest.raises(TemplateNotFound):
        loader.key("en/../../secrets.j2")


def test_default_renderer_without_a_bucket_never_imports_boto3() -> None:
    code = (
        "import sys\n"
        "from herald.rendering import default_renderer\n"
        "r = default_renderer()\n"
        "assert r is default_renderer()\n"
        "out = r.render('order_shipped', 'push', 'en', "
        "{'order_id': '1', 'carrier': 'DHL', 'address': 'x y z', 'tracking_url': 'u'})\n"
        "assert out.title == 'Order #1 has shipped', out\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPLATE_")}
    env["PYTHONPATH"] = str(REPO / "layers" / "herald")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_default_renderer_is_packaged_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEMPLATE_BUCKET", raising=False)
    default_renderer.cache_clear()
    try:
        renderer = default_renderer()
        assert renderer is default_renderer()
        assert not isinstance(renderer.loader, S3TemplateLoader)
    finally:
        default_renderer.cache_clear()
