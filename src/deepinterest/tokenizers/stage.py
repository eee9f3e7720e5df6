"""The tokenize stage: item texts -> embeddings -> codes -> collision-free SIDs.

``di tokenize`` (and ``di run``) call :func:`tokenize_items`, which reads a
dataset artifact, embeds each item's text (through the on-disk embedding
cache, so a rerun embeds only what changed), fits the configured quantizer,
optionally re-balances the last level, appends the suffix code, and writes
the ``sids`` artifact:

| file | content |
|---|---|
| ``sids.jsonl`` | ``{"item": id, "sid": [c1, ..., cL, suffix]}`` in item order |
| ``quantizer/`` | the fitted quantizer (safetensors + config.json) |
| ``tokenizer.json`` | encoder, text fields, quantizer type and interest settings, to reload |
| ``embeddings.npy`` | the item embeddings that were quantized (float32) |
| ``image_map.npy`` | with ``image_weight > 0``: the image-to-text ridge map (:mod:`.images`) |
| (``embeddings.npy``) | with ``collab_weight > 0``: text and collaborative vectors side by side (:mod:`.collab`) |
| ``stats.json`` | collision rate before the suffix, usage, perplexity, errors, seconds; ``interests`` |
| ``code_usage.png`` | code counts per level (when matplotlib is installed) |

With ``tokenize.interests`` set, each item's mined descriptors join its
embedding, as text or by vector fusion (:mod:`.interests`, which records
those design decisions).

:class:`ItemTokenizer` reloads the artifact and gives SIDs to new items
(cold start) without refitting: their codes come from the saved quantizer
and their suffix continues the count of items already holding that tuple.
A new item is embedded as the fitted items were; without descriptors of its
own (none are mined for it yet), from its plain text.

Departure from the paper (DeepInterestGR, arXiv 2602.18907): it appends a suffix
token only where all codes collide; here every SID has the suffix position
(0 for the first item of a tuple), so all SIDs have the same length and a
decoder trie needs no special case. Rewards ignore the suffix either way.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import Stage, StageResult, artifact_fingerprint, check_output, run_stage
from ..config import TokenizeConfig
from ..data.model import Dataset, Item, load_dataset
from ..encoders import build_encoder, embed_texts
from ..errors import DeepInterestError
from ..registry import create
from ..schemas.sids import QUANTIZER_DIR, SIDS_FILE, TOKENIZER_FILE, load_quantizer
from .base import reconstruction_errors
from .collisions import add_suffix, balanced_last_level, collision_stats
from .collab import add_collab, cold_start
from .images import IMAGE_MAP_FILE, add_images, encode_new_images
from .interests import (
    check_interests,
    embed_with_interests,
    interest_stats,
    load_interests,
    select,
    stage_config,
    with_caption,
)

MAX_CODEBOOK = 256  # the paper's size (3 levels x 256 codes, arXiv 2602.18907)


def auto_codebook_size(n_items: int) -> int:
    """256, or for small catalogues the largest power of two <= n_items / 10 (at least 4).

    Ten items per first-level code on average keeps k-means clusters meaningful;
    a 500-item catalogue gets 32 codes per level.
    """
    size = 4
    while size * 2 <= min(MAX_CODEBOOK, n_items // 10):
        size *= 2
    return size


def default_cache_dir() -> Path:
    from ..paths import embedding_cache

    return embedding_cache()


def item_texts(items: list[Item], fields: list[str]) -> list[str]:
    """Each item's embedding text; an item with none of the fields falls back to its id."""
    return [item.text(fields) or item.id for item in items]


def _encoder(cfg: TokenizeConfig) -> Any:
    e = cfg.encoder
    return build_encoder(e.name, kind=e.kind, device=e.device, batch_size=e.batch_size,
                         normalize=e.normalize)


@dataclass(frozen=True)
class SIDResult:
    """Codes before and after the suffix, the fitted quantizer and its figures."""

    sids: torch.Tensor  # [N, levels + 1]
    quantizer: Any
    stats: dict[str, Any]


