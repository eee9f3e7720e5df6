"""Paired bootstrap of two models' ranks on the same users."""

import numpy as np
import pytest

from deepinterest.eval.compare import paired_bootstrap
from deepinterest.eval.metrics import metrics_from_ranks, user_values


def test_user_values_average_to_the_metrics():
    ranks = np.array([0, 3, -1, 9, 12, 1])
    metrics = metrics_from_ranks(ranks, ks=(5, 10))
    for name in ("hr@5", "ndcg@5", "hr@10", "ndcg@10"):
        assert user_values(ranks, name).mean() == pytest.approx(metrics[name])
    assert user_values(ranks, "ndcg@10")[1] == pytest.approx(1 / np.log2(5))
    with pytest.raises(ValueError, match="hr@K or ndcg@K"):
        user_values(ranks, "mrr@10")


def test_identical_ranks_differ_by_exactly_nothing():
    ranks = np.array([0, 2, -1, 5] * 50)
    result = paired_bootstrap(ranks, ranks, samples=100)
    assert result.difference == result.low == result.high == 0.0 and result.b_better == 0.0


def test_a_model_better_for_some_users_and_never_worse_is_above_zero():
    a = np.array([-1] * 150 + [0] * 50)
    b = np.array([0] * 30 + [-1] * 120 + [0] * 50)  # 30 more users hit at rank 0
    result = paired_bootstrap(a, b, "hr@10", samples=500, seed=1)
    assert result.difference == pytest.approx(30 / 200)
    assert 0 < result.low < result.difference < result.high and result.b_better == 1.0
    assert result.relative == pytest.approx(80 / 50 - 1)
    flipped = paired_bootstrap(b, a, "hr@10", samples=500, seed=1)
    assert flipped.low == pytest.approx(-result.high) and flipped.b_better == 0.0


def test_noise_alone_gives_an_interval_around_zero_and_the_same_seed_the_same_interval():
    rng = np.random.default_rng(0)
    a, b = rng.integers(-1, 10, 2000), rng.integers(-1, 10, 2000)
    result = paired_bootstrap(a, b, samples=300)
    assert result.low < 0 < result.high
    assert paired_bootstrap(a, b, samples=300) == result


def test_different_users_are_refused():
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(np.array([0, 1]), np.array([0, 1, 2]))
