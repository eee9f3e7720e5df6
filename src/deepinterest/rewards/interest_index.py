"""The interests artifact as a lookup for rewards: items' labelled descriptors, quality, users.

``di mine`` writes an ``interests`` folder (docs/interests.md,
:mod:`..miners.stage`) whose ``items.jsonl`` holds, per item, the ensembled
descriptors (``text``, ``confidence``, reward ``label`` 1/0 or ``null``,
label ``probability``) and the item's ``quality`` q = sum(c_j l_j) /
sum(c_j), and whose ``users.jsonl`` holds each user's interests (``text``,
``confidence``) aggregated from the items before the user's validation
target. :class:`InterestIndex` keeps exactly what the ``interest`` and
``quality`` rewards read, keyed by catalogue index (items) and user id, as
plain tuples so a reward holding it pickles cheaply.

Items of the artifact that the catalogue does not hold are skipped (and
counted in ``skipped_items``); catalogue items the artifact does not hold
have no descriptors and no quality. Confidences are clipped to [0, 1].
The reader does not import the miners package: rewards and mining meet only
through the artifact on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..schemas.sids import SIDCatalog
from ..errors import DeepInterestError
from ..schemas.interests import ITEMS_FILE, USERS_FILE, read_rows



class Interest(NamedTuple):
    """One descriptor: its text, confidence in [0, 1], reward label (1, 0 or None) and the
    labeler's probability (None when it gave none)."""

    text: str
    confidence: float
    label: int | None = None
    probability: float | None = None


def _clip(value: Any) -> float:
    return min(max(float(value), 0.0), 1.0)


def _interest(record: Mapping[str, Any]) -> Interest:
    label = record.get("label")
    probability = record.get("probability")
    return Interest(str(record["text"]), _clip(record.get("confidence", 1.0)),
                    None if label is None else int(label),
                    None if probability is None else float(probability))


def _descriptors(records: Iterable[Mapping[str, Any]] | None) -> tuple[Interest, ...]:
    return tuple(_interest(r) for r in records or ())


@dataclass(frozen=True)
class InterestIndex:
    """Descriptors and quality per catalogue index, interests per user id."""

    items: dict[int, tuple[Interest, ...]] = field(default_factory=dict)
    quality: dict[int, float] = field(default_factory=dict)
    users: dict[str, tuple[Interest, ...]] = field(default_factory=dict)
    skipped_items: int = 0

    @classmethod
    def from_records(cls, item_rows: Iterable[Mapping[str, Any]],
                     user_rows: Iterable[Mapping[str, Any]], catalog: SIDCatalog
                     ) -> InterestIndex:
        """From rows shaped like ``items.jsonl`` / ``users.jsonl`` lines (already parsed)."""
        row_of = {item_id: i for i, item_id in enumerate(catalog.item_ids)}
        items: dict[int, tuple[Interest, ...]] = {}
        quality: dict[int, float] = {}
        skipped = 0
        for row in item_rows:
            index = row_of.get(str(row["item"]))
            if index is None:
                skipped += 1
                continue
            items[index] = _descriptors(row.get("descriptors"))
            if row.get("quality") is not None:
                quality[index] = _clip(row["quality"])
        users = {str(row["user"]): _descriptors(row.get("descriptors")) for row in user_rows}
        return cls(items, quality, users, skipped)

    @classmethod
    def from_artifact(cls, interests_dir: str | Path, catalog: SIDCatalog) -> InterestIndex:
        """Read ``items.jsonl`` (required) and ``users.jsonl`` (optional) of ``di mine``."""
        folder = Path(interests_dir)
        items_path = folder / ITEMS_FILE
        if not items_path.is_file():
            raise DeepInterestError(f"{items_path}: not found; is {folder} an interests "
                                    "artifact? run `di mine` first")
        users_path = folder / USERS_FILE
        users = read_rows(users_path, "user") if users_path.is_file() else []
        return cls.from_records(read_rows(items_path, "item"), users, catalog)

    def descriptors(self, item: int) -> tuple[Interest, ...]:
        """An item's descriptors (empty when it has none or the artifact lacks it)."""
        return self.items.get(item, ())

    def user(self, user: str | None) -> tuple[Interest, ...]:
        """A user's interests (empty for an unknown user or ``None``)."""
        return () if user is None else self.users.get(str(user), ())

    def texts(self) -> list[str]:
        """Every descriptor text of items and users, once each."""
        seen = {d.text: None for ds in self.items.values() for d in ds}
        seen.update({d.text: None for ds in self.users.values() for d in ds})
        return list(seen)
