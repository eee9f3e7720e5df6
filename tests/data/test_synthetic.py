"""The embedded default dataset: determinism, constraints and a planted signal that is real."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from deepinterest.data.synthetic import SyntheticConfig, generate, load_catalog

CATALOG = load_catalog()
MOTIVATIONS, PRODUCT_TYPES = CATALOG.motivations, CATALOG.product_types
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
SMALL = SyntheticConfig(n_items=150, n_users=200, seed=3)


@pytest.fixture(scope="module")
def default():
    return generate()


def _planted(dataset):
    return dataset.attributes["planted"]


def _item_facts(dataset):
    items = _planted(dataset)["items"]
    types = [items[it.id]["product_type"] for it in dataset.items]
    primary = [items[it.id]["motivations"][0] for it in dataset.items]
    return types, primary


def _snapshot(dataset):
    return ([(it.id, it.fields, it.images) for it in dataset.items],
            [(u.id, u.items) for u in dataset.users], dataset.attributes)


# --- determinism ---------------------------------------------------------------------------

def test_same_seed_gives_identical_dataset(default):
    assert _snapshot(generate(SyntheticConfig())) == _snapshot(default)
    assert generate(None).name == default.name == "default"


def test_different_seed_gives_different_dataset(default):
    other = generate(SyntheticConfig(seed=1))
    assert [it.fields for it in other.items] != [it.fields for it in default.items]
    assert [u.items for u in other.users] != [u.items for u in default.users]


# --- sizes and constraints -----------------------------------------------------------------

@pytest.mark.parametrize("cfg", [SyntheticConfig(), SMALL,
                                 SyntheticConfig(n_motivations=3, n_items=40, n_users=30,
                                                 min_length=3, max_length=8, noise=0.0)])
def test_sizes_and_sequence_constraints(cfg, default):
    data = default if cfg == SyntheticConfig() else generate(cfg)
    assert len(data.items) == cfg.n_items and len(data.users) == cfg.n_users
    assert len({it.id for it in data.items}) == cfg.n_items
    assert len({u.id for u in data.users}) == cfg.n_users
    for user in data.users:
        assert cfg.min_length <= len(user.items) <= cfg.max_length
        assert len(set(user.items)) == len(user.items), f"{user.id} repeats an item"
    used = {i for u in data.users for i in u.items}
    assert used == set(range(cfg.n_items)), "every item has at least one interaction"


def test_default_sizes_and_lengths_are_heavy_tailed(default):
    stats = default.stats()
    assert (stats.users, stats.items) == (1200, 500)
    assert 7.5 < stats.mean_length < 10.5 and stats.median_length < stats.mean_length
    lengths = Counter(len(u.items) for u in default.users)
    assert lengths[5] > lengths[10] > lengths[20] > 0  # mode at the minimum, long tail


def test_item_fields_are_strings(default):
    for item in default.items:
        assert set(item.fields) == {"title", "brand", "categories", "price", "description"}
        assert all(isinstance(v, str) and v for v in item.fields.values())
        assert item.fields["brand"] in CATALOG.brands and item.fields["title"].startswith(
            item.fields["brand"])
        assert 1 <= item.fields["description"].count(".") - item.fields["description"].count(
            "26.2") <= 3


@pytest.mark.parametrize("bad", [dict(noise=1.0), dict(noise=-0.1), dict(n_users=0),
                                 dict(n_items=0), dict(min_length=8, max_length=6),
                                 dict(n_items=50), dict(seed=-1), dict(unknown=1),
                                 dict(n_motivations=1), dict(n_motivations=99)])
def test_config_validation(bad):
    with pytest.raises(ValidationError):
        SyntheticConfig(**bad)


# --- the planted signal is real ------------------------------------------------------------

def test_evidence_phrases_are_exclusive_and_absent_from_surface_text():
    phrases = [(m.id, p.lower()) for m in MOTIVATIONS for p in m.evidence]
    assert len({p for _, p in phrases}) == len(phrases)
    for mid, p in phrases:  # no phrase hides inside another motivation's phrase
        assert not [q for other, q in phrases if other != mid and p in q], p
    surface = [*CATALOG.fillers, *CATALOG.one_phrase, *CATALOG.two_phrases, *CATALOG.styles,
               *CATALOG.brands]
    surface += [x for t in PRODUCT_TYPES for x in (t.noun, t.title, t.categories, *t.materials)]
    for text in surface:
        assert not [p for _, p in phrases if p in text.lower()], text


def test_product_types_are_shared_so_category_cannot_identify_motivation(default):
    serving = defaultdict(set)
    for m in MOTIVATIONS:
        for t in m.journey:
            serving[t].add(m.id)
    assert set(serving) == {t.name for t in PRODUCT_TYPES}
    assert all(len(ms) >= 2 for ms in serving.values()), "every type serves >= 2 motivations"
    # The best classifier from category (= product type) to primary motivation is weak.
    types, primary = _item_facts(default)
    by_type = defaultdict(Counter)
    for t, m in zip(types, primary):
        by_type[t][m] += 1
    majority = sum(c.most_common(1)[0][1] for c in by_type.values()) / len(types)
    assert majority < 0.5
    category = {t.name: t.categories for t in PRODUCT_TYPES}
    assert all(it.fields["categories"] == category[t] for it, t in zip(default.items, types))


def test_descriptions_carry_evidence_of_their_own_motivations_only(default):
    motivations = {m.id: m for m in MOTIVATIONS}
    items = _planted(default)["items"]
    for item in default.items:
        facts = items[item.id]
        text = item.fields["description"].lower()
        own = [p for mid in facts["motivations"] for p in motivations[mid].evidence]
        assert any(p.lower() in text for p in motivations[facts["motivations"][0]].evidence)
        assert all(p.lower() in text for p in facts["evidence"]) and facts["evidence"]
        assert set(facts["evidence"]) <= set(own)
        foreign = [p for m in MOTIVATIONS if m.id not in facts["motivations"]
                   for p in m.evidence if p.lower() in text]
        assert not foreign, (item.id, foreign)
        surface = (item.fields["title"] + item.fields["categories"]).lower()
        assert not [p for m in MOTIVATIONS for p in m.evidence if p.lower() in surface]
    with_secondary = sum(len(f["motivations"]) == 2 for f in items.values()) / len(items)
    assert 0.15 < with_secondary < 0.35


def test_budget_motivation_is_priced_lower(default):
    types, primary = _item_facts(default)
    ranges = {t.name: t.price for t in PRODUCT_TYPES}
    rel = defaultdict(list)
    for item, t, m in zip(default.items, types, primary):
        lo, hi = ranges[t]
        price = float(item.fields["price"])
        assert lo <= price <= hi + 1
        rel[m == CATALOG.budget_motivation].append((price - lo) / (hi - lo))
    assert sum(rel[True]) / len(rel[True]) < 0.5 * sum(rel[False]) / len(rel[False])


def test_users_are_dominated_by_their_motivations(default):
    _, primary = _item_facts(default)
    users = _planted(default)["users"]
    share = [sum(primary[i] in users[u.id]["motivations"] for i in u.items) / len(u.items)
             for u in default.users]
    chance = 1.4 / len(MOTIVATIONS)  # users hold 1.4 motivations on average
    assert sum(share) / len(share) > 0.7 > 5 * chance
    # Without noise and secondary motivations every item serves one of the user's motivations.
    clean = generate(SyntheticConfig(n_users=300, noise=0.0, secondary_rate=0.0))
    _, primary = _item_facts(clean)
    users = _planted(clean)["users"]
    assert all(primary[i] in users[u.id]["motivations"] for u in clean.users for i in u.items)


def _next_type_accuracy(dataset, key):
    """Train first-order counts on prefixes without the last item, predict the last type."""
    types, _ = _item_facts(dataset)
    transitions, overall = defaultdict(Counter), Counter()
    for user in dataset.users:
        prefix = user.items[:-1]
        for a, b in zip(prefix, prefix[1:]):
            transitions[key(a)][types[b]] += 1
            overall[types[b]] += 1
    top = overall.most_common(1)[0][0]
    hits = Counter()
    for user in dataset.users:
        a, b = user.items[-2:]
        seen = transitions.get(key(a))
        hits["model"] += (seen.most_common(1)[0][0] if seen else top) == types[b]
        hits["global"] += top == types[b]
    return hits["model"] / len(dataset.users), hits["global"] / len(dataset.users)


def test_sequential_signal_and_the_value_of_knowing_the_motivation(default):
    types, primary = _item_facts(default)
    by_type, global_rate = _next_type_accuracy(default, lambda i: types[i])
    by_both, _ = _next_type_accuracy(default, lambda i: (types[i], primary[i]))
    assert by_type > global_rate + 0.08  # journeys make the next type predictable
    assert by_both > by_type + 0.15  # and the deep interest disambiguates shared types
    # Without journey order the surface transition signal is gone.
    flat = generate(SyntheticConfig(order_strength=0.0))
    flat_types, _ = _item_facts(flat)
    flat_rate, _ = _next_type_accuracy(flat, lambda i: flat_types[i])
    assert by_type > flat_rate + 0.05


# --- planted ground truth ------------------------------------------------------------------

def test_planted_is_json_and_consistent(default):
    planted = _planted(default)
    assert json.loads(json.dumps(planted)) == planted
    assert SyntheticConfig(**planted["config"]) == SyntheticConfig()
    motivations = {m["id"]: m for m in planted["motivations"]}
    assert [m["phrase"] for m in planted["motivations"]] == [m.phrase for m in MOTIVATIONS]
    assert list(planted["items"]) == [it.id for it in default.items]
    assert list(planted["users"]) == [u.id for u in default.users]
    for item_id, facts in planted["items"].items():
        assert 1 <= len(facts["motivations"]) <= 2 and len(set(facts["motivations"])) == len(
            facts["motivations"])
        assert all(facts["product_type"] in motivations[m]["journey"]
                   for m in facts["motivations"])
    for user in default.users:
        facts = planted["users"][user.id]
        assert 1 <= len(facts["motivations"]) <= 2
        assert len(facts["intents"]) == len(user.items)
        for i, intent in zip(user.items, facts["intents"]):
            # an interest-driven step drew an item serving that interest
            assert intent is None or (intent in facts["motivations"] and intent in
                                      planted["items"][default.items[i].id]["motivations"])
    noise = sum(x is None for f in planted["users"].values() for x in f["intents"])
    assert 0.1 < noise / default.num_interactions < 0.2


# --- the catalogue ships as package data -----------------------------------------------------

def test_catalogue_is_package_data_loaded_once():
    assert load_catalog() is CATALOG  # parsed once per process
    assert len(MOTIVATIONS) == SyntheticConfig().n_motivations == 16
    assert len(PRODUCT_TYPES) == 29 and CATALOG.budget_motivation in {m.id for m in MOTIVATIONS}
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(_PYPROJECT, "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["deepinterest"]
    assert "data/*.json" in package_data, "a wheel must carry default_catalog.json"


def test_generate_is_fast():
    start = time.perf_counter()
    generate()
    assert time.perf_counter() - start < 1.0
