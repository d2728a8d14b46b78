"""Rendering notifications from jinja2 templates, per type, channel and locale.

Templates live at ``<locale>/<type>/<part>.j2`` (packaged in ``herald/templates``, optionally
overridden one file at a time from S3). A template sees the event's ``data`` fields as top-level
variables plus the caller's ``extra_context`` (Herald's own values, e.g. ``notification_id``,
``event_id``, ``unsubscribe_url``; they win over a data field of the same name) and nothing else.

Guarantees:

* locale fallback per part: ``es-MX`` -> ``es`` -> ``en``; ``pt-BR`` -> ``pt`` -> ``en``;
  unknown -> ``en``;
* HTML parts (``*.html.j2``) are autoescaped, text parts are not;
* a missing variable is an error (``StrictUndefined``), never an empty string;
* push and SMS (what shows on a lock screen) never carry a catalog ``sensitive_fields`` value:
  the fields are removed from the context (a template that uses one fails with
  ``SensitiveFieldError``) and the output is scanned for the values (indirect leaks such as
  ``details|tojson`` fail too);
* templates run in jinja2's immutable sandbox: an S3 override is content, not code.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplatesNotFound,
    UndefinedError,
    select_autoescape,
)
from jinja2.loaders import split_template_path
from jinja2.runtime import missing
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape
from pydantic import BaseModel, ConfigDict, Field

from herald.catalog import Catalog, CatalogEntry, load_catalog
from herald.models import Category, Channel
from herald.settings import DEFAULT_TEMPLATE_TTL_SECONDS, TemplateSettings, load

DEFAULT_LOCALE = "en"
SMS_MAX_CHARS = 320
"""Longest SMS a shipped template may produce (two concatenated segments); enforced by tests.
The renderer itself never truncates."""

TEMPLATES_DIR = Path(__file__).with_name("templates")

CONTEXT_VARIABLES: frozenset[str] = frozenset({"notification_id", "event_id", "unsubscribe_url"})
"""Herald-provided variables a template may use besides the type's data fields. Senders pass them
in ``extra_context``: ``notification_id`` and ``event_id`` always, ``unsubscribe_url`` for
marketing email."""

CHANNEL_PARTS: Mapping[Channel, Mapping[str, str]] = {
    Channel.EMAIL: {"subject": "email_subject.j2", "html": "email.html.j2", "text": "email.txt.j2"},
    Channel.PUSH: {"title": "push_title.j2", "body": "push_body.j2"},
    Channel.SMS: {"sms": "sms.j2"},
    Channel.REALTIME: {"title": "inapp_title.j2", "body": "inapp_body.j2"},
    Channel.WEBHOOK: {"payload": "webhook.json.j2"},
}
"""Rendered field -> template file name, per channel (``realtime`` is the in-app/inbox render)."""

RESTRICTED_CHANNELS: frozenset[Channel] = frozenset({Channel.PUSH, Channel.SMS})
"""Channels whose output may show on a lock screen: never rendered with sensitive fields."""

_ONE_LINE_FIELDS = frozenset({"subject", "title", "body", "sms"})
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


# --- errors -------------------------------------------------------------------------------------


class TemplateRenderError(Exception):
    """A notification could not be rendered: a template bug or bad data (not worth retrying).

    Messages never contain data values, only names.
    """

    def __init__(
        self,
        message: str,
        *,
        type_name: str,
        channel: Channel,
        locale: str | None,
        part: str | None = None,
        template: str | None = None,
        variable: str | None = None,
    ) -> None:
        where = f"type={type_name!r} channel={channel.value!r} locale={locale!r}"
        if part is not None:
            where += f" part={part!r}"
        if template is not None and template != part:
            where += f" template={template!r}"
        super().__init__(f"{message} ({where})")
        self.type_name = type_name
        self.channel = channel
        self.locale = locale
        self.part = part
        self.template = template
        self.variable = variable


class SensitiveFieldError(TemplateRenderError):
    """A push or SMS render referenced, or its output contained, a catalog sensitive field."""

    def __init__(self, message: str, *, field: str, **where: Any) -> None:
        super().__init__(message, variable=field, **where)
        self.field = field


class TemplateNotFoundError(TemplateRenderError):
    """No locale in the fallback chain has the template for this part."""


class ChannelNotAllowedError(TemplateRenderError):
    """The catalog does not allow this channel for the type (in-app is allowed for every
    user-facing type: every such notification lands in the inbox)."""


class TemplateSourceError(RuntimeError):
    """The template store (S3) could not be read: transient or configuration, worth retrying.

    Deliberately not a TemplateRenderError, so that senders do not treat it as permanent.
    """


class _MissingVariable(UndefinedError):
    def __init__(self, message: str, *, variable: str | None, top_level: bool) -> None:
        super().__init__(message)
        self.variable = variable
        self.top_level = top_level


class _StrictUndefined(StrictUndefined):
    """StrictUndefined that remembers which name was missing (the sandbox's SecurityError
    undefined is left alone)."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: Any = UndefinedError,
    ) -> None:
        if exc is UndefinedError:
            exc = functools.partial(
                _MissingVariable, variable=None if name is None else str(name), top_level=obj is missing
            )
        super().__init__(hint, obj, name, exc)


