"""Interest-enhanced item embeddings for the tokenize stage (``tokenize.interests``).

DeepInterestGR (arXiv 2602.18907) quantizes items whose encoder input is the
item's text followed by its mined deep interests: "title, description,
caption, then the descriptors in order". With ``tokenize.interests`` set to
an ``interests`` artifact (``di mine``), the tokenize stage reads each item's
ensembled, labelled descriptors from its ``items.jsonl`` and builds the
vector that is quantized in one of two ways:

- ``text`` (the paper's): one text per item, ``"<item text>; interests: d1;
  d2; d3"``, embedded as a whole.
- ``fusion``: the item text and the descriptors (``"d1; d2; d3"``) are
  embedded apart and combined as ``normalize((1 - w) * item + w * interests)``
  with the fixed weight ``w = tokenize.interest_weight``. It keeps the item's
  own meaning from being drowned by a long list of descriptors and lets the
  weight be swept without re-embedding anything (both parts stay cached).
- ``first``: the two vectors side by side, ``[interests | item]``, and the
  residual k-means splits its levels (``rkmeans.py``): the first
  ``tokenize.interest_levels`` codes quantize the interests alone, the rest
  the item text within that interest cluster. A SID prefix then names an
  interest, which is what the prefix reward pays for.

Design decisions:

- Which descriptors: those of the artifact, in its order (the ensembler's
  ranking), filtered by reward label (``interest_labels = "positive"``
  keeps label 1 only; a descriptor whose labeler gave no label is not
  positive) and then cut to the first ``max_interests``.
- An item without usable descriptors, or missing from ``items.jsonl``
  (mined with ``limit`` or as one shard), keeps its plain text and plain
  vector; the stage counts both kinds in ``stats.json``. A caption recorded
  by the mine stage's captioner joins the item text in either mode, after
  the text fields, as the paper orders it.
- Only an artifact of the ``mine`` stage mined from the very dataset
  artifact being tokenized is accepted (its manifest's ``stage`` and
  ``inputs.dataset``), so a catalogue's SIDs never carry another
  catalogue's interests.
- The artifact's manifest fingerprint joins the stage's inputs; its path
  does not join the stage's config (moving the folder changes nothing).
  Without interests the new settings stay out of the config too, so plain
  SIDs keep the fingerprint they had before the option existed.
- Cold start: :class:`~deepinterest.tokenizers.stage.ItemTokenizer` embeds a
  new item the same way; given no descriptors for it, with its plain text.

The paper fuses a CLIP image vector through learned linear maps; that slot
is :mod:`.images` (a ridge map into the text space, applied after the
interests). The interests' fusion weight stays a fixed setting: learning it
would need an objective through the quantizer (e.g. the RQ-VAE's
reconstruction loss), and a sweep over it costs no re-embedding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import MANIFEST, artifact_fingerprint, read_manifest
from ..config import TokenizeConfig
from ..encoders import embed_texts
from ..errors import DeepInterestError
from ..schemas.interests import ITEMS_FILE, MINE_STAGE, read_rows

# The config value that means "the interests artifact of this run" (resolved by
# `di run` to <workdir>/interests, by `di tokenize` to the dataset's sibling folder).
RUN_INTERESTS = "mine"
# The mine stage's manifest name and file, spelled here: stages meet only on disk.
INTEREST_FIELDS = ("interest_mode", "interest_labels", "interest_weight", "interest_levels",
                   "max_interests")


def resolve_interests(value: str | None, run_interests: Path) -> str | None:
    """``value`` with :data:`RUN_INTERESTS` replaced by the run's ``run_interests`` folder."""
    return str(run_interests) if value == RUN_INTERESTS else value


def stage_config(cfg: TokenizeConfig) -> dict[str, Any]:
    """The tokenize settings that decide the SIDs (the manifest's ``config``).

    The cache folder and the interests path are left out (the artifact's
    fingerprint is an input instead); without interests, so are the interest
    settings, the fusion weight outside fusion mode and the interest levels outside
    first mode; so are the image settings
    when ``image_weight`` is 0, and the collaborative ones when
    ``collab_weight`` is 0.
    """
    from .collab import COLLAB_FIELDS
    from .images import IMAGE_FIELDS

    # decides no SID of this artifact (the second view is an artifact of its own)
    exclude = {"cache_dir", "interests", "allow_id_only", "second"}
    if not cfg.image_weight:  # text-only SIDs keep the fingerprint they had before images
        exclude.update(IMAGE_FIELDS)
    if not cfg.collab_weight:  # nor without the collaborative slot
        exclude.update(COLLAB_FIELDS)
    if cfg.interests is None:
        exclude.update(INTEREST_FIELDS)
    elif cfg.interest_mode != "fusion":
        exclude.add("interest_weight")
    if cfg.interest_mode != "first":  # SIDs of the other modes keep their fingerprints
        exclude.add("interest_levels")
    return cfg.model_dump(mode="json", exclude=exclude)


