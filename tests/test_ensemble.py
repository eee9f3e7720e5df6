"""Inference-time ensembling: merged lists of several models' recommendations."""

import math

import pytest
import torch

from deepinterest.eval.ensemble import RRF_C, fuse
from deepinterest.eval.generative import Recommendations


def recs(items, scores):
    return Recommendations(torch.tensor(items, dtype=torch.long),
                           torch.tensor(scores, dtype=torch.float32))


def test_one_model_keeps_its_order_and_probabilities():
    one = recs([[7, 3, 5]], [[-0.5, -1.0, -3.0]])
    for rule in ("probability", "rrf"):
        out = fuse([one], rule=rule, topk=2)
        assert out.items.tolist() == [[7, 3]]
    probs = torch.softmax(torch.tensor([-0.5, -1.0, -3.0], dtype=torch.float64), 0)
    out = fuse([one], rule="probability", topk=3)
    assert out.scores[0].tolist() == pytest.approx(probs.tolist(), rel=1e-6)


def test_reciprocal_rank_fusion_sums_each_list():
    a = recs([[1, 2]], [[0.0, -1.0]])
    b = recs([[2, 3]], [[0.0, -9.0]])
    out = fuse([a, b], rule="rrf", topk=3)
    assert out.items.tolist() == [[2, 1, 3]]
    expected = [1 / (RRF_C + 2) + 1 / (RRF_C + 1), 1 / (RRF_C + 1), 1 / (RRF_C + 2)]
    assert out.scores[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_probability_rule_adds_the_models_confidence():
    # model a is sure of item 1, model b spreads over 2 and 3: item 2 is in both lists
    a = recs([[1, 2]], [[0.0, math.log(0.25)]])  # probabilities 0.8, 0.2
    b = recs([[3, 2]], [[0.0, 0.0]])  # 0.5, 0.5
    out = fuse([a, b], rule="probability", topk=3)
    assert out.items.tolist() == [[1, 2, 3]]
    assert out.scores[0].tolist() == pytest.approx([0.8, 0.7, 0.5], rel=1e-6)


def test_weights_and_empty_slots():
    a = recs([[1, 2, -1]], [[0.0, -1.0, float("-inf")]])
    b = recs([[4, 5, 6]], [[0.0, -1.0, -2.0]])
    only_b = fuse([a, b], weights=[0.0, 1.0], rule="rrf", topk=3)
    assert only_b.items.tolist()[0][:3] == [4, 5, 6]
    out = fuse([a, a], rule="probability", topk=4)  # fewer items than topk: padded
    assert out.items.tolist() == [[1, 2, -1, -1]]
    assert torch.isinf(out.scores[0, 2:]).all()


def test_rows_are_merged_separately_and_ties_follow_the_first_model():
    a = recs([[1, 2], [3, 4]], [[0.0, 0.0], [0.0, -5.0]])
    b = recs([[2, 1], [4, 3]], [[0.0, 0.0], [0.0, -5.0]])
    out = fuse([a, b], rule="probability", topk=2)
    assert out.items.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("kwargs, message", [
    ({"rule": "borda"}, "unknown fusion rule"),
    ({"weights": [1.0]}, "one non-negative weight per model"),
    ({"weights": [1.0, -1.0]}, "one non-negative weight per model"),
])
def test_bad_arguments_are_refused(kwargs, message):
    a = recs([[1]], [[0.0]])
    with pytest.raises(ValueError, match=message):
        fuse([a, a], **kwargs)


def test_lists_of_other_rows_or_none_are_refused():
    with pytest.raises(ValueError, match="same rows"):
        fuse([recs([[1]], [[0.0]]), recs([[1], [2]], [[0.0], [0.0]])])
    with pytest.raises(ValueError, match="at least one"):
        fuse([])
