"""A recipient as Herald knows them: contacts, devices, preferences, consents, quiet hours."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from herald.models import MANDATORY_CATEGORIES, Category, Channel

MAX_DEVICES_PER_USER = 20


class QuietHours(BaseModel):
    """A daily window in the user's local time; `start > end` wraps past midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @field_validator("end")
    @classmethod
    def _not_empty(cls, end: time, info) -> time:
        if info.data.get("start") == end:
            raise ValueError("quiet hours start and end must differ")
        return end


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: str = Field(pattern=r"^(android|ios|web)$")
    registered_at: AwareDatetime = Field(description="the latest registration (each PUT refreshes it)")
    app_version: str | None = Field(default=None, min_length=1, max_length=64)
    locale: str | None = Field(default=None, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


PHONE_PATTERN = r"^\+[1-9]\d{6,14}$"  # E.164


class Consent(BaseModel):
    """A recorded consent (TCPA for SMS marketing): when, how, and for which number it was given.
    It covers that one number only; sent without `phone`, it covers the `phone` sent beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    given_at: AwareDatetime
    source: str = Field(min_length=1)
    wording_version: str | None = Field(
        default=None, min_length=1, max_length=64, description="the consent text the person agreed to"
    )
    phone: str | None = Field(
        default=None,
        pattern=PHONE_PATTERN,
        description="the E.164 number the person consented to receive marketing texts at; the consent "
        "covers no other (omitted: the profile's `phone` sent with it; no phone: no number)",
    )

    def covers(self, number: str | None, profile_phone: str | None) -> bool:
        """Whether marketing texts to `number` are consented to; `profile_phone` is the profile's
        current phone (what a consent without `phone` covers)."""
        if not number:
            return False
        return number == (self.phone if self.phone is not None else profile_phone)


class WebhookEndpoint(BaseModel):
    """A system subscriber's endpoint; the signing secret lives in Secrets Manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    secret_name: str = Field(min_length=1)


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[Channel, bool] = Field(
        default_factory=dict, description="per-channel opt-in; a missing channel counts as opted in"
    )
    muted_categories: frozenset[Category] = frozenset()
    muted_types: frozenset[str] = frozenset()
    muted_channels: dict[Category, frozenset[Channel]] = Field(
        default_factory=dict, description="per category, the channels not wanted for it"
    )
    marketing_opt_in: bool = False

    def channel_enabled(self, channel: Channel) -> bool:
        return self.channels.get(channel, True)

    def channel_muted_for(self, category: Category, channel: Channel) -> bool:
        """The person turned `channel` off for `category` alone. Security and system notifications
        cannot be muted: applying that rule is the caller's (herald.models.MANDATORY_CATEGORIES)."""
        return channel in self.muted_channels.get(category, frozenset())

    def turned_off(self, channel: Channel, category: Category) -> str | None:
        """Why the person does not want `category` on `channel` now (None: they do): the channel
        off, or off for this category (never for security and system). What a sender re-checks
        before a step that waited (an escalation's)."""
        if not self.channel_enabled(channel):
            return f"{channel} disabled by the user"
        if category not in MANDATORY_CATEGORIES and self.channel_muted_for(category, channel):
            return f"{channel} disabled by the user for {category}"
        return None


def known_time_zone(zone: str) -> str:
    """`zone` when it is an IANA time zone this runtime knows (tzdata), else ValueError."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {zone!r}") from None
    return zone


class DirectoryProfile(BaseModel):
    """What the product's directory owns about a person (synced over the bus, `UserUpserted`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    email: str | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")
    locale: str = "en"
    time_zone: str = "UTC"
    quiet_hours: QuietHours | None = None
    roles: frozenset[str] = frozenset()
    topics: frozenset[str] = Field(
        default=frozenset(), description="topics the directory follows for them (their own choice wins)"
    )
    preferences: Preferences = Field(default_factory=Preferences)
    sms_marketing_consent: Consent | None = None
    webhook: WebhookEndpoint | None = Field(
        default=None, description="a system subscriber's endpoint (urgency `system` is delivered here)"
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        return known_time_zone(zone)

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, email: str | None) -> str | None:
        if email is None:
            return None
        if "@" not in email or email.startswith("@") or email.endswith("@"):
            raise ValueError("not an email address")
        return email.strip().lower()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class UserProfile(DirectoryProfile):
    """The directory's part plus what the person's apps register (devices)."""

    devices: dict[str, Device] = Field(default_factory=dict, description="push token -> device")
