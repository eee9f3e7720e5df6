"""Any Hugging Face encoder by name or path, with attention-masked mean pooling."""

from __future__ import annotations

import numpy as np
import torch


class MeanPoolEncoder:
    def __init__(self, name: str, *, device: str | None = None, batch_size: int = 64,
                 normalize: bool = True, max_length: int = 256):
        self.name, self.batch_size, self.normalize = name, batch_size, normalize
        self.max_length = max_length
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.identity = f"hf-mean:{name}:norm={normalize}:len={max_length}"
        self._model = self._tokenizer = None

    def _load(self) -> None:
        import transformers  # slow import: only when used

        self._tokenizer = transformers.AutoTokenizer.from_pretrained(self.name)
        self._model = transformers.AutoModel.from_pretrained(self.name).to(self.device).eval()

    @torch.no_grad()
    def _batch(self, texts: list[str]) -> torch.Tensor:
        batch = self._tokenizer(texts, padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu()

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._load()
        chunks = [self._batch(texts[i:i + self.batch_size])
                  for i in range(0, len(texts), self.batch_size)]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)
