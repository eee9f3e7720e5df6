"""Interactions, de-duplication, iterative k-core filtering and per-user sequences.

The raw-review readers (``amazon.py``) turn each review into an
:class:`Interaction` and run the same three steps on them. Decisions:

- **Dedupe before the k-core.** A user who reviewed the same item twice keeps
  only the earliest review (earliest timestamp, then earliest in the file).
  A repeat left in would put the target item into the user's own history
  under leave-one-out (the model could "predict" by copying), and it would
  count twice towards the k-core, keeping users and items that have fewer
  than k distinct partners.
- **Iterative k-core.** Dropping a user can push an item under k and dropping
  that item can push another user under k, so passes repeat until nothing
  changes; the result is the unique largest sub-graph in which every user
  and every item has at least k interactions (the "5-core" of the
  benchmarks). Each pass drops short users and short items together; the
  fixed point does not depend on that order, only the round count does.
- **Stable ties.** Reviews share timestamps (the 2014/2018 files have
  whole-day resolution), so sequences sort by (timestamp, position in the
  file): the same file always gives the same sequences.
- Users are listed in order of their first interaction in the file, items
  in order of first appearance, so outputs are reproducible and diffable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple


class Interaction(NamedTuple):
    user: str
    item: str
    timestamp: int
    order: int  # position in the source file, breaks timestamp ties


class UserSequence(NamedTuple):
    """A user and the ids of the items they interacted with, oldest first."""

    user: str
    items: list[str]


@dataclass(frozen=True)
class KCoreReport:
    """What the k-core filter did; readers store ``as_dict()`` in dataset attributes."""

    k: int
    rounds: int  # passes that removed something (0: the input was already a k-core)
    users_before: int
    items_before: int
    interactions_before: int
    users_after: int
    items_after: int
    interactions_after: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class KCoreResult(NamedTuple):
    interactions: list[Interaction]
    report: KCoreReport


def _key(x: Interaction) -> tuple[int, int]:
    return (x.timestamp, x.order)


def dedupe(interactions: Iterable[Interaction]) -> list[Interaction]:
    """Keep each (user, item) pair's earliest interaction, in input order.

    Earliest means smallest (timestamp, order). See the module docstring for
    why repeats must go: they leak the target into the history.
    """
    interactions = list(interactions)
    best: dict[tuple[str, str], Interaction] = {}
    for x in interactions:
        pair = (x.user, x.item)
        kept = best.get(pair)
        if kept is None or _key(x) < _key(kept):
            best[pair] = x
    return [x for x in interactions if best[(x.user, x.item)] is x]


def kcore_with_report(interactions: Iterable[Interaction], k: int) -> KCoreResult:
    """Iterative k-core (see :func:`kcore_filter`) plus a :class:`KCoreReport`.

    Counts are of interactions, so call :func:`dedupe` first to count
    distinct users per item and items per user.
    """
    current = list(interactions)
    users, items = Counter(x.user for x in current), Counter(x.item for x in current)
    before = (len(users), len(items), len(current))
    rounds = 0
    while k > 1:
        kept = [x for x in current if users[x.user] >= k and items[x.item] >= k]
        if len(kept) == len(current):
            break
        current, rounds = kept, rounds + 1
        users, items = Counter(x.user for x in current), Counter(x.item for x in current)
    report = KCoreReport(k, rounds, *before, len(users), len(items), len(current))
    return KCoreResult(current, report)


def kcore_filter(interactions: Iterable[Interaction], k: int) -> list[Interaction]:
    """Repeatedly drop users and items with fewer than ``k`` interactions until stable.

    Keeps the input order. ``k <= 1`` returns the input unchanged.
    """
    return kcore_with_report(interactions, k).interactions


def sequences_by_user(interactions: Iterable[Interaction]) -> list[UserSequence]:
    """Each user's items sorted by (timestamp, file order), users by first appearance.

    "First appearance" is the smallest ``order`` of the user's interactions,
    so the result does not depend on how the input list happens to be sorted.
    """
    by_user: dict[str, list[Interaction]] = {}
    for x in interactions:
        by_user.setdefault(x.user, []).append(x)
    groups = sorted(by_user.values(), key=lambda xs: min(x.order for x in xs))
    return [UserSequence(xs[0].user, [x.item for x in sorted(xs, key=_key)]) for xs in groups]


def items_in_order(interactions: Iterable[Interaction]) -> list[str]:
    """Distinct item ids in order of first appearance (smallest ``order``)."""
    first: dict[str, int] = {}
    for x in interactions:
        if x.item not in first or x.order < first[x.item]:
            first[x.item] = x.order
    return sorted(first, key=first.__getitem__)