def fit_sids(vectors: np.ndarray, cfg: TokenizeConfig, *, progress: bool = False,
             split: dict[str, int] | None = None) -> SIDResult:
    """Fit the configured quantizer on ``vectors`` and return unique SIDs with stats;
    ``split`` adds residual k-means' split-level options (interest-first SIDs)."""
    size = cfg.codebook_size if cfg.codebook_size != "auto" else auto_codebook_size(len(vectors))
    quantizer = create("quantizers", cfg.quantizer, levels=cfg.levels, codebook_size=size,
                       **cfg.options, **(split or {}))
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    report = quantizer.fit(x, seed=cfg.seed, progress=progress)
    codes = quantizer.encode(x)
    stats: dict[str, Any] = {}
    if cfg.balanced_last_level:
        codes, stats = _balance(quantizer, x, codes)
    suffixed = add_suffix(codes)
    stats.update(_stats(quantizer, report, suffixed, codes))
    if cfg.balanced_last_level:  # the fit's error no longer describes the moved items' codes
        mse, relative = reconstruction_errors(x, quantizer.decode(codes))
        stats.update(reconstruction_mse=mse, relative_mse=relative,
                     relative_mse_before_balancing=report.relative_mse)
    return SIDResult(suffixed.sids, quantizer, stats)


def _balance(quantizer: Any, x: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, dict]:
    if not hasattr(quantizer, "quantize"):
        raise DeepInterestError(f"{type(quantizer).__name__} cannot balance its last level "
                                "(it has no quantize method); set balanced_last_level = false")
    full = quantizer.quantize(x)
    result = balanced_last_level(full.last_input, quantizer.codebooks[-1], codes)
    return result.codes, {"collision_rate_before_balancing": result.collision_rate_before,
                          "balanced_moved_items": result.moved,
                          "balanced_added_error": result.added_error}


def _stats(quantizer: Any, report: Any, suffixed: Any, codes: torch.Tensor) -> dict[str, Any]:
    unique = len({tuple(row) for row in suffixed.sids.tolist()})
    return {
        "items": int(codes.shape[0]),
        "unique_sids": unique,
        "unique_code_tuples": collision_stats(codes).unique_tuples,
        "collision_rate_before_suffix": suffixed.collision_rate_before_suffix,
        "colliding_groups": suffixed.colliding_groups,
        "max_group_size": suffixed.max_group_size,
        "suffix_size": suffixed.suffix_size,
        "levels": quantizer.levels,
        "codebook_sizes": list(quantizer.codebook_sizes),
        "usage": list(report.usage),
        "perplexity": list(report.perplexity),
        "reconstruction_mse": report.mse,
        "relative_mse": report.relative_mse,
        "fit_seconds": report.seconds,
        "iterations": list(report.iterations),
    }


