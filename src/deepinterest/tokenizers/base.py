"""The quantizer contract and its result types (docs/tokenizers.md).

A quantizer turns item vectors into a short tuple of integer codes, the
item's semantic ID (SID) before the collision suffix:

    q = ResidualKMeans(levels=3, codebook_size=256)
    report = q.fit(vectors, seed=0)     # FitReport: seconds, MSE, usage, ...
    codes = q.encode(vectors)           # int64 [N, levels], deterministic
    approx = q.decode(codes)            # float32 [N, D]
    q.save(folder); q2 = ResidualKMeans.load(folder)   # cold start: encode new items

Design decisions:

- The contract is a ``Protocol`` (structural), so a plugin quantizer in another
  package needs no import of ours to satisfy it. ``fit`` is the one method a
  trainer calls; ``encode``/``decode``/``save``/``load`` are what the
  tokenize stage and serving need (faiss's ``train / compute_codes / decode``).
- Optional abilities are attributes: a quantizer that can hand out the input
  of its last level (for balanced assignment, see ``collisions.py``) has a
  ``quantize`` method returning :class:`Quantized`.
- Errors are reported with :func:`reconstruction_errors`: ``mse`` is the mean
  over all elements (``torch.nn.functional.mse_loss``), ``relative_mse`` is
  the summed squared error over the summed squared norm of the *centred*
  data, so 1.0 means "no better than predicting the mean vector" whatever
  the scale of the embeddings. This is the figure docs/results.md reports.
- Saved quantizers are a ``config.json`` (type, format version, constructor
  arguments) and one safetensors file of tensors; both are written to a
  temporary name and renamed, so an interrupted save never leaves a
  half-written file under the final name.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..artifacts import atomic_write_text
from ..errors import DeepInterestError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "tensors.safetensors"


@dataclass(frozen=True)
class CodeStats:
    """Per level: ``used`` codes, ``usage`` = used / size, ``perplexity`` = exp(entropy)."""

    used: tuple[int, ...]
    usage: tuple[float, ...]
    perplexity: tuple[float, ...]


@dataclass
class FitReport:
    """What a fit cost and achieved, on the vectors it was fitted on.

    ``iterations`` is Lloyd iterations per level (k-means) or epochs run
    (RQ-VAE, one entry); ``repaired`` is empty clusters re-seeded per level
    (k-means) or dead codes restarted per level (RQ-VAE); ``history`` holds one
    dict per epoch for trained models and is empty for k-means.
    """

    seconds: float
    mse: float
    relative_mse: float
    usage: tuple[float, ...]
    perplexity: tuple[float, ...]
    iterations: tuple[int, ...] = ()
    repaired: tuple[int, ...] = ()
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Quantized:
    """Full quantization of a batch.

    ``codes`` int64 [N, levels]; ``quantized`` = ``decode(codes)``; ``last_input``
    is what the last level quantized (the residual before it, in the space the
    codebooks live in), for :func:`deepinterest.tokenizers.collisions.balanced_last_level`.
    """

    codes: torch.Tensor
    quantized: torch.Tensor
    last_input: torch.Tensor


@runtime_checkable
class Quantizer(Protocol):
    """Vectors [N, D] in, codes [N, levels] out (docs/tokenizers.md, Quantizers)."""

    levels: int
    codebook_sizes: tuple[int, ...]

    def fit(self, vectors: torch.Tensor, *, seed: int = 0, progress: bool = False) -> FitReport: ...

    def encode(self, vectors: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    def save(self, folder: str | Path) -> None: ...

    @classmethod
    def load(cls, folder: str | Path) -> Quantizer: ...


def as_vectors(vectors: Any, *, what: str = "vectors") -> torch.Tensor:
    """``vectors`` as a float32 [N, D] tensor (NumPy accepted); clear errors for bad input."""
    if isinstance(vectors, np.ndarray):
        vectors = torch.from_numpy(vectors)
    if not isinstance(vectors, torch.Tensor):
        raise DeepInterestError(
            f"{what} must be a torch.Tensor or numpy array, got {type(vectors).__name__}"
        )
    if vectors.dim() != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise DeepInterestError(
            f"{what} must be a non-empty [N, D] matrix, got shape {tuple(vectors.shape)}"
        )
    if not vectors.is_floating_point():
        raise DeepInterestError(f"{what} must be floating point, got {vectors.dtype}")
    vectors = vectors.to(torch.float32)
    if not bool(torch.isfinite(vectors).all()):
        row = int((~torch.isfinite(vectors)).any(dim=1).nonzero()[0])
        raise DeepInterestError(
            f"{what} contain NaN or inf (first at row {row}); check the embedding step"
        )
    return vectors


def as_codes(codes: Any, codebook_sizes: tuple[int, ...]) -> torch.Tensor:
    """``codes`` as int64 [N, l] with l <= levels and every code inside its codebook."""
    codes = torch.as_tensor(codes)
    if codes.dim() != 2 or codes.shape[1] == 0 or codes.shape[1] > len(codebook_sizes):
        raise DeepInterestError(
            f"codes must be [N, l] with 1 <= l <= {len(codebook_sizes)} levels, "
            f"got shape {tuple(codes.shape)}"
        )
    codes = codes.long()
    if codes.numel():
        sizes = torch.tensor(codebook_sizes[: codes.shape[1]], device=codes.device)
        bad = (codes < 0) | (codes >= sizes)
        if bool(bad.any()):
            row, level = (int(v) for v in bad.nonzero()[0])
            raise DeepInterestError(
                f"code {int(codes[row, level])} at row {row}, level {level} is outside codebook "
                f"size {codebook_sizes[level]}; were these codes made by another quantizer?"
            )
    return codes


def code_stats(codes: torch.Tensor, codebook_sizes: tuple[int, ...] | list[int]) -> CodeStats:
    """Per-level usage (fraction of the codebook used) and perplexity (exp of code entropy).

    Perplexity equals the codebook size when codes are used uniformly and 1
    when every item gets the same code.
    """
    codes = torch.as_tensor(codes).long().cpu()
    used, usage, perplexity = [], [], []
    for level, size in enumerate(codebook_sizes):
        counts = torch.bincount(codes[:, level], minlength=size).double()
        p = counts[counts > 0] / counts.sum()
        used.append(int((counts > 0).sum()))
        usage.append(used[-1] / size)
        perplexity.append(float(torch.exp(-(p * p.log()).sum())))
    return CodeStats(tuple(used), tuple(usage), tuple(perplexity))


def centred_sum_squares(vectors: torch.Tensor) -> float:
    """Sum of squared norms of the centred vectors (the denominator of relative MSE)."""
    centred = vectors.double() - vectors.double().mean(dim=0)
    return float((centred * centred).sum())


def reconstruction_errors(vectors: torch.Tensor, approx: torch.Tensor) -> tuple[float, float]:
    """``(mse, relative_mse)`` of ``approx`` against ``vectors`` (see module docstring)."""
    diff = vectors.double() - approx.double()
    sse = float((diff * diff).sum())
    total = centred_sum_squares(vectors)
    return sse / vectors.numel(), (sse / total if total > 0 else math.nan)


def save_quantizer(
    folder: str | Path, *, kind: str, config: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Write ``config.json`` and ``tensors.safetensors`` into ``folder`` (each atomically)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{TENSORS_FILE}.tmp-")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, folder / TENSORS_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    payload = {"type": kind, "format_version": FORMAT_VERSION, "config": config}
    atomic_write_text(folder / CONFIG_FILE, json.dumps(payload, indent=2) + "\n")


def load_quantizer(
    folder: str | Path, *, kind: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, tensors)`` saved by :func:`save_quantizer`; checks the type and version."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file() or not (folder / TENSORS_FILE).is_file():
        raise DeepInterestError(
            f"{folder}: not a saved quantizer (expected {CONFIG_FILE} and {TENSORS_FILE})"
        )
    payload = json.loads(config_path.read_text(encoding="utf-8"))
    if payload.get("type") != kind:
        raise DeepInterestError(
            f"{config_path}: holds a {payload.get('type')!r} quantizer, not {kind!r}"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise DeepInterestError(
            f"{config_path}: format version {payload.get('format_version')} is not "
            f"{FORMAT_VERSION}; refit the quantizer with this version of deepinterest"
        )
    return payload["config"], load_file(str(folder / TENSORS_FILE))
