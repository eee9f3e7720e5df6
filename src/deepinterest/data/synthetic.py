"""The embedded default dataset: a small catalogue with planted deep interests.

``generate(SyntheticConfig())`` builds the dataset that ``di run`` and the
examples use when no data is given. No dataset file is shipped: the data is a
pure function of the config (seed included) and of the literal tables in
``default_catalog.json`` (package data beside this module: motivations,
product types, brands, styles, filler sentences, phrase templates; read once
by :func:`load_catalog`), so every machine rebuilds the same bytes, and it is
small enough (500 items, 1,200 users, ~10k interactions) for the whole
pipeline to run in minutes on a laptop CPU.

What is planted
    A fixed catalogue of 16 latent motivations ("deep interests") such as
    "quiet focus while studying" or "gift for a new runner". Each has a pool of
    evidence phrases in three grammatical kinds (traits such as
    "noise-dampening", uses such as "for long library sessions", benefits such
    as "keeps your desk calm") and a *journey*: the ordered product types a
    person with that motivation typically buys. Every item has one primary
    motivation, and a quarter of them a weaker secondary one that is compatible
    with the item's product type. Every user has one or two motivations.

Why surface categories are shared
    The 29 product types (tea, socks, lamp, ...) each appear in the journeys of
    two to seven motivations, and titles, categories and brands are drawn
    without regard to motivation. Chamomile or green, a tea is filed under
    "Grocery, Beverages, Tea" whether it serves "winding down for better sleep"
    or "quiet focus while studying"; only the description's evidence phrases
    tell them apart. A method that only sees categories cannot recover the
    motivation; one that reads descriptions (an LLM miner, or an embedding
    zero-shot miner) can. Evidence phrases are unique to their motivation and
    never occur in titles, categories or filler sentences (tested), so a
    description contains evidence of its item's own motivations only.

The sequential signal
    A user walks the journeys of their motivations: each interest-driven step
    takes the next product type of the current motivation's journey (with
    probability ``order_strength``, else a random type of that journey, from
    which the walk then continues), and a two-interest user switches between
    their motivations with probability ``switch_rate``. The item is drawn from
    the (motivation, type) cell with a Zipf popularity skew, so each cell has
    its best sellers. With probability ``noise`` a step is instead a uniformly
    random item. Items never repeat within a user. Lengths follow a truncated
    power law on [min_length, max_length].

What a method that recovers deep interests can exploit
    Because product types are shared, "socks" is followed by very different
    things for a marathon trainee (snack bars) than for a long-haul traveller
    (a scarf): the next type given the previous type alone is ambiguous, and
    knowing the previous item's motivation as well more than doubles how often
    a first-order model predicts it (about 0.21 against 0.47 on the default
    data, where the most frequent type scores 0.08). Semantic
    IDs whose prefixes group items by motivation, and rewards that pay for
    matching a user's motivations, should therefore beat surface-only ones
    (tests measure both gaps on the generated data).

Ground truth
    ``Dataset.attributes["planted"]`` (JSON-serialisable) records the
    motivations with their evidence and journeys, each item's motivations
    (primary first), product type and the evidence phrases its description
    used, each user's motivations and the motivation that drove each position
    (``None`` for a noise step), and the generator version and config. Later
    stages score mined interests against it. It is the answer key: nothing
    but this generator reads the catalogue's motivations, so a method is
    measured on what it recovers from the item text.

Departures and choices
    Randomness comes only from ``random.Random(seed).random()``, whose stream
    Python guarantees across versions and platforms; choices, shuffles and
    weighted draws are built on it here rather than on library methods whose
    algorithms may change. Items that no user drew (rare tail items) are
    swapped into a position of the same (motivation, type) cell (or a noise
    position) whose item is used elsewhere, so every item has at least one
    interaction as long as there are clearly more interactions than items.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Any

from .model import Dataset, Item, from_sequences
from .synthetic_config import Catalog, Motivation, ProductType, SyntheticConfig, load_catalog

GENERATOR_VERSION = 1  # bump whenever the output for a given config changes


class _Rng:
    """Draws built only on ``random.Random.random``, the stream Python keeps stable."""

    def __init__(self, seed: int):
        self.random = random.Random(seed).random

    def below(self, n: int) -> int:
        return min(int(self.random() * n), n - 1)

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def weighted(self, weights: list[float]) -> int:
        cum, total = [], 0.0
        for w in weights:
            total += w
            cum.append(total)
        return min(bisect.bisect_right(cum, self.random() * total), len(cum) - 1)

    def shuffle(self, seq: list) -> list:
        for i in range(len(seq) - 1, 0, -1):
            j = self.below(i + 1)
            seq[i], seq[j] = seq[j], seq[i]
        return seq


@dataclass
class _ItemPlan:
    motivations: list[str]  # primary first
    ptype: str
    rank: int = 0  # popularity rank within its (primary, type) cell


def _plan_items(cfg: SyntheticConfig, rng: _Rng, motivations) -> list[_ItemPlan]:
    """Every (motivation, type) cell once, the rest balanced over motivations; shuffled."""
    plans = [_ItemPlan([m.id], t) for m in motivations for t in m.journey]
    for k in range(cfg.n_items - len(plans)):
        m = motivations[k % len(motivations)]
        plans.append(_ItemPlan([m.id], rng.pick(m.journey)))
    rng.shuffle(plans)
    serving = {}  # product type -> motivations whose journey contains it
    for m in motivations:
        for t in m.journey:
            serving.setdefault(t, []).append(m.id)
    ranks: dict[tuple[str, str], int] = {}
    for plan in plans:
        key = (plan.motivations[0], plan.ptype)
        plan.rank = ranks[key] = ranks.get(key, -1) + 1
        others = [mid for mid in serving[plan.ptype] if mid != plan.motivations[0]]
        if others and rng.random() < cfg.secondary_rate:
            plan.motivations.append(rng.pick(others))
    return plans


def _evidence_sentence(rng: _Rng, cat: Catalog, m: Motivation, noun: str,
                       two: bool) -> tuple[str, list[str]]:
    template = rng.pick(cat.two_phrases if two else cat.one_phrase)
    values = {"t": rng.pick(m.traits), "u": rng.pick(m.uses), "b": rng.pick(m.benefits)}
    used = [values[k] for k in "tub" if "{" + k + "}" in template]
    sentence = template.format(n=noun, **values)
    return sentence[0].upper() + sentence[1:], used


def _make_item(rng: _Rng, cat: Catalog, item_id: str, plan: _ItemPlan, ptype: ProductType,
               brand: str, by_id: dict[str, Motivation]) -> tuple[Item, list[str]]:
    primary = by_id[plan.motivations[0]]
    sentences, evidence = [], []
    text, used = _evidence_sentence(rng, cat, primary, ptype.noun, rng.random() < 0.35)
    sentences.append(text)
    evidence += used
    if len(plan.motivations) > 1:
        text, used = _evidence_sentence(rng, cat, by_id[plan.motivations[1]], ptype.noun, False)
        sentences.append(text)
        evidence += used
    for _ in range(rng.below(4 - len(sentences))):
        filler = rng.pick(cat.fillers).format(brand=brand)
        if filler not in sentences:
            sentences.append(filler)
    rng.shuffle(sentences)
    u = rng.random() ** 2 * (0.4 if primary.id == cat.budget_motivation else 1.0)
    lo, hi = ptype.price
    price = math.floor(lo + (hi - lo) * u) + 0.99
    fields = {
        "title": f"{brand} {rng.pick(cat.styles)} {rng.pick(ptype.materials)} {ptype.title}",
        "brand": brand,
        "categories": ptype.categories,
        "price": f"{price:.2f}",
        "description": " ".join(sentences),
    }
    return Item(item_id, fields), evidence


def _length(cfg: SyntheticConfig, rng: _Rng) -> int:
    span = cfg.max_length - cfg.min_length + 1
    k = rng.weighted([(i + 1) ** -cfg.length_exponent for i in range(span)])
    return cfg.min_length + k


class _Walker:
    """Builds one user's sequence by walking the journeys of their motivations."""

    def __init__(self, cfg: SyntheticConfig, rng: _Rng, cells, weights, n_items, by_id):
        self.cfg, self.rng, self.cells, self.weights = cfg, rng, cells, weights
        self.n_items, self.by_id = n_items, by_id

    def _from_cell(self, key, seen: set[int]) -> int | None:
        pool = [i for i in self.cells.get(key, ()) if i not in seen]
        if not pool:
            return None
        return pool[self.rng.weighted([self.weights[key][i] for i in pool])]

    def _any(self, seen: set[int]) -> int:
        while True:
            i = self.rng.below(self.n_items)
            if i not in seen:
                return i

    def walk(self, user_motivations: list[str], length: int) -> tuple[list[int], list]:
        rng, cfg = self.rng, self.cfg
        pointer = {m: rng.below(len(self.by_id[m].journey)) for m in user_motivations}
        current = rng.pick(user_motivations)
        seq: list[int] = []
        intents: list[str | None] = []
        seen: set[int] = set()
        while len(seq) < length:
            if rng.random() < cfg.noise:
                item, intent = self._any(seen), None
            else:
                if len(user_motivations) > 1 and rng.random() < cfg.switch_rate:
                    current = next(m for m in user_motivations if m != current)
                journey = self.by_id[current].journey
                if rng.random() < cfg.order_strength:
                    step = pointer[current]
                else:
                    step = rng.below(len(journey))
                item = None
                for offset in range(len(journey)):  # cell exhausted: the next type on
                    item = self._from_cell((current, journey[(step + offset) % len(journey)]),
                                           seen)
                    if item is not None:
                        step = (step + offset) % len(journey)
                        break
                pointer[current] = (step + 1) % len(journey)
                intent = current
                if item is None:
                    item, intent = self._any(seen), None
            seq.append(item)
            intents.append(intent)
            seen.add(item)
        return seq, intents


