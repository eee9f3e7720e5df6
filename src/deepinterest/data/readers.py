"""Readers for the P5 sequence format and RecBole atomic files.

- P5 (``user_sequence.txt``): one user per line, space-separated: the user id
  then the item ids oldest first. Item texts come from a RecBole ``.item``
  file beside it.
- RecBole atomic files: tab-separated with a typed header (``name:type``).
  ``.item`` rows may be CSV-quoted and a quoted field may hold a newline, so
  they are read with a CSV reader, never by splitting lines. ``.inter`` rows
  are (user, item, timestamp, ...) and are ordered per user by timestamp,
  ties kept in file order.

Column types follow RecBole: ``token_seq`` values such as
``'Beauty', 'Makeup'`` become ``Beauty, Makeup``; floats keep their text.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ..errors import DataError
from .io import iter_lines, read_tsv_with_header
from .kcore import Interaction, dedupe, kcore_filter, sequences_by_user
from .model import Dataset, Item, from_sequences

_ID_COLUMNS = {"item_id", "user_id"}


def _column_names(path: Path, header: list[str]) -> list[str]:
    """Strip RecBole type suffixes (``title:token`` -> ``title``)."""
    names = [h.split(":", 1)[0].strip() for h in header]
    if len(set(names)) != len(names):
        raise DataError(path, f"duplicate column names in header {names}", line=1)
    return names


def _token_seq(value: str) -> str:
    """``'Beauty', 'Makeup'`` -> ``Beauty, Makeup`` (plain text is kept as is)."""
    text = value.strip()
    if not text.startswith(("'", '"')):
        return text
    try:
        parsed = ast.literal_eval(f"[{text}]")
    except (ValueError, SyntaxError):
        return text
    return ", ".join(str(p) for p in parsed)


def read_recbole_items(path: str | Path) -> list[Item]:
    """Items of a RecBole ``.item`` file; every non-id column becomes a text field."""
    path = Path(path)
    header, rows = read_tsv_with_header(path)
    names = _column_names(path, header)
    types = [h.split(":", 1)[1] if ":" in h else "token" for h in header]
    if "item_id" not in names:
        raise DataError(path, f"no item_id column in header {names}", line=1,
                        hint="a RecBole .item file starts with item_id:token")
    key = names.index("item_id")
    items, seen = [], set()
    for line, row in rows:
        item_id = row[key].strip()
        if item_id in seen:
            raise DataError(path, f"item {item_id!r} appears twice", line=line)
        seen.add(item_id)
        fields = {
            name: (_token_seq(value) if kind == "token_seq" else value.strip())
            for name, kind, value in zip(names, types, row)
            if name not in _ID_COLUMNS and value.strip()
        }
        items.append(Item(item_id, fields))
    return items


def read_p5(
    sequences: str | Path, items: str | Path | None = None, *, kcore: int = 0,
    name: str | None = None,
) -> Dataset:
    """A P5 ``user_sequence.txt`` plus an optional RecBole ``.item`` file of texts.

    Without an item file, items carry no text fields. With one, every item id
    of the sequence file must have a row there. ``kcore`` is in the signature
    every registered reader shares; P5 files carry no timestamps (and are
    already filtered), so only 0 is accepted.
    """
    sequences = Path(sequences)
    if kcore:
        raise DataError(sequences, "k-core filtering needs timestamps; P5 files are "
                        "already filtered", hint="drop --kcore for P5 sources")
    catalogue = read_recbole_items(items) if items is not None else None
    known = {it.id for it in catalogue} if catalogue is not None else None
    users, order, seen_users = [], {}, set()
    for line, text in iter_lines(sequences):
        parts = text.split()
        if len(parts) < 2:
            raise DataError(sequences, "a line needs a user id and at least one item id",
                            line=line, hint="format: USER ITEM ITEM ...")
        user, seq = parts[0], parts[1:]
        if user in seen_users:
            raise DataError(sequences, f"user {user!r} appears twice", line=line)
        seen_users.add(user)
        for item in seq:
            if known is not None and item not in known:
                raise DataError(sequences, f"unknown item id {item!r} (not in {Path(items).name})",
                                line=line,
                                hint="the item file must list every item of the sequences")
            order.setdefault(item, len(order))
        users.append((user, seq))
    item_list = catalogue if catalogue is not None else [Item(i) for i in order]
    label = name or sequences.parent.name or "p5"
    return from_sequences(label, item_list, users, attributes={"source": "p5"},
                          drop_unused_items=True)


def read_recbole(
    inter: str | Path, items: str | Path | None = None, *, kcore: int = 0,
    name: str | None = None,
) -> Dataset:
    """A RecBole ``.inter`` file (user_id, item_id, timestamp) and optional ``.item`` file."""
    inter = Path(inter)
    header, rows = read_tsv_with_header(inter)
    names = _column_names(inter, header)
    for needed in ("user_id", "item_id"):
        if needed not in names:
            raise DataError(inter, f"no {needed} column in header {names}", line=1,
                            hint="a RecBole .inter file has user_id:token and item_id:token")
    u, i = names.index("user_id"), names.index("item_id")
    t = names.index("timestamp") if "timestamp" in names else None
    interactions = [
        Interaction(row[u], row[i], _timestamp(inter, line, row[t]) if t is not None else 0, n)
        for n, (line, row) in enumerate(rows)
    ]
    kept = kcore_filter(dedupe(interactions), kcore)
    catalogue = read_recbole_items(items) if items is not None else None
    sequences = sequences_by_user(kept)
    if catalogue is None:
        catalogue = [Item(x) for x in dict.fromkeys(it.item for it in kept)]
    else:
        _check_known(inter, catalogue, kept)
    return from_sequences(name or inter.stem, catalogue, sequences,
                          attributes={"source": "recbole", "kcore": kcore},
                          drop_unused_items=True)


def _timestamp(path: Path, line: int, value: str) -> int:
    try:
        return int(float(value))
    except ValueError as exc:
        raise DataError(path, f"timestamp {value!r} is not a number", line=line) from exc


def _check_known(path: Path, catalogue: list[Item], kept: list[Interaction]) -> None:
    known = {it.id for it in catalogue}
    missing = sorted({x.item for x in kept} - known)
    if missing:
        raise DataError(path, f"{len(missing)} item ids have no row in the item file, "
                        f"e.g. {missing[:3]}", hint="add them to the .item file")
