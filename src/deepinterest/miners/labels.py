"""Reward labels: is a mined descriptor specific and grounded in its item?

DeepInterestGR (arXiv 2602.18907) labels every descriptor 1 when it is
specific, actionable and grounded in the item's evidence, else 0, and
scores an item's interests by ``item_quality``, the confidence-weighted
share of good descriptors, which feeds the interest-aware reward. A labeler
is registered under ``deepinterest.labelers`` and has one required method,
``label(evidence_list, descriptors_list) -> list[list[Label]]``: one list
per item, one :class:`Label` per descriptor, in order (docs/interests.md).

- ``judge``: asks any registered miner's ``judge`` task; probability is
  1.0 or 0.0. A failed request gives *missing* labels (``label`` None, the
  error kept), never dropped ones.
- ``classifier``: logistic regression on embedding features of
  (descriptor, evidence), fitted on judge labels (``fit``), so a few
  hundred judge calls label a whole catalogue cheaply; ``save``/``load``.
- ``heuristic``: offline, the embedding miner's judge rule: similar enough
  to the item's evidence and not too close to a packaged generic descriptor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from .. import registry
from ..artifacts import atomic_write_text
from ..errors import DeepInterestError
from .base import MineRequest
from .embedding import (
    HeuristicRule,
    evidence_text,
    heuristic_verdicts,
    judge_similarities,
)
from .schema import Verdicts
from .vocabulary import EncoderOptions, TextSpace, build_options, generic_descriptors, space_of


@dataclass(frozen=True)
class Label:
    """One descriptor's reward label; ``label`` None when the labeler had no answer."""

    label: int | None  # 1 good, 0 not, None missing
    probability: float | None  # P(label = 1) when the labeler has one
    labeler: str
    error: str | None = None  # why it is missing

    @property
    def missing(self) -> bool:
        return self.label is None


@runtime_checkable
class Labeler(Protocol):
    def label(self, evidence_list: Sequence[dict[str, Any]],
              descriptors_list: Sequence[Sequence[str]]) -> list[list[Label]]:
        """One :class:`Label` per descriptor of each item, in order."""


def item_quality(confidences: Sequence[float], labels: Sequence[int | Label | None]) -> float:
    """``sum(c_j * l_j) / sum(c_j)`` over the item's descriptors (arXiv 2602.18907).

    0 when there are none or their confidences sum to 0; a missing label
    leaves its descriptor out of both sums (unknown is neither good nor bad).
    """
    if len(confidences) != len(labels):
        raise ValueError(f"{len(confidences)} confidences for {len(labels)} labels")
    known = [(c, _value(lab)) for c, lab in zip(confidences, labels) if _value(lab) is not None]
    total = sum(c for c, _ in known)
    return sum(c * v for c, v in known) / total if total > 0 else 0.0


def _value(label: int | Label | None) -> int | None:
    return label.label if isinstance(label, Label) else label


def _check_lengths(evidence_list: Sequence, descriptors_list: Sequence) -> None:
    if len(evidence_list) != len(descriptors_list):
        raise DeepInterestError(f"{len(evidence_list)} evidence entries for "
                                f"{len(descriptors_list)} descriptor lists")


# ---------------------------------------------------------------- judge


class JudgeLabeler:
    """Labels from a miner's ``judge`` answers (module docstring)."""

    def __init__(self, miner: str | Any, miner_options: dict[str, Any] | None = None):
        if isinstance(miner, str):
            self.miner = registry.create("miners", miner, **(miner_options or {}))
            self.name = f"judge:{miner}"
        else:  # an already built miner
            self.miner = miner
            self.name = f"judge:{getattr(miner, 'model', type(miner).__name__)}"

    def label(self, evidence_list: Sequence[dict[str, Any]],
              descriptors_list: Sequence[Sequence[str]], *,
              keys: Sequence[str] | None = None) -> list[list[Label]]:
        """``keys`` (item ids) name the requests; by default ``evidence["id"]`` or the index."""
        _check_lengths(evidence_list, descriptors_list)
        asked = [i for i, d in enumerate(descriptors_list) if d]
        requests = [MineRequest("judge", self._key(i, evidence_list[i], keys),
                                dict(evidence_list[i]), descriptors=tuple(descriptors_list[i]))
                    for i in asked]
        results = self.miner.mine(requests) if requests else []
        if len(results) != len(requests):
            raise DeepInterestError(f"{self.name} answered {len(results)} of {len(requests)} "
                                    "judge requests; a miner returns one result per request")
        out: list[list[Label]] = [[] for _ in descriptors_list]
        for i, result in zip(asked, results):
            out[i] = self._labels(result, len(descriptors_list[i]))
        return out

    @staticmethod
    def _key(i: int, evidence: dict[str, Any], keys: Sequence[str] | None) -> str:
        return str(keys[i]) if keys is not None else str(evidence.get("id", i))

    def _labels(self, result, n: int) -> list[Label]:
        if not result.ok or not isinstance(result.answer, Verdicts):
            error = result.error or "not a judge answer"
            return [Label(None, None, self.name, error=error)] * n
        return [Label(v, float(v), self.name) for v in result.answer.labels]


