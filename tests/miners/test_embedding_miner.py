"""The embedding miner and its vocabularies, on a few hand-written items."""

from __future__ import annotations

import numpy as np
import pytest

from deepinterest.errors import DeepInterestError
from deepinterest.miners import Descriptor, Interests, MineRequest, MineResult
from deepinterest.miners.embedding import EmbeddingMiner, evidence_text
from deepinterest.miners.schema import MAX_CHARS
from deepinterest.miners.vocabulary import (
    TextSpace,
    generic_descriptors,
    induce_vocabulary,
    load_packaged,
    load_vocabulary,
    packaged_domains,
    save_vocabulary,
)

BACKPACK = {"title": "Trailhead 30L Hiking Backpack", "categories": [["Sports & Outdoors", "Hiking"]],
            "description": "Lightweight daypack with hip belt and rain cover for long trail days."}
BOTTLE = {"title": "Anti-Colic Baby Bottle, 3 pack", "categories": ["Baby", "Feeding"],
          "brand": "Tiny Sips", "description": "Slow-flow nipples for newborns."}
CAPO = {"title": "Quick-Change Guitar Capo", "categories": ["Musical Instruments"],
        "description": "Spring-loaded capo for acoustic and electric guitars."}
HIKE, FEED, KEY = ("carrying gear on long day hikes", "feeding a newborn with bottles",
                   "changing key quickly with a guitar capo")
OTHERS = ["keeping a car clean inside and out", "painting with watercolours",
          "brewing great coffee at home", "a birthday present for a friend"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def small_vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "mine.txt"
    path.write_text("# my motivations\n" + "\n".join([HIKE, FEED, KEY, *OTHERS]) + "\n")
    return str(path)


def _items(miner, *evidence):
    return miner.mine([MineRequest("item", str(i), e) for i, e in enumerate(evidence)])


def test_the_obviously_matching_motivation_comes_first(cache, small_vocab):
    miner = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache, min_similarity=-1.0)
    results = _items(miner, BACKPACK, BOTTLE, CAPO)
    assert [r.answer.descriptors[0].text for r in results] == [HIKE, FEED, KEY]
    for r in results:
        assert r.ok and r.backend == "embedding" and r.prompt_version.startswith("item.")
        assert (r.tokens_in, r.tokens_out, r.cost_usd) == (0, 0, 0.0) and r.latency_s > 0
        conf = [d.confidence for d in r.answer.descriptors]
        assert conf == sorted(conf, reverse=True) and all(0 <= c <= 1 for c in conf)
        assert r.extra["similarities"] == sorted(r.extra["similarities"], reverse=True)


def test_top_k_and_the_threshold_are_respected(cache, small_vocab):
    everything = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache, top_k=7,
                                min_similarity=-1.0)
    assert len(_items(everything, BACKPACK)[0].answer.descriptors) == 7
    two = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache, top_k=2, min_similarity=-1.0)
    assert len(_items(two, BACKPACK)[0].answer.descriptors) == 2
    strict = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache, min_similarity=0.45)
    result = _items(strict, BACKPACK)[0]
    assert [d.text for d in result.answer.descriptors] == [HIKE]
    assert min(result.extra["similarities"]) >= 0.45


def test_confidence_is_the_documented_rescaled_similarity(cache, small_vocab):
    miner = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache, similarity_floor=0.2,
                           similarity_ceiling=0.7, min_similarity=-1.0, top_k=7)
    result = _items(miner, BOTTLE)[0]
    sims = np.array(result.extra["similarities"])
    expected = np.clip((sims - 0.2) / 0.5, 0, 1)
    np.testing.assert_allclose([d.confidence for d in result.answer.descriptors], expected,
                               atol=1e-5)


def test_answers_are_deterministic_and_embeddings_cached(tmp_path, small_vocab, monkeypatch):
    first = EmbeddingMiner(vocabulary=small_vocab, cache_dir=str(tmp_path))
    answers = [r.answer for r in _items(first, BACKPACK, CAPO)]
    encoder, seen = first.space.encoder, []  # one encoder per process, shared
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: seen.extend(texts) or real(texts))
    again = EmbeddingMiner(vocabulary=small_vocab, cache_dir=str(tmp_path))
    assert [r.answer for r in _items(again, BACKPACK, CAPO)] == answers
    assert seen == []  # the vocabulary and both items came from the cache
    _items(again, BOTTLE)
    assert seen == [evidence_text(BOTTLE)]


def test_user_requests_rank_from_history_titles(cache, small_vocab):
    miner = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache)
    history = ["Baby Bottle Warmer", "Newborn Formula Dispenser", "Bottle Brush"]
    result = miner.mine([MineRequest("user", "u1", {"history": history})])[0]
    assert result.ok and result.prompt_version.startswith("user.")
    assert result.answer.descriptors[0].text == FEED


