"""MiniOneRec's rank-aware reward on hand-worked groups of G = 4.

Discounts 1/log2(i+2) for ranks i = 0..3: 1, 1/log2(3) = 0.63093, 1/log2(4) = 0.5,
1/log2(5) = 0.43068; their sum S = 2.56161. A wrong beam at rank i gets -discount(i) / S:
    rank 0: -1 / 2.56161       = -0.39038
    rank 1: -0.63093 / 2.56161 = -0.24630
    rank 2: -0.5 / 2.56161     = -0.19519
    rank 3: -0.43068 / 2.56161 = -0.16813
A hit gets 1; a group without a hit gets 0 everywhere.
"""

from __future__ import annotations

import pytest

from deepinterest.errors import DeepInterestError
from deepinterest.rewards import RankReward, rank_penalties

PENALTY = [-0.39038, -0.24630, -0.19519, -0.16813]
HIT, MISS = [0, 0, 0, 0], [1, 0, 0, 0]  # target item 0 = (0, 0, 0 | 0)


def test_penalties_for_a_group_of_four():
    assert rank_penalties(4) == pytest.approx(PENALTY, abs=1e-5)
    assert sum(rank_penalties(4)) == pytest.approx(-1.0)
    assert rank_penalties(1) == [-1.0]


def test_hit_at_rank_two_penalises_the_other_beams_by_their_rank(catalog):
    reward = RankReward(catalog=catalog)
    got = reward(prompts=["p"] * 4, completions=[MISS, MISS, HIT, MISS], target=[0] * 4,
                 completion_ids=[[0]] * 4, trainer_state=None)
    assert got == pytest.approx([PENALTY[0], PENALTY[1], 1.0, PENALTY[3]], abs=1e-5)


def test_a_group_without_a_hit_gets_zeros(catalog):
    got = RankReward(catalog=catalog)(prompts=["p"] * 4, completions=[MISS, "junk", MISS, MISS],
                                      target=[0] * 4)
    assert got == [0.0, 0.0, 0.0, 0.0]


def test_ranks_come_from_the_rank_column_when_given(catalog):
    # Completions listed in another order than their beam ranks 3, 0, 2, 1.
    got = RankReward(catalog=catalog)(prompts=["p"] * 4, completions=[MISS, HIT, MISS, MISS],
                                      target=[0] * 4, rank=[3, 0, 2, 1])
    assert got == pytest.approx([PENALTY[3], 1.0, PENALTY[2], PENALTY[1]], abs=1e-5)


def test_groups_are_the_completions_sharing_a_prompt(catalog):
    # Two interleaved prompts of two completions each: G = 2, penalties -1/(1 + 1/log2 3).
    two = rank_penalties(2)
    assert two == pytest.approx([-0.61315, -0.38685], abs=1e-5)
    got = RankReward(catalog=catalog)(prompts=["a", "b", "a", "b"],
                                      completions=[MISS, MISS, HIT, MISS], target=[0, 3, 0, 1])
    # Group a: rows 0 (rank 0, wrong) and 2 (hit). Group b: rows 1 (target 3 = MISS: a hit) and
    # 3 (rank 1, wrong: (1,0,0,0) is not item 1).
    assert got == pytest.approx([two[0], 1.0, 1.0, two[1]], abs=1e-5)


def test_group_size_cuts_consecutive_groups_whatever_the_prompts(catalog):
    reward = RankReward(catalog=catalog, group_size=2)
    got = reward(prompts=["same"] * 4, completions=[MISS, HIT, MISS, MISS], target=[0] * 4)
    assert got == pytest.approx([rank_penalties(2)[0], 1.0, 0.0, 0.0], abs=1e-5)
    with pytest.raises(DeepInterestError, match="do not split into groups of 3"):
        RankReward(catalog=catalog, group_size=3)(prompts=["p"] * 4, completions=[HIT] * 4,
                                                  target=[0] * 4)


def test_hit_reward_zero_gives_the_penalty_term_alone(catalog):
    got = RankReward(catalog=catalog, hit_reward=0.0)(
        prompts=["p"] * 4, completions=[HIT, MISS, MISS, MISS], target=[0] * 4)
    assert got == pytest.approx([0.0] + PENALTY[1:], abs=1e-5)


def test_rows_without_a_target_are_none_and_never_hits(catalog):
    got = RankReward(catalog=catalog)(prompts=["p"] * 4, completions=[HIT, HIT, MISS, MISS],
                                      target=[None, 0, 0, 0])
    assert got[0] is None and got[1] == 1.0
    assert got[2:] == pytest.approx(PENALTY[2:], abs=1e-5)


def test_a_rank_outside_the_group_is_refused(catalog):
    with pytest.raises(DeepInterestError, match="row 0: rank 4 is not a 0-based rank"):
        RankReward(catalog=catalog)(prompts=["p"] * 4, completions=[MISS, HIT, MISS, MISS],
                                    target=[0] * 4, rank=[4, 0, 1, 2])


def test_chat_prompts_group_too(catalog):
    chat = [{"role": "user", "content": "history"}]
    got = RankReward(catalog=catalog)(prompts=[chat, list(chat)], completions=[HIT, MISS],
                                      target=[0, 0])
    assert got == pytest.approx([1.0, rank_penalties(2)[1]])
