"""The image slot of the item embedding (``tokenize.image_weight > 0``).

DeepInterestGR (arXiv 2602.18907) adds a CLIP image embedding to the item's
text embedding through learned linear maps. Here the map is learned in
closed form with an objective of its own, before quantization:

    W = argmin ||X W - Y||^2 + ridge * ||W||^2  =  (X'X + ridge I)^-1 X'Y

where X holds the image vectors and Y the (interest-enhanced) text vectors
of the items that have both. ``X W`` is then an image vector expressed in
the text space, the part of the item's text meaning that its picture
predicts, so items that look alike are drawn together; it is combined with
the text vector as

    v = normalize((1 - w) * text + w * normalize(image W)),  w = tokenize.image_weight

for every item with an image (its first one); items without one keep
their text vector. W is saved in the ``sids`` artifact (``image_map.npy``)
so new items are embedded the same way (cold start) without refitting.

Design decisions:

- A closed-form ridge map rather than a map trained through the quantizer:
  it needs no training loop, works with every registered quantizer, and its
  fit is reported (``stats.json``: ``images.map_relative_error``, the
  squared error of ``X W`` over that of predicting the mean text vector).
- The image encoder is CLIP (:class:`~deepinterest.encoders.image.CLIPImageEncoder`,
  ViT-L/14 by default, any Hugging Face CLIP checkpoint by
  ``tokenize.image_encoder``); images are local paths, never fetched.
- Image vectors are not cached on disk: unlike texts, the files behind a
  path can change, and a catalogue's images are embedded once per fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TokenizeConfig
from ..data.model import Item
from ..encoders.image import ImageEncoder
from ..errors import DeepInterestError

IMAGE_MAP_FILE = "image_map.npy"
IMAGE_FIELDS = ("image_weight", "image_encoder", "image_ridge")


def build_image_encoder(name: str) -> ImageEncoder:
    """The image encoder the tokenize stage uses (a seam for tests and other encoders:
    anything meeting the :class:`~deepinterest.encoders.image.ImageEncoder` contract)."""
    from ..encoders.image import CLIPImageEncoder

    return CLIPImageEncoder(name)


def first_images(items: Sequence[Item]) -> tuple[list[int], list[str]]:
    """Positions of the items that have an image, and each one's first image path."""
    rows = [n for n, item in enumerate(items) if item.images]
    return rows, [items[n].images[0] for n in rows]


def fit_image_map(images: np.ndarray, texts: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """W [image dim, text dim] minimising ||images W - texts||^2 + ridge ||W||^2."""
    x, y = images.astype(np.float64), texts.astype(np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise DeepInterestError(f"an image map needs paired vectors; got {len(x)} images "
                                f"and {len(y)} texts")
    gram = x.T @ x + ridge * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y).astype(np.float32)


def map_relative_error(images: np.ndarray, texts: np.ndarray, weights: np.ndarray) -> float:
    """Squared error of ``images @ weights`` against ``texts``, over that of the mean text."""
    y = texts.astype(np.float64)
    sse = float(((images.astype(np.float64) @ weights - y) ** 2).sum())
    total = float(((y - y.mean(0)) ** 2).sum())
    return sse / total if total > 0 else float("nan")


def fuse_images(vectors: np.ndarray, rows: Sequence[int], images: np.ndarray,
                weights: np.ndarray, weight: float) -> np.ndarray:
    """``vectors`` with each of ``rows`` mixed with its mapped image (module docstring)."""
    out = vectors.astype(np.float32).copy()
    if not len(rows):
        return out
    mapped = images.astype(np.float64) @ weights.astype(np.float64)
    mapped /= np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
    mixed = (1.0 - weight) * out[list(rows)].astype(np.float64) + weight * mapped
    out[list(rows)] = mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    return out


def add_images(cfg: TokenizeConfig, items: Sequence[Item], vectors: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], list[str]]:
    """The fitted stage's vectors with images fused in, the map (None without images),
    ``stats.json``'s ``images`` entry and warnings."""
    rows, paths = first_images(items)
    stats: dict[str, Any] = {"encoder": cfg.image_encoder, "weight": cfg.image_weight,
                             "ridge": cfg.image_ridge, "items_with_images": len(rows)}
    if not rows:
        return vectors, None, stats, [f"image_weight is {cfg.image_weight} but no item has an "
                                      "image: the SIDs come from the text alone"]
    images = np.asarray(build_image_encoder(cfg.image_encoder).encode(paths), dtype=np.float32)
    weights = fit_image_map(images, vectors[rows], cfg.image_ridge)
    stats["map_relative_error"] = round(map_relative_error(images, vectors[rows], weights), 6)
    return fuse_images(vectors, rows, images, weights, cfg.image_weight), weights, stats, []


def encode_new_images(folder: Path, spec: dict[str, Any], items: Sequence[Item],
                      vectors: np.ndarray) -> np.ndarray:
    """Cold start: new items' vectors with their images fused in by the saved map."""
    rows, paths = first_images(items)
    if not rows:
        return vectors
    weights = np.load(folder / IMAGE_MAP_FILE)
    images = np.asarray(build_image_encoder(spec["encoder"]).encode(paths), dtype=np.float32)
    return fuse_images(vectors, rows, images, weights, spec["weight"])
