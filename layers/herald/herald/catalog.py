"""The notification catalog: loaded from `catalog.yaml` and validated once per cold start."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.models import Category, Channel, Urgency

# Chains the escalation state machine can run (statemachine/escalation.asl.json: one waiting step,
# then the last). A longer chain needs a machine of that length (decision 021).
MAX_CHAIN_STEPS = 2
ESCALATION_CHANNELS = frozenset({Channel.PUSH, Channel.REALTIME, Channel.SMS, Channel.EMAIL})
# Steps that wait for an acknowledgement: their senders hold a Step Functions client.
WAITING_CHANNELS = frozenset({Channel.PUSH, Channel.REALTIME, Channel.SMS})


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
    android_channel: str
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
        return self

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


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    types: dict[str, CatalogEntry]

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


def parse_catalog(text: str) -> Catalog:
    return Catalog.model_validate(yaml.safe_load(text))


@cache
def load_catalog() -> Catalog:
    """The packaged catalog (cached for the life of the execution environment)."""
    return parse_catalog(resources.files("herald").joinpath("catalog.yaml").read_text("utf-8"))
