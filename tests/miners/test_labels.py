"""Reward labels: judge, classifier and heuristic labelers, and item quality."""

from __future__ import annotations

import json

import pytest

from deepinterest import registry
from deepinterest.errors import DeepInterestError
from deepinterest.miners.labels import (
    ClassifierLabeler,
    HeuristicLabeler,
    JudgeLabeler,
    Label,
    item_quality,
)
from deepinterest.miners.scripted import ScriptedMiner

BACKPACK = {"id": "pack", "title": "Trailhead 30L Hiking Backpack",
            "description": "Lightweight daypack with hip belt and rain cover for long trail days."}
BALM = {"id": "balm", "title": "Shea Butter Lip Balm", "description": "Moisturising balm for lips."}
CAPO = {"id": "capo", "title": "Quick-Change Guitar Capo",
        "description": "Spring-loaded capo for acoustic and electric guitars."}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("embeddings"))


# ---------------------------------------------------------------- item quality


def test_item_quality_is_the_confidence_weighted_share_of_good_descriptors():
    assert item_quality([0.9, 0.6, 0.5], [1, 0, 1]) == pytest.approx(1.4 / 2.0)
    assert item_quality([0.5, 0.5], [1, 1]) == 1.0
    assert item_quality([0.5, 0.5], [0, 0]) == 0.0
    assert item_quality([], []) == 0.0
    assert item_quality([0.0, 0.0], [1, 1]) == 0.0
    missing = Label(None, None, "judge:x", error="timeout")
    assert item_quality([0.8, 0.2], [Label(1, 1.0, "j"), missing]) == 1.0
    with pytest.raises(ValueError):
        item_quality([0.5], [1, 0])


# ---------------------------------------------------------------- judge


def test_judge_labels_come_from_the_miners_verdicts_and_failures_stay_missing():
    def reply(request):
        if request.key == "capo":
            return "not json"
        return json.dumps({"labels": [int("hike" in d or "lip" in d) for d in request.descriptors]})

    judge = JudgeLabeler(ScriptedMiner(reply, retries=0))
    labels = judge.label([BACKPACK, CAPO, BALM],
                         [["carrying gear on long day hikes", "good quality product"],
                          ["changing key quickly"], []])
    assert [[x.label for x in row] for row in labels] == [[1, 0], [None], []]
    assert [x.probability for x in labels[0]] == [1.0, 0.0]
    assert labels[1][0].missing and "JSON" in labels[1][0].error
    assert labels[0][0].labeler == "judge:scripted"


def test_judge_is_built_by_name_through_the_registry():
    reply = {"k1": json.dumps({"labels": [0]})}
    judge = registry.create("labelers", "judge", miner="scripted",
                            miner_options={"replies": reply})
    assert judge.name == "judge:scripted"
    assert judge.label([BALM], [["x y"]], keys=["k1"])[0][0].label == 0


# ---------------------------------------------------------------- heuristic


def test_heuristic_labels_a_grounded_specific_descriptor_1_and_a_generic_one_0(cache):
    heuristic = HeuristicLabeler(cache_dir=cache)
    labels = heuristic.label([BACKPACK, BALM, {}],
                             [["carrying gear on long day hikes", "good quality product",
                               "feeding a newborn with bottles"],
                              ["keeping lips soft and moisturised", "great value for money"],
                              ["anything"]])
    assert [[x.label for x in row] for row in labels] == [[1, 0, 0], [1, 0], [None]]
    assert labels[2][0].error == "no evidence text"
    assert all((x.probability >= 0.5) == (x.label == 1) for x in labels[0] + labels[1])


# ---------------------------------------------------------------- classifier

EVIDENCE = [BACKPACK, BALM, CAPO]
DESCRIPTORS = [["carrying gear on long day hikes", "good quality product", "great value",
                "staying dry on the trail"],
               ["keeping lips soft and moisturised", "nice item", "highly recommended",
                "soothing chapped lips in winter"],
               ["changing key quickly with a guitar capo", "works well", "fast shipping",
                "playing songs in a higher key"]]
LABELS = [[1, 0, 0, 1], [1, 0, 0, 1], [1, 0, 0, 1]]


def test_a_classifier_fitted_on_separable_labels_reproduces_them(cache, tmp_path):
    classifier = ClassifierLabeler(cache_dir=cache).fit(EVIDENCE, DESCRIPTORS, LABELS)
    assert classifier.report["train_accuracy"] == 1.0 and classifier.report["pairs"] == 12
    predicted = classifier.label(EVIDENCE, DESCRIPTORS)
    assert [[x.label for x in row] for row in predicted] == LABELS
    assert all(x.labeler == "classifier" for row in predicted for x in row)
    again = ClassifierLabeler.load(classifier.save(tmp_path / "clf"), cache_dir=cache)
    reloaded = again.label(EVIDENCE, DESCRIPTORS)
    assert [[x.probability for x in row] for row in reloaded] == [
        [x.probability for x in row] for row in predicted]


def test_a_classifier_skips_missing_labels_and_must_be_fitted(cache):
    classifier = ClassifierLabeler(cache_dir=cache)
    with pytest.raises(DeepInterestError, match="not fitted"):
        classifier.label(EVIDENCE, DESCRIPTORS)
    gap = Label(None, None, "judge:x", error="timeout")
    partial = [[1, 0, gap, 1], [1, 0, 0, 1], [1, 0, 0, gap]]
    classifier.fit(EVIDENCE, DESCRIPTORS, partial)
    assert classifier.report["pairs"] == 10
    with pytest.raises(DeepInterestError, match="no labels"):
        classifier.fit(EVIDENCE[:1], DESCRIPTORS[:1], [[gap] * 4])


def test_heuristic_rejects_descriptors_that_copy_the_catalogue():
    from deepinterest.miners.labels import HeuristicLabeler, copies_catalogue

    evidence = {"title": "Aveeno Anti-Itch Concentrated Lotion, 4 Ounce", "brand": "Aveeno",
                "categories": "Beauty, Skin Care, Body, Lotions"}
    assert copies_catalogue("Beauty, Skin Care, Body, Lotions", evidence)
    assert copies_catalogue("Aveeno anti-itch concentrated lotion is a product", evidence)
    assert not copies_catalogue("soothing itchy skin after sun exposure", evidence)
    labels = HeuristicLabeler().label([evidence], [["Beauty, Skin Care, Body, Lotions",
                                                    "soothing itchy skin on the body"]])[0]
    assert (labels[0].label, labels[0].probability) == (0, 0.0)
    assert labels[1].label == 1
