"""The embedded default dataset: a small catalogue with planted deep interests.

``generate(SyntheticConfig())`` builds the dataset that ``di run`` and the
examples use when no data is given. No file is shipped: the data is a pure
function of the config (seed included), so every machine rebuilds the same
bytes, and it is small enough (500 items, 1,200 users, ~10k interactions) for
the whole pipeline to run in minutes on a laptop CPU.

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
    stages score mined interests against it.

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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .model import Dataset, Item, from_sequences

GENERATOR_VERSION = 1  # bump whenever the output for a given config changes


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


def _m(id_, phrase, traits, uses, benefits, journey) -> Motivation:
    split = lambda s: tuple(p.strip() for p in s.split("|"))  # noqa: E731
    return Motivation(id_, phrase, split(traits), split(uses), split(benefits), split(journey))


MOTIVATIONS: tuple[Motivation, ...] = (
    _m("quiet-focus", "quiet focus while studying",
       "noise-dampening | distraction-free | focus-friendly",
       "for long library sessions | for late-night revision | for deep study blocks",
       "keeps your desk calm | helps you stay on task through exam season | shuts out a noisy dorm",
       "notebook | pens | headphones | lamp | tea | mug"),
    _m("runner-gift", "gift for a new runner",
       "gift-boxed | beginner-runner | couch-to-5k",
       "for someone lacing up their first running shoes | for a friend who just caught "
       "the running bug | for a first parkrun",
       "makes a thoughtful present for a first 5k | arrives ready to wrap with a runner's "
       "gift card | welcomes a new runner to the sport",
       "running shoes | socks | water bottle | snack bars | headphones | towel"),
    _m("marathon", "training for a marathon",
       "marathon-ready | long-run | race-pace",
       "for high-mileage training weeks | for the final 10k of race day | for a "
       "sixteen-week marathon plan",
       "holds up over 26.2 miles | speeds recovery between long runs | keeps blisters "
       "away on twenty-mile days",
       "running shoes | socks | snack bars | water bottle | foam roller | bath salts | exercise mat"),
    _m("better-sleep", "winding down for better sleep",
       "sleep-promoting | wind-down | lights-out",
       "for a slower bedtime routine | for restless nights | for drifting off sooner",
       "helps you fall asleep faster | signals your body it is time to rest | eases you "
       "out of screen time before bed",
       "tea | candle | eye mask | pillow | blanket | socks"),
    _m("first-apartment", "first apartment on a budget",
       "budget-friendly | starter-kit | small-space",
       "for a first apartment | for furnishing a studio on a shoestring | for a move-in "
       "day checklist",
       "stretches a tight moving budget | fits a compact rental kitchen | covers the "
       "basics without overspending",
       "storage bins | skillet | knife set | mug | towel | lamp | blanket | planter"),
    _m("camping", "weekend camping trip",
       "campsite-tough | trail-packable | weatherproof",
       "for nights under canvas | for a weekend at the campsite | for the campfire circle",
       "packs down small for the trailhead | shrugs off a damp tent floor | keeps you "
       "cozy by the campfire",
       "backpack | water bottle | blanket | lamp | skillet | mug | gloves | snack bars"),
    _m("new-baby", "new baby at home",
       "newborn-safe | nursery-soft | baby-gentle",
       "for late-night feeds | for the nursery | for new parents",
       "soothes a fussy newborn | stands up to endless baby laundry | makes the first "
       "weeks with a newborn easier",
       "blanket | towel | socks | lotion | lamp | pillow | storage bins"),
    _m("home-spa", "home spa evening",
       "spa-grade | eucalyptus-infused | pampering",
       "for a long soak in the tub | for a self-care Sunday | for an at-home facial night",
       "turns your bathroom into a spa | melts away the week's tension | pairs perfectly "
       "with a bubble bath",
       "bath salts | towel | candle | lotion | eye mask | tea | wine glasses"),
    _m("learning-to-cook", "learning to cook",
       "beginner-cook | recipe-ready | first-recipe",
       "for your first home-cooked meals | for cooking-class homework | for mastering "
       "basic knife skills",
       "makes weeknight recipes less intimidating | builds confidence at the stove | "
       "forgives beginner mistakes",
       "skillet | knife set | apron | serving board | notebook"),
    _m("remote-work", "remote work from home",
       "home-office | video-call-ready | all-day-desk",
       "for back-to-back video meetings | for a kitchen-table office | for working from home",
       "keeps you sharp through long workdays at home | looks tidy on camera | separates "
       "work time from home time",
       "headphones | lamp | mug | notebook | pillow | planter | pens"),
    _m("yoga", "starting a yoga practice",
       "non-slip | studio-quality | yoga-ready",
       "for sun salutations | for a beginner vinyasa class | for a morning flow",
       "steadies you in downward dog | supports deeper stretches | makes savasana more restful",
       "exercise mat | towel | water bottle | foam roller | candle | blanket"),
    _m("dinner-party", "hosting a dinner party",
       "table-centerpiece | host-worthy | entertaining-ready",
       "for hosting friends at dinner | for a festive dinner table | for serving a crowd",
       "impresses guests at the table | sets the mood for a long dinner | makes hosting "
       "feel effortless",
       "serving board | wine glasses | candle | skillet | apron | knife set"),
    _m("back-to-school", "back to school",
       "classroom-ready | locker-sized | school-year",
       "for the first day of school | for a new semester | for homework after class",
       "survives a full school year | fits neatly in a school locker | keeps class "
       "supplies organised",
       "backpack | notebook | pens | water bottle | snack bars | lamp | headphones"),
    _m("plant-care", "indoor plant care",
       "plant-parent | root-healthy | humidity-boosting",
       "for a windowsill jungle | for repotting day | for a growing houseplant collection",
       "keeps your monstera thriving | stops overwatering before it starts | gives leafy "
       "plants the light they crave",
       "planter | gloves | lamp | storage bins | notebook"),
    _m("long-haul-travel", "comfort on a long-haul flight",
       "carry-on | jet-lag-fighting | travel-compact",
       "for overnight flights | for a twelve-hour layover | for the window seat",
       "makes economy class bearable | slips under the seat in front | helps you land rested",
       "backpack | pillow | eye mask | headphones | socks | scarf | water bottle"),
    _m("winter-commute", "cold-weather commuting",
       "windproof | thermal-lined | frost-ready",
       "for icy morning commutes | for waiting on a freezing platform | for the walk to "
       "the office in January",
       "keeps the chill out on the bike ride to work | stays warm through a snowy commute "
       "| beats the winter wind chill",
       "gloves | scarf | socks | mug | backpack | headphones | lotion"),
)


def _t(name, noun, title, categories, lo, hi, materials) -> ProductType:
    return ProductType(name, noun, title, categories, (lo, hi),
                       tuple(m.strip() for m in materials.split("|")))


PRODUCT_TYPES: tuple[ProductType, ...] = (
    _t("notebook", "notebook", "Notebook", "Office Products, Paper, Notebooks", 4, 25,
       "Dot-Grid | Lined | Hardcover | Spiral"),
    _t("pens", "set of pens", "Pen Set", "Office Products, Writing, Pens", 3, 30,
       "Gel | Fineliner | Ballpoint | Brush"),
    _t("headphones", "pair of headphones", "Headphones", "Electronics, Audio, Headphones",
       20, 250, "Wireless | Over-Ear | On-Ear | Bluetooth"),
    _t("lamp", "lamp", "Lamp", "Home, Lighting, Lamps", 12, 90,
       "LED | Dimmable | Rechargeable | Brass"),
    _t("tea", "tea blend", "Tea", "Grocery, Beverages, Tea", 4, 20,
       "Chamomile | Green | Herbal | Loose-Leaf"),
    _t("mug", "mug", "Mug", "Home, Kitchen, Mugs", 6, 35,
       "Ceramic | Stoneware | Enamel | Insulated"),
    _t("running shoes", "pair of running shoes", "Running Shoes",
       "Sports, Footwear, Running Shoes", 45, 180, "Mesh | Cushioned | Neutral | Lightweight"),
    _t("socks", "pair of socks", "Socks", "Clothing, Accessories, Socks", 4, 22,
       "Merino | Cotton | Bamboo | Wool-Blend"),
    _t("water bottle", "water bottle", "Water Bottle", "Sports, Hydration, Water Bottles",
       8, 40, "Stainless | BPA-Free | Glass | Collapsible"),
    _t("snack bars", "box of snack bars", "Snack Bars", "Grocery, Snacks, Bars", 5, 28,
       "Oat | Nut | Protein | Fruit"),
    _t("foam roller", "foam roller", "Foam Roller", "Sports, Fitness, Recovery", 12, 55,
       "High-Density | Textured | Smooth | Vibrating"),
    _t("candle", "candle", "Candle", "Home, Decor, Candles", 6, 45,
       "Soy | Beeswax | Three-Wick | Tin"),
    _t("eye mask", "eye mask", "Eye Mask", "Health, Sleep, Eye Masks", 5, 30,
       "Silk | Contoured | Cotton | Weighted"),
    _t("pillow", "pillow", "Pillow", "Home, Bedding, Pillows", 10, 70,
       "Memory-Foam | Down-Alternative | Buckwheat | Inflatable"),
    _t("blanket", "blanket", "Blanket", "Home, Bedding, Blankets", 15, 120,
       "Fleece | Knit | Quilted | Sherpa"),
    _t("storage bins", "set of storage bins", "Storage Bins", "Home, Storage, Bins", 10, 50,
       "Fabric | Stackable | Woven | Plastic"),
    _t("skillet", "skillet", "Skillet", "Home, Kitchen, Cookware", 15, 120,
       "Cast-Iron | Nonstick | Carbon-Steel | Stainless-Steel"),
    _t("towel", "towel", "Towel", "Home, Bath, Towels", 6, 45,
       "Cotton | Microfiber | Waffle | Turkish"),
    _t("bath salts", "jar of bath salts", "Bath Salts", "Beauty, Bath, Bath Salts", 6, 30,
       "Epsom | Mineral | Himalayan | Dead-Sea"),
    _t("lotion", "lotion", "Lotion", "Beauty, Skin Care, Lotions", 5, 35,
       "Shea | Unscented | Oat | Aloe"),
    _t("knife set", "knife set", "Knife Set", "Home, Kitchen, Cutlery", 20, 160,
       "Forged | Stamped | Ceramic | Damascus"),
    _t("apron", "apron", "Apron", "Home, Kitchen, Linens", 8, 40,
       "Canvas | Linen | Denim | Cotton"),
    _t("serving board", "serving board", "Serving Board", "Home, Kitchen, Serveware",
       12, 80, "Acacia | Olive-Wood | Marble | Slate"),
    _t("exercise mat", "exercise mat", "Exercise Mat", "Sports, Fitness, Mats", 15, 90,
       "Cork | Rubber | TPE | Foldable"),
    _t("backpack", "backpack", "Backpack", "Clothing, Bags, Backpacks", 20, 150,
       "Canvas | Nylon | Roll-Top | 25L"),
    _t("planter", "planter", "Planter", "Garden, Planters, Pots", 8, 60,
       "Terracotta | Ceramic | Self-Watering | Hanging"),
    _t("gloves", "pair of gloves", "Gloves", "Clothing, Accessories, Gloves", 8, 45,
       "Fleece | Leather | Knit | Nitrile-Dipped"),
    _t("scarf", "scarf", "Scarf", "Clothing, Accessories, Scarves", 10, 60,
       "Cashmere | Knit | Flannel | Modal"),
    _t("wine glasses", "set of wine glasses", "Wine Glasses", "Home, Kitchen, Glassware",
       15, 90, "Crystal | Stemless | Hand-Blown | Tempered"),
)

STYLES = ("Classic", "Everyday", "Essential", "Signature", "Original", "Modern", "Heritage",
          "Studio")
BRANDS = ("Northwind", "Alder & Co", "Brightfield", "Cobalt Lane", "Driftwood", "Elmstead",
          "Fernhill", "Goldcrest", "Harbor Row", "Ironleaf", "Juniper Goods", "Kestrel",
          "Larkspur", "Meadowgate", "Nimbus", "Oakridge", "Pinecrest", "Quillon", "Redfern",
          "Saltmarsh", "Tidewater", "Umberly", "Vale & Vine", "Willowby")
FILLERS = ("Easy to clean and built to last.", "Ships in plastic-free packaging.",
           "Backed by a one-year warranty.", "Rated highly by verified buyers.",
           "A customer favourite since launch.", "Simple design that suits any style.",
           "Made from durable, responsibly sourced materials.", "Great value for everyday use.",
           "Ships within two business days.", "Part of the {brand} core range.")
# Evidence sentences: {t} trait, {u} use, {b} benefit, {n} product noun.
ONE_PHRASE = ("This {t} {n} is ready when you are.", "Designed {u}.", "Made {u}.",
              "It {b}.", "The {n} {b}.", "A {t} take on a familiar {n}.")
TWO_PHRASES = ("This {t} {n} {b}.", "A {t} {n} made {u}.", "It {b}, especially {u}.")
BUDGET_MOTIVATION = "first-apartment"  # priced in the lower part of each type's range


class SyntheticConfig(BaseModel):
    """Parameters of :func:`generate`; the defaults give the embedded default dataset."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    seed: int = Field(0, ge=0)
    n_items: int = Field(500, gt=0)
    n_users: int = Field(1200, gt=0)
    n_motivations: int = Field(len(MOTIVATIONS), ge=2, le=len(MOTIVATIONS))
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
        cells = sum(len(m.journey) for m in MOTIVATIONS[: self.n_motivations])
        if self.n_items < cells:
            raise ValueError(f"n_items must be at least {cells} (one item per motivation and "
                             f"product type for {self.n_motivations} motivations)")
        return self


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