# ---------------------------------------------------------------- embedding features


@dataclass
class _Pairs:
    """Every (descriptor, evidence) pair of a batch, embedded once."""

    descriptors: np.ndarray  # [P, D]
    evidence: np.ndarray  # [P, D]
    slots: list[tuple[int, int]]  # (item, descriptor) of each pair
    no_text: set[int]  # items without evidence text (their labels are missing)


def _embed_pairs(space: TextSpace, evidence_list: Sequence[dict[str, Any]],
                 descriptors_list: Sequence[Sequence[str]]) -> _Pairs:
    _check_lengths(evidence_list, descriptors_list)
    texts = [evidence_text(e) for e in evidence_list]
    slots = [(i, j) for i, ds in enumerate(descriptors_list) if texts[i] for j in range(len(ds))]
    wanted = [descriptors_list[i][j] for i, j in slots] + [texts[i] for i, _ in slots]
    unique = list(dict.fromkeys(wanted))
    vectors = dict(zip(unique, space.embed(unique))) if unique else {}
    no_text = {i for i, t in enumerate(texts) if not t and descriptors_list[i]}
    if not slots:
        empty = np.zeros((0, 0), dtype=np.float32)
        return _Pairs(empty, empty, [], no_text)
    return _Pairs(np.stack([vectors[descriptors_list[i][j]] for i, j in slots]),
                  np.stack([vectors[texts[i]] for i, _ in slots]), slots, no_text)


def _assemble(descriptors_list: Sequence[Sequence[str]], pairs: _Pairs, labels: np.ndarray,
              probabilities: np.ndarray, name: str) -> list[list[Label]]:
    out: list[list[Label]] = [
        [Label(None, None, name, error="no evidence text")] * len(ds) if i in pairs.no_text
        else [None] * len(ds) for i, ds in enumerate(descriptors_list)]
    for (i, j), lab, p in zip(pairs.slots, labels, probabilities):
        out[i][j] = Label(int(lab), round(float(p), 6), name)
    return out


class _Embedded:
    """Holds the text space and the generic descriptors' vectors."""

    name = "embedded"

    def _setup(self, options: EncoderOptions) -> None:
        self.options = options
        self.space: TextSpace = space_of(options)
        self._generic: np.ndarray | None = None

    @property
    def generic_vectors(self) -> np.ndarray:
        if self._generic is None:
            self._generic = self.space.embed(generic_descriptors())
        return self._generic

    def _similarities(self, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray]:
        if not pairs.slots:
            return np.zeros(0), np.zeros(0)
        return judge_similarities(pairs.evidence, pairs.descriptors, self.generic_vectors)


# ---------------------------------------------------------------- heuristic


# Words that carry no motivation: a descriptor made of the catalogue's own words plus these
# says nothing the catalogue did not ("Beauty, Skin Care, Lotions", a title echoed).
_FILLER = frozenset("a an the and or of for to in on with by is are it its this that these "
                    "product products item items made".split())


def _words(text: str) -> set[str]:
    import re

    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _FILLER}


def copies_catalogue(descriptor: str, evidence: dict[str, Any], *, share: float = 0.75) -> bool:
    """True when most of ``descriptor``'s words are the item's own title, brand or categories.

    The item prompt asks for motivations, not the title or the category path
    (arXiv 2602.18907 asks for descriptors grounded in, not copied from, the
    evidence); small models often answer with exactly those. Three quarters
    of the words, not all, so an echo with one added word is still caught.
    """
    words = _words(descriptor)
    own = _words(" ".join(str(evidence.get(f, "")) for f in ("title", "brand", "categories")))
    return bool(words) and len(words & own) >= share * len(words)


class HeuristicLabeler(_Embedded):
    """Grounded (similar to the evidence), specific (far from generic descriptors) and not a
    copy of the item's own title, brand or categories (:func:`copies_catalogue`)."""

    name = "heuristic"
    Options = HeuristicRule

    def __init__(self, **options: Any):
        self._setup(build_options(self.Options, options, what="labeler 'heuristic'"))

    def label(self, evidence_list: Sequence[dict[str, Any]],
              descriptors_list: Sequence[Sequence[str]]) -> list[list[Label]]:
        pairs = _embed_pairs(self.space, evidence_list, descriptors_list)
        grounding, genericness = self._similarities(pairs)
        labels, probability = heuristic_verdicts(grounding, genericness, self.options)
        for n, (i, j) in enumerate(pairs.slots):
            if copies_catalogue(descriptors_list[i][j], evidence_list[i]):
                labels[n], probability[n] = 0, 0.0
        return _assemble(descriptors_list, pairs, labels, probability, self.name)


# ---------------------------------------------------------------- classifier

_WEIGHTS, _META = "classifier.npz", "classifier.json"


