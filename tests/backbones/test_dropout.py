"""Packed dropout: the distribution, scale, gradient and reproducibility of nn.Dropout's."""

import pytest
import torch
from torch import nn

from deepinterest.backbones.dropout import (
    PackedDropout, keep_scale, packed_dropout, use_packed_dropout)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_each_element_is_dropped_with_probability_p_in_every_lane(p):
    torch.manual_seed(0)
    scale = keep_scale((1000, 2000), p)
    values = scale.unique().tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(1 / (1 - p))]
    dropped = scale.view(-1) == 0
    # Four elements share a 64-bit draw: each of the four int16 lanes must be fair.
    for lane in range(4):
        rate = dropped[lane::4].float().mean().item()
        assert abs(rate - p) < 4 * (p * (1 - p) / 500_000) ** 0.5 + 2 ** -17
    # and neighbours are independent: both dropped about p*p of the time
    both = (dropped[0::2] & dropped[1::2]).float().mean().item()
    assert abs(both - p * p) < 5 * (p * p / 1_000_000) ** 0.5


def test_mask_follows_the_input_dtype_and_the_expected_value_is_kept():
    torch.manual_seed(1)
    x = torch.ones(400_000, dtype=torch.bfloat16)
    out = packed_dropout(x, 0.2)
    assert out.dtype == torch.bfloat16
    assert abs(out.float().mean().item() - 1.0) < 0.01


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    out = packed_dropout(x, 0.25)
    out.backward(torch.ones_like(out))
    kept = out.detach() != 0
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    torch.testing.assert_close(out[kept], x.detach()[kept] / 0.75)


def test_seeded_masks_repeat_and_differ_across_seeds():
    masks = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        masks.append(keep_scale((100, 100), 0.1))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def test_identity_in_eval_mode_and_without_dropout():
    x = torch.randn(10, 10)
    assert packed_dropout(x, 0.3, training=False) is x
    assert packed_dropout(x, 0.0) is x
    layer = PackedDropout(0.3).eval()
    assert layer(x) is x


def test_use_packed_dropout_swaps_every_dropout_and_nothing_else():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.4)))
    assert use_packed_dropout(model) == 2
    assert [type(m).__name__ for m in model.modules()].count("PackedDropout") == 2
    assert model[2][0].p == 0.4
    assert use_packed_dropout(model) == 0  # already swapped
