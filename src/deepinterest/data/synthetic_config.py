"""The embedded default dataset's settings and the tables it is drawn from.

:class:`SyntheticConfig` is the ``[data.synthetic]`` section of a run config
and :func:`load_catalog` reads ``default_catalog.json`` (package data beside
this module); the generator itself is :mod:`.synthetic`. They live apart so
that reading a config does not import the generator.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

CATALOG_FILE = "default_catalog.json"  # package data beside this module


@dataclass(frozen=True)
class Motivation:
    id: str
    phrase: str
    traits: tuple[str, ...]  # adjectives placed before the product noun
    uses: tuple[str, ...]  # "for ..." phrases
    benefits: tuple[str, ...]  # third-person verb phrases
    journey: tuple[str, ...]  # product types in their typical purchase order

    @property
    def evidence(self) -> tuple[str, ...]:
        return self.traits + self.uses + self.benefits


@dataclass(frozen=True)
class ProductType:
    name: str
    noun: str  # used in descriptions ("This ... pair of socks")
    title: str  # used in titles
    categories: str
    price: tuple[float, float]
    materials: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """The literal tables the generator draws from (``default_catalog.json``)."""

    motivations: tuple[Motivation, ...]
    product_types: tuple[ProductType, ...]
    styles: tuple[str, ...]  # title words between brand and material
    brands: tuple[str, ...]
    fillers: tuple[str, ...]  # motivation-free sentences; ``{brand}`` is filled in
    one_phrase: tuple[str, ...]  # evidence templates: {t} trait, {u} use, {b} benefit,
    two_phrases: tuple[str, ...]  # {n} product noun
    budget_motivation: str  # priced in the lower part of each type's range


@functools.cache
def load_catalog() -> Catalog:
    """The catalogue shipped as package data, parsed once per process.

    Its motivations are the answer key of the default dataset: only this
    generator (and its tests) may read them; a miner must find them in the
    item text.
    """
    text = resources.files(__package__).joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    return Catalog(
        motivations=tuple(_motivation(m) for m in raw["motivations"]),
        product_types=tuple(_product_type(t) for t in raw["product_types"]),
        **{k: tuple(raw[k]) for k in ("styles", "brands", "fillers", "one_phrase",
                                      "two_phrases")},
        budget_motivation=raw["budget_motivation"],
    )


def _motivation(raw: dict[str, Any]) -> Motivation:
    lists = (tuple(raw[k]) for k in ("traits", "uses", "benefits", "journey"))
    return Motivation(raw["id"], raw["phrase"], *lists)


def _product_type(raw: dict[str, Any]) -> ProductType:
    return ProductType(raw["name"], raw["noun"], raw["title"], raw["categories"],
                       tuple(raw["price"]), tuple(raw["materials"]))


def _motivation_count() -> int:
    return len(load_catalog().motivations)


class SyntheticConfig(BaseModel):
    """Parameters of :func:`generate`; the defaults give the embedded default dataset."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    seed: int = Field(0, ge=0)
    n_items: int = Field(500, gt=0)
    n_users: int = Field(1200, gt=0)
    # Default: every motivation of the catalogue (read lazily; the upper bound is in _check).
    n_motivations: int = Field(default_factory=_motivation_count, ge=2)
    min_length: int = Field(5, ge=3)  # leave-one-out needs train, valid and test items
    max_length: int = Field(20, ge=3)
    length_exponent: float = Field(1.0, ge=0)  # P(length = min + k - 1) ~ k^-exponent
    noise: float = Field(0.15, ge=0, lt=1)  # share of steps that pick any item uniformly
    second_interest_rate: float = Field(0.4, ge=0, le=1)  # users with two motivations
    switch_rate: float = Field(0.3, ge=0, le=1)  # per step, for two-motivation users
    order_strength: float = Field(0.8, ge=0, le=1)  # next type follows the journey
    popularity_exponent: float = Field(1.0, ge=0)  # Zipf skew within a cell
    secondary_rate: float = Field(0.25, ge=0, le=1)  # items with a secondary motivation
    secondary_weight: float = Field(0.5, ge=0)  # their draw weight in that motivation's cell

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) < min_length ({self.min_length})")
        if self.n_items < self.max_length:
            raise ValueError(f"n_items ({self.n_items}) < max_length ({self.max_length}): "
                             "items never repeat within a sequence")
        available = _motivation_count()
        if self.n_motivations > available:
            raise ValueError(f"n_motivations ({self.n_motivations}) > the catalogue's "
                             f"{available} motivations")
        cells = sum(len(m.journey) for m in load_catalog().motivations[: self.n_motivations])
        if self.n_items < cells:
            raise ValueError(f"n_items must be at least {cells} (one item per motivation and "
                             f"product type for {self.n_motivations} motivations)")
        return self
