"""Ensembling the answers of several miners about one item.

DeepInterestGR (arXiv 2602.18907) mines with more than one LLM; answers
that several models agree on are more trustworthy than any one model's.
An ensembler is registered under ``deepinterest.ensemblers`` and has one
required method, ``combine(answers) -> list[EnsembledDescriptor]``, where
``answers`` maps a miner's name to its :class:`~.schema.Interests` for the
item (miners that failed are simply absent). ``combine_many`` does the same
for many items and embeds every descriptor text once, in one batched,
cached call (docs/interests.md).

All three built-ins first cluster the item's descriptors: most confident
first, each joins the cluster whose representative (its most confident
member) has the same normalised text or a cosine similarity of at least
``similarity``, or starts a new one. Paraphrases from different miners thus
share a cluster; a miner counts once per cluster (its best confidence).

- ``vote``: keep clusters supported by at least ``min_votes`` of the n
  miners that answered (default: a majority); confidence is the mean
  confidence of the supporters times the agreement ``support / n``.
- ``union``: keep every cluster (near-duplicates merged); confidence is the
  best member's; ordered by support, then confidence.
- ``confidence``: confidence-weighted merge, ``sum_s w_s c_s / sum_s w_s``
  over the n miners (a miner without a member counts 0), kept at or above
  ``min_confidence``; ``weights`` per miner name default to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from .base import MineResult
from .schema import MAX_DESCRIPTORS, Descriptor, Interests
from .vocabulary import EncoderOptions, TextSpace, build_options, normalise, space_of


@dataclass(frozen=True)
class EnsembledDescriptor:
    """One merged descriptor: its text, confidence, and who proposed it."""

    text: str  # the most confident member's text
    confidence: float
    support: int  # how many miners proposed it (or a paraphrase)
    sources: tuple[str, ...]  # their names, sorted
    members: tuple[str, ...] = ()  # every text merged into it, most confident first


@runtime_checkable
class Ensembler(Protocol):
    def combine(self, answers: Mapping[str, Interests]) -> list[EnsembledDescriptor]:
        """The ensembled descriptors of one item, most important first."""


@dataclass
class _Cluster:
    rep: int  # index of the representative entry
    members: list[int]
    best: dict[str, float]  # miner -> its best confidence in the cluster


class _Clustering:
    """The shared part: options, embedding once, clustering each item's descriptors."""

    name = "ensemble"

    class Options(EncoderOptions):
        similarity: float = Field(0.7, ge=-1.0, le=1.0)  # MiniLM paraphrases: about 0.7-0.95
        top_k: int = Field(MAX_DESCRIPTORS, ge=1)

    def __init__(self, **options: Any):
        self.options = build_options(self.Options, options, what=f"ensembler {self.name!r}")
        self.space: TextSpace = space_of(self.options)

    def combine(self, answers: Mapping[str, Interests]) -> list[EnsembledDescriptor]:
        return self.combine_many([answers])[0]

    def combine_many(self, items: Sequence[Mapping[str, Interests]]
                     ) -> list[list[EnsembledDescriptor]]:
        """:meth:`combine` for each item; all descriptor texts are embedded in one call."""
        texts = list(dict.fromkeys(d.text for answers in items for interests in answers.values()
                                   for d in interests.descriptors))
        vectors = dict(zip(texts, self.space.embed(texts))) if texts else {}
        return [self._one(answers, vectors) for answers in items]

    def _one(self, answers: Mapping[str, Interests],
             vectors: dict[str, np.ndarray]) -> list[EnsembledDescriptor]:
        entries = sorted(((-d.confidence, source, d.text) for source, interests in answers.items()
                          for d in interests.descriptors))
        clusters = self._cluster(entries, vectors)
        scored = [(self._score(c, answers), c) for c in clusters]
        kept = [(s, c) for s, c in scored if s is not None and self._keep(c, s, answers)]
        kept.sort(key=lambda sc: self._order(sc[1], sc[0], entries))
        return [self._result(c, s, entries) for s, c in kept[:self.options.top_k]]

    def _cluster(self, entries: list[tuple[float, str, str]],
                 vectors: dict[str, np.ndarray]) -> list[_Cluster]:
        clusters: list[_Cluster] = []
        for i, (neg, source, text) in enumerate(entries):
            home = self._home(text, clusters, entries, vectors)
            if home is None:
                home = _Cluster(rep=i, members=[], best={})
                clusters.append(home)
            home.members.append(i)
            home.best.setdefault(source, -neg)  # entries come most confident first
        return clusters

    def _home(self, text: str, clusters: list[_Cluster], entries,
              vectors: dict[str, np.ndarray]) -> _Cluster | None:
        norm = normalise(text)
        for c in clusters:
            if any(normalise(entries[m][2]) == norm for m in c.members):
                return c
        if not clusters:
            return None
        reps = np.stack([vectors[entries[c.rep][2]] for c in clusters])
        sims = reps @ vectors[text]
        best = int(np.argmax(sims))
        return clusters[best] if sims[best] >= self.options.similarity else None

    def _result(self, c: _Cluster, confidence: float, entries) -> EnsembledDescriptor:
        members = tuple(dict.fromkeys(entries[m][2] for m in c.members))
        return EnsembledDescriptor(text=entries[c.rep][2], confidence=round(confidence, 6),
                                   support=len(c.best), sources=tuple(sorted(c.best)),
                                   members=members)

    def _order(self, c: _Cluster, confidence: float, entries) -> tuple:
        return (-confidence, -len(c.best), entries[c.rep][2])

    def _score(self, c: _Cluster, answers: Mapping[str, Interests]) -> float | None:
        raise NotImplementedError

    def _keep(self, c: _Cluster, confidence: float, answers: Mapping[str, Interests]) -> bool:
        return True