def _cover_unused(plans: list[_ItemPlan], seqs: list[list[int]], intents: list[list]) -> None:
    """Swap each unused item into a position of its own cell held by an item used elsewhere."""
    counts = [0] * len(plans)
    for seq in seqs:
        for i in seq:
            counts[i] += 1
    for item in (i for i, c in enumerate(counts) if c == 0):
        plan = plans[item]
        best = None  # (count of the replaced item, user, position)
        for u, (seq, ints) in enumerate(zip(seqs, intents)):
            for p, (held, intent) in enumerate(zip(seq, ints)):
                if counts[held] < 2:
                    continue
                same_cell = intent in plan.motivations and plans[held].ptype == plan.ptype
                if not (same_cell or intent is None):
                    continue
                score = (same_cell, counts[held])
                if best is None or score > best[0]:
                    best = (score, u, p)
        if best is None:  # only when users hold too few interactions to cover the catalogue
            continue
        _, u, p = best
        counts[seqs[u][p]] -= 1
        seqs[u][p] = item
        counts[item] += 1


def generate(config: SyntheticConfig | None = None) -> Dataset:
    """Build the synthetic dataset described in the module docstring."""
    cfg = config or SyntheticConfig()
    cat = load_catalog()
    rng = _Rng(cfg.seed)
    motivations = cat.motivations[: cfg.n_motivations]
    by_id = {m.id: m for m in motivations}
    plans = _plan_items(cfg, rng, motivations)
    items, evidence = _make_items(cfg, cat, rng, plans, by_id)
    cells, weights = _cells(cfg, plans)
    walker = _Walker(cfg, rng, cells, weights, len(items), by_id)
    users = _walk_users(cfg, rng, walker, [m.id for m in motivations])
    _cover_unused(plans, users.seqs, users.intents)

    planted = _planted(cfg, cat, motivations, items, plans, evidence, users)
    sequences = [(uid, [items[i].id for i in seq]) for uid, seq in zip(users.ids, users.seqs)]
    return from_sequences(cfg.name, items, sequences, attributes={"planted": planted})


