"""Weighted sums of rewards: the paper's composite on hand-worked values, components, pickling.

Paper composite, l_valid = 0.1, l_pref = 0.5, alpha = 0.5, target i0 with q = 0.6:
    hit i0            1 + 0.1 + 0.5 * 3/3 + 0.5 * 0.6 = 1.9
    i4 (suffix only)  0 + 0.1 + 0.5 * 3/3 + 0         = 0.6
    i1 (LCP 2)        0 + 0.1 + 0.5 * 2/3             = 0.433333
    (1,1,1,0) no item 0 + 0   + 0.5 * 0/3             = 0.0
    unreadable        0
"""

from __future__ import annotations

import pickle

import pytest

from deepinterest import registry
from deepinterest.errors import DeepInterestError
from deepinterest.rewards import CompositeReward, ExactReward, InterestIndex

COMPLETIONS = [[0, 0, 0, 0], [0, 0, 0, 1], "<a_0><b_0><c_1><d_0>", [1, 1, 1, 0], "junk"]
N = len(COMPLETIONS)
COLUMNS = {"target": [0] * N, "user": ["u1"] * N, "completion_ids": [[3]] * N,
           "trainer_state": None, "unused": ["x"] * N}


@pytest.fixture
def interests(catalog):
    return InterestIndex.from_records(
        [{"item": "i0", "quality": 0.6, "descriptors": [
            {"text": "keeping lips soft", "confidence": 1.0, "label": 1}]},
         {"item": "i4", "descriptors": [{"text": "keeping lips soft", "confidence": 0.5,
                                         "label": 1}, {"text": "camping", "confidence": 0.5,
                                                       "label": 1}]}],
        [{"user": "u1", "descriptors": [{"text": "keeping lips soft", "confidence": 1.0}]}],
        catalog)


def call(reward, completions=COMPLETIONS, **columns):
    return reward(prompts=["p"] * len(completions), completions=completions,
                  **(columns or COLUMNS))


def test_the_paper_composite_by_hand(catalog, interests):
    reward = CompositeReward.paper(catalog=catalog, interests=interests)
    assert reward.__name__ == "deepinterest"
    assert call(reward) == pytest.approx([1.9, 0.6, 0.1 + 0.5 * 2 / 3, 0.0, 0.0])
    parts = reward.last_components
    assert list(parts) == ["exact", "valid", "prefix", "quality"]
    assert parts["valid"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert parts["quality"] == pytest.approx([0.3, 0.0, 0.0, 0.0, 0.0])
    assert reward.component_means()["exact"] == pytest.approx(0.2)


def test_the_interest_term_and_none_counted_as_zero(catalog, interests):
    reward = CompositeReward.paper(catalog=catalog, interests=interests, interest_weight=2.0)
    got = call(reward)
    interest = reward.last_components["interest"]
    # i0 holds u1's interest fully (1.0); i4 half of its confidence (0.5); i1 has no
    # descriptors (0.0); the last two are no item (None -> 0 in the sum).
    assert interest[:3] == pytest.approx([1.0, 0.5, 0.0])
    assert interest[3:] == [None, None]
    assert got == pytest.approx([1.9 + 2.0, 0.6 + 1.0, 0.1 + 0.5 * 2 / 3, 0.0, 0.0])
    assert reward.component_means()["interest"] == pytest.approx(0.5)


def test_components_can_be_built_instances_or_aliases(catalog, interests):
    reward = CompositeReward(
        weights={"hit": 2.0, "near": 1.0, "rank": 1.0},
        catalog=catalog, components={"hit": ExactReward(catalog=catalog)},
        options={"near": {"reward": "prefix"}, "rank": {"hit_reward": 0.0}})
    assert reward.rewards["near"].__name__ == "near"
    parts = reward.components(["p"] * 2, [[0, 0, 1, 0], [0, 0, 0, 0]], target=[0, 0])
    # a hit at rank 1 and a wrong beam at rank 0 of a group of 2: penalty -1 / (1 + 1/log2 3)
    assert parts["hit"] == [0.0, 1.0] and parts["near"] == pytest.approx([2 / 3, 1.0])
    assert parts["rank"] == pytest.approx([-0.61315, 0.0], abs=1e-5)
    assert call(reward, [[0, 0, 1, 0], [0, 0, 0, 0]], target=[0, 0]) == pytest.approx(
        [2 / 3 - 0.61315, 3.0], abs=1e-5)


def test_mistakes_are_named(catalog):
    with pytest.raises(DeepInterestError, match="weights is empty"):
        CompositeReward(weights={}, catalog=catalog)
    with pytest.raises(DeepInterestError, match="'prefix' have no weight"):
        CompositeReward(weights={"exact": 1.0}, catalog=catalog, options={"prefix": {}})
    with pytest.raises(DeepInterestError, match="weight of 'exact' is 'a'"):
        CompositeReward(weights={"exact": "a"}, catalog=catalog)
    with pytest.raises(DeepInterestError, match="no reward named 'exactly'"):
        CompositeReward(weights={"exactly": 1.0}, catalog=catalog)
    with pytest.raises(DeepInterestError, match="missing required option.*interests"):
        CompositeReward(weights={"quality": 1.0}, catalog=catalog)


def test_composites_pickle_without_their_last_values(catalog, interests):
    reward = CompositeReward.paper(catalog=catalog, interests=interests, interest_weight=1.0)
    before = call(reward)
    again = pickle.loads(pickle.dumps(reward))
    assert again.__name__ == "deepinterest" and again.last_components == {}
    assert call(again) == pytest.approx(before)


def test_composites_by_name_through_the_registry(catalog, interests):
    paper = registry.create("rewards", "paper", catalog=catalog, interests=interests)
    summed = registry.create("rewards", "composite", catalog=catalog, interests=interests,
                             weights={"exact": 1.0, "valid": 0.1, "prefix": 0.5,
                                      "quality": 1.0})
    assert call(paper) == pytest.approx(call(summed))
