"""The one in-memory dataset model every reader produces and every stage reads.

Items keep their original id, any text columns the source had (title,
description, categories, brand, price, ... as strings) and optional image URLs
or paths. Users keep their original id and a chronological sequence of item
positions (indices into ``Dataset.items``), so later stages work with dense
integers while every output can still be mapped back to the source ids.

On disk (the ``dataset`` artifact) this is two JSON-lines files,
``items.jsonl`` and ``users.jsonl``, plus ``dataset.json`` for the name and
free-form attributes (the generator of the default dataset records its
planted ground truth there).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

ITEMS_FILE = "items.jsonl"
USERS_FILE = "users.jsonl"
INFO_FILE = "dataset.json"


@dataclass(frozen=True)
class Item:
    id: str
    fields: dict[str, str] = field(default_factory=dict)
    images: tuple[str, ...] = ()

    def text(self, names: list[str] | tuple[str, ...], sep: str = "; ") -> str:
        """The item's text built from the named fields, skipping empty ones."""
        return sep.join(self.fields[n] for n in names if self.fields.get(n))


@dataclass(frozen=True)
class User:
    id: str
    items: tuple[int, ...]  # positions in Dataset.items, oldest first


@dataclass(frozen=True)
class SequenceStats:
    users: int
    items: int
    interactions: int
    min_length: int
    max_length: int
    mean_length: float
    median_length: float
    density: float


@dataclass
class Dataset:
    name: str
    items: list[Item]
    users: list[User]
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {item.id: i for i, item in enumerate(self.items)}
        if len(self._index) != len(self.items):
            raise ValueError(f"dataset {self.name!r} has duplicate item ids")

    @property
    def num_interactions(self) -> int:
        return sum(len(u.items) for u in self.users)

    def stats(self) -> SequenceStats:
        lengths = [len(u.items) for u in self.users] or [0]
        n_users, n_items = len(self.users), len(self.items)
        total = sum(lengths)
        return SequenceStats(
            users=n_users,
            items=n_items,
            interactions=total,
            min_length=min(lengths),
            max_length=max(lengths),
            mean_length=total / max(n_users, 1),
            median_length=float(statistics.median(lengths)),
            density=total / max(n_users * n_items, 1),
        )


def from_sequences(
    name: str,
    items: list[Item],
    sequences: list[tuple[str, list[str]]],
    *,
    attributes: dict[str, Any] | None = None,
    drop_unused_items: bool = False,
) -> Dataset:
    """Build a dataset from (user id, [item ids oldest first]) pairs.

    Every item id of a sequence must be in ``items`` (readers check this first
    so they can name the offending line). With ``drop_unused_items`` items that
    no user interacted with are removed (k-core output), keeping source order.
    """
    if drop_unused_items:
        used = {i for _, seq in sequences for i in seq}
        items = [it for it in items if it.id in used]
    index = {item.id: i for i, item in enumerate(items)}
    users = [User(uid, tuple(index[i] for i in seq)) for uid, seq in sequences]
    return Dataset(name, items, users, attributes or {})


def save_dataset(dataset: Dataset, folder: Path) -> None:
    """Write the canonical files into ``folder`` (an artifact's temporary folder)."""
    with (folder / ITEMS_FILE).open("w", encoding="utf-8") as handle:
        for item in dataset.items:
            row = {"id": item.id, "fields": item.fields, "images": list(item.images)}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (folder / USERS_FILE).open("w", encoding="utf-8") as handle:
        for user in dataset.users:
            row = {"id": user.id, "items": [dataset.items[i].id for i in user.items]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    info = {"name": dataset.name, "attributes": dataset.attributes}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", "utf-8")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not valid JSON: {exc.msg}", line=number,
                                hint="rebuild the artifact with `di data prepare`") from exc
    return rows


def load_dataset(folder: str | Path) -> Dataset:
    """Read a dataset artifact written by :func:`save_dataset`."""
    folder = Path(folder)
    for name in (ITEMS_FILE, USERS_FILE, INFO_FILE):
        if not (folder / name).is_file():
            raise DataError(folder / name, "missing dataset file",
                            hint="is this a folder written by `di data prepare`?")
    info = json.loads((folder / INFO_FILE).read_text("utf-8"))
    items = [Item(r["id"], r.get("fields", {}), tuple(r.get("images", ()))) for r in
             _read_jsonl(folder / ITEMS_FILE)]
    sequences = [(r["id"], r["items"]) for r in _read_jsonl(folder / USERS_FILE)]
    return from_sequences(info["name"], items, sequences, attributes=info.get("attributes", {}))
