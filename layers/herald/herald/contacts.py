"""The person's contacts (email, phone) and SMS marketing consent, as their app sets them
(decision 016).

- An email address is validated by email-validator (syntax only, no DNS) and kept as Herald keeps
  addresses: ASCII (an internationalized domain in punycode, as SES sends and reports it), lower case.
- A phone number becomes E.164 with Google's libphonenumber (`phonenumbers`); a national number needs
  the `region` it is written in.
- SMS marketing consent (TCPA) is an act, not a setting, and it covers ONE number: each grant or
  withdrawal that changes the person's record is appended to their consent history
  (`UserStore.consent_history`) with the server's time, the source (the API and the app's user
  agent), the wording version the person saw and the number it covers; the profile's
  `sms_marketing_consent` holds the current state, with that number, which is what the router and
  the SMS sender check against the number they text. A grant for another number (or the same
  wording again after a phone change) is a new entry; changing the phone without a new grant ends
  the consent (a withdrawal entry, reason `phone changed`, for the old number).

Like preferences, the person's contacts are kept apart from the directory's and win over them.
Changing an address lifts nothing: suppression is keyed by the address (herald.stores.suppression),
so a bounced, complained or STOPped address stays suppressed whoever's profile names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from herald.preferences import omittable
from herald.stores.users import ConsentEvent, OwnChange, UserStore
from herald.users import Consent, UserProfile

MAX_USER_AGENT = 256
PHONE_CHANGED = "phone changed"  # the history's reason when a phone change ended the consent
_ABSENT = object()


class NoPhoneForConsent(ValueError):
    """SMS marketing consent was granted while Herald has no phone number for the person."""


def normalize_email(address: str) -> str:
    # The validators are imported on first use: only requests that write contacts need them, not
    # the API function's cold start (decision 031).
    from email_validator import EmailNotValidError, validate_email

    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise PydanticCustomError(
            "invalid_email", "not a valid email address: {reason}", {"reason": str(error)}
        ) from None
    return (valid.ascii_email or valid.normalized).lower()


def normalize_phone(number: str, region: str | None = None) -> str:
    """E.164 (`+14155552671`); `region` (ISO 3166-1 alpha-2) reads a national number."""
    import phonenumbers  # on first use (see normalize_email)

    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise PydanticCustomError(
                "invalid_phone", "a national number needs `region`, or write it with + and the country code"
            ) from None
        raise PydanticCustomError("invalid_phone", "not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise PydanticCustomError("invalid_phone", "not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class SmsMarketingChoice(BaseModel):
    """The person's answer to the SMS marketing consent prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    granted: bool = Field(description="true: the person agrees to marketing texts; false: withdraws")
    wording_version: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        validate_default=True,
        description="the version of the consent text the person was shown; required when granting",
    )

    @field_validator("wording_version")
    @classmethod
    def _required_to_grant(cls, version: str | None, info: Any) -> str | None:
        if version is None and info.data.get("granted") is True:
            raise PydanticCustomError("missing", "required when consent is granted")
        return version