def _write_outputs(folder: Path, dataset: Dataset, result: SIDResult, vectors: np.ndarray,
                   cfg: TokenizeConfig, fields: list[str],
                   image_map: np.ndarray | None = None) -> None:
    with (folder / SIDS_FILE).open("w", encoding="utf-8") as handle:
        for item, sid in zip(dataset.items, result.sids.tolist()):
            handle.write(json.dumps({"item": item.id, "sid": sid}) + "\n")
    result.quantizer.save(folder / QUANTIZER_DIR)
    np.save(folder / "embeddings.npy", vectors.astype(np.float32))
    # The fields actually embedded (maybe a table's own): cold start embeds the same.
    spec = {"encoder": cfg.encoder.model_dump(), "text_fields": fields,
            "quantizer": cfg.quantizer, "interests": result.stats.get("interests")}
    if image_map is not None:  # what cold start needs to embed a new item's image
        np.save(folder / IMAGE_MAP_FILE, image_map)
        spec["images"] = {"encoder": cfg.image_encoder, "weight": cfg.image_weight}
    if cfg.collab_weight:  # new items get a zero collaborative part (tokenizers/collab.py)
        spec["collab"] = {"weight": cfg.collab_weight, "dim": cfg.collab_dim}
    (folder / TOKENIZER_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    (folder / "stats.json").write_text(json.dumps(result.stats, indent=2) + "\n", encoding="utf-8")
    try:
        from .plot import plot_code_usage

        plot_code_usage(result.sids[:, :-1], tuple(result.quantizer.codebook_sizes),
                        folder / "code_usage.png", title=f"{dataset.name}: {cfg.quantizer}")
    except ImportError:  # plotting is optional (pip extra "plot")
        pass


def tokenize_items(cfg: TokenizeConfig, dataset_dir: str | Path, out: str | Path, *,
                   force: bool = False, progress: bool = True) -> StageResult:
    """Write the ``sids`` artifact for the dataset artifact in ``dataset_dir``.

    With ``cfg.interests`` (an interests artifact of the same dataset), items'
    mined descriptors join their embeddings (:mod:`.interests`); that
    artifact's fingerprint is then an input, so new interests re-tokenize.
    ``force`` rebuilds an up-to-date artifact and lets ``out`` replace a folder
    that is not a ``sids`` artifact (see :func:`~deepinterest.artifacts.check_output`).
    """
    dataset_dir, out = Path(dataset_dir), check_output(out, "tokenize", force=force)
    config = stage_config(cfg)
    inputs = {"dataset": artifact_fingerprint(dataset_dir)}
    if cfg.interests is not None:
        inputs["interests"] = check_interests(cfg.interests, dataset_dir)

    def build(folder: Path) -> dict:
        start = time.perf_counter()
        dataset = load_dataset(dataset_dir)
        fields, texts, warning = _texts_or_warning(dataset, cfg.text_fields, cfg.allow_id_only)
        vectors, extra, notes = _embed(cfg, dataset, texts, dataset_dir, progress)
        if extra.get("interests") and extra["interests"]["fingerprint"] != inputs["interests"]:
            raise DeepInterestError(f"{cfg.interests} changed while it was being read; run "
                                    "the tokenize stage again")
        split = _interest_split(cfg, vectors)
        image_map = None
        if cfg.image_weight:
            vectors, image_map, extra["images"], more = add_images(cfg, dataset.items, vectors)
            notes += more
        if cfg.collab_weight:
            vectors, extra["collab"] = add_collab(cfg, dataset, vectors)
        result = fit_sids(vectors, cfg, progress=progress, split=split)
        result.stats.update(embed_seconds=time.perf_counter() - start,
                            warnings=([warning] if warning else []) + notes, **extra)
        _write_outputs(folder, dataset, result, vectors, cfg, fields, image_map)
        counts = {k: result.stats[k] for k in ("items", "unique_sids",
                                               "collision_rate_before_suffix")}
        if extra.get("interests"):
            counts["items_enhanced"] = extra["interests"]["items_enhanced"]
        return counts

    return run_stage(Stage("tokenize", out, config, inputs, force), build)


def _interest_split(cfg: TokenizeConfig, vectors: np.ndarray) -> dict[str, int] | None:
    """Interest-first SIDs: the first levels assign on the interests half of ``[interests |
    item]`` (two encoder vectors of one width; images and the collaborative slot come later)."""
    if cfg.interests is None or cfg.interest_mode != "first":
        return None
    return {"prefix_dims": vectors.shape[1] // 2, "prefix_levels": cfg.interest_levels}


def _embed(cfg: TokenizeConfig, dataset: Dataset, texts: list[str], dataset_dir: Path,
           progress: bool) -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """The vectors to quantize, the ``interests`` stats entry (if any) and its warnings."""
    cache = cfg.cache_dir or default_cache_dir()
    if cfg.interests is None:
        return embed_texts(_encoder(cfg), texts, cache_dir=cache, progress=progress), {}, []
    source = load_interests(cfg.interests, dataset_dir, [it.id for it in dataset.items])
    picked = select([it.id for it in dataset.items], source, cfg)
    for note in picked.warnings:
        warnings.warn(note, stacklevel=4)
    texts = [with_caption(t, c) for t, c in zip(texts, picked.captions)]
    vectors = embed_with_interests(_encoder(cfg), texts, picked.descriptors,
                                   mode=cfg.interest_mode, weight=cfg.interest_weight,
                                   cache_dir=cache, progress=progress)
    return vectors, {"interests": interest_stats(source, picked, cfg)}, picked.warnings


def text_fields_of(items: Sequence[Item], fields: list[str]) -> tuple[list[str], str | None]:
    """``fields``, or, when no item has any of them, every field the items do have (in
    the table's order) with a note saying so: a table whose text column is ``text``
    still gets meaningful SIDs."""
    if any(item.text(fields) for item in items):
        return fields, None
    found = list(dict.fromkeys(name for item in items for name, v in item.fields.items() if v))
    if not found:
        return fields, None
    return found, (f"no item has any of the text fields {fields}; embedding the item "
                   f"table's fields {found} instead (set tokenize.text_fields to choose)")


def _texts_or_warning(dataset: Dataset, fields: list[str], allow_id_only: bool = False
                      ) -> tuple[list[str], list[str], str | None]:
    """The fields embedded, the item texts, and a warning when items have none of them.

    Such an item is embedded from its id, whose embedding says nothing about
    the item: its SID is arbitrary. When some items have text the run goes on
    (ids are still unique) but says so, in ``stats.json`` and as a Python
    warning; when none has, it is an error unless ``allow_id_only``.
    """
    fields, fallback = text_fields_of(dataset.items, fields)
    texts = item_texts(dataset.items, fields)
    bare = sum(1 for text, item in zip(texts, dataset.items) if text == item.id
               and not item.text(fields))
    if not bare:
        if fallback:
            warnings.warn(fallback, stacklevel=3)
        return fields, texts, fallback
    if bare == len(texts) and not allow_id_only:
        raise DeepInterestError(
            f"no item has any text (fields {fields}, nor any other field): semantic IDs from "
            "item ids carry no meaning. Add item texts (an .item or meta file), or set "
            "tokenize.allow_id_only = true (di tokenize --allow-id-only) to go on anyway")
    which = ("no item has any" if bare == len(texts)
             else f"{bare} of {len(texts)} items have none")
    warning = (f"{which} of the text fields {fields}: such items are embedded from their "
               "ids, so their semantic IDs carry no meaning; add item texts (an .item or meta "
               "file) or set tokenize.text_fields")
    warnings.warn(warning, stacklevel=3)
    return fields, texts, warning


class ItemTokenizer:
    """A fitted ``sids`` artifact, reloaded: SID lookup and cold-start encoding."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / TOKENIZER_FILE).is_file():
            raise DeepInterestError(f"{folder}: no {TOKENIZER_FILE}; is this a `di tokenize` "
                                    "output folder?")
        self.folder = folder
        self.spec = json.loads((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
        self.quantizer = load_quantizer(folder)
        rows = [json.loads(line) for line in (folder / SIDS_FILE).open(encoding="utf-8")]
        self.sids = {row["item"]: tuple(row["sid"]) for row in rows}
        self._taken = Counter(sid[:-1] for sid in self.sids.values())
        self._encoder = None

    def encode_vectors(self, vectors: np.ndarray) -> torch.Tensor:
        """SIDs for new items' embeddings; suffixes continue after existing holders."""
        codes = self.quantizer.encode(torch.from_numpy(np.asarray(vectors, dtype=np.float32)))
        taken = self._taken.copy()
        rows = []
        for row in codes.tolist():
            rows.append(row + [taken[tuple(row)]])
            taken[tuple(row)] += 1
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), codes.shape[1] + 1)

    def encode_items(self, items: list[Item], *, progress: bool = False,
                     interests: Mapping[str, Sequence[str]] | None = None) -> torch.Tensor:
        """Embed new items as the fitted items were and give them SIDs.

        ``interests`` maps item ids to descriptor texts in order (already
        filtered by label; the fitted ``max_interests`` applies), for a
        tokenizer fitted with interests. An item without an entry is
        embedded from its plain text, as the fitted items without interests were.
        """
        if self._encoder is None:
            from ..config import EncoderConfig, TokenizeConfig

            enc = TokenizeConfig(encoder=EncoderConfig(**self.spec["encoder"]))
            self._encoder = _encoder(enc)
        texts = item_texts(items, self.spec["text_fields"])
        fitted = self.spec.get("interests")
        if not fitted:
            if interests:
                raise DeepInterestError("this tokenizer was fitted without interests; "
                                        "encode its new items without them")
            vectors = embed_texts(self._encoder, texts, progress=progress)
        else:
            limit = fitted.get("max_interests")
            chosen = [list((interests or {}).get(it.id, ()))[:limit] for it in items]
            vectors = embed_with_interests(self._encoder, texts, chosen, mode=fitted["mode"],
                                           weight=fitted["weight"] or 0.0, cache_dir=None,
                                           progress=progress)
        if self.spec.get("images"):  # fitted with images: the saved map places new ones
            vectors = encode_new_images(self.folder, self.spec["images"], items, vectors)
        if self.spec.get("collab"):
            vectors = cold_start(vectors, self.spec["collab"])
        return self.encode_vectors(vectors)
