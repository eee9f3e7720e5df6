"""The quality bonus alpha * q(target) * 1[exact] on hand-worked cases."""

from __future__ import annotations

import pytest

from deepinterest.rewards import InterestIndex, QualityReward

HIT, SUFFIX_MISS, MISS = [0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]


@pytest.fixture
def interests(catalog):
    # q(i0) = 0.6, q(i3) = 1.0; i1 is in the artifact without a quality; the rest are absent.
    return InterestIndex.from_records(
        [{"item": "i0", "descriptors": [], "quality": 0.6},
         {"item": "i3", "descriptors": [], "quality": 1.0},
         {"item": "i1", "descriptors": []}], [], catalog)


def call(reward, completions, targets):
    return reward(prompts=["p"] * len(completions), completions=completions, target=targets,
                  user=["u"] * len(completions), completion_ids=[[1]] * len(completions))


def test_half_the_quality_on_a_hit_and_nothing_on_a_miss(catalog, interests):
    reward = QualityReward(catalog=catalog, interests=interests)
    got = call(reward, [HIT, SUFFIX_MISS, "junk", MISS], [0, 0, 0, 3])
    assert got == pytest.approx([0.5 * 0.6, 0.0, 0.0, 0.5 * 1.0])


def test_alpha_scales_the_bonus(catalog, interests):
    reward = QualityReward(catalog=catalog, interests=interests, alpha=2.0)
    assert call(reward, [HIT], [0]) == pytest.approx([1.2])


def test_none_without_a_target_or_without_its_quality(catalog, interests):
    reward = QualityReward(catalog=catalog, interests=interests)
    got = call(reward, [HIT, [0, 0, 1, 0], [0, 1, 0, 0]], [None, 1, 2])
    assert got == [None, None, None]
