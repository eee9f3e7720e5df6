"""Residual k-means: a stack of single-level k-means quantizers on residuals.

    rk = ResidualKMeans(levels=3, codebook_size=256)
    report = rk.fit(vectors, seed=0)
    codes = rk.encode(vectors)          # [N, 3]
    approx = rk.decode(codes)           # sum of the selected codewords

Level 1 clusters the vectors, level 2 clusters what level 1 left over
(vector minus its centroid), and so on (MiniOneRec's faiss residual k-means,
GRID's RK-means). Design decisions:

- A composition of :class:`~deepinterest.tokenizers.kmeans.KMeans`, one per
  level, as vector-quantize-pytorch composes its residual VQ; each level may
  have its own codebook size.
- The residual recursion ``residual = residual - codeword`` and the running
  sum ``quantized = quantized + codeword`` are computed by one function,
  :func:`_quantize_levels`, for fitting and for encoding, so
  ``decode(encode(x))`` is bit-identical to the quantized output the fit
  measured its error on (the fit's last Lloyd step assigns with the final
  centroids, so its codes are the ones ``encode`` returns).
- Level ``l`` is seeded with ``seed * 1_000_003 + l``: levels draw from
  independent streams, and the same seed gives the same init whatever the
  codebook sizes of other levels (see the prefix-consistent init in
  ``kmeans.py``).
- No centring or normalisation: level 1's centroids absorb the mean, and the
  embeddings' own geometry (usually unit-norm sentence embeddings) is kept.
- **Split levels** (``prefix_dims``, ``prefix_levels``): the first
  ``prefix_levels`` levels assign on the first ``prefix_dims`` dimensions
  only and the later levels on the rest. A split level's codeword keeps, in
  the dimensions it did not assign on, the mean residual of its cluster
  (after the first level: the mean item-text vector of the items sharing an
  interest code), so the later levels quantize what is left of the text
  within that cluster; a later level's codeword is zero in the prefix. This
  is ``tokenize.interest_mode = "first"``: a SID's first code names the
  interest, the rest the item. Assignment on a slice adds, for each item,
  the same constant to every codeword's full distance, so the balanced last
  level (``collisions.py``) moves the same items as on the slice alone.
- ``fit`` runs on the vectors' device; ``encode``/``decode`` move the
  codebooks to the input's device, so a quantizer fitted on GPU encodes CPU
  tensors after ``load`` (cold start of new items) and vice versa.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from ..progress import bar as tqdm

from ..errors import DeepInterestError
from .base import (
    FitReport,
    Quantized,
    as_codes,
    as_vectors,
    code_stats,
    load_quantizer,
    reconstruction_errors,
    save_quantizer,
)
from .kernels import nearest_codeword
from .kmeans import KMeans, KMeansResult

KIND = "rkmeans"


def _quantize_levels(vectors: torch.Tensor, codebooks: list[torch.Tensor],
                     dims: list[slice] | None = None) -> Quantized:
    """Greedy residual quantization of ``vectors`` through ``codebooks`` (the encode path);
    level ``l`` assigns on the dimensions ``dims[l]`` (all of them without ``dims``)."""
    residual = vectors
    quantized = torch.zeros_like(vectors)
    codes = []
    for level, codebook in enumerate(codebooks):
        last_input = residual
        on = slice(None) if dims is None else dims[level]
        index = nearest_codeword(residual[:, on].contiguous(), codebook[:, on].contiguous()).indices
        residual, quantized = _step(residual, quantized, codebook, index)
        codes.append(index)
    return Quantized(torch.stack(codes, dim=1), quantized, last_input)


def _step(
    residual: torch.Tensor, quantized: torch.Tensor, codebook: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level: subtract the selected codewords from the residual, add them to the sum."""
    codewords = codebook[index]
    return residual - codewords, quantized + codewords


def _full_codewords(residual: torch.Tensor, result: KMeansResult, on: slice,
                    keep_rest: bool) -> torch.Tensor:
    """A split level's codewords [K, D]: its centroids on ``on``; elsewhere each cluster's
    mean residual (``keep_rest``) or zero."""
    k = result.centroids.shape[0]
    full = torch.zeros(k, residual.shape[1], dtype=residual.dtype, device=residual.device)
    if keep_rest:
        counts = torch.bincount(result.assignments, minlength=k).clamp(min=1).unsqueeze(1)
        full.index_add_(0, result.assignments, residual)
        full /= counts.to(residual.dtype)
    full[:, on] = result.centroids
    return full


