import math

import numpy as np
import pytest

from deepinterest.eval.metrics import (
    NOT_FOUND,
    evaluate_rankings,
    evaluate_scores,
    ranks_from_lists,
    ranks_from_scores,
    write_metrics,
)


def test_hand_computed_hr_and_ndcg():
    # targets at ranks 0, 2, 6 and absent
    ranked = [[7, 1, 2, 3, 4, 5, 6, 8, 9, 10],
              [1, 2, 7, 3, 4, 5, 6, 8, 9, 10],
              [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
              [1, 2, 3, 4, 5, 6, 8, 9, 10, 11]]
    m = evaluate_rankings(ranked, [7, 7, 7, 7])
    assert m.users == 4
    assert m["hr@5"] == pytest.approx(2 / 4)
    assert m["hr@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(4)) / 4)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)


def test_ranks_from_lists_marks_absent_and_rejects_repeats():
    assert ranks_from_lists([[3, 2, 1], [5, 6, 7]], [1, 9]).tolist() == [2, NOT_FOUND]
    with pytest.raises(ValueError, match="repeats"):
        ranks_from_lists([[1, 1, 2]], [2])


def test_ties_count_against_the_target():
    scores = np.array([[0.5, 0.5, 0.5, 0.1],    # target 1 tied with two others -> rank 2
                       [0.9, 0.2, 0.2, 0.2]])   # target 0 strictly best -> rank 0
    assert ranks_from_scores(scores, [1, 0]).tolist() == [2, 0]
    m = evaluate_scores(np.ones((3, 20)), [0, 5, 19], ks=[5, 10])
    assert m["hr@10"] == 0.0  # all-equal scores never count as a hit


def test_scores_and_lists_agree_without_ties():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 100))
    targets = rng.integers(0, 100, size=50)
    lists = np.argsort(-scores, axis=1)[:, :10].tolist()
    a = evaluate_scores(scores, targets).values
    b = evaluate_rankings(lists, targets.tolist()).values
    assert a == pytest.approx(b)


def test_short_lists_are_an_error_not_a_silent_cap():
    with pytest.raises(ValueError, match="K=10"):
        evaluate_rankings([[1, 2, 3]], [1], ks=[5, 10])


def test_write_metrics_layout(tmp_path):
    import json

    m = evaluate_rankings([[1, 2, 3, 4, 5]], [1], ks=[5])
    write_metrics(tmp_path / "metrics.json", {"valid": m, "test": m}, model="x")
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["valid"] == {"hr@5": 1.0, "ndcg@5": 1.0}
    assert data["users"] == {"valid": 1, "test": 1} and data["model"] == "x"