def _evidence_sentence(rng: _Rng, m: Motivation, noun: str, two: bool) -> tuple[str, list[str]]:
    template = rng.pick(TWO_PHRASES if two else ONE_PHRASE)
    values = {"t": rng.pick(m.traits), "u": rng.pick(m.uses), "b": rng.pick(m.benefits)}
    used = [values[k] for k in "tub" if "{" + k + "}" in template]
    sentence = template.format(n=noun, **values)
    return sentence[0].upper() + sentence[1:], used


def _make_item(rng: _Rng, item_id: str, plan: _ItemPlan, ptype: ProductType, brand: str,
               by_id: dict[str, Motivation]) -> tuple[Item, list[str]]:
    primary = by_id[plan.motivations[0]]
    sentences, evidence = [], []
    text, used = _evidence_sentence(rng, primary, ptype.noun, rng.random() < 0.35)
    sentences.append(text)
    evidence += used
    if len(plan.motivations) > 1:
        text, used = _evidence_sentence(rng, by_id[plan.motivations[1]], ptype.noun, False)
        sentences.append(text)
        evidence += used
    for _ in range(rng.below(4 - len(sentences))):
        filler = rng.pick(FILLERS).format(brand=brand)
        if filler not in sentences:
            sentences.append(filler)
    rng.shuffle(sentences)
    u = rng.random() ** 2 * (0.4 if primary.id == BUDGET_MOTIVATION else 1.0)
    lo, hi = ptype.price
    price = math.floor(lo + (hi - lo) * u) + 0.99
    fields = {
        "title": f"{brand} {rng.pick(STYLES)} {rng.pick(ptype.materials)} {ptype.title}",
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
    rng = _Rng(cfg.seed)
    motivations = MOTIVATIONS[: cfg.n_motivations]
    by_id = {m.id: m for m in motivations}
    ptypes = {t.name: t for t in PRODUCT_TYPES}
    brands_of = {t.name: [BRANDS[(k * 5 + j) % len(BRANDS)] for j in range(6)]
                 for k, t in enumerate(PRODUCT_TYPES)}

    plans = _plan_items(cfg, rng, motivations)
    width = max(4, len(str(cfg.n_items)))
    items, evidence = [], []
    for k, plan in enumerate(plans):
        brand = rng.pick(brands_of[plan.ptype])
        item, used = _make_item(rng, f"I{k + 1:0{width}d}", plan, ptypes[plan.ptype], brand,
                                by_id)
        items.append(item)
        evidence.append(used)

    cells: dict[tuple[str, str], list[int]] = {}
    weights: dict[tuple[str, str], dict[int, float]] = {}
    for i, plan in enumerate(plans):
        base = (plan.rank + 1) ** -cfg.popularity_exponent
        for j, mid in enumerate(plan.motivations):
            key = (mid, plan.ptype)
            cells.setdefault(key, []).append(i)
            weights.setdefault(key, {})[i] = base * (cfg.secondary_weight if j else 1.0)

    walker = _Walker(cfg, rng, cells, weights, len(items), by_id)
    ids = [m.id for m in motivations]
    user_width = max(4, len(str(cfg.n_users)))
    user_ids, user_motivations, seqs, intents = [], [], [], []
    for u in range(cfg.n_users):
        mine = [rng.pick(ids)]
        if rng.random() < cfg.second_interest_rate:
            mine.append(rng.pick([m for m in ids if m != mine[0]]))
        seq, ints = walker.walk(mine, _length(cfg, rng))
        user_ids.append(f"U{u + 1:0{user_width}d}")
        user_motivations.append(mine)
        seqs.append(seq)
        intents.append(ints)
    _cover_unused(plans, seqs, intents)

    planted = _planted(cfg, motivations, items, plans, evidence, user_ids, user_motivations,
                       intents)
    sequences = [(uid, [items[i].id for i in seq]) for uid, seq in zip(user_ids, seqs)]
    return from_sequences(cfg.name, items, sequences, attributes={"planted": planted})


def _planted(cfg, motivations, items, plans, evidence, user_ids, user_motivations,
             intents) -> dict[str, Any]:
    used_types = {t for m in motivations for t in m.journey}
    return {
        "generator": "deepinterest.data.synthetic",
        "version": GENERATOR_VERSION,
        "config": cfg.model_dump(mode="json"),
        "motivations": [{"id": m.id, "phrase": m.phrase, "evidence": list(m.evidence),
                         "journey": list(m.journey)} for m in motivations],
        "product_types": [{"name": t.name, "categories": t.categories}
                          for t in PRODUCT_TYPES if t.name in used_types],
        "items": {item.id: {"motivations": list(plan.motivations), "product_type": plan.ptype,
                            "evidence": used}
                  for item, plan, used in zip(items, plans, evidence)},
        "users": {uid: {"motivations": list(mine), "intents": list(ints)}
                  for uid, mine, ints in zip(user_ids, user_motivations, intents)},
    }