def _make_items(cfg: SyntheticConfig, cat: Catalog, rng: _Rng, plans: list[_ItemPlan],
                by_id: dict[str, Motivation]) -> tuple[list[Item], list[list[str]]]:
    """The items in plan order, with the evidence phrases each description used."""
    # Each type draws from its own six brands, shifted by five per type so neighbours overlap.
    brands_of = {t.name: [cat.brands[(k * 5 + j) % len(cat.brands)] for j in range(6)]
                 for k, t in enumerate(cat.product_types)}
    ptypes = {t.name: t for t in cat.product_types}
    width = max(4, len(str(cfg.n_items)))
    items, evidence = [], []
    for k, plan in enumerate(plans):
        brand = rng.pick(brands_of[plan.ptype])
        item, used = _make_item(rng, cat, f"I{k + 1:0{width}d}", plan, ptypes[plan.ptype],
                                brand, by_id)
        items.append(item)
        evidence.append(used)
    return items, evidence


def _cells(cfg: SyntheticConfig, plans: list[_ItemPlan]):
    """Items of each (motivation, type) cell and their Zipf draw weights."""
    cells: dict[tuple[str, str], list[int]] = {}
    weights: dict[tuple[str, str], dict[int, float]] = {}
    for i, plan in enumerate(plans):
        base = (plan.rank + 1) ** -cfg.popularity_exponent
        for j, mid in enumerate(plan.motivations):
            key = (mid, plan.ptype)
            cells.setdefault(key, []).append(i)
            weights.setdefault(key, {})[i] = base * (cfg.secondary_weight if j else 1.0)
    return cells, weights