class ContactsUpdate(BaseModel):
    """Contacts the person sets. A field sent is the person's and wins over the product's directory;
    a field omitted is left as it is; `null` removes the address (Herald will not use the
    directory's either). Changing an address never lifts a suppression of the old one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str | None = omittable("email address; null: none", max_length=320)
    region: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="ISO 3166-1 alpha-2 region a national `phone` is written in, e.g. `GB`",
    )
    phone: str | None = omittable("phone number, international (+…) or national with `region`", max_length=64)
    sms_marketing: SmsMarketingChoice = omittable("consent to marketing texts (recorded with its proof)")

    @field_validator("email")
    @classmethod
    def _email(cls, address: str | None) -> str | None:
        return None if address is None else normalize_email(address)

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is None:
            return None
        import phonenumbers  # on first use (see normalize_email)

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise PydanticCustomError("unknown_region", "not a region phone numbers are known for")
        return region.upper()

    @field_validator("phone")
    @classmethod
    def _phone(cls, number: str | None, info: Any) -> str | None:
        if number is None or "region" not in info.data:  # a bad region is reported on its own
            return number
        return normalize_phone(number, info.data["region"])


class SmsMarketingState(BaseModel):
    granted: bool = Field(description="whether marketing texts may be sent to the current `phone`")
    given_at: datetime | None = Field(description="when the consent in force was given")
    wording_version: str | None = Field(description="the consent text version in force")
    source: str | None = Field(description="how the consent in force was recorded")
    phone: str | None = Field(default=None, description="the E.164 number the consent in force covers")


class ContactsDocument(BaseModel):
    """The contacts Herald uses for the person (their own over the product's directory)."""

    email: str | None
    phone: str | None = Field(description="E.164")
    sms_marketing: SmsMarketingState


@dataclass(frozen=True)
class ConsentSource:
    """Where a consent came from: the API, and the app's request."""

    user_agent: str | None = None
    source_ip: str | None = None

    @property
    def label(self) -> str:
        return f"api; user-agent: {self.agent}" if self.agent else "api"

    @property
    def agent(self) -> str | None:
        agent = (self.user_agent or "").strip()[:MAX_USER_AGENT]
        return agent or None


def contacts_document(profile: UserProfile) -> ContactsDocument:
    consent = profile.sms_marketing_consent
    if consent is not None and not consent.covers(profile.phone, profile.phone):
        consent = None  # a consent for another number is not in force for this one
    return ContactsDocument(
        email=profile.email,
        phone=profile.phone,
        sms_marketing=SmsMarketingState(
            granted=consent is not None,
            given_at=consent.given_at if consent else None,
            wording_version=consent.wording_version if consent else None,
            source=consent.source if consent else None,
            phone=(consent.phone or profile.phone) if consent else None,
        ),
    )


def _event(
    granted: bool,
    phone: str | None,
    source: ConsentSource,
    at: datetime,
    wording_version: str | None = None,
    reason: str | None = None,
) -> ConsentEvent:
    return ConsentEvent(
        granted=granted,
        at=at,
        source=source.label,
        wording_version=wording_version,
        phone=phone,
        reason=reason,
        user_agent=source.agent,
        source_ip=source.source_ip,
    )


def _consent_change(
    own: dict[str, Any],
    choice: SmsMarketingChoice,
    phone: str | None,
    in_force: Consent | None,
    source: ConsentSource,
    at: datetime,
) -> tuple[dict[str, Any] | None, ConsentEvent] | None:
    """The new consent record and its history event, or None when the person's record already says so
    (a repeated grant of the same wording for the same number, a repeated withdrawal). `phone` is the
    person's phone after this request; `in_force` the consent their profile held before it."""
    old = own.get("sms_marketing_consent", _ABSENT)
    if choice.granted:
        if phone is None:
            raise NoPhoneForConsent("there is no phone number to consent for")
        if (
            isinstance(old, dict)
            and old.get("wording_version") == choice.wording_version
            and old.get("phone") == phone
        ):
            return None
        version = choice.wording_version
        consent = Consent(given_at=at, source=source.label, wording_version=version, phone=phone)
        return consent.model_dump(mode="json", exclude_none=True), _event(True, phone, source, at, version)
    if old is None:
        return None
    # the withdrawal names the number the withdrawn consent covered
    return None, _event(False, (in_force.phone if in_force else None) or phone, source, at)


class ContactsService:
    """Sets a person's contacts and records their SMS marketing consent on the Users table."""

    def __init__(self, users: UserStore) -> None:
        self._users = users

    def get(self, user_id: str) -> ContactsDocument:
        """The contacts and consent in force (one read); none yet when Herald does not know the
        person."""
        profile = self._users.get_profile(user_id)
        return contacts_document(profile or UserProfile(user_id=user_id))

    def update(
        self,
        user_id: str,
        update: ContactsUpdate,
        source: ConsentSource,
        now: datetime | None = None,
    ) -> ContactsDocument:
        """Raises NoPhoneForConsent, herald.stores.users.PersonErased or ConsentHistoryFull."""
        at = now or datetime.now(UTC)
        sent = update.model_fields_set

        def edit(own: dict[str, Any], current: UserProfile | None) -> OwnChange:
            new = dict(own)
            for name in ("email", "phone"):
                if name in sent:
                    new[name] = getattr(update, name)
            old_phone = current.phone if current else None
            phone = new.get("phone", old_phone)  # theirs, else the directory's
            in_force = current.sms_marketing_consent if current else None
            recorded = in_force is not None or isinstance(own.get("sms_marketing_consent"), dict)
            events: list[ConsentEvent] = []
            withdrawn = "sms_marketing" in sent and not update.sms_marketing.granted
            if phone != old_phone and recorded and not withdrawn:
                # consent covers one number: a new number is not consented to until the person says so
                new["sms_marketing_consent"] = None
                covered = in_force.phone if in_force else None
                events.append(_event(False, covered or old_phone, source, at, reason=PHONE_CHANGED))
            if "sms_marketing" in sent:
                change = _consent_change(new, update.sms_marketing, phone, in_force, source, at)
                if change is not None:
                    new["sms_marketing_consent"], event = change
                    events.append(event)
            return OwnChange(choices=new, consent_events=tuple(events))

        return contacts_document(self._users.edit_own(user_id, edit, now=at))
