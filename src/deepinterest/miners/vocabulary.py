"""Motivation vocabularies, and the text space they are compared in.

DeepInterestGR (arXiv 2602.18907) mines each item's purchase motivations with
an LLM. Without one, the embedding miner (:mod:`.embedding`) picks the
phrases of a *vocabulary* that sit closest to an item's text. A vocabulary
comes from one of three places (docs/interests.md):

- the packaged one (``miners/data/motivations.toml``): a few hundred
  motivations grouped by retail domain, all or chosen domains;
- a user file: plain text (one phrase a line, ``#`` comments) or TOML laid
  out like the packaged file (``[domains.<name>] motivations = [...]``);
- one **induced** from another miner's answers: the descriptors of a sample
  of LLM results are clustered by embedding similarity and each cluster's
  most central descriptor is kept, so a few hundred LLM calls can label a
  whole catalogue. :func:`save_vocabulary` writes it as a file to reuse.

:class:`TextSpace` (an encoder and its embedding cache, unit vectors out) is
shared by the miner, the ensemblers and the labelers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..artifacts import atomic_write_text
from ..encoders import build_encoder, embed_texts
from ..encoders.base import MINILM
from ..errors import DataError, DeepInterestError
from ..schemas.interests import normalise
from .base import MineResult
from .schema import MAX_CHARS, Interests

PACKAGED = "packaged"
_PACKAGED_FILE = "motivations.toml"


# ---------------------------------------------------------------- text space


def default_embedding_cache() -> Path:
    """The embedding cache the tokenize stage uses too (docs/tokenizers.md)."""
    from ..paths import embedding_cache

    return embedding_cache()


@functools.lru_cache(maxsize=4)
def _shared_encoder(name: str, kind: str, device: str | None, batch_size: int):
    # One model per process for the miner, ensemblers and labelers alike:
    # loading MiniLM costs about a second, encoding a short phrase far less.
    return build_encoder(name, kind=kind, device=device, batch_size=batch_size, normalize=True)


class TextSpace:
    """Unit-length embeddings of texts through a (cached) encoder.

    ``cache_dir=None`` uses :func:`default_embedding_cache`; ``cache=False``
    embeds without touching the disk.
    """

    def __init__(self, encoder: str = MINILM, *, kind: str = "auto", device: str | None = None,
                 batch_size: int = 64, cache_dir: str | Path | None = None, cache: bool = True,
                 progress: bool = False):
        self.name, self.kind, self.device, self.batch_size = encoder, kind, device, batch_size
        self.cache_dir = (Path(cache_dir) if cache_dir else default_embedding_cache()) \
            if cache else None
        self.progress = progress

    @property
    def encoder(self):
        return _shared_encoder(self.name, self.kind, self.device, self.batch_size)

    @property
    def identity(self) -> str:
        return self.encoder.identity

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [N, D], every row of unit length; ``[0, 0]`` for no texts."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        # embed_texts' batch is texts per encode call and per cache save, not the model's batch.
        vectors = embed_texts(self.encoder, list(texts), cache_dir=self.cache_dir,
                              batch_size=max(self.batch_size, 256), progress=self.progress)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


class EncoderOptions(BaseModel):
    """The encoder fields every embedding-based component takes (a nested ``Options``)."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = MINILM  # any sentence-transformers or Hugging Face encoder (docs/tokenizers.md)
    encoder_kind: str = "auto"
    device: str | None = None
    batch_size: int = Field(64, ge=1)
    cache_dir: str | None = None  # None: the shared embedding cache (default_embedding_cache)
    cache: bool = True  # False: embed without reading or writing the cache