class ResidualKMeans:
    """Residual k-means quantizer (keyword-only configuration).

    ``levels`` and ``codebook_size`` give ``levels`` codebooks of one size;
    ``codebook_sizes`` (a sequence, overrides both) gives each level its own.
    ``max_iter``, ``tol``, ``backend`` and ``init_sample`` configure each
    level's :class:`~deepinterest.tokenizers.kmeans.KMeans`. ``prefix_dims``
    and ``prefix_levels`` split the levels (module docstring).
    """

    def __init__(
        self,
        *,
        levels: int = 3,
        codebook_size: int = 256,
        codebook_sizes: tuple[int, ...] | list[int] | None = None,
        max_iter: int = 25,
        tol: float = 5e-4,
        backend: str = "auto",
        init_sample: int | None = 4096,
        prefix_dims: int | None = None,
        prefix_levels: int = 1,
    ):
        sizes = (codebook_size,) * levels if codebook_sizes is None else tuple(codebook_sizes)
        sizes = tuple(int(s) for s in sizes)
        if not sizes:
            raise DeepInterestError("residual k-means needs at least one level")
        self.codebook_sizes = sizes
        self.levels = len(sizes)
        self.options = {
            "max_iter": max_iter, "tol": tol, "backend": backend, "init_sample": init_sample
        }
        self.quantizers = [KMeans(codebook_size=size, **self.options) for size in sizes]
        if prefix_dims is not None and not (prefix_dims >= 1 and 1 <= prefix_levels < len(sizes)):
            raise DeepInterestError(
                f"split levels need prefix_dims >= 1 and 1 <= prefix_levels < levels "
                f"({len(sizes)}); got prefix_dims={prefix_dims}, prefix_levels={prefix_levels}")
        self.prefix_dims, self.prefix_levels = prefix_dims, prefix_levels

    def _dims(self, width: int) -> list[slice] | None:
        """The dimensions each level assigns on (None: all, the plain stack)."""
        if self.prefix_dims is None:
            return None
        if self.prefix_dims >= width:
            raise DeepInterestError(f"prefix_dims = {self.prefix_dims} leaves no dimension of "
                                    f"the {width}-dimensional vectors to the later levels")
        head, rest = slice(0, self.prefix_dims), slice(self.prefix_dims, None)
        return [head if level < self.prefix_levels else rest for level in range(self.levels)]

    @property
    def codebooks(self) -> list[torch.Tensor]:
        """The fitted codebooks, one [K_l, D] tensor per level."""
        if any(q.centroids is None for q in self.quantizers):
            raise DeepInterestError(
                "ResidualKMeans is not fitted: call fit(vectors) or load(folder) first"
            )
        return [q.centroids for q in self.quantizers]

    def config(self) -> dict:
        """Constructor arguments (saved with the codebooks)."""
        split = ({} if self.prefix_dims is None else
                 {"prefix_dims": self.prefix_dims, "prefix_levels": self.prefix_levels})
        return {"codebook_sizes": list(self.codebook_sizes), **self.options, **split}

    def fit(self, vectors: torch.Tensor, *, seed: int = 0, progress: bool = False) -> FitReport:
        """Fit every level on the residuals of the levels before it."""
        vectors = as_vectors(vectors)
        start = time.perf_counter()
        residual, quantized = vectors, torch.zeros_like(vectors)
        results: list[KMeansResult] = []
        dims = self._dims(vectors.shape[1])
        bar = tqdm(self.quantizers, desc="residual k-means", unit="level", disable=not progress)
        for level, quantizer in enumerate(bar):
            on = slice(None) if dims is None else dims[level]
            result = quantizer.train(residual[:, on].contiguous(), seed=seed * 1_000_003 + level)
            if dims is not None:  # codewords of full width (module docstring)
                quantizer.centroids = _full_codewords(residual, result, on,
                                                      keep_rest=level < self.prefix_levels)
            residual, quantized = _step(residual, quantized, quantizer.centroids,
                                        result.assignments)
            results.append(result)
            bar.set_postfix(iters=result.iterations, inertia=f"{result.inertia:.4g}")
        seconds = time.perf_counter() - start
        return self._report(vectors, quantized, results, seconds)

    def _report(
        self,
        vectors: torch.Tensor,
        quantized: torch.Tensor,
        results: list[KMeansResult],
        seconds: float,
    ) -> FitReport:
        mse, relative = reconstruction_errors(vectors, quantized)
        codes = torch.stack([r.assignments for r in results], dim=1)
        stats = code_stats(codes, self.codebook_sizes)
        return FitReport(
            seconds=seconds,
            mse=mse,
            relative_mse=relative,
            usage=stats.usage,
            perplexity=stats.perplexity,
            iterations=tuple(r.iterations for r in results),
            repaired=tuple(r.repaired for r in results),
        )

    def quantize(self, vectors: torch.Tensor) -> Quantized:
        """Codes, their decoded sum and the last level's input, in one pass."""
        vectors = as_vectors(vectors)
        return _quantize_levels(vectors, [c.to(vectors.device) for c in self.codebooks],
                                self._dims(vectors.shape[1]))

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """int64 codes [N, levels]: nearest codeword of each level's residual."""
        return self.quantize(vectors).codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the selected codewords; ``codes`` may hold only the first l levels (a prefix)."""
        codes = as_codes(codes, self.codebook_sizes)
        books = self.codebooks
        quantized = torch.zeros(codes.shape[0], books[0].shape[1], device=codes.device)
        for level in range(codes.shape[1]):
            quantized = quantized + books[level].to(codes.device)[codes[:, level]]
        return quantized

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` and the codebooks (``codebook.<level>``) as safetensors."""
        tensors = {f"codebook.{level}": book for level, book in enumerate(self.codebooks)}
        save_quantizer(folder, kind=KIND, config=self.config(), tensors=tensors)

    @classmethod
    def load(cls, folder: str | Path) -> ResidualKMeans:
        """A fitted quantizer from :meth:`save`'s folder, ready to encode new items."""
        config, tensors = load_quantizer(folder, kind=KIND)
        quantizer = cls(**config)
        for level, kmeans in enumerate(quantizer.quantizers):
            kmeans.centroids = tensors[f"codebook.{level}"]
        return quantizer

    def __repr__(self) -> str:
        backend = self.options["backend"]
        return f"ResidualKMeans(codebook_sizes={self.codebook_sizes}, backend={backend!r})"
