"""The notification catalog: loaded from `catalog.yaml` and validated once per cold start."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from herald.models import AUDIENCE_NAME, Category, Channel, Urgency

# Chains the escalation state machine can run (statemachine/escalation.asl.json: one waiting step,
# then the last). A longer chain needs a machine of that length (decision 021).
MAX_CHAIN_STEPS = 2
ESCALATION_CHANNELS = frozenset({Channel.PUSH, Channel.REALTIME, Channel.SMS, Channel.EMAIL})
# Steps that wait for an acknowledgement: their senders hold a Step Functions client.
WAITING_CHANNELS = frozenset({Channel.PUSH, Channel.REALTIME, Channel.SMS})


# FCM keeps an undelivered message at most 28 days (also its default time to live).
MAX_PUSH_TTL_SECONDS = 28 * 86400
# APNs refuses an `apns-collapse-id` longer than 64 bytes: a longer rendered key is hashed.
MAX_COLLAPSE_KEY_BYTES = 64
# A sound is a file the apps ship: an Android raw resource name (lowercase letters, digits and
# underscores), optionally with its extension for iOS; or `default`, the system sound.
SOUND_NAME = re.compile(r"^[a-z0-9_]{1,64}(\.[a-z0-9]{2,4})?$")
APNS_CATEGORY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
COLLAPSE_LITERAL = re.compile(r"^[A-Za-z0-9_.:/#-]*$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Badge(StrEnum):
    """What a push does to the app icon's badge: `increment` adds this notification (Android's
    `notification_count`; on iOS the app's notification service extension, woken by
    `mutable-content`, adds it to its own count: APNs badges are absolute numbers); `none` leaves it
    to the app's notification channel (Android) and does not touch it (iOS)."""

    INCREMENT = "increment"
    NONE = "none"


class InterruptionLevel(StrEnum):
    """APNs `interruption-level` (iOS 15+): `passive` is listed silently, `active` lights the screen,
    `time-sensitive` breaks through a Focus, `critical` also through mute (Apple's entitlement)."""

    PASSIVE = "passive"
    ACTIVE = "active"
    TIME_SENSITIVE = "time-sensitive"
    CRITICAL = "critical"


