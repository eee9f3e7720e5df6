"""The embedding miner: deep interests without an LLM.

DeepInterestGR (arXiv 2602.18907) asks an LLM why an item is bought. This
miner answers the same requests offline and at no cost: it embeds the
item's evidence text and returns the motivations of a vocabulary
(:mod:`.vocabulary`) that sit closest to it (docs/interests.md).

- ``item``: the evidence text (title, categories, brand, description,
  caption, joined with ``; ``) against every vocabulary phrase; the
  ``top_k`` phrases with cosine similarity at least ``min_similarity``,
  most similar first.
- ``user``: the mean of the embeddings of the titles in
  ``evidence["history"]``, ranked the same way.
- ``judge``: the heuristic rule shared with the ``heuristic`` labeler
  (:func:`heuristic_verdicts`): 1 when a descriptor is grounded (similar
  enough to the item's evidence) and specific (not too close to any of the
  packaged generic descriptors), else 0 -- the paper's judge criteria,
  approximated by similarity.

Confidence is the similarity rescaled linearly from ``[similarity_floor,
similarity_ceiling]`` to ``[0, 1]`` and clipped:
``confidence = clip((s - floor) / (ceiling - floor), 0, 1)``.

All texts of one ``mine`` call are embedded in one batched, cached call;
tokens and cost are 0, and each result's latency is its share of the call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from .base import MineRequest, MineResult
from .schema import MAX_DESCRIPTORS, Descriptor, Interests, Verdicts
from .vocabulary import (
    PACKAGED,
    EncoderOptions,
    TextSpace,
    build_options,
    generic_descriptors,
    load_vocabulary,
    space_of,
)

BACKEND = "embedding"
VERSION = "embedding-v1"
# Item fields embedded, in this order: what the item is before what is said about it.
TEXT_FIELDS = ("title", "categories", "brand", "description", "caption")


def _flat(value: Any) -> list[str]:
    """Strings in a field that may be a string or (nested) lists of them (Amazon categories)."""
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _flat(v)]
    text = " ".join(str(value).split()) if value is not None else ""
    return [text] if text else []


def evidence_text(evidence: dict[str, Any]) -> str:
    """One text for an item's evidence: :data:`TEXT_FIELDS` joined with ``; ``."""
    parts = [", ".join(_flat(evidence.get(name))) for name in TEXT_FIELDS]
    return "; ".join(p for p in parts if p)


def history_titles(evidence: dict[str, Any]) -> list[str]:
    return _flat(evidence.get("history", []))


class HeuristicRule(EncoderOptions):
    """The grounded-and-specific rule (the judge's criteria, by similarity)."""

    min_grounding: float = Field(0.25, ge=-1.0, le=1.0)  # cosine(descriptor, evidence) at least
    max_generic: float = Field(0.6, ge=-1.0, le=1.0)  # cosine to every generic descriptor below
    temperature: float = Field(0.05, gt=0.0)  # how fast the probability leaves 0.5 at the margin