# --- result ---------------------------------------------------------------------------------------


class Rendered(BaseModel):
    """One channel's rendered parts; only the channel's fields are set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str | None = None
    html: str | None = None
    text: str | None = None
    title: str | None = None
    body: str | None = None
    sms: str | None = None
    payload: dict[str, Any] | None = None
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="rendered field -> template used, e.g. 'es/order_shipped/push_title.j2'",
    )


class Renderer(Protocol):
    """`TemplateRenderer`'s interface, as its users need it (tests may pass a fake)."""

    def render(
        self,
        type_name: str,
        channel: Channel | str,
        locale: str | None,
        data: Mapping[str, Any],
        extra_context: Mapping[str, Any] | None = None,
    ) -> Rendered: ...


# --- locales --------------------------------------------------------------------------------------


def normalize_locale(locale: str | None) -> str | None:
    """``es_mx`` -> ``es-MX``, ``zh-hant-tw`` -> ``zh-Hant-TW``; None for anything that is not a
    BCP 47-looking tag (which also keeps path separators out of template names)."""
    if not locale or not _LOCALE_RE.match(locale):
        return None
    language, *subtags = re.split(r"[-_]", locale)
    out = [language.lower()]
    for subtag in subtags:
        if len(subtag) == 4 and subtag.isalpha():
            out.append(subtag.title())
        elif (len(subtag) == 2 and subtag.isalpha()) or (len(subtag) == 3 and subtag.isdigit()):
            out.append(subtag.upper())
        else:
            out.append(subtag.lower())
    return "-".join(out)


def locale_chain(locale: str | None, default: str = DEFAULT_LOCALE) -> tuple[str, ...]:
    """Most specific first, the default last: ``es-MX`` -> ``("es-MX", "es", "en")``."""
    chain: list[str] = []
    normalized = normalize_locale(locale)
    if normalized is not None:
        subtags = normalized.split("-")
        chain.extend("-".join(subtags[:n]) for n in range(len(subtags), 0, -1))
    chain.append(default)
    return tuple(dict.fromkeys(chain))


# --- loaders --------------------------------------------------------------------------------------


