"""Every shipped template renders, for every catalog type, channel and shipped locale; the
lock-screen channels (push, SMS) never reference or contain a sensitive field."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import meta, nodes

from herald.catalog import CatalogEntry, load_catalog
from herald.models import Category, Channel
from herald.rendering import (
    CHANNEL_PARTS,
    CONTEXT_VARIABLES,
    DEFAULT_LOCALE,
    RESTRICTED_CHANNELS,
    SMS_MAX_CHARS,
    TEMPLATES_DIR,
    Rendered,
    TemplateRenderer,
    locale_chain,
)

pytestmark = pytest.mark.unit

CATALOG = load_catalog()
RENDERER = TemplateRenderer()
LOCALES = sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir())
COMPLETE_LOCALES = ("en", "es")
CONTEXT = {
    "notification_id": "ntf-0001",
    "event_id": "evt-0001",
    "unsubscribe_url": "https://app.example.com/unsubscribe?token=abc&u=42",
}
assert set(CONTEXT) == CONTEXT_VARIABLES


def rendered_channels(entry: CatalogEntry) -> list[Channel]:
    """The catalog's channels, plus in-app for every user-facing type (the inbox copy)."""
    channels = set(entry.channels)
    if entry.category is not Category.SYSTEM:
        channels.add(Channel.REALTIME)
    return sorted(channels)


def required_files(entry: CatalogEntry, *, with_webhook: bool = True) -> set[str]:
    return {
        f"{entry.name}/{part}"
        for channel in rendered_channels(entry)
        if with_webhook or channel is not Channel.WEBHOOK
        for part in CHANNEL_PARTS[channel].values()
    }


def shipped_files() -> list[str]:
    return sorted(p.relative_to(TEMPLATES_DIR).as_posix() for p in TEMPLATES_DIR.rglob("*") if p.is_file())


def type_template_files() -> list[str]:
    """`<locale>/<type>/<part>` files (not the `_layout` partials)."""
    return [f for f in shipped_files() if f.count("/") == 2]


def lock_screen_files() -> list[str]:
    parts = {part for channel in RESTRICTED_CHANNELS for part in CHANNEL_PARTS[channel].values()}
    return [f for f in type_template_files() if f.rsplit("/", 1)[1] in parts]


CASES = [
    pytest.param(locale, name, channel, id=f"{locale}-{name}-{channel.value}")
    for locale in LOCALES
    for name, entry in sorted(CATALOG.types.items())
    for channel in rendered_channels(entry)
]


def sensitive_sample_values(entry: CatalogEntry) -> dict[str, str]:
    return {
        field: str(entry.sample_data[field])
        for field in entry.sensitive_fields
        if len(str(entry.sample_data[field])) >= 3
    }


class _TagBalance(HTMLParser):
    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def assert_balanced_html(html: str) -> None:
    checker = _TagBalance()
    checker.feed(html)
    checker.close()
    assert not checker.errors, checker.errors
    assert not checker.stack, f"unclosed tags: {checker.stack}"


def test_the_expected_locales_are_shipped() -> None:
    assert {"en", "es", "pt", "pt-BR"} <= set(LOCALES)
    assert DEFAULT_LOCALE == "en"


@pytest.mark.parametrize(("locale", "type_name", "channel"), CASES)
def test_every_shipped_template_renders(locale: str, type_name: str, channel: Channel) -> None:
    entry = CATALOG.entry(type_name)
    rendered = RENDERER.render(type_name, channel, locale, entry.sample_data, CONTEXT)

    fields = CHANNEL_PARTS[channel]
    for field in Rendered.model_fields:
        value = getattr(rendered, field)
        if field == "templates":
            continue
        if field in fields:
            assert value, f"{field} rendered empty"
        else:
            assert value is None, f"{field} set for {channel}"

    # each part came from the most specific locale that ships the file
    chain = locale_chain(locale)
    for field, part in fields.items():
        expected = next(
            f"{c}/{type_name}/{part}" for c in chain if (TEMPLATES_DIR / c / type_name / part).exists()
        )
        assert rendered.templates[field] == expected

    if channel is Channel.SMS:
        assert len(rendered.sms) <= SMS_MAX_CHARS, f"SMS is {len(rendered.sms)} characters"
    if channel is Channel.WEBHOOK:
        assert isinstance(rendered.payload, dict)
        assert rendered.payload["type"] == type_name
        assert rendered.payload["notification_id"] == CONTEXT["notification_id"]
    if channel is Channel.EMAIL:
        assert "{{" not in rendered.html and "{%" not in rendered.html
        assert_balanced_html(rendered.html)
        used_locale = rendered.templates["html"].split("/", 1)[0]
        assert f'<html lang="{used_locale}">' in rendered.html
        assert "\n" not in rendered.subject
        if entry.category is Category.MARKETING:
            assert CONTEXT["unsubscribe_url"] in rendered.text
            assert CONTEXT["unsubscribe_url"].replace("&", "&amp;") in rendered.html
    if channel in RESTRICTED_CHANNELS:
        output = " ".join(v for v in (rendered.title, rendered.body, rendered.sms) if v).casefold()
        for field, value in sensitive_sample_values(entry).items():
            assert value.casefold() not in output, f"sensitive {field} shows in {channel}"