class ClassifierLabeler(_Embedded):
    """Logistic regression on (descriptor, evidence) embedding features (module docstring).

    Features: the descriptor's embedding, its element-wise product with and
    absolute difference from the evidence's, their cosine similarity, and
    the descriptor's highest similarity to a generic descriptor; standardised
    on the training pairs. Fitted by full-batch gradient descent with L2,
    classes weighted equally by default (judges rarely say 1 half the time).
    """

    name = "classifier"

    class Options(EncoderOptions):
        path: str | None = None  # a folder written by save(): load it at once
        epochs: int = Field(400, ge=1)
        lr: float = Field(0.5, gt=0.0)
        l2: float = Field(1e-3, ge=0.0)
        balanced: bool = True
        threshold: float = Field(0.5, gt=0.0, lt=1.0)

    def __init__(self, **options: Any):
        self._setup(build_options(self.Options, options, what="labeler 'classifier'"))
        self.params: dict[str, np.ndarray] | None = None
        self.report: dict[str, Any] = {}
        if self.options.path:
            self._read(Path(self.options.path))

    def _features(self, pairs: _Pairs) -> np.ndarray:
        d, e = pairs.descriptors, pairs.evidence
        grounding, genericness = self._similarities(pairs)
        return np.concatenate([d, d * e, np.abs(d - e), grounding[:, None],
                               genericness[:, None]], axis=1).astype(np.float64)

    def fit(self, evidence_list: Sequence[dict[str, Any]],
            descriptors_list: Sequence[Sequence[str]],
            labels_list: Sequence[Sequence[int | Label | None]]) -> ClassifierLabeler:
        """Fit on labelled descriptors (judge labels); missing labels are skipped."""
        pairs = _embed_pairs(self.space, evidence_list, descriptors_list)
        y = [_value(labels_list[i][j]) for i, j in pairs.slots]
        known = np.array([v is not None for v in y], dtype=bool)
        if not known.any():
            raise DeepInterestError("classifier labeler: no labels to fit on")
        x = self._features(pairs)[known]
        target = np.array([v for v in y if v is not None], dtype=np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        w, b = _logistic_regression((x - mean) / std, target, self.options)
        self.params = {"w": w, "b": np.array([b]), "mean": mean, "std": std}
        predicted = self._probability(x) >= self.options.threshold
        self.report = {"pairs": int(len(target)), "positives": int(target.sum()),
                       "train_accuracy": float((predicted == (target > 0.5)).mean())}
        return self

    def _probability(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        z = ((x - p["mean"]) / p["std"]) @ p["w"] + p["b"][0]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def label(self, evidence_list: Sequence[dict[str, Any]],
              descriptors_list: Sequence[Sequence[str]]) -> list[list[Label]]:
        if self.params is None:
            raise DeepInterestError("the classifier labeler is not fitted: call fit(...) with "
                                    "judge labels, or give path= a folder written by save()")
        pairs = _embed_pairs(self.space, evidence_list, descriptors_list)
        p = self._probability(self._features(pairs)) if pairs.slots else np.zeros(0)
        return _assemble(descriptors_list, pairs, p >= self.options.threshold, p, self.name)

    def save(self, folder: str | Path) -> Path:
        if self.params is None:
            raise DeepInterestError("nothing to save: the classifier labeler is not fitted")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / _WEIGHTS, **self.params)
        meta = {"encoder": self.space.name, "encoder_identity": self.space.identity,
                "threshold": self.options.threshold, "report": self.report}
        atomic_write_text(folder / _META, json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path, **options: Any) -> ClassifierLabeler:
        return cls(path=str(folder), **options)

    def _read(self, folder: Path) -> None:
        if not (folder / _WEIGHTS).is_file() or not (folder / _META).is_file():
            raise DeepInterestError(f"{folder}: not a classifier labeler folder (no {_WEIGHTS} "
                                    f"and {_META}); write one with save()")
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        if meta["encoder_identity"] != self.space.identity:
            raise DeepInterestError(f"{folder} was fitted on encoder {meta['encoder']!r}; "
                                    f"load it with encoder={meta['encoder']!r}")
        with np.load(folder / _WEIGHTS) as data:
            self.params = {k: data[k] for k in data.files}
        self.report = meta.get("report", {})


def _logistic_regression(x: np.ndarray, y: np.ndarray,
                         options: ClassifierLabeler.Options) -> tuple[np.ndarray, float]:
    """Weights and bias minimising (class-weighted) log loss plus L2, by gradient descent."""
    weight = np.ones_like(y)
    if options.balanced and 0 < y.sum() < len(y):
        positives = y.mean()
        weight = np.where(y > 0.5, 0.5 / positives, 0.5 / (1 - positives))
    weight = weight / weight.sum()
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(options.epochs):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w + b, -50, 50)))
        g = weight * (p - y)
        w -= options.lr * (x.T @ g + options.l2 * w)
        b -= options.lr * float(g.sum())
    return w, b