def packaged_loader() -> FileSystemLoader:
    """The templates shipped in the layer."""
    return FileSystemLoader(str(TEMPLATES_DIR), encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _Fetched:
    source: str | None  # None: no such key in S3 (use the fallback loader)
    fetched_at: float


class S3TemplateLoader(BaseLoader):
    """Templates from ``s3://<bucket>/<prefix>/<name>``, one file at a time.

    A key that does not exist falls back to ``fallback`` (the packaged set), so marketing can
    override one template without shipping all of them. Results, hits and misses, are cached in
    memory for ``ttl_seconds``; the environment's ``uptodate`` check honours the same TTL, so an
    edit in S3 shows up within one TTL and S3 is not called per render. When S3 fails (throttled,
    unreachable, deleted bucket) a previously fetched version is served for another TTL; without
    one the error is raised as ``TemplateSourceError``.

    A missing key answers 404 only when the function may ``s3:ListBucket`` the bucket; without it
    S3 answers 403 AccessDenied, which is raised, not treated as "not overridden".
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        fallback: BaseLoader | None = None,
        ttl_seconds: float = DEFAULT_TEMPLATE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.fallback = fallback if fallback is not None else packaged_loader()
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._cache: dict[str, _Fetched] = {}

    def key(self, template: str) -> str:
        name = "/".join(split_template_path(template))  # rejects '..'
        return f"{self.prefix}/{name}" if self.prefix else name

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Callable[[], bool]]:
        key = self.key(template)
        now = self.clock()
        fetched = self._cache.get(template)
        if fetched is None or now - fetched.fetched_at >= self.ttl_seconds:
            fetched = self._fetch(key, now, stale=fetched)
            self._cache[template] = fetched
        fetched_at = fetched.fetched_at

        def uptodate() -> bool:
            return self.clock() - fetched_at < self.ttl_seconds

        if fetched.source is not None:
            return fetched.source, f"s3://{self.bucket}/{key}", uptodate
        source, filename, _ = self.fallback.get_source(environment, template)  # TemplateNotFound
        return source, filename, uptodate

    def _fetch(self, key: str, now: float, stale: _Fetched | None) -> _Fetched:
        from botocore.exceptions import BotoCoreError, ClientError  # only when S3 is configured

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return _Fetched(response["Body"].read().decode("utf-8"), now)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return _Fetched(None, now)
            failure: Exception = error
        except (BotoCoreError, UnicodeDecodeError) as error:
            failure = error
        if stale is not None:
            return _Fetched(stale.source, now)
        raise TemplateSourceError(f"cannot read template s3://{self.bucket}/{key}: {failure}") from failure


# --- the renderer ---------------------------------------------------------------------------------


class TemplateRenderer:
    """Renders one notification for one channel.

    ``loader`` is the template source: the packaged set by default, any jinja2 loader, or a
    directory path (tests use a FileSystemLoader on a temporary directory).
    """

    def __init__(
        self,
        loader: BaseLoader | str | os.PathLike[str] | None = None,
        *,
        catalog: Catalog | None = None,
        default_locale: str = DEFAULT_LOCALE,
    ) -> None:
        if loader is None:
            loader = packaged_loader()
        elif isinstance(loader, str | os.PathLike):
            loader = FileSystemLoader(os.fspath(loader), encoding="utf-8")
        self.loader = loader
        self.catalog = catalog if catalog is not None else load_catalog()
        self.default_locale = default_locale
        self.environment = ImmutableSandboxedEnvironment(
            loader=loader,
            autoescape=select_autoescape(
                enabled_extensions=("html.j2",),
                disabled_extensions=(),
                default_for_string=False,
                default=False,
            ),
            undefined=_StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=True,
        )

    @classmethod
    def from_s3(
        cls,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        ttl_seconds: float = DEFAULT_TEMPLATE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        fallback: BaseLoader | None = None,
        catalog: Catalog | None = None,
    ) -> TemplateRenderer:
        """Templates from S3 where a key exists, the packaged ones (or ``fallback``) elsewhere."""
        loader = S3TemplateLoader(
            client, bucket, prefix, fallback=fallback, ttl_seconds=ttl_seconds, clock=clock
        )
        return cls(loader, catalog=catalog)

    def render(
        self,
        type_name: str,
        channel: Channel | str,
        locale: str | None,
        data: Mapping[str, Any],
        extra_context: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render every part of ``channel`` for ``type_name``.

        Raises ``UnknownNotificationType`` (catalog), ``ChannelNotAllowedError``,
        ``TemplateNotFoundError``, ``SensitiveFieldError``, ``TemplateRenderError`` (all three are
        TemplateRenderErrors: permanent) or ``TemplateSourceError`` (S3 unreadable: retry).
        """
        entry = self.catalog.entry(type_name)
        channel = Channel(channel)
        where: dict[str, Any] = {"type_name": type_name, "channel": channel, "locale": locale}
        _check_channel(entry, channel, where)

        restricted = channel in RESTRICTED_CHANNELS
        sensitive = entry.sensitive_fields if restricted else frozenset()
        context = {k: v for k, v in data.items() if isinstance(k, str)}
        context.update(extra_context or {})
        for name in sensitive:
            context.pop(name, None)

        chain = locale_chain(locale, self.default_locale)
        fields: dict[str, Any] = {}
        used: dict[str, str] = {}
        for field, part in CHANNEL_PARTS[channel].items():
            names = [f"{candidate}/{type_name}/{part}" for candidate in chain]
            try:
                template = self.environment.select_template(names)
            except TemplatesNotFound:
                raise TemplateNotFoundError(f"no template in any of {names}", part=part, **where) from None
            except TemplateError as error:  # syntax error in the file found
                raise TemplateRenderError(
                    f"template cannot be loaded: {error}", part=part, **where
                ) from error
            name = template.name or names[-1]
            text = self._render_part(template, context, sensitive, part=part, name=name, where=where)
            fields[field] = _finish(field, text, part=part, name=name, where=where)
            used[field] = name

        if restricted:
            _scan_for_sensitive_values(fields, used, data, entry.sensitive_fields, where)
        return Rendered(**fields, templates=used)

    def _render_part(
        self,
        template: Any,
        context: Mapping[str, Any],
        sensitive: frozenset[str],
        *,
        part: str,
        name: str,
        where: Mapping[str, Any],
    ) -> str:
        try:
            return template.render(context)
        except _MissingVariable as error:
            if error.top_level and error.variable in sensitive:
                raise SensitiveFieldError(
                    f"template uses sensitive field {error.variable!r}, which never renders in "
                    f"{where['channel'].value}",
                    field=error.variable,
                    part=part,
                    template=name,
                    **where,
                ) from None
            raise TemplateRenderError(
                f"undefined variable {error.variable!r}: {error}",
                part=part,
                template=name,
                variable=error.variable,
                **where,
            ) from None
        except TemplateSourceError:
            raise
        except TemplateError as error:
            raise TemplateRenderError(
                f"{type(error).__name__}: {error}", part=part, template=name, **where
            ) from None
        except Exception as error:  # a filter or test failing on the data: still the template's bug
            raise TemplateRenderError(
                f"{type(error).__name__} while rendering", part=part, template=name, **where
            ) from error


def _check_channel(entry: CatalogEntry, channel: Channel, where: Mapping[str, Any]) -> None:
    if channel in entry.channels:
        return
    if channel is Channel.REALTIME and entry.category is not Category.SYSTEM:
        return  # the inbox copy of every user-facing notification
    raise ChannelNotAllowedError(
        f"channel not allowed for this type (catalog allows {sorted(c.value for c in entry.channels)})",
        **where,
    )


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _finish(field: str, text: str, *, part: str, name: str, where: Mapping[str, Any]) -> Any:
    if field == "payload":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise TemplateRenderError(
                f"webhook template did not render valid JSON: {error.msg} at line {error.lineno}",
                part=part,
                template=name,
                **where,
            ) from None
        if not isinstance(payload, dict):
            raise TemplateRenderError(
                "webhook template must render a JSON object", part=part, template=name, **where
            )
        return payload
    if field in _ONE_LINE_FIELDS:
        result = _collapse(text)
    else:  # email html / text: keep lines, drop trailing spaces and runs of blank lines
        result = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.strip().splitlines()))
    if not result:
        raise TemplateRenderError("template rendered empty", part=part, template=name, **where)
    return result


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item)
    elif value is None or isinstance(value, bool):
        return
    else:
        yield str(value)