@dataclass(frozen=True)
class InterestSource:
    """A checked interests artifact: its rows by item id, and its fingerprint."""

    path: Path
    fingerprint: str
    rows: dict[str, dict[str, Any]]


def check_interests(folder: str | Path, dataset_dir: str | Path) -> str:
    """The fingerprint of ``folder`` after checking it is an interests artifact of the
    dataset artifact ``dataset_dir``; a DeepInterestError naming the file otherwise."""
    if isinstance(folder, str) and folder == RUN_INTERESTS:
        raise DeepInterestError(
            f"tokenize.interests = {RUN_INTERESTS!r} means the interests artifact of a run; "
            "`di run` and `di tokenize` resolve it, tokenize_items needs a folder")
    folder = Path(folder)
    if not folder.is_dir():
        raise DeepInterestError(f"{folder}: interests folder not found; write it with "
                                f"`di mine {dataset_dir} --out {folder}`")
    try:
        manifest = read_manifest(folder)
    except FileNotFoundError:
        raise DeepInterestError(f"{folder / MANIFEST}: not found; is {folder} a finished "
                                "`di mine` artifact?") from None
    except json.JSONDecodeError as exc:
        raise DeepInterestError(f"{folder / MANIFEST}: not valid JSON ({exc})") from None
    if manifest.get("stage") != MINE_STAGE:
        raise DeepInterestError(
            f"{folder / MANIFEST}: a {manifest.get('stage')!r} artifact, not an interests "
            "artifact (stage 'mine'); point tokenize.interests at the output of `di mine`")
    mined_from = (manifest.get("inputs") or {}).get("dataset")
    expected = artifact_fingerprint(dataset_dir)
    if mined_from != expected:
        raise DeepInterestError(
            f"{folder / MANIFEST}: mined from another dataset artifact "
            f"({str(mined_from)[:12]}) than {dataset_dir} ({expected[:12]}); mine this "
            f"dataset with `di mine {dataset_dir} --out DIR` and use that folder")
    if not (folder / ITEMS_FILE).is_file():
        raise DeepInterestError(f"{folder / ITEMS_FILE}: not found; the interests artifact "
                                "is incomplete, mine it again")
    return manifest["fingerprint"]


def load_interests(folder: str | Path, dataset_dir: str | Path,
                   item_ids: Sequence[str]) -> InterestSource:
    """The checked artifact's ``items.jsonl`` rows by item id (see :func:`check_interests`)."""
    fingerprint = check_interests(folder, dataset_dir)
    path = Path(folder) / ITEMS_FILE
    known = set(item_ids)

    def in_dataset(row: dict[str, Any]) -> str | None:
        return None if row["item"] in known else \
            f"item {row['item']!r} is not in the dataset; mine the dataset again"

    rows = {row["item"]: row for row in read_rows(path, "item", in_dataset)}
    return InterestSource(Path(folder), fingerprint, rows)


def select_descriptors(records: Sequence[Mapping[str, Any]], *, labels: str,
                       limit: int | None) -> list[str]:
    """Descriptor texts in order: positives only for ``labels="positive"``, at most ``limit``."""
    kept = [r["text"] for r in records if labels == "all" or r.get("label") == 1]
    return kept if limit is None else kept[:limit]


@dataclass
class Selection:
    """What the stage takes from an interests artifact, item by item, and its counts."""

    captions: list[str | None]
    descriptors: list[list[str]]
    missing: int = 0  # items without a row in items.jsonl
    dropped_by_label: int = 0
    dropped_by_limit: int = 0
    warnings: list[str] = field(default_factory=list)