@pytest.mark.parametrize("locale", COMPLETE_LOCALES)
def test_complete_locales_ship_every_part(locale: str) -> None:
    shipped = {f.split("/", 1)[1] for f in type_template_files() if f.startswith(f"{locale}/")}
    for entry in CATALOG.types.values():
        missing = required_files(entry, with_webhook=locale == DEFAULT_LOCALE) - shipped
        assert not missing, f"{locale} lacks {sorted(missing)}"


def test_a_type_directory_in_any_locale_has_all_its_parts() -> None:
    """A partial locale may skip a whole type (it falls back), never a part of one: an email
    half in Portuguese, half in English is worse than all English."""
    by_dir: dict[tuple[str, str], set[str]] = {}
    for file in type_template_files():
        locale, type_name, _ = file.split("/")
        by_dir.setdefault((locale, type_name), set()).add(file.split("/", 1)[1])
    for (locale, type_name), files in sorted(by_dir.items()):
        entry = CATALOG.entry(type_name)
        missing = required_files(entry, with_webhook=locale == DEFAULT_LOCALE) - files
        assert not missing, f"{locale}/{type_name} lacks {sorted(missing)}"


def test_no_stray_template_files() -> None:
    """Every file is a part of a catalog type for a channel it may use, or a `_` partial; a typo
    in a file name would otherwise silently fall back to another locale."""
    allowed = set().union(*(required_files(entry) for entry in CATALOG.types.values()))
    for file in shipped_files():
        name = file.rsplit("/", 1)[-1]
        if name.startswith("_"):
            assert file.count("/") <= 1, f"partial {file} must sit at the root or in a locale"
            continue
        assert file.count("/") == 2, f"{file} is not <locale>/<type>/<part>"
        locale, rest = file.split("/", 1)
        assert rest in allowed, f"{file} matches no catalog type and channel"
        assert locale == locale_chain(locale)[0], f"{locale} is not a normalized locale tag"


def test_webhook_payloads_are_locale_independent() -> None:
    webhook = CHANNEL_PARTS[Channel.WEBHOOK]["payload"]
    for file in type_template_files():
        if file.endswith(f"/{webhook}"):
            assert file.startswith(f"{DEFAULT_LOCALE}/"), f"{file}: a machine contract has one version"


def _references(source: str, names: frozenset[str]) -> set[str]:
    """Every way a template can name one of `names`: as a variable, an attribute
    (`x.location`), an item (`x['location']`) or any string constant (`attribute(x, 'location')`)."""
    tree = RENDERER.environment.parse(source)
    found = set(meta.find_undeclared_variables(tree)) & names
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Const)):
        if isinstance(node, nodes.Name) and node.name in names:
            found.add(node.name)
        elif isinstance(node, nodes.Getattr) and node.attr in names:
            found.add(node.attr)
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and node.value in names:
            found.add(node.value)
    return found


@pytest.mark.parametrize("file", lock_screen_files())
def test_push_and_sms_templates_never_reference_sensitive_fields(file: str) -> None:
    source = (TEMPLATES_DIR / file).read_text("utf-8")
    entry = CATALOG.entry(file.split("/")[1])
    tree = RENDERER.environment.parse(source)
    # self-contained, so that this check sees everything the template can render
    assert not list(tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)))
    assert not _references(source, entry.sensitive_fields)


def test_the_sensitive_reference_check_sees_indirect_access() -> None:
    names = frozenset({"location"})
    for source in (
        "{{ location }}",
        "{{ data.location }}",
        "{{ data['location'] }}",
        "{{ data|attr('location') }}",
        "{% if location is defined %}x{% endif %}",
    ):
        assert _references(source, names) == {"location"}, source
    assert _references("Somewhere {{ device }}", names) == set()


@pytest.mark.parametrize("file", type_template_files())
def test_templates_use_only_data_fields_and_herald_context(file: str) -> None:
    """Static, so it also covers branches the sample data does not take."""
    entry = CATALOG.entry(file.split("/")[1])
    tree = RENDERER.environment.parse((TEMPLATES_DIR / file).read_text("utf-8"))
    unknown = meta.find_undeclared_variables(tree) - set(entry.sample_data) - CONTEXT_VARIABLES
    assert not unknown, f"{file} uses {sorted(unknown)}"


def test_marketing_email_carries_the_unsubscribe_link_in_every_locale() -> None:
    for file in type_template_files():
        _, type_name, part = file.split("/")
        if CATALOG.entry(type_name).category is Category.MARKETING and part in (
            "email.html.j2",
            "email.txt.j2",
        ):
            tree = RENDERER.environment.parse((TEMPLATES_DIR / file).read_text("utf-8"))
            assert "unsubscribe_url" in meta.find_undeclared_variables(tree), file


def _literal_text(source: str) -> str:
    return re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", source, flags=re.S)


@pytest.mark.parametrize("locale", [loc for loc in LOCALES if loc != DEFAULT_LOCALE])
def test_translations_are_not_copies_of_the_default(locale: str) -> None:
    for file in type_template_files():
        if not file.startswith(f"{locale}/"):
            continue
        _, type_name, part = file.split("/")
        default = Path(TEMPLATES_DIR, DEFAULT_LOCALE, type_name, part)
        if not default.exists():
            continue  # a stray file: test_no_stray_template_files reports it
        english = default.read_text("utf-8")
        if not re.search(r"[^\W\d_]", _literal_text(english)):
            continue  # e.g. "{{ headline }}": nothing to translate
        translated = (TEMPLATES_DIR / file).read_text("utf-8")
        assert _literal_text(translated) != _literal_text(english), f"{file} is an untranslated copy"
