"""Ensembling several miners' answers: vote, union and confidence-weighted merge."""

from __future__ import annotations

import pytest

from deepinterest import registry
from deepinterest.errors import DeepInterestError
from deepinterest.miners import Descriptor, Interests, MineResult
from deepinterest.miners.ensemble import (
    ConfidenceEnsembler,
    UnionEnsembler,
    VoteEnsembler,
    answers_by_key,
    to_interests,
)

HIKE = "carrying gear on long day hikes"


def _interests(*pairs: tuple[str, float]) -> Interests:
    return Interests(descriptors=[Descriptor(text=t, confidence=c) for t, c in pairs])


# Three miners about a hiking backpack: all agree on hiking (in paraphrase), two on rain,
# one alone on a gift.
ANSWERS = {
    "a": _interests((HIKE, 0.9), ("a birthday present for a friend", 0.4)),
    "b": _interests(("hauling equipment on day hikes", 0.8), ("staying dry in the rain", 0.6)),
    "c": _interests(("Carrying gear on long day hikes.", 0.5), ("staying dry in rainy weather", 0.7)),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("embeddings"))


def test_vote_keeps_clusters_of_at_least_m_miners_and_merges_paraphrases(cache):
    majority = VoteEnsembler(cache_dir=cache).combine(ANSWERS)
    assert [(d.text, d.support) for d in majority] == [(HIKE, 3),
                                                       ("staying dry in rainy weather", 2)]
    top = majority[0]
    assert top.sources == ("a", "b", "c")
    assert set(top.members) == {HIKE, "hauling equipment on day hikes",
                                "Carrying gear on long day hikes"}
    assert top.confidence == pytest.approx((0.9 + 0.8 + 0.5) / 3)  # mean x agreement 3/3
    assert majority[1].confidence == pytest.approx((0.6 + 0.7) / 2 * 2 / 3)
    unanimous = VoteEnsembler(cache_dir=cache, min_votes=3).combine(ANSWERS)
    assert [d.text for d in unanimous] == [HIKE]
    assert len(VoteEnsembler(cache_dir=cache, min_votes=1).combine(ANSWERS)) == 3


def test_a_miner_counts_once_per_cluster(cache):
    repeats = {"a": _interests((HIKE, 0.9), ("hauling equipment on day hikes", 0.3)),
               "b": _interests(("brewing great coffee at home", 0.9))}
    assert VoteEnsembler(cache_dir=cache, min_votes=2).combine(repeats) == []
    merged = VoteEnsembler(cache_dir=cache, min_votes=1).combine(repeats)
    hike = next(d for d in merged if d.text == HIKE)
    assert hike.support == 1 and hike.confidence == pytest.approx(0.9 * 1 / 2)


def test_union_keeps_everything_once_with_its_support(cache):
    merged = UnionEnsembler(cache_dir=cache).combine(ANSWERS)
    assert [(d.text, d.support, d.confidence) for d in merged] == [
        (HIKE, 3, 0.9), ("staying dry in rainy weather", 2, 0.7),
        ("a birthday present for a friend", 1, 0.4)]


def test_union_merges_the_same_normalised_text_even_below_the_threshold(cache):
    same = {"a": _interests(("Gift Wrapping!", 0.5)), "b": _interests(("gift wrapping", 0.6))}
    merged = UnionEnsembler(cache_dir=cache, similarity=0.999).combine(same)
    assert [(d.text, d.support) for d in merged] == [("gift wrapping", 2)]


def test_confidence_merge_weights_miners(cache):
    plain = ConfidenceEnsembler(cache_dir=cache, min_confidence=0.0).combine(ANSWERS)
    assert plain[0].text == HIKE and plain[0].confidence == pytest.approx((0.9 + 0.8 + 0.5) / 3)
    weighted = ConfidenceEnsembler(cache_dir=cache, weights={"a": 2.0}, min_confidence=0.0)
    gift = next(d for d in weighted.combine(ANSWERS) if d.support == 1)
    assert gift.confidence == pytest.approx(2 * 0.4 / 4)
    kept = ConfidenceEnsembler(cache_dir=cache, min_confidence=0.5).combine(ANSWERS)
    assert [d.text for d in kept] == [HIKE]


def test_combine_many_equals_combine_item_by_item(cache):
    other = {"a": _interests(("feeding a newborn with bottles", 0.9)),
             "b": _interests(("bottle feeding a newborn baby", 0.7))}
    for ensembler in (VoteEnsembler(cache_dir=cache), UnionEnsembler(cache_dir=cache)):
        assert ensembler.combine_many([ANSWERS, other, {}]) == [
            ensembler.combine(ANSWERS), ensembler.combine(other), []]


def test_top_k_and_conversion_to_interests(cache):
    merged = UnionEnsembler(cache_dir=cache, top_k=2).combine(ANSWERS)
    assert len(merged) == 2
    assert [d.text for d in to_interests(merged).descriptors] == [d.text for d in merged]


def test_answers_by_key_regroups_results_and_leaves_failures_out():
    ok = MineResult("i1", "item", "x", "m", "item.v1", ANSWERS["a"])
    failed = MineResult("i1", "item", "y", "m", "item.v1", None, error="timeout")
    grouped = answers_by_key({"x": [ok], "y": [failed]})
    assert grouped == {"i1": {"x": ANSWERS["a"]}}


def test_registered_by_name_with_checked_options(cache):
    assert isinstance(registry.create("ensemblers", "vote", cache_dir=cache), VoteEnsembler)
    with pytest.raises(DeepInterestError, match="min_vote"):
        registry.create("ensemblers", "vote", min_vote=2)
