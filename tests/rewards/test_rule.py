"""exact, valid and prefix on hand-worked cases (catalogue in conftest.py)."""

from __future__ import annotations

import pytest

from deepinterest.errors import DeepInterestError
from deepinterest.rewards import ExactReward, PrefixReward, ValidReward

# Target item 0 = (0, 0, 0 | 0) for every row.
COMPLETIONS = [
    [0, 0, 0, 0],                 # item 0: the hit
    [0, 0, 0, 1],                 # item 4: every level equal, only the suffix differs
    "<a_0><b_0><c_1><d_0>",       # item 1: first two levels equal
    [0, 1, 0, 0],                 # item 2: first level equal
    [1, 0, 0, 0],                 # item 3: nothing in common
    [1, 1, 1, 0],                 # readable, but the SID of no item
    "not a sid",                  # unreadable
]
TARGETS = [0] * len(COMPLETIONS)
# TRL passes these on every call; a reward must ignore columns it does not read.
EXTRA = {"completion_ids": [[1, 2]] * len(COMPLETIONS), "trainer_state": object(),
         "user": ["u1"] * len(COMPLETIONS), "whatever": list(range(len(COMPLETIONS)))}


def call(reward, completions=COMPLETIONS, **columns):
    return reward(prompts=["p"] * len(completions), completions=completions, **columns)


def test_exact_needs_the_suffix_too(catalog):
    assert call(ExactReward(catalog=catalog), target=TARGETS, **EXTRA) == [
        1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_valid_pays_for_any_catalogue_sid_and_needs_no_target(catalog):
    assert call(ValidReward(catalog=catalog), **EXTRA) == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_prefix_counts_levels_only_never_the_suffix(catalog):
    got = call(PrefixReward(catalog=catalog), target=TARGETS, **EXTRA)
    # LCP over the 3 levels / 3: item 4 differs from the target only in its suffix -> 3/3.
    assert got == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 0.0, 0.0, 0.0])


def test_prefix_of_an_invalid_sid_still_counts_its_shared_levels(catalog):
    got = call(PrefixReward(catalog=catalog), completions=[[1, 1, 1, 0]], target=[3])
    assert got == pytest.approx([1 / 3])  # (1,1,1) vs (1,0,0): one level


def test_targets_may_be_item_ids_and_none_means_not_applicable(catalog):
    completions = [[0, 0, 1, 0], [0, 0, 1, 0]]
    assert call(ExactReward(catalog=catalog), completions, target=["i1", None]) == [1.0, None]
    assert call(PrefixReward(catalog=catalog), completions, target=[None, "i1"]) == [None, 1.0]


def test_a_missing_target_column_is_named(catalog):
    with pytest.raises(DeepInterestError, match="needs a 'target' column.*user"):
        call(ExactReward(catalog=catalog), user=["u"] * len(COMPLETIONS))


def test_a_column_of_the_wrong_length_is_refused(catalog):
    with pytest.raises(DeepInterestError, match="3 values for 7 completions"):
        call(PrefixReward(catalog=catalog), target=[0, 0, 0])


def test_names_are_stable_and_can_be_overridden(catalog):
    assert ExactReward(catalog=catalog).__name__ == "exact"
    assert ValidReward(catalog=catalog).__name__ == "valid"
    assert PrefixReward(catalog=catalog, name="lcp").__name__ == "lcp"


def test_a_catalogue_may_be_given_as_a_sids_folder(catalog, tmp_path):
    import json

    rows = [{"item": i, "sid": s} for i, s in zip(catalog.item_ids, catalog.sids.tolist())]
    (tmp_path / "sids.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    reward = ExactReward(catalog=str(tmp_path))
    assert call(reward, completions=[[0, 0, 0, 1]], target=["i4"]) == [1.0]
