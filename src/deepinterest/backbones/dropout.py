"""Dropout with a cheaper random mask on the CPU.

``torch.nn.Dropout`` draws one random number per element (``bernoulli_``),
about 4-5 ns an element on the 2-core machine of ``docs/results.md``: at the
Beauty T5 configuration that was a quarter of a bf16 training step. Here one
64-bit draw serves four elements: the draws are viewed as 16-bit integers and
an element is dropped when its 16 bits fall below ``round(p * 65536)``
(counted from the bottom of the int16 range), and the mask is made in the
input's dtype with the scale folded in. Every element is still dropped
independently with probability ``p`` (to within 2**-17), kept elements are
scaled by ``1 / (1 - p)``, and the draws come from torch's default generator,
so ``torch.manual_seed`` and saved RNG states reproduce a run exactly. Only
the random stream differs from ``nn.Dropout``'s.

On other devices (CUDA's dropout is already fused) and in eval mode this is
plain ``torch.nn.functional.dropout``. :func:`use_packed_dropout` swaps every
``nn.Dropout`` of a module for :class:`PackedDropout`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_LEVELS = 1 << 16
_LOWEST = -(1 << 15)  # int16 minimum


def keep_scale(shape: torch.Size | tuple[int, ...], p: float,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``1 / (1 - p)`` where an element is kept, 0 where dropped (probability ``p``), in ``dtype``.

    Built with integer clamps and one conversion: on the CPU, boolean masks
    (``masked_fill``, ``x * bool``) cost several times a same-dtype multiply.
    """
    numel = 1
    for size in shape:
        numel *= size
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((numel + 3) // 4,), dtype=torch.int64)
    lanes = words.view(torch.int16)[:numel].view(shape)
    cut = _LOWEST + round(p * _LEVELS)  # lanes below the cut are dropped
    keep = lanes.clamp(cut - 1, cut).sub_(cut - 1)  # int16: 0 dropped, 1 kept
    return keep.to(dtype).mul_(1.0 / (1.0 - p))


class _Packed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:  # noqa: D102
        scale = keep_scale(x.shape, p, x.dtype)
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (scale,) = ctx.saved_tensors
        return grad * scale, None


def packed_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Functional form of :class:`PackedDropout`."""
    if not training or round(p * _LEVELS) == 0:  # p below 2**-17 rounds to no dropout
        return x
    if x.device.type != "cpu" or round(p * _LEVELS) >= _LEVELS:
        return F.dropout(x, p, training=True)
    return _Packed.apply(x, p)


class PackedDropout(nn.Dropout):
    """``nn.Dropout`` with the packed CPU mask (module docstring); same ``p`` and modes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.inplace:  # the packed mask never writes in place; keep nn.Dropout's contract
            return F.dropout(x, self.p, self.training, inplace=True)
        return packed_dropout(x, self.p, self.training)


def use_packed_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout`` inside ``module`` by :class:`PackedDropout`; returns how many."""
    swapped = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, PackedDropout(child.p, child.inplace))
                swapped += 1
    return swapped


__all__ = ["PackedDropout", "keep_scale", "packed_dropout", "use_packed_dropout"]