def judge_similarities(evidence: np.ndarray, descriptors: np.ndarray,
                       generic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise grounding (descriptor i vs evidence i) and genericness (max over generic)."""
    grounding = np.einsum("nd,nd->n", descriptors, evidence)
    genericness = (descriptors @ generic.T).max(axis=1) if len(generic) else \
        np.full(len(descriptors), -1.0)
    return grounding, genericness


def heuristic_verdicts(grounding: np.ndarray, genericness: np.ndarray,
                       rule: HeuristicRule) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 iff grounded and specific) and probabilities (a logistic of the worse margin)."""
    margin = np.minimum(grounding - rule.min_grounding, rule.max_generic - genericness)
    probability = 1.0 / (1.0 + np.exp(-margin / rule.temperature))
    return (margin >= 0).astype(np.int64), probability


def rescale(similarity: np.ndarray, floor: float, ceiling: float) -> np.ndarray:
    return np.clip((similarity - floor) / (ceiling - floor), 0.0, 1.0)


class EmbeddingMiner:
    """Nearest vocabulary motivations to an item's text (module docstring)."""

    class Options(HeuristicRule):
        vocabulary: str = PACKAGED  # "packaged" or a .txt / .toml file (docs/interests.md)
        domains: list[str] | None = None  # packaged or TOML domains to load; None: all
        top_k: int = Field(5, ge=1, le=MAX_DESCRIPTORS)
        # MiniLM puts unrelated short phrases at about 0.1-0.25 from an item's text.
        min_similarity: float = Field(0.25, ge=-1.0, le=1.0)
        similarity_floor: float = 0.2  # confidence 0 at or below this cosine similarity
        similarity_ceiling: float = 0.6  # confidence 1 at or above it
        progress: bool = False

        @model_validator(mode="after")
        def _ordered(self):
            if self.similarity_ceiling <= self.similarity_floor:
                raise ValueError("similarity_ceiling must be above similarity_floor")
            return self

    def __init__(self, **options: Any):
        self.options = build_options(self.Options, options, what="miner 'embedding'")
        self.model = self.options.encoder
        self.vocabulary = load_vocabulary(self.options.vocabulary, self.options.domains)
        self.space: TextSpace = space_of(self.options)
        self.space.progress = self.options.progress
        self._vocab: np.ndarray | None = None
        self._generic: np.ndarray | None = None

    @property
    def vocabulary_vectors(self) -> np.ndarray:
        if self._vocab is None:
            self._vocab = self.space.embed(self.vocabulary.phrases)
        return self._vocab

    @property
    def generic_vectors(self) -> np.ndarray:
        if self._generic is None:
            self._generic = self.space.embed(generic_descriptors())
        return self._generic

    def _version(self, task: str) -> str:
        if task == "judge":
            return f"judge.{VERSION}"
        return f"{task}.{VERSION}.vocab-{self.vocabulary.fingerprint[:8]}"

    def mine(self, requests: Sequence[MineRequest]) -> list[MineResult]:
        if not requests:
            return []
        start = time.perf_counter()
        texts = [t for r in requests for t in _texts_of(r)]
        unique = list(dict.fromkeys(texts))
        vectors = dict(zip(unique, self.space.embed(unique))) if unique else {}
        results = [self._answer(r, vectors) for r in requests]
        share = (time.perf_counter() - start) / len(requests)
        return [replace(r, latency_s=share) for r in results]

    def _answer(self, request: MineRequest, vectors: dict[str, np.ndarray]) -> MineResult:
        meta = dict(key=request.key, task=request.task, backend=BACKEND, model=self.model,
                    prompt_version=self._version(request.task))
        texts = _texts_of(request)
        if not texts:
            what = "history titles" if request.task == "user" else "evidence text"
            return MineResult(**meta, answer=None, error=f"no {what} to embed")
        if request.task == "judge":
            answer, extra = self._judge(request, vectors)
        else:
            query = np.mean([vectors[t] for t in texts], axis=0)
            answer, extra = self._rank(query / max(np.linalg.norm(query), 1e-12))
        return MineResult(**meta, answer=answer, raw=answer.model_dump_json(), extra=extra)

    def _rank(self, query: np.ndarray) -> tuple[Interests, dict[str, Any]]:
        o = self.options
        sims = self.vocabulary_vectors @ query
        order = np.argsort(-sims, kind="stable")[:o.top_k]
        order = [int(i) for i in order if sims[i] >= o.min_similarity]
        confidences = rescale(sims[order], o.similarity_floor, o.similarity_ceiling)
        descriptors = [Descriptor(text=self.vocabulary.phrases[i], confidence=float(c))
                       for i, c in zip(order, confidences)]
        extra = {"similarities": [round(float(sims[i]), 6) for i in order],
                 "vocabulary": self.vocabulary.source}
        return Interests(descriptors=descriptors), extra

    def _judge(self, request: MineRequest,
               vectors: dict[str, np.ndarray]) -> tuple[Verdicts, dict[str, Any]]:
        if not request.descriptors:
            return Verdicts(labels=[]), {"probabilities": []}
        desc = np.stack([vectors[d] for d in request.descriptors])
        evidence = np.broadcast_to(vectors[evidence_text(request.evidence)], desc.shape)
        grounding, genericness = judge_similarities(evidence, desc, self.generic_vectors)
        labels, probability = heuristic_verdicts(grounding, genericness, self.options)
        return Verdicts(labels=[int(x) for x in labels]), {
            "probabilities": [round(float(p), 6) for p in probability]}


def _texts_of(request: MineRequest) -> list[str]:
    """The texts a request needs embedded (none when it has nothing to embed)."""
    if request.task == "user":
        return history_titles(request.evidence)
    text = evidence_text(request.evidence)
    if request.task == "judge":
        return [text, *request.descriptors] if text else []
    return [text] if text else []
