"""Image encoders: image paths in, vectors out (CLIP by default).

The paper fuses a CLIP ViT-L/14 image embedding with the text embedding
through learned linear maps (arXiv 2602.18907). This module is the slot
for the image side: ``CLIPImageEncoder`` loads any Hugging Face CLIP vision
checkpoint by name or path and returns L2-normalised image embeddings.
Images are read from local paths; fetching URLs is left to the caller, so
nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import DeepInterestError

CLIP_L14 = "openai/clip-vit-large-patch14"


@runtime_checkable
class ImageEncoder(Protocol):
    identity: str

    def encode(self, images: list[str | Path]) -> np.ndarray: ...


class CLIPImageEncoder:
    def __init__(self, name: str = CLIP_L14, *, device: str | None = None, batch_size: int = 32,
                 model=None, processor=None):
        self.name, self.batch_size = name, batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.identity = f"clip-image:{name}"
        self._model, self._processor = model, processor

    def _load(self) -> None:
        import transformers  # slow import: only when used
        if self._model is None:
            self._model = transformers.CLIPVisionModelWithProjection.from_pretrained(self.name)
        if self._processor is None:
            self._processor = transformers.CLIPImageProcessor.from_pretrained(self.name)
        self._model = self._model.to(self.device).eval()

    def _open(self, path: str | Path):
        from PIL import Image

        try:
            return Image.open(path).convert("RGB")
        except (OSError, ValueError) as exc:
            raise DeepInterestError(f"{path}: cannot read the image ({exc})") from exc

    @torch.no_grad()
    def encode(self, images: list[str | Path]) -> np.ndarray:
        if self._model is None or self._processor is None:
            self._load()
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = self._processor(images=[self._open(p) for p in
                                             images[start:start + self.batch_size]],
                                     return_tensors="pt")["pixel_values"].to(self.device)
            embeds = self._model(pixel_values=pixels).image_embeds
            out.append(torch.nn.functional.normalize(embeds, dim=-1).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