class VoteEnsembler(_Clustering):
    """Clusters supported by at least ``min_votes`` miners (module docstring)."""

    name = "vote"

    class Options(_Clustering.Options):
        min_votes: int | None = Field(None, ge=1)  # None: a majority of the miners that answered

    def _needed(self, n: int) -> int:
        return self.options.min_votes if self.options.min_votes is not None else n // 2 + 1

    def _score(self, c: _Cluster, answers: Mapping[str, Interests]) -> float:
        mean = sum(c.best.values()) / len(c.best)
        return mean * len(c.best) / len(answers)

    def _keep(self, c: _Cluster, confidence: float, answers: Mapping[str, Interests]) -> bool:
        return len(c.best) >= self._needed(len(answers))


class UnionEnsembler(_Clustering):
    """Every descriptor, near-duplicates merged, support counted (module docstring)."""

    name = "union"

    def _score(self, c: _Cluster, answers: Mapping[str, Interests]) -> float:
        return max(c.best.values())

    def _order(self, c: _Cluster, confidence: float, entries) -> tuple:
        return (-len(c.best), -confidence, entries[c.rep][2])


class ConfidenceEnsembler(_Clustering):
    """Confidence-weighted merge across miners (module docstring)."""

    name = "confidence"

    class Options(_Clustering.Options):
        weights: dict[str, float] = Field(default_factory=dict)  # miner name -> weight (1)
        min_confidence: float = Field(0.3, ge=0.0, le=1.0)

    def _weight(self, source: str) -> float:
        return self.options.weights.get(source, 1.0)

    def _score(self, c: _Cluster, answers: Mapping[str, Interests]) -> float | None:
        total = sum(self._weight(s) for s in answers)
        if total <= 0:
            return None
        return sum(self._weight(s) * conf for s, conf in c.best.items()) / total

    def _keep(self, c: _Cluster, confidence: float, answers: Mapping[str, Interests]) -> bool:
        return confidence >= self.options.min_confidence


def to_interests(ensembled: Sequence[EnsembledDescriptor]) -> Interests:
    """An :class:`Interests` answer from ensembled descriptors (for the interests artifact)."""
    return Interests(descriptors=[Descriptor(text=e.text, confidence=min(1.0, e.confidence))
                                  for e in ensembled[:MAX_DESCRIPTORS]])


def answers_by_key(results: Mapping[str, Sequence[MineResult]]
                   ) -> dict[str, dict[str, Interests]]:
    """``{miner: [results]}`` regrouped as ``{key: {miner: Interests}}``, failures left out."""
    grouped: dict[str, dict[str, Interests]] = {}
    for miner, listed in results.items():
        for r in listed:
            grouped.setdefault(r.key, {})
            if r.ok and isinstance(r.answer, Interests):
                grouped[r.key][miner] = r.answer
    return grouped