class PushPresentation(BaseModel):
    """How a type's push looks and behaves on the device (the catalog's `push:` block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sound: str | None = Field(default="default", description="a sound file the apps ship, `default`, or null")
    badge: Badge = Badge.NONE
    interruption_level: InterruptionLevel = InterruptionLevel.ACTIVE
    apns_category: str | None = Field(default=None, description="the iOS notification category (its actions)")
    collapse_key: str | None = Field(
        default=None, description="a template over data (`order-{order_id}`); default: the notification id"
    )
    ttl_seconds: int | None = Field(default=None, ge=0, le=MAX_PUSH_TTL_SECONDS)
    data_only: bool = False

    @field_validator("sound")
    @classmethod
    def _sound(cls, value: str | None) -> str | None:
        if value is not None and not SOUND_NAME.match(value):
            raise ValueError(
                f"sound {value!r} is not a sound file name (lowercase letters, digits, underscores, "
                "an optional extension) nor `default`"
            )
        return value

    @field_validator("apns_category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        if value is not None and not APNS_CATEGORY.match(value):
            raise ValueError(f"apns_category {value!r}: 1 to 64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("collapse_key")
    @classmethod
    def _collapse_key(cls, value: str | None) -> str | None:
        if value is not None:
            collapse_fields(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _data_only(self) -> PushPresentation:
        if self.data_only:
            # nothing is shown by the system: the app renders it (and picks its sound and actions)
            if self.sound is not None:
                raise ValueError("a data-only push plays no sound of its own: set sound to null")
            if self.apns_category is not None:
                raise ValueError("a data-only push has no iOS category: the app renders it")
            if self.interruption_level is not InterruptionLevel.ACTIVE:
                raise ValueError("a data-only push has no interruption level: the app renders it")
        return self

    @property
    def collapse_fields(self) -> frozenset[str]:
        return collapse_fields(self.collapse_key) if self.collapse_key else frozenset()

    def collapse_key_for(self, data: Mapping[str, Any] | None, notification_id: str) -> str:
        """The push's collapse key: the template over `data`, or the notification id. A key longer
        than APNs allows is replaced by a hash of it (the same input still collapses together)."""
        key = notification_id
        if self.collapse_key:
            values = data or {}
            if all(values.get(f) not in (None, "") for f in self.collapse_fields):
                key = self.collapse_key.format_map({f: str(values[f]) for f in self.collapse_fields})
        if len(key.encode()) > MAX_COLLAPSE_KEY_BYTES:
            key = "h-" + hashlib.sha256(key.encode()).hexdigest()[:40]
        return key


def collapse_fields(template: str) -> frozenset[str]:
    """The data fields a collapse-key template names (`{order_id}`); ValueError for anything else
    (format specs, conversions, attribute or index lookups, text outside [A-Za-z0-9_.:/#-])."""
    fields: set[str] = set()
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"collapse_key {template!r}: {error}") from None
    for literal, name, spec, conversion in parts:
        if not COLLAPSE_LITERAL.match(literal):
            raise ValueError(f"collapse_key {template!r}: only letters, digits and _.:/#- outside fields")
        if name is None:
            continue
        if spec or conversion or not FIELD_NAME.match(name):
            raise ValueError(f"collapse_key {template!r}: a field is a plain name, like {{order_id}}")
        fields.add(name)
    if not fields and not template:
        raise ValueError("collapse_key is empty: leave it out for the notification id")
    return frozenset(fields)


class UnknownNotificationType(LookupError):
    """The event names a type that is not in the catalog."""


class ChainStep(BaseModel):
    """One step of a type's escalation chain. The first step goes when the notification is routed;
    each later one when the step before it was not acknowledged within `after_seconds` (the
    deployment's FallbackDelaySeconds when omitted) — or, with `only_if_undeliverable`, only when
    the step before it cannot be delivered at all (its delivery then ends the chain)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel
    after_seconds: int | None = Field(default=None, ge=1, le=86400)
    only_if_undeliverable: bool = False

    @model_validator(mode="after")
    def _one_trigger(self) -> ChainStep:
        if self.only_if_undeliverable and self.after_seconds is not None:
            raise ValueError(f"{self.channel}: a step taken only if undeliverable has no after_seconds")
        return self


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    category: Category
    urgency: Urgency
    channels: frozenset[Channel] = Field(min_length=1)
    required_data: frozenset[str] = frozenset()
    sensitive_fields: frozenset[str] = frozenset()
    # the id of a channel the Android app creates (NotificationChannel); FCM passes it as given
    android_channel: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    push: PushPresentation = PushPresentation()
    sample_data: dict[str, Any] = Field(default_factory=dict)
    escalation: tuple[ChainStep, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        if self.urgency is Urgency.SYSTEM and self.channels != {Channel.WEBHOOK}:
            raise ValueError(f"{self.name}: system notifications go by webhook only")
        if self.category is Category.MARKETING and self.urgency not in (Urgency.LOW, Urgency.MEDIUM):
            raise ValueError(f"{self.name}: marketing cannot be {self.urgency} urgency")
        for kind, fields in (("sensitive", self.sensitive_fields), ("required", self.required_data)):
            unknown = fields - set(self.sample_data)
            if unknown:
                raise ValueError(f"{self.name}: {kind} fields missing from sample_data: {sorted(unknown)}")
        if self.escalation:
            self._check_chain()
        if "push" in self.model_fields_set:
            self._check_push()
        return self

    def _check_push(self) -> None:
        """The `push:` block against the type's channels, urgency, category and data."""
        push = self.push
        if Channel.PUSH not in self.channels:
            raise ValueError(f"{self.name}: a push block on a type that is never pushed")
        loose = push.collapse_fields - self.required_data
        if loose:
            raise ValueError(f"{self.name}: collapse_key uses fields not in required_data: {sorted(loose)}")
        secret = push.collapse_fields & self.sensitive_fields
        if secret:
            raise ValueError(f"{self.name}: collapse_key uses sensitive fields: {sorted(secret)}")
        level = push.interruption_level
        if level is InterruptionLevel.CRITICAL and self.urgency is not Urgency.CRITICAL:
            raise ValueError(f"{self.name}: a critical interruption is for critical urgency only")
        if level is InterruptionLevel.PASSIVE and self.urgency in (Urgency.CRITICAL, Urgency.HIGH):
            raise ValueError(f"{self.name}: a passive push does not light the screen: not for {self.urgency}")
        if self.category is Category.MARKETING and level not in (
            InterruptionLevel.PASSIVE,
            InterruptionLevel.ACTIVE,
        ):
            raise ValueError(f"{self.name}: marketing never breaks through a Focus ({level})")
        if push.data_only and self.urgency is Urgency.CRITICAL:
            # iOS does not wake a force-quit app for a background push, and throttles them
            raise ValueError(f"{self.name}: a critical notification cannot be data-only (iOS may drop it)")

    def _check_chain(self) -> None:
        chain = self.escalation
        if self.urgency is not Urgency.HIGH:
            raise ValueError(f"{self.name}: an escalation chain is for high urgency, not {self.urgency}")
        if not 2 <= len(chain) <= MAX_CHAIN_STEPS:
            raise ValueError(
                f"{self.name}: an escalation chain has 2 to {MAX_CHAIN_STEPS} steps, not {len(chain)}"
            )
        channels = [step.channel for step in chain]
        if len(set(channels)) != len(channels):
            raise ValueError(f"{self.name}: a channel appears twice in the escalation chain")
        for step in chain:
            if step.channel not in ESCALATION_CHANNELS:
                raise ValueError(f"{self.name}: {step.channel} cannot be an escalation step")
            if step.channel not in self.channels:
                raise ValueError(f"{self.name}: escalation step {step.channel} is not among its channels")
        for step in chain[:-1]:  # a waiting step's sender answers its task token
            if step.channel not in WAITING_CHANNELS:
                raise ValueError(f"{self.name}: {step.channel} can only be the last escalation step")
        first = chain[0]
        if first.after_seconds is not None or first.only_if_undeliverable:
            raise ValueError(f"{self.name}: the first escalation step goes at once (no after_seconds)")

    def urgency_problem(self, urgency: Urgency) -> str | None:
        """Why a producer's urgency override cannot apply to this type (None when it can)."""
        if (urgency is Urgency.SYSTEM) != (self.category is Category.SYSTEM):
            return f"{self.name} ({self.category}) cannot be sent with urgency {urgency}"
        if self.category is Category.MARKETING and urgency not in (Urgency.LOW, Urgency.MEDIUM):
            return f"{self.name} is marketing: urgency {urgency} is not allowed"
        return None

    def missing_data(self, data: dict[str, Any]) -> list[str]:
        """Required fields an event's `data` lacks (or leaves empty)."""
        return sorted(f for f in self.required_data if data.get(f) in (None, ""))


class TopicSpec(BaseModel):
    """A topic people may follow or leave themselves (`PUT` / `DELETE /v1/me/topics/{topic}`).
    Any other topic is the directory's to assign (`UserUpserted.topics`): a person can leave it but
    never join it (decision 027)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1, max_length=200)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    types: dict[str, CatalogEntry]
    topics: dict[Annotated[str, Field(pattern=AUDIENCE_NAME, max_length=64)], TopicSpec] = Field(
        default_factory=dict
    )

    @model_validator(mode="before")
    @classmethod
    def _name_entries(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("types"), dict):
            raw = {**raw, "types": {k: {"name": k, **v} for k, v in raw["types"].items()}}
        return raw

    def entry(self, type_name: str) -> CatalogEntry:
        try:
            return self.types[type_name]
        except KeyError:
            raise UnknownNotificationType(f"unknown notification type {type_name!r}") from None


# libyaml's parser (in PyYAML's wheels) with the safe constructor: the same data as `yaml.safe_load`,
# ~1 ms instead of ~10 for the catalog at every cold start (decision 031).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_catalog(text: str) -> Catalog:
    return Catalog.model_validate(yaml.load(text, Loader=SAFE_LOADER))


@cache
def load_catalog() -> Catalog:
    """The packaged catalog (cached for the life of the execution environment)."""
    return parse_catalog(resources.files("herald").joinpath("catalog.yaml").read_text("utf-8"))