@dataclass
class _Users:
    ids: list[str]
    motivations: list[list[str]]
    seqs: list[list[int]]
    intents: list[list[str | None]]


def _walk_users(cfg: SyntheticConfig, rng: _Rng, walker: _Walker, ids: list[str]) -> _Users:
    """Every user's one or two motivations and the sequence their journeys give."""
    width = max(4, len(str(cfg.n_users)))
    users = _Users([], [], [], [])
    for u in range(cfg.n_users):
        mine = [rng.pick(ids)]
        if rng.random() < cfg.second_interest_rate:
            mine.append(rng.pick([m for m in ids if m != mine[0]]))
        seq, ints = walker.walk(mine, _length(cfg, rng))
        users.ids.append(f"U{u + 1:0{width}d}")
        users.motivations.append(mine)
        users.seqs.append(seq)
        users.intents.append(ints)
    return users


def _planted(cfg: SyntheticConfig, cat: Catalog, motivations, items, plans, evidence,
             users: _Users) -> dict[str, Any]:
    used_types = {t for m in motivations for t in m.journey}
    return {
        "generator": "deepinterest.data.synthetic",
        "version": GENERATOR_VERSION,
        "config": cfg.model_dump(mode="json"),
        "motivations": [{"id": m.id, "phrase": m.phrase, "evidence": list(m.evidence),
                         "journey": list(m.journey)} for m in motivations],
        "product_types": [{"name": t.name, "categories": t.categories}
                          for t in cat.product_types if t.name in used_types],
        "items": {item.id: {"motivations": list(plan.motivations), "product_type": plan.ptype,
                            "evidence": used}
                  for item, plan, used in zip(items, plans, evidence)},
        "users": {uid: {"motivations": list(mine), "intents": list(ints)}
                  for uid, mine, ints in zip(users.ids, users.motivations, users.intents)},
    }
