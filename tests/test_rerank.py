"""The learned merge (deepinterest.eval.rerank): candidates, features, fitting, cross-fitting."""

import pytest
import torch

from deepinterest.errors import DeepInterestError
from deepinterest.eval.lists import Recommendations
from deepinterest.eval.rerank import (Candidates, candidate_features, crossfit_scores,
                                      fit_reranker, top_candidates, union)


def _recs(items, scores):
    return Recommendations(torch.tensor(items), torch.tensor(scores, dtype=torch.float32))


def test_union_keeps_each_item_once_in_first_seen_order():
    a = _recs([[3, 1, -1], [0, 2, 4]], [[0.0, -1.0, float("-inf")], [0.0, -1.0, -2.0]])
    b = _recs([[1, 5], [4, 0]], [[0.0, -1.0], [0.0, -1.0]])
    assert union([a, b]).tolist() == [[3, 1, 5, -1, -1], [0, 2, 4, -1, -1]]


def test_features_say_where_each_list_holds_a_candidate():
    a = _recs([[3, 1]], [[-0.5, -2.0]])
    b = _recs([[1, 7]], [[-1.0, -4.0]])
    log_probs = torch.log_softmax(torch.arange(8, dtype=torch.float32), 0).unsqueeze(0)
    cands = candidate_features([a, b], log_probs)
    assert cands.items.tolist() == [[3, 1, 7, -1]]
    f = cands.features[0]
    # per list: present, 1 / (rank + 1), score minus the list's best (absent: worst - 1)
    assert f[:3, 0:3].tolist() == [[1, 1, 0], [1, 0.5, -1.5], [0, 0, -2.5]]
    assert f[:3, 3:6].tolist() == [[0, 0, -4.0], [1, 1, 0], [1, 0.5, -3.0]]
    # the scorer's log-probability minus that of its best candidate (item 7)
    assert f[:3, 6].tolist() == pytest.approx([-4.0, -6.0, 0.0])
    assert f[3].tolist() == [0.0] * 7  # padding


def _planted(rows, seed):
    """Eight candidates per row; the target is the one with the largest third feature,
    whatever the list order says (the first two features are noise)."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(rows, 8, 3, generator=gen)
    items = torch.arange(8).repeat(rows, 1)
    targets = feats[:, :, 2].argmax(1)
    return Candidates(items, feats), targets


def test_a_fitted_reranker_learns_the_signal_that_marks_the_target():
    train, train_targets = _planted(400, seed=0)
    held, held_targets = _planted(200, seed=1)
    model = fit_reranker(train, train_targets)
    top = model.rerank(held, topk=3).items[:, 0]
    assert (top == held_targets).float().mean() > 0.9  # chance: 1 in 8


def test_cross_fitting_scores_a_row_without_its_own_target():
    cands, targets = _planted(300, seed=2)
    base = crossfit_scores(cands, targets, folds=3)
    moved = targets.clone()
    moved[7] = (targets[7] + 1) % 8  # only row 7's target changes
    again = crossfit_scores(cands, moved, folds=3)
    assert torch.equal(base[7], again[7])  # fitted on the other folds only
    assert not torch.equal(base, again)  # other folds did learn from row 7


def test_top_candidates_ranks_by_score_and_skips_padding():
    cands = Candidates(torch.tensor([[4, 9, 2, -1]]), torch.zeros(1, 4, 1))
    scores = torch.tensor([[0.1, 0.5, 0.5, float("-inf")]])
    recs = top_candidates(cands, scores, topk=4)
    assert recs.items.tolist() == [[9, 2, 4, -1]]  # ties keep first-seen order


def test_nothing_to_fit_and_too_few_rows_are_clear_errors():
    cands = Candidates(torch.tensor([[1, 2]]), torch.zeros(1, 2, 1))
    with pytest.raises(DeepInterestError, match="nothing to fit"):
        fit_reranker(cands, torch.tensor([5]))
    with pytest.raises(DeepInterestError, match="folds"):
        crossfit_scores(cands, torch.tensor([1]), folds=2)


def test_a_saved_reranker_loads_back_and_a_missing_one_says_what_to_run(tmp_path):
    from deepinterest.eval.rerank import load_reranker, save_reranker

    cands, targets = _planted(100, seed=3)
    model = fit_reranker(cands, targets)
    save_reranker(model, tmp_path, checkpoint="abc")
    loaded, meta = load_reranker(tmp_path)
    assert meta["checkpoint"] == "abc" and meta["features"] == 3
    assert torch.equal(loaded(cands.features), model(cands.features))
    with pytest.raises(DeepInterestError, match="di eval"):
        load_reranker(tmp_path / "elsewhere")