def build_options(options_type: type[BaseModel], given: dict, *, what: str) -> BaseModel:
    """Validate a component's keyword options, as a :class:`DeepInterestError` when wrong."""
    try:
        return options_type(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        accepted = ", ".join(options_type.model_fields)
        raise DeepInterestError(f"{what}: option {where}: {first['msg']}; it accepts: "
                                f"{accepted}") from None


def space_of(options: EncoderOptions) -> TextSpace:
    """The text space named by an ``Options`` model's encoder fields."""
    return TextSpace(options.encoder, kind=options.encoder_kind, device=options.device,
                     batch_size=options.batch_size, cache_dir=options.cache_dir,
                     cache=options.cache)


# ---------------------------------------------------------------- vocabularies


@dataclass(frozen=True)
class Vocabulary:
    """Motivation phrases, each with the domain it was listed under."""

    phrases: tuple[str, ...]
    domains: tuple[str, ...]
    source: str  # where it came from, for records: "packaged", a path, "induced"

    def __post_init__(self):
        if len(self.phrases) != len(self.domains):
            raise ValueError("one domain per phrase")

    def __len__(self) -> int:
        return len(self.phrases)

    @property
    def fingerprint(self) -> str:
        """sha256 of the phrases in order: changes whenever the miner's answers could."""
        text = json.dumps(list(self.phrases), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _from_domains(table: dict[str, list[str]], source: str,
                  chosen: Sequence[str] | None) -> Vocabulary:
    if chosen is not None:
        unknown = sorted(set(chosen) - set(table))
        if unknown:
            raise DeepInterestError(f"vocabulary {source}: no domain(s) {', '.join(unknown)}; "
                                    f"it has: {', '.join(table)}")
        table = {name: table[name] for name in chosen}
    phrases, domains, seen = [], [], set()
    for domain, listed in table.items():
        for phrase in listed:
            phrase = " ".join(str(phrase).split())
            if not phrase or normalise(phrase) in seen:
                continue
            if len(phrase) > MAX_CHARS:
                raise DeepInterestError(f"vocabulary {source}: {phrase!r} is longer than "
                                        f"{MAX_CHARS} characters")
            seen.add(normalise(phrase))
            phrases.append(phrase)
            domains.append(domain)
    if not phrases:
        raise DeepInterestError(f"vocabulary {source} has no phrases")
    return Vocabulary(tuple(phrases), tuple(domains), source)


def _toml_domains(data: dict, source: str) -> dict[str, list[str]]:
    domains = data.get("domains")
    if not isinstance(domains, dict):
        raise DataError(source, "no [domains.<name>] tables",
                        hint="each holds motivations = [\"...\", ...]")
    return {name: list(table.get("motivations", [])) for name, table in domains.items()}


@functools.lru_cache(maxsize=1)
def _packaged_data() -> dict:
    text = (resources.files(__package__) / "data" / _PACKAGED_FILE).read_text(encoding="utf-8")
    return tomllib.loads(text)


def packaged_domains() -> list[str]:
    return list(_packaged_data()["domains"])


def generic_descriptors() -> tuple[str, ...]:
    """Descriptors true of almost any product ("good quality product"), packaged."""
    return tuple(_packaged_data()["generic"])


def load_packaged(domains: Sequence[str] | None = None) -> Vocabulary:
    """The packaged vocabulary, all domains or the chosen ones (:func:`packaged_domains`)."""
    return _from_domains(_toml_domains(_packaged_data(), PACKAGED), PACKAGED, domains)


def load_vocabulary_file(path: str | Path, domains: Sequence[str] | None = None) -> Vocabulary:
    """A ``.toml`` vocabulary (packaged layout) or a text file, one phrase a line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such vocabulary file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DataError(path, f"not valid TOML: {exc}") from None
        return _from_domains(_toml_domains(data, str(path)), str(path), domains)
    if domains is not None:
        raise DeepInterestError(f"vocabulary {path}: a text file has no domains to choose")
    lines = [ln.strip() for ln in text.splitlines()]
    return _from_domains({path.stem: [ln for ln in lines if ln and not ln.startswith("#")]},
                         str(path), None)


def load_vocabulary(source: str | Path = PACKAGED,
                    domains: Sequence[str] | None = None) -> Vocabulary:
    """``"packaged"`` or a file path (:func:`load_vocabulary_file`)."""
    if str(source) == PACKAGED:
        return load_packaged(domains)
    return load_vocabulary_file(source, domains)


def save_vocabulary(vocabulary: Vocabulary, path: str | Path) -> Path:
    """Write ``vocabulary`` as ``.toml`` (domains kept) or, any other suffix, plain text."""
    path = Path(path)
    if path.suffix != ".toml":
        atomic_write_text(path, "".join(p + "\n" for p in vocabulary.phrases))
        return path
    lines = [f"# Vocabulary from {vocabulary.source} (deepinterest, docs/interests.md)",
             "version = 1"]
    for domain in dict.fromkeys(vocabulary.domains):
        listed = [p for p, d in zip(vocabulary.phrases, vocabulary.domains) if d == domain]
        # JSON string escapes are valid TOML basic-string escapes.
        body = "".join(f"  {json.dumps(p, ensure_ascii=False)},\n" for p in listed)
        lines.append(f"\n[domains.{json.dumps(domain)}]\nmotivations = [\n{body}]")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- induced vocabularies


def _descriptor_texts(answers: Iterable[MineResult | Interests]) -> Counter:
    counts: Counter = Counter()
    for answer in answers:
        if isinstance(answer, MineResult):
            answer = answer.answer if answer.ok and answer.task != "judge" else None
        if isinstance(answer, Interests):
            counts.update(" ".join(d.text.split()) for d in answer.descriptors)
    return counts


def spherical_kmeans(x: np.ndarray, k: int, *, weights: np.ndarray | None = None,
                     iterations: int = 25, seed: int = 0) -> np.ndarray:
    """Cluster unit rows of ``x`` into ``k`` groups by cosine; returns each row's cluster.

    k-means++ seeding (a fixed seed, so the same answers give the same
    vocabulary), then Lloyd steps on the unit sphere.
    """
    rng = np.random.default_rng(seed)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    centres = [int(rng.choice(len(x), p=w / w.sum()))]
    closest = 1.0 - x @ x[centres[0]]
    for _ in range(1, k):
        p = np.maximum(closest, 0) * w
        pick = int(rng.choice(len(x), p=p / p.sum())) if p.sum() > 0 else int(np.argmax(closest))
        centres.append(pick)
        closest = np.minimum(closest, 1.0 - x @ x[pick])
    c = x[centres].copy()
    assign = np.full(len(x), -1)
    for _ in range(iterations):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = assign == j
            if members.any():  # an emptied cluster keeps its old centre
                total = (x[members] * w[members, None]).sum(axis=0)
                c[j] = total / max(np.linalg.norm(total), 1e-12)
    return assign


def induce_vocabulary(answers: Iterable[MineResult | Interests], *, size: int = 200,
                      space: TextSpace | None = None, sample: int | None = None,
                      seed: int = 0) -> Vocabulary:
    """A vocabulary of at most ``size`` phrases from other miners' answers (module docstring).

    ``sample`` picks that many answers at random (seeded) first. Descriptors
    are weighted by how often they were given; each cluster contributes its
    member closest to the cluster's mean, and larger clusters come first.
    """
    if size < 1:
        raise DeepInterestError(f"an induced vocabulary needs size >= 1, not {size}")
    answers = list(answers)
    if sample is not None and sample < len(answers):
        answers = random.Random(seed).sample(answers, sample)
    counts = _descriptor_texts(answers)
    if not counts:
        raise DeepInterestError("cannot induce a vocabulary: the answers hold no descriptors")
    texts = sorted(counts, key=lambda t: (-counts[t], t))
    weights = np.array([counts[t] for t in texts], dtype=np.float64)
    x = (space or TextSpace()).embed(texts).astype(np.float64)
    assign = spherical_kmeans(x, min(size, len(texts)), weights=weights, seed=seed)
    picked = []
    for j in np.unique(assign):
        members = np.flatnonzero(assign == j)
        centre = (x[members] * weights[members, None]).sum(axis=0)
        best = members[int(np.argmax(x[members] @ centre))]
        picked.append((-weights[members].sum(), texts[best]))
    phrases = tuple(text for _, text in sorted(picked))
    return Vocabulary(phrases, ("induced",) * len(phrases), "induced")
