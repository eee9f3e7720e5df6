"""Readers of the raw Amazon review dumps: 2014, 2018 and 2023 (McAuley lab).

Each reader streams a reviews file into :class:`~.kcore.Interaction` s, drops
repeat reviews, applies the iterative k-core (5 by default: the benchmark
setting), orders each user's items by time and attaches item metadata from
the optional meta file. Decisions (see also ``kcore.py``):

- Repeat (user, item) reviews keep the earliest one; ties on timestamp
  (day resolution in 2014/2018) are broken by position in the reviews file.
- 2014 meta lines are Python dict literals (single quotes), not JSON; they
  are read with ``ast.literal_eval``. 2014 reviews are JSON, with the same
  literal fallback in case a re-export wrote them like the meta.
- 2023 reviews carry both ``asin`` (a variant: colour, size) and
  ``parent_asin`` (the product). The item id is ``parent_asin`` by default,
  as in the 2023 benchmark scripts; the meta file is keyed by it, and with
  ``item_key="asin"`` each variant takes its parent's metadata.
- 2023 timestamps are milliseconds and are kept as such: they only order.
- Meta files are GBs: only lines whose id is needed are parsed (a cheap
  regex finds the id first), and reading stops once every item is found.
  So a malformed meta line of an item outside the k-core is not reported.
- Duplicate meta rows (the 2018 files have some) keep the first.
- Nothing is written to disk: the caller saves the returned Dataset.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .io import iter_json_records, iter_lines, parse_json_line, parse_literal_line
from .kcore import Interaction, dedupe, items_in_order, kcore_with_report, sequences_by_user
from .model import Dataset, Item, from_sequences

__all__ = ["read_amazon2014", "read_amazon2018", "read_amazon2023"]

Record = dict[str, Any]


@dataclass(frozen=True)
class _Format:
    source: str  # "amazon2014", also the dataset-name prefix
    user_key: str
    item_key: str
    time_key: str
    meta_key: str  # the id key of meta rows
    literal_meta: bool
    to_item: Callable[[str, Record], Item]


@dataclass
class _Reviews:
    """The interactions of a reviews file, in file order, and what else it told us."""

    interactions: list[Interaction] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)  # 2023 asin -> parent (item_key="asin")


# ---------------------------------------------------------------- public readers


def read_amazon2014(reviews: str | Path, meta: str | Path | None = None, *, kcore: int = 5,
                    name: str | None = None) -> Dataset:
    """Read ``reviews_<Category>[_5].json.gz`` and optionally ``meta_<Category>.json.gz``."""
    return _read(_FORMAT_2014, Path(reviews), meta, kcore, name)


def read_amazon2018(reviews: str | Path, meta: str | Path | None = None, *, kcore: int = 5,
                    name: str | None = None) -> Dataset:
    """Read ``<Category>[_5].json.gz`` and optionally ``meta_<Category>.json.gz``."""
    return _read(_FORMAT_2018, Path(reviews), meta, kcore, name)


def read_amazon2023(reviews: str | Path, meta: str | Path | None = None, *, kcore: int = 5,
                    name: str | None = None, item_key: str = "parent_asin") -> Dataset:
    """Read ``<Category>.jsonl[.gz]`` and optionally ``meta_<Category>.jsonl[.gz]``.

    ``item_key`` is ``"parent_asin"`` (one item per product, the default) or
    ``"asin"`` (one item per variant, each with its parent's metadata).
    """
    if item_key not in ("parent_asin", "asin"):
        raise ValueError(f"item_key must be 'parent_asin' or 'asin', not {item_key!r}")
    fmt = _FORMAT_2023 if item_key == "parent_asin" else _FORMAT_2023_ASIN
    return _read(fmt, Path(reviews), meta, kcore, name)


def default_name(source: str, reviews: str | Path) -> str:
    """``reviews_Beauty_5.json.gz`` -> ``amazon2014-Beauty`` (``source`` is the prefix)."""
    stem = Path(reviews).name
    for suffix in (".gz", ".jsonl", ".json"):
        stem = stem.removesuffix(suffix)
    stem = re.sub(r"_5$", "", stem.removeprefix("reviews_"))
    return f"{source}-{stem}"


# ---------------------------------------------------------------- pipeline


def _read(fmt: _Format, reviews: Path, meta: str | Path | None, k: int,
          name: str | None) -> Dataset:
    stream = _read_reviews(fmt, reviews)
    unique = dedupe(stream.interactions)
    result = kcore_with_report(unique, k)
    if not result.interactions:
        raise DataError(reviews, f"no interactions survive the {k}-core filter "
                        f"({len(unique)} distinct reviews read)",
                        hint="lower kcore or use a larger reviews file")
    ids = items_in_order(result.interactions)
    found = _read_meta(fmt, Path(meta), ids, stream.parents) if meta is not None else {}
    items = [found.get(i) or Item(i) for i in ids]
    attributes = {
        "source": fmt.source,
        "kcore": k,
        "kcore_report": result.report.as_dict(),
        "items_without_meta": len(ids) - sum(1 for i in ids if i in found),
        "duplicates_removed": len(stream.interactions) - len(unique),
    }
    if fmt.source == "amazon2023":
        attributes["item_key"] = fmt.item_key
    return from_sequences(name or default_name(fmt.source, reviews), items,
                          sequences_by_user(result.interactions), attributes=attributes)


def _read_reviews(fmt: _Format, path: Path) -> _Reviews:
    out = _Reviews()
    want_parents = fmt.item_key == "asin" and fmt.source == "amazon2023"
    for number, record in _iter_reviews(fmt, path):
        x = _interaction(fmt, path, number, record, order=len(out.interactions))
        out.interactions.append(x)
        if want_parents and isinstance(record.get("parent_asin"), str):
            out.parents.setdefault(x.item, record["parent_asin"])
    return out


def _iter_reviews(fmt: _Format, path: Path) -> Iterator[tuple[int, Record]]:
    if fmt.source != "amazon2014":
        yield from iter_json_records(path)
        return
    for number, text in iter_lines(path):
        try:  # JSON is the fast path; literal_eval only for a Python-literal export
            value = json.loads(text)
        except json.JSONDecodeError:
            yield number, parse_literal_line(path, number, text)
            continue
        if not isinstance(value, dict):
            raise DataError(path, "expected a JSON object", line=number)
        yield number, value


def _interaction(fmt: _Format, path: Path, number: int, record: Record,
                 order: int) -> Interaction:
    user = _id(fmt, path, number, record, fmt.user_key)
    item = _id(fmt, path, number, record, fmt.item_key)
    return Interaction(user, item, _timestamp(fmt, path, number, record), order)


def _id(fmt: _Format, path: Path, number: int, record: Record, key: str) -> str:
    value = record.get(key)
    if key not in record:
        raise DataError(path, f"missing key {key!r}", line=number, hint=_review_hint(fmt, record))
    if not isinstance(value, str) or not value:
        raise DataError(path, f"key {key!r} must be a non-empty string, got {value!r}",
                        line=number, hint="fix or delete this line")
    return sys.intern(value)  # ids repeat across millions of reviews: share one string


def _timestamp(fmt: _Format, path: Path, number: int, record: Record) -> int:
    key = fmt.time_key
    if key not in record:
        raise DataError(path, f"missing key {key!r}", line=number, hint=_review_hint(fmt, record))
    value = record[key]
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(path, f"key {key!r} must be an integer timestamp, got {value!r}",
                        line=number, hint="fix or delete this line")
    return value


def _review_hint(fmt: _Format, record: Record) -> str:
    """Say which reader fits when the keys belong to another release."""
    expected = f"each review needs {fmt.user_key}, {fmt.item_key} and {fmt.time_key}"
    if fmt.source != "amazon2023" and "user_id" in record:
        return expected + "; this looks like a 2023 file: use read_amazon2023"
    if fmt.source == "amazon2023" and "reviewerID" in record:
        return expected + "; this looks like a 2014/2018 file: use read_amazon2014/2018"
    if "reviewerID" not in record and "user_id" not in record and "title" in record:
        return expected + "; is this the meta file?"
    return expected


# ---------------------------------------------------------------- meta


def _read_meta(fmt: _Format, path: Path, ids: list[str],
               parents: dict[str, str]) -> dict[str, Item]:
    """Items for ``ids`` from the meta file (ids without a row are left out)."""
    # With 2023 item_key="asin" the meta rows are keyed by the parent product.
    row_of = {i: parents.get(i, i) for i in ids} if parents else {i: i for i in ids}
    rows = _needed_rows(fmt, path, set(row_of.values()))
    return {i: fmt.to_item(i, rows[r]) for i, r in row_of.items() if r in rows}


def _needed_rows(fmt: _Format, path: Path, needed: set[str]) -> dict[str, Record]:
    pattern = re.compile(r"""["']%s["']\s*:\s*["']([^"']+)["']""" % re.escape(fmt.meta_key))
    parse = parse_literal_line if fmt.literal_meta else parse_json_line
    rows: dict[str, Record] = {}
    for number, text in iter_lines(path):
        # Skip the parse when the line names no needed id; a line where the
        # regex finds no id at all is parsed, so no needed row is missed.
        hits = pattern.findall(text)
        if hits and not any(h in needed and h not in rows for h in hits):
            continue
        record = parse(path, number, text)
        key = record.get(fmt.meta_key)
        if key is None:
            raise DataError(path, f"missing key {fmt.meta_key!r}", line=number,
                            hint="every meta row needs the item id; is this a reviews file?")
        if key in needed and key not in rows:  # the first of duplicate rows wins
            rows[key] = record
            if len(rows) == len(needed):
                break  # the rest of a GB file holds nothing we need
    return rows


def _text(value: Any, sep: str = " ") -> str:
    """A meta value as one string: lists joined by ``sep``, blanks dropped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return sep.join(t for t in (_text(v, sep) for v in value) if t)
    return str(value).strip()


def _unique_joined(groups: Any) -> str:
    """2014 categories are a list of paths: unique names in order, ", "-joined."""
    names: list[str] = []
    for group in groups or []:
        for name in group if isinstance(group, (list, tuple)) else [group]:
            name = _text(name)
            if name and name not in names:
                names.append(name)
    return ", ".join(names)


def _details(value: Any) -> str:
    if not isinstance(value, dict):
        return _text(value)
    return "; ".join(f"{k}: {_text(v, ', ')}" for k, v in value.items() if _text(v))


def _fields(**values: str) -> dict[str, str]:
    return {name: text for name, text in values.items() if text}


def _item_2014(item_id: str, r: Record) -> Item:
    fields = _fields(title=_text(r.get("title")), description=_text(r.get("description")),
                     brand=_text(r.get("brand")), categories=_unique_joined(r.get("categories")),
                     price=_text(r.get("price")))
    image = _text(r.get("imUrl"))
    return Item(item_id, fields, (image,) if image else ())


def _item_2018(item_id: str, r: Record) -> Item:
    # Features are separate bullet points: "; " keeps them apart.
    fields = _fields(title=_text(r.get("title")), description=_text(r.get("description")),
                     brand=_text(r.get("brand")), categories=_text(r.get("category"), ", "),
                     price=_text(r.get("price")), features=_text(r.get("feature"), "; "),
                     main_category=_text(r.get("main_cat")))
    images = r.get("imageURLHighRes") or r.get("image") or []
    return Item(item_id, fields, tuple(u for u in (_text(i) for i in images) if u))


def _item_2023(item_id: str, r: Record) -> Item:
    fields = _fields(title=_text(r.get("title")), description=_text(r.get("description")),
                     brand=_text(r.get("store")), categories=_text(r.get("categories"), ", "),
                     price=_text(r.get("price")), features=_text(r.get("features"), "; "),
                     main_category=_text(r.get("main_category")),
                     details=_details(r.get("details")))
    images = []
    for image in r.get("images") or []:
        url = _text(image.get("hi_res") or image.get("large")) if isinstance(image, dict) else ""
        if url:
            images.append(url)
    return Item(item_id, fields, tuple(images))


_FORMAT_2014 = _Format("amazon2014", "reviewerID", "asin", "unixReviewTime", "asin", True,
                       _item_2014)
_FORMAT_2018 = _Format("amazon2018", "reviewerID", "asin", "unixReviewTime", "asin", False,
                       _item_2018)
_FORMAT_2023 = _Format("amazon2023", "user_id", "parent_asin", "timestamp", "parent_asin",
                       False, _item_2023)
_FORMAT_2023_ASIN = _Format("amazon2023", "user_id", "asin", "timestamp", "parent_asin",
                            False, _item_2023)
