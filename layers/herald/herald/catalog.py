"""The notification catalog: loaded from `catalog.yaml` and validated once per cold start."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.models import Category, Channel, Urgency


class UnknownNotificationType(LookupError):
    """The event names a type that is not in the catalog."""


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
        return self

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
