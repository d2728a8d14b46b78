"""The person's notification preferences as the app sees them: one document (channel opt-ins,
muted categories and types, channels muted per category, marketing opt-in, quiet hours, time zone,
locale), read as what the router will use and replaced whole by the person (decision 016).

The product's directory supplies the defaults; what the person sends is kept apart on their profile
item (`own`, herald.stores.users) and wins. A field the person sends is their choice; a field they
omit follows the product's default (so an app that does not know a newer field leaves it alone).
"""

from __future__ import annotations

from datetime import time
from functools import cache
from importlib import resources
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from herald.catalog import load_catalog
from herald.models import Category, Channel
from herald.rendering import normalize_locale
from herald.routing.decision import MANDATORY_CATEGORIES
from herald.stores.users import OwnChange, UserStore
from herald.users import QuietHours, UserProfile

# A person's channels (webhook is a system subscriber's, not a person's).
PERSON_CHANNELS = (Channel.EMAIL, Channel.PUSH, Channel.SMS, Channel.REALTIME)
# The keys of the person's own settings this document owns (contacts own the others).
PREFERENCE_FIELDS = ("preferences", "quiet_hours", "time_zone", "locale")
MAX_MUTED_TYPES = 200


@cache
def known_time_zones() -> frozenset[str]:
    """The IANA zone names of the tzdata package the layer ships (the system's list without it)."""
    try:
        names = resources.files("tzdata").joinpath("zones").read_text("utf-8").split()
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is a layer dependency
        names = sorted(available_timezones())
    return frozenset(names)


def check_time_zone(zone: str) -> str:
    if zone not in known_time_zones():
        raise PydanticCustomError("unknown_time_zone", "not an IANA time zone name (e.g. Europe/Paris)")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("unknown_time_zone", "this time zone cannot be loaded") from None
    return zone


def check_locale(locale: str) -> str:
    normalized = normalize_locale(locale)
    if normalized is None:
        raise PydanticCustomError("invalid_locale", "not a BCP 47 language tag (e.g. en, pt-BR)")
    return normalized


def _mutable_category(category: Category) -> Category:
    if category in MANDATORY_CATEGORIES:
        raise PydanticCustomError(
            "cannot_mute", "{category} notifications cannot be muted", {"category": category.value}
        )
    return category


def _mutable_type(type_name: str) -> str:
    entry = load_catalog().types.get(type_name)
    if entry is None:
        raise PydanticCustomError("unknown_type", "not a notification type of the catalog")
    if entry.category in MANDATORY_CATEGORIES:
        raise PydanticCustomError(
            "cannot_mute",
            "{category} notifications cannot be muted",
            {"category": entry.category.value},
        )
    return type_name


def _person_channel(channel: Channel) -> Channel:
    if channel not in PERSON_CHANNELS:
        raise PydanticCustomError(
            "not_a_person_channel", "not one of a person's channels (email, push, sms, realtime)"
        )
    return channel


TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(check_time_zone)]
Locale = Annotated[str, StringConstraints(min_length=2, max_length=35), AfterValidator(check_locale)]
MutableCategory = Annotated[Category, AfterValidator(_mutable_category)]
MutableType = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_mutable_type)]
PersonChannel = Annotated[Channel, AfterValidator(_person_channel)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # omitted means "the product's default", not a value of ours


def omittable(description: str, **constraints: Any) -> Any:
    """A field the person may omit: no default of ours in the schema (omitted means "as the product
    has it"), and `null` is only a value where the type says so."""
    return Field(default=None, description=description, json_schema_extra=_no_default, **constraints)


class QuietHoursWindow(BaseModel):
    """A daily window, in the person's `time_zone`, when push and SMS wait (critical ones excepted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time = Field(description="local wall time, `HH:MM` (answered as `HH:MM:SS`)")
    end: time = Field(description="local wall time; before `start`: the window wraps past midnight")

    @field_validator("start", "end")
    @classmethod
    def _wall_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise PydanticCustomError("wall_time", "a wall time without offset (the zone is `time_zone`)")
        return value

    @field_validator("end")
    @classmethod
    def _not_empty(cls, end: time, info: Any) -> time:
        if info.data.get("start") == end:
            raise PydanticCustomError("empty_window", "quiet hours start and end must differ")
        return end


class ChannelOptIns(BaseModel):
    """Whether the person wants notifications on each of their channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: bool = Field(description="email")
    push: bool = Field(description="push notifications on the person's devices")
    sms: bool = Field(description="text messages")
    realtime: bool = Field(description="in-app, while the app is open")


class ChannelOptInsUpdate(BaseModel):
    """Channel opt-ins to set; a channel omitted follows the product's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: bool = omittable("email")
    push: bool = omittable("push notifications on the person's devices")
    sms: bool = omittable("text messages")
    realtime: bool = omittable("in-app, while the app is open")


class PreferencesDocument(BaseModel):
    """The preferences in effect: the person's choices over the product's defaults (what the router
    uses). Sending it back unchanged is a valid `PUT`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelOptIns
    muted_categories: list[Category] = Field(description="categories not wanted at all")
    muted_types: list[str] = Field(description="notification types not wanted at all (catalog names)")
    muted_channels: dict[Category, list[Channel]] = Field(
        description="per category, the channels not wanted for it (the matrix's cells turned off); "
        "never security or system"
    )
    marketing_opt_in: bool = Field(description="promotional notifications wanted")
    quiet_hours: QuietHoursWindow | None = Field(description="null: no quiet hours")
    time_zone: str = Field(description="IANA time zone of quiet hours and local times")
    locale: str = Field(description="BCP 47 language tag notifications are written in")


class PreferencesUpdate(BaseModel):
    """The whole preferences document a person sets. A field sent is the person's choice and wins
    over the product's default; a field omitted follows the product's default. Security and system
    notifications cannot be muted (a channel can still be turned off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelOptInsUpdate = omittable("per-channel opt-ins")
    muted_categories: list[MutableCategory] = omittable(
        "categories not wanted at all; `security` and `system` are refused", max_length=len(Category)
    )
    muted_types: list[MutableType] = omittable(
        "catalog types not wanted at all; a security or system type is refused", max_length=MAX_MUTED_TYPES
    )
    muted_channels: dict[MutableCategory, list[PersonChannel]] = omittable(
        'per category, the channels not wanted for it (e.g. `{"transactional": ["email"]}`); `security` '
        "and `system` are refused",
        max_length=len(Category),
    )
    marketing_opt_in: bool = omittable("promotional notifications wanted")
    quiet_hours: QuietHoursWindow | None = omittable("quiet hours; null: none")
    time_zone: TimeZoneName = omittable("IANA time zone name, e.g. `Europe/Paris`")
    locale: Locale = omittable("BCP 47 language tag, e.g. `pt-BR` (normalized)")

    def choices(self) -> dict[str, Any]:
        """The person's own choices this document makes (JSON values; only the fields sent)."""
        sent = self.model_fields_set
        preferences: dict[str, Any] = {}
        if "channels" in sent:
            preferences["channels"] = self.channels.model_dump(exclude_unset=True)
        if "muted_categories" in sent:
            preferences["muted_categories"] = sorted({c.value for c in self.muted_categories})
        if "muted_types" in sent:
            preferences["muted_types"] = sorted(set(self.muted_types))
        if "muted_channels" in sent:
            preferences["muted_channels"] = {
                category.value: sorted({c.value for c in channels})
                for category, channels in sorted(self.muted_channels.items())
                if channels
            }
        if "marketing_opt_in" in sent:
            preferences["marketing_opt_in"] = self.marketing_opt_in
        choices: dict[str, Any] = {"preferences": preferences} if preferences else {}
        if "quiet_hours" in sent:
            choices["quiet_hours"] = self.quiet_hours.model_dump(mode="json") if self.quiet_hours else None
        for name in ("time_zone", "locale"):
            if name in sent:
                choices[name] = getattr(self, name)
        return choices


def _window(quiet: QuietHours | None) -> QuietHoursWindow | None:
    if quiet is None:
        return None
    return QuietHoursWindow(start=quiet.start.replace(tzinfo=None), end=quiet.end.replace(tzinfo=None))


def effective_document(profile: UserProfile) -> PreferencesDocument:
    """What the router will use, in the document's shape. Mutes the router ignores (a security or
    system category or type, a type no longer in the catalog) are left out, so the document can
    be sent back as it is."""
    preferences = profile.preferences
    types = load_catalog().types
    quiet = profile.quiet_hours
    return PreferencesDocument(
        channels=ChannelOptIns(**{c.value: preferences.channel_enabled(c) for c in PERSON_CHANNELS}),
        muted_categories=sorted(c for c in preferences.muted_categories if c not in MANDATORY_CATEGORIES),
        muted_types=sorted(
            t for t in preferences.muted_types if t in types and types[t].category not in MANDATORY_CATEGORIES
        ),
        muted_channels={
            category: sorted(c for c in channels if c in PERSON_CHANNELS)
            for category, channels in sorted(preferences.muted_channels.items())
            if category not in MANDATORY_CATEGORIES and any(c in PERSON_CHANNELS for c in channels)
        },
        marketing_opt_in=preferences.marketing_opt_in,
        quiet_hours=_window(quiet),
        time_zone=profile.time_zone,
        locale=normalize_locale(profile.locale) or profile.locale,
    )


class PreferencesService:
    """Reads and replaces a person's preferences on the Users table."""

    def __init__(self, users: UserStore) -> None:
        self._users = users

    def get(self, user_id: str) -> PreferencesDocument:
        """The effective document; the product's defaults when Herald does not know the person yet."""
        profile = self._users.get_profile(user_id)
        return effective_document(profile or UserProfile(user_id=user_id))

    def replace(self, user_id: str, update: PreferencesUpdate) -> PreferencesDocument:
        """The person's preferences become `update` (omitted fields: the product's defaults again).
        Raises herald.stores.users.PersonErased for an erased person."""
        new = update.choices()

        def edit(own: dict[str, Any], _current: UserProfile | None) -> OwnChange:
            kept = {k: v for k, v in own.items() if k not in PREFERENCE_FIELDS}
            return OwnChange(choices={**kept, **new})

        return effective_document(self._users.edit_own(user_id, edit))