def select(item_ids: Sequence[str], source: InterestSource, cfg: TokenizeConfig) -> Selection:
    """Each item's caption and chosen descriptors under ``cfg``'s labels and limit."""
    picked = Selection([], [])
    for item in item_ids:
        row = source.rows.get(item)
        if row is None:
            picked.missing += 1
            picked.captions.append(None)
            picked.descriptors.append([])
            continue
        records = row.get("descriptors") or []
        labelled = select_descriptors(records, labels=cfg.interest_labels, limit=None)
        chosen = labelled[:cfg.max_interests] if cfg.max_interests else labelled
        picked.dropped_by_label += len(records) - len(labelled)
        picked.dropped_by_limit += len(labelled) - len(chosen)
        picked.captions.append(row.get("caption") or None)
        picked.descriptors.append(chosen)
    if picked.missing:
        picked.warnings.append(
            f"{picked.missing} of {len(item_ids)} items have no row in {source.path / ITEMS_FILE} "
            "(mined with a limit or as one shard?); they keep their plain text")
    if not any(picked.descriptors):
        picked.warnings.append(f"no item has usable descriptors in {source.path} "
                               f"(interest_labels = {cfg.interest_labels!r}): the SIDs are plain")
    return picked


def with_caption(text: str, caption: str | None) -> str:
    """The item text, followed by its image caption when there is one (the paper's order)."""
    return f"{text}; {caption}" if caption else text


def interest_text(text: str, descriptors: Sequence[str]) -> str:
    """Text mode: ``"<text>; interests: d1; d2"``, or ``text`` itself without descriptors."""
    return f"{text}; interests: {'; '.join(descriptors)}" if descriptors else text


def fuse(item: np.ndarray, interests: np.ndarray, weight: float) -> np.ndarray:
    """``normalize((1 - weight) * item + weight * interests)``, row by row."""
    mixed = (1.0 - weight) * item.astype(np.float64) + weight * interests.astype(np.float64)
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    return (mixed / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_with_interests(encoder, texts: Sequence[str], descriptors: Sequence[Sequence[str]], *,
                         mode: str, weight: float, cache_dir: str | Path | None,
                         progress: bool = False) -> np.ndarray:
    """The vectors to quantize: ``texts`` (item texts, captions included) enhanced with each
    item's ``descriptors`` in ``mode``; an item without descriptors gets its plain vector."""
    if mode == "text":
        full = [interest_text(t, d) for t, d in zip(texts, descriptors)]
        return embed_texts(encoder, full, cache_dir=cache_dir, progress=progress)
    enhanced = [i for i, d in enumerate(descriptors) if d]
    joined = ["; ".join(descriptors[i]) for i in enhanced]
    vectors = embed_texts(encoder, [*texts, *joined], cache_dir=cache_dir, progress=progress)
    out = vectors[:len(texts)].copy()
    if mode == "first":  # [interests | item]; without descriptors the item stands for both
        head = out.copy()
        head[enhanced] = vectors[len(texts):]
        return np.concatenate([head, out], axis=1)
    if enhanced:
        out[enhanced] = fuse(out[enhanced], vectors[len(texts):], weight)
    return out


def interest_stats(source: InterestSource, picked: Selection,
                   cfg: TokenizeConfig) -> dict[str, Any]:
    """``stats.json``'s ``interests`` entry: which artifact, how, and how much it gave."""
    counts = [len(d) for d in picked.descriptors]
    enhanced = sum(1 for n in counts if n)
    total = sum(counts)
    return {
        "path": str(source.path),
        "fingerprint": source.fingerprint,
        "mode": cfg.interest_mode,
        "labels": cfg.interest_labels,
        "weight": cfg.interest_weight if cfg.interest_mode == "fusion" else None,
        "levels": cfg.interest_levels if cfg.interest_mode == "first" else None,
        "max_interests": cfg.max_interests,
        "items_enhanced": enhanced,
        "items_without_interests": len(counts) - enhanced,
        "items_missing": picked.missing,
        "captions_used": sum(1 for c in picked.captions if c),
        "descriptors_used": total,
        "descriptors_per_item": round(total / len(counts), 4) if counts else 0.0,
        "descriptors_per_enhanced_item": round(total / enhanced, 4) if enhanced else 0.0,
        "descriptors_dropped_by_label": picked.dropped_by_label,
        "descriptors_dropped_by_limit": picked.dropped_by_limit,
    }