def test_judge_labels_grounded_specific_descriptors(cache, small_vocab):
    miner = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache)
    shown = (HIKE, "good quality product", FEED)
    result = miner.mine([MineRequest("judge", "pack", BACKPACK, descriptors=shown)])[0]
    assert result.ok and result.answer.labels == [1, 0, 0]
    assert len(result.extra["probabilities"]) == 3


def test_nothing_to_embed_is_a_failure_not_a_drop(cache, small_vocab):
    miner = EmbeddingMiner(vocabulary=small_vocab, cache_dir=cache)
    results = miner.mine([MineRequest("item", "empty", {}), MineRequest("user", "u", {}),
                          MineRequest("item", "ok", CAPO)])
    assert [r.ok for r in results] == [False, False, True]
    assert "no evidence text" in results[0].error and "history" in results[1].error
    assert miner.mine([]) == []


def test_unknown_options_are_named():
    with pytest.raises(DeepInterestError, match="top_kk"):
        EmbeddingMiner(top_kk=3)
    with pytest.raises(DeepInterestError, match="similarity_ceiling"):
        EmbeddingMiner(similarity_floor=0.5, similarity_ceiling=0.4)


def test_evidence_text_joins_fields_in_order_and_flattens_lists():
    assert evidence_text(BACKPACK).startswith(
        "Trailhead 30L Hiking Backpack; Sports & Outdoors, Hiking; Lightweight")
    assert evidence_text({"price": "9.99"}) == ""


# ---------------------------------------------------------------- vocabularies


def test_packaged_vocabulary_is_a_few_hundred_short_unique_phrases():
    vocab = load_packaged()
    assert 300 <= len(vocab) <= 600
    assert all(len(p) <= MAX_CHARS for p in vocab.phrases)
    assert len({p.lower() for p in vocab.phrases}) == len(vocab)
    assert {"beauty", "baby", "musical_instruments", "gifting", "general"} <= set(
        packaged_domains())
    assert "good quality product" in generic_descriptors()
    assert not set(generic_descriptors()) & set(vocab.phrases)


def test_chosen_domains_and_unknown_domains():
    baby = load_packaged(["baby"])
    assert set(baby.domains) == {"baby"} and 5 <= len(baby) < len(load_packaged())
    with pytest.raises(DeepInterestError, match="no domain.*nope"):
        load_packaged(["nope"])


def test_the_packaged_vocabulary_finds_the_obvious_domain(cache):
    miner = EmbeddingMiner(cache_dir=cache)
    results = _items(miner, BACKPACK, BOTTLE)
    index = {p: d for p, d in zip(miner.vocabulary.phrases, miner.vocabulary.domains)}
    assert index[results[0].answer.descriptors[0].text] in {"sports_outdoors", "travel"}
    assert index[results[1].answer.descriptors[0].text] == "baby"


def test_files_round_trip_as_text_and_toml(tmp_path):
    vocab = load_packaged(["baby", "pets"])
    for name in ("v.txt", "v.toml"):
        again = load_vocabulary(save_vocabulary(vocab, tmp_path / name))
        assert again.phrases == vocab.phrases
    assert load_vocabulary(tmp_path / "v.toml", ["pets"]).phrases == load_packaged(
        ["pets"]).phrases
    with pytest.raises(DeepInterestError, match="no such vocabulary file"):
        load_vocabulary(tmp_path / "missing.txt")


def _answer(*texts: str) -> MineResult:
    interests = Interests(descriptors=[Descriptor(text=t, confidence=0.8) for t in texts])
    return MineResult("k", "item", "scripted", "m", "item.v1", interests)


def test_an_induced_vocabulary_keeps_one_central_phrase_per_cluster(cache, tmp_path):
    answers = [_answer("bottle feeding a newborn baby", "moisturising dry lips"),
               _answer("feeding a newborn with bottles", "keeping lips soft and moisturised"),
               _answer("bottle feeding a newborn", "changing key quickly with a guitar capo"),
               MineResult("k", "item", "scripted", "m", "item.v1", None, error="boom")]
    vocab = induce_vocabulary(answers, size=3, space=TextSpace(cache_dir=cache))
    assert len(vocab) == 3 and vocab.source == "induced"
    assert vocab.phrases[0] in {"bottle feeding a newborn baby", "feeding a newborn with bottles",
                                "bottle feeding a newborn"}  # the largest cluster first
    assert vocab.phrases[1] in {"moisturising dry lips", "keeping lips soft and moisturised"}
    assert vocab.phrases[2] == "changing key quickly with a guitar capo"
    saved = save_vocabulary(vocab, tmp_path / "induced.toml")
    miner = EmbeddingMiner(vocabulary=str(saved), cache_dir=cache)
    assert _items(miner, BOTTLE)[0].answer.descriptors[0].text == vocab.phrases[0]
    with pytest.raises(DeepInterestError, match="no descriptors"):
        induce_vocabulary(answers[3:], space=TextSpace(cache_dir=cache))
