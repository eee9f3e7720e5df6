"""An example plugin: a product quantizer and a position-match reward.

Neither class is registered by deepinterest itself; the entry points in this
package's ``pyproject.toml`` make them ``quantizers: pq`` and
``rewards: position-match`` once it is installed, usable from configs
(``[tokenize] quantizer = "pq"``, ``[[train.rl.rewards]] name =
"position-match"``) and from ``deepinterest.create``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from deepinterest.rewards.base import SIDReward
from deepinterest.tokenizers.base import FitReport, code_stats, reconstruction_errors


class ProductQuantizer:
    """Product quantization: the vector is cut into ``levels`` slices, each quantized by its
    own k-means codebook, so the codes are independent rather than residual (unlike
    residual k-means, the first code carries no more of the item than the last)."""

    def __init__(self, levels: int = 3, codebook_size: int = 256, iterations: int = 20):
        self.levels, self.iterations = levels, iterations
        self.codebook_sizes = (codebook_size,) * levels
        self.codebooks: list[torch.Tensor] = []

    def _slices(self, vectors: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.tensor_split(vectors, self.levels, dim=1))

    def fit(self, vectors: torch.Tensor, *, seed: int = 0, progress: bool = False) -> FitReport:
        import time

        start, gen = time.perf_counter(), torch.Generator().manual_seed(seed)
        self.codebooks = [_kmeans(part, self.codebook_sizes[0], self.iterations, gen)
                          for part in self._slices(vectors)]
        mse, relative = reconstruction_errors(vectors, self.decode(self.encode(vectors)))
        stats = code_stats(self.encode(vectors), self.codebook_sizes)
        return FitReport(time.perf_counter() - start, mse, relative, stats.usage,
                         stats.perplexity, iterations=(self.iterations,) * self.levels)

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.cdist(part, book).argmin(1)
                            for part, book in zip(self._slices(vectors), self.codebooks)], 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([book[codes[:, n]] for n, book in enumerate(self.codebooks)], 1)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.codebooks, folder / "codebooks.pt")
        config = {"levels": self.levels, "codebook_size": self.codebook_sizes[0],
                  "iterations": self.iterations}
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> ProductQuantizer:
        folder = Path(folder)
        quantizer = cls(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
        quantizer.codebooks = torch.load(folder / "codebooks.pt")
        return quantizer


def _kmeans(x: torch.Tensor, k: int, iterations: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means from k distinct random rows; an emptied cluster keeps its centre."""
    centres = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=len(centres)).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


class PositionMatchReward(SIDReward):
    """Share of the quantizer levels at which the completion's code equals the target's,
    in [0, 1], suffix excluded: partial credit that, unlike ``prefix``, does not stop at
    the first mismatch (fitting for product-quantized SIDs, whose levels are independent).
    An unreadable completion earns 0."""

    default_name = "position-match"

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        levels = self.index.levels
        targets = self.targets(columns, len(completions))
        out: list[float | None] = []
        for codes, t in zip(self.codes(completions), targets):
            if t is None:
                out.append(None)
            elif codes is None:
                out.append(0.0)
            else:
                want = self.index.sids[t]
                out.append(sum(a == b for a, b in zip(codes[:levels], want[:levels])) / levels)
        return out
