"""Which precision the training forward runs in.

``precision = "auto"`` (the default) autocasts the forward to bfloat16 where
the hardware computes it natively (a CUDA GPU with bf16, or a CPU with the
``avx512_bf16`` or ``amx_bf16`` instructions) and stays in fp32 elsewhere,
where bf16 would be emulated and slower. Weights, gradients and optimizer
state are fp32 either way, and validation runs in fp32. At the Beauty T5
configuration bf16 reached the same validation figures as fp32 at 1.7x the
samples per second (``beauty-t5-4ep-*`` in ``docs/results.md``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` computes bfloat16 matrix products in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(_BF16_FLAGS & cpu_flags())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: an explicit choice as given, ``"auto"`` by the hardware."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


__all__ = ["cpu_flags", "native_bf16", "resolve_precision"]
