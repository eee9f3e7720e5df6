"""Interest-aware reward: partial credit for recommending an item that serves the user's interests.

DeepInterestGR (arXiv 2602.18907) rewards GRPO rollouts for matching the
user's deep interests, weighted by the interests' reward labels, not only
for hitting the target. A wrong item that serves what the user is after
then earns something, which matters because with exact-hit rewards alone
(MiniOneRec) most groups have no hit and so no gradient.

Formula. Let A be the recommended item's descriptors (``items.jsonl``),
each with confidence c_a and label weight

    lam(l) = 1 for l = 1, ``negative_weight`` (default 0) for l = 0,
             the label probability (else 1) for a missing label,

and B the reference descriptors: the user's interests (``users.jsonl``), or
the target item's descriptors when the user has none (or is unknown, or
``reference="target"``). With m(a, b) = 1 when a and b match, else 0::

    r = sum_a c_a * lam(l_a) * max_b [ w_b * m(a, b) ]  /  sum_a c_a

where w_b = lam(l_b) (a user interest has no label: 1), times c_b when
``reference_confidence=True``. Every factor is in [0, 1] and the numerator
is at most the denominator, so r is in [0, 1]: it is the confidence-weighted
share of the recommended item's descriptors that are both good (labelled 1)
and shared with the reference. Negative descriptors stay in the denominator,
so an item cannot score by matching vague descriptors ("good quality
product"). An item with no descriptors scores 0.0. Recommending the target
itself with ``reference="target"`` scores sum_a c_a lam(l_a)^2 / sum_a c_a,
the item's quality q when labels are 0/1.

Matching: ``match="text"`` (default) matches descriptors whose normalised
texts are equal (lower case, punctuation and extra spaces removed, the
ensemblers' rule) and needs no model; ``match="embedding"`` also matches
pairs whose cosine similarity is at least ``similarity``, with the package's
text encoder (all-MiniLM-L6-v2 by default), loaded on first use. Vectors are
kept in memory per process (``cache_dir`` adds the on-disk embedding cache)
and are not pickled with the reward.

Gate: with ``gate_prefix = k > 0`` the credit is paid only when the
completion shares at least its first k codes with the target's SID (r is
0.0 otherwise), so the policy cannot earn it with items that serve the
user's interests but lie far from what they bought next; the gate needs the
``target`` column.

``None`` (not applicable): the completion is not the SID of a catalogue
item, or there is no reference (no user interests and no target
descriptors).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..schemas.sids import SIDCatalog
from ..encoders.base import MINILM
from ..errors import DeepInterestError
from .base import SIDReward, column
from ..schemas.interests import normalise
from .interest_index import Interest, InterestIndex
from .rule import common_prefix

Reference = Literal["user", "target"]
Match = Literal["text", "embedding"]


def label_weight(d: Interest, negative_weight: float) -> float:
    """lam(l): 1 for a positive label, ``negative_weight`` for a negative one, else the
    probability (1 when there is none)."""
    if d.label == 1:
        return 1.0
    if d.label == 0:
        return negative_weight
    return 1.0 if d.probability is None else min(max(d.probability, 0.0), 1.0)


def interest_overlap(recommended: Sequence[Interest], reference: Sequence[Interest], *,
                     negative_weight: float = 0.0, reference_confidence: bool = False,
                     matches: np.ndarray | None = None) -> float:
    """The reward's r for one row (module docstring), in [0, 1].

    ``matches`` [len(recommended), len(reference)] (bool) overrides the
    exact-text rule, e.g. with embedding similarity.
    """
    total = sum(d.confidence for d in recommended)
    if total <= 0:
        return 0.0
    weights = [label_weight(b, negative_weight) * (b.confidence if reference_confidence else 1.0)
               for b in reference]
    if matches is None:
        best: dict[str, float] = {}
        for b, w in zip(reference, weights):
            key = normalise(b.text)
            best[key] = max(best.get(key, 0.0), w)
        strength = [best.get(normalise(a.text), 0.0) for a in recommended]
    else:
        w = np.asarray(weights, dtype=np.float64)
        strength = [float((matches[i] * w).max(initial=0.0)) for i in range(len(recommended))]
    gained = sum(a.confidence * label_weight(a, negative_weight) * s
                 for a, s in zip(recommended, strength))
    return min(max(gained / total, 0.0), 1.0)


class InterestReward(SIDReward):
    """Confidence- and label-weighted overlap of the recommended item's interests with the
    user's (or the target's); module docstring for the formula."""

    default_name = "interest"

    def __init__(self, *, catalog: SIDCatalog | str | Path, interests: InterestIndex | str | Path,
                 reference: Reference = "user", negative_weight: float = 0.0,
                 reference_confidence: bool = False, match: Match = "text",
                 similarity: float = 0.75, encoder: str = MINILM, encoder_kind: str = "auto",
                 device: str | None = None, batch_size: int = 64, cache_dir: str | None = None,
                 gate_prefix: int = 0, name: str | None = None):
        super().__init__(catalog=catalog, name=name)
        if not 0 <= gate_prefix <= self.index.levels:
            raise DeepInterestError(f"interest reward: gate_prefix {gate_prefix} is outside "
                                    f"[0, {self.index.levels}] (the quantizer levels)")
        self.gate_prefix = int(gate_prefix)
        if reference not in ("user", "target"):
            raise DeepInterestError(f"interest reward: reference {reference!r}; use 'user' "
                                    "(user interests, else the target's) or 'target'")
        if match not in ("text", "embedding"):
            raise DeepInterestError(f"interest reward: match {match!r}; use 'text' or "
                                    "'embedding'")
        if not 0.0 <= negative_weight <= 1.0:
            raise DeepInterestError(f"interest reward: negative_weight {negative_weight} is "
                                    "outside [0, 1]")
        self.interests = (interests if isinstance(interests, InterestIndex)
                          else InterestIndex.from_artifact(interests, self.index.catalog))
        self.reference, self.match = reference, match
        self.negative_weight = float(negative_weight)
        self.reference_confidence = bool(reference_confidence)
        self.similarity = float(similarity)
        self.encoder_options = {"name": encoder, "kind": encoder_kind, "device": device,
                                "batch_size": batch_size}
        self.cache_dir = cache_dir
        self._encoder: Any = None  # built on first use in embedding mode; never pickled
        self._vectors: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"], state["_vectors"] = None, {}
        return state

    def references(self, users: list[Any] | None, targets: list[int | None] | None, n: int
                   ) -> list[tuple[Interest, ...]]:
        """Each of ``n`` rows' reference descriptors (empty when there are none)."""
        out = []
        for row in range(n):
            found: tuple[Interest, ...] = ()
            if self.reference == "user" and users is not None:
                found = self.interests.user(users[row])
            if not found and targets is not None and targets[row] is not None:
                found = self.interests.descriptors(targets[row])
            out.append(found)
        return out

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **columns: Any) -> list[float | None]:
        n = len(completions)
        users = column(columns, "user", n, reward=self.__name__, required=False)
        targets = self.targets(columns, n, required=False)
        if users is None and targets is None:
            raise DeepInterestError(f"reward {self.__name__!r} needs a 'user' or a 'target' "
                                    "column in the dataset (one value per completion)")
        if (self.reference == "target" or self.gate_prefix) and targets is None:
            raise DeepInterestError(f"reward {self.__name__!r} with reference='target' or "
                                    "gate_prefix needs a 'target' column in the dataset")
        codes = self.codes(completions)
        items = [self.index.item_of.get(c) if c is not None else None for c in codes]
        references = self.references(users, targets, n)
        rows = [(self.interests.descriptors(i), ref) if i is not None and ref else None
                for i, ref in zip(items, references)]
        if self.gate_prefix:  # outside the gate: a plain 0, nothing to compute
            rows = [pair if pair is None or self._inside(c, t) else ((), ())
                    for pair, c, t in zip(rows, codes, targets)]
        if self.match == "embedding":
            self._embed({d.text for pair in rows if pair for side in pair for d in side})
        return [None if pair is None else interest_overlap(
                    *pair, negative_weight=self.negative_weight,
                    reference_confidence=self.reference_confidence,
                    matches=self._matches(*pair) if self.match == "embedding" else None)
                for pair in rows]

    def _inside(self, codes, target: int | None) -> bool:
        """Whether the completion passes the gate: its first ``gate_prefix`` codes are the
        target's (a row without a target passes: there is nothing to gate on)."""
        return target is None or \
            common_prefix(codes, self.index.sids[target], self.index.levels) >= self.gate_prefix

    # ------------------------------------------------------------ embedding mode

    def _embed(self, texts: set[str]) -> None:
        todo = sorted(t for t in texts if t not in self._vectors)
        if not todo:
            return
        from ..encoders import build_encoder, embed_texts

        if self._encoder is None:
            options = self.encoder_options
            self._encoder = build_encoder(options["name"], kind=options["kind"],
                                          device=options["device"],
                                          batch_size=options["batch_size"], normalize=True)
        vectors = embed_texts(self._encoder, todo, cache_dir=self.cache_dir, progress=False)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self._vectors.update(zip(todo, vectors))

    def _matches(self, recommended: Sequence[Interest], reference: Sequence[Interest]
                 ) -> np.ndarray:
        """[A, B] bool: same normalised text, or cosine similarity >= ``similarity``."""
        if not recommended or not reference:
            return np.zeros((len(recommended), len(reference)), dtype=bool)
        a = np.stack([self._vectors[d.text] for d in recommended])
        b = np.stack([self._vectors[d.text] for d in reference])
        same = np.array([[normalise(x.text) == normalise(y.text) for y in reference]
                         for x in recommended])
        return (a @ b.T >= self.similarity) | same