def _encodings(value: str) -> set[str]:
    """The forms a value takes in output: as is, JSON-, HTML- and URL-escaped; case-folded."""
    value = _collapse(value)
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        str(escape(value)),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
    }
    return {form.casefold() for form in forms if len(value) >= 3}


def _scan_for_sensitive_values(
    fields: Mapping[str, Any],
    used: Mapping[str, str],
    data: Mapping[str, Any],
    sensitive: frozenset[str],
    where: Mapping[str, Any],
) -> None:
    for field_name in sorted(sensitive):
        if field_name not in data:
            continue
        forms = set().union(*(_encodings(leaf) for leaf in _leaves(data[field_name])))
        for rendered_field, value in fields.items():
            output = (json.dumps(value) if not isinstance(value, str) else value).casefold()
            if any(form in output for form in forms):
                raise SensitiveFieldError(
                    f"rendered output contains the value of sensitive field {field_name!r}",
                    field=field_name,
                    part=CHANNEL_PARTS[where["channel"]][rendered_field],
                    template=used[rendered_field],
                    **where,
                )


@functools.cache
def default_renderer() -> TemplateRenderer:
    """The renderer of this execution environment: S3 overrides when ``TEMPLATE_BUCKET`` is set
    (``TEMPLATE_PREFIX``, ``TEMPLATE_CACHE_TTL_SECONDS``), else the packaged templates only (and
    boto3 is never imported)."""
    settings = load(TemplateSettings)
    if not settings.bucket:
        return TemplateRenderer()

    import boto3  # lazily: only functions configured for S3 templates pay for it

    return TemplateRenderer.from_s3(
        boto3.client("s3"), settings.bucket, settings.prefix, ttl_seconds=settings.cache_ttl_seconds
    )
